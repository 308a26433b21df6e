"""The lifecycle commands as a remote client sees them: JSON, files and processes."""

from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from supervisor.paths import SUN_PATH_MAX_BYTES
from tests.conftest import Home, is_gone, make_home
from tests.releases import fake_codex
from tests.updating import codex_source

LIFECYCLE_KEYS = {
    "status",
    "managedCodexPath",
    "managedCodexVersion",
    "socketPath",
    "cliVersion",
}


def test_start_reports_started_with_pid_and_the_server_answers(home: Home) -> None:
    started = home.ok("start")
    assert started["status"] == "started"
    assert started["backend"] == "pid"
    assert started.keys() >= LIFECYCLE_KEYS
    assert started["appServerVersion"] == "0.1.0"
    assert started["managedCodexVersion"] == "0.1.0"
    assert started["socketPath"] == str(home.paths.socket_path)
    assert started["managedCodexPath"] == str(home.paths.managed_binary)
    home.serving(started["pid"])
    record = home.record()
    assert record is not None
    assert record["version"] == "0.1.0"
    assert record["keeper"]["state"] == "running"
    assert record["executableDigest"].startswith("sha256:")


def test_start_twice_reports_already_running(home: Home) -> None:
    pid = home.ok("start")["pid"]
    again = home.ok("start")
    assert again["status"] == "alreadyRunning"
    assert again["backend"] == "pid"
    assert "pid" not in again
    home.serving(pid)


def test_version_reports_running_server(home: Home) -> None:
    home.ok("start")
    version = home.ok("version")
    assert version["status"] == "running"
    assert version["backend"] == "pid"
    assert version["appServerVersion"] == "0.1.0"


def test_stop_then_stop_again(home: Home) -> None:
    pid = home.ok("start")["pid"]
    stopped = home.ok("stop")
    assert stopped["status"] == "stopped"
    assert "appServerVersion" not in stopped
    assert is_gone(pid)
    assert home.nothing_runs()
    assert home.record() is None
    assert not home.paths.socket_path.exists()
    again = home.ok("stop")
    assert again["status"] == "notRunning"
    assert "backend" not in again


def test_version_with_nothing_running_fails_with_empty_stdout(home: Home) -> None:
    result = home.run("version")
    assert result.returncode != 0
    assert result.stdout == ""
    assert str(home.paths.socket_path) in result.stderr


def test_codex_grammar_and_flat_grammar_are_the_same_commands(home: Home) -> None:
    assert home.ok("app-server", "daemon", "start")["status"] == "started"
    assert home.ok("version")["status"] == "running"
    assert home.ok("app-server", "daemon", "version")["status"] == "running"
    assert home.ok("app-server", "daemon", "stop")["status"] == "stopped"


def test_cli_version_flag(home: Home) -> None:
    result = home.run("--version")
    assert result.returncode == 0
    assert result.stdout.split() == ["codexd", "0.1.0"]


def test_restart_gives_a_new_pid(home: Home) -> None:
    first = home.ok("start")["pid"]
    restarted = home.ok("restart")
    assert restarted["status"] == "restarted"
    assert restarted["pid"] != first
    assert is_gone(first)
    home.serving(restarted["pid"])


def test_restart_with_nothing_running_starts_one(home: Home) -> None:
    restarted = home.ok("restart")
    assert restarted["status"] == "restarted"
    home.serving(restarted["pid"])


def _launched_with_remote_control(home: Home, keeper: int) -> bool:
    import psutil

    return "remote_control" in psutil.Process(home.serving(keeper)).cmdline()


def test_remote_control_restarts_a_running_server_and_persists(home: Home) -> None:
    first = home.ok("start")["pid"]
    enabled = home.ok("enable-remote-control")
    assert enabled["status"] == "enabled"
    assert enabled["remoteControlEnabled"] is True
    assert enabled["backend"] == "pid"
    assert enabled["appServerVersion"] == "0.1.0"
    record = home.record()
    assert record is not None
    assert record["remoteControlEnabled"] is True
    assert record["pid"] != first
    assert _launched_with_remote_control(home, record["pid"])

    again = home.ok("enable-remote-control")
    assert again["status"] == "alreadyEnabled"
    home.serving(record["pid"])

    home.ok("stop")
    restarted = home.ok("start")
    assert _launched_with_remote_control(home, restarted["pid"])

    disabled = home.ok("disable-remote-control")
    assert disabled["status"] == "disabled"
    assert disabled["remoteControlEnabled"] is False
    [keeper] = home.keeper_pids()
    assert keeper != restarted["pid"]
    assert not _launched_with_remote_control(home, keeper)
    assert home.ok("disable-remote-control")["status"] == "alreadyDisabled"


def test_remote_control_without_a_server_only_persists(home: Home) -> None:
    enabled = home.ok("enable-remote-control")
    assert enabled == {
        "status": "enabled",
        "remoteControlEnabled": True,
        "socketPath": str(home.paths.socket_path),
        "cliVersion": "0.1.0",
    }
    assert home.app_server_pids() == []
    settings = home.paths.settings_file.read_text()
    assert '"remoteControlEnabled": true' in settings
    assert _launched_with_remote_control(home, home.ok("start")["pid"])


