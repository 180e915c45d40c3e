"""Export a trained detector to ONNX for the torch-free runtime (`wakeword.runtime`).

The exported folder holds:

- `model.onnx`: the whole detector as one graph, audio window in, one LOGIT per wake word out:
  input `audio` (batch, window_samples) float32 16 kHz, output `logits` (batch, n_words) float32. The
  log-mel front end is inside the graph (its STFT as two matrix products with fixed, half-folded DFT
  matrices, the mel filterbank as a third), and for the transfer family the encoder and the head together.
  With `int8`, the weights of the matrix products after the front end are dynamically quantised to int8,
  one scale per output channel (onnxruntime.quantization; activations are quantised per call; why this
  configuration, and what it costs in accuracy: INT8_PER_CHANNEL). Whisper's two convolutions are exported
  as matrix products for this (MatMulConv1d) and quantised too; other convolutions stay float32
  (onnxruntime's int8 convolution was slower), and so does the front end: a log of int8-rounded power
  would lose the quiet bins.
- with `int8` (unless `refine=False`): `model.fp32.onnx` too, the same detector in float32, and a `refine`
  section in runtime.json (format_version 3): the runtime re-scores in float32 each window whose int8 logit
  comes within REFINE_MARGIN_LOGITS of a threshold, so it decides as the float32 graph does at the cost of
  int8 plus those few windows (`wakeword.runtime` module docstring; measured: docs/export.md).
- `runtime.json`: what the runtime needs besides the graph (words, window, hop, thresholds and their
  scale, calibration, the default refractory period) and the sha256 of the source model's files.

A two-stage detector (family `cascade`) exports as two graphs instead of `model.onnx`: `stage1.onnx` (its
own, possibly shorter window in) and `stage2.onnx` (the whole window in), each made as above, and
runtime.json gets format_version 2 and a `cascade` section (each stage's file, family and window, the gate
logit per word, the unseen margin): `wakeword.runtime` applies the gate exactly as CascadeDetector does.
With `int8` only stage 2 is quantised (and refined): stage 1 then opens the gate on exactly the windows it
does in torch, and its small CNN ran no faster in int8 (e2e: 0.0041 float32, 0.0042 int8 of a core).

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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wakeword.audio import HOP_LENGTH, N_MELS
from wakeword.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_detector, read_config
from wakeword.encoders.onnx_frames import trace_graph
from wakeword.features import dft_matrices, mel_filters, normalise_log_mel
from wakeword.frames import log_mel_frames, n_valid_frames
from wakeword.models.base import Detector, DetectorConfig
from wakeword.models.cascade import CascadeDetector
from wakeword.models.e2e import E2EDetector
from wakeword.runtime import ONNX_FILE, RUNTIME_FILE, STAGE1_LOG_MEL_FILE, STAGE_FILES, read_runtime_config

OPSET = 17
REFRACTORY_SECONDS = 1.0  # the CLI's default, copied so the runtime behaves like `wakeword detect`
INT8_OPS = ["MatMul", "Gemm"]  # what --int8 quantises (see quantize_int8)
# The --int8 default: every matrix product after the front end, weights per output channel. Measured on the
# jarvis model of benchmarks/export_accuracy.py (120 held-out positives, 10 min of speech), against torch:
#   per-tensor weights (before):       FRR at 1 FA/h +1.67 points (2 clips), ROC AUC -0.09 points
#   per-channel (this default):        FRR +0.83 (1 clip), AUC +0.41; logit error on 8354 other real windows
#                                      0.29 mean (was 0.38); 3.60 ms a window on one thread (3.69 before)
#   FFN only, or per-channel with conv2 and layer 0 float32: also +0.83 FRR, 5-6 ms a window
# (earlier machine, 8-bit weights). No int8 configuration alone met the 0.5-point FRR bound (one clip
# of 120 is 0.83 points), hence the float32 refinement (REFINE_MARGIN_LOGITS); the candidates and their
# errors: benchmarks/int8_candidates.py, benchmarks/results/int8_*.json, docs/export.md
INT8_KEEP_FLOAT: tuple[str, ...] = ()  # substrings of node names --int8 leaves float32
INT8_PER_CHANNEL = True
# 7-bit weights. x86 CPUs without VNNI (AVX2 only, like this project's 2-core AMD EPYC) multiply u8 x s8 with
# vpmaddubsw, whose int16 pair sums saturate at full 8-bit range: on a tiny Whisper's speech windows int8
# then moved logits by 0.60 on average (max 0.67 of a 4.4 range), 7-bit weights by 0.013 (max 0.044). The
# exporter cannot know the CPU that will run the graph, so every export is safe on all of them; on a VNNI CPU
# 7-bit weights cost accuracy (mean logit error 0.58 instead of 0.29, int8_candidates.json), which the
# float32 refinement (REFINE_MARGIN_LOGITS) keeps away from the decisions
INT8_REDUCE_RANGE = True
# An int8 window within this many logits of a threshold is re-scored in float32 (see the module docstring).
# The largest int8-minus-float32 logit change seen on real windows was 2.97 (six trained jarvis models, 51,197
# windows each, 7-bit weights on an AVX2 CPU; p99.9 1.16-1.53), and at this margin 0.5-3.1% of the hops of
# 53.8 minutes of read speech were re-scored: benchmarks/int8_real_world.py, int8_real_world_refine.md
REFINE_MARGIN_LOGITS = 4.0
CHECK_TOLERANCE = 1e-3  # float32 graph vs torch, max abs logit difference accepted at export time
NOT_EXPORTABLE = {
    "phoneme": "it decodes with PocketSphinx (a search in C over a phoneme lattice with a pronunciation "
    "grammar), which is not a tensor graph; train a transfer or e2e model to run it with wakeword.runtime",
}


class ExportError(ValueError):
    """A model that cannot be exported, or an export that does not match its source; names the path."""


@dataclass(frozen=True)
class Int8Settings:
    """How --int8 quantises (see quantize_int8); the defaults are `wakeword export --int8`'s."""

    keep: tuple[str, ...] = INT8_KEEP_FLOAT  # node-name substrings left float32
    per_channel: bool = INT8_PER_CHANNEL  # one scale per output column of each weight matrix
    reduce_range: bool = INT8_REDUCE_RANGE  # 7-bit weights: no saturated u8 x s8 sums on CPUs without VNNI


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote and how closely the graph matched torch on the check windows."""

    out_dir: Path
    onnx_bytes: int
    int8: bool
    max_abs_logit_difference: float  # ONNX vs torch on the check windows (int8 differs more, by design)
    seconds: float
    files: tuple[str, ...] = (ONNX_FILE,)  # the graphs written (a cascade: stage1.onnx, stage2.onnx)
    float_files: tuple[str, ...] = ()  # the float32 graphs written beside int8 ones for refinement


def export_detector(
    model_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    int8: bool = False,
    int8_settings: Int8Settings | None = None,
    refine: bool = True,
) -> ExportReport:
    """Write `out_dir/model.onnx` and `out_dir/runtime.json` for the model in `model_dir`.

    With `int8` and `refine`, the float32 graph of every int8 graph is written too (see the module
    docstring); `refine=False` writes the int8 graph alone (smaller, and int8 decides by itself).
    The folder is written atomically (a temp folder, then a rename); an existing export there is
    replaced, any other existing non-empty folder is refused. Raises ExportError for a family that
    cannot be exported or a float32 graph whose logits differ from torch's by more than 1e-3.
    `int8_settings` (benchmarks) replaces the --int8 defaults; it implies int8.
    """
    int8 = int8 or int8_settings is not None
    settings = int8_settings or Int8Settings()
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
        differences, refined = {}, {}
        for name, module in graphs(detector).items():
            if not (int8 and quantize_graph(detector, name)):
                differences[name] = check_graph(module, export_graph(module, staging / name))
                continue
            export_graph(matmul_convolutions(module), staging / name)
            quantize_int8(staging / name, staging / name, settings)
            differences[name] = check_graph(module, staging / name, tolerance=None)  # int8 differs, by design
            if refine:
                refined[name] = float_name(name)
                check_graph(module, export_graph(module, staging / refined[name]))
        from_log_mel = stage1_from_log_mel(detector)
        if from_log_mel is not None:  # never int8: stage 1 stays float32 (module docstring)
            differences[STAGE1_LOG_MEL_FILE] = export_log_mel_graph(from_log_mel, staging / STAGE1_LOG_MEL_FILE)
        metadata = runtime_metadata(detector, model_dir, int8) | {"export_check": export_check(differences)}
        if int8:
            metadata["int8"] = asdict(settings)  # keep (node names left float32), per_channel, reduce_range
        if refined:
            metadata |= {"format_version": 3, "refine": refine_metadata(refined)}
        (staging / RUNTIME_FILE).write_text(json.dumps(metadata, indent=2), encoding="utf-8")
        _replace_folder(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    size = sum((out_dir / name).stat().st_size for name in (*differences, *refined.values()))
    difference = max(differences.values())
    return ExportReport(
        out_dir, size, int8, difference, time.monotonic() - start, tuple(differences), tuple(refined.values())
    )


def quantize_graph(detector: Detector, name: str) -> bool:
    """Whether --int8 quantises graph `name`: every graph but a cascade's stage 1 (module docstring)."""
    return not (isinstance(detector, CascadeDetector) and name == STAGE_FILES["stage1"])


