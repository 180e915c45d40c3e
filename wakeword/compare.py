"""The comparison experiment: when does transfer learning win?

Every configuration (family / freeze strategy, each a recipe) is trained at growing numbers of real
training clips, always plus the same synthetic data, and evaluated on real clips from session groups
that no training set contains: FRR at a fixed false-accept rate on long negative speech. Writes a JSON
table and a learning-curve PNG (FRR vs number of real clips, one line per configuration).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from wakeword.audio import SAMPLE_RATE, load_audio
from wakeword.checkpoint import load_detector
from wakeword.data.clips import Clip, DataSet, _atomic_write_text, normalize_word
from wakeword.data.dataset import split_by_group
from wakeword.evaluate import NoiseMixer, audio_files, score_items
from wakeword.metrics import false_accepts_per_hour, false_reject_rate, roc_auc, threshold_for_fa_per_hour
from wakeword.models.base import Detector
from wakeword.recipes import REQUIRED, RecipeError, _help, build_dataclass, load_recipe
from wakeword.scoring import score_signals


@dataclass(frozen=True)
class Contender:
    label: str = _help("name in the table and the plot", REQUIRED)
    recipe: str = _help("recipe file of this configuration", REQUIRED)
    set: tuple[str, ...] = _help("recipe overrides, key=value", ())
    sizes: tuple[int, ...] | None = _help("real-clip counts for this one (default: compare.sizes)", None)


@dataclass(frozen=True)
class CompareSpec:
    name: str = _help("experiment name", REQUIRED)
    wake_word: str = _help("the wake word", REQUIRED)
    real: str = _help(
        "data set of real recordings with session groups (meta.session_group), or a keyword manifest CSV "
        "(path, keyword, session_group) that is imported into OUT/real-corpus",
        REQUIRED,
    )
    contenders: tuple[Contender, ...] = _help("configurations to train and compare", REQUIRED)
    sizes: tuple[int, ...] = _help("numbers of real training clips; -1 means all", (0, 5, 10, 25, 50, 100, -1))
    test_fraction: float = _help("share of session groups held out for testing", 0.5)
    negatives: tuple[str, ...] = _help("folders of long negative speech for FA/h", REQUIRED)
    negative_minutes: float = _help("use this many minutes of the negative speech", 30.0)
    noise: str | None = _help("folder of noise mixed into test positives", None)
    snr_db: float | None = _help("SNR of that noise (active speech level)", 10.0)
    target_fa_per_hour: float = _help("FRR is read at the threshold giving this FA/h on the negatives", 1.0)
    seed: int = _help("seed of splits and subsets", 0)
    max_test_positives: int | None = _help("test on at most this many held-out positives (time)", None)
    out: str = _help("folder for models, table and plot", REQUIRED)


def on_shared_data(spec: CompareSpec, shared: str | Path, out: str | Path, **changes: Any) -> CompareSpec:
    """`spec` reading the shared development data laid out as ../shared/data (keywords/manifest.csv,
    speech/speechocean762, noise), writing to `out`; `changes` replace any other field."""
    shared = Path(shared)
    return dataclasses.replace(
        spec,
        real=str(shared / "keywords" / "manifest.csv"),
        negatives=(str(shared / "speech" / "speechocean762"),),
        noise=str(shared / "noise"),
        out=str(out),
        **changes,
    )


def load_compare(path: str | Path, overrides: tuple[str, ...] = ()) -> CompareSpec:
    from wakeword.recipes import apply_overrides

    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    data = apply_overrides(data, overrides)
    if not isinstance(data.get("compare"), dict):
        raise RecipeError(f"{path}: a comparison recipe needs a 'compare' section")
    items = data["compare"].get("contenders") or []
    try:
        contenders = tuple(build_dataclass(Contender, c, "compare.contenders.") for c in items)
        return build_dataclass(CompareSpec, {**data["compare"], "contenders": contenders}, "compare.")
    except (RecipeError, TypeError) as error:
        raise RecipeError(f"{path}: {error}") from None


def import_keyword_corpus(manifest: str | Path, word: str, out: str | Path) -> DataSet:
    """Real recordings listed in a CSV (path, keyword, session_group) as a data set of `word` positives."""
    manifest, out = Path(manifest), Path(out)
    if (out / "clips.jsonl").exists() and DataSet(out).clips():
        return DataSet(out)
    dataset, base = DataSet.create(out), manifest.parent.parent
    with open(manifest, encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if normalize_word(r["keyword"]) == word]
    clips = []
    with dataset.writing() as writer:
        for row in rows:
            path = base / row["path"] if not (manifest.parent / row["path"]).exists() else manifest.parent / row["path"]
            clips.append(
                writer.make_clip(
                    load_audio(path),
                    {word: 1},
                    "corpus",
                    speaker=row["session_group"],
                    meta={"session_group": row["session_group"], "original": row["path"]},
                )
            )
        dataset.add_clips(clips)
    return dataset


def subset_dataset(src: DataSet, clip_ids: list[str], out: Path) -> DataSet:
    """A data set holding some of `src`'s clips; audio is hard-linked, not copied."""
    dst = DataSet.create(out)
    wanted = set(clip_ids)
    chosen = [c for c in src.clips() if c.id in wanted]
    for clip in chosen:
        target = dst.root / clip.path
        if not target.exists():
            os.link(src.audio_path(clip), target)
    _atomic_write_text(dst.manifest_path, "".join(json.dumps(c.to_dict()) + "\n" for c in chosen))
    return dst


