"""Real-world benchmark of issue 17 item 4: does a user's handful of real recordings help or hurt?

Reads the shared development data (../shared/data, not shipped, never used by tests). Per keyword K:
- K's session groups are split in half with a fixed seed: test groups vs train-pool groups. Up to 120 test
  positives from the test groups, padded and mixed with the shared real noise at 10 dB SNR as
  `wakeword.evaluate.score_clip` does; a clip's score is its maximum over hops.
- Negative clips recorded through the same channels as the positives (what exposes a detector that learned
  the microphone): the other two keywords' clips, spoken digits (fsdd) and the speechocean762 test-half
  sentences, padded and mixed like the positives. Reported: FRR at 1% and 5% clip FAR, ROC AUC, and how many
  negative clips the model's own threshold accepts and how many reach probability >= 0.999.
- FA/h on the speechocean762 test half (split by speaker; the other half is the "mining" half, exported to
  benchmarks/cache/speechocean_mining/ for training and never tested on) as one clean stream: FRR at 0.5 and
  1 FA/h, each FA/h with its exact 95% Poisson interval, and FRR / FA/h at the model's own threshold.
Models: `recipes/transfer-head.yaml` (+ every --set) trained by `wakeword.pipeline.train_recipe` with 0 real
clips (3 training seeds) or N real clips (draw d: N clips from 3 train-pool speakers drawn with seed d; 5
speakers for N >= 25). The encoder is frozen, so every evaluation window is encoded once into
benchmarks/cache/ (see real_world_data.py) and a model's scores are its head on the cached frames.

    python benchmarks/real_world.py --label before --words jarvis --sizes 0 10 --draws 3 [--set key=value ...]
Results: benchmarks/results/real_world/<label>.json / .md / .png (rows are appended; a rerun skips them).

Cost on 2 shared cores: the one-time encoding (about 30 windows/s on an idle machine, 5-12 under load; a 3 s
clip is ~45 windows, an hour of stream 36,000) and the trainer itself (its own streaming validation/test
scoring). To fit a time budget, cap the evaluation set with --max-other-keyword-clips / --n-digits /
--max-sentence-clips / --stream-minutes (the caps are part of the results' protocol: compare labels only under
the same caps), and start a second process with the same arguments plus --train-only: it trains from the last
condition backwards while the first one encodes (per-model lock files keep them from training one model twice).
The speechocean762 mining half: benchmarks/cache/speechocean_mining.txt and benchmarks/cache/speechocean_mining/.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, when run as a script

import real_world_data as data
import real_world_metrics as metrics
import real_world_report as report

from wakeword.checkpoint import load_detector
from wakeword.compare import import_keyword_corpus, subset_dataset
from wakeword.data.clips import DataSet, normalize_word
from wakeword.data.synth import SynthSettings, build_synthetic_dataset
from wakeword.models import get_family
from wakeword.models.base import Detector
from wakeword.pipeline import build_config, train_recipe
from wakeword.recipes import load_recipe

RECIPE = data.REPO / "recipes" / "transfer-head.yaml"
RESULTS = data.REPO / "benchmarks" / "results" / "real_world"


def slug(word: str) -> str:
    return word.replace(" ", "-")


def frozen_encoder(overrides: list[str]) -> Detector:
    """An untrained head-only transfer detector of the recipe: its frozen encoder makes the cache."""
    config = build_config(load_recipe(RECIPE, [*overrides, "wake_words=[jarvis]"]))
    return get_family(config.family).build_model(config).eval()


# ---- training conditions ---------------------------------------------------------------------------------


def draw_clips(pool: list[data.ClipItem], size: int, draw: int) -> list[data.ClipItem]:
    """`size` clips from 3 (size < 25) or 5 train-pool session groups picked with seed `draw`, spread evenly."""
    n_groups = 3 if size < 25 else 5
    need = -(-size // n_groups)
    by_group: dict[str, list[data.ClipItem]] = {}
    for clip in pool:
        by_group.setdefault(clip.group, []).append(clip)
    eligible = sorted(g for g, clips in by_group.items() if len(clips) >= need)
    if len(eligible) < n_groups:
        raise ValueError(f"only {len(eligible)} train-pool groups have {need} clips; {size} clips need {n_groups}")
    rng = np.random.default_rng(draw)
    chosen = [eligible[i] for i in sorted(rng.choice(len(eligible), n_groups, replace=False))]
    picked = []
    for i, group in enumerate(chosen):
        n = size // n_groups + (1 if i < size % n_groups else 0)
        picked += [by_group[group][j] for j in sorted(rng.permutation(len(by_group[group]))[:n])]
    return picked


def conditions(sizes: list[int], draws: int) -> list[tuple[int, int, int]]:
    """(size, draw, training seed): size 0 varies the training seed, larger sizes vary the draw; draw-major
    order, so a stopped run has every size of its first draws."""
    return [(0, 0, i) if size == 0 else (size, i, 0) for i in range(draws) for size in sizes]


def train_condition(word: str, size: int, draw: int, seed: int, chosen: list, args: argparse.Namespace) -> Path:
    """Train (unless already saved) one model; returns its directory."""
    out = _model_dir(args, word, size, draw, seed)
    with _training_lock(out):  # a --train-only process may be training the same model
        if not (out / "config.json").exists():
            _train(word, size, draw, seed, chosen, args, out)
    return out


def _model_dir(args: argparse.Namespace, word: str, size: int, draw: int, seed: int) -> Path:
    return Path(args.out_models) / slug(word) / f"n{size}-d{draw}-s{seed}"


@contextlib.contextmanager
def _training_lock(out: Path) -> Iterator[None]:
    """Hold out/../.<name>.lock (created exclusively); wait while a live process holds it."""
    lock = out.parent / f".{out.name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        try:
            handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            if not _holder_alive(lock):
                lock.unlink(missing_ok=True)  # left by a process that died
                continue
            time.sleep(10)
    try:
        os.write(handle, str(os.getpid()).encode())
        os.close(handle)
        yield
    finally:
        lock.unlink(missing_ok=True)


def _holder_alive(lock: Path) -> bool:
    try:
        os.kill(int(lock.read_text() or 0), 0)
        return True
    except (OSError, ValueError):
        return lock.exists() and time.time() - lock.stat().st_mtime < 5  # just created, pid not yet written


def prebuild_synth(word: str, args: argparse.Namespace) -> None:
    """With --synth-qc other than auto, build the recipe's synthetic data set (same counts, seed and QC on/off)
    with that QC transcriber before the trainer looks for it; the trainer then reuses it as it is."""
    spec = load_recipe(RECIPE, [f"wake_words=[{word}]", *args.set]).data.synth
    if args.synth_qc == "auto" or spec is None:
        return
    root = Path(spec.out) / normalize_word(word).replace(" ", "-")
    with _training_lock(root):
        if (root / "clips.jsonl").exists() and DataSet(root).clips():
            return
        staging = root.with_name(f"{root.name}.building")  # a half-built set would look finished to the trainer
        shutil.rmtree(staging, ignore_errors=True)
        settings = SynthSettings(qc_transcriber=args.synth_qc)
        counts = (spec.n_positives, spec.n_confusables, spec.n_generic)
        build_synthetic_dataset(word, staging, *counts, seed=spec.seed, qc=spec.qc, settings=settings)
        os.replace(staging, root)


def _train(word: str, size: int, draw: int, seed: int, chosen: list, args: argparse.Namespace, out: Path) -> None:
    prebuild_synth(word, args)
    overrides = [f"wake_words=[{word}]", *args.set] + ([f"train.seed={seed}"] if size == 0 else [])
    recipe = load_recipe(RECIPE, overrides)
    if size:
        corpus = import_keyword_corpus(
            data.SHARED / "keywords" / "manifest.csv", word, data.CACHE / "corpus" / slug(word)
        )
        wanted = {os.path.relpath(c.path, data.SHARED) for c in chosen}
        ids = [c.id for c in corpus.clips() if c.meta.get("original") in wanted]
        real = subset_dataset(corpus, ids, out.parent / f"real-n{size}-d{draw}")
        train = (*recipe.data.train, str(real.root))
        recipe = dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, train=train))
    train_recipe(recipe, out)
    return out


# ---- evaluation ------------------------------------------------------------------------------------------


class EvalSet:
    """One keyword's evaluation set, encoded into the cache on construction."""

    def __init__(self, word: str, protocol: data.Protocol, encoder: Detector) -> None:
        self.word, self.protocol, self.timing = word, protocol, data.Timing.of(encoder)
        clips = data.keyword_clips()[word]
        self.positives = data.test_positives(clips, protocol)
        test_groups, pool_groups = data.split_groups(clips, protocol)
        self.pool = self.train_pool(word, protocol)
        self.negatives = data.negative_clips(word, protocol)
        started = time.monotonic()
        data.encode_clips(encoder, self.positives, protocol, f"encoding {word} positives")
        data.encode_clips(encoder, self.negatives, protocol, f"encoding {word} negatives")
        self.stream_dir, self.stream_seconds = data.encode_stream(encoder, protocol)
        self.encode_seconds = time.monotonic() - started
        self.info = {
            "n_test_positives": len(self.positives),
            "n_test_groups": len(test_groups),
            "n_pool_groups": len(pool_groups),
            "n_negative_clips": len(self.negatives),
            "stream_hours": self.stream_seconds / 3600,
        }

    @staticmethod
    def train_pool(word: str, protocol: data.Protocol) -> list[data.ClipItem]:
        """The keyword's clips in train-pool session groups (real training clips are drawn from these)."""
        clips = data.keyword_clips()[word]
        pool_groups = set(data.split_groups(clips, protocol)[1])
        return [c for c in clips if c.group in pool_groups]

    def clip_logits(self, model: Detector, items: list[data.ClipItem]) -> np.ndarray:
        """Clip logits (n_clips,): the maximum over each clip's hops."""
        tracks = [
            metrics.head_logits(model, data.load_clip_frames(i, self.protocol, self.timing), self.word) for i in items
        ]
        return np.array([t.max() for t in tracks])

    def stream_logits(self, model: Detector) -> np.ndarray:
        return np.concatenate([metrics.head_logits(model, c, self.word) for c in data.stream_chunks(self.stream_dir)])

    def evaluate(self, model: Detector) -> dict:
        """Every metric of one model, from cached frames only."""
        if data.Timing.of(model) != self.timing:
            raise ValueError(f"model timing {data.Timing.of(model)} differs from the cached frames' {self.timing}")
        model.eval()
        own = metrics.OwnThreshold.of(model, self.word)
        positives = self.clip_logits(model, self.positives)
        negatives = self.clip_logits(model, self.negatives)
        clip = metrics.clip_metrics(positives, negatives, [n.kind for n in self.negatives], own)
        track = self.stream_logits(model)
        stream = metrics.stream_metrics(positives, track, model.config.hop_seconds, self.stream_seconds, own)
        return {**clip, **stream}


