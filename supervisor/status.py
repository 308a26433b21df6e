"""`codexd status`: everything about one home, gathered without a lock and without
failing because nothing runs.

`gather_status` reads the facts; the pure functions below judge them (a pass's
outcome, when the next pass is due, which release a binary is); `status_sections`
lays the report out for people, and `StatusReport.to_json` for programs.
"""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import psutil

from supervisor import config
from supervisor.control_socket import ProbeError, probe
from supervisor.decisions import WorkerState
from supervisor.errors import DaemonError
from supervisor.logs import rotated_numbers, rotated_path, worker_logs
from supervisor.managed import managed_digest, managed_version
from supervisor.paths import HomePaths
from supervisor.persistence import PersistenceTools, persisted_kind
from supervisor.pidrecord import PidRecord
from supervisor.settings import load_settings
from supervisor.standalone import current_release, previous_release, release_binary
from supervisor.statefile import StateFileError, read_json_object
from supervisor.version import CODEXD_VERSION
from supervisor.worker_state import observe_worker

STATUS_PROBE_TIMEOUT_SECONDS = 1.0
# install.sh names a release `<version>-<first 12 hex digits of its digest>`.
_RELEASE_NAME = re.compile(r"(?P<version>.+)-[0-9a-f]{12}")

UTC = datetime.timezone.utc


class PassOutcome(Enum):
    NO_PASS_YET = "noPassYet"
    FAILED = "failed"  # the pass raised: see its error
    INSTALLER_FAILED = "installerFailed"  # no release source, failed, timed out
    ROLLED_BACK = "rolledBack"  # a new release did not start; the previous one runs
    UPDATED = "updated"  # the app-server moved, or the updater re-executed
    UP_TO_DATE = "upToDate"


class NextPassSource(Enum):
    RECORDED = "recorded"  # nextPassAt in the last-pass file
    COMPUTED = "computed"  # from the schedule: finishedAt + interval, or start + delay


# -- pure judgements -----------------------------------------------------------------


def parse_timestamp(value: object) -> datetime.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def timestamp(moment: datetime.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="seconds")


def pass_outcome(last_pass: dict[str, Any] | None) -> PassOutcome:
    if last_pass is None:
        return PassOutcome.NO_PASS_YET
    if last_pass.get("error"):
        return PassOutcome.FAILED
    if last_pass.get("installer") != "ok":
        return PassOutcome.INSTALLER_FAILED
    if last_pass.get("appServer") == "rolledBack":
        return PassOutcome.ROLLED_BACK
    if last_pass.get("appServer") == "restarted" or last_pass.get("reexec"):
        return PassOutcome.UPDATED
    return PassOutcome.UP_TO_DATE


def pass_summary(last_pass: dict[str, Any] | None) -> str:
    """One line for people: the outcome and the detail that explains it."""
    outcome = pass_outcome(last_pass)
    if last_pass is None:
        return outcome.value
    if outcome is PassOutcome.FAILED:
        return f"{outcome.value}: {last_pass.get('error')}"
    if outcome is PassOutcome.INSTALLER_FAILED:
        return f"{outcome.value}: installer {last_pass.get('installer')}"
    detail = f"app-server {last_pass.get('appServer')}"
    if last_pass.get("reexec"):
        detail += ", updater re-executed"
    return f"{outcome.value} ({detail})"


def next_pass_at(
    updater_pid: int | None,
    updater_started: datetime.datetime | None,
    last_pass: dict[str, Any] | None,
    initial_delay: float,
    interval: float,
) -> tuple[datetime.datetime | None, NextPassSource | None]:
    """When the running updater's next pass is due.

    A pass by this updater (same pid, after it started) sets the schedule: its
    recorded nextPassAt, else its finish + interval. Before its first pass, the
    updater waits the initial delay from its start."""
    if updater_pid is None or updater_started is None:
        return None, None
    if last_pass is not None and last_pass.get("pid") == updater_pid:
        finished = parse_timestamp(last_pass.get("finishedAt"))
        if finished is not None and finished >= updater_started - datetime.timedelta(seconds=1):
            recorded = parse_timestamp(last_pass.get("nextPassAt"))
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


def format_duration(seconds: float) -> str:
    """`3d 4h`, `2h 5m`, `7m 3s`, `42s`: the two largest units."""
    seconds = max(0, int(seconds))
    units = [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)]
    parts: list[str] = []
    for name, size in units:
        count, seconds = divmod(seconds, size)
        if count or parts:
            parts.append(f"{count}{name}")
        if len(parts) == 2:
            break
    return " ".join(parts) or "0s"


