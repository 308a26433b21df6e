"""The cases, as a declarative list: what each runs, on which subjects, against which
target, and which row is codexd as a user runs it (bold: the target is judged on it).
Then the pure part of the results: medians, ratios, met or not.

Standard library only.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from subjects import (
    CONCURRENT_STARTS,
    Subject,
    concurrent_starts,
    ensure_nothing_runs,
    ensure_running,
    run_command,
    run_version,
)

DIGEST_BYTES = 300 * 1000 * 1000
KEEPER_RSS_TARGET_MB = 15.0


@dataclass(frozen=True)
class Sizes:
    """Warm-up and measured trials, by timed case key and for the other measurements."""

    trials: Mapping[str, tuple[int, int]]
    rss_trials: int
    rss_settle_seconds: float
    digest: tuple[int, int]
    profile: int


FULL = Sizes(
    {
        "version": (3, 15),
        "start_running": (3, 15),
        "version_flag": (3, 15),
        "restart": (2, 9),
        "stop": (1, 9),
        "start20": (1, 5),
    },
    rss_trials=3,
    rss_settle_seconds=5.0,
    digest=(1, 7),
    profile=7,
)
QUICK = Sizes(
    {
        "version": (2, 5),
        "start_running": (2, 5),
        "version_flag": (2, 5),
        "restart": (1, 3),
        "stop": (1, 3),
        "start20": (1, 2),
    },
    rss_trials=2,
    rss_settle_seconds=2.0,
    digest=(1, 3),
    profile=3,
)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def minimum(values: list[float]) -> float:
    return min(values) if values else math.nan


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


@dataclass(frozen=True)
class Target:
    text: str  # for the table
    ratio: float | None = None  # codexd/codex median at most this
    at_most: float | None = None  # codexd median at most this, in the case's unit

    @property
    def judged(self) -> bool:
        return self.ratio is not None or self.at_most is not None

    def met(self, codexd: float, codex: float) -> bool | None:
        if self.at_most is not None:
            return codexd <= self.at_most
        if self.ratio is not None:
            return ratio(codexd, codex) <= self.ratio
        return None


NO_TARGET = Target("none (information)")

SETUP_NOTE = (
    "codexd is installed as a user installs it: `sh install.sh` from the source tree into "
    "a temporary CODEX_HOME, with `CODEXD_CODEX_SOURCE=path:<the real codex {version}>` "
    "(so the real codex is its app-server, as with the Quickstart's npm) and "
    "`CODEXD_BIN_DIR` a temporary directory for the `codexd` command. Its lifecycle rows "
    "run the front, `<home>/packages/standalone/current/codex app-server daemon <cmd>`, "
    "which execs `<python> -I -S <home>/packages/codexd/<release>/__main__.py app-server "
    "daemon <cmd>`; "
    "codex's run `<home>/packages/app-server-daemon/current/bin/codex app-server daemon "
    "<cmd>`, the managed install codex made for itself on its first `start`. Both homes' "
    "app-servers are the same real codex binary (compared byte for byte at setup), so only "
    "the daemons differ."
)

Trial = Callable[[Subject], float]
Step = Callable[[Subject], None]


def lifecycle(command: str, expect: str) -> Trial:
    """A trial that times `app-server daemon <command>`, which must answer `expect`."""

    def trial(subject: Subject) -> float:
        return run_command(subject, command, expect)[0]

    return trial


@dataclass(frozen=True)
class TimedCase:
    """Each trial runs `trial` once per subject, the order rotating; the warm-up and
    measured trials come from `Sizes.trials[key]`."""

    key: str
    title: str
    subjects: tuple[str, ...]  # the last is the reference the ratios are taken to
    bold: str
    trial: Trial
    target: Target
    setup: Step | None = None  # before each trial of a subject, not timed
    before: Step | None = None  # once per subject, before the first trial
    after: Step | None = None  # once per subject, after the last trial
    information: tuple[str, ...] = ()  # subjects shown without a target
    labels: Mapping[str, str] = field(default_factory=dict)  # instead of the subject's
    note: str = ""


TIMED_CASES = (
    TimedCase(
        "version",
        "version (running)",
        ("release", "venv", "codex"),
        "release",
        lifecycle("version", "running"),
        Target("<= 1.5x", ratio=1.5),
        before=ensure_running,
        note="version, start (already running): the app-server is started once, then each "
        "trial runs the command once per subject.",
    ),
    TimedCase(
        "start_running",
        "start (already running)",
        ("release", "venv", "codex"),
        "release",
        lifecycle("start", "alreadyRunning"),
        Target("<= 1.5x", ratio=1.5),
        before=ensure_running,
    ),
    TimedCase(
        "version_flag",
        "--version",
        ("release", "venv", "floor", "codex"),
        "release",
        run_version,
        Target("<= 2.0x", ratio=2.0),
        information=("floor",),
        labels={
            "release": "installed `codexd` command",
            "venv": "venv `codexd`",
            "codex": "codex",
        },
        note="--version: `codexd --version` as a user runs it (the `codexd` command install.sh "
        "wrote, which sources the release's `current/codexd` launcher) vs `codex --version` "
        "(codex's managed binary); the interpreter floor is the release's python doing nothing "
        "(`-I -S -c pass`), the least any codexd command can take.",
    ),
    TimedCase(
        "restart",
        "restart",
        ("release", "venv", "codex"),
        "release",
        lifecycle("restart", "restarted"),
        Target("<= 1.0x", ratio=1.0),
        before=ensure_running,
        note="restart: both daemons restart the same real codex app-server (see the first "
        "note); codex launches it with `--analytics-default-enabled --managed-daemon`, "
        "codexd (its keeper) with `app-server --listen unix://` through the front.",
    ),
    TimedCase(
        "stop",
        "stop (running)",
        ("release", "venv", "codex"),
        "release",
        lifecycle("stop", "stopped"),
        Target("<= 1.0x", ratio=1.0),
        setup=ensure_running,
        note="stop: each trial starts the app-server first (not timed), then times `stop`; "
        "the grace window is the default (CODEXD_STOP_GRACE_SECONDS unset).",
    ),
    TimedCase(
        "start20",
        f"{CONCURRENT_STARTS} concurrent starts (from nothing)",
        ("release", "venv", "codex"),
        "release",
        concurrent_starts,
        Target("<= 1.0x", ratio=1.0),
        setup=ensure_nothing_runs,
        after=ensure_nothing_runs,
        note=f"{CONCURRENT_STARTS} concurrent starts: before each trial nothing of the home "
        "runs (no app-server and no updater: codex's `start` also launches its updater, "
        "codexd's does not); all are launched at once and timed until the last returns; "
        "exactly one must answer `started`, the others `alreadyRunning`.",
    ),
)


@dataclass(frozen=True)
class MemoryCase:
    """Idle memory after `bootstrap`: the RSS of codexd's `roles` together, per trial,
    against codex's `codex_roles` together."""

    key: str
    title: str
    roles: tuple[str, ...]
    codex_roles: tuple[str, ...]
    target: Target


