"""Live detection in the app: one browser's microphone stream, scored as `wakeword listen` scores it.

The browser sends short chunk files (`read_stream_chunk`); a `LiveSession` resamples them to 16 kHz, feeds the
same `StreamingDetector` as the command line on a background thread, keeps the recent scores for the plot, and
keeps each detection's audio (`LiveActivation`) so the user can mark it right or wrong (`Studio.correct`).
"""

from __future__ import annotations

import html
import os
import queue
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from wakeword.audio import SAMPLE_RATE
from wakeword.mining import AudioRing
from wakeword.models.base import Detector
from wakeword.stream import Detection, StreamingDetector
from wakeword.studio import StudioError, StudioLimits, as_float

# audio kept around a live activation: the window that fired and a little after it, as the word may go on
ACTIVATION_BEFORE_SECONDS, ACTIVATION_AFTER_SECONDS = 0.25, 0.75


def read_stream_chunk(path: str | os.PathLike, max_bytes: int) -> tuple[int, np.ndarray]:
    """A live-stream chunk file from the browser -> (rate, (n,) or (n, channels) int16 samples).

    Gradio's microphone stream sends the first recorder chunk's 44-byte WAV header followed by every
    chunk recorded since the last send, so the header's data size covers only the first 0.1 s; a WAV
    reader would drop the rest. PCM-16 data is therefore taken from byte 44 to the end of the file.
    """
    path = Path(path)
    if path.stat().st_size > max_bytes:
        raise StudioError(f"live chunk of {path.stat().st_size} bytes is over the {max_bytes}-byte limit")
    raw = path.read_bytes()
    if raw[:4] == b"RIFF" and raw[8:16] == b"WAVEfmt " and raw[36:40] == b"data":
        tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", raw[20:36])
        if tag == 1 and bits == 16 and channels >= 1:
            frames = np.frombuffer(raw[44 : 44 + (len(raw) - 44) // (2 * channels) * 2 * channels], "<i2")
            return rate, frames.reshape(-1, channels) if channels > 1 else frames
    try:
        samples, rate = sf.read(path, dtype="int16")
    except (sf.LibsndfileError, RuntimeError, ValueError) as error:
        raise StudioError(f"unreadable live chunk ({error})") from None
    return rate, samples


@dataclass
class LiveActivation:
    """A live detection with its audio (n_samples,) float32 16 kHz, and what the user said of it."""

    id: int
    word: str
    time_seconds: float
    score: float
    audio: np.ndarray
    verdict: str = ""  # "", "right" or "wrong"
    clip_id: str = ""  # the clip the verdict was saved as
    dataset: str = ""


class LiveSession:
    """One browser's live stream: chunks at the browser's rate -> 16 kHz -> the same StreamingDetector as
    `wakeword listen`. Keeps the last `history_seconds` of scores for the plot and every detection.

    Times are seconds of audio since the stream started. Changing the threshold starts a new streaming
    detector (its triggers hold the threshold) that continues the time axis; it has a fresh 1.5 s context.
    """

    def __init__(self, detector: Detector, model_name: str, threshold: float, limits: StudioLimits | None = None):
        self.detector, self.model_name, self.threshold = detector, model_name, float(threshold)
        self.limits = limits or StudioLimits()
        n_rows = max(1, round(self.limits.history_seconds / detector.config.hop_seconds))
        self.times: deque[float] = deque(maxlen=n_rows)
        self.scores: deque[list[float]] = deque(maxlen=n_rows)
        self.detections: list[Detection] = []
        self.offset_seconds, self.rate, self._resampler = 0.0, 0, None
        self._inbox: queue.Queue = queue.Queue()
        self._lock, self._worker, self.error, self._plotted = threading.Lock(), None, None, 0.0
        self.ring, self._open_events, self.activations = AudioRing(), [], []
        self.n_listed = 0  # activations the app has shown so far
        self._start_streamer()

    def _start_streamer(self) -> None:
        thresholds = dict.fromkeys(self.detector.config.wake_words, self.threshold)
        self.streamer = StreamingDetector(self.detector, thresholds)

    @property
    def now_seconds(self) -> float:
        return self.offset_seconds + self.streamer.n_hops * self.detector.config.hop_seconds

    def set_threshold(self, threshold: float) -> None:
        if float(threshold) != self.threshold:
            self.offset_seconds, self.threshold = self.now_seconds, float(threshold)
            self._start_streamer()

    def _to_16k(self, rate: int, samples: np.ndarray) -> np.ndarray:
        """One chunk (n,) or (n, channels), int or float, at `rate` -> float32 16 kHz, resampled without seams."""
        samples = np.asarray(samples)
        if len(samples) > self.limits.max_chunk_seconds * rate:
            raise StudioError(f"live chunk of {len(samples) / rate:.1f} s is over {self.limits.max_chunk_seconds:g} s")
        samples = as_float(samples)
        mono = np.nan_to_num(samples.mean(axis=1) if samples.ndim == 2 else samples)
        if rate != self.rate:
            import soxr

            self.rate = int(rate)
            self._resampler = None if rate == SAMPLE_RATE else soxr.ResampleStream(rate, SAMPLE_RATE, 1, "float32")
        return mono if self._resampler is None else self._resampler.resample_chunk(np.ascontiguousarray(mono))

    def push_file(self, path: str | os.PathLike, threshold: float | None = None) -> None:
        """Queue a browser chunk file (see read_stream_chunk) for the background scorer and return at once.

        Gradio keeps only the newest chunk that arrives while a stream handler runs, so a handler that scored
        in place would drop audio whenever scoring is slower than the browser's 0.1 s chunks."""
        if self.error is not None:
            raise StudioError(f"live scoring stopped: {self.error}")
        max_bytes = 44 + int(self.limits.max_chunk_seconds * 192_000 * 2 * 2)  # 5 s of 192 kHz stereo PCM-16
        self._inbox.put((threshold, *read_stream_chunk(path, max_bytes)))
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name="wakeword-live", daemon=True)
                self._worker.start()

    def _work(self) -> None:
        """Score queued chunks in order, all that are waiting in one call; exit when idle or closed."""
        while True:
            try:
                batch = [self._inbox.get(timeout=self.limits.idle_seconds)]
            except queue.Empty:
                return
            while not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            try:
                for item in batch:
                    if item is None:
                        return
                    threshold, rate, samples = item
                    if threshold is not None:
                        self.set_threshold(threshold)
                    self.feed(rate, samples)
            except (StudioError, ValueError, RuntimeError) as error:
                self.error = error
                return
            finally:
                for _ in batch:
                    self._inbox.task_done()

    def wait(self, timeout_seconds: float = 10.0) -> bool:
        """Block until every queued chunk is scored (True) or the timeout passes (False)."""
        deadline = time.monotonic() + timeout_seconds
        while self._inbox.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._inbox.unfinished_tasks

    def close(self) -> None:
        """Stop the background scorer after the chunks already queued."""
        self._inbox.put(None)

    def feed(self, rate: int, samples: np.ndarray) -> list[Detection]:
        """Score one chunk (n,) or (n, channels) at `rate`; returns the detections it completed (times on the
        session's axis)."""
        if not len(samples):
            return []
        offset, audio = self.offset_seconds, self._to_16k(int(rate), samples)
        self.ring.push(audio)
        result = self.streamer.process(audio)
        shift = {"time_seconds", "start_seconds", "end_seconds"}
        events = [replace(d, **{k: getattr(d, k) + offset for k in shift}) for d in result.detections]
        with self._lock:  # the plot and indicator read these from the handler's thread
            self.times.extend((result.times_seconds + offset).tolist())
            self.scores.extend(result.scores.tolist())
            self.detections += events
            self._open_events += events
            self._keep_activation_audio()
        return events

    def _keep_activation_audio(self, stream_ended: bool = False) -> None:
        """Cut each detection's audio once the stream has passed its end (the ring holds 30 s), or with what
        there is when the stream has ended."""
        heard = self.ring.n_seen / SAMPLE_RATE
        window = self.detector.config.window_seconds
        while self._open_events and (
            stream_ended or self._open_events[0].time_seconds + ACTIVATION_AFTER_SECONDS <= heard
        ):
            event = self._open_events.pop(0)
            start = event.time_seconds - window - ACTIVATION_BEFORE_SECONDS
            _, audio = self.ring.cut(start, event.time_seconds + ACTIVATION_AFTER_SECONDS)
            self.activations.append(LiveActivation(len(self.activations) + 1, event.word, event.time_seconds,
                                                   event.score, audio))  # fmt: skip

    def finish(self, timeout_seconds: float = 10.0) -> None:
        """The microphone stopped: score what is queued, then keep the last activations' audio as it is."""
        self.wait(timeout_seconds)
        with self._lock:
            self._keep_activation_audio(stream_ended=True)

    def activation(self, activation_id: int) -> LiveActivation:
        with self._lock:
            found = [a for a in self.activations if a.id == int(activation_id)]
        if not found:
            raise StudioError(f"no activation #{activation_id} in this session")
        return found[0]

    def activations_table(self) -> list[list[Any]]:
        """Rows (#, seconds, word, score, verdict), newest first."""
        with self._lock:
            rows = [
                [a.id, round(a.time_seconds, 1), a.word, round(a.score, 3), a.verdict or "?"] for a in self.activations
            ]
        return rows[::-1]

    def _snapshot(self) -> tuple[list[float], list[list[float]], list[Detection]]:
        with self._lock:
            return list(self.times), list(self.scores), list(self.detections)

    def plot_due(self, every_seconds: float = 0.5) -> bool:
        """True at most once per `every_seconds` of wall time, and only once there are scores: a browser plot
        redrawn for every 0.1 s chunk never finishes drawing, and one first sent no rows draws no lines later."""
        now = time.monotonic()
        if now - self._plotted < every_seconds or not self.times:
            return False
        self._plotted = now
        return True

    def plot_frame(self) -> Any:
        """pandas DataFrame (time_seconds, score, series): one series per wake word plus the threshold."""
        import pandas as pd

        times, scores, _ = self._snapshot()
        words = self.detector.config.wake_words
        rows = [(t, float(s[k]), w) for t, s in zip(times, scores, strict=True) for k, w in enumerate(words)]
        if times:
            rows += [(times[0], self.threshold, "threshold"), (times[-1], self.threshold, "threshold")]
        frame = pd.DataFrame(rows, columns=["time_seconds", "score", "series"])
        # numeric even when empty: the browser's plot takes its axis types from the first data it gets
        return frame.astype({"time_seconds": float, "score": float})

    def indicator_html(self) -> str:
        """A large status box: DETECTED with word, time and score for 2 s after a detection, else listening."""
        times, scores, detections = self._snapshot()
        count, peak = len(detections), max((max(s) for s in scores), default=0.0)
        last = detections[-1] if detections else None
        fired = last is not None and (times[-1] if times else 0.0) - last.time_seconds <= 2.0
        if last is None:
            text = f"Listening... no detection yet (highest score {peak:.3f})"
        else:
            when = f"\u201c{html.escape(last.word)}\u201d at {last.time_seconds:.1f} s, score {last.score:.3f}"
            text = f"DETECTED {when}" if fired else f"Listening... last detection {when}"
        state = "fired" if fired else "listening"
        return (f'<div id="wakeword-indicator" class="wakeword-{state}" data-state="{state}" data-count="{count}">'
                f"{text}<br><small>{count} detection(s) this session</small></div>")  # fmt: skip

    def events_text(self) -> str:
        lines = [f"{d.time_seconds:7.1f} s  {d.word}  score {d.score:.3f}" for d in self._snapshot()[2][-20:]]
        return "\n".join(lines) or "no detections yet"
