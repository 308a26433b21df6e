"""`codexd doctor`'s judgements of the running parts: the app-server's record and
keeper, the control socket and who listens on it, the updater and its sources. A
table per check: every row of facts and the verdict it must give."""

from __future__ import annotations

import datetime
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from supervisor.control_socket import PeerCredentials, Unreachable
from supervisor.decisions import WorkerState
from supervisor.doctor_app_checks import (
    blocking_remedy,
    check_keeper,
    check_record,
    check_socket,
    start_remedy,
)
from supervisor.doctor_checks import CheckStatus
from supervisor.doctor_facts import DirCheck, SocketFacts
from supervisor.locks import LockHolder
from supervisor.pidrecord import ChildRecord, ExitReport, KeeperReport, PidRecord
from supervisor.private_dir import SOCKET_DIR, DirFacts
from supervisor.status_facts import SocketProbe
from supervisor.status_report import AppServerSection, ReleaseSection, WorkerSection
from supervisor.timestamps import timestamp
from tests.test_doctor_checks import judged

OK, WARNING, FAIL = CheckStatus.OK, CheckStatus.WARNING, CheckStatus.FAIL
UID = 1000
NOW = datetime.datetime(2025, 6, 1, 12, 0, 0, tzinfo=datetime.UTC)
START = "`codexd start`"
SOCKET = Path("/h/app-server-control/app-server-control.sock")
RECORD_PATH = Path("/h/app-server-daemon/app-server.pid")
DIGEST = "sha256:" + "c" * 64


def ago(seconds: float) -> str:
    return timestamp(NOW - datetime.timedelta(seconds=seconds))


def keeper(state: str = "running", **changes: Any) -> KeeperReport:
    return KeeperReport(state, ago(600)).replace(**changes)


def record(report: KeeperReport | None = None, child: int | None = 43, **changes: Any) -> PidRecord:
    base = PidRecord(
        pid=42,
        process_start_time=(NOW - datetime.timedelta(hours=2)).timestamp(),
        boot_id="b00t",
        executable="/h/packages/standalone/releases/0.169.0-cccccccccccc/codex",
        executable_digest=DIGEST,
        app_server=None if child is None else ChildRecord(child, NOW.timestamp() - 600),
        keeper=report,
    )
    return base.replace(**changes)


def app(
    state: WorkerState = WorkerState.RUNNING,
    report: KeeperReport | None = None,
    answering: str | None = "0.169.0",
    listener: int | None = 43,
    unreachable: Unreachable | None = None,
    **record_changes: Any,
) -> AppServerSection:
    """An app-server section: a live record only while RUNNING; a report as the keeper
    publishes it (running by default while it runs)."""
    live = state is WorkerState.RUNNING
    if live and report is None:
        report = keeper()
    worker = WorkerSection(
        state, record(report, **record_changes) if live else None, "0.169.0-cccccccccccc"
    )
    peer = None if listener is None else PeerCredentials(listener, UID, UID)
    error = None if unreachable is None else f"control socket {SOCKET}: trouble"
    probe = SocketProbe(answering, peer, unreachable, error)
    return AppServerSection(worker, SOCKET, answering, False, report, 0, probe)


MANAGED = ReleaseSection("0.169.0-cccccccccccc", Path("/h/r/codex"), "0.169.0", DIGEST)


def quiet(state: WorkerState, report: KeeperReport | None = None) -> AppServerSection:
    """Nothing listens on the socket."""
    return app(state, report, answering=None, listener=None, unreachable=Unreachable.NOT_LISTENING)


@pytest.mark.parametrize(
    ("installed", "settings_readable", "unmanaged", "expected"),
    [
        (True, True, False, ("`codexd start`", None)),
        (True, True, True, ("`codexd start --takeover`", None)),
        (False, True, False, ("install.sh", "install.sh")),
        (True, False, True, ("settings", "settings")),
    ],
)
def test_what_starts_the_app_server_depends_on_what_would_refuse_it(
    installed: bool, settings_readable: bool, unmanaged: bool, expected: tuple[str, str | None]
) -> None:
    start = start_remedy(installed, settings_readable, unmanaged)
    blocked = blocking_remedy(installed, settings_readable)
    assert expected[0] in start
    assert (blocked is None) == (expected[1] is None)
    if blocked is not None:
        assert expected[1] is not None and expected[1] in blocked


# -- the record and its lock ---------------------------------------------------------------

STOPPED_HOLDER = LockHolder(77, "codexd start", "stopped")
BUSY_HOLDER = LockHolder(78, "codexd restart", "sleeping")


