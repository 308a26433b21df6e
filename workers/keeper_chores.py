"""The keeper's rare chores: relaunching an updater that died, bounding the logs, and
removing the socket a dead app-server left.

Each runs seldom, so each imports what it needs when it runs (the keeper stays small
while idle: tests/test_resident_imports.py).
"""

from __future__ import annotations

import os
import stat

from supervisor.config import LogSettings
from supervisor.decisions import WorkerState
from supervisor.paths import WorkerPaths
from supervisor.supervision import peer_note, should_relaunch_peer
from supervisor.worker_log import any_log_needs_rotation
from supervisor.worker_log import log as log_line


def log(message: str) -> None:
    log_line("keeper", message)


def heal_updater(paths: WorkerPaths, seen: WorkerState | None) -> WorkerState | None:
    """Relaunch an updater that died without being asked (its record left behind),
    under daemon.lock; a busy lock means someone is at work: next time. `seen` is the
    updater's state at the last look; returns this look's."""
    from supervisor.errors import DaemonError
    from supervisor.worker_state import observe_worker

    try:
        state = observe_worker(paths.updater_record).state
    except DaemonError as error:  # an unreadable record: a person must look
        log(f"cannot check the updater: {error}")
        return seen
    note = peer_note("updater", seen, state)
    if note is not None:
        log(note)
    if not should_relaunch_peer(state):
        return state
    # Rare (an updater SIGKILLed, or OOM-killed): the lifecycle's imports only then.
    from supervisor.lifecycle import Daemon
    from supervisor.locks import AlreadyLocked
    from supervisor.prctl import SubreaperSuspended

    daemon = Daemon(paths.home_paths())
    try:
        with daemon.operation_lock(lambda lock: lock.acquire(timeout=0)):
            if not should_relaunch_peer(observe_worker(paths.updater_record).state):
                return state
            pid = daemon.launch_updater(while_detaching=SubreaperSuspended())
        log(f"relaunched the updater (pid {pid}): it had died without being asked")
    except (AlreadyLocked, DaemonError) as error:
        log(f"cannot relaunch the updater now: {error}")
    return state


def bound_logs(paths: WorkerPaths, settings: LogSettings) -> None:
    logs = (paths.app_server_log, paths.updater_log)
    if not any_log_needs_rotation(logs, settings.max_bytes):
        return
    # Rare (a log grew to CODEXD_LOG_MAX_BYTES): the rotation's imports only then.
    from supervisor.logs import rotate_if_needed

    try:
        for rotated in rotate_if_needed(paths.home_paths(), settings):
            log(f"rotated {rotated}")
    except Exception as error:  # a log we cannot rotate must not stop the keeper
        log(f"cannot rotate logs: {error}")


def remove_stale_socket(socket_path: str) -> None:
    """Remove the socket (and the symlink to it, and the private directory it was
    bound in, when empty) that a killed app-server left, unless something answers
    there. A symlink is followed only into a directory of ours."""
    from supervisor.control_socket import ProbeError, trusted_socket_target

    try:
        target = trusted_socket_target(socket_path)
    except ProbeError:
        return  # gone already, or not ours to touch
    import _socket  # at exit only (control_socket above imports it anyway)

    client = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        client.settimeout(1.0)
        client.connect(target)
        return  # alive: not ours to remove
    except OSError:
        pass
    finally:
        client.close()
    for path in dict.fromkeys([target, socket_path]):
        try:
            mode = os.lstat(path).st_mode
            if stat.S_ISSOCK(mode) or stat.S_ISLNK(mode):
                os.unlink(path)
        except OSError:
            pass
    if target != socket_path:
        try:
            os.rmdir(os.path.dirname(target))  # only when empty
        except OSError:
            pass
