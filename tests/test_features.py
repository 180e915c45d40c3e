import numpy as np
import pytest
import torch
import torchaudio
from transformers import WhisperFeatureExtractor

from wakeword.audio import N_MELS, SAMPLE_RATE
from wakeword.features import (
    log_mel,
    log_mel_power_frames,
    mel_filters,
    n_frames,
    n_valid_frames,
    normalise_log_mel,
    valid_log_mel,
)
from wakeword.frames import SharedFrames, log_mel_frames, mel_filter_bank


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


@pytest.mark.parametrize("n_samples", [400, 559, 16000, 16050, 24000])
def test_valid_frames_are_torch_stft_without_padding(n_samples):
    audio = torch.from_numpy(speechlike(n_samples / SAMPLE_RATE, seed=n_samples))
    window = torch.hann_window(400)
    power = torch.stft(audio, 400, 160, window=window, center=False, return_complex=True).abs() ** 2
    reference = torch.clamp(mel_filters().T @ power, min=1e-10).log10()
    ours = log_mel_power_frames(audio[None])[0]
    assert ours.shape == (N_MELS, n_valid_frames(n_samples)) == reference.shape
    torch.testing.assert_close(ours, reference, atol=5e-4, rtol=0)  # 0.005 dB: float32 rounding of two DFTs


def test_a_windows_valid_frames_are_a_slice_of_the_longer_signals():
    """What streaming shares: the frames of a window cut at a multiple of 160 samples from a longer signal."""
    signal = torch.from_numpy(speechlike(4.2, seed=3))
    frames = log_mel_power_frames(signal[None])[0]
    for start in (0, 1600, 4800, 25600):
        window = signal[start : start + SAMPLE_RATE]
        alone = valid_log_mel(window[None])[0]
        sliced = normalise_log_mel(frames[None, :, start // 160 : start // 160 + n_valid_frames(SAMPLE_RATE)])[0]
        torch.testing.assert_close(sliced, alone, atol=1e-5, rtol=0)
    assert n_valid_frames(SAMPLE_RATE) == 98 and n_valid_frames(399) == 0


def test_the_numpy_mel_filters_are_torchaudios():
    """The one filter bank (numpy, for the runtime and training alike) is torchaudio's Slaney scale and area,
    to float32 rounding."""
    reference = torchaudio.functional.melscale_fbanks(
        n_freqs=201, f_min=0.0, f_max=SAMPLE_RATE / 2, n_mels=N_MELS, sample_rate=SAMPLE_RATE, norm="slaney",
        mel_scale="slaney",
    ).numpy()  # fmt: skip
    ours = mel_filter_bank()
    assert (mel_filters().numpy() == ours).all()  # training's filters are these
    assert ours.shape == reference.shape == (201, N_MELS) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference, atol=1e-7, rtol=1e-5)
    assert ((ours > 0).sum(axis=0) >= 1).all()  # no empty filter: the sparse sum relies on it


def test_scoring_frames_in_numpy_equal_torchs():
    """Scoring's front end (numpy's FFT) equals training's DFT-matrix products to float32 rounding, any length
    (as torch.stft does above: the quietest bins' log10 carries the rounding of two DFTs)."""
    for n_samples in (399, 400, 1920, 52000):
        signal = speechlike(4.0, seed=6)[:n_samples]
        ours = log_mel_frames(signal)
        reference = log_mel_power_frames(torch.from_numpy(signal)[None])[0].numpy()
        assert ours.shape == reference.shape == (N_MELS, n_valid_frames(n_samples))
        np.testing.assert_allclose(ours, reference, atol=5e-4, rtol=0)


def test_shared_frames_reuse_what_consecutive_streaming_spans_share():
    signal = speechlike(6.0, seed=4)
    window, hop = 24000, 1600
    shared, overlap = SharedFrames(log_mel_frames), window - hop
    spans = [signal[:window], signal[hop : hop + window + 2 * hop], signal[4 * hop : 4 * hop + window]]
    for span in spans:  # each span begins with the previous span's last `overlap` samples, as streaming's do
        np.testing.assert_allclose(shared(span, overlap), log_mel_frames(span), atol=1e-5, rtol=0)
    # the shared frames are taken from the last call, not recomputed: a marked cache shows through ...
    last_span, last_frames = shared._last
    shared._last = (last_span, np.full_like(last_frames, 99.0))
    following = signal[5 * hop : 5 * hop + window]
    reused = shared(following, overlap)
    assert (reused[:, : n_valid_frames(overlap)] == 99.0).all() and (reused[:, n_valid_frames(overlap) :] != 99.0).all()
    # ... while a span that does not continue the last one is computed whole
    shared._last = (following, np.full_like(reused, 99.0))
    other = speechlike(1.5, seed=5)
    np.testing.assert_allclose(shared(other, overlap), log_mel_frames(other), atol=1e-5, rtol=0)
