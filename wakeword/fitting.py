"""Fitting a learning family on a recipe's training parts: the split's clips, the user's recordings, mined
clips, long negative audio, and the windows mined from it in rounds (see `fit_detector`).

A frozen encoder encodes each part once (clip parts are also cached on disk, keyed by what they depend on),
so a mining round or a retrain with new clips encodes only what is new; every part goes through the one
trainer, `wakeword.train.fit`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from wakeword.data.augment import AugmentSettings
from wakeword.data.clips import Clip
from wakeword.data.dataset import WINDOWING_VERSION, WakeWordDataset, is_real
from wakeword.data.long_audio import mine_windows
from wakeword.models import get_family
from wakeword.models.base import Detector
from wakeword.recipes import Recipe
from wakeword.timing import timed
from wakeword.train import STATE_DIR, cache_features, fit

if TYPE_CHECKING:
    from wakeword.pipeline import Splits

FEATURE_CACHE_FILES = 12  # encoded training sets kept on disk (~60 MB each for whisper-tiny.en)

ClipPair = tuple[Clip, Path]


class _Weighted(torch.utils.data.Dataset):
    """Adds a per-window loss weight (mined hard negatives count `weight` times a normal window) and whether
    the window comes from the user's recordings (anchor head members skip those: HeadSettings)."""

    def __init__(self, windows: WakeWordDataset, heavy_ids: set[str], weight: float, recorded: bool = False) -> None:
        self.windows, self.heavy_ids, self.weight, self.recorded = windows, heavy_ids, weight, recorded

    def __len__(self) -> int:
        return len(self.windows)

    def set_epoch(self, epoch: int) -> None:
        self.windows.set_epoch(epoch)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.windows[index]
        weight = torch.tensor(self.weight if item["clip_id"] in self.heavy_ids else 1.0)
        return {**item, "weight": weight, "recorded": torch.tensor(float(self.recorded))}


class _Tagged(torch.utils.data.Dataset):
    """Encoded windows (features, labels, mask, weight) + a constant "from the user's recordings" flag."""

    def __init__(self, encoded: torch.utils.data.Dataset, recorded: bool) -> None:
        self.encoded, self.flag = encoded, torch.tensor(float(recorded))

    def __len__(self) -> int:
        return len(self.encoded)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        return (*self.encoded[index], self.flag)


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
    parts += [windows.same_channel, WINDOWING_VERSION]
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
    splits: Splits,  # wakeword.pipeline.Splits: .train and .val clip pairs
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
        (_Weighted(windows(pairs, True), set(), 1.0, recorded=name == "recorded"), name)
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
        with timed("mining"):
            found, records = mine_windows(
                model,
                negative_audio,
                data.mining_threshold,
                data.max_mined_per_round,
                recipe.evaluate.refractory_seconds,
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
                "weight": torch.tensor(self.weight), "recorded": torch.tensor(0.0),
                "clip_id": f"mined-window-{index}"}  # fmt: skip

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
            with timed("encoding"):
                self.encoded[id(dataset)] = encode_cached(self.model, dataset, key, n_views, spec.batch_size,
                                                      f"encoding {name}")  # fmt: skip
        return self.encoded[id(dataset)]

    def _views(self, part: torch.utils.data.Dataset) -> int:
        """Augmented copies of a part's clips per epoch: one of a fixed mined window, more of a recording."""
        spec = self.recipe.train
        if isinstance(part, _FixedNegatives):
            return 1
        recorded = getattr(part, "recorded", False) and spec.recorded_views is not None
        return spec.recorded_views if recorded else spec.n_views

    def fit(self, parts: list[tuple[torch.utils.data.Dataset, str]], state_dir: Path) -> list[dict[str, float]]:
        spec, words = self.recipe.train, self.model.config.wake_words
        counts = functools.reduce(_add_counts, [_counts_of(d) for d, _ in parts])
        if self.frozen:
            views = [self._views(d) for d, _ in parts]
            train_set = torch.utils.data.ConcatDataset(
                [_Tagged(self._encoded(d, name, n), getattr(d, "recorded", False))
                 for (d, name), n in zip(parts, views, strict=True)]
            )  # fmt: skip
            val_set = self._encoded(self.val, "val", 1)
        else:  # one draw of each clip per epoch: the recordings' share is kept by repeating them
            repeats = [max(1, round(self._views(d) / spec.n_views)) for d, _ in parts]
            train_set, val_set = (
                _Concat([d for (d, _), n in zip(parts, repeats, strict=True) for _ in range(n)]),
                self.val,
            )
        loss = get_family(self.model.family).compute_loss
        pos_weight = class_balance(counts, words)
        with timed("fitting"), _threads(1 if self.frozen else torch.get_num_threads()):
            return fit(self.model, loss, train_set, val_set, spec, state_dir, pos_weight, self.on_epoch_end).history


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to n for a while. A head on cached frames does small ops, where a second
    thread only adds waiting (3 epochs of 2000 cached whisper-tiny.en windows on 2 cores under load 12: 4.4 CPU-s
    with one thread, 47 with two)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _add_counts(a: dict[str, dict[str, int]], b: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {w: {k: a[w].get(k, 0) + b.get(w, {}).get(k, 0) for k in a[w]} for w in a}


class _Concat(torch.utils.data.ConcatDataset):
    """ConcatDataset that passes set_epoch on, so every part draws fresh augmentations each epoch."""

    def set_epoch(self, epoch: int) -> None:
        for dataset in self.datasets:
            dataset.set_epoch(epoch)
