"""Hunting false accepts: mine a detector's activations on long negative audio as labelled clips, and
retrain it with them (the enroll -> listen -> correct -> retrain loop).

Clip-level accuracy hides false triggers: 1% false accepts on clips is about 11 per hour of running
speech. Mining streams hours of audio that holds no wake word through the same detector as `wakeword
listen`, at a LOW threshold (so near misses are caught too), and keeps every activation as a negative
clip with its source file and time. `retrain` trains the model's own recipe again with those clips
added (recipe option data.hard_negatives, weighted); with a frozen encoder only the new clips are
encoded, so the head retrains in seconds.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from wakeword.audio import SAMPLE_RATE, AudioError
from wakeword.checkpoint import ModelError, load_detector, read_config, rollback_detector
from wakeword.data.clips import Clip, ClipWriter, DataSet
from wakeword.evaluate import audio_files
from wakeword.metrics import logit, probability
from wakeword.models.base import Detector, DetectorConfig
from wakeword.recipes import Recipe, _help, build_dataclass
from wakeword.stream import Detection, StreamingDetector, iter_file_blocks

if TYPE_CHECKING:  # the pipeline imports torch training code: only retrain needs it, at call time
    from wakeword.pipeline import TrainReport

MARGIN_SECONDS = 0.25  # audio kept on each side of an activation, so the clip holds the whole near-miss
MAX_CLIP_SECONDS = 4.0  # a long activation (music, a drone) is cut to this much around its onset
RING_SECONDS = 30.0  # recent audio kept while streaming; activations are closed well within this


@dataclass(frozen=True)
class MineSettings:
    threshold: float | None = _help("collect activations scoring at least this logit (default: see fraction)", None)
    threshold_fraction: float = _help(
        "the default threshold: this share of each word's calibrated threshold on the probability scale", 0.5
    )
    refractory_seconds: float = _help("one activation per word in this long (the streaming detector's rule)", 1.0)
    dedup_seconds: float = _help("an activation this close to a clip already mined from the same file is skipped", 1.0)
    words: tuple[str, ...] | None = _help("mine only these wake words (default: all of the model's)", None)


@dataclass
class MineReport:
    n_files: int = 0
    hours: float = 0.0
    n_activations: int = 0
    n_added: int = 0
    n_duplicates: int = 0
    skipped: list[str] = field(default_factory=list)  # "file: reason" for unreadable files
    clips: list[Clip] = field(default_factory=list)

    def summary(self) -> str:
        fa = self.n_activations / self.hours if self.hours else float("nan")
        lines = [
            f"mined {self.n_files} file(s), {self.hours:.2f} h: {self.n_activations} activation(s) "
            f"({fa:.1f} per hour), {self.n_added} new clip(s), {self.n_duplicates} duplicate(s) skipped"
        ]
        lines += [f"skipped {s}" for s in self.skipped]
        return "\n".join(lines)


class AudioRing:
    """The last `seconds` of a 16 kHz stream, addressable by absolute stream time."""

    def __init__(self, seconds: float = RING_SECONDS) -> None:
        self.capacity = int(seconds * SAMPLE_RATE)
        self.buffer = np.zeros(0, dtype=np.float32)
        self.n_seen = 0  # samples pushed since the stream start

    def push(self, audio: np.ndarray) -> None:
        self.buffer = np.concatenate([self.buffer, audio.astype(np.float32)])[-self.capacity :]
        self.n_seen += len(audio)

    def cut(self, start_seconds: float, end_seconds: float) -> tuple[float, np.ndarray]:
        """(start time, samples) between two stream times; parts already dropped or not yet seen are
        left out, so the start may be later than asked."""
        first = self.n_seen - len(self.buffer)
        lo = max(round(start_seconds * SAMPLE_RATE) - first, 0)
        hi = min(round(end_seconds * SAMPLE_RATE) - first, len(self.buffer))
        audio = self.buffer[lo:hi].copy() if hi > lo else np.zeros(0, np.float32)
        return (first + lo) / SAMPLE_RATE, audio


def activation_span(event: Detection, window_seconds: float) -> tuple[float, float]:
    """(start, end) stream seconds of the audio behind an activation: the window that first fired,
    extended to the last firing window, plus a margin; at most MAX_CLIP_SECONDS."""
    start = max(0.0, event.time_seconds - window_seconds - MARGIN_SECONDS)
    end = max(event.time_seconds, event.start_seconds + window_seconds) + MARGIN_SECONDS
    return start, min(end, start + MAX_CLIP_SECONDS)


def mining_thresholds(detector: Detector, settings: MineSettings) -> dict[str, float]:
    words = settings.words or detector.config.wake_words
    unknown = sorted(set(words) - set(detector.config.wake_words))
    if unknown:
        raise ValueError(f"unknown word(s) {unknown}; the model detects {list(detector.config.wake_words)}")
    if settings.threshold is not None:
        return {w: settings.threshold for w in words}
    # a share of a logit means nothing; a share of the probability does ("half as sure as a detection")
    share = settings.threshold_fraction
    return {w: float(logit(share * probability(detector.config.threshold(w)))) for w in words}


def fingerprint(audio: np.ndarray) -> str:
    """Content hash of a clip at 16-bit precision: the same audio mined twice is one clip."""
    return hashlib.sha1(np.round(np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes()).hexdigest()[:16]


@dataclass(frozen=True)
class Activation:
    """One activation and the audio behind it; start_seconds is the audio's start in the stream."""

    event: Detection
    start_seconds: float
    audio: np.ndarray


