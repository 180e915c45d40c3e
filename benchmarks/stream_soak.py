"""Soak test of live detection: an hour of audio through one StreamingDetector, block by block as a microphone
delivers it, watching for memory that grows and hops that are never scored.

    python benchmarks/stream_soak.py [--minutes 60] [--family e2e | --model MODEL_DIR] [--block-seconds 0.1]

The audio is stream_speed's generated noise shaped into speech-like bursts (syllable-rate modulated, 0.3-2 s
long, with pauses), generated block by block so the source holds no long buffer. Memory is measured from the
end of minute 5 (after warm-up: allocator pools, torch caches) to the end: resident set size (VmRSS) and
Python allocations (tracemalloc). Hops: every hop of audio fed must be scored exactly once (the stream is
flushed at the end, which scores the last partial hop). Targets: growth < 10 MB, zero dropped hops.
Results: benchmarks/results/stream_soak_<family>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from stream_speed import FAMILIES, RESULTS, blocks

from wakeword.audio import SAMPLE_RATE
from wakeword.checkpoint import load_detector
from wakeword.models import get_family
from wakeword.models.base import Detector
from wakeword.stream import StreamingDetector

WARM_UP_MINUTES = 5.0
TARGET_GROWTH_MB = 10.0


def rss_mb() -> float:
    """Resident set size of this process now (Linux /proc), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def speechlike(noise: Iterator[np.ndarray], seed: int = 1) -> Iterator[np.ndarray]:
    """Shape noise blocks into bursts like speech: on for 0.3-2 s, off for 0.2-1.5 s, 4 Hz syllable modulation."""
    rng = np.random.default_rng(seed)
    on, left, offset = False, 0, 0  # current state, samples left in it, samples so far (for the modulation phase)
    for block in noise:
        envelope = np.empty(len(block), np.float32)
        filled = 0
        while filled < len(block):
            if left == 0:
                on = not on
                left = int((rng.uniform(0.3, 2.0) if on else rng.uniform(0.2, 1.5)) * SAMPLE_RATE)
            n = min(left, len(block) - filled)
            t = (offset + filled + np.arange(n)) / SAMPLE_RATE
            envelope[filled : filled + n] = (4.0 * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))) if on else 0.1
            filled, left = filled + n, left - n
        offset += len(block)
        yield np.clip(block * envelope, -1.0, 1.0).astype(np.float32)


def build_detector(family: str, model: str | None) -> tuple[Detector, str]:
    if model:
        detector = load_detector(model)
        return detector, f"{detector.config.family} (trained, {model})"
    configs = [c for c in FAMILIES.values() if c.family == family]
    if not configs:
        raise SystemExit(f"unknown family {family!r}: one of {sorted({c.family for c in FAMILIES.values()})}")
    torch.manual_seed(0)  # untrained weights cost the same per hop as trained ones
    return get_family(family).build_model(configs[0]).eval(), f"{family} (untrained)"


def soak(detector: Detector, minutes: float, block_seconds: float) -> dict:
    streamer = StreamingDetector(detector)
    hop_samples = detector.config.hop_samples
    n_samples = n_hops = n_events = max_buffered = 0
    timeline: list[dict[str, float]] = []  # one row per minute of audio
    warm: dict[str, float] = {}
    tracemalloc.start()
    started = time.perf_counter()
    next_minute = 1
    for block in speechlike(blocks(minutes, block_seconds)):
        result = streamer.process(block)
        n_samples += len(block)
        n_hops += len(result.times_seconds)
        n_events += len(result.detections)
        max_buffered = max(max_buffered, streamer.buffered_samples)
        if n_samples >= next_minute * 60 * SAMPLE_RATE:
            python_mb = tracemalloc.get_traced_memory()[0] / 2**20
            timeline.append({"minute": next_minute, "rss_mb": rss_mb(), "python_mb": python_mb})
            if next_minute == WARM_UP_MINUTES:
                warm = dict(timeline[-1])
            next_minute += 1
    final = streamer.flush()
    n_hops += len(final.times_seconds)
    n_events += len(final.detections)
    elapsed = time.perf_counter() - started
    end = {"rss_mb": rss_mb(), "python_mb": tracemalloc.get_traced_memory()[0] / 2**20}
    python_peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    audio_seconds = n_samples / SAMPLE_RATE
    expected_hops = math.ceil(n_samples / hop_samples)
    rss_growth = end["rss_mb"] - warm.get("rss_mb", math.nan)
    python_growth = end["python_mb"] - warm.get("python_mb", math.nan)
    return {
        "audio_seconds": audio_seconds,
        "block_seconds": block_seconds,
        "hops_scored": n_hops,
        "hops_expected": expected_hops,
        "dropped_hops": expected_hops - n_hops,
        "detections": n_events,
        "real_time_factor": elapsed / audio_seconds,
        "ms_per_hop": 1000 * elapsed / max(1, n_hops),
        "rss_mb_after_warm_up": warm.get("rss_mb"),
        "rss_mb_end": end["rss_mb"],
        "rss_growth_mb": rss_growth,
        "python_growth_mb": python_growth,
        "python_peak_mb": python_peak_mb,
        "max_buffered_samples": max_buffered,
        "buffer_bound_samples": detector.config.window_samples + hop_samples,
        "passed": bool(expected_hops == n_hops and rss_growth < TARGET_GROWTH_MB and python_growth < TARGET_GROWTH_MB),
        "timeline": timeline,
    }


