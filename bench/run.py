#!/usr/bin/env python3
"""Benchmark codexd against the real codex daemon (`@openai/codex@0.169.0`).

    python3 bench/run.py            # the full run, a few minutes
    python3 bench/run.py --quick    # about half the samples
    python3 bench/run.py --worktree # codexd from the work tree, uncommitted edits and all

Both daemons are measured in the same run on the same machine, alternately (the
order rotates every trial), with warm-up trials first; each case reports medians
and the codexd/codex ratio. codexd is measured as a user runs it: `sh install.sh`
from its source tree into a temporary CODEX_HOME, with
`CODEXD_CODEX_SOURCE=path:<the real codex>` so that the real codex is its app-server
(as the Quickstart's npm install makes it) and `CODEXD_BIN_DIR` a temporary directory
for the `codexd` command (never ~/.local/bin); then
`<home>/packages/standalone/current/codex app-server daemon <cmd>` (the front, which
runs codexd's release) and `codexd --version` (the installed command). The dev venv's
`codexd` (its interpreter and dependencies, the same source) is measured beside it for
comparison, and the release's interpreter doing nothing (`-I -S -c pass`) as the floor
under every codexd command. The source is the checkout's committed HEAD, exported,
unless --worktree (then its work tree's files). The real codex is invoked the same way,
from the managed install it makes for itself on its first `start`
(`<home>/packages/app-server-daemon/current/bin/codex`): the same bytes as the codex
behind codexd's front, so both daemons manage the same app-server.

The modules: `subjects.py` (what is measured), `cases.py` (the cases and their
targets, declared), `homes.py` (the temporary homes and what is installed in them),
`measure.py` (alternating trials, idle memory, digest, profile), `report.py`
(results.md, results.json, readme-table.md, the chart).

Writes `bench/results/results.{md,json,png}` and `readme-table.md`. The chart needs
matplotlib, which goes into a benchmark-only venv (`bench/.venv`), never into the
project's dependencies; the measurements themselves use only the standard library.

Every process started is ended (found by the CODEX_HOME in its environment), on
success, failure or Ctrl-C, and the temporary homes are removed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cases import (
    DIGEST_NOTE,
    FULL,
    MEMORY_NOTE,
    QUICK,
    SETUP_NOTE,
    TIMED_CASES,
    CaseResult,
    case_rows,
)
from common import RESULTS, BenchError, progress
from homes import set_up
from measure import (
    idle_memory,
    measure_digest,
    measure_timed,
    memory_results,
    profile,
)
from procs import kill_home
from report import ensure_plot_venv, machine_facts, write_report
from subjects import ensure_nothing_runs, make_subjects, venv_command


def run(args: argparse.Namespace, scratch: Path, homes: list[Path]) -> dict[str, Any]:
    sizes = QUICK if args.quick else FULL
    facts = machine_facts(args.worktree)
    installed = set_up(scratch, args.worktree, homes)
    # The dev venv's entry point; by default made to run the same source as the release.
    venv_cli = venv_command(None if args.worktree else installed.source, scratch)
    subjects = make_subjects(installed, venv_cli)

    results: list[CaseResult] = []
    notes = [SETUP_NOTE.format(version=installed.codex_version)]
    for case in TIMED_CASES:
        result, dropped = measure_timed(case, subjects, sizes.trials[case.key])
        results.append(result)
        notes += [case.note] if case.note else []
        notes += dropped
    for key in ("release", "codex"):  # one subject per home
        ensure_nothing_runs(subjects[key])

    report: dict[str, Any] = {}
    if not args.no_profile:
        running = {"installed": subjects["release"]}
        report["profile"] = profile(
            installed.release, installed.real_codex, running, sizes.profile, venv_cli
        )
        for subject in running.values():
            ensure_nothing_runs(subject)

    memory, titles = idle_memory(
        [subjects["release"], subjects["codex"]], sizes.rss_trials, sizes.rss_settle_seconds
    )
    labels = {key: subject.label for key, subject in subjects.items()}
    results += memory_results(memory, labels)
    notes.append(MEMORY_NOTE.format(settle=sizes.rss_settle_seconds))

    results.append(measure_digest(installed.release, scratch, sizes.digest))
    notes.append(DIGEST_NOTE)

    report.update(
        release=installed.release.name,
        codex_version=installed.codex_version,
        machine=facts,
        memory={labels[key]: values for key, values in memory.items()},
        process_titles=titles,
        cases=[
            {
                "key": result.key,
                "title": result.title,
                "unit": result.unit,
                "samples": result.samples,
            }
            for result in results
        ],
        rows=[row for result in results for row in case_rows(result)],
        notes=notes,
    )
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer trials (about 2 minutes)")
    parser.add_argument(
        "--worktree",
        action="store_true",
        help="build and run codexd from the checkout's work tree as it is, not its HEAD",
    )
    parser.add_argument("--no-plot", action="store_true", help="skip the chart (no bench/.venv)")
    parser.add_argument("--no-profile", action="store_true", help="skip the step profile")
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help=f"results directory (default {RESULTS})"
    )
    args = parser.parse_args()

    started = time.monotonic()
    plot_python = None if args.no_plot else ensure_plot_venv()

    # Ctrl-C and SIGTERM both unwind through the cleanup below.
    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    scratch = Path(tempfile.mkdtemp(prefix="codexd-bench."))
    homes: list[Path] = []
    try:
        report = run(args, scratch, homes)
    except BenchError as error:
        progress(f"failed: {error}")
        return 1
    except subprocess.CalledProcessError as error:
        progress(f"failed: {error}\n{error.stderr}")
        return 1
    except KeyboardInterrupt:
        progress("interrupted; cleaning up")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the cleanup finish
        for home in homes:
            kill_home(home)
        shutil.rmtree(scratch, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    report["machine"]["loadavg_end"] = os.getloadavg()
    report["finished"] = time.strftime("%Y-%m-%d %H:%M %Z")
    options = [*(["--quick"] if args.quick else []), *(["--worktree"] if args.worktree else [])]
    report["command"] = " ".join(["python3 bench/run.py", *options])
    report["elapsed_seconds"] = time.monotonic() - started
    write_report(report, args.out, plot_python)
    progress(f"done in {report['elapsed_seconds']:.0f} s; results in {args.out}")
    print((args.out / "results.md").read_text())
    print("## For the README\n")
    print((args.out / "readme-table.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
