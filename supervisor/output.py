"""The JSON objects the commands print. Keys and values are codex's, so clients
written for codex parse them."""

from __future__ import annotations

import os

from supervisor.lean import Choice, Value
from supervisor.version import CODEXD_VERSION

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from supervisor.decisions import RemoteControlStatus

    StrPath = str | os.PathLike[str]

BACKEND_PID = "pid"


class LifecycleStatus(Choice):
    STARTED = "started"
    ALREADY_RUNNING = "alreadyRunning"
    RESTARTED = "restarted"
    STOPPED = "stopped"
    NOT_RUNNING = "notRunning"
    RUNNING = "running"


class LifecycleOutput(Value):
    __slots__ = (
        "app_server_version",
        "managed",
        "managed_codex_path",
        "managed_codex_version",
        "pid",
        "socket_path",
        "status",
    )

    def __init__(
        self,
        status: LifecycleStatus,
        managed: bool,  # a managed app-server runs (backend "pid")
        managed_codex_path: StrPath,
        managed_codex_version: str | None,
        socket_path: StrPath,
        pid: int | None = None,  # only when this call started the process
        app_server_version: str | None = None,
    ) -> None:
        self.status = status
        self.managed = managed
        self.managed_codex_path = managed_codex_path
        self.managed_codex_version = managed_codex_version
        self.socket_path = socket_path
        self.pid = pid
        self.app_server_version = app_server_version

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {"status": self.status.value}
        if self.managed:
            value["backend"] = BACKEND_PID
        if self.pid is not None:
            value["pid"] = self.pid
        value.update(
            managedCodexPath=str(self.managed_codex_path),
            managedCodexVersion=self.managed_codex_version,
            socketPath=str(self.socket_path),
            cliVersion=CODEXD_VERSION,
        )
        if self.app_server_version is not None:
            value["appServerVersion"] = self.app_server_version
        return value


class RemoteControlOutput(Value):
    __slots__ = (
        "app_server_version",
        "managed",
        "remote_control_enabled",
        "socket_path",
        "status",
    )

    def __init__(
        self,
        status: RemoteControlStatus,
        managed: bool,
        remote_control_enabled: bool,
        socket_path: StrPath,
        app_server_version: str | None = None,
    ) -> None:
        self.status = status
        self.managed = managed
        self.remote_control_enabled = remote_control_enabled
        self.socket_path = socket_path
        self.app_server_version = app_server_version

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {"status": self.status.value}
        if self.managed:
            value["backend"] = BACKEND_PID
        value.update(
            remoteControlEnabled=self.remote_control_enabled,
            socketPath=str(self.socket_path),
            cliVersion=CODEXD_VERSION,
        )
        if self.app_server_version is not None:
            value["appServerVersion"] = self.app_server_version
        return value


class BootstrapOutput(Value):
    __slots__ = (
        "app_server_version",
        "auto_update_enabled",
        "managed_codex_path",
        "managed_codex_version",
        "persistence",
        "remote_control_enabled",
        "socket_path",
        "warning",
    )

    def __init__(
        self,
        remote_control_enabled: bool,
        auto_update_enabled: bool,
        managed_codex_path: StrPath,
        managed_codex_version: str | None,
        socket_path: StrPath,
        app_server_version: str,
        persistence: str | None = None,  # "systemd" or "cron" under --persist
        warning: str | None = None,  # for stderr, not the JSON
    ) -> None:
        self.remote_control_enabled = remote_control_enabled
        self.auto_update_enabled = auto_update_enabled
        self.managed_codex_path = managed_codex_path
        self.managed_codex_version = managed_codex_version
        self.socket_path = socket_path
        self.app_server_version = app_server_version
        self.persistence = persistence
        self.warning = warning

    def to_json(self) -> dict[str, Any]:
        persisted = {} if self.persistence is None else {"persistence": self.persistence}
        return {
            "status": "bootstrapped",
            "backend": BACKEND_PID,
            "autoUpdateEnabled": self.auto_update_enabled,
            "remoteControlEnabled": self.remote_control_enabled,
            "managedCodexPath": str(self.managed_codex_path),
            "managedCodexVersion": self.managed_codex_version,
            "socketPath": str(self.socket_path),
            "cliVersion": CODEXD_VERSION,
            "appServerVersion": self.app_server_version,
            **persisted,
        }


class UnpersistOutput(Value):
    __slots__ = ("removed",)

    def __init__(self, removed: list[str]) -> None:
        self.removed = removed  # "systemd", "cron"

    def to_json(self) -> dict[str, Any]:
        status = "unpersisted" if self.removed else "notPersisted"
        return {"status": status, "removed": self.removed}


class StopAllOutput(Value):
    """`stop --all`: the app-server and the updater."""

    __slots__ = ("app_server_stopped", "updater_stopped")

    def __init__(self, app_server_stopped: bool, updater_stopped: bool) -> None:
        self.app_server_stopped = app_server_stopped
        self.updater_stopped = updater_stopped

    def to_json(self) -> dict[str, Any]:
        stopped = self.app_server_stopped or self.updater_stopped
        return {
            "status": _stopped(stopped),
            "appServer": _stopped(self.app_server_stopped),
            "updater": _stopped(self.updater_stopped),
            "cliVersion": CODEXD_VERSION,
        }


def _stopped(stopped: bool) -> str:
    status = LifecycleStatus.STOPPED if stopped else LifecycleStatus.NOT_RUNNING
    return status.value
