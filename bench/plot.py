"""Draw bench/results/results.png from results.json: one bar per codexd/codex ratio,
with each case's target as a line over its bars.

    bench/.venv/bin/python bench/plot.py RESULTS_JSON OUT_PNG

Run by `bench/run.py` with the benchmark-only venv that holds matplotlib.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main(results_json: Path, out: Path) -> None:
    report = json.loads(results_json.read_text())
    rows = report["rows"]
    figure, axes = plt.subplots(figsize=(max(10, 0.75 * len(rows)), 6.5))
    for index, row in enumerate(rows):
        ratio = row["ratio"]
        met = row["met"]
        color = "#9e9e9e" if met is None else ("#2e7d32" if met else "#c62828")
        axes.bar(
            index,
            ratio,
            color=color,
            alpha=1.0 if row["primary"] else 0.45,
            edgecolor="black" if row["primary"] else color,
        )
        axes.text(index, ratio * 1.04, f"{ratio:.2f}x", ha="center", va="bottom", fontsize=8)
        # The target as a ratio: an absolute target is divided by the reference median.
        target = row["target_ratio"]
        if row["target_absolute"] is not None:
            target = row["target_absolute"] / row["codex_median"]
        if target is not None:
            axes.hlines(target, index - 0.45, index + 0.45, colors="black", linestyles="--")
    axes.axhline(1.0, color="#555555", linewidth=0.8)
    axes.set_yscale("log")
    axes.set_xticks(range(len(rows)))
    axes.set_xticklabels(
        [f"{row['title']}\n{row['label']}" for row in rows], rotation=60, ha="right", fontsize=7
    )
    axes.set_ylabel("codexd / codex (log scale; dashed: target)")
    axes.set_title(
        f"codexd {report['release']} vs codex {report.get('codex_version', '0.169.0')} (medians; "
        "solid: as a user runs codexd, faded: comparison; green met, red not met)",
        fontsize=9,
    )
    figure.tight_layout()
    figure.savefig(out, dpi=120)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
