"""ONNX Runtime for a small model's inference: the same traced graph as torch, without torch's per-op cost.

A cascade's stage 1 runs on every 0.1 s hop of a live stream. Its TC-ResNet does little arithmetic but about
40 torch ops, each with microseconds of dispatch, so torch spends 0.38 ms per hop on it where onnxruntime
spends 0.09 ms (one thread, benchmarks/cascade_speed.py). `EvalGraph` traces a function of a module (on first
use in eval mode, in memory), checks it against torch on fixed inputs, and runs it in onnxruntime for as long
as the module's weights are the ones it traced: every parameter and buffer keeps its storage and its in-place
version counter (an optimiser step, `load_state_dict`, `.to()` or a batch-norm update in training mode all
change one of them), so weights that changed are traced again, never scored with the old graph. (A parameter
replaced by another tensor object, as `load_state_dict(assign=True)` does, is not seen; wakeword never does
that. Listing the tensors on every call would cost 90 us, as much as the graph.)

Anything that goes wrong (no onnxruntime, an export or check failure) leaves the caller on torch with one
warning. WAKEWORD_ENCODER_BACKEND=torch (wakeword.encoders.onnx_frames) turns this off as well.
"""

from __future__ import annotations

import io
import itertools
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from wakeword.encoders.onnx_frames import cpu_session, enabled, trace_graph

CHECK_TOLERANCE = 1e-4  # max output difference from torch on the check inputs, relative to the largest output


class _Traced(nn.Module):
    """`function(module, x)` as a module to trace (made at export time only: holding the module in a
    long-lived nn.Module attribute would register it as a submodule of itself)."""

    def __init__(self, module: nn.Module, function: Callable[[nn.Module, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.module, self.function = module, function

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.function(self.module, x)


def weights_version(tensors: list[torch.Tensor]) -> tuple[tuple[int, int], ...]:
    """(storage address, in-place version) of each tensor: changes whenever a weight does."""
    return tuple((t.data_ptr(), t._version) for t in tensors)


def _cpu_float32(module: nn.Module) -> bool:
    """Whether every parameter is a CPU float32 tensor (the only weights a CPU float32 graph can stand for)."""
    return all(p.device.type == "cpu" and p.dtype == torch.float32 for p in module.parameters())


class EvalGraph:
    """`function(module, x)`, x float32 of shape (batch, *item_shape), run by onnxruntime on the CPU.

    Call with the module (in eval mode, no gradients needed) and x as numpy; returns the output as numpy, or
    None when onnxruntime cannot serve this call (then the caller runs torch). Not saved or copied with the module:
    a deep copy (export, for one) starts without a graph.
    """

    def __init__(self, function: Callable[[nn.Module, torch.Tensor], torch.Tensor], item_shape: tuple[int, ...]):
        self.function, self.item_shape = function, tuple(item_shape)
        self._session: object | None = None
        self._key: tuple | None = None
        self._tensors: list[torch.Tensor] = []  # the traced module's parameters and buffers
        self._failed = False

    def __deepcopy__(self, memo: dict) -> EvalGraph:
        return EvalGraph(self.function, self.item_shape)

    def __getstate__(self) -> dict:
        return EvalGraph(self.function, self.item_shape).__dict__

    def __call__(self, module: nn.Module, x: np.ndarray) -> np.ndarray | None:
        """x (batch, *item_shape) float32 -> function(module, x) as numpy, or None (then run torch)."""
        if self._failed or module.training or x.dtype != np.float32 or x.shape[1:] != self.item_shape:
            return None
        if not enabled() or torch.jit.is_tracing():
            return None  # turned off, or a graph being traced must record torch's ops, not this call
        key = (weights_version(self._tensors), torch.get_num_threads())
        if key != self._key:
            self._tensors = list(itertools.chain(module.parameters(), module.buffers()))
            key = (weights_version(self._tensors), key[1])
            self._session = self._build(module, key[1]) if _cpu_float32(module) else None
            self._key = key if self._session is not None else None
        if self._session is None:
            return None
        return self._session.run(None, {"x": np.ascontiguousarray(x)})[0]

    def _build(self, module: nn.Module, threads: int) -> object | None:
        try:
            traced = _Traced(module, self.function).eval()
            buffer = io.BytesIO()
            trace_graph(traced, self.item_shape, buffer, ("x", "y"))
            session = cpu_session(buffer.getvalue(), threads)
            check = torch.from_numpy(np.random.default_rng(0).uniform(-6.0, 1.0, (3, *self.item_shape)))
            with torch.no_grad():
                expected = traced(check.float()).numpy()
            difference = np.max(np.abs(session.run(None, {"x": check.float().numpy()})[0] - expected))
            difference = float(difference / max(1.0, float(np.max(np.abs(expected)))))
            if not difference <= CHECK_TOLERANCE:
                raise RuntimeError(f"its outputs differ from torch's by {difference:.2g} (relative)")
            return session
        except Exception as error:  # any failure: torch is always right
            self._failed = True
            warnings.warn(
                f"{type(module).__name__}: onnxruntime unavailable ({error}); scoring with torch", stacklevel=3
            )
            return None
