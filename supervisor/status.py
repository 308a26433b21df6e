"""`codexd status`: everything about one home, gathered without a lock and without
failing because nothing runs.

`gather_status` reads the facts into the report's sections (`status_report.py`), with
the pure judgements it needs on the way (which release an executable belongs to, a
release's version by its name, when the updater's next pass is due);
`StatusReport.to_json` is the report for programs, `status_render.py` lays it out for
people.
"""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import replace
from pathlib import Path

import psutil

from supervisor import config
from supervisor.decisions import WorkerState
from supervisor.errors import DaemonError
from supervisor.locks import FlockLock, LockHolder, who_holds
from supervisor.logs import rotated_numbers, rotated_path, worker_logs
from supervisor.managed import managed_digest, managed_version
from supervisor.paths import HomePaths
from supervisor.persistence import PersistenceTools, persisted_kind, quick_persistence_blocker
from supervisor.pidrecord import PidRecord
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
from supervisor.status_facts import SectionTimer, gather_disk, probe_socket
from supervisor.status_report import (
    AppServerSection,
    LogSection,
    NextPassSource,
    ReleaseSection,
    SettingsSection,
    StatusReport,
    UpdaterSection,
    WorkerSection,
    last_stop,
)
from supervisor.timestamps import UTC, parse_timestamp
from supervisor.update_pass import PassRecord, read_last_pass
from supervisor.worker_state import observe_worker

STATUS_PROBE_TIMEOUT_SECONDS = 1.0
# install.sh names a release `<version>-<first 12 hex digits of its digest>`.
_RELEASE_NAME = re.compile(r"(?P<version>.+)-[0-9a-f]{12}")


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


# -- gathering the facts ---------------------------------------------------------------


# How far back in app-server.log `status` looks for the keeper's last stop.
LAST_STOP_LINES = 200


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
    stopped = None
    if worker.state in (WorkerState.NOT_RUNNING, WorkerState.STALE):
        stopped = last_stop(_log_lines(paths.app_server_log, LAST_STOP_LINES))
    return AppServerSection(
        worker,
        paths.socket_path,
        seen.version,
        remote_control,
        keeper=keeper,
        busy_processes=busy,
        probe=seen,
        last_stop=stopped,
    )


def _log_lines(path: Path, count: int) -> list[str]:
    from supervisor.log_tail import tail_file

    try:
        return tail_file(path, count).decode(errors="replace").splitlines()
    except OSError:
        return []


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


def _persistence(paths: HomePaths, tools: PersistenceTools | None) -> tuple[str | None, str | None]:
    """How this home comes back after a reboot, else why it cannot (None: it can)."""
    tools = tools or PersistenceTools.from_environment()
    try:
        kind = persisted_kind(paths, tools)
    except DaemonError:
        kind = None
    if kind is not None:
        return kind.value, None
    return None, quick_persistence_blocker(tools)


def gather_status(paths: HomePaths, tools: PersistenceTools | None = None) -> StatusReport:
    now = datetime.datetime.now(UTC)
    timer = SectionTimer()
    settings = timer.run("settings", lambda: _settings(paths))
    previous = previous_release(paths)
    persistence, persistence_blocker = timer.run("persistence", lambda: _persistence(paths, tools))
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
        persistence=persistence,
        persistence_blocker=persistence_blocker,
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
