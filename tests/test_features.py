import numpy as np
import pytest
import torch
from transformers import WhisperFeatureExtractor

from wakeword.audio import N_MELS, SAMPLE_RATE
from wakeword.features import log_mel, n_frames


def speechlike(seconds: float, seed: int, amp: float = 0.1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    voiced = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate([180, 360, 720, 1440], start=1))
    return (amp * (voiced * (1 + np.sin(2 * np.pi * 3 * t)) + 0.05 * rng.standard_normal(t.size))).astype(np.float32)


@pytest.mark.parametrize("seconds", [0.5, 1.0, 1.5, 2.0])
def test_matches_whisper_feature_extractor_unpadded(seconds):
    audio = speechlike(seconds, seed=int(seconds * 10))
    reference = WhisperFeatureExtractor(feature_size=N_MELS)(
        audio, sampling_rate=SAMPLE_RATE, padding="do_not_pad", return_tensors="np"
    ).input_features[0]
    ours = log_mel(torch.from_numpy(audio)).numpy()
    assert ours.shape == reference.shape == (N_MELS, n_frames(len(audio)))
    np.testing.assert_allclose(ours, reference, atol=1e-4)


def test_floor_is_per_sample_not_per_batch():
    quiet, loud = speechlike(1.0, 1, amp=0.001), speechlike(1.0, 2, amp=0.9)
    alone = log_mel(torch.from_numpy(quiet))
    batched = log_mel(torch.from_numpy(np.stack([quiet, loud])))
    torch.testing.assert_close(batched[0], alone, atol=1e-5, rtol=0)


def test_batched_shape_and_gradient():
    audio = torch.from_numpy(np.stack([speechlike(1.5, s) for s in range(3)])).requires_grad_()
    features = log_mel(audio)
    assert features.shape == (3, N_MELS, 150)
    features.sum().backward()
    assert audio.grad is not None and torch.isfinite(audio.grad).all() and audio.grad.abs().sum() > 0


def test_silence_is_finite():
    features = log_mel(torch.zeros(SAMPLE_RATE))
    assert torch.isfinite(features).all()
