"""Faults a long-lived daemon meets: killed servers, killed CLIs, stubborn servers,
stale and corrupt records, and servers this daemon did not start."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from supervisor.config import PAUSE_ENV
from supervisor.control_socket import ProbeError, probe
from tests.conftest import Home, is_gone, wait_for

STUBBORN_SERVER = Path(__file__).parent / "fixtures" / "stubborn_app_server.py"
STUBBORN_EXIT_DELAY_ENV = "STUBBORN_EXIT_DELAY_SECONDS"
BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")
UNMANAGED_MESSAGE = "not managed by codexd"
# Generous: the time a detached worker or a killed CLI needs on a loaded machine.
SETTLE_SECONDS = 15.0


def the_only_server(home: Home) -> int:
    """The one keeper serving `home` (its app-server checked too), which its pid record
    names."""
    keepers = home.keeper_pids()
    assert len(keepers) == 1, f"expected exactly one keeper, found {keepers}"
    home.serving(keepers[0])
    record = home.record()
    assert record is not None
    assert record["processStartSeconds"] == pytest.approx(psutil.Process(keepers[0]).create_time())
    return keepers[0]


def assert_nothing_runs(home: Home) -> None:
    assert home.nothing_runs()
    assert home.record() is None


def launched_with_remote_control(home: Home, keeper: int) -> bool:
    return "remote_control" in psutil.Process(home.serving(keeper)).cmdline()


# --- a killed keeper ---------------------------------------------------------------------


def test_start_after_kill_9_of_the_keeper_launches_anew_and_no_app_server_outlives_it(
    home: Home,
) -> None:
    old = home.ok("start")["pid"]
    app_server = home.serving(old)
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: is_gone(old), what=f"keeper {old} to die")
    wait_for(lambda: is_gone(app_server), what=f"its app-server {app_server} to die with it")
    stale = home.record()
    assert stale is not None and stale["pid"] == old

    began = time.monotonic()
    started = home.ok("start")
    elapsed = time.monotonic() - began

    assert started["status"] == "started"
    assert started["pid"] != old
    assert the_only_server(home) == started["pid"]
    assert home.ok("version")["appServerVersion"] == "0.1.0"
    # Sanity bound only: a stale record must not make start wait out a timeout.
    assert elapsed < SETTLE_SECONDS


def test_sigterm_by_hand_ends_keeper_and_server_within_a_second_and_removes_the_socket(
    home: Home,
) -> None:
    old = home.ok("start")["pid"]
    app_server = home.serving(old)
    os.kill(old, signal.SIGTERM)
    wait_for(lambda: is_gone(old), timeout=1.0, what=f"keeper {old} to exit on SIGTERM")
    assert is_gone(app_server)
    assert not os.path.lexists(home.paths.socket_path)
    assert home.record() is None

    started = home.ok("start")
    assert started["status"] == "started"
    assert started["pid"] != old
    assert the_only_server(home) == started["pid"]


# --- a CLI killed halfway --------------------------------------------------------------


@dataclass(frozen=True)
class KilledCli:
    command: str
    point: str
    server_before: bool  # a managed app-server runs when the command begins
    # What the first command after the kill must report.
    next_command: str
    next_statuses: frozenset[str]

    def __str__(self) -> str:
        return f"{self.command}@{self.point}"


# After a kill at "launched" the killed command's keeper is still starting its
# app-server: the next `start` waits for it and says `started` with that keeper's pid,
# or `alreadyRunning` when it already answers.
JUST_LAUNCHED = frozenset({"started", "alreadyRunning"})
KILLED_CLIS = [
    KilledCli("start", "locked", False, "start", frozenset({"started"})),
    KilledCli("start", "launched", False, "start", JUST_LAUNCHED),
    KilledCli("restart", "locked", True, "start", frozenset({"alreadyRunning"})),
    KilledCli("restart", "launched", True, "start", JUST_LAUNCHED),
    # SIGTERM was sent: the old server exits by itself, perhaps while `start` looks.
    KilledCli("restart", "signalled", True, "start", frozenset({"started"})),
    KilledCli("stop", "locked", True, "stop", frozenset({"stopped"})),
    KilledCli("stop", "signalled", True, "stop", frozenset({"stopped", "notRunning"})),
    KilledCli("enable-remote-control", "launched", True, "start", JUST_LAUNCHED),
]


def kill_cli_at_pause_point(home: Home, command: str, point: str, marker: Path) -> None:
    """Run `command` until it reaches `point`, then SIGKILL it there."""
    cli = home.spawn(command, env={PAUSE_ENV: f"{point}:{marker}"})

    def paused() -> bool:
        if cli.poll() is not None:
            _, stderr = cli.communicate()
            raise AssertionError(
                f"{command} exited {cli.returncode} before pausing at {point}: {stderr}"
            )
        return marker.exists() and marker.read_text().endswith("\n")

    wait_for(paused, timeout=SETTLE_SECONDS, what=f"{command} to pause at {point}")
    assert int(marker.read_text()) == cli.pid
    cli.kill()
    cli.communicate()
    assert cli.returncode == -signal.SIGKILL


@pytest.mark.parametrize("case", KILLED_CLIS, ids=str)
def test_commands_after_a_cli_killed_midway_leave_exactly_one_server(
    home: Home, tmp_path: Path, case: KilledCli
) -> None:
    before = home.ok("start")["pid"] if case.server_before else None

    kill_cli_at_pause_point(home, case.command, case.point, tmp_path / "paused")

    after_kill = home.ok(case.next_command)
    assert after_kill["status"] in case.next_statuses

    if case.command == "stop":
        assert before is not None
        wait_for(lambda: is_gone(before), what=f"app-server {before} to exit")
        assert_nothing_runs(home)
        assert home.ok("start")["status"] == "started"
        the_only_server(home)
        return

    running = the_only_server(home)
    if case.point == "locked" and before is not None:
        assert running == before  # killed before it touched anything
    if case.point in ("launched", "signalled") and before is not None:
        assert running != before
        assert is_gone(before)
    if after_kill["status"] == "started":
        assert after_kill["pid"] == running
    if case.command == "enable-remote-control":
        assert launched_with_remote_control(home, running)
        record = home.record()
        assert record is not None and record["remoteControlEnabled"] is True
        assert '"remoteControlEnabled": true' in home.paths.settings_file.read_text()

    version = home.ok("version")
    assert version["status"] == "running"
    assert version["backend"] == "pid"
    assert version["appServerVersion"] == "0.1.0"

    restarted = home.ok("restart")
    assert restarted["status"] == "restarted"
    assert is_gone(running)
    assert the_only_server(home) == restarted["pid"]

    assert home.ok("stop")["status"] == "stopped"
    assert_nothing_runs(home)


# --- a server that ignores SIGTERM -----------------------------------------------------


def install_stubborn_managed_binary(home: Home) -> Path:
    managed = home.paths.managed_binary
    managed.parent.mkdir(parents=True, exist_ok=True)
    managed.write_text(f"#!{sys.executable}\n{STUBBORN_SERVER.read_text()}")
    managed.chmod(0o755)
    return managed


def test_server_ignoring_sigterm_is_killed_after_the_grace_window(bare_home: Home) -> None:
    home = bare_home
    install_stubborn_managed_binary(home)
    # The keeper's grace window is the one of the environment it was started in.
    started = home.ok("start", env={"CODEXD_STOP_GRACE_SECONDS": "1"})
    assert started["status"] == "started"
    assert started["appServerVersion"] == "0.1.0"
    keeper = the_only_server(home)
    pid = home.serving(keeper)

    began = time.monotonic()
    stopped = home.ok("stop", env={"CODEXD_STOP_GRACE_SECONDS": "1"})
    elapsed = time.monotonic() - began

    assert stopped["status"] == "stopped"
    assert is_gone(keeper)
    assert is_gone(pid)
    assert_nothing_runs(home)
    # It was asked first and refused: SIGKILL came only after the grace window.
    assert "ignoring SIGTERM" in home.paths.app_server_log.read_text()
    assert elapsed >= 0.95, f"stop took {elapsed:.2f} s, less than the 1 s grace window"

    # The killed server left its socket file behind; the next server must cope.
    home.install_managed_shim()
    restarted = home.ok("start")
    assert restarted["status"] == "started"
    assert restarted["appServerVersion"] == "0.1.0"
    assert the_only_server(home) == restarted["pid"]


def answers(socket_path: Path) -> bool:
    try:
        probe(socket_path, timeout=1.0)
    except ProbeError:
        return False
    return True


def test_start_while_the_managed_server_shuts_down_slowly_launches_a_new_one(
    bare_home: Home,
) -> None:
    home = bare_home
    install_stubborn_managed_binary(home)
    old = home.ok("start", env={STUBBORN_EXIT_DELAY_ENV: "3"})["pid"]
    # As after a `restart` killed once it signalled, or a sysadmin's `kill -TERM` of the
    # keeper: the server has stopped answering but has not exited yet.
    os.kill(old, signal.SIGTERM)
    wait_for(lambda: not answers(home.paths.socket_path), what="the old server to stop serving")
    assert not is_gone(old)

    started = home.run("start")
    assert started.returncode == 0, f"start failed while {old} shut down: {started.stderr}"
    assert started.json["status"] == "started"
    assert started.json["pid"] != old
    assert is_gone(old)
    assert the_only_server(home) == started.json["pid"]


# --- a record naming an unrelated process ----------------------------------------------


def write_record_naming(home: Home, process: psutil.Process, start_time: float) -> None:
    state_dir = home.paths.state_dir
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    state_dir.chmod(0o700)
    executable = Path(process.exe())
    digest = hashlib.sha256(executable.read_bytes()).hexdigest()
    record = (
        "{"
        f'"pid": {process.pid}, "processStartTime": {start_time!r}, '
        f'"bootId": "{BOOT_ID_FILE.read_text().strip()}", '
        f'"executable": "{executable}", "executableDigest": "sha256:{digest}", '
        f'"remoteControlEnabled": false, "socketPath": "{home.paths.socket_path}"'
        "}\n"
    )
    home.paths.app_server_record.write_text(record)
    home.paths.app_server_record.chmod(0o600)
    # A dead worker's lock file stays behind, unlocked.
    lock = home.paths.state_dir / "app-server.pid.lock"
    lock.touch(mode=0o600)


def assert_untouched(bystander: subprocess.Popen[bytes]) -> None:
    """Alive and neither stopped nor dying: every signal codexd sends would end `sleep`."""
    assert bystander.poll() is None, f"sleep exited {bystander.returncode}"
    status = psutil.Process(bystander.pid).status()
    assert status in (psutil.STATUS_SLEEPING, psutil.STATUS_RUNNING), status


@pytest.mark.parametrize("start_time", ["wrong", "true"])
def test_record_naming_an_unrelated_process_never_signals_it(home: Home, start_time: str) -> None:
    sleep_path = shutil.which("sleep")
    assert sleep_path is not None
    bystander = subprocess.Popen([sleep_path, "600"], stdin=subprocess.DEVNULL)
    try:
        process = psutil.Process(bystander.pid)
        created = process.create_time()
        recorded = created if start_time == "true" else created - 1000.0

        write_record_naming(home, process, recorded)
        stopped = home.ok("stop")
        assert stopped["status"] == "notRunning"
        assert "backend" not in stopped
        assert home.record() is None
        assert_untouched(bystander)

        write_record_naming(home, process, recorded)
        restarted = home.ok("restart")
        assert restarted["status"] == "restarted"
        assert restarted["pid"] != bystander.pid
        assert the_only_server(home) == restarted["pid"]
        assert_untouched(bystander)

        home.ok("stop")
        write_record_naming(home, process, recorded)
        started = home.ok("start")
        assert started["status"] == "started"
        assert the_only_server(home) == started["pid"]
        assert_untouched(bystander)
    finally:
        bystander.kill()
        bystander.wait()


# --- a server this daemon did not start ------------------------------------------------


def test_unmanaged_server_is_refused_left_running_and_reported_without_backend(
    home: Home,
) -> None:
    unmanaged = home.spawn("app-server", "--listen", "unix://")

    def answers() -> bool:
        if unmanaged.poll() is not None:
            _, stderr = unmanaged.communicate()
            raise AssertionError(f"unmanaged app-server exited {unmanaged.returncode}: {stderr}")
        return home.run("version").returncode == 0

    wait_for(answers, timeout=SETTLE_SECONDS, what="the unmanaged app-server to answer")

    for command in ("stop", "restart", "enable-remote-control", "disable-remote-control"):
        result = home.run(command)
        assert result.returncode != 0, f"{command} succeeded: {result.stdout}"
        assert result.stdout == ""
        assert UNMANAGED_MESSAGE in result.stderr, result.stderr
        assert unmanaged.poll() is None, f"{command} ended the unmanaged server"
    assert not home.paths.settings_file.exists()

    settings = b'{\n  "remoteControlEnabled": false\n}\n'
    home.paths.settings_file.write_bytes(settings)
    assert home.run("enable-remote-control").returncode != 0
    assert home.paths.settings_file.read_bytes() == settings

    started = home.ok("start")
    assert started["status"] == "alreadyRunning"
    assert "backend" not in started
    assert "pid" not in started
    assert started["appServerVersion"] == "0.1.0"
    assert home.app_server_pids() == [unmanaged.pid]
    assert home.record() is None

    version = home.ok("version")
    assert version["status"] == "running"
    assert "backend" not in version
    assert version["appServerVersion"] == "0.1.0"
    assert unmanaged.poll() is None


# --- a corrupt record of a live server -------------------------------------------------


def test_corrupt_record_of_a_live_server_is_an_error_naming_it_and_nothing_is_stopped(
    home: Home,
) -> None:
    pid = home.ok("start")["pid"]
    garbage = b"{this is not json\n"
    home.paths.app_server_record.write_bytes(garbage)

    for command in ("stop", "restart"):
        result = home.run(command)
        assert result.returncode != 0, f"{command} succeeded: {result.stdout}"
        assert result.stdout == ""
        assert str(home.paths.app_server_record) in result.stderr, result.stderr
        assert home.keeper_pids() == [pid]
        assert len(home.app_server_pids()) == 1
    assert home.paths.app_server_record.read_bytes() == garbage
    assert probe(home.paths.socket_path).app_server_version == "0.1.0"


LOCK_KEEPER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(600)
"""


