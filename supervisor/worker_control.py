"""Starting and ending the detached workers (the keeper and the updater) from outside:
their commands and environment, a stop with grace window that signals only a proven
worker, and the end of what a dead keeper left behind.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from supervisor import config
from supervisor.config import PAUSE_ENV
from supervisor.decisions import StopStep, next_stop_step
from supervisor.errors import DaemonError
from supervisor.faults import pause_point
from supervisor.identity import current_boot_id, identity_of
from supervisor.locks import lock_holders
from supervisor.paths import lock_path_for
from supervisor.pidrecord import PidRecord
from supervisor.process_handle import ProcessHandle
from supervisor.procfs import environment_value, has_open, proc_stat, session_members
from supervisor.standalone import RELEASE_MARKER

KEEPER_ARGS = ("app-server", "daemon", "keeper")
UPDATER_ARGS = ("app-server", "daemon", "pid-update-loop")
KEEPER_PAUSE_PREFIX = "keeper-"
# What a keeper's app-server leaves behind gets this long between TERM and KILL.
LEFTOVER_GRACE_SECONDS = 5.0
# How long `stop` waits for a keeper beyond its own grace window: the keeper spends up
# to this long ending what is left below the app-server before it exits.
KEEPER_EXIT_MARGIN_SECONDS = LEFTOVER_GRACE_SECONDS + 5.0


def is_codexd_release(executable: Path) -> bool:
    """A managed binary install.sh put in place (a release with its marker), which
    takes codexd's hidden worker commands: not a bare codex."""
    return (executable.parent / RELEASE_MARKER).is_file()


def own_command() -> list[str]:
    """How to run the codexd that runs this process, with the same interpreter flags."""
    flags = [flag for flag, on in (("-I", sys.flags.isolated), ("-S", sys.flags.no_site)) if on]
    return [sys.executable, *flags, os.path.abspath(sys.argv[0])]


def keeper_command(managed_binary: Path) -> list[str]:
    """The keeper runs the managed release's codexd when the managed binary is a codexd
    release, so an update moves the keeper too; with a bare codex there (it has no
    keeper), the keeper is the codexd running this command."""
    if is_codexd_release(managed_binary):
        return [str(managed_binary), *KEEPER_ARGS]
    return [*own_command(), *KEEPER_ARGS]


def worker_environment(home: Path) -> dict[str, str]:
    """The CLI's environment, pinned to this home, without test hooks but the keeper's
    own (`keeper-*` points)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key != PAUSE_ENV or value.startswith(KEEPER_PAUSE_PREFIX)
    }
    env[config.CODEX_HOME_ENV] = str(home)
    return env


def proven_worker(record: PidRecord, lock: Path) -> bool:
    """The recorded process is the live worker: same start time and boot, and it holds
    the worker's lock open. A record can be planted; a planted one names a process that
    has none of our locks open, and is never signalled."""
    live = identity_of(record.pid)
    if live is None or not live.same_process(record.identity):
        return False
    return has_open(record.pid, lock)


def stop_with_grace(name: str, record: PidRecord, record_path: Path, grace: float) -> None:
    """SIGTERM, the grace window, SIGKILL, then an error if it still lives. Only a proven
    worker is signalled, through a pidfd opened before the proof."""
    lock = lock_path_for(record_path)
    with ProcessHandle(record.pid) as handle:
        if not proven_worker(record, lock):
            if identity_of(record.pid) is not None and not has_open(record.pid, lock):
                raise DaemonError(
                    f"{record_path} names pid {record.pid}, which does not hold {lock}; "
                    "refusing to signal it (inspect the record by hand)"
                )
            return  # already gone
        handle.send(signal.SIGTERM)
        pause_point("signalled")
        killed = False
        wait = grace
        while True:
            step = next_stop_step(handle.wait(wait), killed)
            if step is StopStep.DONE:
                return
            if step is StopStep.GIVE_UP:
                raise DaemonError(
                    f"{name} (pid {record.pid}) is still alive {config.KILL_WAIT_SECONDS:g} s "
                    "after SIGKILL"
                )
            handle.send(signal.SIGKILL)
            killed, wait = True, config.KILL_WAIT_SECONDS


def end_leftovers(record: PidRecord, home: Path) -> list[int]:
    """End what a dead worker's session still runs (a SIGKILLed keeper's app-server jobs,
    re-parented to init); the pids ended.

    A member is recognised by the session the worker was launched in, started no
    earlier than the worker, in this boot, with this home in its environment (every
    worker pins CODEX_HOME, and its children inherit it): the session id outlives its
    leader, the start time keeps a reused id out, and a record planted to name someone
    else's session finds none of theirs."""
    if record.session_id is None or record.boot_id != current_boot_id():
        return []
    ticks = record.start_ticks
    if ticks is None:
        return []
    handles = []
    for member in session_members(record.session_id, ticks):
        if environment_value(member.pid, config.CODEX_HOME_ENV) != str(home):
            continue
        handle = ProcessHandle(member.pid)
        # Still the process we found (the pidfd pins it from here on)?
        current = proc_stat(member.pid)
        if current is not None and (current.sid, current.start_ticks) == (
            member.sid,
            member.start_ticks,
        ):
            handles.append(handle)
        else:
            handle.close()
    if not handles:
        return []
    try:
        for handle in handles:
            handle.send(signal.SIGTERM)
        deadline = time.monotonic() + LEFTOVER_GRACE_SECONDS
        for handle in handles:
            if not handle.wait(max(deadline - time.monotonic(), 0)):
                handle.send(signal.SIGKILL)
    finally:
        for handle in handles:
            handle.close()
    return [handle.pid for handle in handles]


def unnamed_holder_message(record_path: Path) -> str:
    """Why a held lock has no live worker to show for it, naming who holds it."""
    lock = lock_path_for(record_path)
    holders = ", ".join(str(pid) for pid in lock_holders(lock)) or "an unknown process"
    return (
        f"{lock} is held (pid {holders}) but {record_path} names no live worker: a "
        "worker that never finished starting, or a process that kept the lock; stop "
        "that process to continue"
    )
