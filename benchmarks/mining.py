"""Benchmark: one round of hard-negative mining on REAL recordings (../shared/data, not shipped).

The speechocean762 speakers (read English sentences, no wake word) are split in half by speaker: a
mining half and a test half. A "jarvis" transfer-head detector (synthetic data + 10 real clips from
training sessions, recipes/transfer-head.yaml, as in recipes/compare.yaml) mines the mining half at half
its calibrated threshold; the model's own recipe is then retrained with the mined clips
(`wakeword retrain`). Both versions are scored on the test half (FA/h) and on 120 real jarvis clips from
held-out sessions mixed with the shared noise at 10 dB SNR (FRR). FA/h is compared at EQUAL FRR: each
model's threshold is the one that gives the target FRR on the held-out positives.

    python benchmarks/mining.py [--fraction 0.5]
Results: benchmarks/results/mining.json (one entry per mining threshold), .md and mining-<fraction>.png;
models, mined clips and raw scores (scores-<fraction>.npz) under runs/mining/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from wakeword.audio import SAMPLE_RATE, load_audio
from wakeword.checkpoint import load_detector
from wakeword.compare import (
    Contender,
    _real_dataset,
    _train_contender,
    held_out_split,
    load_compare,
    on_shared_data,
    subset_dataset,
)
from wakeword.evaluate import NoiseMixer, audio_files, score_items
from wakeword.metrics import DETCurve, det_curve, false_accepts_per_hour, false_reject_rate, plot_det
from wakeword.mining import MineSettings, mine, retrain
from wakeword.models.base import Detector
from wakeword.stream import score_array

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WAKEWORD_SHARED_DATA", REPO.parent / "shared" / "data"))
RESULTS = REPO / "benchmarks" / "results"
OUT = REPO / "runs" / "mining"
FRR_TARGETS = (0.01, 0.025, 0.05, 0.10)


class SharedEncoder(Detector):
    """Two head-only transfer detectors over ONE encoder pass: column 0 before mining, column 1 after."""

    family = "transfer"

    def __init__(self, before: Detector, after: Detector) -> None:
        super().__init__(before.config.replace(wake_words=("before", "after"), thresholds={}))
        self.before, self.after = before, after

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        frames = self.before.encode(audio)
        return torch.cat([self.before.forward_features(frames), self.after.forward_features(frames)], dim=1)


def speaker_halves(folder: Path, seed: int) -> tuple[list[Path], list[Path]]:
    speakers = sorted(p for p in folder.iterdir() if p.is_dir())
    order = np.random.default_rng(seed).permutation(len(speakers))
    half = len(speakers) // 2
    return [speakers[i] for i in sorted(order[:half])], [speakers[i] for i in sorted(order[half:])]


def build_before(out: Path) -> tuple[Path, list]:
    """Train (once) the jarvis detector with 10 real clips; returns it and the held-out test clips."""
    spec = load_compare(REPO / "recipes" / "compare.yaml")
    spec = on_shared_data(spec, SHARED, out)
    real = _real_dataset(spec, out)
    pool, test_clips = held_out_split(spec, real)
    subset = subset_dataset(real, [c.id for c in pool[:10]], out / "real" / "n10")
    contender = Contender("transfer-head", str(REPO / "recipes" / "transfer-head.yaml"))
    _train_contender(contender, spec, subset.root, out / "before")
    return out / "before", [(real.root / c.path, {"jarvis": 1}) for c in test_clips]


def score_both(pair: SharedEncoder, positives: list, negative_files: list[Path]) -> dict:
    mixer = NoiseMixer(10.0, audio_files(SHARED / "noise"), seed=0)
    scored = score_items(pair, positives, mixer, "held-out jarvis")
    tracks = [score_array(pair, load_audio(p))[1] for p in negative_files]
    seconds = sum(len(t) for t in tracks) * pair.config.hop_seconds
    return {
        "positives": np.array([s.track.max(axis=0) for s in scored]),  # (n_clips, 2)
        "tracks": tracks,
        "seconds": seconds,
    }


def threshold_for_frr(positives: np.ndarray, target: float) -> float:
    """The highest threshold whose FRR (share of scores below it) is at most `target`."""
    ranked = np.sort(positives)
    return float(ranked[int(np.floor(target * len(ranked)))])


def compare_rows(scores: dict, hop: float) -> list[dict]:
    rows = []
    for target in FRR_TARGETS:
        row: dict = {"frr_target": target}
        for column, name in enumerate(("before", "after")):
            positives = scores["positives"][:, column]
            threshold = threshold_for_frr(positives, target)
            tracks = [t[:, column] for t in scores["tracks"]]
            row[name] = {
                "threshold": threshold,
                "frr": false_reject_rate(positives, threshold),
                "fa_per_hour": false_accepts_per_hour(tracks, threshold, hop, 1.0, scores["seconds"]),
            }
        rows.append(row)
    return rows


def write_results(key: str, result: dict, scores: dict, hop: float) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "mining.json"
    runs = json.loads(path.read_text()) if path.exists() else {}
    runs = runs if "rows" not in runs else {}  # an older single-run file
    runs[key] = result
    path.write_text(json.dumps(runs, indent=2))
    lines = [
        "| mining threshold | clips mined | FRR on held-out jarvis | FA/h before mining | FA/h after | change |",
        "|---|---|---|---|---|---|",
    ]
    for name, run in runs.items():
        for row in run["rows"]:
            before, after = row["before"], row["after"]
            change = after["fa_per_hour"] / before["fa_per_hour"] if before["fa_per_hour"] else float("nan")
            lines.append(
                f"| {run['mining']['threshold']:.3f} ({name}) | {run['mining']['clips_added']} | "
                f"{before['frr']:.1%} / {after['frr']:.1%} | {before['fa_per_hour']:.1f} | "
                f"{after['fa_per_hour']:.1f} | x{change:.2f} |"
            )
    (RESULTS / "mining.md").write_text("\n".join(lines) + "\n")
    curves: dict[str, DETCurve] = {}
    for column, name in enumerate(("before mining", "after one mining round")):
        tracks = [t[:, column] for t in scores["tracks"]]
        curves[name] = det_curve(scores["positives"][:, column], tracks, hop, 1.0, duration_seconds=scores["seconds"])
    title = f"jarvis, mined at {result['mining']['threshold']:.2f}: held-out sessions vs unseen speakers"
    plot_det(curves, RESULTS / f"mining-{key}.png", title)
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fraction", type=float, default=0.5, help="mining threshold: this share of the model's")
    parser.add_argument("--seed", type=int, default=0, help="seed of the speaker split")
    args = parser.parse_args()
    print(f"reading real recordings from {SHARED} (development data, not shipped)")
    started = time.monotonic()
    before_dir, positives = build_before(OUT)
    mining_half, test_half = speaker_halves(SHARED / "speech" / "speechocean762", args.seed)
    key = f"fraction-{args.fraction:g}"
    mined_dir = OUT / f"mined-{key}"
    report = mine(before_dir, mining_half, mined_dir, MineSettings(threshold_fraction=args.fraction))
    print(report.summary())
    after_dir = OUT / f"after-{key}"
    shutil.rmtree(after_dir, ignore_errors=True)
    shutil.copytree(before_dir, after_dir)
    retrain_started = time.monotonic()
    retrain(after_dir, [mined_dir])
    retrain_seconds = time.monotonic() - retrain_started
    before, after = load_detector(before_dir), load_detector(after_dir)
    pair = SharedEncoder(before, after).eval()
    negative_files = [f for speaker in test_half for f in audio_files(speaker)]
    scores = score_both(pair, positives, negative_files)
    np.savez_compressed(
        OUT / f"scores-{key}.npz", positives=scores["positives"], seconds=scores["seconds"],
        **{f"track{i}": t for i, t in enumerate(scores["tracks"])},
    )  # fmt: skip
    hop = before.config.hop_seconds
    result = {
        "rows": compare_rows(scores, hop),
        "mining": {
            "speakers": len(mining_half),
            "hours": report.hours,
            "activations": report.n_activations,
            "clips_added": report.n_added,
            "threshold": MineSettings(threshold_fraction=args.fraction).threshold_fraction
            * before.config.threshold("jarvis"),
        },
        "test": {
            "speakers": len(test_half),
            "hours": scores["seconds"] / 3600,
            "positives": len(positives),
            "snr_db": 10.0,
        },
        "retrain_seconds": round(retrain_seconds, 1),
        "total_seconds": round(time.monotonic() - started, 1),
        "sample_rate": SAMPLE_RATE,
    }
    write_results(key, result, scores, hop)
    print(f"retrain {retrain_seconds:.1f} s; done in {result['total_seconds']:.0f} s")


if __name__ == "__main__":
    main()