def format_relative(moment: datetime.datetime | None, now: datetime.datetime) -> str:
    if moment is None:
        return "-"
    delta = (moment - now).total_seconds()
    when = moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    if abs(delta) < 1:
        return f"{when} (now)"
    if delta > 0:
        return f"{when} (in {format_duration(delta)})"
    return f"{when} ({format_duration(-delta)} ago)"


def format_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


# -- the report --------------------------------------------------------------------


class WorkerStatus(Enum):
    RUNNING = "running"
    STARTING = "starting"
    NOT_RUNNING = "notRunning"
    STALE = "stale"  # a record left by a dead worker; the next command clears it
    UNMANAGED = "unmanaged"  # something answers on the socket that codexd did not start
    UNREADABLE = "unreadable"
    FAILED = "failed"  # the keeper gave up on a crash loop; `start` starts afresh


@dataclass(frozen=True)
class WorkerReport:
    status: WorkerStatus
    record: PidRecord | None = None
    error: str | None = None

    @property
    def started(self) -> datetime.datetime | None:
        if self.record is None:
            return None
        return datetime.datetime.fromtimestamp(self.record.process_start_time, UTC)

    def common_json(self, now: datetime.datetime) -> dict[str, Any]:
        record, started = self.record, self.started
        value: dict[str, Any] = {
            "status": self.status.value,
            "pid": None if record is None else record.pid,
            "startedAt": timestamp(started),
            "uptimeSeconds": None if started is None else int((now - started).total_seconds()),
            "executable": None if record is None else record.executable,
            "executableDigest": None if record is None else record.executable_digest,
        }
        if self.error is not None:
            value["error"] = self.error
        return value


@dataclass(frozen=True)
class LogReport:
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
            "modifiedAt": timestamp(self.modified),
            "rotated": [{"path": str(path), "sizeBytes": size} for path, size in self.rotated],
        }


@dataclass(frozen=True)
class ReleaseReport:
    release: str | None
    path: Path | None
    version: str | None
    digest: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "release": self.release,
            "path": None if self.path is None else str(self.path),
            "version": self.version,
            "digest": self.digest,
        }


@dataclass(frozen=True)
class StatusReport:
    home: Path
    state_dir: Path
    now: datetime.datetime
    app_server: WorkerReport
    socket_path: Path
    answering_version: str | None  # what answered `initialize`, None if nothing did
    remote_control_setting: bool | None
    settings_error: str | None
    updater: WorkerReport
    last_pass: dict[str, Any] | None
    next_pass: datetime.datetime | None
    next_pass_source: NextPassSource | None
    managed: ReleaseReport
    previous: ReleaseReport | None
    persistence: str | None
    logs: list[LogReport]

    @property
    def app_server_release(self) -> str | None:
        record = self.app_server.record
        return release_of(None if record is None else record.executable, self.releases_dir)

    @property
    def releases_dir(self) -> Path:
        return HomePaths(self.home).releases_dir

    def to_json(self) -> dict[str, Any]:
        record = self.app_server.record
        app_server = self.app_server.common_json(self.now)
        app_server.update(
            version=(record.version if record else None) or self.answering_version,
            release=self.app_server_release,
            remoteControlEnabled=(
                record.remote_control_enabled if record else self.remote_control_setting
            ),
            socketPath=str(self.socket_path),
            answering=self.answering_version is not None,
        )
        updater = self.updater.common_json(self.now)
        updater.update(
            release=release_of(
                self.updater.record.executable if self.updater.record else None,
                self.releases_dir,
            ),
            lastPass=self.last_pass,
            lastPassOutcome=None if self.last_pass is None else pass_outcome(self.last_pass).value,
            nextPassAt=timestamp(self.next_pass),
            nextPassSource=None if self.next_pass_source is None else self.next_pass_source.value,
        )
        settings: dict[str, Any] = {"remoteControlEnabled": self.remote_control_setting}
        if self.settings_error is not None:
            settings["error"] = self.settings_error
        return {
            "home": str(self.home),
            "stateDir": str(self.state_dir),
            "cliVersion": CODEXD_VERSION,
            "appServer": app_server,
            "updater": updater,
            "managedRelease": self.managed.to_json(),
            "previousRelease": None if self.previous is None else self.previous.to_json(),
            "settings": settings,
            "persistence": self.persistence,
            "logs": [log.to_json() for log in self.logs],
        }


