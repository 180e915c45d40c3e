"""From a recipe to a saved, calibrated detector: data, split, build, fit, calibrate, report, save.

Every family goes through these same steps; families differ only in build_model / compute_loss (and
`phoneme`, which has nothing to learn, skips fitting).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wakeword.checkpoint import save_detector
from wakeword.data.augment import AugmentSettings
from wakeword.data.clips import Clip, DataSet, normalize_word
from wakeword.data.dataset import WakeWordDataset, split_by_group
from wakeword.evaluate import Scored, WordReport, calibrate, score_items, word_report, write_det_plot
from wakeword.models import get_family
from wakeword.models.base import Detector, DetectorConfig
from wakeword.recipes import Recipe
from wakeword.train import STATE_DIR, cache_features, fit

ClipPair = tuple[Clip, Path]


@dataclass
class Splits:
    train: list[ClipPair]
    val: list[ClipPair]
    test: list[ClipPair]

    def counts(self) -> dict[str, dict[str, int]]:
        return {name: _count(getattr(self, name)) for name in ("train", "val", "test")}


def _count(pairs: Sequence[ClipPair]) -> dict[str, int]:
    n_pos = sum(1 for c, _ in pairs if any(c.labels.values()))
    n_real = sum(1 for c, _ in pairs if c.source in ("recorded", "corpus") and any(c.labels.values()))
    return {"clips": len(pairs), "positive": n_pos, "negative": len(pairs) - n_pos, "real_positive": n_real}


@dataclass
class TrainReport:
    model_dir: str
    words: dict[str, WordReport] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0

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
    pairs = [(clip, root) for root in roots for clip in DataSet(root).clips()]
    if recipe.data.max_real_clips is not None:
        pairs = _limit_real_positives(pairs, recipe.data.max_real_clips, recipe.train.seed)
    hard = [(clip, Path(p)) for p in recipe.data.hard_negatives for clip in DataSet(p).clips()]
    if not pairs:
        raise ValueError(f"recipe {recipe.name}: no clips (give data.train folders or data.synth)")
    return pairs, hard


def _limit_real_positives(pairs: list[ClipPair], n_keep: int, seed: int) -> list[ClipPair]:
    real = [i for i, (c, _) in enumerate(pairs) if c.source in ("recorded", "corpus") and any(c.labels.values())]
    keep = set(np.random.default_rng(seed).permutation(real)[:n_keep].tolist())
    return [p for i, p in enumerate(pairs) if i not in real or i in keep]


def split_clips(pairs: list[ClipPair], recipe: Recipe) -> Splits:
    """Train / val / test with no speaker or session group on two sides."""
    spec, seed = recipe.data, recipe.train.seed
    rest, test = split_by_group(pairs, spec.test_fraction, seed=seed)
    train, val = split_by_group(rest, spec.val_fraction / max(1e-9, 1 - spec.test_fraction), seed=seed + 1)
    return Splits(train, val, test)


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
        training={"recipe": recipe.to_dict()},
    )


class _Weighted(torch.utils.data.Dataset):
    """Adds a per-window loss weight: mined hard negatives count `weight` times a normal window."""

    def __init__(self, windows: WakeWordDataset, heavy_ids: set[str], weight: float) -> None:
        self.windows, self.heavy_ids, self.weight = windows, heavy_ids, weight

    def __len__(self) -> int:
        return len(self.windows)

    def set_epoch(self, epoch: int) -> None:
        self.windows.set_epoch(epoch)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.windows[index]
        return {**item, "weight": torch.tensor(self.weight if item["clip_id"] in self.heavy_ids else 1.0)}


def class_balance(counts: dict[str, dict[str, int]], words: Sequence[str]) -> torch.Tensor:
    """pos_weight per word = n_negative / n_positive windows, clamped to [0.1, 100]: shape (n_words,)."""
    ratios = [counts[w]["negative"] / max(1, counts[w]["positive"]) for w in words]
    return torch.tensor(ratios, dtype=torch.float32).clamp(0.1, 100.0)


def fit_detector(
    model: Detector,
    recipe: Recipe,
    splits: Splits,
    hard: list[ClipPair],
    out_dir: Path,
    on_epoch_end: Callable[[dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Train a learning family on the training split (+ weighted hard negatives); returns the history."""
    words, spec = model.config.wake_words, recipe.train
    augment = AugmentSettings(
        **{**spec.augment, "noise_dirs": recipe.data.noise_dirs, "rir_dirs": recipe.data.rir_dirs}
    )
    train_windows = WakeWordDataset(
        splits.train + hard, words, model.config.window_seconds, train=True, augment=augment, seed=spec.seed
    )
    val_windows = WakeWordDataset(splits.val or splits.train, words, model.config.window_seconds, train=False)
    pos_weight = class_balance(train_windows.counts(), words)
    train_set: torch.utils.data.Dataset = _Weighted(
        train_windows, {c.id for c, _ in hard}, recipe.data.hard_negative_weight
    )
    val_set: torch.utils.data.Dataset = val_windows
    if getattr(model, "encoder_frozen", False):
        train_set = cache_features(model.encode, train_set, spec.n_views, spec.batch_size, "encoding train")
        val_set = cache_features(model.encode, val_windows, 1, spec.batch_size, "encoding val")
    family = get_family(model.family)
    result = fit(model, family.compute_loss, train_set, val_set, spec, out_dir / STATE_DIR, pos_weight, on_epoch_end)
    return result.history


