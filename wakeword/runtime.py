"""Run an exported detector (`wakeword export`) with numpy and onnxruntime only: no torch, no transformers.

    from wakeword.runtime import load_runtime, detect_file
    model = load_runtime("my-detector-onnx")          # model.onnx + runtime.json
    for event in detect_file(model, "recording.wav"):
        print(event.word, event.time_seconds, event.score)

Streaming goes through `wakeword.stream.StreamingDetector` itself (a torch-free module), so hops,
smoothing, the rising-edge rule, the refractory period and event times are exactly those of
`wakeword detect` / `wakeword listen`. Scores are LOGITS (the graph's output), compared with the logit
thresholds of runtime.json (a runtime.json whose `threshold_scale` is "probability" has each threshold p
read as log(p / (1 - p)), the same decision). `wakeword.metrics.probability` gives display probabilities.

A two-stage detector (family `cascade`) exports as two graphs, `stage1.onnx` and `stage2.onnx`, and a
`cascade` section of runtime.json (format_version 2); `OnnxDetector.logits` then applies the rule of
`wakeword.models.cascade.CascadeDetector.forward`: stage 1 scores every window (its last
`stage1_window_seconds`), stage 2 scores only the windows where some word's stage-1 logit reaches its gate,
and a window stage 2 did not score gets min(stage-1 logit, threshold - unseen_margin) for every word. A stage 1
that shares frames between hops also exports `stage1.logmel.onnx` (runtime.json `cascade.stage1.log_mel`):
log-mel frames in, logits out. Streaming (`OnnxDetector.span_logits`) then computes the frames with numpy
(`wakeword.frames.log_mel_frames`, the torch detector's own front end) and keeps those consecutive hops share: a
live hop computes 10 new frames, not 148 per window. A runtime that does not know the section uses
`stage1.onnx`, which takes the audio; this one ignores the `power` section of earlier exports the same way.

An int8 export keeps the float32 graph beside the int8 one and names both in a `refine` section of
runtime.json (format_version 3): every window is scored by the int8 graph, and each window where some word's
int8 logit reaches its threshold minus `margin_logits` is scored again by the float32 graph, whose logits
replace the int8 ones. Where int8 moves a logit by less than the margin, every decision (a window above or
below a threshold) and every reported score is then the float32 graph's: a window at or above a threshold in
float32 is within the margin in int8, so it is re-scored; a window left at its int8 logit stays below every
threshold minus the margin in int8, so below every threshold in float32 too. Only the windows near a
threshold pay for float32. The thresholds are runtime.json's, or lower ones a caller runs with
(`OnnxDetector.refine_for`, which `streaming_detector` calls). With smoothing over several hops the average
also takes int8 logits of the hops below the margin, so it is exact for smoothing 1 (the default) only.

Command line: `wakeword-runtime detect DIR AUDIO` and `wakeword-runtime listen DIR` (see `main`).
Files and arrays need soundfile; microphones need sounddevice; audio not at 16 kHz needs soxr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wakeword.audio import HOP_LENGTH, AudioError, WindowTiming, seconds_to_samples
from wakeword.frames import SharedFrames, frame_windows, log_mel_frames
from wakeword.metrics import logit, probability
from wakeword.stream import (
    Detection,
    MicrophoneError,
    StreamingDetector,
    iter_file_blocks,
    list_devices,
    listen_with,
    stream_results,
)

ONNX_FILE, RUNTIME_FILE = "model.onnx", "runtime.json"
STAGE1_LOG_MEL_FILE = "stage1.logmel.onnx"  # a cascade's stage 1 from shared log-mel frames (OnnxDetector.span_logits)
STAGE_FILES = {"stage1": "stage1.onnx", "stage2": "stage2.onnx"}  # a cascade's two graphs, instead of model.onnx
# 1: one graph (model.onnx). 2: adds the `cascade` section. Exports write the lowest version that describes
# them, so a runtime that reads only 1 still runs every single-graph export and refuses a cascade by its version
# 3: adds the `refine` section (an int8 graph with its float32 graph)
RUNTIME_FORMAT_VERSION = 3
THRESHOLD_SCALES = ("logit", "probability")
# onnxruntime fuses whisper's last residual Add and LayerNorm into one SkipLayerNormalization, which ran
# 12x slower than the two ops it replaces on one thread (onnxruntime 1.32 profiler: 0.30 against 0.024 ms a window)
DISABLED_OPTIMIZERS = ["SkipLayerNormFusion"]


class RuntimeModelError(ValueError):
    """An exported folder that cannot be run; the message names the path and the problem."""


def to_logit(threshold: float, scale: str) -> float:
    """A threshold on `scale` ("logit" or "probability") as a logit (p = 0 or 1 clipped to finite logits)."""
    return float(threshold) if scale == "logit" else float(logit(threshold))


@dataclass(frozen=True)
class CascadeGate:
    """runtime.json's `cascade` section: the two graphs and the gate between them (see the module docstring)."""

    stage1_file: str
    stage2_file: str
    stage1_window_seconds: float  # stage 1 reads the last this-many seconds of each window
    gate_logits: tuple[float, ...]  # per word (runtime.json order); -inf (null in the file): stage 2 always runs
    unseen_margin: float  # an unseen window scores at most threshold - unseen_margin (logits)
    stage1_log_mel_file: str | None = None  # stage 1 from log-mel frames, which streaming shares between hops

    @property
    def stage1_samples(self) -> int:
        return seconds_to_samples(self.stage1_window_seconds)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], words: Sequence[str], window_seconds: float) -> CascadeGate:
        gates = data["gate_logits"]
        gate = cls(
            str(data["stage1"]["file"]),
            str(data["stage2"]["file"]),
            float(data["stage1"]["window_seconds"]),
            tuple(float("-inf") if gates[w] is None else float(gates[w]) for w in words),
            float(data["unseen_margin"]),
            data["stage1"]["log_mel"]["file"] if "log_mel" in data["stage1"] else None,
        )
        if not 0 < gate.stage1_window_seconds <= window_seconds:
            raise ValueError("cascade.stage1.window_seconds must be in (0, window_seconds]")
        files = {gate.stage1_file, gate.stage2_file, gate.stage1_log_mel_file or gate.stage1_file}
        if {Path(name).name for name in files} != files:
            raise ValueError("cascade graph files must be plain file names inside the exported folder")
        return gate