@dataclass
class TestSet:
    positives: list[Any]  # Scored-ready items: (audio file, labels)
    negative_files: list[Path]
    negative_seconds: float


def build_test_set(spec: CompareSpec, test_clips: list, root: Path) -> TestSet:
    word = normalize_word(spec.wake_word)
    positives = [(root / c.path, {word: 1}) for c in test_clips]
    files, seconds = [], 0.0
    for folder in spec.negatives:
        for path in audio_files(folder):
            if seconds >= spec.negative_minutes * 60:
                break
            files.append(path)
            seconds += len(load_audio(path)) / SAMPLE_RATE
    if not files:
        raise ValueError(f"no negative audio in {spec.negatives}")
    return TestSet(positives, files, seconds)


def evaluate_on(detector: Detector, spec: CompareSpec, test: TestSet) -> dict[str, float]:
    """FRR at the threshold meeting spec.target_fa_per_hour on the negative speech, plus AUC and FA/h."""
    word = normalize_word(spec.wake_word)
    k = detector.config.wake_words.index(word)
    mixer = (
        NoiseMixer(spec.snr_db, audio_files(spec.noise), spec.seed) if spec.noise and spec.snr_db is not None else None
    )
    positives = [float(s.track[:, k].max()) for s in score_items(detector, test.positives, mixer, "test positives")]
    files = (load_audio(p) for p in test.negative_files)  # one file in memory at a time
    negatives = [track[:, k] for track in score_signals(detector, files)]
    hop = detector.config.hop_seconds
    threshold = threshold_for_fa_per_hour(negatives, spec.target_fa_per_hour, hop, 1.0, test.negative_seconds)
    negative_clip_scores = np.array([float(t.max()) for t in negatives])
    clip_threshold = float(np.quantile(negative_clip_scores, 0.99, method="higher"))  # <= 1% of clips accepted
    return {
        "frr_at_1pct_far": float(np.mean(np.array(positives) <= clip_threshold)),
        "threshold": threshold,
        "frr": false_reject_rate(positives, threshold),
        "fa_per_hour": false_accepts_per_hour(negatives, threshold, hop, 1.0, test.negative_seconds),
        "roc_auc": roc_auc(positives, [float(t.max()) for t in negatives]),
        "n_test_positives": len(positives),
        "negative_hours": test.negative_seconds / 3600,
    }


