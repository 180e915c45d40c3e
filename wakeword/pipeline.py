"""From a recipe to a saved, calibrated detector: data, split, build, fit, calibrate, report, save.

Every family goes through these same steps; families differ only in build_model / compute_loss (and
`phoneme`, which has nothing to learn, skips fitting).
"""

from __future__ import annotations

import dataclasses
import functools
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
from tqdm.auto import tqdm

from wakeword.audio import seconds_to_samples
from wakeword.calibration import calibration_longform, calibration_record, negative_audio_pairs, score_long
from wakeword.checkpoint import save_detector
from wakeword.data.augment import AugmentSettings
from wakeword.data.clips import Clip, DataSet, normalize_word
from wakeword.data.dataset import REAL_SOURCES, WakeWordDataset, split_by_group
from wakeword.data.long_audio import mine_windows, score_long_clip
from wakeword.evaluate import AFTER_SECONDS, Scored, WordReport, calibrate, score_items, word_report, write_det_plot
from wakeword.models import get_family
from wakeword.models.base import Detector, DetectorConfig
from wakeword.recipes import Recipe
from wakeword.train import STATE_DIR, cache_features, fit, seed_everything

FEATURE_CACHE_FILES = 12  # encoded training sets kept on disk (~60 MB each for whisper-tiny.en)

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


def is_real(clip: Clip) -> bool:
    """Recorded by a microphone (the user's clips, a corpus, corrected activations), not TTS or augmented."""
    return clip.source in REAL_SOURCES


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
    parts.append(windows.same_channel)
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
    negative_audio: Sequence[ClipPair] = (),
) -> list[dict[str, float]]:
    """Train a learning family on the training split (+ weighted hard negatives, + long negative audio);
    returns the history. With negative audio, `data.mining_rounds` rounds follow: the windows of it the
    model fires on at `data.mining_threshold` join the training set (weighted) and the model trains on.

    With a frozen encoder every part of the training set is encoded once (and the clip parts cached on
    disk), so a mining round re-encodes only its new windows.
    """
    words, spec, data = model.config.wake_words, recipe.train, recipe.data
    augment = AugmentSettings(**{**spec.augment, "noise_dirs": data.noise_dirs, "rir_dirs": data.rir_dirs})

    def windows(pairs: Sequence[ClipPair], train: bool) -> WakeWordDataset:
        same_channel = data.same_channel_negatives if train else ()
        return WakeWordDataset(list(pairs), words, model.config.window_seconds, train=train, augment=augment,
                               seed=spec.seed, same_channel=same_channel)  # fmt: skip

    # the user's recordings are a part of their own: the synthetic part's encoded views stay cached when
    # recordings are added (and each real positive adds its same-channel negatives)
    real = [p for p in splits.train if is_real(p[0])]
    other = [p for p in splits.train if not is_real(p[0])]
    parts = [
        (_Weighted(windows(pairs, True), set(), 1.0), name)
        for pairs, name in ((other, "train"), (real, "recorded"))
        if pairs
    ]
    if hard:
        parts.append((_Weighted(windows(hard, True), {c.id for c, _ in hard}, data.hard_negative_weight), "mined"))
    if negative_audio:
        parts.append((_Weighted(windows(negative_audio, True), set(), 1.0), "negative audio"))
    trainer = _PartTrainer(model, recipe, augment, windows(splits.val or splits.train, False), on_epoch_end)
    history = trainer.fit(parts, out_dir / STATE_DIR)
    for round_ in range(1, data.mining_rounds + 1 if negative_audio else 1):
        found, records = mine_windows(
            model, negative_audio, data.mining_threshold, data.max_mined_per_round, recipe.evaluate.refractory_seconds
        )
        print(f"mining round {round_}: {len(records)} near miss(es) in the negative audio", flush=True)
        if not records:
            break
        parts.append((_FixedNegatives(found, words, data.hard_negative_weight), f"mining round {round_}"))
        history += trainer.fit(parts, out_dir / STATE_DIR / f"mining-round-{round_}")
    return history


class _FixedNegatives(torch.utils.data.Dataset):
    """Windows (n, window_samples) that say no wake word (mined from negative audio), with a loss weight."""

    def __init__(self, audio: np.ndarray, words: Sequence[str], weight: float) -> None:
        self.audio, self.n_words, self.weight = torch.from_numpy(np.asarray(audio, np.float32)), len(words), weight
        self.words = list(words)

    def __len__(self) -> int:
        return len(self.audio)

    def __getitem__(self, index: int) -> dict[str, Any]:
        zeros = torch.zeros(self.n_words)
        return {"audio": self.audio[index], "labels": zeros, "mask": torch.ones(self.n_words),
                "weight": torch.tensor(self.weight), "clip_id": f"mined-window-{index}"}  # fmt: skip

    def counts(self) -> dict[str, dict[str, int]]:
        return {w: {"positive": 0, "negative": len(self)} for w in self.words}

    def set_epoch(self, epoch: int) -> None:
        """Fixed windows: nothing is drawn per epoch."""


