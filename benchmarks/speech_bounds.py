"""Where is the word in a real recording? The energy endpoint (`wakeword.data.augment.speech_bounds`) on the
shared real wake-word recordings and on a synthetic set, against the previous rule.

A training window ends just after the word, so an endpoint that runs over the room puts the window on the
room and labels the room "wake word". Reported per set: how many utterances come out longer than the
detector's window (1.5 s) or than 1.2 s, the median length, and how many clips the current rule moves
against the previous one (background = 10th percentile frame, WINDOWING_VERSION 2).

Reads ../shared/data/keywords (development data, not shipped) and a synthetic data set folder.

    python benchmarks/speech_bounds.py [--synth runs/synth/jarvis]
Results: benchmarks/results/speech_bounds.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from wakeword.audio import HOP_LENGTH, SAMPLE_RATE, load_audio
from wakeword.data.augment import _EPS, ACTIVE_FLOOR_DB, MAX_SPEECH_GAP_SECONDS, frame_power, speech_bounds

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
WINDOW_SECONDS = 1.5


def previous_bounds(audio: np.ndarray) -> tuple[int, int]:
    """speech_bounds as it was before WINDOWING_VERSION 3: the background is the 10th percentile frame."""
    power = 10.0 * np.log10(frame_power(audio) + _EPS)
    peak = power.max(initial=-120.0)
    threshold = max(peak - ACTIVE_FLOOR_DB, min(np.percentile(power, 10) + 10.0, peak - 20.0))
    active = np.flatnonzero(power >= threshold) if peak > -110.0 else np.array([], dtype=int)
    if active.size == 0:
        return 0, len(audio)
    runs = np.split(
        active, np.flatnonzero(np.diff(active) > round(MAX_SPEECH_GAP_SECONDS * SAMPLE_RATE / HOP_LENGTH)) + 1
    )
    loudest = int(np.argmax(power))
    run = next(r for r in runs if r[0] <= loudest <= r[-1])
    return int(run[0] * HOP_LENGTH), int(min(len(audio), (run[-1] + 1) * HOP_LENGTH))


def summary(files: list[Path]) -> dict:
    """Utterance lengths (s) by both rules and how many clips moved."""
    now, before, moved = [], [], 0
    for path in files:
        audio = load_audio(path)
        a, b = speech_bounds(audio), previous_bounds(audio)
        now.append((a[1] - a[0]) / SAMPLE_RATE)
        before.append((b[1] - b[0]) / SAMPLE_RATE)
        moved += a != b

    def lengths(x: list[float]) -> dict:
        x = np.asarray(x)
        return {
            f"longer_than_{WINDOW_SECONDS}s": int((x > WINDOW_SECONDS).sum()),
            "longer_than_1.2s": int((x > 1.2).sum()),
            "median_seconds": round(float(np.median(x)), 3),
            "p95_seconds": round(float(np.percentile(x, 95)), 3),
        }

    return {"n_clips": len(files), "current": lengths(now), "previous": lengths(before), "n_moved": int(moved)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--synth", type=Path, default=REPO / "runs" / "synth" / "jarvis", help="synthetic data set")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "speech_bounds.json")
    args = parser.parse_args()
    print(f"reading real recordings from {SHARED / 'keywords'} (development data, not shipped)")
    results = {"real wake-word recordings": summary(sorted((SHARED / "keywords").glob("*/*.wav")))}
    synthetic = sorted(args.synth.rglob("*.wav"))
    if synthetic:
        results[f"synthetic ({args.synth.resolve().relative_to(REPO)})"] = summary(synthetic)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
