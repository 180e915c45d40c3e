"""Calibration audio: what a detector's thresholds rest on, and a record of how much that was.

Thresholds are set to `evaluate.target_fa_per_hour` on every negative the recipe has that training did not
use: the validation clips, the calibration quarter of `data.negative_audio` (see wakeword.data.long_audio),
and `evaluate.calibration_minutes` of synthetic long-form speech in noise. A model calibrated on less than
MIN_CALIBRATION_HOURS says so in its config, its report and the app.

Synthetic near misses ("jarvik", "jar", "vis jar": NEAR_MISS_KINDS) do not set the threshold. They are made
to sit next to the word, at a density no hour of real audio has: counted as hours of audio, the two or three
that score like the word set the threshold above most real recordings of it (on the jarvis benchmark of issue
17 they did so in every model: 42-77% of noisy real positives rejected, while the real negative audio and the
real read speech scored far lower). They are reported instead: how many the threshold accepts, and which.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from wakeword.data.clips import Clip, normalize_word
from wakeword.data.long_audio import build_synthetic_longform, says_any, score_long_clip, segment_long_audio
from wakeword.evaluate import Scored, word_report
from wakeword.models.base import Detector, DetectorConfig
from wakeword.recipes import Recipe

MIN_CALIBRATION_HOURS = 0.5  # with no false accept in less audio, the 95% bound is above 6 per hour
NEAR_MISS_KINDS = ("near", "partial", "reordered")  # synthetic confusables' meta["kind"] (wakeword.data.synth)

ClipPair = tuple[Clip, Path]


def negative_audio_pairs(recipe: Recipe) -> tuple[list[ClipPair], list[ClipPair]]:
    """(training, calibration) segments of `data.negative_audio`, labelled 0 for every wake word."""
    if not recipe.data.negative_audio:
        return [], []
    dataset = segment_long_audio(recipe.data.negative_audio)
    labels = {normalize_word(w): 0 for w in recipe.wake_words}
    pairs = [(clip.replace(labels=labels), dataset.root) for clip in dataset.clips()]
    calibration = [p for p in pairs if p[0].meta.get("part") == "calibration"]
    return [p for p in pairs if p[0].meta.get("part") != "calibration"], calibration


def calibration_longform(recipe: Recipe) -> list[ClipPair]:
    """The synthetic long-form calibration audio; a segment is a negative for each word it does not say."""
    if recipe.evaluate.calibration_minutes <= 0:
        return []
    dataset = build_synthetic_longform(recipe.evaluate.calibration_minutes, 0, recipe.data.noise_dirs)
    words = [normalize_word(w) for w in recipe.wake_words]
    pairs = []
    for clip in dataset.clips():
        labels = {w: 0 for w in words if not says_any(clip, [w])}
        if labels:
            pairs.append((clip.replace(labels=labels), dataset.root))
    return pairs


def is_near_miss(clip: Clip) -> bool:
    """A synthetic confusable made to sound almost like the word (never a user's recording)."""
    return clip.source == "synth" and clip.meta.get("kind") in NEAR_MISS_KINDS


def split_near_misses(pairs: Sequence[ClipPair], scored: Sequence[Scored]) -> tuple[list[Scored], list[Scored]]:
    """(calibration clips, near misses) of scored validation `pairs` (same order). The near misses stay in
    calibration when nothing else is a negative, so a threshold can still be set."""
    near = [s for (clip, _), s in zip(pairs, scored, strict=True) if is_near_miss(clip)]
    rest = [s for (clip, _), s in zip(pairs, scored, strict=True) if not is_near_miss(clip)]
    if not any(0 in s.labels.values() for s in rest):
        return list(scored), []
    return rest, near


def near_miss_record(config: DetectorConfig, near: Sequence[Scored], thresholds: dict[str, float]) -> dict:
    """Per word: how many synthetic near misses there were and how many the threshold accepts."""
    record = {}
    for k, word in enumerate(config.wake_words):
        clips = [s for s in near if s.labels.get(word) == 0]
        accepted = sum(1 for s in clips if s.track.size and float(s.track[:, k].max()) >= thresholds[word])
        record[word] = {"n_near_misses": len(clips), "accepted": accepted}
    return record


def score_long(model: Detector, pairs: Sequence[ClipPair]) -> list[Scored]:
    """Score tracks of long-audio segments, streamed whole (no padding added)."""
    return [
        Scored(clip.labels, clip.duration_seconds, score_long_clip(model, root / clip.path), padded_seconds=0.0)
        for clip, root in tqdm(pairs, desc="scoring calibration audio", leave=False)
    ]


def calibration_record(
    config: DetectorConfig, scored: Sequence[Scored], thresholds: dict[str, float], recipe: Recipe, sources: str
) -> dict[str, Any]:
    """What the thresholds rest on: the hours of negatives, the false accepts left there, and a warning
    when there is too little audio to promise the target."""
    spec = recipe.evaluate
    record: dict[str, Any] = {"target_fa_per_hour": spec.target_fa_per_hour,
                              "refractory_seconds": spec.refractory_seconds, "measured_on": sources}  # fmt: skip
    for word in config.wake_words:
        report = word_report(config, scored, word, thresholds[word], spec.refractory_seconds)
        entry = {"negative_hours": round(report.negative_hours, 4), "false_accepts": report.n_false_accepts,
                 "fa_per_hour_interval": [report.fa_per_hour_low, report.fa_per_hour_high]}  # fmt: skip
        if report.negative_hours < MIN_CALIBRATION_HOURS:
            entry["warning"] = (
                f"calibrated on only {report.negative_hours * 60:.1f} min of negative audio "
                f"({report.false_accepts()}); add negative audio (data.negative_audio, the app's room recording) or "
                f"set evaluate.calibration_minutes >= {MIN_CALIBRATION_HOURS * 60:.0f} to promise "
                f"{spec.target_fa_per_hour:g} per hour"
            )
        record.setdefault("words", {})[word] = entry
    return record
