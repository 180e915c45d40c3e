"""From a recipe to a saved, calibrated detector: data, split, build, fit, calibrate, report, save.

Every family goes through these same steps; families differ only in build_model / compute_loss (and
`phoneme`, which has nothing to learn, skips fitting).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from wakeword.audio import seconds_to_samples
from wakeword.calibration import (
    calibrate_on_long_audio,
    calibration_longform,
    calibration_record,
    near_miss_record,
    negative_audio_pairs,
    split_near_misses,
)
from wakeword.checkpoint import save_detector
from wakeword.data.clips import Clip, DataSet, normalize_word
from wakeword.data.dataset import is_real, split_by_group
from wakeword.data.long_audio import score_long_clip
from wakeword.evaluate import AFTER_SECONDS, Scored, WordReport, score_items, word_report, write_det_plot
from wakeword.fitting import feature_cache_dir, fit_detector  # noqa: F401 (feature_cache_dir: re-exported)
from wakeword.models import get_family
from wakeword.models.base import Detector, DetectorConfig
from wakeword.recipes import Recipe
from wakeword.timing import StageTimer, active_stages, timed
from wakeword.train import STATE_DIR, seed_everything

ClipPair = tuple[Clip, Path]


@dataclass
class Splits:
    train: list[ClipPair]
    val: list[ClipPair]
    test: list[ClipPair]
    real_rule: str = ""  # how the user's own recordings were split, in words (printed and stored)

    def counts(self) -> dict[str, Any]:
        counts: dict[str, Any] = {name: _count(getattr(self, name)) for name in ("train", "val", "test")}
        return {**counts, "real_rule": self.real_rule}


def _count(pairs: Sequence[ClipPair]) -> dict[str, int]:
    n_pos = sum(1 for c, _ in pairs if any(c.labels.values()))
    n_real = sum(1 for c, _ in pairs if is_real(c) and any(c.labels.values()))
    n_real_negative = sum(1 for c, _ in pairs if is_real(c) and not any(c.labels.values()))
    return {
        "clips": len(pairs),
        "positive": n_pos,
        "negative": len(pairs) - n_pos,
        "real_positive": n_real,
        "real_negative": n_real_negative,
    }


@dataclass
class TrainReport:
    model_dir: str
    words: dict[str, WordReport] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    calibration: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, float] = field(default_factory=dict)  # wall seconds per stage (wakeword.timing)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def synthesize_if_needed(recipe: Recipe) -> list[Path]:
    """Build the recipe's synthetic data sets (one per wake word) unless they already exist."""
    spec = recipe.data.synth
    if spec is None:
        return []
    from wakeword.data.synth import build_synthetic_dataset

    roots = []
    for word in recipe.wake_words:
        root = Path(spec.out) / normalize_word(word).replace(" ", "-")
        if not (root / "clips.jsonl").exists() or not DataSet(root).clips():
            with timed("synthesis"):
                build_synthetic_dataset(
                    word,
                    root,
                    n_positives=spec.n_positives,
                    n_confusables=spec.n_confusables,
                    n_generic=spec.n_generic,
                    seed=spec.seed,
                    qc=spec.qc,
                )
        roots.append(root)
    return roots


def collect_clips(recipe: Recipe) -> tuple[list[ClipPair], list[ClipPair]]:
    """(clips from synth + data.train, mined hard negatives) as (clip, data-set root) pairs."""
    roots = synthesize_if_needed(recipe) + [Path(p) for p in recipe.data.train]
    words = {normalize_word(w) for w in recipe.wake_words}
    # clips labelled for none of the words (a room recording, another model's word) train nothing here
    pairs = [(clip, root) for root in roots for clip in DataSet(root).clips() if words & set(clip.labels)]
    if recipe.data.max_real_clips is not None:
        pairs = _limit_real_positives(pairs, recipe.data.max_real_clips, recipe.train.seed)
    hard = [(clip, Path(p)) for p in recipe.data.hard_negatives for clip in DataSet(p).clips()]
    if not pairs:
        raise ValueError(f"recipe {recipe.name}: no clips (give data.train folders or data.synth)")
    return pairs, hard


