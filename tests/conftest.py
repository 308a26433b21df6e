"""Fixtures that run codexd as a user would: real processes in a temporary CODEX_HOME.

Every process a test starts is stopped at teardown, even when the test fails:
anything the test registered, then everything whose environment or title names the
test's home (the CLI pins CODEX_HOME into every worker it launches), until none
is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from supervisor.paths import HomePaths, private_socket_dir
from supervisor.standalone import RELEASE_MARKER

# Where the test environment's codexd lives: the managed binary shim execs it.
CODEXD = Path(sys.executable).with_name("codexd")
COMMAND_TIMEOUT_SECONDS = 60.0
# Short enough for a test, long enough for a loaded 2-core machine.
TEST_STOP_GRACE_SECONDS = "5"


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll `condition` until it returns something truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.01)


def is_gone(pid: int) -> bool:
    """Exited, zombies included (this sandbox's init does not reap orphans)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def processes_of_home(home: Path) -> list[psutil.Process]:
    """Live processes whose environment names `home` as CODEX_HOME, or whose title
    does."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.pid == os.getpid() or process.status() == psutil.STATUS_ZOMBIE:
                continue
            # A worker's title (`codexd updater <home>`) names it even while its
            # environment cannot be read (mid-execve).
            title = command_line(process)
            if process.environ().get("CODEX_HOME") == str(home) or (
                title.startswith("codexd ") and title.endswith(f" {home}")
            ):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def command_line(process: psutil.Process) -> str:
    """The process's command line as one string (a title set with setproctitle reads
    as a single word)."""
    try:
        return " ".join(part for part in process.cmdline() if part)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return ""


def app_server_pids(home: Path) -> list[int]:
    """Live app-servers serving `home`: the processes the keeper runs, not the CLIs."""
    return [
        process.pid
        for process in processes_of_home(home)
        if " app-server --listen " in f" {command_line(process)} "
    ]


def _worker_pids(home: Path, title: str, command: str) -> list[int]:
    """Live workers of `home`, by their title, or their command line (before they set a
    title, or in a release without setproctitle). A keeper's probe child, forked with
    the keeper's title, is not one."""
    pids = []
    for process in processes_of_home(home):
        line = command_line(process)
        if not (line.startswith(title) or f" {command} " in f" {line} "):
            continue
        with contextlib.suppress(psutil.Error):
            parent = process.parent()
            if parent is not None and command_line(parent) == line:
                continue
        pids.append(process.pid)
    return pids


def updater_pids(home: Path) -> list[int]:
    """Live updaters of `home` (their title is `codexd updater <home>`)."""
    return _worker_pids(home, "codexd updater ", "app-server daemon pid-update-loop")


def keeper_pids(home: Path) -> list[int]:
    """Live keepers of `home` (their title is `codexd keeper <home>`)."""
    return _worker_pids(home, "codexd keeper ", "app-server daemon keeper")


def sweep_home(home: Path, timeout: float = 30.0) -> None:
    """Kill every process of `home` until two sweeps in a row find none. One sweep is
    not enough: a worker mid-`execve` (the updater re-executing) shows an empty
    environment for a moment, and a keeper or updater can relaunch the other between
    the listing and the kill. Each sweep stops all it found before it kills any, so
    none of them can start another."""
    deadline = time.monotonic() + timeout
    quiet_sweeps = 0
    while quiet_sweeps < 2:
        found = processes_of_home(home)
        if not found:
            quiet_sweeps += 1
            continue
        quiet_sweeps = 0
        if time.monotonic() >= deadline:
            raise AssertionError(f"processes of {home} keep appearing: {found}")
        for process in found:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.suspend()
        kill_and_reap(found)


