"""bootstrap and the updater loop, with real releases built from this checkout.

Passes are triggered with SIGUSR1 (the schedule is set to an hour), and each test
waits for the updater's last-pass file to show the pass finished. Homes are installed
with codex from the reference app-server or a fake codex (`path:`, or npm:latest from a
fake npm), recorded in packages/standalone/codex-source: the updater's install.sh reads
the record, so a test moves the source by rewriting it.
"""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from supervisor.digest import file_digest
from tests.conftest import Home, is_gone, updater_pids, wait_for
from tests.releases import FakeNpm, fake_codex, publish_artifact, run_version
from tests.updating import (
    PASS_TIMEOUT_SECONDS,
    QUIET_SCHEDULE,
    Releases,
    app_server_digest,
    codex_source,
    install,
    installer_processes,
    last_pass,
    managed_digest,
    run_pass,
    updater_log,
    updater_ready,
    updater_record,
)


def test_bootstrap_starts_app_server_with_remote_control_and_the_updater(installed: Home) -> None:
    output = installed.ok("app-server", "daemon", "bootstrap", "--remote-control")
    assert output["status"] == "bootstrapped"
    assert output["backend"] == "pid"
    assert output["autoUpdateEnabled"] is True
    assert output["remoteControlEnabled"] is True
    assert output["managedCodexVersion"] == "0.1.0"
    assert output["appServerVersion"] == "0.1.0"
    assert set(output) == {
        "status", "backend", "autoUpdateEnabled", "remoteControlEnabled", "managedCodexPath",
        "managedCodexVersion", "socketPath", "cliVersion", "appServerVersion",
    }  # fmt: skip
    pid = updater_ready(installed, starts=1)
    record = updater_record(installed)
    assert record is not None
    assert record["executableDigest"] == file_digest(installed.paths.managed_binary.resolve())
    wait_for(lambda: updater_pids(installed.path) == [pid], what="the updater's title")
    servers = installed.app_server_pids()
    assert len(servers) == 1
    assert "remote_control" in psutil.Process(servers[0]).cmdline()


def test_a_new_release_moves_app_server_then_updater(
    installed: Home, channel: Path, releases: Releases
) -> None:
    installed.ok("bootstrap")
    pid = updater_ready(installed, starts=1)
    publish_artifact(channel, releases.v2)

    outcome = run_pass(installed, pid)

    assert outcome["installer"] == "ok"
    assert outcome["appServer"] == "restarted"
    assert outcome["reexec"] is True
    v2_digest = managed_digest(installed)
    assert app_server_digest(installed) == v2_digest
    assert installed.ok("version")["appServerVersion"] == "0.2.0"
    assert updater_ready(installed, starts=2) == pid
    record = updater_record(installed)
    assert record is not None and record["executableDigest"] == v2_digest
    assert run_version(installed.paths.managed_binary) == "codexd 0.2.0"


def test_a_new_codex_at_the_source_moves_app_server_then_updater(
    installed: Home, tmp_path: Path
) -> None:
    installed.ok("bootstrap")
    pid = updater_ready(installed, starts=1)
    before = managed_digest(installed)
    codex_source(installed, f"path:{fake_codex(tmp_path / 'codex', '1.2.0')}")

    outcome = run_pass(installed, pid)

    assert outcome["installer"] == "ok"
    assert outcome["appServer"] == "restarted"
    assert outcome["reexec"] is True
    assert run_version(installed.paths.managed_binary) == "codex-cli 1.2.0"
    assert managed_digest(installed) != before
    assert app_server_digest(installed) == managed_digest(installed)
    assert updater_ready(installed, starts=2) == pid


def test_npm_latest_moving_is_followed_by_the_next_pass(
    installed: Home, channel: Path, tmp_path: Path
) -> None:
    npm = FakeNpm.create(tmp_path / "npm")
    npm.publish("1.0.0")
    installed.env["PATH"] = npm.path_with_npm()
    install(installed, channel, CODEXD_CODEX_SOURCE="npm:latest")
    installed.ok("bootstrap")
    pid = updater_ready(installed, starts=1)
    assert run_version(installed.paths.managed_binary) == "codex-cli 1.0.0"
    npm.publish("1.1.0")

    outcome = run_pass(installed, pid)

    assert outcome["appServer"] == "restarted"
    assert run_version(installed.paths.managed_binary) == "codex-cli 1.1.0"
    assert app_server_digest(installed) == managed_digest(installed)


