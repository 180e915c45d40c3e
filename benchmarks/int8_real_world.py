"""Does `wakeword export --int8` change accuracy? Float vs int8 on the real-world protocol, over many models.

Issue 16 item 3 asks that --int8 change FRR at 1 FA/h and ROC AUC by at most 0.5 points. One model
(benchmarks/export_accuracy.py) is an anecdote; this measures every trained model of a real-world label
(benchmarks/real_world.py; default: the nine jarvis models of `ensemble3`) on the real-world protocol
(120 noisy real test positives, ~280 same-channel negative clips, the 53.8-minute speechocean762 test-half
stream) and reports, per model, FRR at 1 and 0.5 FA/h on the stream, clip FRR at 1% FAR and clip ROC AUC,
float and int8, and the int8-minus-float differences in points; then their mean, min and max over the
models (and over the models trained with real clips alone).

- Float: the torch model's head on the cached float frames, exactly as real_world.py computes it
  (`EvalSet.evaluate`; recomputed, and checked against the label's stored rows).
- Int8: the model exported by `export_detector(..., int8=True)` (the --int8 defaults), split at the encoder
  output tensor into an int8 ENCODER graph and an int8 HEAD graph (onnx.utils.Extractor). The encoder graph
  is the same for every model of one encoder (same weights, deterministic weight quantisation: checked by its
  sha256, which keys its frame cache), so every evaluation window is encoded ONCE by it (float16 frames under
  benchmarks/cache/int8_frames/<key>/, apart from the float frames) and each model's int8 head graph scores
  those frames. Checked per model on real windows: encoder graph then head graph gives the whole int8
  graph's logits ("split_check").
- Int8 refined (the runtime's default since the `refine` section, issue 16): each window's int8 logit, or its
  float logit where the int8 one is within `--margin` logits (default wakeword.export.REFINE_MARGIN_LOGITS)
  of the lowest threshold the metrics use (the model's own, the float model's thresholds at 1 and 0.5 FA/h,
  and its clip threshold at 5% FAR): what `wakeword.runtime` scores when run at those thresholds. Also
  reported per model: the largest |int8 - float| window logit over every evaluation window, the share of
  stream hops re-scored (the float32 cost), and the windows whose decision at any of those thresholds
  differs from float's (0 whenever int8 moves no window by the margin or more).
- By default every int8 graph runs on ONE window per call: its activations are quantised per call with one
  scale per tensor, so a window's int8 logit depends on which other windows share its call (measured in
  split_check: batch32_vs_batch1_*). One window per call is what a live detector does (one hop at a time)
  and makes a window's score its own. `--batch 32` runs every int8 graph on 32 consecutive windows per call
  instead, as `wakeword detect FILE` does (StreamingDetector's batch_hops), with its own frame cache and
  results files (int8_real_world_batch32.*).

    python benchmarks/int8_real_world.py --label ensemble3 --words jarvis \\
        --max-other-keyword-clips 80 --n-digits 80 --max-sentence-clips 40 [--models n0-d0-s0 ...] \\
        [--out-models runs/real_world/ensemble3] [--batch 32]

The protocol flags should be those the label's results were made with: then the recomputed float metrics
are compared with the stored rows (float_vs_stored_max_abs). Results: benchmarks/results/int8_real_world.json
/ .md / .png (per-model float vs int8 FRR at 1 FA/h; --report-only rewrites .md and .png from the .json).
Exports and split graphs: runs/int8_real_world/<label>/<word>/<model>/. The one-time int8 encoding of every
window (~50,000) is the cost: ~4 ms a window on an idle core (about 6 minutes on the shared 2-core machine);
it resumes where it stopped. Then each model: ~1-2 minutes (its float and int8 heads, and the split check).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, when run as a script

import real_world as rw
import real_world_data as data
import real_world_metrics as metrics
from tqdm.auto import tqdm

from wakeword.checkpoint import load_detector
from wakeword.export import REFINE_MARGIN_LOGITS, Int8Settings, export_detector, source_checksums
from wakeword.models.base import Detector
from wakeword.runtime import DISABLED_OPTIMIZERS, ONNX_FILE, RUNTIME_FILE

RESULTS = data.REPO / "benchmarks" / "results"
EXPORTS = data.REPO / "runs" / "int8_real_world"
INT8_CACHE = data.CACHE / "int8_frames"  # never benchmarks/cache/frames: those are the float encoder's
METRICS = (  # (name, path in a row)
    ("FRR @ 1 FA/h", ("at_1_fah", "frr")),
    ("FRR @ 0.5 FA/h", ("at_0.5_fah", "frr")),
    ("clip FRR @ 1% FAR", ("clip_frr_at_1pct_far",)),
    ("clip ROC AUC", ("clip_roc_auc",)),
)


# ---- splitting the int8 graph ----------------------------------------------------------------------------


def boundary_tensor(model: Any) -> str:
    """The one audio-dependent tensor the head's nodes read from the encoder's: the encoder output (constants
    and weights the exporter shares between them, e.g. an Identity of an initializer, do not count)."""
    dynamic, head_made, crossing = {i.name for i in model.graph.input}, set(), set()
    for node in model.graph.node:  # ONNX nodes are in topological order
        if node.name.startswith("/head/"):
            crossing |= {name for name in node.input if name in dynamic and name not in head_made}
            head_made |= set(node.output)
        if dynamic & set(node.input):
            dynamic |= set(node.output)
    if len(crossing) != 1:
        raise ValueError(f"expected one encoder-to-head tensor, found {sorted(crossing)}")
    return crossing.pop()


def split_graph(whole: Path, out_dir: Path) -> tuple[Path, Path, str]:
    """Write out_dir/encoder.onnx (audio -> encoder frames) and out_dir/head.onnx (frames -> logits) cut from
    the whole exported graph; returns their paths and the boundary tensor's name (the head's input)."""
    import onnx
    from onnx.utils import Extractor

    model = onnx.load(str(whole))
    tensor, extractor = boundary_tensor(model), Extractor(model)
    out_dir.mkdir(parents=True, exist_ok=True)
    encoder, head = out_dir / "encoder.onnx", out_dir / "head.onnx"
    for path, graph in ((encoder, extractor.extract_model(["audio"], [tensor])),
                        (head, extractor.extract_model([tensor], ["logits"]))):  # fmt: skip
        staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        onnx.save(graph, str(staging))
        os.replace(staging, path)  # another run (--batch) may be reading the same split
    return encoder, head, tensor


def session(path: Path) -> Any:
    """One-thread onnxruntime session with the runtime's options (wakeword.runtime.OnnxDetector's)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    return onnxruntime.InferenceSession(
        str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=DISABLED_OPTIMIZERS
    )


