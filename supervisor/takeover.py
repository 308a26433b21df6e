"""An app-server of ours that codexd did not start (run by hand, or by a desktop app's
SSH session) holds the control socket: who it is, and, with `--takeover`, stopping it
so the managed one can start.

The listener is named by the kernel (SO_PEERCRED on a connection to the socket) and
proven before any signal: it runs as our user, and it still has the listening socket
at our path open (its inode, from /proc/net/unix), through a pidfd opened before the
check. Another user's process is never signalled.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from supervisor import config
from supervisor.control_socket import ProbeError, ProbeInfo, trusted_socket_target
from supervisor.errors import DaemonError
from supervisor.identity import command_line
from supervisor.lean import Value
from supervisor.process_handle import ProcessHandle
from supervisor.procfs import holds_socket, listening_socket_inodes, owner_uid, proc_stat

UNMANAGED_MESSAGE = "app server is running but is not managed by codexd"
TAKEOVER_FLAG = "--takeover"


class UnmanagedServer(Value):
    """The process listening on our socket, as identified when we found it."""

    __slots__ = ("command", "pid", "socket_path", "start_ticks", "uid")

    def __init__(
        self,
        pid: int | None,  # None: the kernel did not say (no SO_PEERCRED)
        uid: int | None,
        command: str | None,
        start_ticks: int | None,
        socket_path: Path,
    ) -> None:
        self.pid = pid
        self.uid = uid
        self.command = command
        self.start_ticks = start_ticks
        self.socket_path = socket_path

    def describe(self) -> str:
        if self.pid is None:
            return f"socket {self.socket_path}"
        command = self.command or "command unknown"
        return f"pid {self.pid}: {command}; socket {self.socket_path}"


def identify(socket_path: Path, info: ProbeInfo) -> UnmanagedServer:
    peer = info.peer
    if peer is None:
        return UnmanagedServer(None, None, None, None, socket_path)
    stat = proc_stat(peer.pid)
    return UnmanagedServer(
        pid=peer.pid,
        uid=peer.uid,
        command=command_line(peer.pid),
        start_ticks=None if stat is None else stat.start_ticks,
        socket_path=socket_path,
    )


def refusal(server: UnmanagedServer) -> str:
    return f"{UNMANAGED_MESSAGE} ({server.describe()}); rerun with {TAKEOVER_FLAG} to stop it"


def take_over(server: UnmanagedServer, grace: float) -> None:
    """SIGTERM, the grace window, SIGKILL, to the proven listener; an error naming it
    when it cannot be proven or will not die."""
    if server.pid is None or server.uid is None:
        raise DaemonError(
            f"{UNMANAGED_MESSAGE} ({server.describe()}), and the kernel does not say which "
            "process listens: stop it yourself"
        )
    if server.uid != os.geteuid():
        raise DaemonError(f"{refusal(server)}: it runs as uid {server.uid}, not ours")
    with ProcessHandle(server.pid) as handle:
        if not listens_still(server):
            if handle.has_exited():
                return  # it went away by itself
            raise DaemonError(
                f"cannot take over ({server.describe()}): that process no longer listens "
                "on the socket; look again"
            )
        handle.send(signal.SIGTERM)
        if handle.wait(grace):
            return
        handle.send(signal.SIGKILL)
        if not handle.wait(config.KILL_WAIT_SECONDS):
            raise DaemonError(
                f"the unmanaged app-server ({server.describe()}) is still alive "
                f"{config.KILL_WAIT_SECONDS:g} s after SIGKILL"
            )


def listens_still(server: UnmanagedServer) -> bool:
    """The same process (start time), of our user, with our listening socket open."""
    assert server.pid is not None
    stat = proc_stat(server.pid)
    if stat is None or stat.is_zombie or stat.start_ticks != server.start_ticks:
        return False
    if owner_uid(server.pid) != os.geteuid():
        return False
    try:
        bound = trusted_socket_target(server.socket_path)
    except ProbeError:
        return False
    return holds_socket(server.pid, listening_socket_inodes(bound))
