"""Which int8 configuration keeps a Whisper transfer detector's logits closest to torch, at what speed?

    python benchmarks/int8_candidates.py [--model runs/export-accuracy/model] [--positives 100]

For one trained model (default: the model of benchmarks/export_accuracy.py), each candidate int8
configuration (which matrix products are quantised, per-tensor or per-channel weights, reduce_range) is
made from the same float32 graph (Whisper's convolutions as matrix products, as `--int8` exports it) and
compared with torch on real speech windows from ../shared/data that the accuracy benchmark does NOT test
on: jarvis clips from the protocol's TRAINING sessions beyond the ones the model was trained on, mixed with
real noise at 10 dB SNR like the test positives, and speechocean762 sentences from the LAST speakers (the
accuracy benchmark's negatives are the first minutes). Per candidate: the logit error on every window
(mean, 99th percentile, max) and on each clip's max logit (what FRR and AUC are computed from), and the
time of one window on one thread (batch 1, best of 3 passes over 100 windows; a shared machine, so
compare candidates within one run).

With `--scan`: the same errors when only one group of matrix products is quantised (every other stays
float32), for each group in turn (SCAN_GROUPS: where the error comes from). The windows and torch's logits are cached in
runs/export-accuracy/int8-windows.npz.

Results: benchmarks/results/int8_candidates.json (and int8_scan.json)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from wakeword.audio import load_audio
from wakeword.checkpoint import load_detector
from wakeword.compare import _real_dataset, held_out_split, load_compare, on_shared_data
from wakeword.evaluate import NoiseMixer, audio_files, padded_clip
from wakeword.export import Int8Settings, export_graph, int8_nodes, matmul_convolutions, quantize_int8
from wakeword.runtime import DISABLED_OPTIMIZERS
from wakeword.scoring import clip_windows

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WAKEWORD_SHARED_DATA", REPO.parent / "shared" / "data"))
OUT = REPO / "runs" / "export-accuracy"

# name: (substrings of node names left float32, per_channel, reduce_range)
CANDIDATES: dict[str, tuple[tuple[str, ...], bool, bool]] = {
    "all": ((), False, False),
    "per-channel": ((), True, False),
    "reduce-range": ((), False, True),
    "per-channel+reduce-range": ((), True, True),
    "fp32 conv1": (("/conv1/",), False, False),
    "fp32 conv1,conv2": (("/conv1/", "/conv2/"), False, False),
    "fp32 head": (("/head/",), False, False),
    "fp32 q,k": (("q_proj", "k_proj"), False, False),
    "fp32 last layer": (("layers.3/",), False, False),
    "fp32 conv1,head": (("/conv1/", "/head/"), False, False),
    "fp32 conv1,conv2,head": (("/conv1/", "/conv2/", "/head/"), False, False),
    "FFN only": (("/conv1/", "/conv2/", "/head/", "self_attn"), False, False),
    "per-channel, fp32 conv1,head": (("/conv1/", "/head/"), True, False),
    "per-channel, fp32 conv2,layer 0": (("/conv2/", "layers.0/"), True, False),
    "per-channel, fp32 conv1,conv2,layer 0": (("/conv1/", "/conv2/", "layers.0/"), True, False),
}

# --scan: each group's nodes quantised alone (substrings of node names)
SCAN_GROUPS: dict[str, tuple[str, ...]] = {
    "conv1": ("/conv1/",),
    "conv2": ("/conv2/",),
    "q,k (all layers)": ("q_proj", "k_proj"),
    "v,out (all layers)": ("v_proj", "out_proj"),
    "fc1 (all layers)": ("fc1",),
    "fc2 (all layers)": ("fc2",),
    "head": ("/head/",),
    **{f"layer {i}": (f"layers.{i}/",) for i in range(4)},
}


def speech_windows(config, n_positives: int, n_sentences: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(positive clips' windows, negative sentences' windows): lists of (n_hops, window_samples) arrays."""
    spec = on_shared_data(load_compare(REPO / "recipes" / "compare.yaml"), SHARED, OUT)
    real = _real_dataset(spec, OUT)
    pool, _ = held_out_split(spec, real)
    mixer = NoiseMixer(spec.snr_db, audio_files(spec.noise), spec.seed + 1)  # the test's noise and SNR
    unseen = pool[50 : 50 + n_positives]  # the accuracy model trained on pool[:50]
    positives = [np.array(clip_windows(config, padded_clip(config, real.load(c), mixer))) for c in unseen]
    speakers = sorted((SHARED / "speech" / "speechocean762").iterdir(), reverse=True)
    files = [f for s in speakers if s.is_dir() for f in sorted(s.glob("*.flac"))][:n_sentences]
    negatives = [np.array(clip_windows(config, load_audio(f))) for f in files]
    return positives, negatives


def session(path: Path) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    return onnxruntime.InferenceSession(
        str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=DISABLED_OPTIMIZERS
    )