def markdown(result: dict) -> str:
    every_5th = [row for row in result["timeline"] if row["minute"] % 5 == 0 or row["minute"] == 1]
    growth = f"RSS growth, minute {WARM_UP_MINUTES:g} to end"
    rows = [
        "# Streaming soak",
        "",
        f"`{result['command']}`: {result['detector']}, {result['audio_seconds'] / 60:.0f} min of speech-like "
        f"audio in {result['block_seconds']:g} s blocks, {result['threads']} torch thread.",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| hops scored / expected | {result['hops_scored']} / {result['hops_expected']} | all |",
        f"| dropped hops | {result['dropped_hops']} | 0 |",
        f"| {growth} | {result['rss_growth_mb']:.2f} MB | < {TARGET_GROWTH_MB:g} MB |",
        f"| Python allocations growth (tracemalloc) | {result['python_growth_mb']:.3f} MB "
        f"| < {TARGET_GROWTH_MB:g} MB |",
        f"| Python allocations peak | {result['python_peak_mb']:.2f} MB | |",
        f"| RSS after warm-up / at the end | {result['rss_mb_after_warm_up']:.1f} / {result['rss_mb_end']:.1f} MB | |",
        f"| samples held between calls (max) | {result['max_buffered_samples']} "
        f"(bound {result['buffer_bound_samples']}) | |",
        f"| real-time factor | {result['real_time_factor']:.4f} ({result['ms_per_hop']:.2f} ms per hop) | < 1 |",
        f"| detections (untrained or not, just counted) | {result['detections']} | |",
        "",
        f"Result: **{'pass' if result['passed'] else 'FAIL'}**.",
        "",
        "RSS (MB) by minute of audio: " + ", ".join(f"{row['minute']}: {row['rss_mb']:.1f}" for row in every_5th),
        "",
    ]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="length of the stream (minutes of audio)")
    parser.add_argument("--family", default="e2e", help="untrained detector of this family (e2e, transfer, phoneme)")
    parser.add_argument("--model", default=None, help="a trained model directory instead of --family")
    parser.add_argument("--block-seconds", type=float, default=0.1, help="block size fed per call (0.1: a live mic)")
    args = parser.parse_args()
    if args.minutes <= WARM_UP_MINUTES:
        raise SystemExit(f"--minutes must exceed the {WARM_UP_MINUTES:g}-minute warm-up")
    torch.set_num_threads(1)
    detector, description = build_detector(args.family, args.model)
    result = soak(detector, args.minutes, args.block_seconds)
    source = f" --model {args.model}" if args.model else f" --family {args.family}"
    command = f"python benchmarks/stream_soak.py{source}"
    command += f" --minutes {args.minutes:g} --block-seconds {args.block_seconds:g}"
    result = {"command": command, "detector": description, "threads": 1, **result}
    RESULTS.mkdir(exist_ok=True)
    name = f"stream_soak_{args.family if args.model is None else detector.config.family}"
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2))
    (RESULTS / f"{name}.md").write_text(markdown(result))
    print(json.dumps({k: v for k, v in result.items() if k != "timeline"}, indent=2))


if __name__ == "__main__":
    main()