@dataclass(frozen=True)
class Refinement:
    """runtime.json's `refine` section: int8 graphs re-scored in float32 near a threshold (module docstring)."""

    graphs: dict[str, str]  # int8 graph file -> the float32 graph of the same detector
    margin_logits: float  # windows whose int8 logit is >= threshold - this are re-scored in float32

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Refinement:
        refine = cls({str(k): str(v) for k, v in data["graphs"].items()}, float(data["margin_logits"]))
        if not refine.margin_logits > 0:
            raise ValueError("refine.margin_logits must be > 0")
        if any(Path(f).name != f for f in (*refine.graphs, *refine.graphs.values())):
            raise ValueError("refine graph files must be plain file names inside the exported folder")
        return refine


@dataclass(frozen=True)
class RuntimeConfig(WindowTiming):
    """runtime.json, with thresholds converted to logits. Has what StreamingDetector reads from a config."""

    wake_words: tuple[str, ...]
    window_seconds: float
    hop_seconds: float
    thresholds: dict[str, float]  # logit scale
    refractory_seconds: float = 1.0
    calibration: dict[str, Any] = field(default_factory=dict)
    quantization: str = "none"
    source: dict[str, Any] = field(default_factory=dict)
    cascade: CascadeGate | None = None  # a two-stage detector's gate; None: one graph, model.onnx
    refine: Refinement | None = None  # int8 graphs and their float32 graphs; None: every graph as it is

    def threshold(self, word: str) -> float:
        return self.thresholds[word]


