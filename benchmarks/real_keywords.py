"""Benchmark on REAL recordings (../shared/data, not shipped, not used by tests).

For each keyword (jarvis, smart mirror, snowboy) the session groups are split in half: test sessions are
never trained on. Detectors are trained from synthetic speech only (n_real=0) and with 10 real clips from the
training sessions added; families and freeze strategies as listed below. Test positives are mixed with the
shared background noise at 10 dB SNR (active speech); false accepts are counted on read English sentences
(speechocean762), and FRR is read at the threshold that gives 1 FA/h there. Also reported: ROC AUC and FRR at
1% false-accept rate on the negative sentences taken as clips (the clip-level protocol of ../shared/PEERS.md).

    python benchmarks/real_keywords.py [--words jarvis] [--negative-minutes 10] [--max-test 120]
Results: benchmarks/results/real_keywords.json and .md, models and per-keyword tables under runs/bench/.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from wakeword.compare import CompareSpec, Contender, import_keyword_corpus, run_compare

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WAKEWORD_SHARED_DATA", REPO.parent / "shared" / "data"))
RESULTS = REPO / "benchmarks" / "results"
CONTENDERS = {  # keyword -> [(label, recipe, sizes)]
    "jarvis": [
        ("transfer-head", "transfer-head.yaml", (0, 10)),
        ("e2e", "e2e.yaml", (0, 10)),
        ("phoneme", "phoneme.yaml", (0,)),
        ("transfer-top2", "transfer-top2.yaml", (10,)),
    ],
    "smart mirror": [("transfer-head", "transfer-head.yaml", (0, 10))],
    "snowboy": [("transfer-head", "transfer-head.yaml", (0, 10))],
}


def run_keyword(word: str, args: argparse.Namespace) -> dict:
    slug = word.replace(" ", "-")
    real = import_keyword_corpus(SHARED / "keywords" / "manifest.csv", word, REPO / "runs" / "shared" / slug)
    contenders = tuple(
        Contender(label, str(REPO / "recipes" / recipe), (f"data.synth.out={REPO / 'runs' / 'synth'}",), sizes)
        for label, recipe, sizes in CONTENDERS[word]
        if args.only is None or label in args.only
    )
    spec = CompareSpec(
        name=f"bench-{slug}",
        wake_word=word,
        real=str(real.root),
        contenders=contenders,
        sizes=(0, 10),
        test_fraction=0.5,
        negatives=(str(SHARED / "speech" / "speechocean762"),),
        negative_minutes=args.negative_minutes,
        noise=str(SHARED / "noise"),
        snr_db=10.0,
        target_fa_per_hour=1.0,
        seed=0,
        out=str(REPO / "runs" / "bench" / slug),
        max_test_positives=args.max_test,
    )
    return run_compare(spec)


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
    parser.add_argument("--words", nargs="*", default=list(CONTENDERS))
    parser.add_argument("--only", nargs="*", default=None, help="only these contender labels")
    parser.add_argument("--negative-minutes", type=float, default=10.0)
    parser.add_argument("--max-test", type=int, default=120, help="at most this many test positives per keyword")
    args = parser.parse_args()
    print(f"reading real recordings from {SHARED} (development data, not shipped)")
    started, tables = time.monotonic(), {}
    previous = RESULTS / "real_keywords.json"
    if previous.exists():
        tables = json.loads(previous.read_text())
    for word in args.words:
        tables[word] = run_keyword(word, args)
        write_tables(tables)
    print(f"done in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