def score_pairs(detector: Detector, pairs: Sequence[ClipPair], desc: str) -> list[Scored]:
    return score_items(detector, [(root / clip.path, clip.labels) for clip, root in pairs], desc=desc)


def train_recipe(
    recipe: Recipe, out_dir: str | Path, on_epoch_end: Callable[[dict[str, float]], None] | None = None
) -> TrainReport:
    """Run a recipe end to end and save the calibrated detector in `out_dir` (config.json + model.safetensors).

    The threshold of each word is calibrated on the validation split to recipe.evaluate.target_fa_per_hour;
    FRR and FA/h are then reported on the held-out test split, and a DET plot is written to out_dir/det.png.
    """
    import time

    from accelerate import PartialState

    started, out_dir = time.monotonic(), Path(out_dir)
    # one process, or one of several under `accelerate launch` (CPU-only processes join with gloo)
    state = PartialState(cpu=not torch.cuda.is_available())
    with state.main_process_first():  # the main process synthesises; the others then reuse its data set
        pairs, hard = collect_clips(recipe)
    splits = split_clips(pairs, recipe)
    config = build_config(recipe)
    model = get_family(config.family).build_model(config)
    history = []
    if any(p.requires_grad for p in model.parameters()):
        history = fit_detector(model, recipe, splits, hard, out_dir, on_epoch_end)
    if not state.is_main_process:  # every process trained the same weights; one calibrates and saves
        return TrainReport(str(out_dir), history=history)
    model.eval()
    refractory, target = recipe.evaluate.refractory_seconds, recipe.evaluate.target_fa_per_hour
    val = score_pairs(model, splits.val or splits.train, "scoring validation")
    thresholds = calibrate(config, val, target, refractory)
    test = score_pairs(model, splits.test or splits.val, "scoring test") if splits.test else val
    words = {w: word_report(config, test, w, thresholds[w], refractory) for w in config.wake_words}
    counts = {**splits.counts(), "hard_negatives": len(hard)}
    model.config = model.config.replace(  # the model's own config: families fill in their defaults
        thresholds=thresholds,
        calibration={"target_fa_per_hour": target, "refractory_seconds": refractory, "measured_on": "validation"},
        training={**config.training, "counts": counts, "test": {w: asdict(r) for w, r in words.items()}},
    )
    save_detector(model, out_dir)
    shutil.rmtree(out_dir / STATE_DIR, ignore_errors=True)  # finished: a later run must not resume this one
    write_det_plot(config, test, out_dir / "det.png", refractory, "DET on the held-out split")
    report = TrainReport(str(out_dir), words, counts, history, round(time.monotonic() - started, 1))
    (out_dir / "report.json").write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
    return report
