"""Spectral frames for scoring, in numpy alone: shared by the torch detector's streaming front end (the e2e
family with framing "valid") and the torch-free runtime (wakeword.runtime), which cannot import torch.

A frame is N_FFT samples every HOP_LENGTH, periodic Hann window, power spectrum |rfft|^2 (N_FREQS bins), then
log10 of N_MELS Slaney mel bands (log_mel_frames). Only the frames that lie wholly inside a signal are computed
("valid" framing, no padding), so the frames of a window cut from a longer signal at a multiple of HOP_LENGTH are
a slice of the longer signal's frames: consecutive streaming windows share all but a hop's worth (SharedFrames).
Nothing here uses a BLAS: numpy's OpenBLAS starts threads of its own, which spin between a live stream's calls
(they doubled a cascade's stage-1 CPU time when the frames were matrix products).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np

from wakeword.audio import HOP_LENGTH, N_FFT, N_MELS, SAMPLE_RATE

N_FREQS = N_FFT // 2 + 1  # rfft bins of one frame
LOG_POWER_FLOOR = 1e-10  # mel power is floored here before log10 (-10), in training's front end too

# Slaney's mel scale (his Auditory Toolbox, librosa's and torchaudio's mel_scale="slaney"): linear below 1 kHz,
# logarithmic above, continuous at 1 kHz
_HZ_PER_MEL = 200.0 / 3.0  # below 1 kHz
_LOG_START_HZ = 1000.0
_LOG_START_MEL = _LOG_START_HZ / _HZ_PER_MEL  # 15
_LOG_STEP = math.log(6.4) / 27.0  # mels per e-fold above 1 kHz: 27 mels from 1 kHz to 6.4 kHz


def n_valid_frames(n_samples: int) -> int:
    """Number of analysis frames that lie wholly inside `n_samples` of audio (no padding): frame i covers
    samples [i * HOP_LENGTH, i * HOP_LENGTH + N_FFT). 98 for one second."""
    return max(0, (n_samples - N_FFT) // HOP_LENGTH + 1)


@lru_cache(maxsize=1)
def hann_window() -> np.ndarray:
    """The periodic Hann window of N_FFT samples, float32 (torch.hann_window(N_FFT, periodic=True))."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)


def power_frames(signal: np.ndarray) -> np.ndarray:
    """|rfft|^2 of the Hann-windowed valid frames: (n_samples,) float32 -> (N_FREQS, n_valid_frames) float32, a
    transposed view. numpy's FFT (pocketfft) runs on the calling thread and starts none of its own."""
    signal = np.ascontiguousarray(signal, dtype=np.float32)
    step = signal.strides[0]  # bytes per sample
    shape = (n_valid_frames(len(signal)), N_FFT)
    frames = np.lib.stride_tricks.as_strided(signal, shape, (HOP_LENGTH * step, step), writeable=False)
    spectrum = np.fft.rfft(frames * hann_window(), axis=1)  # (n_frames, N_FREQS) complex64
    return (spectrum.real * spectrum.real + spectrum.imag * spectrum.imag).T


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    log_part = _LOG_START_MEL + np.log(np.maximum(hz, _LOG_START_HZ) / _LOG_START_HZ) / _LOG_STEP
    return np.where(hz >= _LOG_START_HZ, log_part, hz / _HZ_PER_MEL)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    log_part = _LOG_START_HZ * np.exp(_LOG_STEP * (np.maximum(mel, _LOG_START_MEL) - _LOG_START_MEL))
    return np.where(mel >= _LOG_START_MEL, log_part, mel * _HZ_PER_MEL)


@lru_cache(maxsize=2)
def mel_filter_bank(n_mels: int = N_MELS) -> np.ndarray:
    """Triangular filters evenly spaced on Slaney's mel scale from 0 Hz to SAMPLE_RATE / 2, each of unit area
    (Slaney norm): (N_FREQS, n_mels) float32, cached (do not modify). Equal to torchaudio's melscale_fbanks with
    norm and mel_scale "slaney" to float32 rounding (tested); the only definition, here so that the runtime, which
    cannot import torch, computes the same frames as training (features.mel_filters)."""
    freqs = np.linspace(0.0, SAMPLE_RATE // 2, N_FREQS)  # each rfft bin's centre, Hz
    edges = _mel_to_hz(np.linspace(0.0, float(_hz_to_mel(np.float64(SAMPLE_RATE / 2))), n_mels + 2))
    # filter m rises from edges[m] to edges[m + 1] and falls to edges[m + 2]
    to_edge = edges[None, :] - freqs[:, None]  # (N_FREQS, n_mels + 2)
    widths = np.diff(edges)
    rising, falling = -to_edge[:, :-2] / widths[:-1], to_edge[:, 2:] / widths[1:]
    bank = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (edges[2:] - edges[:-2]))
    return bank.astype(np.float32)


