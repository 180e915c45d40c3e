"""Export a trained detector to ONNX for the torch-free runtime (`wakeword.runtime`).

The exported folder holds:

- `model.onnx`: the whole detector as one graph, audio window in, one LOGIT per wake word out:
  input `audio` (batch, window_samples) float32 16 kHz, output `logits` (batch, n_words) float32. The
  log-mel front end is inside the graph (its STFT as two matrix products with fixed, half-folded DFT
  matrices, the mel filterbank as a third), and for the transfer family the encoder and the head together.
  With `int8`, the weights of the matrix products after the front end are dynamically quantised to int8
  (onnxruntime.quantization; activations are quantised per call). Whisper's two convolutions are exported
  as matrix products for this (MatMulConv1d) and quantised too; other convolutions stay float32
  (onnxruntime's int8 convolution was slower), and so does the front end: a log of int8-rounded power
  would lose the quiet bins.
- `runtime.json`: what the runtime needs besides the graph (words, window, hop, thresholds and their
  scale, calibration, the default refractory period) and the sha256 of the source model's files.

The phoneme family cannot be exported: it decodes with PocketSphinx, a search in C over a phoneme
lattice, not a tensor graph.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wakeword.audio import N_MELS
from wakeword.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_detector, read_config
from wakeword.features import dft_matrices, mel_filters
from wakeword.models.base import Detector, DetectorConfig
from wakeword.runtime import ONNX_FILE, RUNTIME_FILE, RUNTIME_FORMAT_VERSION

OPSET = 17
REFRACTORY_SECONDS = 1.0  # the CLI's default, copied so the runtime behaves like `wakeword detect`
INT8_OPS = ["MatMul", "Gemm"]  # what --int8 quantises (see quantize_int8)
CHECK_TOLERANCE = 1e-3  # float32 graph vs torch, max abs logit difference accepted at export time
NOT_EXPORTABLE = {
    "phoneme": "it decodes with PocketSphinx (a search in C over a phoneme lattice with a pronunciation "
    "grammar), which is not a tensor graph; train a transfer or e2e model to run it with wakeword.runtime",
    "cascade": "its second stage runs only on the hops where the first stage's gate opens, a choice made "
    "between two graphs that the runtime does not make yet; run it with wakeword (torch), or export a stage alone",
}


class ExportError(ValueError):
    """A model that cannot be exported, or an export that does not match its source; names the path."""


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote and how closely the graph matched torch on the check windows."""

    out_dir: Path
    onnx_bytes: int
    int8: bool
    max_abs_logit_difference: float  # ONNX vs torch on the check windows (int8 differs more, by design)
    seconds: float