def _limit_real_positives(pairs: list[ClipPair], n_keep: int, seed: int) -> list[ClipPair]:
    real = [i for i, (c, _) in enumerate(pairs) if is_real(c) and any(c.labels.values())]
    keep = set(np.random.default_rng(seed).permutation(real)[:n_keep].tolist())
    return [p for i, p in enumerate(pairs) if i not in real or i in keep]


def speaker_of(clip: Clip) -> str:
    """Who recorded a clip, for the hold-out rule: clips with no speaker count as one unknown speaker.
    (Older app recordings named each clip its own session group; that says nothing about who spoke.)"""
    group = clip.meta.get("session_group")
    return str((group if group != clip.id else None) or clip.speaker or "unknown speaker")


def split_clips(pairs: list[ClipPair], recipe: Recipe) -> Splits:
    """Train / val / test with no speaker or session group on two sides.

    The user's own recordings are held out only when they come from at least
    `data.hold_out_real_min_speakers` speakers; with fewer, every one of them trains the model (a held-out
    speaker would be a third of the real data, and its FRR an anecdote), and validation, calibration and
    the test report use the synthetic voices and the negative audio instead.
    """
    spec, seed = recipe.data, recipe.train.seed
    real = [p for p in pairs if is_real(p[0])]
    speakers = sorted({speaker_of(c) for c, _ in real})
    hold_out = len(speakers) >= spec.hold_out_real_min_speakers
    kept_in = [] if hold_out else real
    rest, test = split_by_group([p for p in pairs if hold_out or not is_real(p[0])], spec.test_fraction, seed=seed)
    train, val = split_by_group(rest, spec.val_fraction / max(1e-9, 1 - spec.test_fraction), seed=seed + 1)
    splits = Splits(train + kept_in, val, test)
    splits.real_rule = _real_rule(splits, speakers, hold_out, spec.hold_out_real_min_speakers)
    return splits


def _real_rule(splits: Splits, speakers: Sequence[str], hold_out: bool, min_speakers: int) -> str:
    if not speakers:
        return "no real recordings: trained, calibrated and tested on synthetic voices"
    n = {name: sum(is_real(c) for c, _ in getattr(splits, name)) for name in ("train", "val", "test")}
    total = f"{sum(n.values())} real recording(s) from {len(speakers)} speaker(s)"
    if not hold_out:
        return (
            f"{total}: all {n['train']} train the model (fewer than {min_speakers} speakers, so none is held "
            "out); validation, calibration and the test report use synthetic voices and negative audio"
        )
    return f"{total}, split by speaker: {n['train']} train, {n['val']} validation, {n['test']} test"


def build_config(recipe: Recipe) -> DetectorConfig:
    model = recipe.model
    encoder = {}
    if model.family == "transfer":
        encoder = {
            "name": model.encoder,
            "revision": model.revision,
            "trainable": model.trainable,
            "top_k": model.top_k,
        }
    return DetectorConfig(
        family=model.family,
        wake_words=tuple(normalize_word(w) for w in recipe.wake_words),
        window_seconds=model.window_seconds,
        hop_seconds=model.hop_seconds,
        encoder=encoder,
        head=dict(model.head),
        training={"recipe": absolute_paths(recipe).to_dict(), "paths": PATHS_NOTE},
    )


PATHS_NOTE = (
    "training.recipe names the training data by absolute paths on the machine that trained this model, so that "
    "`wakeword retrain` finds it; nothing else in this folder names a path, and the model runs without them"
)