@lru_cache(maxsize=1)
def _mel_nonzeros() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """mel_filter_bank()'s nonzero weights grouped by filter: (bins (nnz,), weights (nnz,), first index of each
    filter's group (N_MELS,)). About 390 of the 16080 weights are nonzero: a sum over them is 2x faster than the
    dense product without a BLAS."""
    by_filter = mel_filter_bank().T  # (N_MELS, N_FREQS)
    filters, bins = np.nonzero(by_filter)
    starts = np.flatnonzero(np.r_[True, np.diff(filters) != 0])
    if len(starts) != N_MELS:  # np.add.reduceat would give an empty filter its neighbour's sum
        raise ValueError(f"{N_MELS} mel filters over {N_FREQS} frequency bins leave a filter empty")
    return bins, by_filter[filters, bins], starts


def log_mel_frames(signal: np.ndarray) -> np.ndarray:
    """log10 mel power of the valid frames, not yet normalised: (n_samples,) float32 -> (N_MELS,
    n_valid_frames(n_samples)) float32, a transposed view. Equal to features.log_mel_power_frames (torch's DFT
    form) to 1e-6 in log10 power, up to 5e-4 in the quietest bins (float32 rounding, as torch.stft's)."""
    power = power_frames(signal).T  # (n_frames, N_FREQS), contiguous
    bins, weights, starts = _mel_nonzeros()
    if not len(power):
        return np.zeros((N_MELS, 0), np.float32)
    mel = np.add.reduceat(power[:, bins] * weights, starts, axis=1)  # (n_frames, N_MELS)
    return np.log10(np.maximum(mel, LOG_POWER_FLOOR)).T


def frame_windows(frames: np.ndarray, window_samples: int, hop_samples: int, n_windows: int) -> np.ndarray:
    """The frames of each streaming window: frames (n_features, n_frames) of a span whose windows of
    `window_samples` start every `hop_samples` (a multiple of HOP_LENGTH) -> (n_windows, n_features,
    n_valid_frames(window_samples)) float32, contiguous. Window w is frames[:, w * step : w * step + per_window]."""
    per_window, step = n_valid_frames(window_samples), hop_samples // HOP_LENGTH
    if (n_windows - 1) * step + per_window > frames.shape[1]:
        raise ValueError(f"{frames.shape[1]} frames hold fewer than {n_windows} windows of {per_window}")
    shape = (n_windows, frames.shape[0], per_window)
    strides = (step * frames.strides[1], *frames.strides)
    return np.ascontiguousarray(np.lib.stride_tricks.as_strided(frames, shape, strides, writeable=False))


class SharedFrames:
    """`compute(span)` -> (n_features, n_valid_frames(len(span))) for the spans a stream is scored in, reusing the
    frames that consecutive spans share.

    Streaming's span k+1 begins with the last `overlap_samples` of span k (the window of context it keeps). That
    is checked on the samples themselves, so any other signal is simply computed whole: a cache hit cannot give
    other frames than a miss (to float32 rounding). A live 0.1 s hop then computes its 10 new frames, not the
    window's 148. Thread-safe: the last span and its frames are one attribute.
    """

    def __init__(self, compute: Callable[[np.ndarray], np.ndarray]) -> None:
        self.compute = compute
        self._last: tuple[np.ndarray, np.ndarray] | None = None  # (span (n,), its frames (n_features, n_frames))

    def __call__(self, signal: np.ndarray, overlap_samples: int) -> np.ndarray:
        """signal (n_samples,) float32 -> (n_features, n_valid_frames(n_samples)) float32, as compute(signal)."""
        last, kept = self._last, n_valid_frames(overlap_samples)
        frames = None
        if last is not None and kept and 0 < overlap_samples <= min(len(signal), len(last[0])):
            start = len(last[0]) - overlap_samples  # where the shared samples begin in the last span
            if start % HOP_LENGTH == 0 and np.array_equal(signal[:overlap_samples], last[0][start:]):
                first = start // HOP_LENGTH
                new = self.compute(signal[kept * HOP_LENGTH :])
                frames = np.concatenate([last[1][:, first : first + kept], new], axis=1)
        if frames is None:
            frames = np.ascontiguousarray(self.compute(signal))
        self._last = (signal.copy(), frames)
        return frames