# -- for people ----------------------------------------------------------------------


class Tone(Enum):
    PLAIN = "plain"
    GOOD = "good"
    WARN = "warn"
    BAD = "bad"


@dataclass(frozen=True)
class Row:
    label: str
    value: str
    tone: Tone = Tone.PLAIN


@dataclass(frozen=True)
class Section:
    title: str
    rows: list[Row]


_STATUS_TONES = {
    WorkerStatus.RUNNING: Tone.GOOD,
    WorkerStatus.STARTING: Tone.WARN,
    WorkerStatus.NOT_RUNNING: Tone.WARN,
    WorkerStatus.STALE: Tone.WARN,
    WorkerStatus.UNMANAGED: Tone.BAD,
    WorkerStatus.UNREADABLE: Tone.BAD,
    WorkerStatus.FAILED: Tone.BAD,
}
_OUTCOME_TONES = {
    PassOutcome.NO_PASS_YET: Tone.PLAIN,
    PassOutcome.FAILED: Tone.BAD,
    PassOutcome.INSTALLER_FAILED: Tone.BAD,
    PassOutcome.ROLLED_BACK: Tone.WARN,
    PassOutcome.UPDATED: Tone.GOOD,
    PassOutcome.UP_TO_DATE: Tone.GOOD,
}


def _status_text(status: WorkerStatus) -> str:
    return {
        WorkerStatus.NOT_RUNNING: "not running",
        WorkerStatus.STALE: "not running (stale record)",
        WorkerStatus.UNMANAGED: "not managed by codexd (something else answers)",
    }.get(status, status.value)


def _short_digest(digest: str | None) -> str:
    return "-" if digest is None else digest.removeprefix("sha256:")[:12]


def _worker_rows(worker: WorkerReport, now: datetime.datetime) -> list[Row]:
    rows = [Row("status", _status_text(worker.status), _STATUS_TONES[worker.status])]
    if worker.error is not None:
        rows.append(Row("error", worker.error, Tone.BAD))
    if worker.record is not None and worker.started is not None:
        rows.append(Row("pid", str(worker.record.pid)))
        rows.append(Row("uptime", format_duration((now - worker.started).total_seconds())))
    return rows


def status_sections(report: StatusReport) -> list[Section]:
    """The report as titled rows, in the order a person reads them."""
    data = report.to_json()
    now = report.now
    app = data["appServer"]
    app_rows = _worker_rows(report.app_server, now)
    if report.app_server.record is not None:
        app_rows += [
            Row("version", app["version"] or "-"),
            Row("release", app["release"] or report.app_server.record.executable),
            Row("digest", _short_digest(app["executableDigest"])),
        ]
    remote = app["remoteControlEnabled"]
    app_rows += [
        Row("remote control", "-" if remote is None else ("on" if remote else "off")),
        Row("socket", app["socketPath"]),
        Row("answering", "yes" if app["answering"] else "no", Tone.PLAIN),
    ]
    if report.settings_error is not None:
        app_rows.append(Row("settings", report.settings_error, Tone.BAD))

    updater_rows = _worker_rows(report.updater, now)
    outcome = None if report.last_pass is None else pass_outcome(report.last_pass)
    finished = None if report.last_pass is None else report.last_pass.get("finishedAt")
    last = "none yet"
    if report.last_pass is not None:
        last = f"#{report.last_pass.get('pass')} {format_relative(parse_timestamp(finished), now)}"
    updater_rows += [
        Row("last pass", last),
        Row(
            "outcome",
            pass_summary(report.last_pass),
            Tone.PLAIN if outcome is None else _OUTCOME_TONES[outcome],
        ),
        Row(
            "next pass",
            format_relative(report.next_pass, now)
            if report.next_pass
            else "- (the updater is not running)",
        ),
    ]

    release_rows = [
        Row(
            "managed",
            "not installed"
            if report.managed.path is None
            else f"{report.managed.release or report.managed.path}",
            Tone.PLAIN if report.managed.path else Tone.WARN,
        ),
        Row("version", report.managed.version or "-"),
        Row("digest", _short_digest(report.managed.digest)),
        Row("previous", "-" if report.previous is None else report.previous.release or "-"),
        Row(
            "after reboot",
            report.persistence or "not persisted (codexd bootstrap --persist)",
            Tone.PLAIN if report.persistence else Tone.WARN,
        ),
    ]

    log_rows = []
    for log in report.logs:
        if log.size is None:
            log_rows.append(Row(log.name, f"{log.path} (none yet)"))
            continue
        rotated = f", {len(log.rotated)} rotated" if log.rotated else ""
        log_rows.append(Row(log.name, f"{log.path} ({format_size(log.size)}{rotated})"))

    return [
        Section("app-server", app_rows),
        Section("updater", updater_rows),
        Section("release", release_rows),
        Section("logs", log_rows),
    ]


