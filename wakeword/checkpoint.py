"""The model directory: config.json + model.safetensors, and nothing else needed to rebuild a detector.

Weights are only ever read with safetensors (no pickle, so loading runs no code from the file).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from wakeword.models import get_family
from wakeword.models.base import FORMAT_VERSION, Detector, DetectorConfig, logit

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PREVIOUS_DIR = "previous"  # the version a retrain replaced, kept for rollback


class ModelError(ValueError):
    """A model directory that cannot be loaded; the message names the path and the problem."""


def _saved_state(model: Detector) -> dict[str, torch.Tensor]:
    state = model.saved_state() if hasattr(model, "saved_state") else model.state_dict()
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def save_detector(model: Detector, path: str | os.PathLike, keep_previous: bool = False) -> Path:
    """Write `path/config.json` and `path/model.safetensors` atomically (a temp folder, then renames).

    keep_previous: move an existing model at `path` to `path/previous/` first (see rollback_detector).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        (staging / CONFIG_FILE).write_text(json.dumps(model.config.to_dict(), indent=2), encoding="utf-8")
        save_file(_saved_state(model), staging / WEIGHTS_FILE, metadata={"format": "pt"})
        path.mkdir(exist_ok=True)
        if keep_previous and (path / CONFIG_FILE).exists():
            _replace_dir_contents(path, path / PREVIOUS_DIR)
        for name in (WEIGHTS_FILE, CONFIG_FILE):  # config last: a config always names weights that exist
            os.replace(staging / name, path / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def _replace_dir_contents(src: Path, dst: Path) -> None:
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir()
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if (src / name).exists():
            shutil.copy2(src / name, dst / name)


def rollback_detector(path: str | os.PathLike) -> Path:
    """Restore the model that the last `save_detector(..., keep_previous=True)` replaced."""
    path = Path(path)
    previous = path / PREVIOUS_DIR
    if not (previous / CONFIG_FILE).exists():
        raise ModelError(f"{path}: no previous version to roll back to")
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        os.replace(previous / name, path / name)
    shutil.rmtree(previous, ignore_errors=True)
    return path


def read_config(path: str | os.PathLike) -> DetectorConfig:
    """Parse and validate `path/config.json`."""
    path = Path(path)
    if path.is_file():
        raise ModelError(f"{path}: a model is a folder with {CONFIG_FILE} and {WEIGHTS_FILE}, not a single file")
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise ModelError(f"{path}: not a model directory (no {CONFIG_FILE})")
    try:
        data: dict[str, Any] = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelError(f"{config_path}: unreadable config ({error})") from None
    if not isinstance(data, dict):
        raise ModelError(f"{config_path}: expected a JSON object, got {type(data).__name__}")
    _check_version(data.get("format_version"), config_path)
    for key in ("family", "wake_words"):
        if key not in data:
            raise ModelError(f"{config_path}: missing key {key!r}")
    problem = _type_problem(data)
    if problem:
        raise ModelError(f"{config_path}: {problem}")
    if data["format_version"] < 2:  # version 1 stored probabilities; read them as the logits they stand for
        data = {**data, "format_version": FORMAT_VERSION}
        data["thresholds"] = {w: float(logit(t)) for w, t in data.get("thresholds", {}).items()}
    try:
        config = DetectorConfig.from_dict(data)
        get_family(config.family)
    except (TypeError, ValueError, KeyError) as error:
        raise ModelError(f"{config_path}: {error}") from None
    return config


def _check_version(version: Any, config_path: Path) -> None:
    # bool is an int in Python; `true` is no version
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelError(f"{config_path}: format_version {version!r} is missing or not a positive whole number")
    if version > FORMAT_VERSION:
        raise ModelError(
            f"{config_path}: format_version {version} is newer than this wakeword reads ({FORMAT_VERSION}); "
            "upgrade wakeword to load this model"
        )


def _type_problem(data: dict[str, Any]) -> str | None:
    """What is wrong with the types of the keys every family reads, or None. DetectorConfig itself would
    take a string as a tuple of one-letter wake words, or fail on a string hop with a bare TypeError."""
    words = data["wake_words"]
    if not isinstance(words, list) or not words or not all(isinstance(w, str) and w.strip() for w in words):
        return f"wake_words must be a non-empty list of words, got {words!r}"
    if not isinstance(data["family"], str):
        return f"family must be a name, got {data['family']!r}"
    for key in ("window_seconds", "hop_seconds"):
        if key in data and (not isinstance(data[key], (int, float)) or isinstance(data[key], bool)):
            return f"{key} must be a number, got {data[key]!r}"
    for key in ("encoder", "head", "thresholds", "calibration", "training"):
        if key in data and not isinstance(data[key], dict):
            return f"{key} must be a JSON object, got {data[key]!r}"
    thresholds = data.get("thresholds", {})
    bad = [w for w, t in thresholds.items() if not isinstance(t, (int, float)) or isinstance(t, bool)]
    return f"threshold of {bad[0]!r} must be a number, got {thresholds[bad[0]]!r}" if bad else None


def _check_state(model: Detector, state: dict[str, torch.Tensor], where: Path) -> None:
    expected = model.state_dict()
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise ModelError(f"{where}: unexpected weight {unexpected[0]!r} for family {model.family}")
    required = _saved_state(model).keys()
    missing = sorted(set(required) - set(state))
    if missing:
        raise ModelError(f"{where}: missing weight {missing[0]!r}")
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise ModelError(
                f"{where}: weight {key!r} has shape {tuple(tensor.shape)}, model needs {tuple(expected[key].shape)}"
            )


def load_detector(path: str | os.PathLike) -> Detector:
    """Rebuild a detector from its model directory; every problem is a ModelError naming it."""
    path = Path(path)
    config = read_config(path)
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        pickled = sorted(p.name for p in path.iterdir() if p.suffix in (".pt", ".pth", ".bin", ".ckpt", ".pkl"))
        hint = f" ({', '.join(pickled)} is pickle, which wakeword never loads: it can run code)" if pickled else ""
        raise ModelError(f"{path}: no {WEIGHTS_FILE}{hint}")
    try:
        state = load_file(weights)
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelError(f"{weights}: not a valid safetensors file ({error})") from None
    try:
        model = get_family(config.family).build_model(config)
    except (ValueError, TypeError, KeyError, RuntimeError, OSError) as error:
        # head settings a family cannot build, or an encoder that cannot be found: name the model, not a
        # line deep inside torch (EncoderLoadError is a RuntimeError, CT2FormatError a ValueError)
        raise ModelError(f"{path / CONFIG_FILE}: cannot build the {config.family} model ({error})") from None
    _check_state(model, state, weights)
    model.load_state_dict(state, strict=False)
    return model.eval()
