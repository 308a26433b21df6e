"""Pid records: the JSON file that says which process a worker is.

The record says who; the `.pid.lock` beside it says whether: the worker holds
that lock for its whole life, so locked = alive, whatever the record says.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from supervisor.identity import ProcessIdentity, lstart
from supervisor.statefile import StateFileError, read_json_object, write_json_atomic


@dataclass(frozen=True)
class PidRecord:
    pid: int
    process_start_time: float
    boot_id: str
    executable: str
    executable_digest: str
    # App-server only.
    remote_control_enabled: bool | None = None
    socket_path: str | None = None
    version: str | None = None
    # codex's own identity check: field 22 of /proc/<pid>/stat.
    start_ticks: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def identity(self) -> ProcessIdentity:
        return ProcessIdentity(self.pid, self.process_start_time, self.boot_id)

    def with_version(self, version: str) -> PidRecord:
        return replace(self, version=version)

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
        return value


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
}


def record_from_json(path: Path, value: dict[str, Any]) -> PidRecord:
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
        extra={key: item for key, item in value.items() if key not in _KNOWN},
    )


def read_record(path: Path) -> PidRecord | None:
    """The record, None when absent; StateFileError naming the file when unreadable."""
    value = read_json_object(path)
    return None if value is None else record_from_json(path, value)


def write_record(path: Path, record: PidRecord) -> None:
    write_json_atomic(path, record.to_json())


def remove_record(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