def _train_contender(contender: Contender, spec: CompareSpec, real_dir: Path, model_dir: Path) -> Detector:
    from wakeword.pipeline import train_recipe

    overrides = (*contender.set, f"wake_words=[{normalize_word(spec.wake_word)}]")
    recipe = load_recipe(contender.recipe, overrides)
    recipe = dataclasses.replace(
        recipe, data=dataclasses.replace(recipe.data, train=(*recipe.data.train, str(real_dir)))
    )
    if not (model_dir / "config.json").exists():
        train_recipe(recipe, model_dir)
    return load_detector(model_dir)


def _real_dataset(spec: CompareSpec, out: Path) -> DataSet:
    if spec.real.endswith(".csv"):
        return import_keyword_corpus(spec.real, normalize_word(spec.wake_word), out / "real-corpus")
    return DataSet(spec.real)


def held_out_split(spec: CompareSpec, real: DataSet) -> tuple[list[Clip], list[Clip]]:
    """(training pool in a seeded order, test clips): no session group on both sides. Subsets of the
    pool are its first n clips, so they are nested (size 10 contains size 5)."""
    pool, test_clips = split_by_group(real.clips(), spec.test_fraction, seed=spec.seed)
    if spec.max_test_positives is not None:
        keep = np.random.default_rng(spec.seed).permutation(len(test_clips))[: spec.max_test_positives]
        test_clips = [test_clips[i] for i in sorted(keep)]
    order = np.random.default_rng(spec.seed).permutation(len(pool))
    return [pool[i] for i in order], test_clips


def run_compare(spec: CompareSpec) -> dict[str, Any]:
    """Train and evaluate every contender at every size; results are written after each row (resumable)."""
    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    real = _real_dataset(spec, out)
    pool, test_clips = held_out_split(spec, real)
    test = build_test_set(spec, test_clips, real.root)
    order = [c.id for c in pool]
    table_path = out / "compare.json"
    table = json.loads(table_path.read_text()) if table_path.exists() else {"rows": []}
    done = {(r["label"], r["n_real"]) for r in table["rows"]}
    for contender in spec.contenders:
        for size in contender.sizes or spec.sizes:
            n_real = len(order) if size < 0 else min(size, len(order))
            if (contender.label, n_real) in done:
                continue
            subset = subset_dataset(real, order[:n_real], out / "real" / f"n{n_real}")
            detector = _train_contender(contender, spec, subset.root, out / "models" / contender.label / f"n{n_real}")
            row = {
                "label": contender.label,
                "family": detector.config.family,
                "n_real": n_real,
                **evaluate_on(detector, spec, test),
            }
            table["rows"].append(row)
            done.add((contender.label, n_real))
            table.update(
                spec=_spec_dict(spec),
                n_pool=len(pool),
                n_test_positives=len(test_clips),
                n_test_groups=len({c.meta.get("session_group") for c in test_clips}),
            )
            _atomic_write_text(table_path, json.dumps(table, indent=2))
            print(
                f"{contender.label} n_real={n_real}: FRR {row['frr']:.1%} at {row['fa_per_hour']:.2f} FA/h, "
                f"AUC {row['roc_auc']:.3f}",
                flush=True,
            )
    plot_learning_curves(table["rows"], out / "learning_curve.png", spec)
    return table


def _spec_dict(spec: CompareSpec) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(spec), default=str))


def plot_learning_curves(rows: list[dict[str, Any]], path: Path, spec: CompareSpec) -> Path:
    """FRR against the number of real training clips, one line per configuration: at the target FA/h on
    the long negative speech (left) and at 1% false accepts on the negative sentences as clips (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    metrics = (("frr", f"FRR (%) at {spec.target_fa_per_hour:g} FA/h"), ("frr_at_1pct_far", "FRR (%) at 1% clip FAR"))
    for ax, (key, label) in zip(axes, metrics, strict=True):
        for name in dict.fromkeys(r["label"] for r in rows):
            points = sorted((r["n_real"], r[key] * 100) for r in rows if r["label"] == name)
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", label=name)
        ax.set_xscale("symlog", linthresh=10)  # 0 real clips sits on the linear part
        ax.set_xlabel("real training clips (plus the same synthetic data)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"{spec.name}: '{spec.wake_word}', held-out sessions, {spec.snr_db} dB SNR")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
