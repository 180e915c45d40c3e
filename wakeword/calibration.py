"""Calibration audio: what a detector's thresholds rest on, and a record of how much that was.

Thresholds are set to `evaluate.target_fa_per_hour` on every negative the recipe has that training did not
use: the validation clips, the calibration quarter of `data.negative_audio` (see wakeword.data.long_audio),
and `evaluate.calibration_minutes` of synthetic long-form speech in noise. A model calibrated on less than
MIN_CALIBRATION_HOURS says so in its config, its report and the app.
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
