"""Synthesis speed and QC acceptance of the espeak-ng backend on this machine.

    python benchmarks/synth_speed.py [--word "hey computer"] [--n 100] [--qc auto|whisper|pocketsphinx]

Measures (1) raw synthesis: clips per second and real-time factor of EspeakBackend.synthesize, one process;
(2) a full build_synthetic_dataset run of --n positives with QC (clips per second including transcription
and writing), the QC acceptance rate overall and per accent. Writes benchmarks/results/synth_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from wakeword.audio import SAMPLE_RATE
from wakeword.data.synth import EspeakBackend, SynthSettings, build_synthetic_dataset, draw_voice_settings

RESULTS = Path(__file__).parent / "results" / "synth_speed.json"


def time_synthesis(word: str, n_clips: int, seed: int) -> dict:
    backend = EspeakBackend()
    voices = draw_voice_settings(backend.voices(), n_clips, np.random.default_rng(seed), SynthSettings())
    backend.synthesize(word, voices[0])  # load the library and voice data outside the clock
    start = time.perf_counter()
    n_samples = sum(len(backend.synthesize(word, v)) for v in voices)
    seconds = time.perf_counter() - start
    return {"n_clips": n_clips, "clips_per_second": round(n_clips / seconds, 1),
            "real_time_factor": round(n_samples / SAMPLE_RATE / seconds, 1),
            "n_distinct_voices": len({v.voice.id for v in voices})}  # fmt: skip


def time_build(word: str, n_positives: int, qc: str, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        settings = SynthSettings(n_positives=n_positives, n_confusables=0, n_generic=0, seed=seed, qc_transcriber=qc)
        report = build_synthetic_dataset(word, Path(folder) / "ds", settings=settings, progress=False)
        seconds = time.perf_counter() - start
    n_tried = report.n_positives + report.n_rejected
    return {"qc_transcriber": report.qc_transcriber, "n_positives": report.n_positives, "n_tried": n_tried,
            "acceptance_rate": round(report.acceptance_rate, 3), "n_voice_settings": report.n_voice_settings,
            "seconds": round(seconds, 1), "tried_clips_per_second": round(n_tried / seconds, 2),
            "acceptance_by_accent": {k: round(v, 3) for k, v in report.acceptance_by("language").items()},
            "acceptance_by_variant": {k: round(v, 3) for k, v in report.acceptance_by("variant").items()}}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--word", default="hey computer")
    parser.add_argument("--n", type=int, default=100, help="positives wanted in the QC run")
    parser.add_argument("--n-synth", type=int, default=500, help="clips in the raw synthesis timing")
    parser.add_argument("--qc", default="auto", help="auto | whisper | pocketsphinx")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    result = {"word": args.word, "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
              "synthesis": time_synthesis(args.word, args.n_synth, args.seed),
              "build_with_qc": time_build(args.word, args.n, args.qc, args.seed)}  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    summary = {k: v for k, v in result["build_with_qc"].items() if not k.startswith("acceptance_by")}
    print(json.dumps({"synthesis": result["synthesis"], "build_with_qc": summary}, indent=2))
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
