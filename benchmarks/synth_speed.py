"""Synthesis speed and QC acceptance of the espeak-ng backend on this machine.

    python benchmarks/synth_speed.py [--word "hey computer"] [--n 100] [--qc auto|whisper|pocketsphinx]
    python benchmarks/synth_speed.py --cli after [--checkout DIR] [--n-positives N]

Measures (1) raw synthesis: clips per second and real-time factor of EspeakBackend.synthesize, one process;
(2) a full build_synthetic_dataset run of --n positives with QC (clips per second including transcription
and writing), the QC acceptance rate overall and per accent. Writes benchmarks/results/synth_speed.json.

--cli LABEL times the command a user runs, `wakeword synth WORD --out TMP` with the default counts (or
--n-positives/--n-confusables/--n-generic), from a fresh process, with the package at --checkout (default: this
one; for "before", an export of the base commit) and stores it under "cli" -> LABEL, keeping the other keys.
Whisper's one-time conversion is done before the clock starts. The 2-core machine may have been shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from wakeword.audio import SAMPLE_RATE
from wakeword.data.synth import SynthSettings, build_synthetic_dataset, draw_voice_settings
from wakeword.data.tts import EspeakBackend

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


def time_cli(word: str, checkout: Path, counts: list[str], code: str = "") -> dict:
    """Wall seconds of `python -m wakeword.cli synth` in a fresh process, and its summary's first lines."""
    from wakeword.encoders.whisper import resolve_whisper

    resolve_whisper("whisper-tiny.en")  # the one-time conversion is not part of this timing
    env = {**os.environ, "PYTHONPATH": str(checkout), "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or code  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "wakeword.cli", "synth", word, "--out", str(Path(folder) / "ds"), *counts]
        start, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(command, env=env, cwd=checkout, capture_output=True, text=True)
        seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"wakeword synth failed:\n{done.stderr[-2000:]}")
    load = os.getloadavg()
    return {"command": " ".join(["wakeword", "synth", repr(word), "--out", "X", *counts]), "code": commit,
            "seconds": round(seconds, 1), "summary": done.stdout.strip().splitlines()[:2],
            # CPU seconds of the command and every process under it (render processes included): the work done,
            # which a shared machine does not inflate the way it inflates wall time
            "cpu_seconds": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1),
            "load_average_1_5_15_after": [round(x, 1) for x in load]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--word", default="hey computer")
    parser.add_argument("--n", type=int, default=100, help="positives wanted in the QC run")
    parser.add_argument("--n-synth", type=int, default=500, help="clips in the raw synthesis timing")
    parser.add_argument("--qc", default="auto", help="auto | whisper | pocketsphinx")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cli", metavar="LABEL", help="time `wakeword synth` instead; store it under this label")
    parser.add_argument("--checkout", type=Path, default=Path(__file__).parents[1], help="package to time (--cli)")
    parser.add_argument("--code", default="", help="what --checkout holds when it is not a git work tree")
    for name in ("--n-positives", "--n-confusables", "--n-generic"):
        parser.add_argument(name, type=int, help="with --cli: instead of the default count")
    args = parser.parse_args()
    if args.cli:
        names = ("n_positives", "n_confusables", "n_generic")
        counts = [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in names if getattr(args, k) is not None]
        entry = time_cli(args.word, args.checkout.resolve(), counts, args.code)
        result = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        result.setdefault("cli", {})[args.cli] = entry
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(entry, indent=2))
        return
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
