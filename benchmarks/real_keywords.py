"""Benchmark on REAL recordings (../shared/data, not shipped, not used by tests).

One protocol for every keyword: recipes/compare.yaml (the `wakeword compare` experiment). Session groups are
split in half and test sessions are never trained on; 120 held-out positives are mixed with the shared
background noise at 10 dB SNR; false accepts are counted on 10 minutes of read English sentences
(speechocean762) and FRR is read at the threshold that gives 1 FA/h there. Also reported: ROC AUC and FRR at
1% false-accept rate on the negative sentences taken as clips (the clip-level protocol of ../shared/PEERS.md).

jarvis runs every contender of recipes/compare.yaml (the learning curve, freeze strategies and baselines);
"smart mirror" and "snowboy" run the head-only transfer model from synthetic data only and with 10 real clips.

    python benchmarks/real_keywords.py [--words jarvis "smart mirror" snowboy] [--only transfer-head]
Results: benchmarks/results/real_keywords.json and .md; models, compare.json and learning_curve.png under
runs/compare-<keyword>/ (a rerun skips finished rows).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import time
from pathlib import Path

from wakeword.compare import load_compare, on_shared_data, run_compare

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WAKEWORD_SHARED_DATA", REPO.parent / "shared" / "data"))
RESULTS = REPO / "benchmarks" / "results"
OTHER_WORDS = {"smart mirror": ("transfer-head",), "snowboy": ("transfer-head",)}  # sizes 0 and 10


def run_keyword(word: str, args: argparse.Namespace) -> dict:
    slug = word.replace(" ", "-")
    spec = load_compare(REPO / "recipes" / "compare.yaml")
    spec = on_shared_data(spec, SHARED, REPO / "runs" / f"compare-{slug}", name=f"compare-{slug}", wake_word=word)
    keep = OTHER_WORDS.get(word)
    contenders = tuple(
        dataclasses.replace(c, recipe=str(REPO / c.recipe), sizes=(0, 10) if keep else c.sizes)
        for c in spec.contenders
        if (keep is None or c.label in keep) and (args.only is None or c.label in args.only)
    )
    return run_compare(dataclasses.replace(spec, contenders=contenders))


def write_tables(tables: dict[str, dict]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "real_keywords.json").write_text(json.dumps(tables, indent=2))
    lines = [
        "| keyword | model | real clips | FRR @ 1 FA/h | FA/h | FRR @ 1% clip FAR | ROC AUC | test positives |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for word, table in tables.items():
        for r in table["rows"]:
            lines.append(
                f"| {word} | {r['label']} | {r['n_real']} | {r['frr']:.1%} | {r['fa_per_hour']:.2f} | "
                f"{r['frr_at_1pct_far']:.1%} | {r['roc_auc']:.3f} | {r['n_test_positives']} |"
            )
    (RESULTS / "real_keywords.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--words", nargs="*", default=["jarvis", *OTHER_WORDS])
    parser.add_argument("--only", nargs="*", default=None, help="only these contender labels")
    args = parser.parse_args()
    print(f"reading real recordings from {SHARED} (development data, not shipped)")
    started, tables = time.monotonic(), {}
    previous = RESULTS / "real_keywords.json"
    if previous.exists():
        tables = json.loads(previous.read_text())
    for word in args.words:
        tables[word] = run_keyword(word, args)
        write_tables(tables)
        slug = word.replace(" ", "-")
        shutil.copyfile(
            REPO / "runs" / f"compare-{slug}" / "learning_curve.png", RESULTS / f"learning_curve_{slug}.png"
        )
    print(f"done in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
