"""Interoperability with the real codex (npm @openai/codex 0.169.0): codexd managing
the real codex app-server, and codex's own clients against codexd's app-server.

The binary comes from `tests/real_codex.py` (installed once into a shared cache);
these tests skip only when npm is missing altogether.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import psutil
import pytest

from tests.conftest import (
    CODEXD,
    COMMAND_TIMEOUT_SECONDS,
    Home,
    Result,
    is_gone,
    make_home,
    processes_of_home,
    wait_for,
)
from tests.pipes import LineReader, RawWebSocketClient
from tests.real_codex import CODEX_VERSION, RealCodexUnavailable, real_codex_binary

CODEXD_VERSION = "0.1.0"
EXIT_TIMEOUT_SECONDS = 15.0


@pytest.fixture(scope="session")
def real_codex() -> Path:
    try:
        return real_codex_binary()
    except RealCodexUnavailable as reason:
        pytest.skip(f"real codex unavailable: {reason}")


@pytest.fixture
def codex_home(tmp_path: Path, real_codex: Path) -> Iterator[Home]:
    """A home whose managed binary is the real codex (a symlink to it)."""
    home = make_home(tmp_path / "codex-home")
    managed = home.paths.managed_binary
    managed.parent.mkdir(parents=True)
    managed.symlink_to(real_codex)
    try:
        yield home
    finally:
        home.cleanup()


@pytest.fixture
def other_home(tmp_path: Path) -> Iterator[Home]:
    """A second, empty home, for codex's own daemon to run in beside codexd's."""
    home = make_home(tmp_path / "other-home")
    try:
        yield home
    finally:
        home.cleanup()


def run_codex(real_codex: Path, home: Home, *args: str) -> Result:
    completed = subprocess.run(
        [str(real_codex), *args],
        env={**home.env, "RUST_BACKTRACE": "0"},
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
        stdin=subprocess.DEVNULL,
    )
    return Result(completed.returncode, completed.stdout, completed.stderr)


def initialize(request_id: int, name: str) -> dict[str, Any]:
    return {
        "id": request_id,
        "method": "initialize",
        "params": {"clientInfo": {"name": name, "version": "1.0"}},
    }


def spawn_piped(home: Home, argv: list[str]) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        argv,
        env=home.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    home.started.append(cast("subprocess.Popen[str]", process))  # reaped at teardown
    return process


def assert_no_process_of(home: Home) -> None:
    wait_for(
        lambda: not processes_of_home(home.path),
        what=f"every process with CODEX_HOME={home.path} to exit",
    )


# -- codexd managing the real codex app-server ------------------------------------------


def test_codexd_manages_the_real_codex_app_server_through_its_lifecycle(
    codex_home: Home, real_codex: Path
) -> None:
    home = codex_home
    started = home.ok("start")
    assert started["status"] == "started"
    assert started["backend"] == "pid"
    assert started["managedCodexVersion"] == CODEX_VERSION
    assert started["appServerVersion"] == CODEX_VERSION
    assert started["managedCodexPath"] == str(home.paths.managed_binary)
    assert started["socketPath"] == str(home.paths.socket_path)
    pid = started["pid"]
    app_server = home.serving(pid)
    assert psutil.Process(app_server).exe() == str(real_codex.resolve())
    record = home.record()
    assert record is not None
    assert record["pid"] == pid
    assert record["version"] == CODEX_VERSION
    assert record["executable"] == str(real_codex.resolve())

    again = home.ok("start")
    assert again["status"] == "alreadyRunning"
    assert home.serving(pid) == app_server

    version = home.ok("version")
    assert version["status"] == "running"
    assert version["backend"] == "pid"
    assert version["appServerVersion"] == CODEX_VERSION
    assert version["managedCodexVersion"] == CODEX_VERSION

    restarted = home.ok("restart")
    assert restarted["status"] == "restarted"
    assert restarted["appServerVersion"] == CODEX_VERSION
    assert restarted["pid"] != pid
    assert is_gone(pid)
    assert is_gone(app_server)
    restarted_server = home.serving(restarted["pid"])

    enabled = home.ok("enable-remote-control")
    assert enabled["status"] == "enabled"
    assert enabled["remoteControlEnabled"] is True
    assert enabled["appServerVersion"] == CODEX_VERSION
    [remote_pid] = home.app_server_pids()
    assert is_gone(restarted_server)
    cmdline = psutil.Process(remote_pid).cmdline()
    assert cmdline[1:] == ["--enable", "remote_control", "app-server", "--listen", "unix://"]

    disabled = home.ok("disable-remote-control")
    assert disabled["status"] == "disabled"
    assert disabled["remoteControlEnabled"] is False
    [plain_pid] = home.app_server_pids()
    assert is_gone(remote_pid)
    assert psutil.Process(plain_pid).cmdline()[1:] == ["app-server", "--listen", "unix://"]

    stopped = home.ok("stop")
    assert stopped["status"] == "stopped"
    assert stopped["backend"] == "pid"
    assert "appServerVersion" not in stopped
    assert is_gone(plain_pid)
    assert home.record() is None
    # The real codex's socket path is a symlink into /tmp/codex-daemon-<uid>/; it
    # removes both on SIGTERM.
    assert not home.paths.socket_path.is_symlink()
    assert not home.paths.socket_path.exists()
    assert home.ok("stop")["status"] == "notRunning"
    assert_no_process_of(home)


def test_the_real_codex_exits_on_sigterm_well_within_the_grace_window(
    codex_home: Home,
) -> None:
    pid = codex_home.ok("start", env={"CODEXD_STOP_GRACE_SECONDS": "60"})["pid"]
    app_server = codex_home.serving(pid)
    began = time.monotonic()
    stopped = codex_home.ok("stop", env={"CODEXD_STOP_GRACE_SECONDS": "60"})
    # Well under the 60 s grace window: SIGTERM did it, no SIGKILL was needed.
    assert time.monotonic() - began < 15
    assert stopped["status"] == "stopped"
    assert is_gone(pid)
    assert is_gone(app_server)
    assert "killed by SIGKILL" not in codex_home.paths.app_server_log.read_text()
    assert_no_process_of(codex_home)


# Not SIGSEGV: codex's Rust runtime catches it (for stack overflows) and, sent by kill(2),
# carries on after resetting its handler.
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGABRT])
def test_the_keeper_restarts_a_crashed_real_codex_app_server(
    codex_home: Home, signum: signal.Signals
) -> None:
    home = codex_home
    keeper = home.ok("start", env={"CODEXD_RESTART_DELAY_SECONDS": "0.1"})["pid"]
    crashed = home.serving(keeper)
    os.kill(crashed, signum)

    def restarted() -> int | None:
        record = home.record()
        if record is None or record["keeper"]["state"] != "running":
            return None
        new = record.get("appServerPid")
        return new if new not in (None, crashed) else None

    new = wait_for(restarted, timeout=EXIT_TIMEOUT_SECONDS, what="the app-server to come back")
    assert home.serving(keeper) == new
    assert psutil.Process(new).exe() == str(home.paths.managed_binary.resolve())
    record = home.record()
    assert record is not None
    assert record["keeper"]["restarts"] == 1
    assert record["keeper"]["lastExit"]["description"] == f"killed by {signum.name}"
    assert record["keeper"]["lastExit"]["reason"] == "crashed"
    assert home.ok("version")["appServerVersion"] == CODEX_VERSION
    assert home.ok("stop")["status"] == "stopped"
    assert_no_process_of(home)


# -- codex's own clients against codexd's app-server ------------------------------------


def test_codex_daemon_version_reports_a_codexd_app_server_it_did_not_start(
    bare_home: Home, real_codex: Path
) -> None:
    server = bare_home.spawn("app-server", "--listen", "unix://")
    wait_for(bare_home.paths.socket_path.exists, what="the foreground app-server's socket")
    version = run_codex(real_codex, bare_home, "app-server", "daemon", "version").json
    assert version["status"] == "running"
    assert version["appServerVersion"] == CODEXD_VERSION
    assert version["cliVersion"] == CODEX_VERSION
    assert "backend" not in version  # neither codex's daemon nor a record of ours
    server.terminate()
    assert server.wait(timeout=EXIT_TIMEOUT_SECONDS) == 0


def test_codex_daemon_version_reports_the_codexd_managed_app_server(
    home: Home, real_codex: Path
) -> None:
    home.ok("start")
    version = run_codex(real_codex, home, "app-server", "daemon", "version").json
    assert version["status"] == "running"
    assert version["backend"] == "pid"
    assert version["appServerVersion"] == CODEXD_VERSION
    assert version["managedCodexVersion"] == CODEXD_VERSION
    assert version["managedCodexPath"] == str(home.paths.managed_binary)
    assert version["socketPath"] == str(home.paths.socket_path)


def test_codex_proxy_relays_an_initialize_round_trip_to_codexd(
    home: Home, real_codex: Path
) -> None:
    home.ok("start")
    process = spawn_piped(
        home, [str(real_codex), "app-server", "proxy", "--sock", str(home.paths.socket_path)]
    )
    client = RawWebSocketClient(process)  # codex's proxy copies bytes: we speak WebSocket
    assert client.wait_open().status_code == 101
    client.send(initialize(1, "codex-proxy-test"))
    response = client.response(1)
    assert response["result"]["userAgent"].startswith(f"codex-proxy-test/{CODEXD_VERSION} ")
    assert response["result"]["codexHome"] == str(home.path)
    assert client.close() == 0


# -- codexd's proxy against both servers ------------------------------------------------


@pytest.mark.parametrize("server", ["real codex", "codexd"])
def test_codexd_proxy_relays_an_initialize_round_trip_line_by_line(
    server: str, tmp_path: Path, real_codex: Path
) -> None:
    home = make_home(tmp_path / "home")
    try:
        if server == "real codex":
            home.paths.managed_binary.parent.mkdir(parents=True)
            home.paths.managed_binary.symlink_to(real_codex)
            expected_version = CODEX_VERSION
        else:
            home.install_managed_shim()
            expected_version = CODEXD_VERSION
        assert home.ok("start")["appServerVersion"] == expected_version
        process = spawn_piped(home, [str(CODEXD), "app-server", "proxy"])
        assert process.stdout is not None and process.stdin is not None
        process.stdin.write(json.dumps(initialize(1, "line-client")).encode() + b"\n")
        process.stdin.flush()
        response = LineReader(process.stdout).response(1)
        user_agent = response["result"]["userAgent"]
        assert user_agent.startswith(f"line-client/{expected_version} ") or (
            # codex names its own originator first and the client in parentheses
            f"/{expected_version} " in user_agent and "(line-client; 1.0)" in user_agent
        )
        assert response["result"]["codexHome"] == str(home.path)
        _, stderr = process.communicate(timeout=EXIT_TIMEOUT_SECONDS)
        assert process.returncode == 0, stderr
        assert home.ok("stop")["status"] == "stopped"
        assert_no_process_of(home)
    finally:
        home.cleanup()


# -- the same situation, codexd's command and codex's own, side by side -----------------

# Run in order, codexd in one home (its own app-server) and codex's own daemon in
# another: the JSON of each pair has the same keys and the same status. None: the
# command fails (non-zero, nothing on stdout) for both.
SIDE_BY_SIDE: list[tuple[str, str | None]] = [
    ("version", None),  # nothing running
    ("stop", "notRunning"),
    ("start", "started"),
    ("start", "alreadyRunning"),
    ("version", "running"),
    ("restart", "restarted"),
    ("enable-remote-control", "enabled"),
    ("enable-remote-control", "alreadyEnabled"),
    ("disable-remote-control", "disabled"),
    ("disable-remote-control", "alreadyDisabled"),
    ("stop", "stopped"),
    ("stop", "notRunning"),
]


def test_codexd_and_codex_commands_give_the_same_keys_and_statuses(
    home: Home, other_home: Home, real_codex: Path
) -> None:
    for step, (command, status) in enumerate(SIDE_BY_SIDE):
        where = f"step {step}: {command} (expected {status})"
        ours = home.run("app-server", "daemon", command)
        theirs = run_codex(real_codex, other_home, "app-server", "daemon", command)
        if status is None:
            assert ours.returncode != 0 and ours.stdout == "", where
            assert theirs.returncode != 0 and theirs.stdout == "", where
            continue
        ours_json, theirs_json = ours.json, theirs.json
        assert ours_json["status"] == theirs_json["status"] == status, where
        assert sorted(ours_json) == sorted(theirs_json), where
        assert ours_json["socketPath"] == str(home.paths.socket_path), where
        assert theirs_json["socketPath"] == str(other_home.paths.socket_path), where
    assert_no_process_of(home)
    # codex's own `start` also launched its updater loop, which `stop` leaves running.
    # SIGTERM (not the fixture's SIGKILL) lets it remove its socket under /tmp.
    for process in processes_of_home(other_home.path):
        process.terminate()
    assert_no_process_of(other_home)