def export_detector(model_dir: str | os.PathLike, out_dir: str | os.PathLike, int8: bool = False) -> ExportReport:
    """Write `out_dir/model.onnx` and `out_dir/runtime.json` for the model in `model_dir`.

    The folder is written atomically (a temp folder, then a rename); an existing export there is
    replaced, any other existing non-empty folder is refused. Raises ExportError for a family that
    cannot be exported or a graph whose float32 logits differ from torch's by more than 1e-3.
    """
    start, model_dir, out_dir = time.monotonic(), Path(model_dir), Path(out_dir)
    config = read_config(model_dir)
    if config.family in NOT_EXPORTABLE:
        raise ExportError(
            f"{model_dir}: the {config.family} family cannot be exported to ONNX: {NOT_EXPORTABLE[config.family]}"
        )
    _check_target(out_dir)
    detector = load_detector(model_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        graph = staging / ONNX_FILE
        export_graph(matmul_convolutions(detector) if int8 else detector, graph)
        if int8:
            quantize_int8(graph, graph)
        difference = check_graph(detector, graph, tolerance=None if int8 else CHECK_TOLERANCE)
        metadata = runtime_metadata(detector, model_dir, int8) | {
            "export_check": {"max_abs_logit_difference": difference}
        }
        (staging / RUNTIME_FILE).write_text(json.dumps(metadata, indent=2), encoding="utf-8")
        _replace_folder(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    size = (out_dir / ONNX_FILE).stat().st_size
    return ExportReport(out_dir, size, int8, difference, time.monotonic() - start)


def zip_export(folder: str | os.PathLike, zip_path: str | os.PathLike) -> Path:
    """Zip an exported folder (model.onnx, runtime.json under the folder's name) atomically."""
    folder, zip_path = Path(folder), Path(zip_path)
    fd, tmp = tempfile.mkstemp(dir=zip_path.parent, prefix=f".{zip_path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name in (ONNX_FILE, RUNTIME_FILE):
                archive.write(folder / name, f"{folder.name}/{name}")
        os.replace(tmp, zip_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return zip_path


def _check_target(out_dir: Path) -> None:
    if out_dir.is_file():
        raise ExportError(f"{out_dir}: is a file; --out needs a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / RUNTIME_FILE).is_file():
        raise ExportError(f"{out_dir}: folder exists and holds something other than an export; choose another --out")


def _replace_folder(staging: Path, out_dir: Path) -> None:
    """Move the finished export into place; an older export there is replaced whole."""
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.old."))
        os.replace(out_dir, old / "export")
        os.replace(staging, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, out_dir)


def export_graph(detector: Detector, path: Path) -> Path:
    """Trace `detector` (audio (batch, window_samples) -> logits (batch, n_words)) into an ONNX file."""
    example = torch.zeros(2, detector.config.window_samples)
    detector = detector.eval()
    # the front end's fixed matrices are cached on first use; made first inside the trace, the ops that
    # compute them would be recorded into the graph and rerun on every call (about 5% of int8 whisper-tiny)
    dft_matrices(), mel_filters(N_MELS)
    with warnings.catch_warnings(), torch.no_grad():
        # the TorchScript exporter is deprecated in favour of torch.export, which needs onnxscript;
        # it exports these graphs exactly (checked by check_graph) without the extra dependency
        warnings.simplefilter("ignore")
        torch.onnx.export(
            detector,
            (example,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=["audio"],
            output_names=["logits"],
            dynamic_axes={"audio": {0: "batch"}, "logits": {0: "batch"}},
        )
    return path


class MatMulConv1d(torch.nn.Module):
    """A Conv1d as one matrix product of stacked shifted slices of its input with the flattened kernel:
    the same numbers, but a MatMul, which --int8 quantises (onnxruntime's int8 convolution was slower)."""

    def __init__(self, conv: torch.nn.Conv1d) -> None:
        super().__init__()
        if conv.groups != 1 or conv.dilation != (1,) or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ExportError(f"MatMulConv1d handles plain convolutions only, not {conv}")
        (self.kernel,), (self.stride,), (self.padding,) = conv.kernel_size, conv.stride, conv.padding
        out_channels, in_channels, _ = conv.weight.shape
        # row j * in_channels + c of the matrix is conv.weight[:, c, j], matching the slices' concatenation
        matrix = conv.weight.detach().permute(2, 1, 0).reshape(self.kernel * in_channels, out_channels)
        self.register_buffer("matrix", matrix.clone())
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, channels, time) as Conv1d
        x = torch.nn.functional.pad(x, (self.padding, self.padding)).transpose(1, 2)
        # slice j holds input steps j, j + stride, ... up to the last output's; ends counted from the end
        # (no arithmetic on the traced length, which would stay in the graph as shape ops)
        ends = [j - self.kernel + 1 or None for j in range(self.kernel)]
        columns = torch.cat([x[:, j : ends[j] : self.stride] for j in range(self.kernel)], dim=2)
        y = columns @ self.matrix
        return (y if self.bias is None else y + self.bias).transpose(1, 2)


def matmul_convolutions(detector: Detector) -> Detector:
    """A copy of `detector` for int8 export, with the Whisper encoder's two convolutions as MatMulConv1d.

    Only there: that took whisper-tiny.en's int8 window from 4.0 to 3.5 ms (one thread), while the same
    change made the speech-embedding encoder's many small convolutions slower (2.7 -> 3.5 ms) and did not
    make e2e's int8 graph faster than its float32 one (benchmarks/export_speed.py, docs/export.md)."""
    import copy

    from wakeword.encoders.whisper import WhisperEncoder

    detector = copy.deepcopy(detector)
    for module in detector.modules():
        if isinstance(module, WhisperEncoder):
            for name in ("conv1", "conv2"):
                setattr(module.encoder, name, MatMulConv1d(getattr(module.encoder, name)))
    return detector


def front_end_nodes(path: Path) -> list[str]:
    """Names of the graph nodes that read the fixed DFT kernels or mel filters (kept float32 in int8)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    fixed = [*(m.numpy() for m in dft_matrices()), mel_filters().numpy(), mel_filters().numpy().T]
    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            constants.update({out: numpy_helper.to_array(node.attribute[0].t) for out in node.output})
    names = {n for n, v in constants.items() if any(v.shape == f.shape and np.allclose(v, f) for f in fixed)}
    return [node.name for node in model.graph.node if names & set(node.input)]


def quantize_int8(source: Path, target: Path) -> Path:
    """Dynamic int8 quantisation of the graph's weights (activations are quantised at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    keep = front_end_nodes(source)
    root, level = logging.getLogger(), logging.getLogger().level
    with tempfile.TemporaryDirectory() as tmp:
        quantized = Path(tmp) / "int8.onnx"
        root.setLevel(logging.ERROR)  # the quantiser logs advice about shape inference on the root logger
        try:
            # Matrix products only, signed weights: onnxruntime's int8 convolution (ConvInteger, unsigned
            # weights only) ran slower than float32 Conv, and u8 x u8 products slower than u8 x s8
            # (benchmarks/export_speed.py: whisper-tiny window 8.1 ms with both, 5.8 ms like this)
            quantize_dynamic(
                source, quantized, weight_type=QuantType.QInt8, nodes_to_exclude=keep, op_types_to_quantize=INT8_OPS
            )
        finally:
            root.setLevel(level)
        os.replace(quantized, target)
    return target


def check_graph(detector: Detector, path: Path, tolerance: float | None = CHECK_TOLERANCE) -> float:
    """Max abs difference between the graph's and torch's logits on a few fixed noise and tone windows."""
    import onnxruntime

    windows = check_windows(detector.config.window_samples)
    with torch.no_grad():
        expected = detector.eval()(torch.from_numpy(windows)).numpy()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"audio": windows})[0]
    difference = float(np.max(np.abs(got.astype(np.float64) - expected)))
    if tolerance is not None and not difference <= tolerance:
        raise ExportError(f"{path}: exported graph differs from torch by {difference:.2g} (more than {tolerance:g})")
    return difference


def check_windows(window_samples: int) -> np.ndarray:
    """(3, window_samples) float32: quiet noise, loud noise, a chirp: fixed inputs for the export check."""
    rng = np.random.default_rng(0)
    t = np.arange(window_samples) / 16000.0
    chirp = 0.3 * np.sin(2 * np.pi * (200 + 1500 * t) * t)
    noise = rng.standard_normal((2, window_samples)) * np.array([[0.01], [0.3]])
    return np.concatenate([noise, chirp[None]]).astype(np.float32)


def source_checksums(model_dir: Path) -> dict[str, str]:
    """sha256 of the source model's config.json and model.safetensors."""
    return {name: hashlib.sha256((model_dir / name).read_bytes()).hexdigest() for name in (CONFIG_FILE, WEIGHTS_FILE)}


def runtime_metadata(detector: Detector, model_dir: Path, int8: bool) -> dict[str, Any]:
    """The contents of runtime.json (see the module docstring)."""
    config: DetectorConfig = detector.config
    return {
        "format_version": RUNTIME_FORMAT_VERSION,
        "words": list(config.wake_words),
        "family": config.family,
        "encoder": config.encoder,
        "sample_rate": config.sample_rate,
        "window_seconds": config.window_seconds,
        "hop_seconds": config.hop_seconds,
        "thresholds": {word: config.threshold(word) for word in config.wake_words},
        "threshold_scale": "logit",  # DetectorConfig thresholds are logits (read_config converts older ones)
        "refractory_seconds": REFRACTORY_SECONDS,
        "calibration": config.calibration,
        "quantization": "int8-dynamic" if int8 else "none",
        "input": {"name": "audio", "shape": ["batch", config.window_samples], "dtype": "float32"},
        "output": {"name": "logits", "shape": ["batch", len(config.wake_words)], "dtype": "float32"},
        "source": {"model_format_version": config.format_version, "sha256": source_checksums(model_dir)},
    }
