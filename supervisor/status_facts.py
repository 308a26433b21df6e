"""Facts `status` gathers beside its worker sections, which `doctor` judges too: what
the probe of the control socket saw (who listens, why nothing of ours answered), the
disk under the home, and how long each section took to gather."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from supervisor.control_socket import PeerCredentials, ProbeError, Unreachable, probe
from supervisor.paths import HomePaths
from supervisor.standalone import DiskUsage, release_disk_usage

T = TypeVar("T")


@dataclass(frozen=True)
class SocketProbe:
    """One `initialize` handshake on the control socket, as it went."""

    version: str | None  # the app-server version that answered; None: nothing did
    # Who accepted the connection (SO_PEERCRED), answering or not; None when nothing
    # did, or the platform cannot tell.
    listener: PeerCredentials | None = None
    unreachable: Unreachable | None = None  # why nothing of ours answered
    error: str | None = None  # the probe's message, naming the socket

    def to_json(self) -> dict[str, Any]:
        listener = self.listener
        return {
            "listener": None
            if listener is None
            else {"pid": listener.pid, "uid": listener.uid, "gid": listener.gid},
            "unreachable": None if self.unreachable is None else self.unreachable.value,
            "probeError": self.error,
        }


def probe_socket(socket_path: Path, timeout: float) -> SocketProbe:
    try:
        info = probe(socket_path, timeout=timeout)
    except ProbeError as error:
        return SocketProbe(None, error.peer, error.reason, str(error))
    return SocketProbe(info.app_server_version, info.peer)


LOW_DISK_FAIL_BYTES = 64 * 1024 * 1024  # state files and logs stop being written
LOW_DISK_WARNING_BYTES = 1024 * 1024 * 1024  # an update may need about 500 MB


@dataclass(frozen=True)
class DiskSection:
    """The file system the home is on, and what the managed install takes of it."""

    path: Path
    free_bytes: int | None  # for us (f_bavail); None when it cannot be read
    total_bytes: int | None
    usage: DiskUsage
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {
            "path": str(self.path),
            "freeBytes": self.free_bytes,
            "totalBytes": self.total_bytes,
            "releasesBytes": self.usage.releases,
            "codexBytes": self.usage.codex,
            "codexdBytes": self.usage.codexd,
            "managedInstallBytes": self.usage.total,
        }
        if self.error is not None:
            value["error"] = self.error
        return value


def gather_disk(paths: HomePaths) -> DiskSection:
    usage = release_disk_usage(paths)
    try:
        info = os.statvfs(paths.home)
    except OSError as error:
        return DiskSection(paths.home, None, None, usage, f"{paths.home}: {error.strerror}")
    return DiskSection(
        paths.home, info.f_bavail * info.f_frsize, info.f_blocks * info.f_frsize, usage
    )


class SectionTimer:
    """How long each section took to gather, in milliseconds: doctor's durationMs."""

    def __init__(self) -> None:
        self.milliseconds: dict[str, float] = {}

    def run(self, name: str, gather: Callable[[], T]) -> T:
        start = time.perf_counter()
        try:
            return gather()
        finally:
            self.milliseconds[name] = (time.perf_counter() - start) * 1000