def run_each(graph: Any, inputs: np.ndarray, batch: int = 1) -> np.ndarray:
    """The graph on `batch` consecutive inputs per call (default: each alone, see the module docstring)."""
    name = graph.get_inputs()[0].name
    calls = [np.ascontiguousarray(inputs[i : i + batch], np.float32) for i in range(0, len(inputs), batch)]
    return np.concatenate([graph.run(None, {name: x})[0] for x in calls])


# ---- one model's int8 export -----------------------------------------------------------------------------


class Int8Model:
    """One model's int8 export, split; `forward_features` makes it score cached frames like a Detector
    (the interface EvalSet.evaluate and real_world_metrics.head_logits use)."""

    def __init__(self, model_dir: Path, out_dir: Path, batch: int = 1) -> None:
        self.source, self.batch = load_detector(model_dir), batch
        self.config, export = self.source.config, out_dir / "export"
        if not current_export(model_dir, export):
            export_detector(model_dir, export, int8=True)
        self.whole_path = export / ONNX_FILE
        self.encoder_path, self.head_path, self.tensor = split_graph(self.whole_path, out_dir)
        self.encoder_sha = hashlib.sha256(self.encoder_path.read_bytes()).hexdigest()
        self.head = session(self.head_path)

    def eval(self) -> Int8Model:
        return self

    def forward_features(self, frames: torch.Tensor) -> torch.Tensor:
        """Cached int8-encoder frames (batch, n_frames, dim) -> int8 head logits (batch, n_words)."""
        return torch.from_numpy(run_each(self.head, frames.numpy(), self.batch))


def current_export(model_dir: Path, export: Path) -> bool:
    """Whether `export` holds an int8 export of the model's current files with today's --int8 settings."""
    if not (export / ONNX_FILE).exists() or not (export / RUNTIME_FILE).exists():
        return False
    meta = json.loads((export / RUNTIME_FILE).read_text())
    settings = json.loads(json.dumps(asdict(Int8Settings())))  # as runtime.json stores them (lists, not tuples)
    return meta["source"]["sha256"] == source_checksums(model_dir) and meta.get("int8") == settings