def run_keyword(word: str, args: argparse.Namespace, table: dict, encoder: Detector) -> None:
    evalset = EvalSet(word, args.protocol, encoder)
    table.setdefault("eval_sets", {})[word] = {**evalset.info, "encode_seconds_this_run": evalset.encode_seconds}
    done = {(r["keyword"], r["size"], r["draw"], r["seed"]) for r in table["rows"]}
    todo = conditions(args.sizes, args.draws)
    todo.sort(key=lambda c: not (_model_dir(args, word, *c) / "config.json").exists())  # trained ones first
    for size, draw, seed in todo:
        if (word, size, draw, seed) in done:
            continue
        chosen = draw_clips(evalset.pool, size, draw) if size else []
        started = time.monotonic()
        model_dir = train_condition(word, size, draw, seed, chosen, args)
        train_seconds = _train_seconds(model_dir, time.monotonic() - started)
        model = load_detector(model_dir)
        if "equality" not in table:
            table["equality"] = report.equality_check(model, evalset)
        started = time.monotonic()
        row = {"keyword": word, "size": size, "draw": draw, "seed": seed, **evalset.evaluate(model)}
        row.update(
            real_clips=[os.path.relpath(c.path, data.SHARED) for c in chosen],
            real_groups=sorted({c.group for c in chosen}),
            trainer_counts=model.config.training.get("counts", {}),
            train_seconds=train_seconds,
            eval_seconds=round(time.monotonic() - started, 1),
            model_dir=str(model_dir),
        )
        table["rows"].append(row)
        report.save(table, args.label)
        print(report.row_line(row), flush=True)