MEMORY_CASES = (
    MemoryCase(
        "keeper_rss",
        "keeper idle RSS",
        ("keeper",),
        ("updater",),
        Target(f"<= {KEEPER_RSS_TARGET_MB:g} MB", at_most=KEEPER_RSS_TARGET_MB),
    ),
    MemoryCase(
        "updater_rss",
        "updater idle RSS",
        ("updater",),
        ("updater",),
        Target("<= codex's updater", ratio=1.0),
    ),
    MemoryCase(
        "keeper_updater_rss",
        "keeper + updater idle RSS",
        ("keeper", "updater"),
        ("updater",),
        Target("<= 0.6x codex's updater", ratio=0.6),
    ),
    MemoryCase(
        "app_server_rss", "app-server idle RSS", ("app_server",), ("app_server",), NO_TARGET
    ),
)
MEMORY_NOTE = (
    "idle memory: `bootstrap`, then {settle:g} s idle, then VmRSS (and PSS/USS from "
    "smaps_rollup) of the pids in the pid records: codexd's keeper (`app-server.pid`, "
    "`pid`), its app-server (`appServerPid`) and its updater (`app-server-updater.pid`); "
    "codex's app-server (`daemon.pid`) and updater (`daemon-updater.pid`). codex has no "
    "keeper: the keeper rows compare with codex's updater, its only other resident process."
)

DIGEST_TARGET = Target("<= 0.5 s", at_most=0.5)
DIGEST_LABELS = {
    "file_digest": "supervisor.digest.file_digest (in-process)",
    "file_digest+process": "the same, with interpreter start (release python)",
    "sha256sum": "sha256sum",
}
DIGEST_NOTE = (
    "digest: a 300,000,000-byte file of random bytes, page-cached; codexd's `file_digest` "
    "is timed inside the release's interpreter (what a launch pays), `sha256sum` as a "
    "whole process."
)


# -- results: pure ---------------------------------------------------------------------


@dataclass(frozen=True)
class CaseResult:
    key: str
    title: str
    unit: str  # "s" or "MB"
    target: Target
    samples: Mapping[str, list[float]]  # by subject key, the reference's included
    labels: Mapping[str, str]
    bold: str  # "" when no row is judged
    reference: str = "codex"
    information: tuple[str, ...] = ()


def case_rows(result: CaseResult) -> list[dict[str, Any]]:
    """One row per subject but the reference, the bold one first."""
    rows = []
    reference = result.samples[result.reference]
    codex_median = median(reference)
    for key, values in result.samples.items():
        if key == result.reference:
            continue
        codexd_median = median(values)
        target = NO_TARGET if key in result.information else result.target
        rows.append(
            {
                "case": result.key,
                "title": result.title,
                "subject": key,
                "label": result.labels[key],
                "primary": key == result.bold,
                # Shown beside the bold row, without a target (the interpreter floor).
                "information": key in result.information,
                "unit": result.unit,
                "codexd_median": codexd_median,
                "codex_median": codex_median,
                "codex_label": result.labels[result.reference],
                "ratio": ratio(codexd_median, codex_median),
                # Minimums: the least disturbed trial, a check on medians when other
                # work shares the machine.
                "codexd_min": minimum(values),
                "codex_min": minimum(reference),
                "ratio_of_minimums": ratio(minimum(values), minimum(reference)),
                "target": target.text,
                "target_ratio": target.ratio,
                "target_absolute": target.at_most,
                "met": target.met(codexd_median, codex_median),
                "n": len(values),
                "codex_n": len(reference),
            }
        )
    rows.sort(key=lambda row: not row["primary"])
    return rows
