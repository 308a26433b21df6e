"""A process codexd did not start holds the control socket (an app-server run by hand
or by a desktop app's SSH session, or something that is no app-server at all): who it
is, what a command says about it, and, with `--takeover`, stopping it so the managed
one can start.

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
from supervisor.control_socket import (
    PeerCredentials,
    ProbeError,
    ProbeInfo,
    Unreachable,
    probe,
    trusted_socket_target,
)
from supervisor.decisions import (
    HolderAction,
    SocketUse,
    WorkerState,
    holder_action,
    is_managed,
    listener_is_ours,
    socket_holder,
)
from supervisor.errors import DaemonError
from supervisor.identity import command_line, process_state
from supervisor.lean import Value
from supervisor.process_handle import ProcessHandle
from supervisor.procfs import holds_socket, listening_socket_inodes, owner_uid, proc_stat
from supervisor.worker_state import Observation

UNMANAGED_MESSAGE = "app server is running but is not managed by codexd"
TAKEOVER_FLAG = "--takeover"
REPLACE_COMMAND = "codexd start --takeover"


class UnmanagedServer(Value):
    """The process listening on our socket, as identified when we found it."""

    __slots__ = ("command", "pid", "problem", "socket_path", "start_ticks", "uid")

    def __init__(
        self,
        pid: int | None,  # None: the kernel did not say (no SO_PEERCRED)
        uid: int | None,
        command: str | None,
        start_ticks: int | None,
        socket_path: Path,
        # None: an app-server, which answered; else what the probe saw (no app-server).
        problem: str | None = None,
    ) -> None:
        self.pid = pid
        self.uid = uid
        self.command = command
        self.start_ticks = start_ticks
        self.socket_path = socket_path
        self.problem = problem

    def describe(self) -> str:
        if self.pid is None:
            return f"socket {self.socket_path}"
        command = self.command or "command unknown"
        return f"pid {self.pid}: {command}; socket {self.socket_path}"

    def found(self) -> str:
        """What holds the socket, named."""
        if self.problem is None:
            return f"{UNMANAGED_MESSAGE} ({self.describe()})"
        who = "" if self.pid is None else f" (pid {self.pid}: {self.command or 'command unknown'})"
        return f"the control socket is held by a process that is not an app-server{who}: " + (
            self.problem
        )


def identify(
    socket_path: Path, peer: PeerCredentials | None, problem: str | None = None
) -> UnmanagedServer:
    """The listener the kernel named (`peer`); `problem`: what the probe saw when no
    app-server answered."""
    if peer is None or peer.pid <= 0:
        # pid 0: the listener is outside our pid namespace (we run in a sandbox or a
        # container): no process here to name or signal (`kill 0` is our own group).
        return UnmanagedServer(None, None, None, None, socket_path, problem)
    stat = proc_stat(peer.pid)
    command = command_line(peer.pid)
    return UnmanagedServer(
        pid=peer.pid,
        uid=peer.uid,
        # One line: a command line may hold newlines (`python -c` code).
        command=None if command is None else " ".join(command.split()),
        start_ticks=None if stat is None else stat.start_ticks,
        socket_path=socket_path,
        problem=problem,
    )


def cannot_signal(server: UnmanagedServer) -> str | None:
    """Why codexd may not stop this listener (another user's, or unnamed); None when
    it may, once proven."""
    if server.pid is None or server.uid is None:
        return f"{server.found()}; the kernel does not say which process listens: stop it yourself"
    if server.uid != os.geteuid():
        return (
            f"{server.found()}; it runs as uid {server.uid}, not as you, and codexd never "
            "signals another user's process: have its owner (or root) stop it"
        )
    return None


def refusal(server: UnmanagedServer, launching: bool = True) -> str:
    """Why a command will not act, and what works: --takeover for a command that has
    it (`launching`), else the commands that stop or replace it."""
    reason = cannot_signal(server)
    if reason is not None:
        return reason
    if launching:
        return f"{server.found()}; rerun with {TAKEOVER_FLAG} to stop it"
    return (
        f"{server.found()}; `kill -TERM {server.pid}` stops it, `{REPLACE_COMMAND}` replaces "
        "it with the managed one"
    )


def take_over(server: UnmanagedServer, grace: float) -> None:
    """SIGTERM, the grace window, SIGKILL, to the proven listener; an error naming it
    when it cannot be proven or will not die."""
    reason = cannot_signal(server)
    if reason is not None:
        raise DaemonError(reason)
    assert server.pid is not None
    with ProcessHandle(server.pid) as handle:
        if not listens_still(server):
            if not handle.has_exited():
                raise DaemonError(
                    f"cannot take over ({server.describe()}): that process no longer "
                    "listens on the socket; look again"
                )
            if _socket_listened_on(server.socket_path):
                # SO_PEERCRED names who called listen(): it passed the socket on.
                raise DaemonError(
                    f"cannot take over ({server.describe()}): that process is gone, but "
                    "another it passed the socket to still listens on it: stop it yourself"
                )
            return  # it went away by itself
        handle.send(signal.SIGTERM)
        if handle.wait(grace):
            return
        handle.send(signal.SIGKILL)
        if not handle.wait(config.KILL_WAIT_SECONDS):
            raise DaemonError(
                f"the process holding the control socket ({server.describe()}) is still "
                f"alive {config.KILL_WAIT_SECONDS:g} s after SIGKILL"
            )


def clear_socket(
    socket_path: Path, state: WorkerState, use: SocketUse, takeover: bool
) -> ProbeInfo | None:
    """With no managed app-server (`state`): refuse a listener this command would act
    on or launch into, naming it, or, with `takeover`, stop it. The answer of an
    unmanaged app-server that stays (`start` reports it); None otherwise."""
    seen: ProbeError | None = None
    try:
        info: ProbeInfo | None = probe(socket_path, timeout=config.PROBE_TIMEOUT_SECONDS)
    except ProbeError as error:
        info, seen = None, error
    listens = seen is not None and seen.reached_listener()
    action = holder_action(socket_holder(state, info is not None, listens), use, takeover)
    if action is HolderAction.PROCEED:
        return info
    if info is not None:
        server = identify(socket_path, info.peer)
    else:
        assert seen is not None
        server = identify(socket_path, seen.peer, str(seen))
    if action is HolderAction.REFUSE:
        raise DaemonError(refusal(server, launching=use is not SocketUse.LEAVE))
    take_over(server, config.stop_grace_seconds())
    return None


def foreign_listener(error: ProbeError, observation: Observation | None) -> str | None:
    """`version`'s line when a process of ours that is not the keeper's app-server
    listens and no app-server answered: named for what it is (its pid, what it is
    doing, its command line), not guessed at (overload); None otherwise."""
    peer = error.peer
    if peer is None or peer.pid <= 0 or error.reason is Unreachable.UNTRUSTED:
        return None  # unnamed, or another user's: the probe's message names it
    managed = observation is not None and is_managed(observation.state)
    record = None if observation is None else observation.record
    child = None if record is None else record.app_server
    if listener_is_ours(managed, peer.pid, None if child is None else child.pid):
        return None
    state = process_state(peer.pid)
    doing = f", {state}" if state else ""
    command = command_line(peer.pid)
    command = " ".join(command.split()) if command else "command unknown"
    remedy = (
        "stop it if it is not yours to keep, then `codexd restart`"
        if managed
        else f"`{REPLACE_COMMAND}` replaces it"
    )
    return (
        f"what listens on the control socket (pid {peer.pid}{doing}: {command}) is not "
        f"an app-server codexd started, and it does not answer as one: {error}; {remedy}"
    )


def _socket_listened_on(socket_path: Path) -> bool:
    try:
        bound = trusted_socket_target(socket_path)
    except ProbeError:
        return False
    return bool(listening_socket_inodes(bound))


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
