"""From a recipe to a saved, calibrated detector: data, split, build, fit, calibrate, report, save.

Every family goes through these same steps; families differ only in build_model / compute_loss (and
`phoneme`, which has nothing to learn, skips fitting).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
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
from wakeword.timing import StageTimer, active_stages, timed
from wakeword.train import STATE_DIR, cache_features, fit, seed_everything

FEATURE_CACHE_FILES = 12  # encoded training sets kept on disk (~60 MB each for whisper-tiny.en)

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
        training={"recipe": absolute_paths(recipe).to_dict()},
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
        noise_dirs=absolute(data.noise_dirs),
        rir_dirs=absolute(data.rir_dirs),
    )
    return dataclasses.replace(recipe, data=data)


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


def feature_cache_dir() -> Path:
    from wakeword.encoders.whisper import cache_dir

    return cache_dir() / "features"


def _feature_key(model: Detector, windows: WakeWordDataset, n_views: int, seed: int, augment: Any) -> str:
    """What an encoded training set depends on: encoder, window, clips (file + labels), views, draws."""
    encoder = dict(model.config.encoder)
    if Path(str(encoder.get("name", ""))).exists():  # a local folder's weights may change under one name
        encoder["mtime"] = os.stat(encoder["name"]).st_mtime_ns
    clips = [(str(root.resolve()), c.path, c.id, sorted(c.labels.items())) for c, root in windows.clips]
    parts = [encoder, model.config.window_seconds, windows.train, clips, n_views, seed, repr(augment)]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:24]


def encode_cached(
    model: Detector, windows: torch.utils.data.Dataset, key: str | None, n_views: int, batch_size: int, desc: str
) -> torch.utils.data.TensorDataset:
    """cache_features, kept on disk under `key` so a retrain (say, with mined negatives added) only
    encodes what is new. Files are written atomically; the least recently used ones are removed."""
    from safetensors.torch import load_file, save_file

    path = feature_cache_dir() / f"{key}.safetensors" if key else None
    if path is not None and path.exists():
        try:
            tensors = load_file(path)
            os.utime(path)
            return torch.utils.data.TensorDataset(*(tensors[n] for n in ("features", "labels", "mask", "weight")))
        except Exception:  # a damaged cache file is only a cache miss
            path.unlink(missing_ok=True)
    data = cache_features(model.encode, windows, n_views, batch_size, desc)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        names = ("features", "labels", "mask", "weight")
        save_file({n: t.contiguous() for n, t in zip(names, data.tensors, strict=True)}, staging)
        os.replace(staging, path)
        for old in sorted(path.parent.glob("*.safetensors"), key=lambda f: f.stat().st_mtime)[:-FEATURE_CACHE_FILES]:
            old.unlink(missing_ok=True)
    return data


def fit_detector(
    model: Detector,
    recipe: Recipe,
    splits: Splits,
    hard: list[ClipPair],
    out_dir: Path,
    on_epoch_end: Callable[[dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Train a learning family on the training split (+ weighted hard negatives); returns the history.

    With a frozen encoder the training split and the validation split are encoded once and cached on
    disk; mined clips are encoded separately, so adding them re-encodes only them.
    """
    words, spec = model.config.wake_words, recipe.train
    augment = AugmentSettings(
        **{**spec.augment, "noise_dirs": recipe.data.noise_dirs, "rir_dirs": recipe.data.rir_dirs}
    )

    def windows(pairs: list[ClipPair], train: bool) -> WakeWordDataset:
        return WakeWordDataset(pairs, words, model.config.window_seconds, train=train, augment=augment, seed=spec.seed)

    base, val_windows = windows(splits.train, True), windows(splits.val or splits.train, False)
    mined = windows(hard, True) if hard else None
    counts = base.counts() if mined is None else _add_counts(base.counts(), mined.counts())
    pos_weight = class_balance(counts, words)
    weight = recipe.data.hard_negative_weight
    parts: list[tuple[torch.utils.data.Dataset, str]] = [(_Weighted(base, set(), 1.0), "train")]
    if mined is not None:
        parts.append((_Weighted(mined, {c.id for c, _ in hard}, weight), "mined"))
    if getattr(model, "encoder_frozen", False):
        use_disk = spec.feature_cache
        encoded = []
        for dataset, name in parts:
            key = _feature_key(model, dataset.windows, spec.n_views, spec.seed, augment) if use_disk else None
            with timed("encoding"):
                encoded.append(encode_cached(model, dataset, key, spec.n_views, spec.batch_size, f"encoding {name}"))
        val_key = _feature_key(model, val_windows, 1, spec.seed, None) if use_disk else None
        with timed("encoding"):
            val_set = encode_cached(model, val_windows, val_key, 1, spec.batch_size, "encoding val")
        train_set: torch.utils.data.Dataset = torch.utils.data.ConcatDataset(encoded)
    else:
        train_set, val_set = _Concat([d for d, _ in parts]), val_windows
    family = get_family(model.family)
    with timed("fitting"):
        result = fit(
            model, family.compute_loss, train_set, val_set, spec, out_dir / STATE_DIR, pos_weight, on_epoch_end
        )
    return result.history