@pytest.mark.parametrize(
    ("section", "holders", "expected", "words"),
    [
        (app(), [], OK, ["keeper (pid 42) holds the lock", "app-server pid 43"]),
        (app(), [BUSY_HOLDER], OK, []),  # a command at work
        (app(), [STOPPED_HOLDER], WARNING, ["pid 77 (codexd start; stopped)", "kill -CONT 77"]),
        (app(WorkerState.NOT_RUNNING), [], OK, ["no record"]),
        (app(WorkerState.STALE), [], WARNING, ["stale", START]),
        (app(WorkerState.STARTING), [], WARNING, ["does not name it yet"]),
        (app(WorkerState.FAILED), [], OK, ["gave up"]),
    ],
)
def test_the_record_check(
    section: AppServerSection, holders: list[LockHolder], expected: CheckStatus, words: list[str]
) -> None:
    judged(check_record(section, RECORD_PATH, holders, START), expected, *words)


def test_an_unreadable_record_fails_naming_it() -> None:
    worker = WorkerSection(WorkerState.UNREADABLE, error=f"{RECORD_PATH} is unreadable but ...")
    section = replace(app(), worker=worker)
    judged(check_record(section, RECORD_PATH, [], START), FAIL, str(RECORD_PATH), "by hand")


# -- the keeper ------------------------------------------------------------------------------

CRASH = ExitReport(ago(120), "killed by SIGSEGV", "crashed")
FAILED_REPORT = keeper(
    "failed",
    failure="3 failures within 120 s (crash loop); not restarting",
    failed_exits=(CRASH, CRASH, CRASH),
)


@pytest.mark.parametrize(
    ("section", "managed", "expected", "words"),
    [
        (app(), MANAGED, OK, ["running: app-server pid 43", "keeper up 2h", "0 restarts"]),
        (
            app(report=keeper(restarts=2, last_exit=CRASH.replace(at=ago(7200)))),
            MANAGED,
            OK,
            ["2 restarts"],
        ),
        (
            app(report=keeper(restarts=1, last_exit=CRASH)),
            MANAGED,
            WARNING,
            [
                "last exit 2m 0s ago: killed by SIGSEGV (crashed)",
                "killed by SIGSEGV",
                "codexd logs app-server",
            ],
        ),
        (
            app(report=keeper(restarts=1, last_exit=CRASH.replace(reason="stopped"))),
            MANAGED,
            OK,
            [],
        ),
        (
            app(report=keeper("backoff", last_exit=CRASH), answering=None),
            MANAGED,
            WARNING,
            ["waits out its restart delay", START],
        ),
        (app(report=keeper("launching")), MANAGED, WARNING, ["starting"]),
        (app(report=keeper("replacing")), MANAGED, WARNING, ["stopped answering"]),
        (app(report=keeper("stopping")), MANAGED, WARNING, ["stopping"]),
        (app(report=keeper("givingUp")), MANAGED, FAIL, ["gave up", START]),
        (
            quiet(WorkerState.FAILED, FAILED_REPORT),
            MANAGED,
            FAIL,
            ["3 failures within 120 s", "killed by SIGSEGV", "codexd logs app-server", START],
        ),
        (quiet(WorkerState.NOT_RUNNING), MANAGED, WARNING, ["not running", START]),
        (quiet(WorkerState.STALE), MANAGED, WARNING, ["not running"]),
        (app(WorkerState.STARTING), MANAGED, WARNING, ["starting"]),
        (app(WorkerState.NOT_RUNNING, listener=99), MANAGED, WARNING, ["did not start", START]),
        (
            app(),
            replace(MANAGED, release="0.170.0-dddddddddddd", digest="sha256:" + "d" * 64),
            WARNING,
            ["not the managed release 0.170.0", "codexd restart"],
        ),
        (app(report=None), replace(MANAGED, digest=None), OK, []),
        (
            replace(app(), busy_processes=2),
            replace(MANAGED, digest="sha256:" + "d" * 64),
            WARNING,
            ["codexd restart", "ending the 2 processes below it"],
        ),
    ],
)
def test_the_keeper_check(
    section: AppServerSection, managed: ReleaseSection, expected: CheckStatus, words: list[str]
) -> None:
    judged(check_keeper(section, managed, NOW, START), expected, *words)


# -- the control socket ---------------------------------------------------------------------