def stream_activations(
    detector: Detector, blocks: Iterable[np.ndarray], thresholds: dict[str, float], refractory_seconds: float
) -> Iterable[Activation]:
    """Every activation in a stream of 16 kHz mono blocks, reported at its peak, with its audio."""
    # words not mined get an infinite threshold: they never fire
    every = {w: thresholds.get(w, float("inf")) for w in detector.config.wake_words}
    streamer = StreamingDetector(detector, every, refractory_seconds=refractory_seconds, wait_for_peak=True)
    ring, window = AudioRing(), detector.config.window_seconds
    for block in blocks:
        ring.push(block)
        for event in streamer.process(block).detections:
            yield Activation(event, *ring.cut(*activation_span(event, window)))
    for event in streamer.flush().detections:
        yield Activation(event, *ring.cut(*activation_span(event, window)))


class _Seen:
    """Activations already in the output data set: by (file, word) and time, and by content."""

    def __init__(self, clips: Sequence[Clip], dedup_seconds: float) -> None:
        self.dedup_seconds = dedup_seconds
        self.times: dict[tuple[str, str], list[float]] = {}
        self.prints = {c.meta.get("fingerprint") for c in clips}
        for clip in clips:
            if "source_file" in clip.meta:
                for word in clip.labels:
                    self.times.setdefault((clip.meta["source_file"], word), []).append(clip.meta["start_seconds"])

    def check_and_add(self, source: str, word: str, start_seconds: float, print_: str) -> bool:
        """True when new (and remembered from now on)."""
        times = self.times.setdefault((source, word), [])
        if print_ in self.prints or any(abs(t - start_seconds) < self.dedup_seconds for t in times):
            return False
        times.append(start_seconds)
        self.prints.add(print_)
        return True


def mine(
    model: Detector | str | Path,
    sources: Sequence[str | Path],
    out: str | Path,
    settings: MineSettings = MineSettings(),
    progress: Callable[[float, str], None] | None = None,
) -> MineReport:
    """Stream every audio file under `sources` through `model`; add each activation as a clip labelled
    negative for the word that fired (meta: source_file, start_seconds, end_seconds, score, threshold).

    Clips are added to the data set `out` file by file (atomic manifest updates), so an interrupted run
    keeps what it found and a rerun skips it. progress: called with (share done, file name).
    Unreadable files found in a folder are skipped and listed in the report, so one bad file does not stop
    hours of work; a file named in `sources` is refused (AudioError), as `wakeword score` refuses it.
    """
    detector = model if isinstance(model, Detector) else load_detector(model)
    detector.eval()
    thresholds = mining_thresholds(detector, settings)
    files = [f for s in sources for f in (audio_files(s) if Path(s).is_dir() else [Path(s)])]
    named = {Path(s) for s in sources if not Path(s).is_dir()}
    if not files:
        raise FileNotFoundError(f"no audio files in {[str(s) for s in sources]}")
    dataset = DataSet.create(out)
    seen, report = _Seen(dataset.clips(), settings.dedup_seconds), MineReport()
    source = {"model": str(model) if not isinstance(model, Detector) else detector.config.family}
    with dataset.writing() as writer:  # an interrupted run leaves no orphan audio of the file it was on
        for index, path in enumerate(tqdm(files, desc="mining", unit="file")):
            if progress is not None:
                progress(index / len(files), path.name)
            counted = _Counted(iter_file_blocks(path))
            try:
                found = list(stream_activations(detector, counted, thresholds, settings.refractory_seconds))
            except AudioError as error:
                if path in named:  # a file the user named is refused, as `score` and `detect` refuse it
                    raise
                report.skipped.append(str(error))
                continue
            report.n_files, report.hours = report.n_files + 1, report.hours + counted.n_samples / SAMPLE_RATE / 3600
            report.n_activations += len(found)
            new = [
                _mined_clip(writer, a, path, thresholds, source)
                for a in found
                if len(a.audio)
                and seen.check_and_add(str(path.resolve()), a.event.word, a.start_seconds, fingerprint(a.audio))
            ]
            report.n_duplicates += len(found) - len(new)
            report.clips += dataset.add_clips(new)
    report.n_added = len(report.clips)
    return report


