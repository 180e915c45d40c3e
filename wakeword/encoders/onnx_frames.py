"""ONNX Runtime for a FROZEN encoder's frames: the same graph as torch, run about twice as fast on a CPU.

Encoding is most of a training run's compute with a frozen encoder (training views, the synthetic long-form
calibration audio, the validation and test clips). The encoder (its log-mel front end included) is traced
once per machine, per set of weights and input length, into the user cache, checked against torch on fixed
windows, and run by onnxruntime with as many threads as torch uses. Frames agree with torch's to float32
rounding (tests/encoders/test_onnx_frames.py; whisper-tiny.en: about 3e-4 on frames up to 12, which is as
close to a float64 reference as torch's own float32 is), far below the float16 rounding of cached frames.

Only frozen encoders on the CPU use it (a trainable encoder needs torch's gradients), and anything that
goes wrong (no onnxruntime, an export or check failure) falls back to torch with one warning.
WAKEWORD_ENCODER_BACKEND=torch turns it off.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import warnings
import weakref
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

BACKEND_ENV = "WAKEWORD_ENCODER_BACKEND"  # "onnx" (default) or "torch"
OPSET = 17
CHECK_TOLERANCE = 1e-3  # max abs frame difference from torch accepted on the check windows
EXPORT_VERSION = 1  # bumped when the exported graph changes, so an old cached graph is not reused

_RUNNERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # module -> {n_samples: OnnxFrames}
_failed: set[str] = set()  # weights keys whose export or check failed in this process: torch from then on


def enabled() -> bool:
    return os.environ.get(BACKEND_ENV, "onnx").strip().lower() not in ("torch", "0", "off", "none")


def weights_key(module: nn.Module, n_samples: int) -> str:
    """What a traced graph depends on: the weights (by content), the input length, torch and this module."""
    digest = hashlib.sha256(
        f"{EXPORT_VERSION}|{OPSET}|{n_samples}|{torch.__version__}|{type(module).__name__}".encode()
    )
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


def cpu_session(graph: Path | bytes, threads: int) -> object:
    """An onnxruntime CPU session of an ONNX file or its bytes, with `threads` intra-op threads that sleep
    rather than spin between calls (the cores are shared with the audio thread and everything else)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    source = graph if isinstance(graph, bytes) else str(graph)
    return onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])


class OnnxFrames:
    """One onnxruntime session: audio (batch, n_samples) float32 numpy -> frames (batch, n_frames, dim) float32."""

    def __init__(self, path: Path, threads: int) -> None:
        self.session = cpu_session(path, threads)
        self.threads = threads

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"audio": np.ascontiguousarray(audio, dtype=np.float32)})[0]


def trace_graph(
    module: nn.Module, item_shape: tuple[int, ...], target: str | io.BytesIO, names: tuple[str, str]
) -> None:
    """Trace `module` (one input (batch, *item_shape) -> one output (batch, ...)) into an ONNX graph at `target`
    (a path or a buffer), the batch axis dynamic; names: (input name, output name)."""
    source, result = names
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(
            module,
            (torch.zeros(2, *item_shape),),
            target,
            dynamo=False,
            opset_version=OPSET,
            input_names=[source],
            output_names=[result],
            dynamic_axes={source: {0: "batch"}, result: {0: "batch"}},
        )


def _export(module: nn.Module, n_samples: int, path: Path) -> None:
    """Trace `module` (audio (batch, n_samples) -> frames) to `path` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".onnx.tmp")
    os.close(fd)
    try:
        trace_graph(module, (n_samples,), staging, ("audio", "frames"))
        os.replace(staging, path)
    finally:
        Path(staging).unlink(missing_ok=True)


def check_difference(module: nn.Module, runner: OnnxFrames, n_samples: int) -> float:
    """Max abs frame difference between onnxruntime and torch on fixed noise and tone windows."""
    from wakeword.export import check_windows

    windows = check_windows(n_samples)
    with torch.no_grad():
        expected = module(torch.from_numpy(windows)).numpy()
    return float(np.max(np.abs(runner(windows).astype(np.float64) - expected)))


def onnx_frames(module: nn.Module, n_samples: int) -> OnnxFrames | None:
    """An onnxruntime runner equal to `module` (a frozen encoder, eval mode) on (batch, n_samples) input,
    traced on first use and kept in the user cache; None when the backend is off or unavailable (use torch)."""
    if not enabled():
        return None
    cached = _RUNNERS.setdefault(module, {})
    threads = torch.get_num_threads()
    runner = cached.get(n_samples)
    if runner is not None and runner.threads == threads:
        return runner
    key = weights_key(module, n_samples)
    if key in _failed:
        return None
    path = _graph_path(key)
    was_training = module.training
    try:
        module.eval()
        if not path.is_file():
            _export(module, n_samples, path)
        runner = OnnxFrames(path, threads)
        difference = check_difference(module, runner, n_samples)
        if not difference <= CHECK_TOLERANCE:
            path.unlink(missing_ok=True)
            raise RuntimeError(f"its frames differ from torch's by {difference:.2g}")
    except Exception as error:  # any failure: torch is always right
        _failed.add(key)
        warnings.warn(f"frozen encoder: onnxruntime unavailable ({error}); encoding with torch", stacklevel=2)
        return None
    finally:
        module.train(was_training)
    cached[n_samples] = runner
    return runner


def _graph_path(key: str) -> Path:
    from wakeword.encoders.whisper import cache_dir

    return cache_dir() / "onnx-encoders" / f"{key}.onnx"


def int8_frames(module: nn.Module, n_samples: int) -> OnnxFrames | None:
    """The float32 runner's graph with dynamic int8 matrix products (wakeword.export.quantize_int8, the
    --int8 defaults): about 2.3 times as fast on a CPU with VNNI, and NOT the same frames (logits move by
    about 0.3 on real speech). Only for a first pass whose results are checked in float32 where they matter
    (wakeword.calibration); None when the float32 runner is unavailable."""
    if onnx_frames(module, n_samples) is None:
        return None
    cached = _RUNNERS.setdefault(module, {})
    runner = cached.get(("int8", n_samples))  # before hashing the weights: this runs once per scored file
    if runner is not None and runner.threads == torch.get_num_threads():
        return runner
    from wakeword.export import Int8Settings, quantize_int8

    key, settings = weights_key(module, n_samples), Int8Settings()
    # the settings name the file: a graph quantised under older defaults (8-bit weights) is not reused
    tag = hashlib.sha256(json.dumps(asdict(settings), sort_keys=True).encode()).hexdigest()[:8]
    path = _graph_path(f"{key}-int8-{tag}")
    try:
        if not path.is_file():
            quantize_int8(_graph_path(key), path, settings)
        runner = cached[("int8", n_samples)] = OnnxFrames(path, torch.get_num_threads())
    except Exception as error:  # the float32 path still works
        warnings.warn(f"frozen encoder: no int8 graph ({error}); first passes run in float32", stacklevel=2)
        return None
    return runner
