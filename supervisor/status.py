"""`codexd status`: everything about one home, gathered without a lock and without
failing because nothing runs.

`gather_status` reads the facts into one small frozen dataclass per section; the
pure functions judge them (a pass's outcome, when the next pass is due, which
release a binary is, what the user should do next); `StatusReport.to_json` is the
report for programs, `status_render.py` lays it out for people.
"""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

import psutil

from supervisor import config
from supervisor.decisions import WorkerState
from supervisor.errors import DaemonError
from supervisor.locks import FlockLock, LockHolder, who_holds
from supervisor.logs import rotated_numbers, rotated_path, worker_logs
from supervisor.managed import managed_digest, managed_version
from supervisor.paths import HomePaths
from supervisor.persistence import PersistenceTools, persisted_kind
from supervisor.pidrecord import ChildRecord, KeeperReport, PidRecord
from supervisor.procfs import descendants
from supervisor.settings import load_settings
from supervisor.standalone import (
    current_release,
    layout_of,
    previous_release,
    read_rejected,
    release_binary,
)
from supervisor.statefile import StateFileError
from supervisor.status_facts import (
    DiskSection,
    SectionTimer,
    SocketProbe,
    gather_disk,
    probe_socket,
)
from supervisor.status_hints import Hint, HintFacts, status_hints
from supervisor.timestamps import UTC, parse_timestamp, timestamp
from supervisor.update_pass import PassOutcome, PassRecord, pass_outcome, read_last_pass
from supervisor.version import CODEXD_VERSION
from supervisor.worker_state import observe_worker

STATUS_PROBE_TIMEOUT_SECONDS = 1.0
# install.sh names a release `<version>-<first 12 hex digits of its digest>`.
_RELEASE_NAME = re.compile(r"(?P<version>.+)-[0-9a-f]{12}")
# What `status --json` says for an app-server codexd did not start (no WorkerState:
# the lifecycle never acts on one, it refuses).
UNMANAGED = "unmanaged"


class NextPassSource(Enum):
    RECORDED = "recorded"  # nextPassAt in the last-pass file
    COMPUTED = "computed"  # from the schedule: finishedAt + interval, or start + delay


# -- pure judgements -----------------------------------------------------------------


def next_pass_at(
    updater_pid: int | None,
    updater_started: datetime.datetime | None,
    last_pass: PassRecord | None,
    initial_delay: float,
    interval: float,
) -> tuple[datetime.datetime | None, NextPassSource | None]:
    """When the running updater's next pass is due.

    A pass by this updater (same pid, after it started) sets the schedule: its
    recorded nextPassAt, else its finish + interval. Before its first pass, the
    updater waits the initial delay from its start."""
    if updater_pid is None or updater_started is None:
        return None, None
    if last_pass is not None and last_pass.pid == updater_pid:
        finished = parse_timestamp(last_pass.finished_at)
        if finished is not None and finished >= updater_started - datetime.timedelta(seconds=1):
            recorded = parse_timestamp(last_pass.next_pass_at)
            if recorded is not None:
                return recorded, NextPassSource.RECORDED
            return finished + datetime.timedelta(seconds=interval), NextPassSource.COMPUTED
    return updater_started + datetime.timedelta(seconds=initial_delay), NextPassSource.COMPUTED


def release_of(executable: str | None, releases_dir: Path) -> str | None:
    """The release a resolved executable belongs to: releases/<release>/codex."""
    if executable is None:
        return None
    path = Path(executable)
    return path.parent.name if path.parent.parent == releases_dir else None


def version_of_release(release: str | None) -> str | None:
    match = _RELEASE_NAME.fullmatch(release or "")
    return None if match is None else match["version"]


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
            },
            "restarts": None if report is None else report.restarts,
            "lastExit": None
            if report is None or report.last_exit is None
            else report.last_exit.to_json(),
            "failure": None if report is None else report.failure,
            "failedExits": [] if report is None else [e.to_json() for e in report.failed_exits],
            "busyProcesses": self.busy_processes,
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


# -- gathering the facts ---------------------------------------------------------------


def _observe(record_path: Path, releases_dir: Path) -> tuple[WorkerSection, PidRecord | None]:
    """The worker's section, and its record as read (a failed keeper's, a stale one)."""
    try:
        observation = observe_worker(record_path)
    except DaemonError as error:
        return WorkerSection(WorkerState.UNREADABLE, error=str(error)), None
    record = observation.live_record
    release = release_of(None if record is None else record.executable, releases_dir)
    return WorkerSection(observation.state, record, release), observation.record


