"""Two trainer configurations side by side on the real-world benchmark, every keyword, size and draw.

Reads results files of `benchmarks/real_world.py` (nothing is trained or scored here). A configuration is one
label, or several labels joined by "+" whose rows together cover the sizes (e.g. a label that evaluated the
synthetic-only models and one that evaluated the 10- and 25-clip models under the same protocol). Labels made
under different protocols are refused. Writes benchmarks/results/real_world/<out>.md and .png.

    python benchmarks/real_world_compare.py --out heads "one head=single-full-n0+single-full" "three heads=ensemble3"
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, when run as a script

import real_world_report as report

RESULTS = report.RESULTS
METRICS = (
    ("FRR @ 1 FA/h", ("at_1_fah", "frr"), True),
    ("clip FRR @ 1% FAR", ("clip_frr_at_1pct_far",), True),
    ("clip ROC AUC", ("clip_roc_auc",), False),
    ("FRR @ own thr", ("at_own", "frr"), True),
)


def pooled_rows(labels: str) -> tuple[list[dict], dict]:
    """The rows of "label[+label...]" and their common protocol."""
    tables = [json.loads((RESULTS / f"{label}.json").read_text()) for label in labels.split("+")]
    protocols = {json.dumps(t["protocol"], sort_keys=True) for t in tables}
    if len(protocols) != 1:
        raise SystemExit(f"{labels}: the labels were measured under different protocols {sorted(protocols)}")
    return [r for t in tables for r in t["rows"]], tables[0]["protocol"]


def by_draw(rows: list[dict], word: str, size: int) -> dict[int, dict]:
    """Rows of `word` with `size` real clips by draw (by training seed for the synthetic-only models)."""
    return {r["draw"] if size else r["seed"]: r for r in rows if r["keyword"] == word and r["size"] == size}


def cell(rows: dict[int, dict], keys: tuple[str, ...], percent: bool) -> str:
    if not rows:
        return "–"
    show = (lambda v: f"{100 * v:.1f}%") if percent else (lambda v: f"{v:.3f}")
    values = [report._get(rows[d], keys) for d in sorted(rows)]
    return f"{show(float(np.mean(values)))} ({', '.join(show(v) for v in values)})"


def comparison(configs: list[tuple[str, list[dict]]]) -> list[str]:
    """Markdown lines: per keyword and size, one row per configuration; cells mean (draw 0, 1, 2)."""
    keys = dict.fromkeys((r["keyword"], r["size"]) for _, rows in configs for r in rows)
    lines = ["| keyword | real clips | configuration | " + " | ".join(m for m, _, _ in METRICS) + " |"]
    lines.append("|---|---|---|" + "---|" * len(METRICS))
    for word, size in sorted(keys, key=lambda k: (k[0], k[1])):
        for name, rows in configs:
            draws = by_draw(rows, word, size)
            cells = [cell(draws, keys_, pct) for _, keys_, pct in METRICS]
            lines.append(f"| {word} | {size} | {name} | " + " | ".join(cells) + " |")
    return lines


def plot(configs: list[tuple[str, list[dict]]], path: Path) -> None:
    """FRR at 1 FA/h per keyword and size, one marker per draw, a bar at the mean, per configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    words = list(dict.fromkeys(r["keyword"] for _, rows in configs for r in rows))
    fig, axes = plt.subplots(1, len(words), figsize=(4.5 * len(words), 3.8), sharey=True, squeeze=False)
    width = 0.8 / len(configs)
    for ax, word in zip(axes[0], words, strict=True):
        sizes = sorted({r["size"] for _, rows in configs for r in rows if r["keyword"] == word})
        for k, (name, rows) in enumerate(configs):
            for i, size in enumerate(sizes):
                values = [100 * report._get(r, ("at_1_fah", "frr")) for r in by_draw(rows, word, size).values()]
                x = i + (k - (len(configs) - 1) / 2) * width
                if values:
                    ax.bar(x, np.mean(values), width, color=f"C{k}", alpha=0.5, label=name if i == 0 else None)
                    ax.plot([x] * len(values), values, "o", color=f"C{k}", ms=4)
        ax.set_xticks(range(len(sizes)), [f"{s} clips" for s in sizes])
        ax.set_title(word)
    axes[0][0].set_ylabel("FRR at 1 FA/h (%)")
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="results name (benchmarks/results/real_world/<out>.md)")
    parser.add_argument("configs", nargs="+", help='"name=label[+label...]"')
    args = parser.parse_args(argv)
    configs, protocols = [], set()
    for spec in args.configs:
        name, labels = spec.split("=", 1)
        rows, protocol = pooled_rows(labels)
        configs.append((name, rows))
        protocols.add(json.dumps(protocol, sort_keys=True))
    if len(protocols) != 1:
        raise SystemExit(f"the configurations were measured under different protocols {sorted(protocols)}")
    lines = [f"# Real-world benchmark: {' vs '.join(n for n, _ in configs)}", ""]
    lines += [f"Protocol {protocols.pop()}. Labels: " + "; ".join(args.configs) + ".", ""]
    lines += comparison(configs)
    lines += ["", "Cells: mean (then each draw in order: draw 0, 1, ...; 0 real clips: training seeds 0, 1, ...).", ""]
    for name, rows in configs:
        lines += [f"Targets, {name}:", *report.targets(rows)[2:], ""]
    text = "\n".join(lines) + "\n"
    report._atomic(RESULTS / f"{args.out}.md", text)
    plot(configs, RESULTS / f"{args.out}.png")
    print(text)


if __name__ == "__main__":
    main()
