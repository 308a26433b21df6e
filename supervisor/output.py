"""The JSON objects the commands print. Keys and values are codex's, so clients
written for codex parse them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from supervisor.decisions import RemoteControlStatus
from supervisor.version import CODEXD_VERSION

BACKEND_PID = "pid"


class LifecycleStatus(Enum):
    STARTED = "started"
    ALREADY_RUNNING = "alreadyRunning"
    RESTARTED = "restarted"
    STOPPED = "stopped"
    NOT_RUNNING = "notRunning"
    RUNNING = "running"


@dataclass(frozen=True)
class LifecycleOutput:
    status: LifecycleStatus
    managed: bool  # a managed app-server runs (backend "pid")
    managed_codex_path: Path
    managed_codex_version: str | None
    socket_path: Path
    pid: int | None = None  # only when this call started the process
    app_server_version: str | None = None

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


@dataclass(frozen=True)
class RemoteControlOutput:
    status: RemoteControlStatus
    managed: bool
    remote_control_enabled: bool
    socket_path: Path
    app_server_version: str | None = None

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


@dataclass(frozen=True)
class BootstrapOutput:
    remote_control_enabled: bool
    auto_update_enabled: bool
    managed_codex_path: Path
    managed_codex_version: str | None
    socket_path: Path
    app_server_version: str
    persistence: str | None = None  # "systemd" or "cron" under --persist
    warning: str | None = None  # for stderr, not the JSON

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


@dataclass(frozen=True)
class UnpersistOutput:
    removed: list[str]  # "systemd", "cron"

    def to_json(self) -> dict[str, Any]:
        status = "unpersisted" if self.removed else "notPersisted"
        return {"status": status, "removed": self.removed}


@dataclass(frozen=True)
class StopAllOutput:
    """`stop --all`: the app-server and the updater."""

    app_server_stopped: bool
    updater_stopped: bool

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