def _train_seconds(model_dir: Path, measured: float) -> float:
    """The trainer's own figure when the model was trained in an earlier run (report.json)."""
    path = model_dir / "report.json"
    if path.exists():
        return float(json.loads(path.read_text()).get("seconds", measured))
    return round(measured, 1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", required=True, help="name of this configuration (results file names)")
    parser.add_argument("--words", nargs="+", default=["jarvis", "smart mirror", "snowboy"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[0, 10, 25])
    parser.add_argument("--draws", type=int, default=3, help="draws of real-clip speakers (seeds for size 0)")
    parser.add_argument("--set", action="append", default=[], help="recipe override key=value (repeatable)")
    parser.add_argument("--out-models", default=None, help="model folder (default runs/real_world/<label>)")
    parser.add_argument("--max-other-keyword-clips", type=int, default=None, help="per other keyword (default all)")
    parser.add_argument("--n-digits", type=int, default=500, help="spoken-digit negative clips")
    parser.add_argument("--max-sentence-clips", type=int, default=None, help="test-half sentences as clips")
    parser.add_argument(
        "--synth-qc",
        default="auto",
        choices=["auto", "whisper", "pocketsphinx"],
        help="QC transcriber of the synthetic set when it is first built (auto = what the trainer does)",
    )
    parser.add_argument("--train-only", action="store_true", help="only train (last condition first), no eval")
    parser.add_argument("--stream-minutes", type=float, default=None, help="cap on the test-half stream")
    args = parser.parse_args(argv)
    args.out_models = args.out_models or str(data.REPO / "runs" / "real_world" / args.label)
    args.protocol = data.Protocol(
        n_digits=args.n_digits,
        max_other_keyword_clips=args.max_other_keyword_clips,
        max_sentence_clips=args.max_sentence_clips,
        stream_minutes=args.stream_minutes,
    )
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(2)
    os.chdir(data.REPO)  # the recipe's synthetic data folder (runs/synth) is relative to the repository
    print(f"reading real recordings from {data.SHARED} (development data, not shipped)", flush=True)
    print(f"speechocean762 mining half (never tested on): {data.write_mining_list(args.protocol)}", flush=True)
    if args.train_only:  # a second process that trains from the last condition back, while the main one encodes
        for word in args.words:
            pool = EvalSet.train_pool(word, args.protocol)
            for size, draw, seed in reversed(conditions(args.sizes, args.draws)):
                train_condition(word, size, draw, seed, draw_clips(pool, size, draw) if size else [], args)
        return
    table = report.load(args.label, asdict(args.protocol), args.set)
    table["synth_qc"] = args.synth_qc
    encoder = frozen_encoder(args.set)
    for word in args.words:
        run_keyword(word, args, table, encoder)
    report.save(table, args.label)
    print(report.summary_markdown(table), flush=True)


if __name__ == "__main__":
    main()