# ---- the int8 encoder's frame cache ----------------------------------------------------------------------


def int8_root(protocol: data.Protocol, timing: data.Timing, encoder_sha: str, batch: int = 1) -> Path:
    """The cache folder of one int8 encoder graph's frames (keyed by the graph's sha256 and the windows per
    call, which change the frames: activations are quantised per call)."""
    parts = [protocol.seed, protocol.snr_db, asdict(timing), str(np.dtype(data.FRAME_DTYPE)), encoder_sha]
    parts += [batch] if batch != 1 else []
    return INT8_CACHE / hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def clip_path(root: Path, item: data.ClipItem, protocol: data.Protocol, timing: data.Timing) -> Path:
    return root / "clips" / data.clip_cache_path(item, protocol, timing).name  # the float cache's file name


def stream_path(root: Path, protocol: data.Protocol, timing: data.Timing) -> Path:
    return root / data._stream_dir(protocol, timing).name


def encode_clips_int8(encoder: Any, items: list[data.ClipItem], evalset: rw.EvalSet, root: Path, batch: int) -> None:
    """The int8 encoder's frames of every clip not yet cached, one file per clip (as the float cache)."""
    protocol, timing = evalset.protocol, evalset.timing
    todo = [i for i in dict.fromkeys(items) if not clip_path(root, i, protocol, timing).exists()]
    preparer = data.ClipPreparer(protocol, timing)
    for item in tqdm(todo, desc="int8-encoding clips", unit="clip", mininterval=30):
        frames = run_each(encoder, data.stream_windows(preparer.padded(item), timing), batch)
        data._save_atomic(clip_path(root, item, protocol, timing), frames.astype(data.FRAME_DTYPE))


def encode_stream_int8(encoder: Any, evalset: rw.EvalSet, root: Path, batch: int) -> Path:
    """The int8 encoder's frames of the stream, in the float cache's chunks (resumable)."""
    folder = stream_path(root, evalset.protocol, evalset.timing)
    windows = data.stream_windows(data.stream_audio(evalset.protocol), evalset.timing)
    starts = range(0, len(windows), data.STREAM_CHUNK_HOPS)
    for c, start in enumerate(tqdm(starts, desc="int8-encoding stream chunks", unit="chunk")):
        path = folder / f"{c:04d}.npy"
        if not path.exists():
            frames = run_each(encoder, windows[start : start + data.STREAM_CHUNK_HOPS], batch)
            data._save_atomic(path, frames.astype(data.FRAME_DTYPE))
    return folder


class Int8EvalSet(rw.EvalSet):
    """A float EvalSet's clips and stream, read from the int8 encoder's frame cache instead."""

    def __init__(self, evalset: rw.EvalSet, model: Int8Model) -> None:
        vars(self).update(vars(evalset))
        self.root = int8_root(self.protocol, self.timing, model.encoder_sha, model.batch)
        encoder = session(model.encoder_path)
        encode_clips_int8(encoder, [*self.positives, *self.negatives], evalset, self.root, model.batch)
        self.stream_dir = encode_stream_int8(encoder, evalset, self.root, model.batch)

    def clip_logits(self, model: Detector, items: list[data.ClipItem]) -> np.ndarray:
        paths = [clip_path(self.root, i, self.protocol, self.timing) for i in items]
        return np.array([metrics.head_logits(model, np.load(p, mmap_mode="r"), self.word).max() for p in paths])


