"""The report: results.json, results.md, the table for the README's "Performance"
section (readme-table.md) and the chart (results.png, drawn by plot.py in a
benchmark-only venv that holds matplotlib).

Standard library only.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from cases import median
from common import BENCH, CHECKOUT, progress

BENCH_VENV = BENCH / ".venv"
MATPLOTLIB = "matplotlib"
# What the author measured for codex's updater; ours is measured in the run.
AUTHOR_CODEX_UPDATER_RSS_MB = 48.6
MEMORY_ROLES = ("keeper", "updater", "app_server")
RSS_KINDS = ("rss", "pss", "uss")


def machine_facts(worktree: bool) -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    described = subprocess.run(
        ["git", "-C", str(CHECKOUT), "describe", "--always", *(["--dirty"] if worktree else [])],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "checkout": (described or "unknown") + (" (work tree)" if worktree else " (HEAD)"),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_start": os.getloadavg(),
    }


def fmt(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"
    return f"{value:.1f} {unit}"


def met_text(met: bool | None) -> str:
    return "n/a" if met is None else ("yes" if met else "**no**")


def markdown(report: dict[str, Any]) -> str:
    facts = report["machine"]
    lines = [
        "# codexd vs codex: benchmark results",
        "",
        f"Run {report['finished']} with `{report['command']}` on {facts['cpus']} CPUs "
        f"({facts['cpu']}), Linux {facts['kernel']}, Python {facts['python']}; load average "
        f"{facts['loadavg_start'][0]:.2f} at the start, {facts['loadavg_end'][0]:.2f} at the "
        f"end. codexd release `{report['release']}` (checkout `{facts['checkout']}`) vs real "
        f"codex {report['codex_version']}; medians of alternating trials after warm-up.",
        "",
        "| case | codexd median | codex median | ratio | target | met? | ratio of minimums |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in report["rows"]:
        name = f"{row['title']}: {row['label']}"
        if row["primary"]:
            name = f"**{name}**"
        lines.append(
            f"| {name} | {fmt(row['codexd_median'], row['unit'])} | "
            f"{fmt(row['codex_median'], row['unit'])} ({row['codex_label']}) | "
            f"{row['ratio']:.2f}x | {row['target']} | {met_text(row['met'])} | "
            f"{row['ratio_of_minimums']:.2f}x |"
        )
    lines += [
        "",
        "Bold rows are codexd as a user runs it (the target is judged on them); the "
        'others are for comparison. "installed codexd" is codexd\'s release built from the '
        "source by `install.sh` and run through the front it wrote, "
        "`packages/standalone/current/codex`, with the real codex as its app-server; "
        '"venv codexd" is the dev venv\'s `codexd` on the same home. Both daemons serve the '
        "same real codex app-server binary. The last column, the ratio of the fastest "
        "trials, is a check on the medians when other work shares the machine (see the "
        "load average above).",
        "",
    ]
    lines += memory_section(report.get("memory", {}), report.get("process_titles", {}))
    if report.get("profile"):
        lines += ["## Where codexd's time goes (medians)", "", "| step | time |", "| --- | --- |"]
        for name, seconds in report["profile"].items():
            lines.append(f"| {name} | {seconds * 1000:.1f} ms |")
        lines.append("")
    if report.get("notes"):
        lines += ["## Notes", ""] + [f"- {note}" for note in report["notes"]] + [""]
    return "\n".join(lines)


def memory_section(memory: dict[str, dict[str, list[float]]], titles: dict[str, str]) -> list[str]:
    if not memory:
        return []
    lines = ["## Idle memory after `bootstrap` (MB, medians)", ""]
    lines += ["| process | RSS | PSS | USS |", "| --- | --- | --- | --- |"]
    for subject, values in memory.items():
        for role in MEMORY_ROLES:
            if f"{role}_rss" not in values:
                continue
            cells = [fmt(median(values.get(f"{role}_{kind}", [])), "MB") for kind in RSS_KINDS]
            lines.append(f"| {subject} {role.replace('_', '-')} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"The issue's author measured codex's updater at {AUTHOR_CODEX_UPDATER_RSS_MB} MB RSS.",
    ]
    if titles:
        lines += ["", "What `ps` shows for each (first trial):", ""]
        lines += [f"- {who}: `{title}`" for who, title in titles.items()]
    return [*lines, ""]


def readme_table(report: dict[str, Any]) -> str:
    """The bold rows and the information rows beside them (the interpreter floor), as
    the README's "Performance" section shows them."""
    lines = [
        f"Release `{report['release']}` (checkout `{report['machine']['checkout']}`), "
        f"`{report['command']}`, {report['machine']['cpus']} CPUs, load average "
        f"{report['machine']['loadavg_start'][0]:.1f} at the start, "
        f"{report['machine']['loadavg_end'][0]:.1f} at the end; medians of alternating trials:",
        "",
        "| case | codexd median | codex median | ratio | target | met? |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in report["rows"]:
        if not (row["primary"] or row["information"]):
            continue
        name = row["title"] if row["primary"] else f"{row['title']}: {row['label']}"
        reference = "" if row["codex_label"] == "codex" else f" ({row['codex_label']})"
        lines.append(
            f"| {name} | {fmt(row['codexd_median'], row['unit'])} | "
            f"{fmt(row['codex_median'], row['unit'])}{reference} | {row['ratio']:.2f}x | "
            f"{row['target']} | {met_text(row['met']).strip('*')} |"
        )
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out: Path, plot_python: Path | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    results_json = out / "results.json"
    results_json.write_text(json.dumps(report, indent=2) + "\n")
    (out / "results.md").write_text(markdown(report))
    (out / "readme-table.md").write_text(readme_table(report))
    if plot_python is not None:
        plot(plot_python, results_json, out / "results.png")


def plot(python: Path, results_json: Path, png: Path) -> None:
    completed = subprocess.run(
        [str(python), str(BENCH / "plot.py"), str(results_json), str(png)],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        progress(f"the chart failed: {completed.stderr.strip()[-1500:]}")


def ensure_plot_venv() -> Path | None:
    """bench/.venv with matplotlib; None (and a warning) if it cannot be made."""
    python = BENCH_VENV / "bin" / "python"
    check = [str(python), "-c", "import matplotlib"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    progress(f"creating {BENCH_VENV} with {MATPLOTLIB} (for the chart only)")
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", "--clear", str(BENCH_VENV)],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", MATPLOTLIB],
            check=True,
            capture_output=True,
        )
    except subprocess.CalledProcessError as error:
        tail = (error.stdout or b"").decode()[-800:] + (error.stderr or b"").decode()[-800:]
        progress(f"cannot install {MATPLOTLIB} into {BENCH_VENV}; no chart: {tail}")
        return None
    return python
