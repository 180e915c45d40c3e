"""Detection latency: how long after the wake word ends does a streaming detector report it? (issue 14)

    python benchmarks/latency.py MODEL_DIR [MODEL_DIR ...] [--positives 120] [--stage2] [--hops-per-call 3 --tag _3]

For the noisy real jarvis positives of the real-world protocol (benchmarks/real_world_data.py: held-out sessions,
real noise at 10 dB, padded as evaluated: a window of silence before, AFTER_SECONDS after), the word's end is the
energy endpoint of the CLEAN recording (`wakeword.data.augment.speech_bounds`), and each model streams the
noisy padded clip through `StreamingDetector` at its own threshold. Latency = the first detection's time (the
end of the first window whose score reached the threshold) minus the word's end. --stage2 adds, for a cascade,
its stage 2 alone at the cascade's threshold (what the cascade's gate may delay). A clip without a detection
is a miss; latencies are over the detected clips. --hops-per-call K feeds the audio K hops at a time, as
`listen --hops-per-call K` does, and a detection counts when its block has arrived. Results:
benchmarks/results/latency<--tag>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, when run as a script

import real_world_data as data

from wakeword.audio import SAMPLE_RATE, load_audio
from wakeword.checkpoint import load_detector
from wakeword.data.augment import speech_bounds
from wakeword.stream import StreamingDetector

RESULTS = data.REPO / "benchmarks" / "results" / "latency.json"
WORD = "jarvis"


def first_detection(detector, audio: np.ndarray, threshold: float, hops_per_call: int = 1) -> float | None:
    """Seconds from the start of `audio` to the first detection of WORD, or None. The audio arrives as `listen`
    gets it, hops_per_call hops at a time, and a detection is known when the call that scored it returns: at
    the end of its block (with one hop per call, the end of the firing window)."""
    stream = StreamingDetector(detector, thresholds={WORD: threshold})
    block = hops_per_call * stream.hop_samples
    for start in range(0, len(audio), block):
        events = [e for e in stream.process(audio[start : start + block]).detections if e.word == WORD]
        if events:
            return min(start + block, len(audio)) / SAMPLE_RATE
    times = [e.time_seconds for e in stream.flush().detections if e.word == WORD]
    return min(times) if times else None


def latencies(detector, threshold: float, items: list, preparer, hops_per_call: int = 1) -> dict:
    """Latency summary of one detector over the positives (seconds)."""
    found, misses = [], 0
    before = preparer.timing.window_samples / SAMPLE_RATE
    for item in items:
        end = before + speech_bounds(load_audio(item.path))[1] / SAMPLE_RATE
        detected = first_detection(detector, preparer.padded(item), threshold, hops_per_call)
        if detected is None:
            misses += 1
        else:
            found.append(detected - end)
    values = np.array(found)
    quantiles = np.percentile(values, [10, 50, 90]).round(3).tolist() if len(values) else [None] * 3
    return {"n_clips": len(items), "misses": misses, "p10": quantiles[0], "median": quantiles[1],
            "p90": quantiles[2], "max": round(float(values.max()), 3) if len(values) else None,
            "share_within_0.3_s": float(np.mean(values <= 0.3)) if len(values) else None}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--positives", type=int, default=120)
    parser.add_argument("--stage2", action="store_true", help="also a cascade's stage 2 alone")
    parser.add_argument("--hops-per-call", type=int, default=1, help="hops per call, as `listen --hops-per-call`")
    parser.add_argument("--tag", default="", help="results file benchmarks/results/latency<tag>.json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    protocol = data.REPORTED_PROTOCOL
    items = data.test_positives(data.keyword_clips()[WORD], protocol)[: args.positives]
    results = {}
    for model_dir in args.models:
        model = load_detector(model_dir).eval()
        preparer = data.ClipPreparer(protocol, data.Timing.of(model))
        threshold = model.config.threshold(WORD)
        results[model_dir] = latencies(model, threshold, items, preparer, args.hops_per_call)
        if args.stage2 and hasattr(model, "stage2"):
            stage2 = latencies(model.stage2, threshold, items, preparer, args.hops_per_call)
            results[f"{model_dir} (stage 2 alone)"] = stage2
        print(json.dumps({k: v for k, v in results.items() if k.startswith(model_dir)}, indent=1), flush=True)
    summary = {"protocol": "see the docstring", "hops_per_call": args.hops_per_call, "results": results}
    RESULTS.with_name(f"latency{args.tag}.json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
