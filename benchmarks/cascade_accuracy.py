"""Cascade vs stage 2 alone vs stage 1 alone on the real-world jarvis protocol (issue 14 item 6).

    python benchmarks/cascade_accuracy.py [--model benchmarks/cache/cascade/model-full]

Both stages score every hop of the protocol's audio once (benchmarks/real_world_data.py: 120 noisy real jarvis
positives and 280 same-channel negative clips, padded as evaluated, and the 53.8-minute speechocean762 test-half
stream), and the three detectors' scores follow from those two tracks exactly as `CascadeDetector.forward`
computes them: stage 2's logit where stage 1 reaches the gate, else min(stage-1 logit, threshold - margin);
stage 1 alone is its own logit. Per detector: FRR at 0.5 and 1 FA/h on the stream, FRR at 1% and 5% clip FAR,
ROC AUC, FRR and FA/h at the cascade's own threshold (real_world_metrics). The benchmark cascade's training clips
are jarvis recordings from any session, so they may overlap these positives: compare the detectors with one
another, not with the issue-17 tables. Results: benchmarks/results/cascade_accuracy.json.
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
import real_world_metrics as metrics
from cascade_gate import stage_logits

from wakeword.checkpoint import load_detector

RESULTS = data.REPO / "benchmarks" / "results" / "cascade_accuracy.json"
WORD = "jarvis"


def detector_tracks(cascade, first: np.ndarray, second: np.ndarray) -> dict[str, np.ndarray]:
    """The three detectors' logits per hop from the two stages' logits (n_hops,), as CascadeDetector does."""
    gate, ceiling = float(cascade.gate_logits()[0]), float(cascade.unseen_ceiling()[0])
    cascaded = np.where(first >= gate, second, np.minimum(first, ceiling))
    return {"cascade": cascaded, "stage 2 alone": second, "stage 1 alone": first}


def clip_maxima(cascade, preparer, items) -> dict[str, np.ndarray]:
    """Per detector, each clip's maximum logit over its hops."""
    per_clip = [detector_tracks(cascade, *stage_logits(cascade, preparer.padded(i))) for i in items]
    return {name: np.array([t[name].max() for t in per_clip]) for name in per_clip[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(data.CACHE / "cascade" / "model-full"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    cascade = load_detector(args.model).eval()
    protocol = data.REPORTED_PROTOCOL
    preparer = data.ClipPreparer(protocol, data.Timing.of(cascade.stage2))
    negatives = data.negative_clips(WORD, protocol)
    positives = clip_maxima(cascade, preparer, data.test_positives(data.keyword_clips()[WORD], protocol))
    negative_max = clip_maxima(cascade, preparer, negatives)
    stream = data.stream_audio(protocol)
    tracks = detector_tracks(cascade, *stage_logits(cascade, stream))
    own = metrics.OwnThreshold(cascade.config.threshold(WORD), "logit")
    seconds, hop = len(stream) / data.SAMPLE_RATE, cascade.config.hop_seconds
    results = {}
    for name, track in tracks.items():
        clip = metrics.clip_metrics(positives[name], negative_max[name], [n.kind for n in negatives], own)
        results[name] = {**clip, **metrics.stream_metrics(positives[name], track, hop, seconds, own)}
        print(name, json.dumps({k: results[name][k] for k in ("at_1_fah", "clip_frr_at_1pct_far", "clip_roc_auc")}))
    RESULTS.write_text(json.dumps({"model": args.model, "results": results}, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