def run(sess: onnxruntime.InferenceSession, windows: np.ndarray, batch: int = 64) -> np.ndarray:
    """windows (n, window_samples) -> logits (n, n_words) float64."""
    out = [sess.run(None, {"audio": windows[i : i + batch]})[0] for i in range(0, len(windows), batch)]
    return np.concatenate(out).astype(np.float64)


def window_ms(sess: onnxruntime.InferenceSession, windows: np.ndarray) -> float:
    """Best of 3 passes of CPU time per window at batch 1, in ms."""
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for w in windows:
            sess.run(None, {"audio": w[None]})
        best = min(best, (time.process_time() - start) / len(windows))
    return 1000 * best


def reference(detector, n_positives: int, n_sentences: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(windows (n, window_samples), torch logits (n, n_words), clip bounds (n_clips + 1,), n positive
    clips), cached in runs/export-accuracy/int8-windows.npz for these counts."""
    cache = OUT / f"int8-windows-{n_positives}-{n_sentences}.npz"
    if cache.is_file():
        data = np.load(cache)
        return data["windows"], data["expected"], data["bounds"], int(data["n_pos"])
    positives, negatives = speech_windows(detector.config, n_positives, n_sentences)
    windows = np.concatenate(positives + negatives).astype(np.float32)
    bounds = np.cumsum([0] + [len(w) for w in positives + negatives])
    with torch.no_grad():
        expected = np.concatenate(
            [detector(torch.from_numpy(windows[i : i + 64])).double().numpy() for i in range(0, len(windows), 64)]
        )
    np.savez(cache, windows=windows, expected=expected, bounds=bounds, n_pos=len(positives))
    return windows, expected, bounds, len(positives)


def errors(sess, windows, expected, bounds, n_pos) -> dict[str, float]:
    """Logit errors of a session against torch's logits (see the module docstring)."""
    got = run(sess, windows)
    error = np.abs(got - expected)[:, 0]
    clip_error = np.array([got[a:b, 0].max() - expected[a:b, 0].max() for a, b in itertools.pairwise(bounds)])
    return {
        "mean_abs_logit_error": float(error.mean()),
        "p99_abs_logit_error": float(np.quantile(error, 0.99)),
        "max_abs_logit_error": float(error.max()),
        "positive_clip_max_mean_abs_error": float(np.abs(clip_error[:n_pos]).mean()),
        "positive_clip_max_bias": float(clip_error[:n_pos].mean()),
        "negative_clip_max_mean_abs_error": float(np.abs(clip_error[n_pos:]).mean()),
        "negative_clip_max_bias": float(clip_error[n_pos:].mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=OUT / "model")
    parser.add_argument("--positives", type=int, default=100)
    parser.add_argument("--sentences", type=int, default=60)
    parser.add_argument("--only", nargs="*", default=None, help="candidate names (default: all)")
    parser.add_argument("--scan", action="store_true", help="quantise one group of nodes at a time instead")
    parser.add_argument("--out", default="int8_candidates.json", help="results file name in benchmarks/results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    detector = load_detector(args.model).eval()
    windows, expected, bounds, n_pos = reference(detector, args.positives, args.sentences)
    results = {"model": str(args.model), "windows": len(windows), "positive_clips": n_pos}
    results |= {"negative_sentences": len(bounds) - 1 - n_pos, "candidates": {}}
    rng = np.random.default_rng(0)
    timing = windows[rng.choice(len(windows), 100, replace=False)]
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_graph(matmul_convolutions(detector), Path(tmp) / "fp32.onnx")
        if args.scan:
            every = int8_nodes(fp32, ())
            for group, parts in SCAN_GROUPS.items():
                keep = tuple(n for n in every if not any(p in n for p in parts))
                path = quantize_int8(fp32, Path(tmp) / "int8.onnx", Int8Settings(keep=keep))
                row = {"quantised_nodes": len(every) - len(keep)}
                row |= errors(session(path), windows, expected, bounds, n_pos)
                results["candidates"][group] = row
                print(group, json.dumps(row), flush=True)
            results["load_average_end"] = os.getloadavg()
            (REPO / "benchmarks" / "results" / "int8_scan.json").write_text(json.dumps(results, indent=2) + "\n")
            return
        names = ["float32"] + [n for n in CANDIDATES if args.only is None or n in args.only]
        for name in names:
            if name == "float32":
                path = fp32
            else:
                keep, per_channel, reduce_range = CANDIDATES[name]
                path = Path(tmp) / "int8.onnx"
                quantize_int8(fp32, path, Int8Settings(keep, per_channel, reduce_range))
            sess = session(path)
            row = {"quantised_nodes": len(int8_nodes(fp32, CANDIDATES[name][0])) if name != "float32" else 0}
            row |= errors(sess, windows, expected, bounds, n_pos)
            row |= {"ms_per_window_1_thread": round(window_ms(sess, timing), 3)}
            row |= {"model_mb": round(path.stat().st_size / 1e6, 2)}
            results["candidates"][name] = row
            print(name, json.dumps(row), flush=True)
    results["load_average_end"] = os.getloadavg()
    out = REPO / "benchmarks" / "results" / args.out
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