def replace_out_of_band(home: Home, tmp_path: Path) -> Path:
    """Another tool rewrites the managed binary: different bytes, same version."""
    managed = home.paths.managed_binary.resolve()
    managed.write_text(managed.read_text() + "# rewritten out of band\n")
    # The installer succeeds and changes nothing: only the rewrite differs.
    noop_channel = tmp_path / "noop-channel"
    noop_channel.mkdir()
    (noop_channel / "install.sh").write_text("exit 0\n")
    (home.paths.standalone_dir / "source").write_text(f"channel {noop_channel}\n")
    return managed


def test_out_of_band_replacement_restarts_app_server_then_reexecs_updater(
    installed: Home, tmp_path: Path
) -> None:
    installed.ok("bootstrap")
    pid = updater_ready(installed, starts=1)
    server_before = installed.app_server_pids()
    managed = replace_out_of_band(installed, tmp_path)
    installed.env.pop("CODEXD_CHANNEL", None)

    outcome = run_pass(installed, pid)

    assert outcome["appServer"] == "restarted"
    assert outcome["reexec"] is True
    assert app_server_digest(installed) == file_digest(managed)
    assert installed.app_server_pids() != server_before
    assert updater_ready(installed, starts=2) == pid
    record = updater_record(installed)
    assert record is not None and record["executableDigest"] == file_digest(managed)


def test_with_no_app_server_the_updater_reexecs_and_starts_nothing(
    installed: Home, channel: Path, releases: Releases
) -> None:
    installed.ok("bootstrap")
    pid = updater_ready(installed, starts=1)
    installed.ok("stop")
    publish_artifact(channel, releases.v2)

    outcome = run_pass(installed, pid)

    assert outcome["appServer"] == "notRunning"
    assert outcome["reexec"] is True
    assert updater_ready(installed, starts=2) == pid
    assert installed.app_server_pids() == []
    record = updater_record(installed)
    assert record is not None and record["executableDigest"] == managed_digest(installed)


def test_a_release_whose_codex_does_not_answer_is_rolled_back(
    installed: Home, tmp_path: Path
) -> None:
    installed.ok("bootstrap")
    pid = updater_ready(installed, starts=1)
    good = installed.paths.managed_binary.resolve()
    good_digest = file_digest(good)
    codex_source(installed, f"path:{fake_codex(tmp_path / 'codex', '1.3.0', serve=False)}")

    outcome = run_pass(installed, pid)

    assert outcome["appServer"] == "rolledBack"
    assert "reexec" not in outcome
    assert installed.paths.managed_binary.resolve() == good
    assert app_server_digest(installed) == good_digest
    assert installed.ok("version")["appServerVersion"] == "0.1.0"
    record = updater_record(installed)
    assert record is not None and record["pid"] == pid
    assert record["executableDigest"] == good_digest
    rejected = (installed.paths.standalone_dir / "rejected").read_text().split()
    assert len(rejected) == 1 and rejected[0].startswith("1.3.0-")
    assert "this codex does not serve" in installed.paths.app_server_log.read_text()

    # The next pass does not install the rejected release again.
    again = run_pass(installed, pid)
    assert again["installer"] == "ok"
    assert again["appServer"] == "alreadyCurrent"
    assert installed.paths.managed_binary.resolve() == good


def fake_channel(tmp_path: Path, script: str) -> Path:
    path = tmp_path / "fake-channel"
    path.mkdir()
    (path / "install.sh").write_text(script)
    return path


def hanging_script(marker: str) -> str:
    """An installer that hangs in a child process whose command line shows `marker`."""
    return f"python3 -c 'import time; time.sleep(600)' {marker}\nexit 0\n"


