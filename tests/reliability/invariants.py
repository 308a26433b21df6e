"""What must hold for a home whenever no codexd command runs, whatever happened before.

- at most one keeper, one app-server and one updater serve the home; an app-server
  runs only as its keeper's child (none outlives its keeper);
- the pid record names the keeper (pid and start time) and the app-server it runs,
  and `app-server.pid.lock` is held exactly while a keeper runs, by the keeper alone
  (nothing it started has the lock open); the same for the updater and its lock;
- nobody holds `daemon.lock`;
- every live process whose environment names the home is accounted for: the keeper
  and what runs below it, the updater and what runs below it (a pass, its installer),
  or one the caller lists;
- settings.json, when present, is the JSON object codexd writes; the state dir is
  0700 and every state file in it 0600;
- a running app-server answers the `initialize` handshake within 2 s.
"""

from __future__ import annotations

import contextlib
import json
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from supervisor.control_socket import ProbeError, probe
from supervisor.locks import FlockLock, lock_holders
from supervisor.paths import HomePaths, lock_path_for
from tests.conftest import command_line, processes_of_home, wait_for

PROBE_TIMEOUT_SECONDS = 2.0
LOCK_SETTLE_SECONDS = 2.0
# A process killed a moment ago (and a worker it was launching) needs a moment to go;
# a keeper whose app-server just died restarts it within its restart delay.
SETTLE_SECONDS = 15.0
STATE_FILES = ("settings.json", "app-server.pid", "app-server-updater.pid", "daemon.lock")


@dataclass(frozen=True)
class HomeState:
    keeper: int | None
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
    """What a process of the home is, by its title (or, before a worker sets its title,
    its command line)."""
    line = f" {command_line(process)} "
    if not line.strip():
        return "gone"
    if line.startswith(" codexd update pass "):
        return "pass"  # the child an updater runs a pass in
    if line.startswith(" codexd updater ") or " app-server daemon pid-update-loop " in line:
        # A pass child, caught before it set its own title.
        with contextlib.suppress(psutil.Error):
            parent = process.parent()
            if parent is not None and command_line(parent) == command_line(process):
                return "pass"
        return "updater"
    if line.startswith(" codexd probe "):
        return "probe"
    if line.startswith(" codexd keeper ") or " app-server daemon keeper " in line:
        # A probe the keeper forked, caught before it set its own title.
        with contextlib.suppress(psutil.Error):
            parent = process.parent()
            if parent is not None and command_line(parent) == command_line(process):
                return "probe"
        return "keeper"
    if " app-server --listen " in line:
        return "app-server"
    return "other: " + line.strip()


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
    # A child the worker is forking has the lock open until it closes it or execs: a
    # moment, which a leaked lock outlasts.
    lock = lock_path_for(record_path)
    try:
        wait_for(lambda: lock_holders(lock) == [process.pid], timeout=LOCK_SETTLE_SECONDS)
    except AssertionError:
        holders = lock_holders(lock)
        raise AssertionError(
            f"{lock} is open in {holders}, not only in {role} {process.pid}"
        ) from None
    return process.pid


def _app_server(keeper: int | None, record_path: Path, procs: list[psutil.Process]) -> int | None:
    """The one app-server, a child of the keeper, named in the keeper's record. (What
    runs below it may look like one: a subshell of the managed binary's script.)"""
    live = [
        process
        for process in procs
        if _role(process) == "app-server"
        and (process.ppid() == keeper or not _under(process, ("keeper",)))
    ]
    assert len(live) <= 1, f"more than one app-server: {_describe(live)}"
    if not live:
        return None
    process = live[0]
    assert keeper is not None, f"app-server {process.pid} runs without a keeper"
    assert process.ppid() == keeper, f"app-server {process.pid} is not keeper {keeper}'s child"
    record = _read_json(record_path) or {}
    named = record.get("appServerPid")
    assert named == process.pid, f"{record_path} names app-server {named}, not {process.pid}"
    return process.pid


def _under(process: psutil.Process, roles: tuple[str, ...]) -> bool:
    """Below a live keeper (what the app-server started, a probe) or updater (a pass in
    progress, and its installer)."""
    try:
        return any(_role(parent) in roles for parent in process.parents())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _unaccounted(home: Path, allowed: set[int]) -> list[psutil.Process]:
    return [
        process
        for process in processes_of_home(home)
        if process.pid not in allowed
        and _role(process) not in ("keeper", "updater")
        and not _under(process, ("keeper", "updater"))
    ]


def check_home(
    home: Path, *, allow: set[int] | None = None, answers: bool = True, busy: bool = False
) -> HomeState:
    """Assert every invariant above; return what runs. `allow` lists pids of processes
    the caller started itself (a bystander, a client it still runs); `busy`: an updater
    runs passes back to back, so daemon.lock may be held."""
    paths = HomePaths(home)
    allowed = set(allow or ())
    # A CLI or launcher killed just now may take a moment to vanish; nothing else may.
    try:
        wait_for(lambda: not _unaccounted(home, allowed), timeout=SETTLE_SECONDS)
    except AssertionError:
        orphans = _describe(_unaccounted(home, allowed))
        raise AssertionError(f"orphaned processes of {home}: {orphans}") from None
    procs = processes_of_home(home)
    keeper = _worker(paths.app_server_record, "keeper", procs)
    app_server = _app_server(keeper, paths.app_server_record, procs)
    updater = _worker(paths.updater_record, "updater", procs)

    if not busy:
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
    return HomeState(keeper, app_server, updater, remote_control)