SOCKET_FACTS = SocketFacts(
    DirCheck(SOCKET.parent, SOCKET_DIR, DirFacts(True, False, UID, 0o700)),
    "socket",
    listener_command="codex app-server --listen unix://",
)
LOOSE = replace(
    SOCKET_FACTS, directory=DirCheck(SOCKET.parent, SOCKET_DIR, DirFacts(True, False, UID, 0o777))
)
FOREIGN = replace(
    SOCKET_FACTS, directory=DirCheck(SOCKET.parent, SOCKET_DIR, DirFacts(True, False, 0, 0o755))
)
A_FILE = replace(
    SOCKET_FACTS, directory=DirCheck(SOCKET.parent, SOCKET_DIR, DirFacts(False, False, UID, 0o600))
)


@pytest.mark.parametrize(
    ("section", "facts", "expected", "words"),
    [
        (
            app(),
            SOCKET_FACTS,
            OK,
            ["answers: version 0.169.0, from the managed app-server (pid 43)"],
        ),
        (app(listener=None), SOCKET_FACTS, OK, []),  # no SO_PEERCRED here
        (
            app(WorkerState.NOT_RUNNING, listener=99),
            SOCKET_FACTS,
            WARNING,
            ["did not start", "pid 99", "codex app-server", "--takeover"],
        ),
        (
            app(listener=99),
            SOCKET_FACTS,
            WARNING,
            ["pid 99", "not the keeper's app-server (pid 43)"],
        ),
        (app(), LOOSE, WARNING, ["writable by others", "chmod go-w"]),
        (app(), FOREIGN, FAIL, ["owned by uid 0", "refusing"]),
        (app(), A_FILE, FAIL, ["is a file, not a directory", "remove or rename"]),
        (quiet(WorkerState.NOT_RUNNING), SOCKET_FACTS, WARNING, ["nothing listens", START]),
        (
            app(answering=None, listener=None, unreachable=Unreachable.NOT_LISTENING),
            SOCKET_FACTS,
            FAIL,
            ["does not listen", "codexd restart"],
        ),
        (
            app(answering=None, unreachable=Unreachable.NO_ANSWER),
            SOCKET_FACTS,
            FAIL,
            ["pid 43", "does not answer", "codexd restart"],
        ),
        (
            app(
                WorkerState.NOT_RUNNING,
                answering=None,
                listener=99,
                unreachable=Unreachable.NO_ANSWER,
            ),
            SOCKET_FACTS,
            FAIL,
            ["pid 99", "--takeover"],
        ),
        (
            app(
                WorkerState.NOT_RUNNING,
                answering=None,
                listener=None,
                unreachable=Unreachable.UNTRUSTED,
            ),
            SOCKET_FACTS,
            FAIL,
            ["trouble", "never talks to it"],
        ),
        (
            app(answering=None, listener=None, unreachable=Unreachable.DENIED),
            SOCKET_FACTS,
            FAIL,
            ["ls -l"],
        ),
        (
            app(answering=None, unreachable=Unreachable.BAD_ANSWER),
            SOCKET_FACTS,
            FAIL,
            ["no app-server", "pid 43", "then `codexd restart`"],
        ),
        (
            app(WorkerState.NOT_RUNNING, answering=None, unreachable=Unreachable.BAD_ANSWER),
            SOCKET_FACTS,
            FAIL,
            ["no app-server", "pid 43", "codexd start --takeover"],
        ),
        (
            app(answering=None, listener=None, unreachable=Unreachable.OUT_OF_RESOURCES),
            SOCKET_FACTS,
            WARNING,
            ["ulimit -n"],
        ),
        (
            app(answering=None, listener=None, unreachable=Unreachable.FAILED),
            SOCKET_FACTS,
            FAIL,
            ["trouble"],
        ),
    ],
)
def test_the_socket_check(
    section: AppServerSection, facts: SocketFacts, expected: CheckStatus, words: list[str]
) -> None:
    judged(check_socket(section, facts, UID, START), expected, *words)


def test_the_socket_check_says_who_listens_and_whether_it_is_managed() -> None:
    details = check_socket(
        app(WorkerState.NOT_RUNNING, listener=99), SOCKET_FACTS, UID, START
    ).details
    assert details["listenerPid"] == 99 and details["listenerUid"] == UID
    assert details["managed"] is None and details["appServerPid"] is None
    assert details["directory"] == {"path": str(SOCKET.parent), "ownerUid": UID, "mode": "0700"}
    assert check_socket(app(), SOCKET_FACTS, UID, START).details["managed"] is True
    assert check_socket(app(listener=99), SOCKET_FACTS, UID, START).details["managed"] is False