def _app_server(paths: HomePaths, settings: SettingsSection) -> AppServerSection:
    worker, record = _observe(paths.app_server_record, paths.releases_dir)
    remote_control = (
        worker.record.remote_control_enabled if worker.record else settings.remote_control_enabled
    )
    keeper = None
    if record is not None and worker.state in (WorkerState.RUNNING, WorkerState.FAILED):
        keeper = record.keeper
    busy = None
    if worker.record is not None:
        child = worker.record.app_server
        below = descendants(worker.record.pid)
        busy = len([process for process in below if child is None or process.pid != child.pid])
    seen = probe_socket(paths.socket_path, STATUS_PROBE_TIMEOUT_SECONDS)
    return AppServerSection(
        worker,
        paths.socket_path,
        seen.version,
        remote_control,
        keeper=keeper,
        busy_processes=busy,
        probe=seen,
    )


def _settings(paths: HomePaths) -> SettingsSection:
    try:
        settings = load_settings(paths.settings_file)
    except StateFileError as error:
        return SettingsSection(paths.settings_file, None, str(error))
    return SettingsSection(
        paths.settings_file,
        settings.remote_control_enabled,
        auto_update_enabled=settings.auto_update_enabled,
    )


def _schedule_of(pid: int) -> tuple[float, float]:
    """The updater's own initial delay and interval: its environment, not ours."""
    try:
        environ = psutil.Process(pid).environ()
    except (psutil.Error, OSError):
        environ = dict(os.environ)
    try:
        return config.update_schedule(environ)
    except DaemonError:
        return config.UPDATE_INITIAL_DELAY_SECONDS, config.UPDATE_INTERVAL_SECONDS


def _updater(paths: HomePaths) -> UpdaterSection:
    worker, _ = _observe(paths.updater_record, paths.releases_dir)
    last_pass = read_last_pass(paths.updater_last_pass)
    if worker.record is None:
        return UpdaterSection(worker, last_pass)
    delay, interval = _schedule_of(worker.record.pid)
    next_pass, source = next_pass_at(worker.record.pid, worker.started, last_pass, delay, interval)
    return UpdaterSection(worker, last_pass, next_pass, source)


def _release(paths: HomePaths, release: str | None, binary: Path) -> ReleaseSection:
    resolved = Path(os.path.realpath(binary))
    if not resolved.is_file():
        return ReleaseSection(release, None, None, None)
    # The cache holds the current managed binary only: the previous one is hashed anew.
    current = resolved == Path(os.path.realpath(paths.managed_binary))
    cache = paths.managed_binary_cache if current else None
    digest = managed_digest(resolved, cache)
    version = version_of_release(release) or managed_version(binary, cache)
    return ReleaseSection(release, resolved, version, digest)


def _log(name: str, path: Path) -> LogSection:
    rotated = []
    for number in rotated_numbers(path):
        try:
            rotated.append((rotated_path(path, number), rotated_path(path, number).stat().st_size))
        except OSError:
            continue
    try:
        stat = path.stat()
    except OSError:
        return LogSection(name, path, None, None, rotated)
    modified = datetime.datetime.fromtimestamp(stat.st_mtime, UTC)
    return LogSection(name, path, stat.st_size, modified, rotated)


def _persistence(paths: HomePaths, tools: PersistenceTools | None) -> str | None:
    try:
        kind = persisted_kind(paths, tools or PersistenceTools.from_environment())
    except DaemonError:
        return None
    return None if kind is None else kind.value


def gather_status(paths: HomePaths, tools: PersistenceTools | None = None) -> StatusReport:
    now = datetime.datetime.now(UTC)
    timer = SectionTimer()
    settings = timer.run("settings", lambda: _settings(paths))
    previous = previous_release(paths)
    return StatusReport(
        home=paths.home,
        state_dir=paths.state_dir,
        now=now,
        app_server=timer.run("appServer", lambda: _app_server(paths, settings)),
        updater=timer.run("updater", lambda: _updater(paths)),
        settings=settings,
        managed=timer.run(
            "managedRelease",
            lambda: replace(
                _release(paths, current_release(paths), paths.managed_binary),
                rejected=tuple(read_rejected(layout_of(paths))),
            ),
        ),
        previous=timer.run(
            "previousRelease",
            lambda: (
                None
                if previous is None
                else _release(paths, previous, release_binary(paths, previous))
            ),
        ),
        persistence=timer.run("persistence", lambda: _persistence(paths, tools)),
        logs=timer.run(
            "logs", lambda: [_log(name, path) for name, path in worker_logs(paths).items()]
        ),
        operation_holders=timer.run("daemonLock", lambda: _operation_holders(paths)),
        disk=timer.run("disk", lambda: gather_disk(paths)),
        timings=timer.milliseconds,
    )


def _operation_holders(paths: HomePaths) -> list[LockHolder]:
    try:
        held = FlockLock(paths.daemon_lock).is_locked()
    except DaemonError:
        return []
    return who_holds(paths.daemon_lock) if held else []