class RefinedEvalSet(rw.EvalSet):
    """Scores as the runtime's int8 + float32 refinement: a window's float logit where its int8 logit is at
    or above `floor`, its int8 logit elsewhere; also records the window-level comparison (`stats`)."""

    def __init__(self, evalset: rw.EvalSet, int8_set: Int8EvalSet, int8_model: Int8Model, floor: float) -> None:
        vars(self).update(vars(evalset))
        self.int8_set, self.int8_model, self.floor = int8_set, int8_model, floor
        self.pairs: list[tuple[np.ndarray, np.ndarray]] = []  # (float, int8) window logits of every track

    def _refined(self, float_track: np.ndarray, int8_track: np.ndarray) -> np.ndarray:
        self.pairs.append((float_track, int8_track))
        return np.where(int8_track >= self.floor, float_track, int8_track)

    def clip_logits(self, model: Detector, items: list[data.ClipItem]) -> np.ndarray:
        tracks = []
        for item in items:
            float_track = metrics.head_logits(model, data.load_clip_frames(item, self.protocol, self.timing), self.word)
            int8_frames = np.load(clip_path(self.int8_set.root, item, self.protocol, self.timing), mmap_mode="r")
            tracks.append(self._refined(float_track, metrics.head_logits(self.int8_model, int8_frames, self.word)))
        return np.array([t.max() for t in tracks])

    def stream_logits(self, model: Detector) -> np.ndarray:
        float_track, int8_track = super().stream_logits(model), self.int8_set.stream_logits(self.int8_model)
        self.stream_refined_share = float(np.mean(int8_track >= self.floor))
        return self._refined(float_track, int8_track)

    def stats(self, thresholds: list[float]) -> dict[str, float]:
        """Window-level comparison over every scored window (clips and stream)."""
        floats, int8s = (np.concatenate(t) for t in zip(*self.pairs, strict=True))
        refined = np.where(int8s >= self.floor, floats, int8s)
        flips = sum(int(np.sum((refined >= t) != (floats >= t))) for t in thresholds)
        error = np.abs(int8s - floats)
        return {"n_windows": len(floats), "max_abs_int8_vs_float": float(error.max()),
                "p999_abs_int8_vs_float": float(np.quantile(error, 0.999)), "floor": self.floor,
                "stream_refined_share": self.stream_refined_share, "decisions_differing": flips}  # fmt: skip


def operating_thresholds(float_row: dict, negatives: np.ndarray) -> list[float]:
    """The logit thresholds the metrics use: the model's own, the float model's at 1 and 0.5 FA/h, and the
    clip score at 5% FAR (the lower of the two clip operating points)."""
    own = float_row["at_own"]
    assert own["scale"] == "logit", own
    at_5pct = float(np.sort(negatives)[::-1][int(0.05 * len(negatives))])
    return [float(own["threshold"]), *(float(float_row[k]["threshold_logit"]) for k in ("at_1_fah", "at_0.5_fah")),
            at_5pct]  # fmt: skip


# ---- checks ----------------------------------------------------------------------------------------------


def check_windows(evalset: rw.EvalSet, n: int) -> np.ndarray:
    """About `n` real evaluation windows (n, window_samples): two positives, one negative clip of each kind,
    then stream windows from its middle."""
    kinds = {item.kind: item for item in reversed(evalset.negatives)}
    preparer = data.ClipPreparer(evalset.protocol, evalset.timing)
    clips = [data.stream_windows(preparer.padded(i), evalset.timing) for i in [*evalset.positives[:2], *kinds.values()]]
    stream = data.stream_windows(data.stream_audio(evalset.protocol), evalset.timing)
    middle = len(stream) // 2
    return np.concatenate([*clips, stream[middle : middle + n]])[:n]


def split_check(model: Int8Model, windows: np.ndarray, float_logits: np.ndarray, k: int) -> dict[str, float]:
    """Whole int8 graph vs encoder graph then head graph on the same windows (model.batch windows per call),
    the effect of the frame cache's float16, of 32 windows per call against one, and int8 vs torch."""
    whole, batch = run_each(session(model.whole_path), windows, model.batch), model.batch
    frames = run_each(session(model.encoder_path), windows, batch)
    stored = run_each(model.head, frames.astype(data.FRAME_DTYPE).astype(np.float32), batch)
    one = whole if batch == 1 else run_each(session(model.whole_path), windows)
    gap = np.abs(run_each(session(model.whole_path), windows, 32) - one)
    return {
        "n_windows": len(windows),
        "max_abs_split_vs_whole": float(np.max(np.abs(run_each(model.head, frames, batch) - whole))),
        "max_abs_float16_frames_vs_whole": float(np.max(np.abs(stored - whole))),
        "batch32_vs_batch1_max_abs": float(gap.max()),
        "batch32_vs_batch1_mean_abs": float(gap.mean()),
        "int8_vs_torch_mean_abs": float(np.mean(np.abs(whole[:, k] - float_logits))),
    }


@torch.no_grad()
def torch_logits(model: Detector, windows: np.ndarray, word: str) -> np.ndarray:
    return model.eval()(torch.from_numpy(windows)).double().numpy()[:, model.config.wake_words.index(word)]


