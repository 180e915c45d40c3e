"""ONE trainer for every trainable family: the family supplies build_model and compute_loss.

AdamW with warm-up + cosine decay, class weighting, validation split by speaker/session group, early
stopping on validation loss with the best weights kept, resume after interruption from a training
state saved each epoch (safetensors + JSON, never pickle), seeded, tqdm progress, metrics per epoch.
Several processes or GPUs through Accelerate: `accelerate launch -m wakeword.cli train ...`.
When the encoder is frozen, encoder outputs are computed once (n_views augmented copies per clip) and
the head trains on the cache, which takes seconds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import signal
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm.auto import tqdm

from wakeword.recipes import TrainSpec

STATE_DIR = "training-state"
STATE_FILE = "state.json"  # the commit point of a save: it names the tensors file that belongs to it
LossFn = Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor]


class TrainingStateError(ValueError):
    """A saved training state that cannot be resumed; the message names the folder and what to do."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived during fit; `signum` says which (the exit status is 128 + signum)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _SignalGuard:
    """While fit runs in the main thread, SIGINT and SIGTERM raise Interrupted, so `kill` or a job
    scheduler's stop ends training the way Ctrl-C does, with the last finished epoch saved. A signal that
    arrives while the state is being saved is held back until the save is complete.

    Signals the process was started ignoring (a background job's SIGINT) stay ignored; the previous
    handlers are restored on exit. In other threads (the app trains in one) nothing is installed.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.previous: dict[int, Any] = {}
        self.saving, self.pending = False, None

    def __enter__(self) -> _SignalGuard:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                handler = signal.getsignal(signum)
                if handler is not None and handler != signal.SIG_IGN:  # None: set outside Python, keep it
                    self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.saving:
            self.pending = signum
            return
        raise Interrupted(signum)

    @contextlib.contextmanager
    def saving_state(self) -> Iterator[None]:
        self.saving = True
        try:
            yield
        finally:
            self.saving = False
        if self.pending is not None:
            signum, self.pending = self.pending, None
            raise Interrupted(signum)


@dataclass
class FitResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_val_loss: float = math.inf
    resumed_from_epoch: int | None = None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_scheduler(optimizer: torch.optim.Optimizer, n_steps: int, warmup_fraction: float):
    """Linear warm-up for `warmup_fraction` of the steps, then cosine decay to 5% of the peak."""
    n_warmup = max(1, int(n_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < n_warmup:
            return (step + 1) / n_warmup
        progress = min(1.0, (step - n_warmup) / max(1, n_steps - n_warmup))
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@torch.no_grad()
def cache_features(
    encode: Callable[[torch.Tensor], torch.Tensor], dataset: Dataset, n_views: int, batch_size: int, desc: str
) -> TensorDataset:
    """Run a frozen encoder once over `n_views` passes of `dataset` (each pass augmented differently).

    Returns a TensorDataset of (features (N, n_frames, dim) float16, labels (N, n_words), mask, weight).
    """
    feats, labels, masks, weights = [], [], [], []
    for view in range(n_views):
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(view)
        for batch in tqdm(DataLoader(dataset, batch_size=batch_size), desc=f"{desc} view {view + 1}/{n_views}"):
            feats.append(encode(batch["audio"]).to(torch.float16))  # half the memory; the head sees float32
            labels.append(batch["labels"])
            masks.append(batch["mask"])
            weights.append(batch.get("weight", torch.ones(len(batch["labels"]))))
    return TensorDataset(torch.cat(feats), torch.cat(labels), torch.cat(masks), torch.cat(weights))


def _as_batch(item: Any) -> dict[str, torch.Tensor]:
    if isinstance(item, dict):
        if "weight" in item:  # per-clip loss weight (mined hard negatives) scales that clip's mask
            return {**item, "mask": item["mask"] * item["weight"][:, None]}
        return item
    features, labels, mask, weight, *recorded = item  # fitting tags each window: from the user's recordings?
    batch = {"features": features.float(), "labels": labels, "mask": mask * weight[:, None]}
    return {**batch, "recorded": recorded[0].float()} if recorded else batch


def _state_tensors(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Flatten model + optimizer state to safetensors-compatible tensors and JSON-compatible rest. Frozen
    parameters (a frozen encoder: 32 MB for whisper-tiny.en) never change, so they are left out."""
    frozen = _frozen_names(model)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k not in frozen}
    opt = optimizer.state_dict()
    for index, values in opt["state"].items():
        for name, value in values.items():
            tensor = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"optim.{index}.{name}"] = tensor.detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # dropout on a GPU draws from its own RNG
        for device, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{device}"] = state
    return tensors, {"param_groups": opt["param_groups"]}


def _frozen_names(model: torch.nn.Module) -> set[str]:
    return {name for name, param in model.named_parameters() if not param.requires_grad}


