"""How long a new user waits: the quickstart end to end, stage by stage, from empty caches and with caches,
and a scoring micro-benchmark (200 clips through a trained detector, as calibration and test score them).

    python benchmarks/pipeline_speed.py --label after                    # this tree
    python benchmarks/pipeline_speed.py --label before --code /tmp/base  # a `git worktree add /tmp/base COMMIT`
    python benchmarks/pipeline_speed.py --table                          # the results as a Markdown table

Each measurement runs `wakeword train recipes/quickstart.yaml` (the code under test, in a process of its
own) with WAKEWORD_CACHE_DIR pointed at a fresh folder, so the run pays the one-time Whisper conversion and
encodes everything; then again with that cache and the synthetic data in place. Stage times come from the
same wrappers for every version (so an old commit without stage timing is measured the same way): the
Whisper conversion, synthesis, the quality check (transcription), encoding, fitting, calibration (scoring
the validation split) and test (scoring the test split); `other` is the rest (imports, model loading,
splits, saving). Results are merged into benchmarks/results/pipeline_speed.json under --label, with the
load average seen before each run: the machine (2 cores) may have been shared.
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

RESULTS = Path(os.environ.get("PIPELINE_SPEED_RESULTS", Path(__file__).parent / "results" / "pipeline_speed.json"))
RECIPE = "recipes/quickstart.yaml"
STAGES = (
    "whisper conversion",
    "synthesis",
    "quality check",
    "encoding",
    "fitting",
    "long-form synthesis",
    "long-form scoring",
    "calibration",
    "test",
)


def _cpu() -> float:
    """CPU seconds of this process (all threads) and of its finished children (synthesis workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class _Stages:
    """Exclusive wall and CPU seconds per stage (a stage inside another pauses it), filled by wrapped library
    functions. CPU seconds count every core: on a shared machine they are the figure that load does not inflate."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.stack: list[list[Any]] = []

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        now, cpu = time.perf_counter(), _cpu()
        if self.stack:
            self.seconds[self.stack[-1][0]] += now - self.stack[-1][1]
            self.cpu[self.stack[-1][0]] += cpu - self.stack[-1][2]
        self.seconds.setdefault(name, 0.0)
        self.cpu.setdefault(name, 0.0)
        self.stack.append([name, now, cpu])
        try:
            yield
        finally:
            now, cpu = time.perf_counter(), _cpu()
            _, started, cpu_started = self.stack.pop()
            self.seconds[name] += now - started
            self.cpu[name] += cpu - cpu_started
            if self.stack:
                self.stack[-1][1], self.stack[-1][2] = now, cpu

    def wrap(self, name: str | Callable[..., str], function: Callable) -> Callable:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with self(name(*args, **kwargs) if callable(name) else name):
                return function(*args, **kwargs)

        return wrapped


class _TimedTranscriber:
    """A QC transcriber whose every call (one clip or a batch) counts as the quality check."""

    def __init__(self, inner: Any, stages: _Stages) -> None:
        self._inner, self._stages = inner, stages

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._stages("quality check"):
            return self._inner(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        return self._stages.wrap("quality check", value) if callable(value) and not name.startswith("__") else value


def _instrument(stages: _Stages) -> None:
    """Wrap the functions each stage runs in, in the code under test (any version of the package)."""
    import wakeword.data.synth as synth
    import wakeword.encoders.whisper as whisper
    import wakeword.pipeline as pipeline

    whisper.convert_ct2_whisper = stages.wrap("whisper conversion", whisper.convert_ct2_whisper)
    synth.build_synthetic_dataset = stages.wrap("synthesis", synth.build_synthetic_dataset)
    build_qc = synth.build_qc_transcriber

    def build_qc_timed(*args: Any, **kwargs: Any) -> Any:
        name, transcriber = build_qc(*args, **kwargs)
        return name, _TimedTranscriber(transcriber, stages)

    synth.build_qc_transcriber = build_qc_timed
    try:  # encode_cached and fit moved from pipeline.py to fitting.py (f91b0dc)
        import wakeword.fitting as fitting
    except ImportError:
        fitting = pipeline
    fitting.encode_cached = stages.wrap("encoding", fitting.encode_cached)
    fitting.fit = stages.wrap("fitting", fitting.fit)
    try:  # the synthetic long-form calibration audio (issue 17): made once per machine, encoded in calibration
        import wakeword.calibration as calibration
    except ImportError:
        pass
    else:
        calibration.build_synthetic_longform = stages.wrap("long-form synthesis", calibration.build_synthetic_longform)
        # scoring the long audio (encoding it, the first time): pipeline.score_long before the int8 first pass
        for module, name in ((calibration, "score_long"), (calibration, "score_hops"), (pipeline, "score_long")):
            if hasattr(module, name):
                setattr(module, name, stages.wrap("long-form scoring", getattr(module, name)))
    pipeline.score_pairs = stages.wrap(
        lambda model, pairs, desc: "calibration" if "validation" in desc else "test", pipeline.score_pairs
    )


def run_train(out: str, synth_out: str, overrides: list[str]) -> None:
    """Child process: train the quickstart with every stage timed; prints one JSON line."""
    started = time.perf_counter()
    stages = _Stages()
    _instrument(stages)
    from wakeword.pipeline import train_recipe
    from wakeword.recipes import load_recipe

    report = train_recipe(load_recipe(RECIPE, [f"data.synth.out={synth_out}", *overrides]), out)
    total = time.perf_counter() - started
    timed = {s: round(stages.seconds[s], 1) for s in STAGES if s in stages.seconds}
    cpu = {s: round(stages.cpu[s], 1) for s in STAGES if s in stages.cpu}
    cpu["other (in process)"] = round(_cpu() - sum(stages.cpu.values()), 1)
    word = next(iter(report.words.values()))
    print(json.dumps({"stages": {**timed, "other (in process)": round(total - sum(stages.seconds.values()), 1)},
                      "cpu_seconds": cpu, "report_stages": getattr(report, "stages", None), "frr": word.frr,
                      "fa_per_hour": word.fa_per_hour, "n_test_positives": word.n_positive}))  # fmt: skip


def run_score(model: str, data: str, n_clips: int, tracks_out: str | None = None) -> None:
    """Child process: score n_clips clips of a data set with score_items; prints one JSON line."""
    import torch

    from wakeword.checkpoint import load_detector
    from wakeword.data.clips import DataSet
    from wakeword.evaluate import score_items

    detector, dataset = load_detector(model), DataSet(data)
    clips = sorted(dataset.clips(), key=lambda c: c.id)[:n_clips]
    items = [(dataset.root / c.path, c.labels) for c in clips]
    score_items(detector, items[:2])  # first calls (allocations, thread pools) outside the clock
    started, cpu_started = time.perf_counter(), _cpu()
    scored = score_items(detector, items)
    seconds, cpu = time.perf_counter() - started, _cpu() - cpu_started
    audio_seconds = sum(s.duration_seconds for s in scored)
    if tracks_out:  # to compare two versions' scores clip by clip
        import numpy as np

        np.savez(tracks_out, *[s.track for s in scored])
    print(json.dumps({"n_clips": len(scored), "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1),
                      "audio_seconds": round(audio_seconds, 1),
                      "torch_threads": torch.get_num_threads()}))  # fmt: skip


def _child(args: list[str], code: Path, cache: Path) -> tuple[dict, float, list[float]]:
    env = {**os.environ, "PYTHONPATH": str(code), "WAKEWORD_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}  # fmt: skip
    load = [round(x, 2) for x in os.getloadavg()]
    started, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([sys.executable, __file__, *args], cwd=code, env=env, capture_output=True, text=True)
    seconds, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise SystemExit(f"{args[0]} failed:\n{out.stderr[-3000:]}")
    row = json.loads(out.stdout.strip().splitlines()[-1])
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    row["cpu_seconds_total"] = round(cpu, 1)  # the whole child process, imports included
    row["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return row, round(seconds, 1), load


def measure(code: Path, work: Path, args: argparse.Namespace) -> dict:
    cache, synth = work / "cache", work / "synth"
    result: dict[str, Any] = {}
    for name, out in (("empty_caches", "model-cold"), ("with_caches", "model-warm")):
        row, wall, load = _child(["_train", str(work / out), str(synth), *args.set], code, cache)
        result[name] = {"wall_seconds": wall, "load_average_before": load, **row}
        print(name, json.dumps(result[name]), flush=True)
    model, data = args.score_model or str(work / "model-cold"), args.score_data or str(synth / "hey-computer")
    row, wall, load = _child(["_score", model, data, str(args.n_clips)], code, cache)
    result["scoring"] = {"model": model, "data": data, "load_average_before": load, **row}
    print("scoring", json.dumps(result["scoring"]), flush=True)
    return result


def _commit(code: Path) -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=code, capture_output=True, text=True)
    return out.stdout.strip()


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds:.0f} s" if seconds < 60 else f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


def table(results: dict) -> str:
    """Markdown: one column per (label, run), one row per stage, then the whole run and the scoring benchmark."""
    labels = [k for k, v in results.items() if isinstance(v, dict) and "with_caches" in v and "scoring" in v]
    results = {label: results[label] for label in labels}  # complete runs only
    columns = [(label, run) for label in results for run in ("empty_caches", "with_caches")]
    head = [f"{label}, {run.replace('_', ' ')}" for label, run in columns]
    lines = ["| stage | " + " | ".join(head) + " |", "|---" * (len(columns) + 1) + "|"]
    for stage in (*STAGES, "other (in process)"):
        cells = [_minutes(results[label][run]["stages"].get(stage)) for label, run in columns]
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    walls = [f"**{_minutes(results[label][run]['wall_seconds'])}**" for label, run in columns]
    lines.append("| whole `wakeword train` (wall) | " + " | ".join(walls) + " |")
    loads = [str(results[label][run]["load_average_before"][0]) for label, run in columns]
    lines.append("| load average before (1 min) | " + " | ".join(loads) + " |")
    lines += ["", "| scoring benchmark | clips | seconds | clips per second | load average before |"]
    lines.append("|---|---|---|---|---|")
    for label in results:
        row = results[label]["scoring"]
        speed = row["n_clips"] / row["seconds"]
        load = row["load_average_before"][0]
        lines.append(f"| {label} | {row['n_clips']} | {row['seconds']} | {speed:.1f} | {load} |")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--table":
        return print(table(json.loads(RESULTS.read_text())))
    if len(sys.argv) > 1 and sys.argv[1] == "_train":
        return run_train(sys.argv[2], sys.argv[3], sys.argv[4:])
    if len(sys.argv) > 1 and sys.argv[1] == "_score":
        return run_score(sys.argv[2], sys.argv[3], int(sys.argv[4]), (sys.argv[5:] or [None])[0])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", required=True, help="key in the results file, e.g. before / after")
    parser.add_argument("--code", default=str(Path(__file__).resolve().parents[1]), help="repository under test")
    parser.add_argument("--work", default=None, help="folder for caches, data and models (default: a temp folder)")
    parser.add_argument("--score-model", default=None, help="model for the scoring run (default: the cold run's)")
    parser.add_argument("--score-data", default=None, help="data set for the scoring run (default: the synth data)")
    parser.add_argument("--n-clips", type=int, default=200)
    parser.add_argument("--note", default="", help="a note stored with the results")
    parser.add_argument("--set", action="append", default=[], help="recipe override (only for trying the script)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="pipeline-speed-"))
    work.mkdir(parents=True, exist_ok=True)
    code = Path(args.code).resolve()
    result = measure(code, work, args)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[args.label] = {"commit": _commit(code), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                           "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                           "work": str(work), "note": args.note, "overrides": args.set, **result}  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS} [{args.label}]")


if __name__ == "__main__":
    main()
