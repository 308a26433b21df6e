"""The updater's pass child (`codexd update pass <home>`), with this checkout's codexd
behind the managed binary (a shim)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import Home, is_gone, wait_for
from tests.updating import QUIET_SCHEDULE, updater_log, updater_ready


@pytest.fixture
def shim_home(home: Home) -> Home:
    home.env.update(QUIET_SCHEDULE)
    return home


def fake_channel(tmp_path: Path, script: str) -> Path:
    path = tmp_path / "fake-channel"
    path.mkdir()
    (path / "install.sh").write_text(script)
    return path


def installer_processes(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        try:
            if marker in " ".join(process.cmdline()) and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def pass_child(updater: int) -> psutil.Process | None:
    for child in psutil.Process(updater).children():
        try:
            if "update pass" in " ".join(child.cmdline()):
                return child
        except psutil.NoSuchProcess:
            continue
    return None


def test_a_pass_child_killed_mid_install_leaves_no_installer_running(
    shim_home: Home, tmp_path: Path
) -> None:
    marker = f"orphan-installer-{os.getpid()}-{time.monotonic_ns()}"
    channel = fake_channel(tmp_path, f"python3 -c 'import time; time.sleep(600)' {marker}\n")
    shim_home.env["CODEXD_CHANNEL"] = str(channel)
    shim_home.ok("bootstrap")
    pid = updater_ready(shim_home, starts=1)
    os.kill(pid, signal.SIGUSR1)
    wait_for(lambda: installer_processes(marker), what="the installer to run")
    child = wait_for(lambda: pass_child(pid), what="the pass child")

    child.kill()  # as the OOM killer would

    wait_for(lambda: not installer_processes(marker), timeout=5.0, what="the installer to go")
    assert not shim_home.paths.updater_installer_record.exists()
    wait_for(lambda: "pass failed: its process" in updater_log(shim_home), what="the log")
    assert not is_gone(pid)
