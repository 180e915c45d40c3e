"""Cascade vs stage 2 alone vs stage 1 alone on the real-world jarvis protocol (issue 14 item 6).

    python benchmarks/cascade_accuracy.py [--model benchmarks/cache/cascade/model-full] [--model ... --tag _x]

Both stages score every hop of the protocol's audio once (benchmarks/real_world_data.py: 120 noisy real jarvis
positives and 280 same-channel negative clips, padded as evaluated, and the 53.8-minute speechocean762 test-half
stream), and the three detectors' scores follow from those two tracks exactly as `CascadeDetector.forward`
computes them: stage 2's logit where stage 1 reaches the gate, else min(stage-1 logit, threshold - margin);
stage 1 alone is its own logit. Per detector: FRR at 0.5 and 1 FA/h on the stream, FRR at 1% and 5% clip FAR,
ROC AUC, FRR and FA/h at the cascade's own threshold (real_world_metrics). The benchmark cascade's training clips
are jarvis recordings from any session, so they may overlap these positives: compare the detectors with one
another, not with the issue-17 tables. Several --model cascades that share one stage 2 (the same weights) share
its scores: stage 2 runs once. Results: benchmarks/results/cascade_accuracy<--tag>.json (one model: as before;
several: {"models": {folder: results}}).
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


class Stages:
    """Both stages' logits (n_hops,) of audio; stage 2's are cached by its weights, so cascades that share a
    stage 2 score it once."""

    def __init__(self) -> None:
        self.cache: dict[tuple[str, int], np.ndarray] = {}
        self.checksums: dict[int, str] = {}  # id(stage 2) -> its weights' checksum, hashed once per model

    def __call__(self, cascade, key: int, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        first = first_logits(cascade, audio)
        if id(cascade.stage2) not in self.checksums:
            self.checksums[id(cascade.stage2)] = _checksum(cascade.stage2)
        stage2 = self.checksums[id(cascade.stage2)]
        if (stage2, key) not in self.cache:
            self.cache[(stage2, key)] = stage_logits(cascade, audio, stage1=False)[1]
        return first, self.cache[(stage2, key)]


@torch.no_grad()
def first_logits(cascade, audio: np.ndarray) -> np.ndarray:
    """Stage 1's logits (n_hops,) of every streaming hop of audio (the end of each window, shared frames)."""
    track = cascade.stage1.score_strided(torch.from_numpy(_padded(cascade, audio)), cascade.config.hop_samples)
    return track[:, 0].numpy()


def _padded(cascade, audio: np.ndarray) -> np.ndarray:
    """audio behind one window of zeros minus one hop, and its last partial hop zero-padded: the span whose
    strided stage-1 windows end where stream_windows' windows end."""
    config = cascade.config
    n_hops = -(-len(audio) // config.hop_samples)
    span = np.zeros(cascade.stage1_samples - config.hop_samples + n_hops * config.hop_samples, np.float32)
    span[cascade.stage1_samples - config.hop_samples :][: len(audio)] = audio
    return span


def _checksum(module: torch.nn.Module) -> str:
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def clip_maxima(cascade, stages: Stages, preparer, items, prefix: str) -> dict[str, np.ndarray]:
    """Per detector, each clip's maximum logit over its hops."""
    per_clip = [detector_tracks(cascade, *stages(cascade, hash((prefix, i)), preparer.padded(item)))
                for i, item in enumerate(items)]  # fmt: skip
    return {name: np.array([t[name].max() for t in per_clip]) for name in per_clip[0]}


def evaluate(cascade, stages: Stages, protocol, preparer, stream: np.ndarray) -> dict:
    negatives = data.negative_clips(WORD, protocol)
    positives = clip_maxima(cascade, stages, preparer, data.test_positives(data.keyword_clips()[WORD], protocol), "p")
    negative_max = clip_maxima(cascade, stages, preparer, negatives, "n")
    tracks = detector_tracks(cascade, *stages(cascade, hash("stream"), stream))
    own = metrics.OwnThreshold(cascade.config.threshold(WORD), "logit")
    seconds, hop = len(stream) / data.SAMPLE_RATE, cascade.config.hop_seconds
    results = {}
    for name, track in tracks.items():
        clip = metrics.clip_metrics(positives[name], negative_max[name], [n.kind for n in negatives], own)
        results[name] = {**clip, **metrics.stream_metrics(positives[name], track, hop, seconds, own)}
        print(name, json.dumps({k: results[name][k] for k in ("at_1_fah", "clip_frr_at_1pct_far", "clip_roc_auc")}))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", help="cascade folder (repeat for several)")
    parser.add_argument("--tag", default="", help="results file benchmarks/results/cascade_accuracy<tag>.json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    models, protocol, stages = (
        args.model or [str(data.CACHE / "cascade" / "model-full")],
        data.REPORTED_PROTOCOL,
        Stages(),
    )
    stream, out = data.stream_audio(protocol), {}
    for folder in models:
        cascade = load_detector(folder).eval()
        preparer = data.ClipPreparer(protocol, data.Timing.of(cascade.stage2))
        print(folder, flush=True)
        out[folder] = evaluate(cascade, stages, protocol, preparer, stream)
    record = {"model": models[0], "results": out[models[0]]} if len(models) == 1 else {"models": out}
    path = RESULTS.with_name(f"cascade_accuracy{args.tag}.json")
    path.write_text(json.dumps(record, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
