"""Clients that exhaust the app-server's file descriptors: the app-server raises its
soft limit at start, logs one line per interval (not a traceback per failed accept),
keeps its CPU low, `version` says it is not answering (not "not running"), and it
serves again once the clients let go."""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from supervisor.paths import connectable_socket_path
from tests.conftest import CODEXD, Home, wait_for

HELD_CONNECTIONS = 300
HARD_LIMIT = 128
FLOOD_SECONDS = 3.0
MAX_LOG_GROWTH_BYTES = 2048
MAX_CPU_SHARE = 0.2


def start_with_open_file_limit(home: Home, soft: int, hard: int) -> int:
    """`codexd start` under RLIMIT_NOFILE (soft, hard), which the app-server inherits;
    the app-server's pid."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    completed = subprocess.run(
        [str(CODEXD), "start"],
        env=home.env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        preexec_fn=limit,  # only setrlimit runs in the child
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["status"] == "started"
    (pid,) = home.app_server_pids()  # the keeper's child, which inherits its limit
    return pid


def open_file_limits(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError(f"no open file limit in /proc/{pid}/limits")


@contextlib.contextmanager
def held_connections(path: Path, count: int) -> Iterator[list[socket.socket]]:
    held: list[socket.socket] = []
    try:
        for _ in range(count):
            connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            held.append(connection)
            connection.connect(str(path))
        yield held
    finally:
        for connection in held:
            connection.close()


def test_the_app_server_raises_its_soft_open_file_limit_to_the_hard_one(home: Home) -> None:
    pid = start_with_open_file_limit(home, 256, 4096)
    assert open_file_limits(pid) == (4096, 4096)
    # The keeper raises it, so its app-server (the real codex too) inherits it.
    log = home.paths.app_server_log.read_text()
    assert "raised the open files limit from 256 to 4096" in log


def test_running_out_of_descriptors_logs_one_line_per_interval(home: Home) -> None:
    pid = start_with_open_file_limit(home, HARD_LIMIT, HARD_LIMIT)
    server = psutil.Process(pid)
    log = home.paths.app_server_log
    with held_connections(connectable_socket_path(home.paths.socket_path), HELD_CONNECTIONS):
        # The backlog holds what the app-server cannot accept; its log says so once.
        wait_for(lambda: "cannot accept connections" in log.read_text(), what="the first line")
        size, cpu = log.stat().st_size, sum(server.cpu_times()[:2])
        began = time.monotonic()
        time.sleep(FLOOD_SECONDS)  # measuring a rate: the time is the point
        elapsed = time.monotonic() - began
        growth = log.stat().st_size - size
        cpu_share = (sum(server.cpu_times()[:2]) - cpu) / elapsed

        result = home.run("version")
        assert (result.returncode, result.stdout) == (1, "")
        assert f"app server (pid {pid}, " in result.stderr, result.stderr
        assert "is not answering" in result.stderr, result.stderr
    print(
        f"{HELD_CONNECTIONS} connections held, limit {HARD_LIMIT}: log +{growth} bytes in "
        f"{elapsed:.1f} s, CPU {cpu_share:.0%}"
    )
    assert growth <= MAX_LOG_GROWTH_BYTES, log.read_text()[-2000:]
    assert "Traceback" not in log.read_text()
    assert cpu_share < MAX_CPU_SHARE
    # Once the clients let go, it serves again.
    wait_for(lambda: home.run("version").returncode == 0, timeout=15, what="version to answer")
    assert home.ok("stop")["status"] == "stopped"


@pytest.fixture(autouse=True)
def enough_descriptors_here() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < HELD_CONNECTIONS + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(HELD_CONNECTIONS + 256, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