def absolute_paths(recipe: Recipe) -> Recipe:
    """The recipe with its data folders made absolute, so a saved model can be retrained from anywhere."""
    data = recipe.data

    def absolute(paths: Sequence[str]) -> tuple[str, ...]:
        return tuple(str(Path(p).resolve()) for p in paths)

    synth = data.synth and dataclasses.replace(data.synth, out=str(Path(data.synth.out).resolve()))
    data = dataclasses.replace(
        data,
        synth=synth,
        train=absolute(data.train),
        hard_negatives=absolute(data.hard_negatives),
        negative_audio=absolute(data.negative_audio),
        noise_dirs=absolute(data.noise_dirs),
        rir_dirs=absolute(data.rir_dirs),
    )
    return dataclasses.replace(recipe, data=data)


def score_pairs(detector: Detector, pairs: Sequence[ClipPair], desc: str) -> list[Scored]:
    """Score clips as `wakeword.evaluate.score_clip` does. A frozen encoder's frames of each padded clip
    are cached on disk, so re-scoring the same clips with a retrained head (mining, retrain, another draw
    of real clips) costs a head pass."""
    if not getattr(detector, "encoder_frozen", False):
        return score_items(detector, [(root / clip.path, clip.labels) for clip, root in pairs], desc=desc)
    padding = (detector.config.window_samples, seconds_to_samples(AFTER_SECONDS))
    return [
        Scored(dict(clip.labels), clip.duration_seconds, score_long_clip(detector, root / clip.path, padding))
        for clip, root in tqdm(pairs, desc=desc, leave=False)
    ]


def train_recipe(
    recipe: Recipe,
    out_dir: str | Path,
    on_epoch_end: Callable[[dict[str, float]], None] | None = None,
    *,
    keep_thresholds: dict[str, float] | None = None,
    keep_previous: bool = False,
    stages: StageTimer | None = None,
) -> TrainReport:
    """_train_recipe, timed stage by stage (report.stages, also in report.json). stages: a timer to
    report to (a caller that times earlier work, or shows each stage as it starts); default a new one."""
    with (stages or StageTimer()).active():
        return _train_recipe(
            recipe, out_dir, on_epoch_end, keep_thresholds=keep_thresholds, keep_previous=keep_previous
        )


def _train_recipe(
    recipe: Recipe,
    out_dir: str | Path,
    on_epoch_end: Callable[[dict[str, float]], None] | None = None,
    keep_thresholds: dict[str, float] | None = None,
    keep_previous: bool = False,
) -> TrainReport:
    """Run a recipe end to end and save the calibrated detector in `out_dir` (config.json + model.safetensors).

    The threshold of each word is calibrated on the validation split to recipe.evaluate.target_fa_per_hour;
    FRR and FA/h are then reported on the held-out test split, and a DET plot is written to out_dir/det.png.
    keep_thresholds: use these thresholds and skip calibration and the test report (a quick retrain).
    keep_previous: keep the model already in out_dir as out_dir/previous (see rollback_detector).
    """
    import time

    from accelerate import PartialState

    started, out_dir = time.monotonic(), Path(out_dir)
    if recipe.model.family == "cascade":  # two stages: the second trains through this function, alone
        from wakeword.distill import train_cascade

        return train_cascade(recipe, out_dir, on_epoch_end, keep_thresholds, keep_previous)
    # one process, or one of several under `accelerate launch` (CPU-only processes join with gloo)
    state = PartialState(cpu=not torch.cuda.is_available())
    with state.main_process_first():  # the main process synthesises; the others then reuse its data set
        pairs, hard = collect_clips(recipe)
    with state.main_process_first():
        long_train, long_calibration = negative_audio_pairs(recipe)
    splits = split_clips(pairs, recipe)
    if state.is_main_process:
        print(f"split: {splits.real_rule}", flush=True)
    config = build_config(recipe)
    seed_everything(recipe.train.seed)  # the new head's initial weights too: a rerun gives the same model
    model = get_family(config.family).build_model(config)
    history = []
    if any(p.requires_grad for p in model.parameters()):
        history = fit_detector(model, recipe, splits, hard, out_dir, on_epoch_end, long_train)
    if not state.is_main_process:  # every process trained the same weights; one calibrates and saves
        return TrainReport(str(out_dir), history=history)
    model.eval()
    counts = {**splits.counts(), "hard_negatives": len(hard), "negative_audio_segments": len(long_train)}
    if keep_thresholds is not None:
        words: dict[str, WordReport] = {}
        model.config = model.config.replace(
            thresholds={w: float(keep_thresholds[w]) for w in config.wake_words},
            calibration={"kept_from_previous_model": True},
            training={**config.training, "counts": counts},
        )
    else:
        words = _calibrate_and_test(model, recipe, splits, counts, out_dir, long_calibration)
    save_detector(model, out_dir, keep_previous=keep_previous)
    shutil.rmtree(out_dir / STATE_DIR, ignore_errors=True)  # finished: a later run must not resume this one
    seconds = round(time.monotonic() - started, 1)
    report = TrainReport(str(out_dir), words, counts, history, seconds, dict(model.config.calibration), active_stages())
    (out_dir / "report.json").write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
    return report


