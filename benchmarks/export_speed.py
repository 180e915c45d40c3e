"""Torch vs ONNX float32 vs ONNX int8: model size, peak memory and real-time factor on ONE thread.

    python benchmarks/export_speed.py [--seconds 20] [--families transfer-whisper transfer-speech-embedding e2e cascade]

For each family a detector with the real encoder is built (untrained: speed does not depend on the weights'
values), saved, and exported three times (`wakeword export`, `--int8 --no-refine`, `--int8`). Each backend then
runs in its own process, so peak RSS is that backend's alone:
- torch: `wakeword.stream.StreamingDetector` with `torch.set_num_threads(1)` and
  WAKEWORD_ENCODER_BACKEND=torch (since issue 15c `wakeword` runs a frozen encoder's frames through
  onnxruntime by default; this row is torch alone, as before that);
- onnx-fp32 / onnx-int8 / onnx-int8+refine: `wakeword.runtime` (numpy + onnxruntime, torch never imported)
  with `intra_op_num_threads=1`; onnx-int8 is the int8 graph alone, onnx-int8+refine the `--int8` default,
  which re-scores in float32 the hops within wakeword.export.REFINE_MARGIN_LOGITS of the threshold. How many
  hops that is depends on the trained weights and threshold, so its cost means something only for a trained
  model: the `transfer-whisper-trained` family is `--trained-model` (default: a jarvis model of the issue-17
  benchmark, `python benchmarks/real_world.py --label refine ...`), and its rows add the share of hops re-scored.
Both stream `--seconds` of real speech (speechocean762 sentences from ../shared/data) one 0.1 s hop per call,
as a live microphone does: one 1.5 s window scored per hop. Real-time factor = compute seconds / audio
seconds (0.05 = 5% of one core). Peak RSS is the process's VmHWM after streaming.
Compute seconds are the process's CPU time (best of 3 passes); the machine has 2 cores shared with other
work, so figures may be pessimistic (each row records the 1-minute load average before and after it).
int8 quantises matrix products only, Whisper's convolutions exported as such (see wakeword/export.py).
The cascade row is the exception to "untrained": how often its stage 2 runs depends on its trained gate, so it
is the jarvis cascade trained by `python benchmarks/cascade_speed.py train` (benchmarks/cache/cascade/model:
an e2e stage 1, a head-only whisper-tiny.en stage 2); its rows add the share of hops stage 2 scored.

Results: benchmarks/results/export.json and export.png.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WAKEWORD_SHARED_DATA", REPO.parent / "shared" / "data"))
RESULTS = REPO / "benchmarks" / "results"
BACKEND_ENV = "WAKEWORD_ENCODER_BACKEND"  # wakeword.encoders.onnx_frames.BACKEND_ENV (not imported: it imports torch)
WORK = REPO / "runs" / "export-bench"
FAMILIES = {
    "transfer-whisper": {"family": "transfer", "encoder": {"name": "whisper-tiny.en", "trainable": "head"}},
    # what the head-only recipes train since the ensemble head: three heads averaged (head.n_members)
    "transfer-whisper-3heads": {
        "family": "transfer",
        "encoder": {"name": "whisper-tiny.en", "trainable": "head"},
        "head": {"n_members": 3},
    },
    "transfer-speech-embedding": {"family": "transfer", "encoder": {"name": "speech-embedding", "trainable": "head"}},
    "e2e": {"family": "e2e", "encoder": {}},
    "cascade": {"family": "cascade", "model": REPO / "benchmarks" / "cache" / "cascade" / "model"},
    "transfer-whisper-trained": {"family": "transfer", "model": REPO / "runs/real_world/refine/jarvis/n10-d0-s0"},
}
BACKENDS = ("torch", "onnx-fp32", "onnx-int8", "onnx-int8+refine")
REPEATS = 3


def speech(seconds: float) -> np.ndarray:
    """Real read speech (speechocean762), concatenated to `seconds`, 16 kHz float32."""
    from wakeword.audio import load_audio

    files = sorted((SHARED / "speech" / "speechocean762").rglob("*.flac"))
    parts, total = [], 0
    for path in files:
        parts.append(load_audio(path))
        total += len(parts[-1])
        if total >= seconds * 16000:
            break
    return np.concatenate(parts)[: int(seconds * 16000)]


def build(name: str) -> dict[str, Path]:
    """Save the untrained detector and its two exports; returns the folders."""
    from wakeword.checkpoint import save_detector
    from wakeword.export import export_detector
    from wakeword.models import get_family
    from wakeword.models.base import DetectorConfig

    spec = FAMILIES[name]
    folders = {"torch": WORK / name, "onnx-fp32": WORK / f"{name}-onnx", "onnx-int8": WORK / f"{name}-onnx-int8",
               "onnx-int8+refine": WORK / f"{name}-onnx-int8-refine"}  # fmt: skip
    if "model" in spec:  # a trained model, used as it is
        if not (spec["model"] / "config.json").is_file():
            raise SystemExit(f"{spec['model']}: not trained (see this script's docstring)")
        folders["torch"] = spec["model"]
    else:
        config = DetectorConfig(family=spec["family"], wake_words=("jarvis",), encoder=spec["encoder"],
                                head=spec.get("head", {}))  # fmt: skip
        save_detector(get_family(spec["family"]).build_model(config), folders["torch"])
    export_detector(folders["torch"], folders["onnx-fp32"])
    export_detector(folders["torch"], folders["onnx-int8"], int8=True, refine=False)
    export_detector(folders["torch"], folders["onnx-int8+refine"], int8=True)
    return folders


def worker(backend: str, folder: str, seconds: float) -> dict:
    """Runs in a fresh process: stream the audio hop by hop, return timing and peak RSS."""
    audio = speech(seconds)
    if backend == "torch":
        import torch

        from wakeword.checkpoint import load_detector
        from wakeword.stream import StreamingDetector

        torch.set_num_threads(1)
        detector = load_detector(folder)
        streamer = StreamingDetector(detector)
        n_parameters = sum(t.numel() for t in detector.state_dict().values())
        cascade = hasattr(detector, "stage2_windows")  # a CascadeDetector counts the windows stage 2 scored
    else:
        from wakeword.runtime import load_runtime, streaming_detector

        detector = load_runtime(folder, threads=1)
        streamer = streaming_detector(detector)
        n_parameters = None
        cascade = detector.config.cascade is not None  # so does the runtime, for a cascade export
    hop = streamer.hop_samples
    streamer.process(audio[: 10 * hop])  # warm-up: first calls allocate
    best, stage2_windows, refined = float("inf"), None, None
    for _ in range(REPEATS):
        streamer.reset()
        before = detector.stage2_windows if cascade else None
        refined_before = getattr(detector, "refined_windows", 0)
        start = time.process_time()
        for begin in range(0, len(audio), hop):
            streamer.process(audio[begin : begin + hop])
        best = min(best, time.process_time() - start)
        if before is not None:
            stage2_windows = detector.stage2_windows - before
        refined = getattr(detector, "refined_windows", 0) - refined_before
    heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "transformers"})
    n_hops = -(-len(audio) // hop)
    share = {} if stage2_windows is None else {"stage2_share": stage2_windows / n_hops}
    share |= {"refined_share": refined / n_hops} if backend == "onnx-int8+refine" else {}
    return share | {
        "rtf": best / seconds,
        "peak_rss_mb": peak_rss_mb(),
        "n_parameters": n_parameters,
        "heavy_modules_loaded": heavy,
    }


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from the parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def model_mb(backend: str, folder: Path, n_parameters: int | None) -> float:
    """ONNX: the graph files (model.onnx, or a cascade's two, and the float32 graphs of refined ones).
    torch: float32 weights of the whole detector (encoder included, as a head-only transfer model's own file
    holds only the head and loads the encoder from the bundle)."""
    from wakeword.export import exported_graphs

    if backend == "torch":
        return 4 * n_parameters / 1e6
    return sum((folder / name).stat().st_size for name in exported_graphs(folder)) / 1e6


def measure(name: str, folders: dict[str, Path], seconds: float) -> dict:
    rows = {}
    for backend in BACKENDS:
        load_before = os.getloadavg()[0]
        command = [sys.executable, __file__, "--worker", backend, str(folders[backend]), "--seconds", str(seconds)]
        env = os.environ | {"OMP_NUM_THREADS": "1"}
        if backend == "torch":  # all torch: `wakeword` runs a frozen encoder through onnxruntime by default
            env[BACKEND_ENV] = "torch"
        output = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
        row = json.loads(output.stdout.strip().splitlines()[-1])
        n_parameters = row.pop("n_parameters") or rows.get("torch", {}).get("n_parameters")
        rows[backend] = row | {"model_mb": round(model_mb(backend, folders[backend], n_parameters), 2)}
        rows[backend]["n_parameters"] = n_parameters
        rows[backend]["load_average_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]  # before, after
        rows[backend]["measured_utc"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
        print(name, backend, rows[backend], flush=True)
    return rows


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["families"])
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, (key, label) in zip(axes, (("rtf", "real-time factor, 1 thread"), ("peak_rss_mb", "peak RSS (MB)"),
                                       ("model_mb", "model size (MB)")), strict=True):  # fmt: skip
        for i, backend in enumerate(BACKENDS):
            values = [results["families"][n].get(backend, {}).get(key, np.nan) for n in names]
            bars = ax.bar(np.arange(len(names)) + (i - 1.5) * 0.2, values, 0.2, label=backend)
            ax.bar_label(bars, fmt="%.3g", fontsize=7)
        ax.set_xticks(np.arange(len(names)), [n.replace("transfer-", "transfer\n") for n in names], fontsize=8)
        ax.set_title(label)
    axes[0].axhline(0.05, color="k", ls=":", lw=1, label="target 0.05")
    axes[0].legend(fontsize=8)
    fig.suptitle("wakeword: torch vs ONNX export (streaming one 1.5 s window per 0.1 s hop)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def cpu_description() -> str:
    """The CPU's model name and whether it has VNNI (int8 dot products; without it int8 runs slower)."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    return f"{model}; VNNI: {'yes' if flags & {'avx512_vnni', 'avx_vnni'} else 'no'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--merge", action="store_true", help="keep the other families' rows of export.json")
    parser.add_argument("--trained-model", type=Path, default=FAMILIES["transfer-whisper-trained"]["model"])
    parser.add_argument("--cascade-model", type=Path, default=FAMILIES["cascade"]["model"], help="a trained cascade")
    parser.add_argument("--worker", nargs=2, metavar=("BACKEND", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], args.seconds)))
        return
    FAMILIES["transfer-whisper-trained"]["model"] = args.trained_model
    FAMILIES["cascade"]["model"] = args.cascade_model
    results = {
        "protocol": __doc__.split("\n\n")[2].strip(),
        "audio": f"{args.seconds:g} s of speechocean762 sentences from ../shared/data",
        "machine": f"{os.cpu_count()} CPU cores, shared with other work while measuring",
        "cpu": cpu_description(),
        "families": {},
    }
    if args.merge and (RESULTS / "export.json").is_file():
        results["families"] = json.loads((RESULTS / "export.json").read_text())["families"]
    for name in args.families:
        results["families"][name] = measure(name, build(name), args.seconds)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "export.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, RESULTS / "export.png")


if __name__ == "__main__":
    main()