def float_name(name: str) -> str:
    """The float32 graph kept beside int8 graph `name` for refinement: model.onnx -> model.fp32.onnx."""
    return f"{Path(name).stem}.fp32.onnx"


def export_check(differences: dict[str, float]) -> dict[str, Any]:
    """runtime.json's `export_check`: the largest |graph - torch| logit on the check windows (and per graph)."""
    check: dict[str, Any] = {"max_abs_logit_difference": max(differences.values())}
    return check | ({"per_graph": differences} if len(differences) > 1 else {})


def refine_metadata(refined: dict[str, str]) -> dict[str, Any]:
    """runtime.json's `refine` section (wakeword.runtime.Refinement reads it)."""
    return {
        "graphs": refined,
        "margin_logits": REFINE_MARGIN_LOGITS,
        "rule": "every window is scored by the int8 graph; a window where some word's int8 logit >= its threshold "
        "- margin_logits is scored again by the float32 graph, whose logits replace the int8 ones",
    }


class Stage1FromLogMel(torch.nn.Module):
    """A cascade's stage 1 (an e2e detector with framing "valid") from log-mel frames: (batch, N_MELS, n_frames)
    -> logits (batch, n_words), as the torch detector scores it. The runtime computes the frames with numpy
    (wakeword.frames.log_mel_frames) and keeps those consecutive hops share, so a live hop computes 10 new frames
    and the graph does the per-window normalisation and the CNN."""

    def __init__(self, stage1: E2EDetector) -> None:
        super().__init__()
        self.stage1 = stage1

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        return self.stage1.forward_features(normalise_log_mel(log_mel))


