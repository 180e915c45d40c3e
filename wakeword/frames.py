"""Spectral frames for scoring, in numpy alone: shared by the torch detector's streaming front end
(wakeword.features) and the torch-free runtime (wakeword.runtime), which cannot import torch.

A frame is N_FFT samples every HOP_LENGTH, periodic Hann window, power spectrum |rfft|^2 (N_FREQS bins). Only the
frames that lie wholly inside a signal are computed ("valid" framing, no padding), so the frames of a window cut
from a longer signal at a multiple of HOP_LENGTH are a slice of the longer signal's frames: consecutive streaming
windows share all but a hop's worth (SharedFrames).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np

from wakeword.audio import HOP_LENGTH, N_FFT

N_FREQS = N_FFT // 2 + 1  # rfft bins of one frame


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
