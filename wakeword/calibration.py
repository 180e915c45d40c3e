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

import numpy as np
from tqdm.auto import tqdm

from wakeword.data.clips import Clip, normalize_word
from wakeword.data.long_audio import (
    build_synthetic_longform,
    int8_encoder,
    says_any,
    score_hops,
    score_long_clip,
    segment_long_audio,
)
from wakeword.evaluate import Scored, calibrate, word_report
from wakeword.models.base import Detector, DetectorConfig
from wakeword.recipes import Recipe

MIN_CALIBRATION_HOURS = 0.5  # with no false accept in less audio, the 95% bound is above 6 per hour
NEAR_MISS_KINDS = ("near", "partial", "reordered")  # synthetic confusables' meta["kind"] (wakeword.data.synth)
# int8 first pass of long calibration audio (calibrate_on_long_audio): hops within REFINE_MARGIN_LOGITS of an int8
# threshold are scored again in float32. On the 30-minute long form of 8 benchmark models (issue-17 jarvis, snowboy
# and smart mirror heads) int8 frames moved hop logits by 0.16 on average and by up to 0.85-3.0; a 6-logit margin
# re-scored 0.2-16% of the hops. The largest change seen on the re-scored hops, doubled, plus INT8_ERROR_ALLOWANCE
# must stay under half the margin; where it does not, the margin doubles (REFINE_ROUNDS), then all is float32.
REFINE_MARGIN_LOGITS = 6.0
REFINE_ROUNDS = 3  # margins 6, 12 and 24 logits, then a float32 pass of everything
INT8_ERROR_ALLOWANCE = 0.25

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


def score_long(model: Detector, pairs: Sequence[ClipPair], int8: bool = False) -> list[Scored]:
    """Score tracks of long-audio segments, streamed whole (no padding added); int8: from the encoder's int8
    frames (approximate, see `calibrate_on_long_audio`)."""
    desc = "scoring calibration audio" + (" (int8 first pass)" if int8 else "")
    return [
        Scored(clip.labels, clip.duration_seconds, score_long_clip(model, root / clip.path, int8=int8), 0.0)
        for clip, root in tqdm(pairs, desc=desc, leave=False)
    ]


def calibrate_on_long_audio(
    model: Detector, val: Sequence[Scored], pairs: Sequence[ClipPair], target: float, refractory_seconds: float
) -> tuple[dict[str, float], list[Scored]]:
    """(thresholds on `val` and the long audio `pairs`, the long audio's score tracks).

    Long audio is most of a first training run's cost (30 minutes of synthetic long form is 18,000 windows
    to encode), so a frozen Whisper encoder scores it first through its int8 graph (2.3 times as fast), sets
    thresholds on that, scores again in float32 every hop whose int8 logit is within REFINE_MARGIN_LOGITS of
    a word's threshold (the floor), and sets the thresholds again. Every hop that can fire at a threshold
    above floor + (the largest int8 error) is then a float32 score, so when the threshold search settles
    there (`_settled`) the thresholds and false accepts are those of a float32 pass. Otherwise the margin
    doubles (REFINE_ROUNDS times), and then the whole long audio is scored in float32.
    """
    config = model.config
    if not pairs or int8_encoder(model) is None:
        long = score_long(model, pairs)
        return calibrate(config, [*val, *long], target, refractory_seconds), long
    rough = score_long(model, pairs, int8=True)
    first = calibrate(config, [*val, *rough], target, refractory_seconds)
    for margin in REFINE_MARGIN_LOGITS * 2.0 ** np.arange(REFINE_ROUNDS):  # wider when a head amplifies int8 error
        floors = np.array([first[w] - margin for w in config.wake_words])
        refined, error = _refine(model, pairs, rough, floors)
        thresholds = calibrate(config, [*val, *refined], target, refractory_seconds)
        bound = 2 * error + INT8_ERROR_ALLOWANCE  # what an unchecked hop's int8 error is taken to be at most
        if bound < margin / 2 and all(
            _settled(config, [*val, *refined], thresholds, word, floors[k] + bound)
            for k, word in enumerate(config.wake_words)
        ):
            return thresholds, refined
    print(f"calibration: int8 first pass not conclusive (largest int8 error {error:.2f}); scoring in float32")
    long = score_long(model, pairs)
    return calibrate(config, [*val, *long], target, refractory_seconds), long


def score_long_above(model: Detector, pairs: Sequence[ClipPair], floors: np.ndarray) -> list[Scored]:
    """Tracks of long audio whose every hop at or above `floors` ((n_words,) logits) is a float32 score, and
    every other hop provably below them: what a caller needs that only asks which hops reach a FIXED threshold
    (floors = threshold - REFINE_MARGIN_LOGITS; a cascade's gate asks where stage 2 fires).

    As `calibrate_on_long_audio`: an int8 first pass (its frames usually in the disk cache from the model's own
    calibration), float32 on every hop whose int8 logit reaches the floor; when the int8 error seen there is
    not well inside the margin, the whole audio again in float32."""
    if not pairs or int8_encoder(model) is None:
        return score_long(model, pairs)
    rough = score_long(model, pairs, int8=True)
    refined, error = _refine(model, pairs, rough, np.asarray(floors, np.float64))
    if 2 * error + INT8_ERROR_ALLOWANCE < REFINE_MARGIN_LOGITS / 2:
        return refined
    print(f"long audio: int8 first pass not conclusive (largest int8 error {error:.2f}); scoring in float32")
    return score_long(model, pairs)


def _refine(
    model: Detector, pairs: Sequence[ClipPair], rough: Sequence[Scored], floors: np.ndarray
) -> tuple[list[Scored], float]:
    """The tracks with every hop that reaches a word's floor (floors: (n_words,) logits) scored again in
    float32, and the largest |float32 - int8| difference seen on those hops."""
    refined, error = [], 0.0
    for (clip, root), scored in zip(pairs, rough, strict=True):
        rows = np.flatnonzero((scored.track >= floors).any(axis=1))
        track = scored.track
        if rows.size:
            exact = score_hops(model, root / clip.path, rows)
            error = max(error, float(np.abs(exact - track[rows]).max()))
            track = track.copy()
            track[rows] = exact
        refined.append(Scored(scored.labels, scored.duration_seconds, track, scored.padded_seconds))
    return refined, error


def _settled(config: DetectorConfig, scored: Sequence[Scored], thresholds: dict[str, float], word: str,
             exact_above: float) -> bool:  # fmt: skip
    """Whether the threshold search for `word` stopped on a score above `exact_above` (where every track holds
    float32 scores): `threshold_for_fa_per_hour` walks down the distinct scores and stops at the first whose
    FA/h exceeds the target, the largest score below the threshold it returns."""
    k = list(config.wake_words).index(word)
    values = np.concatenate([s.track[:, k] for s in scored if s.labels.get(word) == 0] or [np.zeros(0)])
    below = values[values < thresholds[word]]
    return below.size > 0 and float(below.max()) >= exact_above


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
