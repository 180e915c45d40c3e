"""Batched offline scoring: the score tracks of many whole signals, equal to streaming each one alone.

`StreamingDetector` scores one stream, at most `batch_hops` windows per detector call, so a data set
of short clips costs one or two small calls per clip. Here the windows of several clips go into one
call, in chunks of at most `batch_windows` windows (bounded memory, whatever the clips' lengths), and
a window of pure digital silence (the padding before every evaluated clip) is scored once and reused.

The windows are exactly the streaming detector's (see wakeword.stream: hop n scores the window that
ENDS at n * hop_seconds, left-padded with zeros, the last partial hop zero-padded), so every track
equals `score_array(detector, signal)[1]` up to float rounding between batch sizes. Scores are
whatever `detector.score()` returns (probabilities or logits): nothing here assumes their range.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch

from wakeword.models.base import Detector, DetectorConfig

BATCH_WINDOWS = 256  # windows per detector call: 256 x 1.5 s of float32 is 25 MB of input


def clip_windows(config: DetectorConfig, signal: np.ndarray) -> np.ndarray:
    """The streaming detector's windows over a 16 kHz signal (n_samples,): a read-only view of shape
    (ceil(n_samples / hop_samples), window_samples); row n - 1 is the window ending at n hops."""
    hop, window = config.hop_samples, config.window_samples
    n_hops = -(-len(signal) // hop)
    padded = np.zeros(window + n_hops * hop, np.float32)
    padded[window : window + len(signal)] = signal
    return np.lib.stride_tricks.sliding_window_view(padded, window)[hop::hop][:n_hops]


class _WindowScorer:
    """detector.score on numpy windows (n, window_samples) -> float32 (n, n_words); silence cached."""

    def __init__(self, detector: Detector) -> None:
        self.detector, self.n_words = detector, len(detector.config.wake_words)
        self.device = next((p.device for p in detector.parameters()), torch.device("cpu"))
        self._silence: np.ndarray | None = None

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        scores = self.detector.score(torch.from_numpy(np.ascontiguousarray(windows)).to(self.device))
        return scores.detach().cpu().double().numpy().reshape(len(windows), -1).astype(np.float32)

    def silence(self) -> np.ndarray:
        """Score (n_words,) of an all-zero window, computed on first use."""
        if self._silence is None:
            self._silence = self(np.zeros((1, self.detector.config.window_samples), np.float32))[0]
        return self._silence


def score_signals(
    detector: Detector, signals: Iterable[np.ndarray], batch_windows: int = BATCH_WINDOWS
) -> Iterator[np.ndarray]:
    """Score track (n_hops, n_words) float32 of each 16 kHz signal (n_samples,), in order, lazily.

    Signals are consumed one at a time (a generator that loads files keeps one file's audio in memory
    besides at most about 2 * batch_windows windows); a track is yielded once all its windows are scored.
    """
    if batch_windows < 1:
        raise ValueError("batch_windows must be >= 1")
    scorer = _WindowScorer(detector)
    finished: list[np.ndarray] = []  # tracks whose windows are all scored or queued, in input order
    queue: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (track, rows, windows) to score
    n_queued = 0
    for signal in signals:
        windows = clip_windows(detector.config, np.asarray(signal, dtype=np.float32))
        track = np.empty((len(windows), scorer.n_words), np.float32)
        for start in range(0, len(windows), batch_windows):
            chunk = windows[start : start + batch_windows]
            sounding = np.any(chunk != 0, axis=1)
            if not sounding.all():
                track[start + np.flatnonzero(~sounding)] = scorer.silence()
            queue.append((track, start + np.flatnonzero(sounding), chunk[sounding]))
            n_queued += int(sounding.sum())
            if n_queued >= batch_windows:
                _score_queue(scorer, queue)
                n_queued = 0
                yield from finished
                finished.clear()
        finished.append(track)
    _score_queue(scorer, queue)
    yield from finished


def _score_queue(scorer: _WindowScorer, queue: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
    """Score every queued window in one detector call and write the rows into their tracks; empties it."""
    if any(len(rows) for _, rows, _ in queue):
        scores = scorer(np.concatenate([windows for _, _, windows in queue]))
        offset = 0
        for track, rows, _ in queue:
            track[rows] = scores[offset : offset + len(rows)]
            offset += len(rows)
    queue.clear()