def stored_difference(recomputed: dict, stored: dict | None) -> float | None:
    """Largest |recomputed - stored| float metric of the label's results row (None: no stored row)."""
    if stored is None:
        return None
    return max(abs(_get(recomputed, path) - _get(stored, path)) for _, path in METRICS)


def _get(row: dict, path: tuple[str, ...]) -> float:
    for key in path:
        row = row[key]
    return float(row)  # type: ignore[arg-type]


# ---- the run ---------------------------------------------------------------------------------------------


def model_dirs(args: argparse.Namespace, word: str) -> list[Path]:
    """The label's trained models of `word` (runs/real_world/<label>/<word>/n*-d*-s*), or --models of them."""
    found = sorted(p.parent for p in (Path(args.out_models) / rw.slug(word)).glob("n*-d*-s*/config.json"))
    chosen = [p for p in found if not args.models or p.name in args.models]
    if args.models and len(chosen) != len(args.models):
        raise SystemExit(f"--models {args.models}: only {[p.name for p in chosen]} are trained")
    return chosen


def stored_rows(args: argparse.Namespace, word: str) -> dict[str, dict]:
    """The label's real_world rows of `word` by model folder name; none when made under another protocol
    (a quick check with smaller caps: nothing stored to compare the recomputed float metrics with)."""
    path = rw.RESULTS / f"{args.label}.json"
    if not path.is_file():
        print(f"{path}: no stored rows yet; float rows not compared", flush=True)
        return {}
    table = json.loads(path.read_text())
    if table["protocol"] != asdict(args.protocol):
        print(f"{args.label}: stored under protocol {table['protocol']}; float rows not compared", flush=True)
        return {}
    return {Path(r["model_dir"]).name: r for r in table["rows"] if r["keyword"] == word}


def evaluate_model(model_dir: Path, evalset: rw.EvalSet, int8_sets: dict, args: argparse.Namespace) -> dict:
    """Float and int8 metrics of one model, their differences in points, and the split check."""
    started = time.monotonic()
    model = Int8Model(model_dir, EXPORTS / args.label / rw.slug(evalset.word) / model_dir.name, args.batch)
    if model.encoder_sha not in int8_sets:
        int8_sets[model.encoder_sha] = Int8EvalSet(evalset, model)
    encoded = time.monotonic()
    float_row, int8_row = evalset.evaluate(model.source), int8_sets[model.encoder_sha].evaluate(model)
    thresholds = operating_thresholds(float_row, evalset.clip_logits(model.source, evalset.negatives))
    refined = RefinedEvalSet(evalset, int8_sets[model.encoder_sha], model, min(thresholds) - args.margin)
    refined_row = refined.evaluate(model.source)
    windows = check_windows(evalset, args.check_windows)
    k = model.config.wake_words.index(evalset.word)
    check = split_check(model, windows, torch_logits(model.source, windows, evalset.word), k)
    points = {name: 100 * (_get(int8_row, path) - _get(float_row, path)) for name, path in METRICS}
    refined_points = {name: 100 * (_get(refined_row, path) - _get(float_row, path)) for name, path in METRICS}
    return {"model": model_dir.name, "model_dir": str(model_dir), "real_clips": not model_dir.name.startswith("n0-"),
            "float": float_row, "int8": int8_row, "int8_minus_float_points": points, "split_check": check,
            "int8_refined": refined_row, "refined_minus_float_points": refined_points,
            "refine": refined.stats(thresholds) | {"margin": args.margin, "thresholds": thresholds},
            "encoder_sha256": model.encoder_sha, "boundary_tensor": model.tensor,
            "export_and_encode_seconds": round(encoded - started, 1),
            "score_seconds": round(time.monotonic() - encoded, 1)}  # fmt: skip


def summary(rows: list[dict]) -> dict[str, dict]:
    """Mean, mean absolute, min and max of each int8-minus-float difference (points): over all models, those
    with real clips, and the same two among the models the label's results file has rows for."""
    stored = [r for r in rows if r.get("float_vs_stored_max_abs") is not None]
    groups = {"all": rows, "in_label_results": stored}
    groups |= {f"{name}_with_real_clips": [r for r in members if r["real_clips"]] for name, members in groups.items()}
    return {group: _stats(members) for group, members in groups.items() if members}


