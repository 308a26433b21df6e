"""The answers remote clients ask for many times a day, given without the lifecycle's
import graph: `version`, and `start` when an app-server already answers.

codex's own daemon answers these in 14 to 20 ms; a Python interpreter takes 7 ms to
start, and `pathlib`, `dataclasses`, `typing`, `json` and `socket` would each add
several more. So this module, and every module it imports, imports none of them
(tests/test_fast_path.py holds it to that); it joins the home's paths as strings.

It only ever answers the ordinary case, the same way the lifecycle would: anything
else (nothing answers, a record that does not read, a daemon.lock someone holds, a log
due for rotation, a directory to tighten) returns None, and the lifecycle
(supervisor/lifecycle.py) answers instead, with its messages and its repairs.
"""

from __future__ import annotations

import fcntl
import os

from supervisor import config
from supervisor.control_socket import ProbeError, ProbeInfo, probe
from supervisor.errors import DaemonError
from supervisor.faults import pause_point
from supervisor.flock import is_held, try_flock
from supervisor.managed import managed_version
from supervisor.output import LifecycleOutput, LifecycleStatus
from supervisor.paths import (
    APP_SERVER_LOG_NAME,
    APP_SERVER_RECORD_NAME,
    DAEMON_LOCK_NAME,
    LOCK_SUFFIX,
    MANAGED_BINARY_CACHE_NAME,
    MANAGED_BINARY_PARTS,
    SETTINGS_NAME,
    SOCKET_DIR_NAME,
    SOCKET_FILE_NAME,
    STATE_DIR_NAME,
    UPDATER_LOG_NAME,
)
from supervisor.pidrecord import read_record
from supervisor.private_dir import check_home_dirs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class _Home:
    """The paths the fast path touches, as strings."""

    def __init__(self, home: str) -> None:
        self.home = home
        self.state_dir = os.path.join(home, STATE_DIR_NAME)
        self.socket_path = os.path.join(home, SOCKET_DIR_NAME, SOCKET_FILE_NAME)
        self.managed_binary = os.path.join(home, *MANAGED_BINARY_PARTS)
        self.record = os.path.join(self.state_dir, APP_SERVER_RECORD_NAME)

    def state_file(self, name: str) -> str:
        return os.path.join(self.state_dir, name)


def version(home: str) -> dict[str, Any] | None:
    """`version`'s JSON when an app-server answers; None otherwise (the lifecycle then
    says why not)."""
    where = _Home(home)
    try:
        check_home_dirs(home)
        info = _answer(where)
        if info is None:
            return None
        managed = _managed(where)
        if managed is None:
            return None
        return _output(where, LifecycleStatus.RUNNING, managed, info)
    except DaemonError:
        return None


def start(home: str) -> dict[str, Any] | None:
    """`start`'s JSON when an app-server already answers (`alreadyRunning`), under
    daemon.lock as every mutating command is; None for anything else."""
    # Only `start` needs these: `version` does not pay for them.
    from supervisor.settings import load_settings
    from supervisor.statefile import check_state_files, remove_stale_temp_files

    where = _Home(home)
    try:
        # Strict: a loose directory is for the lifecycle to tighten.
        check_home_dirs(home, loose_ok=False)
        if not os.path.isdir(where.state_dir):
            return None
        check_state_files(where.state_dir)
        lock = _try_operation_lock(where)
        if lock is None:
            return None  # someone is at work: the lifecycle waits, and says for whom
        try:
            pause_point("locked")
            if _logs_due_for_rotation(where):
                return None
            remove_stale_temp_files(where.state_dir)
            load_settings(where.state_file(SETTINGS_NAME))  # a corrupt one is an error there
            managed = _managed(where)
            info = _answer(where) if managed is not None else None
            if info is None or managed is None:
                return None
            return _output(where, LifecycleStatus.ALREADY_RUNNING, managed, info)
        finally:
            os.close(lock)
    except DaemonError:
        return None


def _answer(where: _Home) -> ProbeInfo | None:
    try:
        return probe(where.socket_path, timeout=config.PROBE_TIMEOUT_SECONDS)
    except ProbeError:
        return None


def _managed(where: _Home) -> bool | None:
    """Whether a keeper of ours runs (its lock held, as `is_managed` judges it); None
    when its record does not read (the lifecycle names it)."""
    try:
        if not is_held(where.record + LOCK_SUFFIX):
            return False
    except OSError:
        return None
    read_record(where.record)  # StateFileError (a DaemonError) when it does not read
    return True


def _try_operation_lock(where: _Home) -> int | None:
    """daemon.lock's fd, locked, or None when someone holds it."""
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(where.state_file(DAEMON_LOCK_NAME), flags, 0o600)
    except OSError:
        return None
    try:
        if try_flock(fd, fcntl.LOCK_EX):
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


def _logs_due_for_rotation(where: _Home) -> bool:
    """A worker log at CODEXD_LOG_MAX_BYTES: the lifecycle rotates it."""
    limit = config.log_settings().max_bytes
    for name in (APP_SERVER_LOG_NAME, UPDATER_LOG_NAME):
        try:
            if os.stat(where.state_file(name)).st_size >= limit:
                return True
        except FileNotFoundError:
            continue
    return False


def _output(
    where: _Home, status: LifecycleStatus, managed: bool, info: ProbeInfo
) -> dict[str, Any]:
    return LifecycleOutput(
        status=status,
        managed=managed,
        managed_codex_path=where.managed_binary,
        managed_codex_version=managed_version(
            where.managed_binary, where.state_file(MANAGED_BINARY_CACHE_NAME)
        ),
        socket_path=where.socket_path,
        app_server_version=info.app_server_version,
    ).to_json()