def stage1_from_log_mel(detector: Detector) -> Stage1FromLogMel | None:
    """The log-mel graph of a cascade whose stage 1 shares frames between hops (else None)."""
    if not isinstance(detector, CascadeDetector) or detector.config.hop_samples % HOP_LENGTH:
        return None
    stage1 = detector.stage1
    if not isinstance(stage1, E2EDetector) or stage1.settings.framing != "valid":
        return None
    return Stage1FromLogMel(stage1).eval()


def export_log_mel_graph(module: Stage1FromLogMel, path: Path) -> float:
    """Trace `module` to `path`; max abs difference of its logits on log-mel frames from numpy (the runtime's
    wakeword.frames.log_mel_frames) from stage 1's own logits on the same check windows (raises ExportError
    beyond CHECK_TOLERANCE)."""
    import onnxruntime

    window_samples = module.stage1.config.window_samples
    trace_graph(module, (N_MELS, n_valid_frames(window_samples)), str(path), ("log_mel", "logits"))
    windows = check_windows(window_samples)
    log_mel = np.stack([np.ascontiguousarray(log_mel_frames(window)) for window in windows])
    with torch.no_grad():
        expected = module.stage1.eval()(torch.from_numpy(windows)).numpy()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    difference = float(np.max(np.abs(session.run(None, {"log_mel": log_mel})[0].astype(np.float64) - expected)))
    if not difference <= CHECK_TOLERANCE:
        raise ExportError(f"{path}: stage 1 from log-mel frames differs from torch by {difference:.2g}")
    return difference


def graphs(detector: Detector) -> dict[str, Detector]:
    """File name -> the detector that graph computes: model.onnx for one detector, stage1.onnx and
    stage2.onnx for a cascade (the gate between them is runtime.json's, applied by wakeword.runtime)."""
    if isinstance(detector, CascadeDetector):
        return {STAGE_FILES["stage1"]: detector.stage1, STAGE_FILES["stage2"]: detector.stage2}
    return {ONNX_FILE: detector}


