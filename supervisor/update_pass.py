"""One update pass as a typed record: what started it, what the installer did, what
happened to the app-server, whether the updater re-executed. The updater and
`codexd update` write it to `app-server-updater.last-pass.json`; `status` and `doctor`
read it back into the same record and judge it with `pass_outcome`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from supervisor.statefile import StateFileError, read_json_object, write_json_atomic


class Trigger(Enum):
    SCHEDULE = "schedule"
    SIGNAL = "signal"  # SIGUSR1 to the updater
    RETRY = "retry"  # a restart deferred for a busy app-server, tried again
    COMMAND = "command"  # `codexd update`


class InstallerResult(Enum):
    OK = "ok"
    FAILED = "failed"
    TIMED_OUT = "timedOut"
    NO_SOURCE = "noSource"


class RefreshOutcome(Enum):
    NOT_RUNNING = "notRunning"  # no managed app-server: nothing to refresh
    ALREADY_CURRENT = "alreadyCurrent"  # it runs the managed binary's image already
    RESTARTED = "restarted"  # it was restarted onto the managed binary and answered
    ROLLED_BACK = "rolledBack"  # the new release did not answer; the previous one runs
    DEFERRED = "deferred"  # behind, but busy: the restart waits (see deferredSince)


class PassOutcome(Enum):
    NO_PASS_YET = "noPassYet"
    FAILED = "failed"  # the pass raised: see its error
    INSTALLER_FAILED = "installerFailed"  # no release source, failed, timed out
    ROLLED_BACK = "rolledBack"  # a new release did not start; the previous one runs
    DEFERRED = "deferred"  # a new release waits for a busy app-server
    UPDATED = "updated"  # the app-server moved, or the updater re-executed
    UP_TO_DATE = "upToDate"


@dataclass(frozen=True)
class PassRecord:
    number: int
    started_at: str
    trigger: Trigger = Trigger.SCHEDULE
    installer: InstallerResult | None = None  # None: not run (a retry does not run it)
    installer_detail: str | None = None  # "exit status 2", ...
    managed_binary: str | None = None
    managed_digest: str | None = None
    app_server: RefreshOutcome | None = None
    busy_processes: int | None = None  # below the app-server, when the restart waited
    deferred_since: str | None = None  # when the restart first waited for it
    reexec: bool = False
    error: str | None = None
    pid: int | None = None
    finished_at: str | None = None
    next_pass_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {
            "pass": self.number,
            "startedAt": self.started_at,
            "trigger": self.trigger.value,
        }
        optional: dict[str, Any] = {
            "installer": None if self.installer is None else self.installer.value,
            "installerDetail": self.installer_detail,
            "managedBinary": self.managed_binary,
            "managedDigest": self.managed_digest,
            "appServer": None if self.app_server is None else self.app_server.value,
            "busyProcesses": self.busy_processes,
            "deferredSince": self.deferred_since,
            "error": self.error,
            "pid": self.pid,
            "finishedAt": self.finished_at,
            "nextPassAt": self.next_pass_at,
        }
        value.update({key: item for key, item in optional.items() if item is not None})
        if self.reexec:
            value["reexec"] = True
        return value


E = TypeVar("E", bound=Enum)


def _enum(kind: type[E], value: object) -> E | None:
    try:
        return kind(value)
    except ValueError:
        return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: object) -> int | None:
    return value if type(value) is int else None


# The installer's results as passes before this record wrote them.
_LEGACY_INSTALLER = {
    "timed out": InstallerResult.TIMED_OUT,
    "no release source": InstallerResult.NO_SOURCE,
}


def pass_from_json(value: dict[str, Any]) -> PassRecord:
    installer_text = value.get("installer")
    installer = _enum(InstallerResult, installer_text)
    if installer is None and isinstance(installer_text, str):
        installer = _LEGACY_INSTALLER.get(installer_text, InstallerResult.FAILED)
    return PassRecord(
        number=_number(value.get("pass")) or 0,
        started_at=_text(value.get("startedAt")) or "",
        trigger=_enum(Trigger, value.get("trigger")) or Trigger.SCHEDULE,
        installer=installer,
        installer_detail=_text(value.get("installerDetail")),
        managed_binary=_text(value.get("managedBinary")),
        managed_digest=_text(value.get("managedDigest")),
        app_server=_enum(RefreshOutcome, value.get("appServer")),
        busy_processes=_number(value.get("busyProcesses")),
        deferred_since=_text(value.get("deferredSince")),
        reexec=value.get("reexec") is True,
        error=_text(value.get("error")),
        pid=_number(value.get("pid")),
        finished_at=_text(value.get("finishedAt")),
        next_pass_at=_text(value.get("nextPassAt")),
    )


def pass_outcome(record: PassRecord | None) -> PassOutcome:
    if record is None:
        return PassOutcome.NO_PASS_YET
    if record.error:
        return PassOutcome.FAILED
    if record.installer is not None and record.installer is not InstallerResult.OK:
        return PassOutcome.INSTALLER_FAILED
    if record.installer is None and record.trigger is not Trigger.RETRY:
        return PassOutcome.INSTALLER_FAILED  # a pass that never got to run it
    if record.app_server is RefreshOutcome.ROLLED_BACK:
        return PassOutcome.ROLLED_BACK
    if record.app_server is RefreshOutcome.DEFERRED:
        return PassOutcome.DEFERRED
    if record.app_server is RefreshOutcome.RESTARTED or record.reexec:
        return PassOutcome.UPDATED
    return PassOutcome.UP_TO_DATE


def read_last_pass(path: Path) -> PassRecord | None:
    """The last pass, None when there is none or it cannot be read (a pass file is a
    report, never a reason to fail)."""
    try:
        value = read_json_object(path)
    except StateFileError:
        return None
    return None if value is None else pass_from_json(value)


def write_last_pass(path: Path, record: PassRecord) -> None:
    write_json_atomic(path, record.to_json())