# -- gathering the facts ---------------------------------------------------------------


def _observe(record_path: Path) -> WorkerReport:
    try:
        observation = observe_worker(record_path)
    except DaemonError as error:
        return WorkerReport(WorkerStatus.UNREADABLE, error=str(error))
    status = {
        WorkerState.RUNNING: WorkerStatus.RUNNING,
        WorkerState.STARTING: WorkerStatus.STARTING,
        WorkerState.NOT_RUNNING: WorkerStatus.NOT_RUNNING,
        WorkerState.STALE: WorkerStatus.STALE,
        WorkerState.UNREADABLE: WorkerStatus.UNREADABLE,
        WorkerState.FAILED: WorkerStatus.FAILED,
    }[observation.state]
    return WorkerReport(status, observation.live_record)


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


def _log_report(name: str, path: Path) -> LogReport:
    rotated = []
    for number in rotated_numbers(path):
        try:
            rotated.append((rotated_path(path, number), rotated_path(path, number).stat().st_size))
        except OSError:
            continue
    try:
        stat = path.stat()
    except OSError:
        return LogReport(name, path, None, None, rotated)
    modified = datetime.datetime.fromtimestamp(stat.st_mtime, UTC)
    return LogReport(name, path, stat.st_size, modified, rotated)


def _release_report(paths: HomePaths, release: str | None, binary: Path) -> ReleaseReport:
    resolved = Path(os.path.realpath(binary))
    if not resolved.is_file():
        return ReleaseReport(release, None, None, None)
    # The cache holds the current managed binary only: the previous one is hashed anew.
    current = resolved == Path(os.path.realpath(paths.managed_binary))
    cache = paths.managed_binary_cache if current else None
    digest = managed_digest(resolved, cache)
    version = version_of_release(release) or managed_version(binary, cache)
    return ReleaseReport(release, resolved, version, digest)


def gather_status(paths: HomePaths, tools: PersistenceTools | None = None) -> StatusReport:
    now = datetime.datetime.now(UTC)
    app_server = _observe(paths.app_server_record)
    try:
        answering: str | None = probe(
            paths.socket_path, timeout=STATUS_PROBE_TIMEOUT_SECONDS
        ).app_server_version
    except ProbeError:
        answering = None
    if answering is not None and app_server.status in (
        WorkerStatus.NOT_RUNNING,
        WorkerStatus.STALE,
    ):
        app_server = WorkerReport(WorkerStatus.UNMANAGED)
    try:
        setting: bool | None = load_settings(paths.settings_file).remote_control_enabled
        settings_error = None
    except StateFileError as error:
        setting, settings_error = None, str(error)

    updater = _observe(paths.updater_record)
    try:
        last_pass = read_json_object(paths.updater_last_pass)
    except StateFileError:
        last_pass = None
    next_pass, source = None, None
    if updater.record is not None:
        delay, interval = _schedule_of(updater.record.pid)
        next_pass, source = next_pass_at(
            updater.record.pid, updater.started, last_pass, delay, interval
        )

    current = current_release(paths)
    previous = previous_release(paths)
    try:
        persistence = persisted_kind(paths, tools or PersistenceTools.from_environment())
    except DaemonError:
        persistence = None
    return StatusReport(
        home=paths.home,
        state_dir=paths.state_dir,
        now=now,
        app_server=app_server,
        socket_path=paths.socket_path,
        answering_version=answering,
        remote_control_setting=setting,
        settings_error=settings_error,
        updater=updater,
        last_pass=last_pass,
        next_pass=next_pass,
        next_pass_source=source,
        managed=_release_report(paths, current, paths.managed_binary),
        previous=None
        if previous is None
        else _release_report(paths, previous, release_binary(paths, previous)),
        persistence=None if persistence is None else persistence.value,
        logs=[_log_report(name, path) for name, path in worker_logs(paths).items()],
    )