def _add_counts(a: dict[str, dict[str, int]], b: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {w: {k: a[w].get(k, 0) + b.get(w, {}).get(k, 0) for k in a[w]} for w in a}


class _Concat(torch.utils.data.ConcatDataset):
    """ConcatDataset that passes set_epoch on, so every part draws fresh augmentations each epoch."""

    def set_epoch(self, epoch: int) -> None:
        for dataset in self.datasets:
            dataset.set_epoch(epoch)


def score_pairs(detector: Detector, pairs: Sequence[ClipPair], desc: str) -> list[Scored]:
    return score_items(detector, [(root / clip.path, clip.labels) for clip, root in pairs], desc=desc)


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
    # one process, or one of several under `accelerate launch` (CPU-only processes join with gloo)
    state = PartialState(cpu=not torch.cuda.is_available())
    with state.main_process_first():  # the main process synthesises; the others then reuse its data set
        pairs, hard = collect_clips(recipe)
    splits = split_clips(pairs, recipe)
    config = build_config(recipe)
    seed_everything(recipe.train.seed)  # the new head's initial weights too: a rerun gives the same model
    model = get_family(config.family).build_model(config)
    history = []
    if any(p.requires_grad for p in model.parameters()):
        history = fit_detector(model, recipe, splits, hard, out_dir, on_epoch_end)
    if not state.is_main_process:  # every process trained the same weights; one calibrates and saves
        return TrainReport(str(out_dir), history=history)
    model.eval()
    counts = {**splits.counts(), "hard_negatives": len(hard)}
    if keep_thresholds is not None:
        words: dict[str, WordReport] = {}
        model.config = model.config.replace(
            thresholds={w: float(keep_thresholds[w]) for w in config.wake_words},
            calibration={"kept_from_previous_model": True},
            training={**config.training, "counts": counts},
        )
    else:
        words = _calibrate_and_test(model, recipe, splits, counts, out_dir)
    save_detector(model, out_dir, keep_previous=keep_previous)
    shutil.rmtree(out_dir / STATE_DIR, ignore_errors=True)  # finished: a later run must not resume this one
    report = TrainReport(str(out_dir), words, counts, history, round(time.monotonic() - started, 1), active_stages())
    (out_dir / "report.json").write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
    return report


def _calibrate_and_test(
    model: Detector, recipe: Recipe, splits: Splits, counts: dict[str, Any], out_dir: Path
) -> dict[str, WordReport]:
    """Thresholds from the validation split, then FRR / FA/h on the test split and a DET plot."""
    config = model.config
    refractory, target = recipe.evaluate.refractory_seconds, recipe.evaluate.target_fa_per_hour
    with timed("calibration"):
        val = score_pairs(model, splits.val or splits.train, "scoring validation")
        thresholds = calibrate(config, val, target, refractory)
    with timed("test"):
        test = score_pairs(model, splits.test or splits.val, "scoring test") if splits.test else val
        words = {w: word_report(config, test, w, thresholds[w], refractory) for w in config.wake_words}
    model.config = model.config.replace(  # the model's own config: families fill in their defaults
        thresholds=thresholds,
        calibration={"target_fa_per_hour": target, "refractory_seconds": refractory, "measured_on": "validation"},
        training={**config.training, "counts": counts, "test": {w: asdict(r) for w, r in words.items()}},
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    write_det_plot(config, test, out_dir / "det.png", refractory, "DET on the held-out split")
    return words