class _Counted:
    """Passes blocks through and counts their samples (hours mined)."""

    def __init__(self, blocks: Iterable[np.ndarray]) -> None:
        self.blocks, self.n_samples = blocks, 0

    def __iter__(self) -> Iterator[np.ndarray]:
        for block in self.blocks:
            self.n_samples += len(block)
            yield block


def _mined_clip(
    writer: ClipWriter, activation: Activation, path: Path, thresholds: dict[str, float], source: dict[str, str]
) -> Clip:
    event, audio = activation.event, activation.audio
    meta: dict[str, Any] = {
        "source_file": str(path.resolve()),
        "start_seconds": round(activation.start_seconds, 3),
        "end_seconds": round(activation.start_seconds + len(audio) / SAMPLE_RATE, 3),
        "score": round(event.score, 4),
        "threshold": round(thresholds[event.word], 4),
        "fingerprint": fingerprint(audio),
        **source,
    }
    return writer.make_clip(audio, {event.word: 0}, "mined", speaker=f"mined:{path.stem}", meta=meta)


def model_recipe(config: DetectorConfig, model_dir: str | Path) -> Recipe:
    """The recipe a saved model was trained with (config.training.recipe)."""
    data = config.training.get("recipe")
    if not isinstance(data, dict):
        raise ModelError(f"{model_dir}: the model does not record its recipe, so it cannot be retrained")
    return build_dataclass(Recipe, data)


def retrain(
    model_dir: str | Path,
    extra: Sequence[str | Path],
    *,
    keep_thresholds: bool = True,
    weight: float | None = None,
    on_epoch_end: Callable[[dict[str, float]], None] | None = None,
) -> TrainReport:
    """Train the model's own recipe again with the data sets `extra` (mined or corrected clips) added as
    data.hard_negatives, and save it in place; the replaced version is kept (`rollback`).

    keep_thresholds: keep the current thresholds (seconds with a frozen encoder); otherwise calibrate
    and test again as `wakeword train` does.
    """
    from wakeword.pipeline import train_recipe

    config = read_config(model_dir)
    recipe = model_recipe(config, model_dir)
    missing = [p for p in [*recipe.data.train, *recipe.data.hard_negatives] if not Path(p).exists()]
    if missing:
        raise FileNotFoundError(f"{model_dir}: retraining needs the original training data; missing {missing[0]}")
    hard = tuple(dict.fromkeys([*recipe.data.hard_negatives, *(str(Path(p).resolve()) for p in extra)]))
    data = dataclasses.replace(
        recipe.data,
        hard_negatives=hard,
        hard_negative_weight=recipe.data.hard_negative_weight if weight is None else weight,
    )
    thresholds = {w: config.threshold(w) for w in config.wake_words} if keep_thresholds else None
    recipe = dataclasses.replace(recipe, data=data)
    return train_recipe(recipe, model_dir, on_epoch_end, keep_thresholds=thresholds, keep_previous=True)


def rollback(model_dir: str | Path) -> Path:
    """Put back the model version that the last retrain replaced."""
    return rollback_detector(model_dir)
