"""The end-to-end CNN: small, learns from scratch, saves and loads exactly."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from wakeword.checkpoint import load_detector, save_detector
from wakeword.models.base import DetectorConfig
from wakeword.models.e2e import MAX_PARAMETERS, E2EDetector, build_model, compute_loss, spec_augment

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SAMPLE_RATE = 16000
WINDOW_SECONDS = 0.5  # short windows keep the test fast; the network accepts any length


def tone_windows(n: int, seed: int) -> dict[str, torch.Tensor]:
    """Word 0 = a 1 kHz burst, word 1 = a 3 kHz burst, both, or neither, at random places in faint noise.

    Word 1 is unlabelled (mask 0) in every fourth window, where its label is flipped: the loss must ignore it."""
    rng = np.random.default_rng(seed)
    n_samples = int(WINDOW_SECONDS * SAMPLE_RATE)
    t = np.arange(n_samples // 4) / SAMPLE_RATE
    audio = rng.normal(0, 0.01, (n, n_samples)).astype(np.float32)
    labels = np.stack([np.arange(n) % 2, (np.arange(n) // 2) % 2], axis=1).astype(np.float32)
    for i in range(n):
        for word, freq in enumerate((1000.0, 3000.0)):
            if labels[i, word]:
                start = rng.integers(0, n_samples - len(t))
                audio[i, start : start + len(t)] += 0.3 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    mask = np.ones_like(labels)
    mask[::4, 1] = 0
    labels[::4, 1] = 1 - labels[::4, 1]
    return {"audio": torch.from_numpy(audio), "labels": torch.from_numpy(labels), "mask": torch.from_numpy(mask)}


def config(**head) -> DetectorConfig:
    return DetectorConfig(family="e2e", wake_words=("low", "high"), window_seconds=WINDOW_SECONDS, head=head)


def test_parameter_count_under_limit_and_limit_enforced():
    n_parameters = sum(p.numel() for p in build_model(config()).parameters())
    assert 50_000 < n_parameters < MAX_PARAMETERS
    with pytest.raises(ValueError, match="parameters"):
        build_model(config(width=2.0))
    with pytest.raises(ValueError, match="unknown e2e head setting"):
        build_model(config(widht=1.0))


def test_overfits_a_tiny_set_with_masked_loss():
    torch.manual_seed(0)
    model = build_model(config(width=0.5, dropout=0.0))
    batch = tone_windows(16, seed=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    model.train()
    for _ in range(40):
        loss = compute_loss(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.2 * losses[0]
    model.eval()
    with torch.no_grad():
        predictions = (model(batch["audio"]) > 0).float()
    correct = (predictions == batch["labels"]).float()
    assert float((correct * batch["mask"]).sum() / batch["mask"].sum()) == 1.0


def test_unlabelled_words_get_no_gradient():
    model = build_model(config(width=0.5)).eval()
    batch = tone_windows(4, seed=2)
    batch["mask"][:, 1] = 0
    compute_loss(model, batch).backward()
    assert model.output.weight.grad[1].abs().sum() == 0 and model.output.weight.grad[0].abs().sum() > 0


def test_spec_augment_masks_bands_and_spans():
    torch.manual_seed(0)
    masked = spec_augment(torch.ones(4, 80, 50), build_model(config()).settings)
    zero_bins = (masked == 0).all(dim=2).sum(dim=1)
    zero_frames = (masked == 0).all(dim=1).sum(dim=1)
    assert (zero_bins <= 16).all() and (zero_frames <= 20).all() and (zero_bins + zero_frames).sum() > 0
    assert set(masked.unique().tolist()) <= {0.0, 1.0}


def test_state_dict_round_trip_with_safetensors(tmp_path):
    torch.manual_seed(0)
    model = build_model(config(width=0.5))
    model.train()
    model(tone_windows(8, seed=3)["audio"])  # move the batch-norm statistics off their initial values
    model.eval()
    audio = tone_windows(3, seed=4)["audio"]
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "weights.safetensors")
    rebuilt = build_model(model.config)
    rebuilt.load_state_dict(load_file(tmp_path / "weights.safetensors"))
    rebuilt.eval()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(audio), model(audio), rtol=0, atol=0)
    save_detector(model, tmp_path / "model")
    loaded = load_detector(tmp_path / "model")
    assert isinstance(loaded, E2EDetector) and loaded.config == model.config
    with torch.no_grad():
        torch.testing.assert_close(loaded(audio), model(audio), rtol=0, atol=0)


@pytest.mark.parametrize("framing", ["centred", "valid"])
def test_strided_scores_equal_the_windows_scores(framing):
    """Streaming's call: framing "valid" computes the long signal's frames once; either way the scores are
    those of the windows scored one by one (a "valid" model also sees 3 fewer frames than a "centred" one)."""
    torch.manual_seed(0)
    model = build_model(config(width=0.5, framing=framing))
    model.train()
    model(tone_windows(8, seed=5)["audio"])  # batch-norm statistics off their initial values
    signal = torch.from_numpy(np.random.default_rng(6).normal(0, 0.05, 21 * 1600 + 777).astype(np.float32))
    strided = model.score_strided(signal, 1600)
    windows = signal.unfold(0, model.config.window_samples, 1600)
    assert strided.shape == (len(windows), 2) == ((len(signal) - 8000) // 1600 + 1, 2) == (17, 2)
    torch.testing.assert_close(strided, model.score(windows.contiguous()), atol=1e-5, rtol=0)
    assert model.training  # scoring leaves the model's mode as it found it


def test_unknown_framing_is_refused():
    with pytest.raises(ValueError, match="framing"):
        build_model(config(framing="center"))
