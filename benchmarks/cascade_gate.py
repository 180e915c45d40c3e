"""Where should a cascade's gate sit? Hop-level against activation-level calibration (issue 14).

    python benchmarks/cascade_gate.py [--model benchmarks/cache/cascade/model] [--positives 80] [--speech-minutes 3]

For a trained cascade (default: the one `benchmarks/cascade_speed.py train` makes), both stages score every hop
of `--positives` noisy real jarvis clips of the real-world protocol (benchmarks/real_world_data.py: held-out
sessions, real noise at 10 dB, padded as evaluated) and of the first `--speech-minutes` of the speechocean762
test-half stream. Two gates, each the stage-1 logit that passes 99.5% of its units, lowered by the slack (1.0):
- hop rule (what `wakeword.distill.calibrate_gate` does): every hop where stage 2 reaches its threshold;
- activation rule: each run of consecutive firing hops counts once, by its highest stage-1 logit.
Reported: both gates, the model's own, the share of speech hops each would send to stage 2, and the share of
the positives' firing hops and activations each lets through.
Results: benchmarks/results/cascade_gate<--tag>.json.
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

from wakeword.checkpoint import load_detector
from wakeword.data.long_audio import stream_windows
from wakeword.distill import gate_for

RESULTS = data.REPO / "benchmarks" / "results" / "cascade_gate.json"
RECALL, SLACK, BATCH = 0.995, 1.0, 64


@torch.no_grad()
def stage_logits(cascade, audio: np.ndarray, stage1: bool = True) -> tuple[np.ndarray | None, np.ndarray]:
    """(stage-1 logits or None, stage-2 logits), each (n_hops,), of every streaming hop of `audio` (first word)."""
    config = cascade.config
    windows = np.asarray(stream_windows(audio, config.window_samples, config.hop_samples))
    chunks = [torch.from_numpy(np.array(windows[i : i + BATCH])) for i in range(0, len(windows), BATCH)]
    first = [cascade.stage1(c[:, -cascade.stage1_samples :])[:, 0].numpy() for c in chunks] if stage1 else None
    second = [cascade.stage2(c)[:, 0].numpy() for c in chunks]
    return (np.concatenate(first) if stage1 else None), np.concatenate(second)


def activation_peaks(first: np.ndarray, firing: np.ndarray) -> list[float]:
    """The highest stage-1 logit of each run of consecutive firing hops."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], firing.astype(int), [0]])))
    return [float(first[a:b].max()) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(data.CACHE / "cascade" / "model"))
    parser.add_argument("--positives", type=int, default=80)
    parser.add_argument("--speech-minutes", type=float, default=3.0)
    parser.add_argument("--tag", default="", help="results file benchmarks/results/cascade_gate<tag>.json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    cascade = load_detector(args.model).eval()
    threshold = cascade.config.threshold(cascade.config.wake_words[0])
    protocol = data.REPORTED_PROTOCOL
    preparer = data.ClipPreparer(protocol, data.Timing.of(cascade.stage2))
    hops, peaks = [], []
    for item in data.test_positives(data.keyword_clips()["jarvis"], protocol)[: args.positives]:
        first, second = stage_logits(cascade, preparer.padded(item))
        hops.append(first[second >= threshold])
        peaks += activation_peaks(first, second >= threshold)
    hop_first = np.concatenate(hops)
    gates = {"hop": gate_for(hop_first, np.ones(len(hop_first), bool), RECALL, SLACK),
             "activation": gate_for(np.array(peaks), np.ones(len(peaks), bool), RECALL, SLACK),
             "model's own (calibrated in training)": float(cascade.gate_logits()[0])}  # fmt: skip
    speech = data.stream_audio(protocol)[: int(args.speech_minutes * 60 * data.SAMPLE_RATE)]
    first, second = stage_logits(cascade, speech)
    result = {"model": args.model, "stage2_threshold": threshold, "positives": args.positives,
              "firing_hops": len(hop_first), "activations": len(peaks), "recall": RECALL, "slack": SLACK,
              "gates": gates, "speech_minutes": args.speech_minutes,
              "speech_call_rate": {k: float((first >= g).mean()) for k, g in gates.items()},
              "speech_stage2_firing_hops": int((second >= threshold).sum()),
              "positives_recall": {k: {"firing_hops": float((hop_first >= g).mean()),
                                       "activations": float((np.array(peaks) >= g).mean())}
                                   for k, g in gates.items()}}  # fmt: skip
    RESULTS.with_name(f"cascade_gate{args.tag}.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