def test_a_lock_kept_by_a_dead_workers_child_is_reported_naming_the_holder(home: Home) -> None:
    """A child the app-server started inherits the lock's fd and outlives it: nothing
    is stopped or started, and the message names the process to stop."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    home.paths.state_dir.mkdir(mode=0o700, parents=True)
    home.paths.app_server_record.write_text(
        f'{{"pid": {dead.pid}, "processStartSeconds": 1.0, '
        f'"bootId": "{BOOT_ID_FILE.read_text().strip()}", '
        '"executable": "/gone/codex", "executableDigest": "sha256:00"}'
    )
    lock = home.paths.state_dir / "app-server.pid.lock"
    keeper = subprocess.Popen(
        [sys.executable, "-c", LOCK_KEEPER, str(lock)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert keeper.stdout is not None and keeper.stdout.readline() == "locked\n"
        result = home.run("stop")
        assert result.returncode != 0
        assert result.stdout == ""
        assert f"pid {keeper.pid}" in result.stderr
        assert str(lock) in result.stderr
        assert keeper.poll() is None  # not ours to signal
        assert home.app_server_pids() == []
    finally:
        keeper.kill()
        keeper.wait()


def test_a_planted_record_naming_a_live_process_that_lacks_the_lock_is_never_signalled(
    home: Home,
) -> None:
    """The lock is held (by someone) and the record names a live process with its true
    start time and boot: the identity matches, but that process does not hold the lock,
    so it is not our worker (as with a record naming kthreadd)."""
    sleep_path = shutil.which("sleep")
    assert sleep_path is not None
    bystander = subprocess.Popen([sleep_path, "600"], stdin=subprocess.DEVNULL)
    lock = home.paths.state_dir / "app-server.pid.lock"
    try:
        process = psutil.Process(bystander.pid)
        write_record_naming(home, process, process.create_time())
        holder = subprocess.Popen(
            [sys.executable, "-c", LOCK_KEEPER, str(lock)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
            for command in ("stop", "restart"):
                result = home.run(command)
                assert result.returncode == 1, result.stdout
                assert result.stdout == ""
                assert "does not hold" in result.stderr
                assert str(home.paths.app_server_record) in result.stderr
                assert_untouched(bystander)
                assert holder.poll() is None
        finally:
            holder.kill()
            holder.wait()
    finally:
        bystander.kill()
        bystander.wait()
