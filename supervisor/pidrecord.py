"""Pid records: the JSON file that says which process a worker is.

The record says who; the `.pid.lock` beside it says whether: the worker holds
that lock for its whole life, so locked = alive, whatever the record says.

The app-server's record names the keeper (`pid`) and, while one runs, its app-server
(`appServerPid`), with the keeper's published state under `keeper`.
"""

from __future__ import annotations

import os

from supervisor.identity import ProcessIdentity, lstart
from supervisor.lean import Value
from supervisor.state_read import StateFileError, read_json_object

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    StrPath = str | os.PathLike[str]


class PidRecord(Value):
    __slots__ = (
        "app_server",
        "boot_id",
        "executable",
        "executable_digest",
        "extra",
        "keeper",
        "pid",
        "process_start_time",
        "remote_control_enabled",
        "session_id",
        "socket_path",
        "start_ticks",
        "version",
    )

    def __init__(
        self,
        pid: int,
        process_start_time: float,
        boot_id: str,
        executable: str,
        executable_digest: str,
        # App-server only.
        remote_control_enabled: bool | None = None,
        socket_path: str | None = None,
        version: str | None = None,
        # codex's own identity check: field 22 of /proc/<pid>/stat.
        start_ticks: int | None = None,
        # The session the worker leads its processes in: what a dead keeper left behind
        # is found by it.
        session_id: int | None = None,
        # The keeper's app-server, while one runs.
        app_server: ChildRecord | None = None,
        keeper: KeeperReport | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.pid = pid
        self.process_start_time = process_start_time
        self.boot_id = boot_id
        self.executable = executable
        self.executable_digest = executable_digest
        self.remote_control_enabled = remote_control_enabled
        self.socket_path = socket_path
        self.version = version
        self.start_ticks = start_ticks
        self.session_id = session_id
        self.app_server = app_server
        self.keeper = keeper
        self.extra: dict[str, Any] = {} if extra is None else extra

    @property
    def identity(self) -> ProcessIdentity:
        return ProcessIdentity(self.pid, self.process_start_time, self.boot_id)

    def with_version(self, version: str) -> PidRecord:
        return self.replace(version=version)

    @property
    def failed(self) -> bool:
        """The keeper gave up (a crash loop, or an app-server that never started): the
        record stays to say why."""
        return self.keeper is not None and self.keeper.state == FAILED_STATE

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {
            **self.extra,
            "pid": self.pid,
            # codex reads this file as its own record: it wants a string here (as
            # `ps -o lstart` prints it) and checks processIdentity. Ours is
            # processStartSeconds.
            "processStartTime": lstart(self.process_start_time),
            "processStartSeconds": self.process_start_time,
            "bootId": self.boot_id,
            "executable": self.executable,
            "executableDigest": self.executable_digest,
        }
        optional = {
            "remoteControlEnabled": self.remote_control_enabled,
            "socketPath": self.socket_path,
            "version": self.version,
        }
        value.update({key: item for key, item in optional.items() if item is not None})
        if self.start_ticks is not None:
            value["processIdentity"] = {"bootId": self.boot_id, "startTicks": self.start_ticks}
        if self.session_id is not None:
            value["sessionId"] = self.session_id
        if self.app_server is not None:
            value.update(self.app_server.to_json())
        if self.keeper is not None:
            value["keeper"] = self.keeper.to_json()
        return value


class ChildRecord(Value):
    """The app-server a keeper runs: enough to recognise it, never to signal it (only
    its keeper does that)."""

    __slots__ = ("pid", "start_ticks", "start_time")

    def __init__(self, pid: int, start_time: float, start_ticks: int | None = None) -> None:
        self.pid = pid
        self.start_time = start_time
        self.start_ticks = start_ticks

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {
            "appServerPid": self.pid,
            "appServerStartSeconds": self.start_time,
        }
        if self.start_ticks is not None:
            value["appServerStartTicks"] = self.start_ticks
        return value


def child_from_json(value: dict[str, Any]) -> ChildRecord | None:
    pid, start = value.get("appServerPid"), value.get("appServerStartSeconds")
    ticks = value.get("appServerStartTicks")
    if type(pid) is not int or pid <= 0 or not isinstance(start, (int, float)):
        return None
    if isinstance(start, bool):
        return None
    return ChildRecord(pid, float(start), ticks if type(ticks) is int else None)


FAILED_STATE = "failed"


class ExitReport(Value):
    """One end of an app-server, as the keeper saw it."""

    __slots__ = ("at", "description", "reason")

    def __init__(self, at: str, description: str, reason: str) -> None:
        self.at = at  # ISO 8601, UTC
        self.description = description  # "exit status 3", "killed by SIGSEGV"
        self.reason = reason  # crashed, unresponsive, stopped, ...

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "description": self.description, "reason": self.reason}