def _write_durably(path: Path, write: Callable[[Path], object]) -> None:
    """write(temp path), flush it to disk, then rename it to `path`: readers see the old or the new file."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a power cut
    finally:
        os.close(directory)


def fingerprint(spec: TrainSpec, train_set: Dataset, val_set: Dataset) -> dict[str, Any]:
    """What a saved state must have been trained with to be resumed: the settings and the data sizes."""
    settings = {"train": dataclasses.asdict(spec), "n_train": len(train_set), "n_val": len(val_set)}
    return json.loads(json.dumps(settings, default=str))  # as it reads back from JSON (tuples -> lists)


def save_training_state(
    state_dir: Path,
    model: torch.nn.Module,
    optimizer,
    scheduler,
    epoch: int,
    result: FitResult,
    best: dict,
    settings: dict[str, Any] | None = None,
) -> None:
    """Save everything needed to continue after `epoch`, atomically.

    The tensors go to a new uniquely named file first; writing state.json, which names that file, is the
    one step that switches from the old state to the new one. An interruption at any point, even SIGKILL
    or a power cut, leaves either the previous state or this one, never a mix or nothing.
    """
    tensors, rest = _state_tensors(model, optimizer)
    tensors.update({f"best.{k}": v.contiguous() for k, v in best.items()})
    state_dir.mkdir(parents=True, exist_ok=True)
    tensors_name = f"state-{epoch:05d}-{uuid.uuid4().hex[:8]}.safetensors"
    _write_durably(state_dir / tensors_name, lambda tmp: save_file(tensors, tmp))
    meta = {
        "epoch": epoch,
        "tensors": tensors_name,
        "settings": settings,
        "scheduler": scheduler.state_dict(),
        "history": result.history,
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
        "numpy_rng": [x.tolist() if isinstance(x, np.ndarray) else x for x in np.random.get_state()],
        "python_rng": random.getstate(),
        **rest,
    }
    _write_durably(state_dir / STATE_FILE, lambda tmp: tmp.write_text(json.dumps(meta), encoding="utf-8"))
    for stale in state_dir.iterdir():  # earlier epochs' tensors and temp files of interrupted saves
        if stale.name not in (STATE_FILE, tensors_name):
            stale.unlink(missing_ok=True)


def has_training_state(state_dir: Path | None) -> bool:
    return state_dir is not None and (state_dir / STATE_FILE).is_file()


def load_training_state(
    state_dir: Path, model: torch.nn.Module, optimizer, scheduler, settings: dict[str, Any] | None = None
) -> tuple[int, FitResult, dict]:
    """Restore what save_training_state wrote; returns (next epoch, result so far, best weights).

    settings: the fingerprint of this run; a state saved with other settings is refused, because
    resuming it would silently mix two runs (e.g. keep the old learning rate). Every problem is a
    TrainingStateError that names the folder.
    """
    advice = f"delete {state_dir} to start training over"
    try:
        meta = json.loads((state_dir / STATE_FILE).read_text(encoding="utf-8"))
        saved = meta.get("settings")
        if settings is not None and saved is not None and saved != settings:
            changed = _differences(saved, settings)
            raise TrainingStateError(
                f"{state_dir}: saved by a run with other settings ({changed}); rerun with those settings to "
                f"resume, or {advice}"
            )
        tensors = load_file(state_dir / meta.get("tensors", "state.safetensors"))
        missing, unexpected = model.load_state_dict(
            {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=False
        )
        if unexpected or set(missing) - _frozen_names(model):  # only frozen parameters are left out
            raise ValueError(
                f"saved weights do not fit the model (missing {sorted(set(missing) - _frozen_names(model))[:3]}, "
                f"unexpected {sorted(unexpected)[:3]})"
            )
        opt_state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, index, name = key.split(".", 2)
                opt_state.setdefault(int(index), {})[name] = value
        optimizer.load_state_dict({"state": opt_state, "param_groups": meta["param_groups"]})
        scheduler.load_state_dict(meta["scheduler"])
        torch.set_rng_state(tensors["rng.torch"])
        cuda_states = [tensors[f"rng.cuda.{i}"] for i in range(len(tensors)) if f"rng.cuda.{i}" in tensors]
        if cuda_states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda_states)
        np_state = meta["numpy_rng"]
        np.random.set_state((np_state[0], np.array(np_state[1], dtype=np.uint32), *np_state[2:]))
        random.setstate((meta["python_rng"][0], tuple(meta["python_rng"][1]), meta["python_rng"][2]))
        result = FitResult(meta["history"], meta["best_epoch"], meta["best_val_loss"], meta["epoch"])
    except TrainingStateError:
        raise
    except (OSError, json.JSONDecodeError, SafetensorError, KeyError, TypeError, ValueError, RuntimeError) as error:
        raise TrainingStateError(f"{state_dir}: cannot resume ({type(error).__name__}: {error}); {advice}") from None
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
    return meta["epoch"] + 1, result, best


def _differences(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> str:
    """'train.lr: 0.001 -> 0.002, n_train: 40 -> 44' for the keys whose values differ."""
    changes = []
    for key in sorted(set(saved) | set(current)):
        old, new = saved.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            nested = _differences(old, new, f"{prefix}{key}.")
            changes += [nested] if nested else []
        elif old != new:
            changes.append(f"{prefix}{key}: {old!r} -> {new!r}")
    return ", ".join(changes)


def _trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k in names or "running_" in k}


@torch.no_grad()
def _validate(model, compute_loss: LossFn, loader, accelerator: Accelerator, pos_weight) -> float:
    model.eval()
    losses = []
    for item in loader:
        batch = {**_as_batch(item), "pos_weight": pos_weight}
        losses.append(accelerator.gather_for_metrics(compute_loss(model, batch).reshape(1)))
    model.train()
    return float(torch.cat(losses).mean()) if losses else math.inf


def fit(
    model: torch.nn.Module,
    compute_loss: LossFn,
    train_set: Dataset,
    val_set: Dataset,
    spec: TrainSpec,
    state_dir: Path | None = None,
    pos_weight: torch.Tensor | None = None,
    on_epoch_end: Callable[[dict[str, float]], None] | None = None,
) -> FitResult:
    """Train `model` in place and leave it with its best-validation weights.

    Items of the data sets are dicts (audio, labels, mask[, weight]) or cached-feature tuples.
    state_dir: where the per-epoch training state goes; an existing one is resumed (TrainingStateError when
    it was saved with other settings or is damaged).
    on_epoch_end: called with each epoch's metrics after its state is saved (progress bars, the app).
    SIGINT and SIGTERM raise Interrupted (a KeyboardInterrupt) in the main thread; the state of the last
    finished epoch is then on disk, whole, and the same call resumes from it.
    """
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(), dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True)
    )
    seed_everything(spec.seed)
    generator = torch.Generator().manual_seed(spec.seed)
    train_loader = DataLoader(train_set, batch_size=spec.batch_size, shuffle=True, generator=generator, drop_last=False)
    val_loader = DataLoader(val_set, batch_size=spec.batch_size)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)
    n_steps = spec.max_steps or spec.epochs * max(1, math.ceil(len(train_set) / spec.batch_size))
    scheduler = build_scheduler(optimizer, n_steps, spec.warmup_fraction)
    model, optimizer, train_loader, val_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, val_loader, scheduler
    )
    pos_weight = None if pos_weight is None else pos_weight.to(accelerator.device)
    if accelerator.is_main_process:
        print(f"training on {accelerator.num_processes} process(es), device {accelerator.device}")
    start, result, best = 0, FitResult(), {}
    settings = fingerprint(spec, train_set, val_set)
    if has_training_state(state_dir):
        unwrapped = accelerator.unwrap_model(model)
        start, result, best = load_training_state(state_dir, unwrapped, optimizer, scheduler, settings)
    step = start * len(train_loader)
    with _SignalGuard() as guard:
        for epoch in range(start, spec.epochs):
            train_loader.set_epoch(epoch)
            if hasattr(train_set, "set_epoch"):  # fresh, reproducible augmentation draws per epoch
                train_set.set_epoch(epoch)
            model.train()
            total, count = 0.0, 0
            bar = tqdm(
                train_loader,
                desc=f"epoch {epoch + 1}/{spec.epochs}",
                disable=not accelerator.is_main_process,
                leave=False,
            )
            for item in bar:
                loss = compute_loss(model, {**_as_batch(item), "pos_weight": pos_weight})
                optimizer.zero_grad()
                accelerator.backward(loss)
                optimizer.step()
                scheduler.step()
                total, count, step = total + float(loss.detach()), count + 1, step + 1
                bar.set_postfix(loss=f"{total / count:.4f}")
                if spec.max_steps and step >= spec.max_steps:
                    break
            val_loss = _validate(model, compute_loss, val_loader, accelerator, pos_weight)
            result.history.append({"epoch": epoch, "train_loss": total / max(count, 1), "val_loss": val_loss})
            if val_loss < result.best_val_loss or not best:
                result.best_epoch, result.best_val_loss = epoch, val_loss
                best = _trainable_state(accelerator.unwrap_model(model))
            if accelerator.is_main_process:
                print(f"epoch {epoch + 1}: train loss {total / max(count, 1):.4f}, val loss {val_loss:.4f}")
                if state_dir is not None:
                    with guard.saving_state():
                        unwrapped = accelerator.unwrap_model(model)
                        save_training_state(state_dir, unwrapped, optimizer, scheduler, epoch, result, best, settings)
            accelerator.wait_for_everyone()
            if on_epoch_end is not None:
                on_epoch_end(result.history[-1])
            stop = epoch - result.best_epoch >= spec.patience or bool(spec.max_steps and step >= spec.max_steps)
            if stop:
                break
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.load_state_dict(best, strict=False)
    accelerator.free_memory()
    return result