def _stats(rows: list[dict], key: str = "int8_minus_float_points") -> dict:
    out: dict = {"n_models": len(rows), "models": [r["model"] for r in rows]}
    if key == "int8_minus_float_points" and all("refined_minus_float_points" in r for r in rows):
        out["refined"] = _stats(rows, "refined_minus_float_points")
    for name, _ in METRICS:
        v = np.array([r[key][name] for r in rows])
        out[name] = {"mean": float(v.mean()), "mean_abs": float(np.abs(v).mean()), "min": float(v.min()),
                     "max": float(v.max()), "n_beyond_0.5": int(np.sum(np.abs(v) > 0.5))}  # fmt: skip
    return out


# ---- results ---------------------------------------------------------------------------------------------


def save(table: dict) -> None:
    """int8_real_world[_batch<n>].json / .md / .png (after every model, so a stopped run keeps its rows)."""
    out = results_path(table.setdefault("batch", 1), table.get("results"))  # no "batch": before --batch, one window
    table["summary"] = summary(table["rows"])
    out.with_suffix(".json").write_text(json.dumps(table, indent=2, default=float) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(markdown(table), encoding="utf-8")
    plot(table["rows"], out.with_suffix(".png"))


def results_path(batch: int, stem: str | None = None) -> Path:
    return RESULTS / (stem or "int8_real_world" + (f"_batch{batch}" if batch != 1 else ""))


def markdown(table: dict) -> str:
    """The results as markdown: per-model table, the differences' mean and spread, the checks."""
    calls = "one window per call" if table["batch"] == 1 else f"{table['batch']} windows per call"
    lines = [f"# int8 vs float on the real-world protocol ({table['label']}, {', '.join(table['words'])}, "
             f"int8 graphs run {calls})", "", f"Protocol: `{json.dumps(table['protocol'])}`", "",
             f"Command: `{table['command']}`; wall time {table.get('wall_seconds', 0) / 60:.1f} min", ""]  # fmt: skip
    return "\n".join([*lines, *model_table(table["rows"]), *summary_lines(table), *check_lines(table["rows"])]) + "\n"


def model_table(rows: list[dict]) -> list[str]:
    """One line per model: each metric's float, int8 and difference (percent / points)."""
    lines = ["| model | " + " | ".join(f"{n}: float / int8 / diff" for n, _ in METRICS) + " |",
             "|---|" + "---|" * len(METRICS)]  # fmt: skip
    for r in rows:
        cells = [f"{100 * _get(r['float'], p):.2f} / {100 * _get(r['int8'], p):.2f} / "
                 f"{r['int8_minus_float_points'][n]:+.2f}" for n, p in METRICS]  # fmt: skip
        lines.append(f"| {r['model']} | " + " | ".join(cells) + " |")
    refined = [r for r in rows if "refine" in r]
    if refined:
        lines += ["", "int8 refined in float32 near the thresholds (the runtime's default), minus float, points:", "",
                  "| model | " + " | ".join(n for n, _ in METRICS) + " | max abs window int8 - float | stream hops "
                  "re-scored | decisions differing |", "|---|" + "---|" * (len(METRICS) + 3)]  # fmt: skip
        for r in refined:
            cells = [f"{r['refined_minus_float_points'][n]:+.2f}" for n, _ in METRICS]
            stats = r["refine"]
            cells += [f"{stats['max_abs_int8_vs_float']:.2f}", f"{100 * stats['stream_refined_share']:.1f}%",
                      str(stats["decisions_differing"])]  # fmt: skip
            lines.append(f"| {r['model']} | " + " | ".join(cells) + " |")
    return lines


def summary_lines(table: dict) -> list[str]:
    lines = ["", "int8 minus float, points: mean, mean |diff|, [min, max] (models more than 0.5 points away)", ""]
    for group, stats in table.get("summary", {}).items():
        for kind, numbers in (("int8", stats), ("int8 refined", stats.get("refined"))):
            if numbers is None:
                continue
            cells = [f"{n} {s['mean']:+.2f}, {s['mean_abs']:.2f}, [{s['min']:+.2f}, {s['max']:+.2f}] "
                     f"({s['n_beyond_0.5']})" for n, s in ((n, numbers[n]) for n, _ in METRICS)]  # fmt: skip
            lines.append(f"- {kind}, {group} ({stats['n_models']} models): " + "; ".join(cells))
    return lines


def check_lines(rows: list[dict]) -> list[str]:
    """The checks' worst cases over the models (each row's split_check and float_vs_stored_max_abs)."""
    worst = {key: max(r["split_check"][key] for r in rows) for key in rows[0]["split_check"]} if rows else {}
    stored = [r["float_vs_stored_max_abs"] for r in rows if r.get("float_vs_stored_max_abs") is not None]
    shas = {r["encoder_sha256"] for r in rows}
    return ["", f"Checks, worst over the models (logits; {worst.get('n_windows')} real windows each):",
            f"- int8 encoder graph then int8 head graph vs the whole int8 graph: {worst.get('max_abs_split_vs_whole')}",
            f"- the same with the frames stored as float16 (the cache): {worst.get('max_abs_float16_frames_vs_whole')}",
            f"- whole int8 graph, 32 windows per call vs one: max {worst.get('batch32_vs_batch1_max_abs')}, "
            f"mean {worst.get('batch32_vs_batch1_mean_abs')}",
            f"- int8 vs torch, mean abs: {worst.get('int8_vs_torch_mean_abs')}",
            f"- recomputed float metrics vs the label's stored rows, max abs: {max(stored) if stored else None}",
            f"- int8 encoder graphs: {len(shas)} distinct (sha256) over {len(rows)} models"]  # fmt: skip


def plot(rows: list[dict], path: Path) -> None:
    """Per-model FRR at 1 FA/h, float vs int8, as paired bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, path_frr = np.arange(len(rows)), METRICS[0][1]
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(rows), 4))
    for offset, backend in ((-0.2, "float"), (0.2, "int8")):
        ax.bar(x + offset, [100 * _get(r[backend], path_frr) for r in rows], 0.4, label=backend)
    ax.set_xticks(x, [r["model"] for r in rows], rotation=30)
    ax.set_ylabel("FRR at 1 FA/h (%)")
    minutes = 60 * rows[0]["float"]["stream_hours"] if rows else 0.0
    ax.set_title(f"float vs int8 export, FRR at 1 FA/h on the real-world stream ({minutes:.1f} min)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """This script's flags; the rest (--label, --words, the protocol caps) are real_world.py's."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=[], help="model folder names (default: all trained)")
    parser.add_argument("--check-windows", type=int, default=300, help="real windows of each split check")
    parser.add_argument("--batch", type=int, default=1, help="windows per int8 call (32: `wakeword detect` FILE)")
    parser.add_argument("--report-only", action="store_true", help="rewrite .md and .png from the .json")
    parser.add_argument("--margin", type=float, default=REFINE_MARGIN_LOGITS, help="refinement margin (logits)")
    parser.add_argument("--results", default=None, help="results file stem (default int8_real_world[_batchN])")
    own, rest = parser.parse_known_args(argv)
    args = rw.parse_args(rest)
    for name in ("models", "check_windows", "batch", "report_only", "margin", "results"):
        setattr(args, name, getattr(own, name))
    return args


def main(argv: list[str] | None = None) -> None:
    args, started = parse_args(argv), time.monotonic()
    if args.report_only:
        return save(json.loads(results_path(args.batch, args.results).with_suffix(".json").read_text()))
    torch.set_num_threads(1)
    table = {"label": args.label, "words": args.words, "protocol": asdict(args.protocol), "batch": args.batch,
             "results": args.results, "int8_settings": asdict(Int8Settings()), "margin": args.margin,
             "command": " ".join(["python", *sys.argv]), "rows": []}  # fmt: skip
    for word in args.words:
        dirs, stored, int8_sets = model_dirs(args, word), stored_rows(args, word), {}
        evalset = rw.EvalSet(word, args.protocol, load_detector(dirs[0]))  # float frames: cached already
        table.setdefault("eval_sets", {})[word] = evalset.info
        for model_dir in dirs:
            row = evaluate_model(model_dir, evalset, int8_sets, args)
            row["float_vs_stored_max_abs"] = stored_difference(row["float"], stored.get(model_dir.name))
            table["rows"].append(row)
            table["wall_seconds"] = round(time.monotonic() - started, 1)
            save(table)
            print(model_dir.name, row["int8_minus_float_points"], row["split_check"], flush=True)
    print(markdown(table), flush=True)


if __name__ == "__main__":
    main()