def _counts_of(dataset: torch.utils.data.Dataset) -> dict[str, dict[str, int]]:
    return dataset.windows.counts() if isinstance(dataset, _Weighted) else dataset.counts()


class _PartTrainer:
    """Fits a model on a list of training parts; a frozen encoder encodes each part once, ever."""

    def __init__(self, model: Detector, recipe: Recipe, augment: AugmentSettings, val: WakeWordDataset,
                 on_epoch_end: Callable[[dict[str, float]], None] | None) -> None:  # fmt: skip
        self.model, self.recipe, self.augment, self.val, self.on_epoch_end = model, recipe, augment, val, on_epoch_end
        self.frozen, self.encoded = bool(getattr(model, "encoder_frozen", False)), {}

    def _encoded(self, dataset: torch.utils.data.Dataset, name: str, n_views: int) -> torch.utils.data.Dataset:
        spec = self.recipe.train
        if id(dataset) not in self.encoded:
            windows = getattr(dataset, "windows", dataset)
            disk = spec.feature_cache and isinstance(windows, WakeWordDataset)
            augment = self.augment if windows is not self.val else None
            key = _feature_key(self.model, windows, n_views, spec.seed, augment) if disk else None
            self.encoded[id(dataset)] = encode_cached(self.model, dataset, key, n_views, spec.batch_size,
                                                      f"encoding {name}")  # fmt: skip
        return self.encoded[id(dataset)]

    def fit(self, parts: list[tuple[torch.utils.data.Dataset, str]], state_dir: Path) -> list[dict[str, float]]:
        spec, words = self.recipe.train, self.model.config.wake_words
        counts = functools.reduce(_add_counts, [_counts_of(d) for d, _ in parts])
        if self.frozen:
            views = [1 if isinstance(d, _FixedNegatives) else spec.n_views for d, _ in parts]
            train_set = torch.utils.data.ConcatDataset(
                [self._encoded(d, name, n) for (d, name), n in zip(parts, views, strict=True)]
            )
            val_set = self._encoded(self.val, "val", 1)
        else:
            train_set, val_set = _Concat([d for d, _ in parts]), self.val
        loss = get_family(self.model.family).compute_loss
        pos_weight = class_balance(counts, words)
        return fit(self.model, loss, train_set, val_set, spec, state_dir, pos_weight, self.on_epoch_end).history


def _add_counts(a: dict[str, dict[str, int]], b: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {w: {k: a[w].get(k, 0) + b.get(w, {}).get(k, 0) for k in a[w]} for w in a}


class _Concat(torch.utils.data.ConcatDataset):
    """ConcatDataset that passes set_epoch on, so every part draws fresh augmentations each epoch."""

    def set_epoch(self, epoch: int) -> None:
        for dataset in self.datasets:
            dataset.set_epoch(epoch)


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
    report = TrainReport(str(out_dir), words, counts, history, round(time.monotonic() - started, 1))
    report.calibration = dict(model.config.calibration)
    (out_dir / "report.json").write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
    return report


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
    config = model.config
    refractory, target = recipe.evaluate.refractory_seconds, recipe.evaluate.target_fa_per_hour
    val = score_pairs(model, splits.val or splits.train, "scoring validation")
    longform = calibration_longform(recipe)
    calibration_set = val + score_long(model, [*long_calibration, *longform])
    thresholds = calibrate(config, calibration_set, target, refractory)
    sources = (f"validation clips, {len(long_calibration)} segment(s) of negative audio, "
               f"{len(longform)} segment(s) of synthetic long-form speech")  # fmt: skip
    calibration = calibration_record(config, calibration_set, thresholds, recipe, sources)
    for word, entry in calibration.get("words", {}).items():
        print(f"{word}: calibrated to {target:g} FA/h on {entry['negative_hours'] * 60:.1f} min of negatives"
              + (f" - WARNING: {entry['warning']}" if "warning" in entry else ""), flush=True)  # fmt: skip
    test = score_pairs(model, splits.test or splits.val, "scoring test") if splits.test else val
    words = {w: word_report(config, test, w, thresholds[w], refractory) for w in config.wake_words}
    model.config = model.config.replace(  # the model's own config: families fill in their defaults
        thresholds=thresholds,
        calibration=calibration,
        training={**config.training, "counts": counts, "test": {w: asdict(r) for w, r in words.items()}},
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    write_det_plot(config, test, out_dir / "det.png", refractory, "DET on the held-out split")
    return words