def test_twenty_concurrent_starts_launch_exactly_one_server(home: Home) -> None:
    with ThreadPoolExecutor(max_workers=20) as pool:
        outputs = list(pool.map(lambda _: home.ok("start"), range(20)))
    statuses = sorted(output["status"] for output in outputs)
    assert statuses == ["alreadyRunning"] * 19 + ["started"]
    started = next(output for output in outputs if output["status"] == "started")
    home.serving(started["pid"])


def test_corrupt_settings_is_an_error_and_left_unchanged(home: Home) -> None:
    home.paths.state_dir.mkdir(parents=True)
    corrupt = b'{"remoteControlEnabled": tru'
    home.paths.settings_file.write_bytes(corrupt)
    for command in ("start", "restart", "enable-remote-control"):
        result = home.run(command)
        assert result.returncode != 0
        assert result.stdout == ""
        assert str(home.paths.settings_file) in result.stderr
    assert home.paths.settings_file.read_bytes() == corrupt
    assert home.app_server_pids() == []
    assert home.record() is None


def test_unknown_settings_keys_are_kept(home: Home) -> None:
    home.paths.state_dir.mkdir(parents=True)
    home.paths.settings_file.write_text('{"futureKey": [1, 2], "remoteControlEnabled": false}')
    home.ok("enable-remote-control")
    text = home.paths.settings_file.read_text()
    assert '"futureKey"' in text and '"remoteControlEnabled": true' in text


def test_missing_managed_binary_says_how_to_install(bare_home: Home) -> None:
    for command in ("start", "restart"):
        result = bare_home.run(command)
        assert result.returncode != 0
        assert result.stdout == ""
        assert "install.sh" in result.stderr
        assert str(bare_home.paths.managed_binary) in result.stderr
    assert bare_home.app_server_pids() == []


def test_socket_path_longer_than_sun_path_works(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    home = make_home(deep)
    try:
        home.install_managed_shim()
        assert len(os.fsencode(home.paths.socket_path)) > SUN_PATH_MAX_BYTES
        started = home.ok("start")
        assert started["status"] == "started"
        assert started["socketPath"] == str(home.paths.socket_path)
        assert home.paths.socket_path.is_symlink()
        private = home.paths.socket_path.resolve().parent
        assert home.ok("version")["appServerVersion"] == "0.1.0"
        assert home.ok("stop")["status"] == "stopped"
        # The server leaves nothing behind: no symlink, no private directory.
        assert not os.path.lexists(home.paths.socket_path)
        assert not private.exists()
    finally:
        home.cleanup()


def test_state_files_and_socket_are_private_under_umask_022(home: Home) -> None:
    old = os.umask(0o022)
    try:
        home.ok("enable-remote-control")
        home.ok("start")
    finally:
        os.umask(old)
    state_dir = home.paths.state_dir
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    for name in (
        "settings.json",
        "app-server.pid",
        "app-server.pid.lock",
        "daemon.lock",
        "app-server.log",
    ):
        mode = stat.S_IMODE((state_dir / name).stat().st_mode)
        assert mode == 0o600, f"{name} is {mode:o}"
    assert stat.S_IMODE(home.paths.socket_path.stat().st_mode) == 0o600


def test_bad_grace_variable_is_named_and_nothing_is_stopped(home: Home) -> None:
    pid = home.ok("start")["pid"]
    result = home.run("stop", env={"CODEXD_STOP_GRACE_SECONDS": "soon"})
    assert result.returncode != 0
    assert result.stdout == ""
    assert "CODEXD_STOP_GRACE_SECONDS" in result.stderr
    home.serving(pid)


@pytest.mark.parametrize(
    "command", [("restart",), ("enable-remote-control",), ("bootstrap", "--remote-control")]
)
def test_an_incomplete_release_is_refused_before_the_running_app_server_is_stopped(
    installed: Home, tmp_path: Path, command: tuple[str, ...]
) -> None:
    """A part the release runs was deleted (doctor's "incomplete"): a restart could not
    launch again, so it stops nothing and names what is missing and the repair."""
    codex_source(installed, f"path:{fake_codex(tmp_path / 'codex', '1.0.0')}")
    assert installed.ok("update")["status"] == "updated"
    keeper = installed.ok("start")["pid"]
    app_server = installed.serving(keeper)
    [entry] = list((installed.paths.home / "packages" / "codex").iterdir())
    binary = entry / "bin" / "codex"
    binary.unlink()
    settings = installed.paths.settings_file
    saved = settings.read_text() if settings.exists() else None

    result = installed.run(*command)

    assert result.returncode == 1 and result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert "is incomplete" in line and f"missing {binary}" in line, line
    assert "`sh install.sh`" in line, line
    assert installed.serving(keeper) == app_server
    assert (settings.read_text() if settings.exists() else None) == saved
