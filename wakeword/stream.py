"""Streaming detection over any source: a microphone, a file of any length, or a numpy array.

Timing conventions (the same for every source, and for `wakeword score`):

- Hop `n` (n = 1, 2, ...) scores the window of `window_seconds` that ENDS at `n * hop_seconds` of the
  stream; that end time is the row's `time_seconds`.
- Before a full window of audio exists, the window is left-padded with zeros (silence). At the end of a
  finite source the last partial hop is padded with zeros to a full hop, so a file of `d` seconds gives
  `ceil(d / hop_seconds)` rows.
- Detections follow `wakeword.metrics` exactly: a rising edge of `score >= threshold` is a detection,
  one sustained activation is one detection, and a refractory period follows each detection.

Memory is bounded: the detector keeps one window of context, less than one hop of pending samples and
`smoothing_hops - 1` score rows, and scores at most `batch_hops` windows per call; files are read block
by block and resampled with a streaming resampler, never loaded whole.

This module imports no torch (only numpy, soundfile, and soxr/sounddevice when needed): the torch-free
`wakeword.runtime` streams ONNX models through the same StreamingDetector, so both apply one set of
hop, smoothing, refractory and event rules. Torch is imported only where a torch Detector is scored.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from wakeword.audio import SAMPLE_RATE, AudioError, read_blocks
from wakeword.metrics import logit, probability, refractory_hops

if TYPE_CHECKING:
    from wakeword.models.base import Detector

BLOCK_SECONDS = 3.2  # file read size: 32 default hops, one detector batch


class MicrophoneError(RuntimeError):
    """The audio input cannot be opened or read: the message names the device and the reason."""


@dataclass(frozen=True)
class Detection:
    """One wake-word event. All times are seconds from the start of the stream.

    time_seconds: end of the window whose score first reached the threshold (when a live detector knows).
    start_seconds / end_seconds: estimate of where the word is. The word has ended by the first firing
    window's end, and it is inside every firing window, so it starts after the last firing window's start.
    score: the score at the detection, or the activation's peak when the detector waits for the peak.
    """

    word: str
    score: float
    time_seconds: float
    start_seconds: float
    end_seconds: float

    def to_dict(self) -> dict[str, float | str]:
        return asdict(self)


@dataclass(frozen=True)
class StreamResult:
    """What one `process` call produced: times (n_hops,), scores (n_hops, n_words), detections."""

    times_seconds: np.ndarray
    scores: np.ndarray
    detections: list[Detection]


class _WordTrigger:
    """The rising-edge + refractory rule of `wakeword.metrics`, one hop at a time, for one word."""

    def __init__(self, word: str, threshold: float, timing: tuple[int, float, float], wait_for_peak: bool):
        self.word, self.threshold, self.wait_for_peak = word, threshold, wait_for_peak
        self.period, self.hop_seconds, self.window_seconds = timing  # refractory hops, hop and window seconds
        self.reset()

    def reset(self) -> None:
        self.previous_fired = False
        self.next_allowed = 0
        self.open: list = []  # [onset_hop, peak_score, last_firing_hop] of the activation being tracked

    def step(self, hop: int, score: float) -> Detection | None:
        fired = score >= self.threshold
        rising = fired and not self.previous_fired
        self.previous_fired = fired
        event = None
        if self.open and fired:
            self.open[1], self.open[2] = max(self.open[1], score), hop
        elif self.open:
            event = self.close()
        if rising and hop >= self.next_allowed:
            self.next_allowed = hop + self.period
            self.open = [hop, score, hop]
            if not self.wait_for_peak:
                return self.close()
        return event

    def close(self) -> Detection | None:
        if not self.open:
            return None
        onset, peak, last = self.open
        self.open = []
        end = round(onset * self.hop_seconds, 6)  # 12 * 0.1 is 1.2000000000000002 in floats
        # the word lies inside every firing window: after the last one's start, before the first one's end
        start = max(last * self.hop_seconds, end) - self.window_seconds
        start = min(start, end - self.hop_seconds)
        return Detection(self.word, float(peak), end, max(0.0, round(start, 6)), end)


class StreamingDetector:
    """Score a stream of 16 kHz mono audio every hop and report wake-word detections.

    thresholds: per word, on the logit scale (default: the detector config's, else 0.0 = probability 0.5).
    smoothing_hops: detect on the mean of the last k hop scores (1 = raw scores).
    refractory_seconds: after a detection of a word, no new detection of it for this long.
    batch_hops: at most this many windows per detector call (speed for files, bounded memory).
    wait_for_peak: report an event when its activation ends, with the peak score and a tighter word
    start; otherwise report at once on the first firing hop (lowest latency, for live use).
    """

    def __init__(
        self,
        detector: Detector,
        thresholds: Mapping[str, float] | None = None,
        smoothing_hops: int = 1,
        refractory_seconds: float = 1.0,
        batch_hops: int = 32,
        wait_for_peak: bool = False,
    ) -> None:
        config = detector.config
        unknown = sorted(set(thresholds or {}) - set(config.wake_words))
        if unknown:
            raise ValueError(f"thresholds for unknown word(s) {unknown}; the detector has {list(config.wake_words)}")
        if smoothing_hops < 1 or batch_hops < 1:
            raise ValueError("smoothing_hops and batch_hops must be >= 1")
        self.detector, self.config = detector, config
        self.smoothing_hops, self.batch_hops = smoothing_hops, batch_hops
        self.window_samples, self.hop_samples = config.window_samples, config.hop_samples
        timing = (refractory_hops(refractory_seconds, config.hop_seconds), config.hop_seconds, config.window_seconds)
        merged = {word: config.threshold(word) for word in config.wake_words} | dict(thresholds or {})
        self.thresholds = {word: float(value) for word, value in merged.items()}
        self._triggers = [_WordTrigger(w, self.thresholds[w], timing, wait_for_peak) for w in config.wake_words]
        # where the detector's weights are (read on every call: .to() moves a parameter, it does not replace it);
        # ONNX runtime detectors have none
        parameters = getattr(detector, "parameters", None)
        self._first_parameter = next(iter(parameters()), None) if parameters is not None else None
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the next sample is time 0 again."""
        self._context = np.zeros(self.window_samples, dtype=np.float32)  # zeros = the left padding
        self._pending = np.zeros(0, dtype=np.float32)
        self._history = np.zeros((0, len(self.config.wake_words)), dtype=np.float64)
        self.n_hops = 0
        for trigger in self._triggers:
            trigger.reset()

    @property
    def buffered_samples(self) -> int:
        """Audio samples held between calls (context window + pending partial hop)."""
        return len(self._context) + len(self._pending)

    def process(self, audio: np.ndarray) -> StreamResult:
        """Feed audio (n_samples,) float32 16 kHz; scores every hop completed by it."""
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError(f"expected mono audio of shape (n_samples,), got {audio.shape}")
        step = self.batch_hops * self.hop_samples
        if len(audio) <= step:  # a live block: one piece, nothing to merge
            return self._process_piece(audio)
        results = [self._process_piece(audio[start : start + step]) for start in range(0, len(audio), step)]
        return _merge(results, len(self.config.wake_words))

    def flush(self) -> StreamResult:
        """End of stream: zero-pad the last partial hop, close open activations, then reset."""
        tail = np.zeros(0, dtype=np.float32)
        if len(self._pending):
            tail = np.zeros(self.hop_samples - len(self._pending), dtype=np.float32)
        result = self._process_piece(tail)
        closed = [event for event in (trigger.close() for trigger in self._triggers) if event]
        self.reset()
        return StreamResult(result.times_seconds, result.scores, result.detections + closed)

    def _process_piece(self, piece: np.ndarray) -> StreamResult:
        combined = np.concatenate([self._pending, piece])
        n_new = len(combined) // self.hop_samples
        used = n_new * self.hop_samples
        self._pending = combined[used:].copy()
        if n_new == 0:
            return _merge([], len(self.config.wake_words))
        context = np.concatenate([self._context, combined[:used]])
        self._context = context[-self.window_samples :].copy()
        scores = self._smooth(self._score_span(context[self.hop_samples :]))  # new hop k: k hops into it
        hops = np.arange(self.n_hops + 1, self.n_hops + n_new + 1)
        self.n_hops += n_new
        detections = self._detect(hops, scores)
        return StreamResult(np.round(hops * self.config.hop_seconds, 6), scores.astype(np.float32), detections)

    def _score_span(self, span: np.ndarray) -> np.ndarray:
        """Logits (n_windows, n_words) float64 of the windows of span (n_samples,) that start every hop.

        The torch detector gets the span whole (Detector.score_strided: overlapping windows may share work);
        subclasses that score other models override this."""
        on_cpu = self._first_parameter is None or self._first_parameter.device.type == "cpu"
        numpy_path = getattr(self.detector, "strided_logits_numpy", None) if on_cpu else None
        logits = numpy_path(span, self.hop_samples) if numpy_path is not None else None
        if logits is not None:  # a cascade's live call without torch tensors (Detector.strided_logits_numpy)
            return logits.astype(np.float64).reshape(-1, len(self.config.wake_words))
        import torch  # here, not at the top: wakeword.runtime uses this module without torch

        device = self._first_parameter.device if self._first_parameter is not None else torch.device("cpu")
        logits = self.detector.score_strided(torch.from_numpy(span).to(device), self.hop_samples)
        return logits.detach().cpu().double().numpy().reshape(-1, len(self.config.wake_words))

    def hop_windows(self, span: np.ndarray) -> np.ndarray:
        """The windows (n_windows, window_samples) of span that start every hop, as a read-only view."""
        return np.lib.stride_tricks.sliding_window_view(span, self.window_samples)[:: self.hop_samples]

    def _smooth(self, raw: np.ndarray) -> np.ndarray:
        """Mean PROBABILITY over the last `smoothing_hops` rows (fewer at the stream start), as a logit.
        raw: (n, n_words) logits. A mean of logits would let one very negative hop veto a detection."""
        if self.smoothing_hops == 1:
            return raw
        rows = np.concatenate([self._history, probability(raw)])
        sums = np.concatenate([np.zeros((1, rows.shape[1])), np.cumsum(rows, axis=0)])
        ends = np.arange(len(self._history) + 1, len(rows) + 1)
        starts = np.maximum(ends - self.smoothing_hops, 0)  # the history holds every hop at the stream start
        self._history = rows[-(self.smoothing_hops - 1) :].copy()
        return logit((sums[ends] - sums[starts]) / (ends - starts)[:, None])

    def _detect(self, hops: np.ndarray, scores: np.ndarray) -> list[Detection]:
        events = []
        for row, hop in enumerate(hops.tolist()):
            for column, trigger in enumerate(self._triggers):
                event = trigger.step(hop, float(scores[row, column]))
                if event:
                    events.append(event)
        return events


def _merge(results: list[StreamResult], n_words: int) -> StreamResult:
    if not results:
        return StreamResult(np.zeros(0), np.zeros((0, n_words), dtype=np.float32), [])
    times = np.concatenate([r.times_seconds for r in results])
    scores = np.concatenate([r.scores for r in results])
    return StreamResult(times, scores, [event for r in results for event in r.detections])


class _Resampler:
    """Chunk-by-chunk band-limited resampling to 16 kHz (soxr streaming: no seams between chunks)."""

    def __init__(self, rate: int) -> None:
        self.stream = None
        if rate != SAMPLE_RATE:
            try:
                import soxr
            except ImportError:  # a runtime-only install may lack it
                raise AudioError(
                    f"audio at {rate} Hz must be resampled to {SAMPLE_RATE} Hz: pip install soxr"
                ) from None
            self.stream = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")

    def __call__(self, audio: np.ndarray, last: bool = False) -> np.ndarray:
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        return audio if self.stream is None else self.stream.resample_chunk(audio, last=last)


def _paced(blocks: Iterable[np.ndarray], sample_rate: int = SAMPLE_RATE) -> Iterator[np.ndarray]:
    """Yield each block when its last sample would have been recorded by a live source."""
    start, n_samples = time.monotonic(), 0
    for block in blocks:
        n_samples += len(block)
        time.sleep(max(0.0, start + n_samples / sample_rate - time.monotonic()))
        yield block


def iter_array_blocks(
    audio: np.ndarray, sample_rate: int = SAMPLE_RATE, block_seconds: float = BLOCK_SECONDS, realtime: bool = False
) -> Iterator[np.ndarray]:
    """A numpy signal (n_samples,) or (n_samples, n_channels) at any rate as 16 kHz mono blocks."""
    audio = np.asarray(audio, dtype=np.float32)
    mono = audio.mean(axis=1) if audio.ndim == 2 else audio
    resampler, step = _Resampler(sample_rate), max(1, int(block_seconds * sample_rate))
    blocks = (resampler(mono[i : i + step], last=i + step >= len(mono)) for i in range(0, len(mono), step))
    return _paced(blocks) if realtime else blocks


def iter_file_blocks(
    path: str | Path, block_seconds: float = BLOCK_SECONDS, realtime: bool = False
) -> Iterator[np.ndarray]:
    """Read any libsndfile format block by block as 16 kHz mono float32 (bounded memory).

    Raises AudioError naming the file for everything load_audio refuses, with the same message: missing,
    unreadable, truncated, empty, too short or non-finite audio (the last two when the reader gets there).
    """
    blocks = _read_file_blocks(Path(path), block_seconds)
    return _paced(blocks) if realtime else blocks


def _read_file_blocks(path: Path, block_seconds: float) -> Iterator[np.ndarray]:
    resampler = None
    for block, rate, last in read_blocks(path, block_seconds):  # load_audio's checks and messages
        resampler = resampler or _Resampler(rate)
        yield resampler(block, last=last)


def stream_results(streamer: StreamingDetector, blocks: Iterable[np.ndarray]) -> Iterator[StreamResult]:
    """Run a streaming detector over blocks of 16 kHz mono audio, then flush it at the end."""
    for block in blocks:
        yield streamer.process(block)
    yield streamer.flush()


def score_array(detector: Detector, audio: np.ndarray, smoothing_hops: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Scores of a whole 16 kHz signal (n_samples,): times (n_hops,) and scores (n_hops, n_words)."""
    streamer = StreamingDetector(detector, smoothing_hops=smoothing_hops)
    results = list(stream_results(streamer, [np.asarray(audio, dtype=np.float32)]))
    merged = _merge(results, len(detector.config.wake_words))
    return merged.times_seconds, merged.scores


def score_file(
    detector: Detector, path: str | Path, word: str | None = None, smoothing_hops: int = 1
) -> Iterator[tuple[float, list[float]]]:
    """Rows (time_seconds, scores) for a file of any length; time_seconds is the window's END.

    scores has one value per wake word in `detector.config.wake_words` order, or only `word`'s.
    """
    words = list(detector.config.wake_words)
    if word is not None and word not in words:
        raise ValueError(f"unknown word {word!r}; the detector has {words}")
    columns = [words.index(word)] if word is not None else list(range(len(words)))
    streamer = StreamingDetector(detector, smoothing_hops=smoothing_hops)
    for result in stream_results(streamer, iter_file_blocks(path)):
        for when, row in zip(result.times_seconds.tolist(), result.scores.tolist(), strict=True):
            yield when, [row[c] for c in columns]


def detect_file(
    detector: Detector,
    path: str | Path,
    thresholds: Mapping[str, float] | None = None,
    smoothing_hops: int = 1,
    refractory_seconds: float = 1.0,
    realtime: bool = False,
    wait_for_peak: bool = True,
) -> Iterator[Detection]:
    """Detections in a file of any length, in time order per word (as fast as possible, or paced)."""
    streamer = StreamingDetector(detector, thresholds, smoothing_hops, refractory_seconds, wait_for_peak=wait_for_peak)
    for result in stream_results(streamer, iter_file_blocks(path, realtime=realtime)):
        yield from result.detections


def _print_event(event: Detection) -> None:
    print(json.dumps(event.to_dict()), flush=True)


def _sounddevice() -> ModuleType:
    """The sounddevice module, imported late so that files and arrays work without PortAudio."""
    try:
        import sounddevice
    except OSError as error:  # the PortAudio shared library itself is missing
        raise MicrophoneError(f"audio input unavailable: {error} (install libportaudio2)") from None
    return sounddevice


def list_devices() -> str:
    """The audio devices PortAudio sees, one per line; `>` marks the default input."""
    devices = _sounddevice().query_devices()
    return str(devices) if len(devices) else "no audio devices found (PortAudio sees none)"


def _open_input(device: int | str | None, block_seconds: float, blocks: queue.Queue) -> tuple[object, int]:
    """An unstarted mono float32 InputStream at the device's native rate that queues blocks of block_seconds."""
    sd = _sounddevice()
    try:
        info = sd.query_devices(device, kind="input")
    except (ValueError, sd.PortAudioError) as error:
        hint = "see `wakeword listen --list-devices` and pick one with --device"
        if device is None:  # PortAudio's own words are "Error querying device -1"
            raise MicrophoneError(f"no input device found (no default microphone): {hint}") from None
        raise MicrophoneError(f"input device {device!r}: {error}; {hint}") from None
    rate = int(info["default_samplerate"])

    def callback(indata: np.ndarray, frames: int, when: object, status: object) -> None:
        with contextlib.suppress(queue.Full):  # scoring slower than real time: drop audio, never grow
            blocks.put_nowait(indata[:, 0].copy())

    try:
        blocksize = max(1, int(rate * block_seconds))
        stream = sd.InputStream(
            rate, blocksize, info["index"], channels=1, dtype="float32", latency="low", callback=callback
        )
    except sd.PortAudioError as error:
        raise MicrophoneError(f"input device {info['name']!r} at {rate} Hz: {error}") from None
    return stream, rate


def listen(
    detector: Detector,
    device: int | str | None = None,
    on_event: Callable[[Detection], None] | None = None,
    stop: threading.Event | None = None,
    thresholds: Mapping[str, float] | None = None,
    smoothing_hops: int = 1,
    refractory_seconds: float = 1.0,
    ready: threading.Event | None = None,
    hops_per_call: int | None = None,
) -> int:
    """Detect live from a microphone until `stop` is set or Ctrl-C; returns the number of detections.

    device: a PortAudio index or name substring (None = default input), read at its native rate and
    resampled to 16 kHz chunk by chunk. on_event: called in this thread for every detection (default:
    print it as a JSON line). Event times are seconds of audio since listening started. ready: set
    when the first audio arrives (some devices take a second or two to start delivering).
    hops_per_call: the microphone delivers this many hops of audio at a time, scored in one detector call:
    less CPU per hop (each call has a fixed cost), up to hops_per_call - 1 hops later detections. None: the
    detector's `live_hops_per_call` (3 for a cascade, else 1).
    """
    streamer = StreamingDetector(detector, thresholds, smoothing_hops, refractory_seconds)
    return listen_with(streamer, device, on_event, stop, ready, hops_per_call)


def live_hops_per_call(detector: object) -> int:
    """The hops per call `listen` uses for this detector by default (its `live_hops_per_call`, else 1)."""
    return int(getattr(detector, "live_hops_per_call", 1))


def listen_with(
    streamer: StreamingDetector,
    device: int | str | None = None,
    on_event: Callable[[Detection], None] | None = None,
    stop: threading.Event | None = None,
    ready: threading.Event | None = None,
    hops_per_call: int | None = None,
) -> int:
    """`listen` with a streaming detector already built (any model it scores); same arguments and result."""
    if hops_per_call is None:
        hops_per_call = live_hops_per_call(streamer.detector)
    if hops_per_call < 1:
        raise ValueError(f"hops_per_call must be >= 1, not {hops_per_call}")
    stop, on_event = stop or threading.Event(), on_event or _print_event
    block_seconds = streamer.config.hop_seconds * hops_per_call
    blocks: queue.Queue[np.ndarray] = queue.Queue(maxsize=max(1, int(10 / block_seconds)))  # ~10 s
    stream, rate = _open_input(device, block_seconds, blocks)
    resampler, n_events = _Resampler(rate), 0
    try:
        with stream:
            while not stop.is_set():
                with contextlib.suppress(queue.Empty):
                    block = blocks.get(timeout=0.05)
                    if ready is not None:
                        ready.set()
                    for event in streamer.process(resampler(block)).detections:
                        n_events += 1
                        on_event(event)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a user stops listening: leave quietly; the stream is closed by now
    return n_events
