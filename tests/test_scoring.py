"""Batched clip scoring (wakeword.scoring) gives every clip the scores that streaming it alone gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from wakeword.audio import SAMPLE_RATE, load_audio, write_audio
from wakeword.evaluate import NoiseMixer, score_clip, score_items
from wakeword.models import get_family
from wakeword.models.base import DetectorConfig
from wakeword.models.e2e import E2EDetector
from wakeword.scoring import clip_windows, score_signals
from wakeword.stream import score_array

WORDS = ("hey computer", "jarvis")
# a hop's worth is 1600 samples: lengths below, at and between hops, and one longer than several batches
LENGTHS = (0.01, 0.1, 0.73, 1.5, 2.04, 6.3)


class LogitE2E(E2EDetector):
    """An e2e detector whose score() returns raw logits, as main's detectors will: no [0, 1] bound."""

    @torch.no_grad()
    def score(self, audio: torch.Tensor) -> torch.Tensor:
        self.eval()
        return 40 * self(audio)


def detectors(tiny_whisper_dir) -> dict:
    torch.manual_seed(0)
    transfer = DetectorConfig(family="transfer", wake_words=WORDS, encoder={"name": str(tiny_whisper_dir)})
    e2e = DetectorConfig(family="e2e", wake_words=WORDS, hop_seconds=0.08, window_seconds=1.0)
    made = {
        "transfer": get_family("transfer").build_model(transfer),
        "e2e": get_family("e2e").build_model(e2e),
        "logits": LogitE2E(DetectorConfig(family="e2e", wake_words=WORDS)),
    }
    for model in made.values():  # random batch-norm statistics, so that the scores are not all alike
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.normal_(0, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return made


def clips(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    made = [(0.3 * rng.standard_normal(int(s * SAMPLE_RATE))).astype(np.float32) for s in LENGTHS]
    silent_middle = made[4].copy()
    silent_middle[4000:30000] = 0  # windows of pure silence inside a clip take the cached silence score
    return [*made, silent_middle, np.zeros(SAMPLE_RATE, np.float32)]


def test_windows_are_the_streaming_detectors(tiny_whisper_dir):
    config = DetectorConfig(family="e2e", wake_words=WORDS)
    signal = np.arange(1, 5000, dtype=np.float32)
    windows = clip_windows(config, signal)
    hop, window = config.hop_samples, config.window_samples
    assert windows.shape == (4, window)  # ceil(4999 / 1600) hops
    assert windows[0, -hop:].tolist() == signal[:hop].tolist() and not windows[0, :-hop].any()
    assert windows[3, -hop : -hop + 199].tolist() == signal[3 * hop :].tolist() and not windows[3, -hop + 199 :].any()


@pytest.mark.parametrize("batch_windows", [1, 7, 256])
def test_batched_tracks_equal_streaming_each_clip_alone(tiny_whisper_dir, batch_windows):
    signals = clips()
    for name, detector in detectors(tiny_whisper_dir).items():
        tracks = list(score_signals(detector, signals, batch_windows=batch_windows))
        assert len(tracks) == len(signals)
        for signal, track in zip(signals, tracks, strict=True):
            alone = score_array(detector, signal)[1]
            assert track.shape == alone.shape == (-(-len(signal) // detector.config.hop_samples), len(WORDS))
            np.testing.assert_allclose(track, alone, rtol=0, atol=1e-5, err_msg=name)
        spread = np.ptp(np.concatenate(tracks), axis=0)
        assert spread.min() > 1e-4, (name, spread)  # the comparison above compared different scores
        if name == "logits":
            assert np.abs(np.concatenate(tracks)).max() > 1.0  # logits, not probabilities


def test_score_items_equals_score_clip_with_noise_mixed_in_the_same_order(tiny_whisper_dir, tmp_path):
    detector = detectors(tiny_whisper_dir)["transfer"]
    signals = clips(seed=1)[:5]
    path = write_audio(tmp_path / "clip.wav", signals[3])
    items = [(s, {WORDS[0]: i % 2}) for i, s in enumerate(signals)] + [(path, {WORDS[1]: 1})]
    scored = score_items(detector, items, NoiseMixer(10.0, seed=3))
    mixer = NoiseMixer(10.0, seed=3)
    for (audio, labels), result in zip(items, scored, strict=True):
        audio = load_audio(audio) if isinstance(audio, Path) else audio
        assert result.labels == labels and result.duration_seconds == pytest.approx(len(audio) / SAMPLE_RATE, 1e-4)
        np.testing.assert_allclose(result.track, score_clip(detector, audio, mixer), rtol=0, atol=1e-5)
