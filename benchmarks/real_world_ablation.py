"""Which of issue 17's measures work: the 10-clip jarvis models of several real_world.py labels, draw by draw.

Each label is one run of `benchmarks/real_world.py` with the same protocol and one measure changed (see
docs/accuracy.md for the commands); this script only reads their results files and writes
benchmarks/results/real_world/ablation.md (+ .png).

    python benchmarks/real_world_ablation.py [--out NAME] LABEL=description [LABEL=description ...]

--out NAME writes NAME.md instead of ablation.md (labels measured under another protocol go to another page).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "real_world"
METRICS = {"FRR @ 1 FA/h": lambda r: r["at_1_fah"]["frr"], "clip FRR @ 1% FAR": lambda r: r["clip_frr_at_1pct_far"],
           "clip AUC": lambda r: r["clip_roc_auc"]}  # fmt: skip


def rows_of(label: str, word: str, size: int) -> dict[int, dict]:
    """Rows of one label for `word` with `size` real clips, by draw (by training seed for size 0)."""
    table = json.loads((RESULTS / f"{label}.json").read_text())
    return {r["draw"] if size else r["seed"]: r for r in table["rows"] if r["keyword"] == word and r["size"] == size}


def cell(values: list[float], percent: bool) -> str:
    show = (lambda v: f"{100 * v:.1f}%") if percent else (lambda v: f"{v:.3f}")
    return f"{show(float(np.mean(values)))} ({', '.join(show(v) for v in values)})"


def table(labels: list[tuple[str, str]], word: str = "jarvis", size: int = 10) -> str:
    """One row per label; the first label's synthetic-only models (0 clips, 3 seeds) as the reference row."""
    lines = [f"| {word}, {size} real clips | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    reference = (labels[0][0], f"reference: no real clips, training seeds 0-2 of {labels[0][0]}", 0)
    for label, description, n_clips in [reference, *((label, text, size) for label, text in labels)]:
        rows = rows_of(label, word, n_clips)
        if not rows:
            continue
        draws = [rows[d] for d in sorted(rows)]
        cells = [cell([get(r) for r in draws], name != "clip AUC") for name, get in METRICS.items()]
        lines.append(f"| {description} (`{label}`, {len(draws)} draws) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    name = "ablation"
    if argv[:1] == ["--out"]:
        name, argv = argv[1], argv[2:]
    labels = [tuple(a.split("=", 1)) for a in argv]
    text = (
        "# Which measures work (jarvis, 10 real clips from 3 speakers, draws 0, 1, 2)\n\n"
        "Cells: mean (draw 0, draw 1, draw 2). Same protocol and evaluation set for every row "
        "(see each label's .md for it).\n\n" + table(labels) + "\n"
    )
    (RESULTS / f"{name}.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