def zip_export(folder: str | os.PathLike, zip_path: str | os.PathLike) -> Path:
    """Zip an exported folder (its graphs and runtime.json, under the folder's name) atomically."""
    folder, zip_path = Path(folder), Path(zip_path)
    fd, tmp = tempfile.mkstemp(dir=zip_path.parent, prefix=f".{zip_path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name in (*exported_graphs(folder), RUNTIME_FILE):
                archive.write(folder / name, f"{folder.name}/{name}")
        os.replace(tmp, zip_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return zip_path


def exported_graphs(folder: Path) -> tuple[str, ...]:
    """The ONNX files an exported folder's runtime.json names (model.onnx, or a cascade's two stages, and the
    float32 graphs of refined int8 ones)."""
    config = read_runtime_config(folder)
    cascade, refine = config.cascade, config.refine
    graphs = (ONNX_FILE,) if cascade is None else (cascade.stage1_file, cascade.stage2_file)
    log_mel = (cascade.stage1_log_mel_file,) if cascade is not None and cascade.stage1_log_mel_file else ()
    return graphs + log_mel + (tuple(refine.graphs[g] for g in graphs if g in refine.graphs) if refine else ())


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


def int8_nodes(path: Path, keep: tuple[str, ...] = INT8_KEEP_FLOAT) -> list[str]:
    """Names of the graph's MatMul/Gemm nodes that `quantize_int8` quantises: all but the front end's and
    those whose name contains one of the `keep` substrings."""
    import onnx

    front_end = set(front_end_nodes(path))
    return [
        node.name
        for node in onnx.load(str(path)).graph.node
        if node.op_type in INT8_OPS and node.name not in front_end and not any(k in node.name for k in keep)
    ]


def quantize_int8(source: Path, target: Path, settings: Int8Settings = Int8Settings()) -> Path:
    """Dynamic int8 quantisation of the graph's matrix-product weights (activations are quantised per call).

    The front end and every node whose name contains one of `settings.keep` stay float32; `per_channel`
    gives each output column of a weight matrix its own scale (see INT8_PER_CHANNEL for the default)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    chosen = set(int8_nodes(source, settings.keep))
    exclude = [n.name for n in onnx.load(str(source)).graph.node if n.name not in chosen]
    root, level = logging.getLogger(), logging.getLogger().level
    with tempfile.TemporaryDirectory() as tmp:
        quantized = Path(tmp) / "int8.onnx"
        root.setLevel(logging.ERROR)  # the quantiser logs advice about shape inference on the root logger
        try:
            # Matrix products only, signed weights: onnxruntime's int8 convolution (ConvInteger, unsigned
            # weights only) ran slower than float32 Conv, and u8 x u8 products slower than u8 x s8
            # (benchmarks/export_speed.py: whisper-tiny window 8.1 ms with both, 5.8 ms like this)
            quantize_dynamic(
                source,
                quantized,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=exclude,
                op_types_to_quantize=INT8_OPS,
                per_channel=settings.per_channel,
                reduce_range=settings.reduce_range,
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
    meta = {
        "format_version": 1,  # 2 for a cascade, 3 with refine (wakeword.runtime.RUNTIME_FORMAT_VERSION says why)
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
    if isinstance(detector, CascadeDetector):
        meta |= {"format_version": 2, "cascade": cascade_metadata(detector)}
        del meta["input"], meta["output"]  # each stage's graph has its own input length, given per stage
    return meta


def cascade_metadata(cascade: CascadeDetector) -> dict[str, Any]:
    """runtime.json's `cascade` section: each stage's graph and window, and the gate between them.

    A word whose gate is -inf (never calibrated: stage 2 always runs) is written as null (JSON has no -inf)."""
    stages = {}
    for name, stage in (("stage1", cascade.stage1), ("stage2", cascade.stage2)):
        config = stage.config
        stages[name] = {
            "file": STAGE_FILES[name],
            "family": config.family,
            "encoder": config.encoder,
            "window_seconds": config.window_seconds,
            "input": {"name": "audio", "shape": ["batch", config.window_samples], "dtype": "float32"},
            "output": {"name": "logits", "shape": ["batch", len(config.wake_words)], "dtype": "float32"},
        }
    if stage1_from_log_mel(cascade) is not None:
        frames = n_valid_frames(cascade.stage1.config.window_samples)
        stages["stage1"]["log_mel"] = {
            "file": STAGE1_LOG_MEL_FILE,
            "input": {"name": "log_mel", "shape": ["batch", N_MELS, frames], "dtype": "float32"},
            "frames": "log10 of Slaney mel power, floored at 1e-10, of periodic-Hann frames of N_FFT samples every "
            "HOP_LENGTH wholly inside the window (wakeword.frames.log_mel_frames)",
        }
    gates = {w: cascade.gate.logits.get(w, float("-inf")) for w in cascade.wake_words}
    return stages | {
        "gate_logits": {w: (None if g == float("-inf") else g) for w, g in gates.items()},
        "unseen_margin": cascade.gate.unseen_margin,
        "gate_recall": cascade.gate.recall,
        "rule": "stage 1 scores the last stage1.window_seconds of every window; stage 2 scores the windows where "
        "some word's stage-1 logit >= its gate; every other window scores min(stage-1 logit, threshold - "
        "unseen_margin) per word",
    }
