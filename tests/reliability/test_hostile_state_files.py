"""State files replaced by something hostile (a FIFO, a sparse gigabyte, JSON nested
5,000 deep), a stopped app-server, a stopped command holding daemon.lock: every command
answers at once, in one line that says what it saw, and nothing is lost."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from supervisor.config import PAUSE_ENV
from tests.conftest import CODEXD, Home, wait_for
from tests.reliability.invariants import check_home

DEEP_JSON = "[" * 5000 + "]" * 5000
# Far more than any of these commands needs; a FIFO used to block them forever.
PROMPT_SECONDS = 10.0
MAX_RSS_BYTES = 200 * 1024 * 1024


def timed(home: Home, *args: str) -> tuple[subprocess.CompletedProcess[str], float, int]:
    """Run a command; its result, wall time and peak memory (bytes, from wait4)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        began = time.monotonic()
        process = subprocess.Popen(
            [str(CODEXD), *args], env=home.env, stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
        home.started.append(process)  # type: ignore[arg-type] # killed at teardown
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - began > PROMPT_SECONDS:
                process.kill()
                process.wait()
                pytest.fail(f"{' '.join(args)} did not answer within {PROMPT_SECONDS:g} s")
            time.sleep(0.01)
        elapsed = time.monotonic() - began
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        result = subprocess.CompletedProcess(args, process.returncode, out.read(), err.read())
    return result, elapsed, usage.ru_maxrss * 1024


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert (result.returncode, result.stdout) == (1, ""), result
    assert result.stderr.startswith("codexd: ") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


@pytest.mark.parametrize(
    "name", ["settings.json", "app-server.pid", "app-server-updater.pid", "daemon.lock"]
)
def test_a_fifo_where_a_state_file_belongs_is_named_at_once(home: Home, name: str) -> None:
    home.paths.state_dir.mkdir(mode=0o700, parents=True)
    fifo = home.paths.state_dir / name
    os.mkfifo(fifo, 0o600)
    for command in ("start", "stop", "bootstrap"):
        result, _, _ = timed(home, command)
        assert f"{fifo} is a FIFO, not a state file" in one_line_error(result)
    # `status` and `version` only read, and answer too.
    status, _, _ = timed(home, "status", "--json")
    assert status.returncode == 0, status.stderr
    version, _, _ = timed(home, "version")
    assert "app server is not running" in one_line_error(version)
    assert home.app_server_pids() == []
    fifo.unlink()
    assert home.ok("start")["status"] == "started"
    check_home(home.path)


def test_a_sparse_gigabyte_settings_file_is_refused_without_reading_it(home: Home) -> None:
    home.paths.state_dir.mkdir(mode=0o700, parents=True)
    with home.paths.settings_file.open("wb") as file:
        file.truncate(1 << 30)
    for command in ("start", "enable-remote-control"):
        result, elapsed, peak = timed(home, command)
        message = one_line_error(result)
        assert f"{home.paths.settings_file} is larger than 1 MiB" in message
        assert elapsed < PROMPT_SECONDS
        assert peak < MAX_RSS_BYTES, f"{command} peaked at {peak / 2**20:.0f} MiB"
    assert home.paths.settings_file.stat().st_size == 1 << 30  # left as it was
    print(f"1 GiB sparse settings.json: refused in {elapsed:.2f} s, peak {peak / 2**20:.0f} MiB")


@pytest.mark.parametrize(
    "name",
    [
        "settings.json",
        "app-server.pid",
        "app-server-updater.pid",
        "managed-binary.json",
        "app-server-updater.last-pass.json",
    ],
)
def test_json_nested_5000_deep_in_any_state_file_is_never_a_traceback(
    home: Home, name: str
) -> None:
    home.paths.state_dir.mkdir(mode=0o700, parents=True)
    path = home.paths.state_dir / name
    path.write_text(DEEP_JSON)
    path.chmod(0o600)
    for command in (["start"], ["version"], ["status", "--json"], ["stop"]):
        result, _, _ = timed(home, *command)
        assert "Traceback" not in result.stderr, result.stderr
        assert result.stderr.count("\n") <= 1, result.stderr
        if result.returncode != 0:
            assert str(path) in result.stderr or command == ["version"], result.stderr
    if name == "settings.json":
        # Never reset: the user may want what is in it.
        assert "nested too deeply" in one_line_error(timed(home, "start")[0])
        assert path.read_text() == DEEP_JSON


def test_a_stopped_app_server_is_reported_as_stopped(home: Home) -> None:
    assert home.ok("start")["status"] == "started"
    (pid,) = home.app_server_pids()  # the keeper's child: the process that listens
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_for(lambda: Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "T")
        message = one_line_error(timed(home, "version")[0])
    finally:
        os.kill(pid, signal.SIGCONT)
    assert f"app server (pid {pid}, stopped) is stopped and cannot answer" in message, message
    assert home.ok("version")["appServerVersion"] == "0.1.0"


def first_stderr_line(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stderr is not None
    ready, _, _ = select.select([process.stderr], [], [], timeout)
    assert ready, f"no line on stderr within {timeout:g} s"
    return process.stderr.readline()


def test_a_command_waiting_for_daemon_lock_names_its_stopped_holder(
    home: Home, tmp_path: Path
) -> None:
    marker = tmp_path / "locked"
    holder = home.spawn("start", env={PAUSE_ENV: f"locked:{marker}"})
    wait_for(marker.exists, what="the first start to hold daemon.lock")
    os.kill(holder.pid, signal.SIGSTOP)
    waiter = home.spawn("start")
    line = first_stderr_line(waiter, PROMPT_SECONDS)
    assert line.startswith(
        f"codexd: waiting up to 75 s for the daemon operation lock {home.paths.daemon_lock}, "
        f"held by pid {holder.pid} ("
    ), line
    assert " start; stopped)" in line, line
    holder.kill()
    stdout, stderr = waiter.communicate(timeout=60)
    assert waiter.returncode == 0, stderr
    assert json.loads(stdout)["status"] == "started"
    assert stderr == ""  # said once
    check_home(home.path)


def test_a_full_state_dir_says_cannot_write_once(home: Home) -> None:
    from tests.reliability.test_hostile_env import mount, umount

    state_dir = home.paths.state_dir
    state_dir.mkdir(parents=True)
    mount("-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(state_dir))
    try:
        filler = state_dir / "filler"
        with filler.open("wb", buffering=0) as file, pytest.raises(OSError):
            while True:
                file.write(b"\0" * 4096)
        message = one_line_error(timed(home, "start")[0])
        assert "No space left on device" in message
        assert message.count("cannot write") == 1, message
    finally:
        home.cleanup()
        umount(state_dir)
