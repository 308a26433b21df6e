"""What must hold for a home whenever no codexd command runs, whatever happened before.

- at most one app-server and at most one updater serve the home;
- the pid record names the app-server (pid and start time) and its `.pid.lock` is
  held exactly while one runs; the same for the updater;
- nobody holds `daemon.lock`;
- every live process whose environment names the home is accounted for: the
  app-server, the updater and the installer it runs, or one the caller lists;
- settings.json, when present, is the JSON object codexd writes; the state dir is
  0700 and every state file in it 0600;
- a running app-server answers the `initialize` handshake within 2 s.
"""

from __future__ import annotations

import json
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from supervisor.control_socket import ProbeError, probe
from supervisor.locks import FlockLock
from supervisor.paths import HomePaths, lock_path_for
from tests.conftest import processes_of_home, wait_for

PROBE_TIMEOUT_SECONDS = 2.0
# A process killed a moment ago (and a worker it was launching) needs a moment to go.
SETTLE_SECONDS = 15.0
STATE_FILES = ("settings.json", "app-server.pid", "app-server-updater.pid", "daemon.lock")


@dataclass(frozen=True)
class HomeState:
    app_server: int | None
    updater: int | None
    remote_control: bool | None  # settings.json's value, None when absent


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    value = json.loads(text)
    assert isinstance(value, dict), f"{path} does not hold a JSON object: {text!r}"
    return value


def _role(process: psutil.Process) -> str:
    try:
        cmdline = process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "gone"
    if "pid-update-loop" in cmdline:
        return "updater"
    if "app-server" in cmdline and "--listen" in cmdline:
        return "app-server"
    return "other: " + " ".join(cmdline)


def _describe(processes: list[psutil.Process]) -> str:
    return ", ".join(f"{process.pid} ({_role(process)})" for process in processes) or "none"


def _worker(record_path: Path, role: str, procs: list[psutil.Process]) -> int | None:
    """The one live worker of `role`, checked against its record and lock."""
    live = [process for process in procs if _role(process) == role]
    assert len(live) <= 1, f"more than one {role}: {_describe(live)}"
    locked = FlockLock(lock_path_for(record_path)).is_locked()
    if not live:
        assert not locked, f"{lock_path_for(record_path)} is held but no {role} runs"
        return None
    process = live[0]
    assert locked, f"{role} {process.pid} runs but {lock_path_for(record_path)} is free"
    record = _read_json(record_path)
    assert record is not None, f"{role} {process.pid} runs but {record_path} is missing"
    named = record.get("pid")
    assert named == process.pid, f"{record_path} names {named}, not {role} {process.pid}"
    # processStartSeconds where the record also carries codex's string form.
    start = record.get("processStartSeconds", record.get("processStartTime"))
    assert isinstance(start, float | int) and abs(start - process.create_time()) < 0.01, (
        f"{record_path} start time {start} is not {role} {process.pid}'s {process.create_time()}"
    )
    return process.pid


def _under_updater(process: psutil.Process) -> bool:
    """A child of a live updater: the installer of a pass in progress."""
    try:
        return any(_role(parent) == "updater" for parent in process.parents())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _unaccounted(home: Path, allowed: set[int]) -> list[psutil.Process]:
    return [
        process
        for process in processes_of_home(home)
        if process.pid not in allowed
        and _role(process) not in ("app-server", "updater")
        and not _under_updater(process)
    ]


def check_home(home: Path, *, allow: set[int] | None = None, answers: bool = True) -> HomeState:
    """Assert every invariant above; return what runs. `allow` lists pids of processes
    the caller started itself (a bystander, a client it still runs)."""
    paths = HomePaths(home)
    allowed = set(allow or ())
    # A CLI or launcher killed just now may take a moment to vanish; nothing else may.
    try:
        wait_for(lambda: not _unaccounted(home, allowed), timeout=SETTLE_SECONDS)
    except AssertionError:
        orphans = _describe(_unaccounted(home, allowed))
        raise AssertionError(f"orphaned processes of {home}: {orphans}") from None
    procs = processes_of_home(home)
    app_server = _worker(paths.app_server_record, "app-server", procs)
    updater = _worker(paths.updater_record, "updater", procs)

    assert not FlockLock(paths.daemon_lock).is_locked(), f"{paths.daemon_lock} is still held"

    settings = _read_json(paths.settings_file)
    remote_control: bool | None = None
    if settings is not None:
        remote_control = settings.get("remoteControlEnabled")
        assert isinstance(remote_control, bool), f"{paths.settings_file}: {settings!r}"

    if paths.state_dir.exists():
        mode = stat.S_IMODE(paths.state_dir.stat().st_mode)
        assert mode == 0o700, f"{paths.state_dir} has mode {mode:04o}"
        for name in STATE_FILES:
            path = paths.state_dir / name
            if path.exists():
                mode = stat.S_IMODE(path.lstat().st_mode)
                assert mode == 0o600, f"{path} has mode {mode:04o}"

    if app_server is not None and answers:
        try:
            probe(paths.socket_path, timeout=PROBE_TIMEOUT_SECONDS)
        except ProbeError as error:
            raise AssertionError(
                f"app-server {app_server} runs but does not answer: {error}"
            ) from error
    return HomeState(app_server, updater, remote_control)
