"""The `codexd status` report: one small frozen dataclass per section, the judgements
a section makes of itself (the app-server's status, whether something unmanaged
answers, the pass outcome, what the user should do next) and `StatusReport.to_json`,
the report for programs.

`status.py` gathers it, `status_render.py` lays it out for people, and `doctor`
judges its sections.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from supervisor.decisions import WorkerState
from supervisor.locks import LockHolder
from supervisor.pidrecord import ChildRecord, KeeperReport, PidRecord
from supervisor.status_facts import DiskSection, SocketProbe
from supervisor.status_hints import Hint, HintFacts, status_hints
from supervisor.timestamps import UTC, timestamp
from supervisor.update_pass import PassOutcome, PassRecord, pass_outcome
from supervisor.version import CODEXD_VERSION

# What `status --json` says for an app-server codexd did not start (no WorkerState:
# the lifecycle never acts on one, it refuses).
UNMANAGED = "unmanaged"


class NextPassSource(Enum):
    RECORDED = "recorded"  # nextPassAt in the last-pass file
    COMPUTED = "computed"  # from the schedule: finishedAt + interval, or start + delay


# -- pure judgements -----------------------------------------------------------------


def keeper_status(state: str) -> str:
    """`appServer.status` while a keeper runs: its own state, the first start shown as
    `starting` too."""
    return "starting" if state == "launching" else state


def is_unmanaged(state: WorkerState, answering: bool) -> bool:
    """Something answers on the socket while no app-server of ours holds its lock. A
    held lock with an unreadable record is ours: it is reported as unreadable."""
    return answering and state in (WorkerState.NOT_RUNNING, WorkerState.STALE)


# -- the report: one frozen dataclass per section --------------------------------------


@dataclass(frozen=True)
class WorkerSection:
    """What the app-server and the updater have in common: the lock and the record."""

    state: WorkerState
    record: PidRecord | None = None  # only while it runs
    release: str | None = None  # the release its executable belongs to
    error: str | None = None  # why the state is UNREADABLE

    @property
    def started(self) -> datetime.datetime | None:
        if self.record is None:
            return None
        return datetime.datetime.fromtimestamp(self.record.process_start_time, UTC)

    def to_json(self, now: datetime.datetime) -> dict[str, Any]:
        record, started = self.record, self.started
        value: dict[str, Any] = {
            "status": self.state.value,
            "pid": None if record is None else record.pid,
            "startedAt": None if started is None else timestamp(started),
            "uptimeSeconds": None if started is None else int((now - started).total_seconds()),
            "executable": None if record is None else record.executable,
            "executableDigest": None if record is None else record.executable_digest,
        }
        if self.error is not None:
            value["error"] = self.error
        return value


@dataclass(frozen=True)
class LastStop:
    """The keeper's last stop as its log says it, shown while nothing runs: why the
    app-server is down (a stop, a `kill -TERM`, a keeper that gave up)."""

    at: str  # the log line's time, as written
    what: str  # the keeper's words: "SIGTERM: stopping", "giving up: ..."

    def to_json(self) -> dict[str, str]:
        return {"at": self.at, "what": self.what}


_KEEPER_LINE = re.compile(r"(?P<at>\S+) codexd keeper\[\d+\]: (?P<what>.*)")


def last_stop(lines: list[str]) -> LastStop | None:
    """The last line of `lines` (app-server.log, oldest first) in which a keeper stopped
    or gave up; None when there is none."""
    for line in reversed(lines):
        match = _KEEPER_LINE.fullmatch(line.rstrip("\n"))
        if match is None:
            continue
        what = match["what"]
        if (
            what.endswith(": stopping")
            or what.startswith("giving up:")
            or ("(stopped by someone else)" in what)
        ):
            return LastStop(match["at"], what)
    return None


@dataclass(frozen=True)
class AppServerSection:
    """The keeper (`worker`: its lock and record) and the app-server it runs."""

    worker: WorkerSection
    socket_path: Path
    answering_version: str | None  # what answered `initialize`, None if nothing did
    # The flag it runs with, or the saved setting when none runs.
    remote_control_enabled: bool | None
    # What the keeper publishes (a failed keeper's too: why it gave up).
    keeper: KeeperReport | None = None
    # Live processes below the app-server (tools, MCP servers, jobs), while one runs.
    busy_processes: int | None = None
    # The probe behind `answering_version`: who listens, why nothing of ours answered.
    probe: SocketProbe | None = None
    # While no keeper runs: its last stop, from the log.
    last_stop: LastStop | None = None

    @property
    def unmanaged(self) -> bool:
        return is_unmanaged(self.worker.state, self.answering_version is not None)

    @property
    def status(self) -> str:
        """The keeper's own state while it runs (running, backoff, starting, ...), else
        the worker state (notRunning, stale, failed, unreadable) or unmanaged."""
        if self.unmanaged:
            return UNMANAGED
        if self.worker.state is WorkerState.RUNNING and self.keeper is not None:
            return keeper_status(self.keeper.state)
        return self.worker.state.value

    @property
    def child(self) -> ChildRecord | None:
        record = self.worker.record
        return None if record is None else record.app_server

    @property
    def version(self) -> str | None:
        record = self.worker.record
        return (record.version if record else None) or self.answering_version

    def to_json(self, now: datetime.datetime) -> dict[str, Any]:
        keeper = self.worker.to_json(now)
        child = self.child
        started = None if child is None else datetime.datetime.fromtimestamp(child.start_time, UTC)
        report = self.keeper
        return {
            "status": self.status,
            "pid": None if child is None else child.pid,
            "startedAt": None if started is None else timestamp(started),
            "uptimeSeconds": None if started is None else int((now - started).total_seconds()),
            "executable": keeper["executable"],
            "executableDigest": keeper["executableDigest"],
            **({"error": keeper["error"]} if "error" in keeper else {}),
            "version": self.version,
            "release": self.worker.release,
            "remoteControlEnabled": self.remote_control_enabled,
            "socketPath": str(self.socket_path),
            "answering": self.answering_version is not None,
            "keeper": {
                "pid": keeper["pid"],
                "startedAt": keeper["startedAt"],
                "state": None if report is None else report.state,
                # While it waits out a restart delay: when it starts the app-server again.
                "retryAt": None if report is None else report.retry_at,
            },
            "restarts": None if report is None else report.restarts,
            "lastExit": None
            if report is None or report.last_exit is None
            else report.last_exit.to_json(),
            "failure": None if report is None else report.failure,
            "failedExits": [] if report is None else [e.to_json() for e in report.failed_exits],
            "busyProcesses": self.busy_processes,
            "lastStop": None if self.last_stop is None else self.last_stop.to_json(),
            **(SocketProbe(None) if self.probe is None else self.probe).to_json(),
        }


@dataclass(frozen=True)
class UpdaterSection:
    worker: WorkerSection
    last_pass: PassRecord | None
    next_pass: datetime.datetime | None = None
    next_pass_source: NextPassSource | None = None

    @property
    def outcome(self) -> PassOutcome:
        return pass_outcome(self.last_pass)

    def to_json(self, now: datetime.datetime) -> dict[str, Any]:
        value = self.worker.to_json(now)
        value.update(
            release=self.worker.release,
            lastPass=None if self.last_pass is None else self.last_pass.to_json(),
            lastPassOutcome=None if self.last_pass is None else self.outcome.value,
            nextPassAt=None if self.next_pass is None else timestamp(self.next_pass),
            nextPassSource=None if self.next_pass_source is None else self.next_pass_source.value,
        )
        return value


@dataclass(frozen=True)
class SettingsSection:
    path: Path
    remote_control_enabled: bool | None  # None when the file cannot be read
    error: str | None = None
    auto_update_enabled: bool | None = None

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {
            "remoteControlEnabled": self.remote_control_enabled,
            "autoUpdateEnabled": self.auto_update_enabled,
        }
        if self.error is not None:
            value["error"] = self.error
        return value


@dataclass(frozen=True)
class ReleaseSection:
    release: str | None
    path: Path | None  # None: not installed
    version: str | None
    digest: str | None
    # Releases rolled back from: not installed again until a newer one appears.
    rejected: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "release": self.release,
            "path": None if self.path is None else str(self.path),
            "version": self.version,
            "digest": self.digest,
            "rejected": list(self.rejected),
        }


@dataclass(frozen=True)
class LogSection:
    name: str
    path: Path
    size: int | None  # None: no such file yet
    modified: datetime.datetime | None
    rotated: list[tuple[Path, int]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "sizeBytes": self.size,
            "modifiedAt": None if self.modified is None else timestamp(self.modified),
            "rotated": [{"path": str(path), "sizeBytes": size} for path, size in self.rotated],
        }


@dataclass(frozen=True)
class StatusReport:
    home: Path
    state_dir: Path
    now: datetime.datetime
    app_server: AppServerSection
    updater: UpdaterSection
    settings: SettingsSection
    managed: ReleaseSection
    previous: ReleaseSection | None
    persistence: str | None  # "systemd", "cron", None: not persisted
    logs: list[LogSection]
    # Not persisted, and nothing here could persist it: why (the words bootstrap uses).
    persistence_blocker: str | None = None
    # Who holds daemon.lock right now (a command at work, or one stopped halfway).
    operation_holders: list[LockHolder] = field(default_factory=list)
    disk: DiskSection | None = None
    # Milliseconds each section took to gather (not reported: doctor's durationMs).
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def hints(self) -> list[Hint]:
        outcome = self.updater.outcome
        return status_hints(
            HintFacts(
                installed=self.managed.path is not None,
                settings_file=self.settings.path,
                settings_readable=self.settings.error is None,
                remote_control=bool(self.settings.remote_control_enabled),
                auto_update=self.settings.auto_update_enabled is not False,
                app_server=self.app_server.worker.state,
                unmanaged=self.app_server.unmanaged,
                socket_path=self.app_server.socket_path,
                updater=self.updater.worker.state,
                last_pass_failed=outcome in (PassOutcome.FAILED, PassOutcome.INSTALLER_FAILED),
                last_pass_rolled_back=outcome is PassOutcome.ROLLED_BACK,
                update_deferred=outcome is PassOutcome.DEFERRED,
                persisted=self.persistence is not None,
                persistence_blocker=self.persistence_blocker,
            )
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "home": str(self.home),
            "stateDir": str(self.state_dir),
            "cliVersion": CODEXD_VERSION,
            "appServer": self.app_server.to_json(self.now),
            "updater": self.updater.to_json(self.now),
            "managedRelease": self.managed.to_json(),
            "previousRelease": None if self.previous is None else self.previous.to_json(),
            "settings": self.settings.to_json(),
            "persistence": self.persistence,
            "logs": [log.to_json() for log in self.logs],
            "daemonLock": {
                "held": bool(self.operation_holders),
                "holders": [
                    {"pid": holder.pid, "command": holder.command, "state": holder.state}
                    for holder in self.operation_holders
                ],
            },
            "hints": [hint.to_json() for hint in self.hints],
            "disk": None if self.disk is None else self.disk.to_json(),
        }