def exit_from_json(value: object) -> ExitReport | None:
    if not isinstance(value, dict):
        return None
    at, description, reason = value.get("at"), value.get("description"), value.get("reason")
    if not (isinstance(at, str) and isinstance(description, str) and isinstance(reason, str)):
        return None
    return ExitReport(at, description, reason)


class KeeperReport(Value):
    """What the keeper publishes about its app-server, for `status` and `version`."""

    __slots__ = ("failed_exits", "failure", "last_exit", "restarts", "retry_at", "since", "state")

    def __init__(
        self,
        state: str,  # supervision.KeeperState's value
        since: str,  # when it entered that state, ISO 8601
        restarts: int = 0,
        last_exit: ExitReport | None = None,
        # Why it gave up, and the exits that made it, when state is "failed".
        failure: str | None = None,
        failed_exits: tuple[ExitReport, ...] = (),
        # When it starts the app-server again, while state is "backoff" (ISO 8601).
        retry_at: str | None = None,
    ) -> None:
        self.state = state
        self.since = since
        self.restarts = restarts
        self.last_exit = last_exit
        self.failure = failure
        self.failed_exits = failed_exits
        self.retry_at = retry_at

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {
            "state": self.state,
            "since": self.since,
            "restarts": self.restarts,
            "lastExit": None if self.last_exit is None else self.last_exit.to_json(),
        }
        if self.retry_at is not None:
            value["retryAt"] = self.retry_at
        if self.failure is not None:
            value["failure"] = self.failure
            value["failedExits"] = [report.to_json() for report in self.failed_exits]
        return value


def keeper_from_json(value: object) -> KeeperReport | None:
    if not isinstance(value, dict):
        return None
    state, since, restarts = value.get("state"), value.get("since"), value.get("restarts", 0)
    if not (isinstance(state, str) and isinstance(since, str)) or type(restarts) is not int:
        return None
    failure = value.get("failure")
    exits = value.get("failedExits")
    retry_at = value.get("retryAt")
    return KeeperReport(
        state=state,
        since=since,
        restarts=restarts,
        last_exit=exit_from_json(value.get("lastExit")),
        failure=failure if isinstance(failure, str) else None,
        failed_exits=tuple(
            report
            for report in (exit_from_json(item) for item in (exits or []))
            if report is not None
        )
        if isinstance(exits, list)
        else (),
        retry_at=retry_at if isinstance(retry_at, str) else None,
    )


_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "pid": int,
    "bootId": str,
    "executable": str,
    "executableDigest": str,
}
_KNOWN = {
    *_REQUIRED,
    "processStartTime",
    "processStartSeconds",
    "processIdentity",
    "remoteControlEnabled",
    "socketPath",
    "version",
    "sessionId",
    "appServerPid",
    "appServerStartSeconds",
    "appServerStartTicks",
    "keeper",
}


def record_from_json(path: StrPath, value: dict[str, Any]) -> PidRecord:
    for key, kind in _REQUIRED.items():
        if not isinstance(value.get(key), kind) or isinstance(value.get(key), bool):
            raise StateFileError(f"{path}: missing or invalid {key!r}")
    if value["pid"] <= 0:
        raise StateFileError(f"{path}: invalid 'pid' {value['pid']}")
    # Records written before processStartSeconds held the number in processStartTime.
    seconds = value.get("processStartSeconds", value.get("processStartTime"))
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        raise StateFileError(f"{path}: missing or invalid 'processStartSeconds' (processStartTime)")
    identity = value.get("processIdentity")
    ticks = identity.get("startTicks") if isinstance(identity, dict) else None
    remote = value.get("remoteControlEnabled")
    session = value.get("sessionId")
    return PidRecord(
        pid=value["pid"],
        process_start_time=float(seconds),
        start_ticks=ticks if type(ticks) is int else None,
        boot_id=value["bootId"],
        executable=value["executable"],
        executable_digest=value["executableDigest"],
        remote_control_enabled=remote if isinstance(remote, bool) else None,
        socket_path=value.get("socketPath") if isinstance(value.get("socketPath"), str) else None,
        version=value.get("version") if isinstance(value.get("version"), str) else None,
        session_id=session if type(session) is int and session > 0 else None,
        app_server=child_from_json(value),
        keeper=keeper_from_json(value.get("keeper")),
        extra={key: item for key, item in value.items() if key not in _KNOWN},
    )


def read_record(path: StrPath) -> PidRecord | None:
    """The record, None when absent; StateFileError naming the file when unreadable."""
    value = read_json_object(path)
    return None if value is None else record_from_json(path, value)


def write_record(path: StrPath, record: PidRecord) -> None:
    from supervisor.statefile import write_json_atomic  # writers only

    write_json_atomic(path, record.to_json())


def remove_record(path: StrPath) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except IsADirectoryError as error:  # unlink(2) says EISDIR on Linux
        raise StateFileError(f"{path} is a directory, not a pid record; remove it") from error
