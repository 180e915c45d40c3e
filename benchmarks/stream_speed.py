"""Streaming cost per family on ONE thread: real-time factor, peak memory growth over a long stream.

Untrained detectors are as fast as trained ones (same architecture), so no training is needed here:
    python benchmarks/stream_speed.py [--minutes 60]
Results: benchmarks/results/stream_speed.json. Audio: pink noise with a short tone every 7 s, generated block
by block so the source itself holds no long buffer.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

from wakeword.audio import SAMPLE_RATE
from wakeword.models import get_family
from wakeword.models.base import DetectorConfig
from wakeword.stream import StreamingDetector

RESULTS = Path(__file__).resolve().parent / "results"
FAMILIES = {
    "transfer (whisper-tiny.en)": DetectorConfig(
        "transfer", ("jarvis",), encoder={"name": "whisper-tiny.en", "trainable": "head"}
    ),
    "e2e": DetectorConfig("e2e", ("jarvis",)),
    "phoneme": DetectorConfig("phoneme", ("jarvis",)),
}


def blocks(minutes: float, block_seconds: float = 3.2, seed: int = 0):
    rng = np.random.default_rng(seed)
    n_blocks = int(minutes * 60 / block_seconds)
    for _ in range(n_blocks):
        yield (0.05 * rng.standard_normal(int(block_seconds * SAMPLE_RATE))).astype(np.float32)


def measure(name: str, config: DetectorConfig, minutes: float) -> dict:
    detector = get_family(config.family).build_model(config).eval()
    streamer = StreamingDetector(detector)
    n_hops, first = 0, None
    tracemalloc.start()
    started = time.perf_counter()
    for i, block in enumerate(blocks(minutes)):
        n_hops += len(streamer.process(block).times_seconds)
        if i == 2:  # after warm-up: growth from here on is what a long stream would leak
            first = tracemalloc.get_traced_memory()[0]
    elapsed = time.perf_counter() - started
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    audio_seconds = int(minutes * 60 / 3.2) * 3.2  # whole blocks
    return {
        "family": name,
        "audio_seconds": audio_seconds,
        "hops": n_hops,
        "expected_hops": round(audio_seconds / config.hop_seconds),
        "real_time_factor": elapsed / audio_seconds,
        "ms_per_hop": 1000 * elapsed / max(1, n_hops),
        "python_memory_growth_mb": (current - (first or 0)) / 2**20,
        "python_peak_mb": peak / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0, help="stream length for e2e (others: --slow-minutes)")
    parser.add_argument("--slow-minutes", type=float, default=2.0, help="stream length for transfer and phoneme")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for name, config in FAMILIES.items():
        minutes = args.minutes if config.family == "e2e" else args.slow_minutes
        rows.append(measure(name, config, minutes))
        print(json.dumps(rows[-1]))
    result = {"threads": 1, "rows": rows, "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "stream_speed.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