def read_runtime_config(folder: str | os.PathLike) -> RuntimeConfig:
    """Parse and check `folder/runtime.json`; every problem is a RuntimeModelError naming the file."""
    path = Path(folder) / RUNTIME_FILE
    if not path.is_file():
        raise RuntimeModelError(f"{folder}: not an exported model (no {RUNTIME_FILE}; make one with wakeword export)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        version = data["format_version"]
        if not isinstance(version, int) or not 1 <= version <= RUNTIME_FORMAT_VERSION:
            raise ValueError(f"format_version {version!r}: this runtime reads 1..{RUNTIME_FORMAT_VERSION}; upgrade it")
        scale = data.get("threshold_scale", "logit")
        if scale not in THRESHOLD_SCALES:
            raise ValueError(f"threshold_scale {scale!r} is not one of {THRESHOLD_SCALES}")
        words = tuple(data["words"])
        if data.get("sample_rate", 16000) != 16000 or not words:
            raise ValueError("needs sample_rate 16000 and at least one word")
        hop, window = float(data["hop_seconds"]), float(data["window_seconds"])
        if not 0 < hop <= window:
            raise ValueError("needs 0 < hop_seconds <= window_seconds")
        thresholds = {w: to_logit(float(data["thresholds"][w]), scale) for w in words}
        cascade = CascadeGate.from_dict(data["cascade"], words, window) if "cascade" in data else None
        if cascade is not None and version < 2:
            raise ValueError("a cascade section needs format_version 2")
        refine = Refinement.from_dict(data["refine"]) if "refine" in data else None
        if refine is not None and version < 3:
            raise ValueError("a refine section needs format_version 3")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        what = f"missing key {error}" if isinstance(error, KeyError) else str(error)
        raise RuntimeModelError(f"{path}: {what}") from None
    optional = {k: data[k] for k in ("refractory_seconds", "calibration", "quantization", "source") if k in data}
    return RuntimeConfig(words, window, hop, thresholds, **optional, cascade=cascade, refine=refine)


class OnnxDetector:
    """An exported detector: windows of audio (n, window_samples) -> logits (n, n_words), onnxruntime on CPU.

    Counters: `stage2_windows`, the windows a cascade's stage 2 scored (as CascadeDetector's), and
    `refined_windows`, the windows an int8 graph's float32 graph re-scored (see the module docstring)."""

    def __init__(self, folder: str | os.PathLike, threads: int | None = None) -> None:
        import onnxruntime

        self.folder, self.config = Path(folder), read_runtime_config(folder)
        options = onnxruntime.SessionOptions()
        if threads is not None:  # 1 = one core, as on a small device; None = onnxruntime's choice
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        gate, refine = self.config.cascade, self.config.refine
        files = (gate.stage1_file, gate.stage2_file) if gate else (ONNX_FILE,)
        if gate is not None and gate.stage1_log_mel_file:
            files += (gate.stage1_log_mel_file,)
            self._stage1_frames = SharedFrames(log_mel_frames)  # the frames consecutive hops share
        self.sessions = {name: self._session(onnxruntime, name, options) for name in files}
        self.float_sessions = {
            name: self._session(onnxruntime, refine.graphs[name], options)
            for name in files
            if refine is not None and name in refine.graphs
        }
        words = self.config.wake_words
        if gate is not None:
            # float32 like CascadeDetector's gate arrays of the same Python floats, so that the comparisons
            # and the minimum below round exactly as the torch detector's do
            self.gate = np.array(gate.gate_logits, np.float32)
            self.ceiling = np.array([self.config.threshold(w) - gate.unseen_margin for w in words], np.float32)
        self.refine_floor = np.full(len(words), np.inf, np.float32)
        self.refine_for(self.config.thresholds)
        self.stage2_windows = self.refined_windows = 0
        # dynamic int8 sets each activation's scale from the whole call's values, so a window scored among
        # others gets another score than alone (up to 2.5 logits on real speech, issue 16: int8_real_world_batch32):
        # int8 graphs see one window a call, and a file then scores exactly as live listening does
        self.one_window_per_call = self.config.quantization != "none"

    def _session(self, onnxruntime: Any, name: str, options: Any) -> Any:
        graph = self.folder / name
        try:
            return onnxruntime.InferenceSession(
                str(graph), options, providers=["CPUExecutionProvider"], disabled_optimizers=DISABLED_OPTIMIZERS
            )
        except Exception as error:  # onnxruntime raises its own exception types for missing or broken graphs
            raise RuntimeModelError(f"{graph}: cannot load the ONNX graph ({error})") from None

    @property
    def wake_words(self) -> tuple[str, ...]:
        return self.config.wake_words

    @property
    def live_hops_per_call(self) -> int:
        """Hops `listen` scores per call by default: 3 for a cascade, as CascadeDetector's, else 1."""
        return 3 if self.config.cascade is not None else 1

    @property
    def session(self) -> Any:
        """A single-graph export's session (None for a cascade)."""
        return self.sessions.get(ONNX_FILE)

    def refine_for(self, thresholds: Mapping[str, float]) -> None:
        """Re-score in float32 every window within the margin of these LOGIT thresholds too (never fewer windows
        than before: the floor only goes down). Without a `refine` section this changes nothing."""
        if self.config.refine is None:
            return
        margin = self.config.refine.margin_logits
        wanted = np.array([thresholds.get(w, np.inf) - margin for w in self.wake_words], np.float32)
        self.refine_floor = np.minimum(self.refine_floor, wanted)

    def logits(self, windows: np.ndarray) -> np.ndarray:
        """windows (n, window_samples) float32 16 kHz -> logits (n, n_words) float64."""
        windows = np.ascontiguousarray(windows, dtype=np.float32)
        if windows.ndim != 2 or windows.shape[1] != self.config.window_samples:
            raise ValueError(f"expected windows of shape (n, {self.config.window_samples}), got {windows.shape}")
        if self.config.cascade is None:
            return self._graph(ONNX_FILE, windows).astype(np.float64)
        return self._cascade_logits(windows).astype(np.float64)

    def span_logits(self, span: np.ndarray, hop_samples: int) -> np.ndarray:
        """Logits (n_windows, n_words) float64 of the windows of span (n_samples,) that start every hop, as
        logits(windows). A cascade exported with a log-mel stage 1 computes each window's frames once per
        stream, as the torch detector does: a live hop's 10 new frames, not the window's 148."""
        windows = np.lib.stride_tricks.sliding_window_view(span, self.config.window_samples)[::hop_samples]
        gate = self.config.cascade
        if gate is None or gate.stage1_log_mel_file is None or hop_samples % HOP_LENGTH:
            return self.logits(np.ascontiguousarray(windows))
        stage1_span = np.ascontiguousarray(span[self.config.window_samples - gate.stage1_samples :], np.float32)
        frames = self._stage1_frames(stage1_span, gate.stage1_samples - hop_samples)  # (N_MELS, n_frames)
        log_mel = frame_windows(frames, gate.stage1_samples, hop_samples, len(windows))  # (n, N_MELS, frames)
        first = self.sessions[gate.stage1_log_mel_file].run(None, {"log_mel": log_mel})[0]
        return self._second_where_open(first, windows).astype(np.float64)

    def _cascade_logits(self, windows: np.ndarray) -> np.ndarray:
        """CascadeDetector.forward on numpy: (n, window_samples) -> (n, n_words) float32."""
        gate = self.config.cascade
        assert gate is not None
        first = self._graph(gate.stage1_file, np.ascontiguousarray(windows[:, -gate.stage1_samples :]))
        return self._second_where_open(first, windows)

    def _second_where_open(self, first: np.ndarray, windows: np.ndarray) -> np.ndarray:
        """Stage-1 logits (n, n_words) of windows (n, window_samples) -> the cascade's logits (n, n_words)."""
        gate = self.config.cascade
        assert gate is not None
        opened = (first >= self.gate).any(axis=1)
        scores = np.minimum(first, self.ceiling)  # what a window stage 2 does not score gets
        if opened.any():
            self.stage2_windows += int(opened.sum())
            scores[opened] = self._graph(gate.stage2_file, np.ascontiguousarray(windows[opened]))
        return scores

    def _graph(self, name: str, windows: np.ndarray) -> np.ndarray:
        """Graph `name`'s logits (n, n_words) float32, re-scored in float32 near a threshold if it is int8."""
        logits = self._run(self.sessions[name], windows)
        if name not in self.float_sessions:
            return logits
        near = (logits >= self.refine_floor).any(axis=1)
        if near.any():
            self.refined_windows += int(near.sum())
            logits[near] = self._run(self.float_sessions[name], np.ascontiguousarray(windows[near]))
        return logits

    def probabilities(self, windows: np.ndarray) -> np.ndarray:
        """Display probabilities (n, n_words) float64: sigmoid of the logits."""
        return probability(self.logits(windows))

    def _run(self, session: Any, windows: np.ndarray) -> np.ndarray:
        """One graph (input `audio`, output `logits`) on windows (n, samples) float32 -> (n, n_words) float32."""
        name = session.get_inputs()[0].name
        if not self.one_window_per_call or len(windows) <= 1:
            return session.run(None, {name: windows})[0]
        return np.concatenate([session.run(None, {name: windows[i : i + 1]})[0] for i in range(len(windows))])


def load_runtime(folder: str | os.PathLike, threads: int | None = None) -> OnnxDetector:
    """Load an exported folder (model.onnx + runtime.json)."""
    return OnnxDetector(folder, threads)


class RuntimeStreamingDetector(StreamingDetector):
    """StreamingDetector over an OnnxDetector: scores and thresholds are logits."""

    detector: OnnxDetector

    def _score_span(self, span: np.ndarray) -> np.ndarray:
        return self.detector.span_logits(span, self.hop_samples)


def streaming_detector(
    model: OnnxDetector,
    thresholds: Mapping[str, float] | None = None,
    smoothing_hops: int = 1,
    refractory_seconds: float | None = None,
    wait_for_peak: bool = False,
) -> RuntimeStreamingDetector:
    """A streaming detector; thresholds (logits) override runtime.json's; refractory defaults to its value.
    An int8 export with a `refine` section then re-scores in float32 near those thresholds too."""
    if thresholds is not None:
        model.refine_for(thresholds)
    refractory = model.config.refractory_seconds if refractory_seconds is None else refractory_seconds
    return RuntimeStreamingDetector(model, thresholds, smoothing_hops, refractory, wait_for_peak=wait_for_peak)  # type: ignore[arg-type]


def detect_file(
    model: OnnxDetector,
    path: str | os.PathLike,
    thresholds: Mapping[str, float] | None = None,
    smoothing_hops: int = 1,
    refractory_seconds: float | None = None,
    realtime: bool = False,
    wait_for_peak: bool = True,
) -> Iterator[Detection]:
    """Detections in a file of any length (bounded memory), as `wakeword.stream.detect_file` reports them."""
    streamer = streaming_detector(model, thresholds, smoothing_hops, refractory_seconds, wait_for_peak)
    for result in stream_results(streamer, iter_file_blocks(path, realtime=realtime)):
        yield from result.detections


def listen(
    model: OnnxDetector,
    device: int | str | None = None,
    on_event: Callable[[Detection], None] | None = None,
    stop: threading.Event | None = None,
    thresholds: Mapping[str, float] | None = None,
    smoothing_hops: int = 1,
    refractory_seconds: float | None = None,
    hops_per_call: int | None = None,
) -> int:
    """Detect live from a microphone until `stop` or Ctrl-C (see `wakeword.stream.listen`)."""
    streamer = streaming_detector(model, thresholds, smoothing_hops, refractory_seconds)
    return listen_with(streamer, device, on_event or _print_event, stop, hops_per_call=hops_per_call)


def event_dict(event: Detection) -> dict[str, float | str]:
    """An event as JSON-ready fields: `score` is the logit, `probability` its sigmoid for display."""
    return {**event.to_dict(), "probability": float(probability(event.score))}


def _print_event(event: Detection) -> None:
    print(json.dumps(event_dict(event)), flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wakeword-runtime", description="Run an exported wake-word detector.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    detect = sub.add_parser("detect", help="detection events in an audio file, one JSON object per line")
    detect.add_argument("model", help="exported folder (model.onnx + runtime.json)")
    detect.add_argument("audio")
    detect.add_argument("--realtime", action="store_true", help="pace the file in real time, like a microphone")
    listen_ = sub.add_parser("listen", help="detect live from the microphone (Ctrl-C to stop)")
    listen_.add_argument("model", nargs="?", help="exported folder (model.onnx + runtime.json)")
    listen_.add_argument("--device", default=None, help="input device index or name (see --list-devices)")
    listen_.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    listen_.add_argument(
        "--hops-per-call", type=int, default=None, help="hops scored per call (default: 3 for a cascade, else 1)"
    )
    for command in (detect, listen_):
        command.add_argument("--threshold", type=float, default=None, help="LOGIT threshold for every word")
        command.add_argument("--smoothing", type=int, default=1, help="average scores over the last N hops")
        command.add_argument(
            "--refractory", type=float, default=None, help="seconds after a detection (default: runtime.json)"
        )
        command.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: its choice)")
    return parser


def _run(args: argparse.Namespace) -> int:
    if args.command == "listen" and args.list_devices:
        print(list_devices())
        return 0
    if args.model is None:
        raise RuntimeModelError("give the exported model folder (or --list-devices)")
    model = load_runtime(args.model, args.threads)
    thresholds = None if args.threshold is None else dict.fromkeys(model.wake_words, args.threshold)
    options = {"thresholds": thresholds, "smoothing_hops": args.smoothing, "refractory_seconds": args.refractory}
    if args.command == "detect":
        for event in detect_file(model, args.audio, realtime=args.realtime, **options):
            _print_event(event)
        return 0
    print(f"listening for {', '.join(model.wake_words)} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    n_events = listen(model, args.device, hops_per_call=args.hops_per_call, **options)
    print(f"stopped after {n_events} detection(s)", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`wakeword-runtime detect DIR AUDIO` / `wakeword-runtime listen DIR`: one-line errors, exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (RuntimeModelError, AudioError, MicrophoneError, ValueError, OSError) as error:
        print(f"wakeword-runtime {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
