"""`codexd doctor`'s judgements of the updater (running or turned off, its last pass,
its next) and of where updates come from: a table per check."""

from __future__ import annotations

import datetime
from dataclasses import replace
from typing import Any

import pytest

from supervisor.decisions import WorkerState
from supervisor.doctor_app_checks import check_sources, check_updater
from supervisor.doctor_checks import CheckStatus
from supervisor.doctor_facts import SourceFacts
from supervisor.installer import source_problem
from supervisor.standalone import ReleaseSource
from supervisor.status_report import UpdaterSection, WorkerSection
from supervisor.update_pass import InstallerResult, PassRecord, RefreshOutcome, Trigger
from tests.test_doctor_app_checks import NOW, ago, record
from tests.test_doctor_checks import judged

OK, WARNING, FAIL = CheckStatus.OK, CheckStatus.WARNING, CheckStatus.FAIL

UPDATER_RECORD = record(None, child=None, pid=50)


def updater(
    state: WorkerState = WorkerState.RUNNING,
    last: dict[str, Any] | None = None,
    next_in: float | None = 1800,
) -> UpdaterSection:
    worker = WorkerSection(state, UPDATER_RECORD if state is WorkerState.RUNNING else None)
    last_pass = None
    if last is not None:
        base = PassRecord(
            3,
            ago(700),
            Trigger.SCHEDULE,
            InstallerResult.OK,
            app_server=RefreshOutcome.ALREADY_CURRENT,
            pid=50,
            finished_at=ago(600),
        )
        last_pass = replace(base, **last)
    next_pass = None if next_in is None else NOW + datetime.timedelta(seconds=next_in)
    return UpdaterSection(worker, last_pass, next_pass)


@pytest.mark.parametrize(
    ("section", "auto_update", "blocked", "expected", "words"),
    [
        (
            updater(last={}),
            True,
            None,
            OK,
            ["running (pid 50)", "#3 10m 0s ago: upToDate", "next pass in 30m"],
        ),
        (updater(), True, None, OK, ["last pass none yet"]),
        (
            updater(
                last={"installer": InstallerResult.FAILED, "installer_detail": "exit status 2"}
            ),
            True,
            None,
            WARNING,
            ["failed", "exit status 2", "codexd logs updater"],
        ),
        (updater(last={"error": "boom"}), True, None, WARNING, ["boom", "codexd logs updater"]),
        (
            updater(last={"app_server": RefreshOutcome.ROLLED_BACK}),
            True,
            None,
            WARNING,
            ["rolled back", "codexd logs app-server"],
        ),
        (
            updater(
                last={
                    "app_server": RefreshOutcome.DEFERRED,
                    "busy_processes": 2,
                    "deferred_since": ago(300),
                }
            ),
            True,
            None,
            WARNING,
            ["busy (2 processes)", "codexd update --yes"],
        ),
        (updater(next_in=-700), True, None, WARNING, ["was due 11m", "kill -USR1 50"]),
        (updater(next_in=-30), True, None, OK, ["next pass now"]),  # a pass at work
        (
            updater(WorkerState.NOT_RUNNING),
            True,
            None,
            WARNING,
            ["not running", "`codexd bootstrap`"],
        ),
        (updater(WorkerState.STALE), True, "install first", WARNING, ["install first"]),
        (updater(WorkerState.NOT_RUNNING, last={}), False, None, OK, ["automatic updates are off"]),
        (updater(WorkerState.STARTING), True, None, WARNING, ["starting"]),
    ],
)
def test_the_updater_check(
    section: UpdaterSection,
    auto_update: bool,
    blocked: str | None,
    expected: CheckStatus,
    words: list[str],
) -> None:
    judged(check_updater(section, auto_update, False, NOW, blocked), expected, *words)


def test_an_unreadable_updater_record_fails() -> None:
    section = UpdaterSection(
        WorkerSection(WorkerState.UNREADABLE, error="x.pid is unreadable"), None
    )
    judged(check_updater(section, True, False, NOW), FAIL, "x.pid is unreadable")


SOURCES = SourceFacts(
    codexd=ReleaseSource("checkout", "/src/codexd"),
    codexd_from_env=False,
    codexd_present=True,
    codex="npm:latest",
    codex_origin="default",
    npm="/usr/bin/npm",
    npm_version="11.1.0",
)


@pytest.mark.parametrize(
    ("changes", "expected", "words"),
    [
        ({}, OK, ["codexd from checkout /src/codexd", "codex from npm:latest (npm 11.1.0)"]),
        (
            {"codexd": ReleaseSource("channel", "https://example.org/c"), "codexd_present": None},
            OK,
            ["not checked"],
        ),
        ({"codex": "reference", "npm": None, "npm_version": None}, OK, ["codex from reference"]),
        ({"codex": "path:/opt/codex", "codex_file_present": True}, OK, []),
        (
            {"codexd": None, "codexd_present": None},
            WARNING,
            ["no codexd release source", "install.sh"],
        ),
        (
            {
                "codexd": ReleaseSource("channel", "/c"),
                "codexd_present": False,
                "codexd_problem": "the channel /c has no install.sh",
            },
            WARNING,
            ["/c has no install.sh", "CODEXD_CHANNEL", "record a new source"],
        ),
        (
            {"codexd_present": False, "codexd_problem": "the checkout /src/codexd is gone"},
            WARNING,
            ["checkout /src/codexd is gone", "from a codexd checkout"],
        ),
        (
            {"npm": None, "npm_version": None},
            WARNING,
            ["npm is not on PATH", "CODEXD_CODEX_SOURCE=path:"],
        ),
        (
            {"npm_version": None, "npm_error": "npm --version exited 1: node: not found"},
            WARNING,
            ["node: not found"],
        ),
        (
            {"codex": "pip:codex", "codex_origin": "CODEXD_CODEX_SOURCE"},
            WARNING,
            ["CODEXD_CODEX_SOURCE", "pip:codex"],
        ),
        ({"codex": "path:/opt/codex", "codex_file_present": False}, WARNING, ["no such file"]),
    ],
)
def test_the_sources_check(
    changes: dict[str, Any], expected: CheckStatus, words: list[str]
) -> None:
    judged(check_sources(replace(SOURCES, **changes)), expected, *words)


@pytest.mark.parametrize(
    ("directory", "script", "expected"),
    [
        (True, True, None),
        (True, False, "the checkout /x has no install.sh"),
        (False, False, "the checkout /x is gone"),
    ],
)
def test_source_problem(directory: bool, script: bool, expected: str | None) -> None:
    assert source_problem(ReleaseSource("checkout", "/x"), directory, script) == expected