@pytest.fixture
def shim_home(home: Home, tmp_path: Path) -> Home:
    """The plain test home (its managed binary runs this checkout's codexd)."""
    home.env.update(QUIET_SCHEDULE)
    return home


def test_a_failing_installer_is_logged_and_the_loop_goes_on(
    shim_home: Home, tmp_path: Path
) -> None:
    channel = fake_channel(tmp_path, "echo installer-says-no >&2\nexit 3\n")
    shim_home.env["CODEXD_CHANNEL"] = str(channel)
    shim_home.ok("bootstrap")
    pid = updater_ready(shim_home, starts=1)
    server = shim_home.app_server_pids()

    outcome = run_pass(shim_home, pid)

    assert outcome["installer"] == "failed"
    assert outcome["installerDetail"] == "exit status 3"
    assert "installer-says-no" in updater_log(shim_home)
    assert shim_home.app_server_pids() == server
    assert run_pass(shim_home, pid)["pass"] == outcome["pass"] + 1


def test_a_hanging_installer_is_killed_at_its_time_limit(shim_home: Home, tmp_path: Path) -> None:
    marker = f"hanging-installer-{os.getpid()}-{time.monotonic_ns()}"
    channel = fake_channel(tmp_path, hanging_script(marker))
    shim_home.env.update(CODEXD_CHANNEL=str(channel), CODEXD_UPDATE_INSTALL_TIMEOUT_SECONDS="1")
    shim_home.ok("bootstrap")
    pid = updater_ready(shim_home, starts=1)
    server = shim_home.app_server_pids()

    outcome = run_pass(shim_home, pid)

    assert outcome["installer"] == "timedOut"
    assert installer_processes(marker) == []
    assert shim_home.app_server_pids() == server
    assert not is_gone(pid)


def test_sigterm_mid_sleep_ends_the_updater_at_once(shim_home: Home) -> None:
    shim_home.ok("bootstrap")
    pid = updater_ready(shim_home, starts=1)
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: is_gone(pid), timeout=1.0, what="the updater to exit")
    assert updater_record(shim_home) is None


def test_sigterm_mid_install_kills_the_installer_too(shim_home: Home, tmp_path: Path) -> None:
    marker = f"slow-installer-{os.getpid()}-{time.monotonic_ns()}"
    channel = fake_channel(tmp_path, hanging_script(marker))
    shim_home.env["CODEXD_CHANNEL"] = str(channel)
    shim_home.ok("bootstrap")
    pid = updater_ready(shim_home, starts=1)
    os.kill(pid, signal.SIGUSR1)
    wait_for(lambda: installer_processes(marker), what="the installer to run")

    os.kill(pid, signal.SIGTERM)

    wait_for(lambda: is_gone(pid), timeout=1.0, what="the updater to exit")
    wait_for(lambda: not installer_processes(marker), timeout=1.0, what="the installer to go")
    assert updater_record(shim_home) is None


def test_start_racing_an_updater_restart_leaves_one_app_server(
    installed: Home, channel: Path, releases: Releases
) -> None:
    installed.ok("bootstrap")
    pid = updater_ready(installed, starts=1)
    installed.ok("stop")
    installed.ok("start")
    publish_artifact(channel, releases.v2)
    before = (last_pass(installed) or {}).get("pass", 0)
    os.kill(pid, signal.SIGUSR1)
    with ThreadPoolExecutor(max_workers=4) as pool:
        outputs = list(pool.map(lambda _: installed.ok("start"), range(8)))
    assert all(output["status"] in ("alreadyRunning", "started") for output in outputs)
    wait_for(
        lambda: (last_pass(installed) or {}).get("pass", 0) > before,
        timeout=PASS_TIMEOUT_SECONDS,
        what="the pass",
    )
    servers = installed.app_server_pids()
    assert len(servers) == 1
    record = installed.record()
    assert record is not None and record["appServerPid"] == servers[0]
    assert record["executableDigest"] == managed_digest(installed)
    assert len(updater_pids(installed.path)) == 1