def _calibrate(
    model: Detector, recipe: Recipe, splits: Splits, long_calibration: Sequence[ClipPair]
) -> tuple[dict[str, float], dict[str, Any], list[Scored]]:
    """(thresholds, the calibration record, every scored validation clip). Synthetic near misses are left out
    of the FA/h calibration and reported (see wakeword.calibration)."""
    config, target = model.config, recipe.evaluate.target_fa_per_hour
    val_pairs = splits.val or splits.train
    val_scored = score_pairs(model, val_pairs, "scoring validation")
    val, near = split_near_misses(val_pairs, val_scored)
    longform = calibration_longform(recipe)
    refractory = recipe.evaluate.refractory_seconds
    thresholds, long = calibrate_on_long_audio(model, val, [*long_calibration, *longform], target, refractory)
    calibration_set = val + long
    sources = (f"validation clips but {len(near)} synthetic near miss(es), {len(long_calibration)} segment(s) of "
               f"negative audio, {len(longform)} segment(s) of synthetic long-form speech")  # fmt: skip
    calibration = calibration_record(config, calibration_set, thresholds, recipe, sources)
    for word, near_misses in near_miss_record(config, near, thresholds).items():
        entry = calibration["words"][word]
        entry.update(near_misses)
        print(f"{word}: calibrated to {target:g} FA/h on {entry['negative_hours'] * 60:.1f} min of negatives; "
              f"accepts {entry['accepted']} of {entry['n_near_misses']} synthetic near misses"
              + (f" - WARNING: {entry['warning']}" if "warning" in entry else ""), flush=True)  # fmt: skip
    return thresholds, calibration, val_scored


def _calibrate_and_test(
    model: Detector,
    recipe: Recipe,
    splits: Splits,
    counts: dict[str, Any],
    out_dir: Path,
    long_calibration: Sequence[ClipPair] = (),
) -> dict[str, WordReport]:
    """Thresholds from the validation split plus all calibration audio (the negative audio's calibration
    part, the synthetic long form), then FRR / FA/h on the test split and a DET plot."""
    config, refractory = model.config, recipe.evaluate.refractory_seconds
    with timed("calibration"):
        thresholds, calibration, val = _calibrate(model, recipe, splits, long_calibration)
    with timed("test"):
        test_pairs = splits.test or splits.val or splits.train
        test = score_pairs(model, splits.test, "scoring test") if splits.test else val
        # FA/h on the test split is measured as the threshold was set: without the synthetic near misses
        test, near = split_near_misses(test_pairs, test)
        words = {w: word_report(config, test, w, thresholds[w], refractory) for w in config.wake_words}
    for word, entry in near_miss_record(config, near, thresholds).items():
        calibration["words"][word]["test_near_misses"] = entry
    model.config = model.config.replace(  # the model's own config: families fill in their defaults
        thresholds=thresholds,
        calibration=calibration,
        training={**config.training, "counts": counts, "test": {w: asdict(r) for w, r in words.items()}},
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    write_det_plot(config, test, out_dir / "det.png", refractory, "DET on the held-out split")
    return words