def kill_and_reap(processes: list[psutil.Process]) -> None:
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    deadline = time.monotonic() + 10
    for process in processes:
        while not is_gone(process.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        with contextlib.suppress(psutil.NoSuchProcess, psutil.TimeoutExpired, ChildProcessError):
            process.wait(0)  # reaps our own children


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def json(self) -> dict[str, Any]:
        assert self.returncode == 0, f"exit {self.returncode}: {self.stderr}"
        lines = self.stdout.splitlines()
        assert len(lines) == 1, f"expected one line of JSON, got {self.stdout!r}"
        value = json.loads(lines[0])
        assert isinstance(value, dict)
        return value


@dataclass
class Home:
    """A temporary CODEX_HOME with a managed binary that runs this checkout's codexd."""

    path: Path
    env: dict[str, str]
    started: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def paths(self) -> HomePaths:
        return HomePaths(self.path)

    def install_managed_shim(self, target: Path = CODEXD) -> Path:
        """A managed binary that runs `target` (this checkout's codexd), marked as a
        codexd release so the keeper and the updater run from it."""
        managed = self.paths.managed_binary
        managed.parent.mkdir(parents=True, exist_ok=True)
        managed.write_text(f'#!/bin/sh\nexec "{target}" "$@"\n')
        managed.chmod(0o755)
        (managed.parent / RELEASE_MARKER).write_text("release=test-shim\n")
        return managed

    def run(self, *args: str, env: dict[str, str] | None = None) -> Result:
        completed = subprocess.run(
            [str(CODEXD), *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
            stdin=subprocess.DEVNULL,
        )
        return Result(completed.returncode, completed.stdout, completed.stderr)

    def ok(self, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
        return self.run(*args, env=env).json

    def spawn(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """Start a codexd command without waiting; it is killed at teardown."""
        process = subprocess.Popen(
            [str(CODEXD), *args],
            env={**self.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self.started.append(process)
        return process

    def record(self) -> dict[str, Any] | None:
        try:
            value = json.loads(self.paths.app_server_record.read_text())
        except FileNotFoundError:
            return None
        assert isinstance(value, dict)
        return value

    def app_server_pids(self) -> list[int]:
        return app_server_pids(self.path)

    def keeper_pids(self) -> list[int]:
        return keeper_pids(self.path)

    def serving(self, keeper: int) -> int:
        """Assert that one keeper (`keeper`, the pid `start` printed) serves the home with
        one app-server, its child, both named in the record; the app-server's pid."""
        assert self.keeper_pids() == [keeper]
        [app_server] = self.app_server_pids()
        assert psutil.Process(app_server).ppid() == keeper
        record = self.record()
        assert record is not None
        assert record["pid"] == keeper
        assert record["appServerPid"] == app_server
        return app_server

    def nothing_runs(self) -> bool:
        return not self.keeper_pids() and not self.app_server_pids()

    def cleanup(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
            process.communicate()
        sweep_home(self.path)
        # The private directory a too-long socket path was bound in (a killed server
        # leaves its socket in it): every test removes what it made.
        private = private_socket_dir(
            self.paths.socket_path, os.getuid(), self.env.get("XDG_RUNTIME_DIR")
        )
        shutil.rmtree(private, ignore_errors=True)


def make_home(path: Path) -> Home:
    path.mkdir(parents=True, exist_ok=True)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("CODEXD_") and key != "CODEX_HOME"
    }
    env.update(CODEX_HOME=str(path), CODEXD_STOP_GRACE_SECONDS=TEST_STOP_GRACE_SECONDS)
    return Home(path=path, env=env)


@pytest.fixture
def bare_home(tmp_path: Path) -> Iterator[Home]:
    """A home with no managed binary."""
    home = make_home(tmp_path / "home")
    try:
        yield home
    finally:
        home.cleanup()


@pytest.fixture
def home(bare_home: Home) -> Home:
    """A home whose managed binary runs this checkout's codexd."""
    bare_home.install_managed_shim()
    return bare_home


# Homes installed from real releases (tests/updating.py), shared by the updater's tests
# and the update commands': the session's releases are built once.
from tests.updating import channel, installed, releases  # noqa: E402, F401
