"""The updater's pass child (`codexd update pass <home>`) and the re-exec it hands over
to, with this checkout's codexd behind the managed binary (a shim). A test moves the
managed binary out of band by appending a comment to the shim: its digest changes, so
the next pass restarts the app-server onto it and re-executes the updater."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import Home, is_gone, wait_for
from tests.updating import (
    PASS_TIMEOUT_SECONDS,
    QUIET_SCHEDULE,
    installer_processes,
    last_pass,
    updater_log,
    updater_ready,
)


@pytest.fixture
def shim_home(home: Home) -> Home:
    home.env.update(QUIET_SCHEDULE)
    return home


def fake_channel(tmp_path: Path, script: str) -> Path:
    path = tmp_path / "fake-channel"
    path.mkdir()
    (path / "install.sh").write_text(script)
    return path


def move_managed_binary(home: Home, tag: str) -> None:
    with home.paths.managed_binary.open("a") as shim:
        shim.write(f"# {tag}\n")


def pass_child(updater: int) -> psutil.Process | None:
    for child in psutil.Process(updater).children():
        try:
            if "update pass" in " ".join(child.cmdline()):
                return child
        except psutil.NoSuchProcess:
            continue
    return None


def passes(home: Home) -> int:
    number: int = (last_pass(home) or {}).get("pass", 0)
    return number


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


def test_sigusr1_during_a_pass_that_reexecutes_is_followed_by_another_pass(
    shim_home: Home, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    channel = fake_channel(tmp_path, f'while [ ! -e "{go}" ]; do sleep 0.05; done\n')
    shim_home.env["CODEXD_CHANNEL"] = str(channel)
    shim_home.ok("bootstrap")
    pid = updater_ready(shim_home, starts=1)
    before = passes(shim_home)
    move_managed_binary(shim_home, "moved")
    os.kill(pid, signal.SIGUSR1)
    wait_for(lambda: "running installer" in updater_log(shim_home), what="the installer")

    os.kill(pid, signal.SIGUSR1)  # while the pass that will re-execute runs
    go.touch()

    assert updater_ready(shim_home, starts=2) == pid
    wait_for(lambda: passes(shim_home) == before + 2, timeout=20.0, what="the asked-for pass")
    second = last_pass(shim_home)
    assert second is not None
    assert second["trigger"] == "signal" and second["pid"] == pid
    assert second["appServer"] == "alreadyCurrent" and "reexec" not in second


def test_signals_during_the_reexec_do_not_end_the_updater(shim_home: Home, tmp_path: Path) -> None:
    shim_home.env["CODEXD_CHANNEL"] = str(fake_channel(tmp_path, "exit 0\n"))
    shim_home.ok("bootstrap")
    pid = updater_ready(shim_home, starts=1)
    move_managed_binary(shim_home, "moved")
    os.kill(pid, signal.SIGUSR1)

    # SIGUSR1 (whose default action ends a process, as `codexd update` sends it) until
    # the updater has re-executed and handles signals again: none may find the default.
    deadline = time.monotonic() + PASS_TIMEOUT_SECONDS
    while "resumed after re-exec" not in updater_log(shim_home) and not is_gone(pid):
        assert time.monotonic() < deadline, "the updater did not re-execute"
        try:
            os.kill(pid, signal.SIGUSR1)
        except ProcessLookupError:
            break
        time.sleep(0.002)

    assert not is_gone(pid), updater_log(shim_home)[-2000:]
    assert updater_ready(shim_home, starts=2) == pid


def pending_signals(pid: int) -> int:
    """The process's pending signals (ShdPnd: sent to the process, not yet handled)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("ShdPnd:"):
            return int(line.split()[1], 16)
    raise AssertionError(f"no ShdPnd for pid {pid}")


def usr1_pending(pid: int) -> bool:
    return bool(pending_signals(pid) & (1 << (signal.SIGUSR1 - 1)))


def test_update_signals_the_updater_only_when_it_is_behind(shim_home: Home, tmp_path: Path) -> None:
    shim_home.env["CODEXD_CHANNEL"] = str(fake_channel(tmp_path, "exit 0\n"))
    shim_home.ok("bootstrap")
    pid = updater_ready(shim_home, starts=1)
    os.kill(pid, signal.SIGSTOP)  # signals stay pending, to be seen
    try:
        assert shim_home.ok("update")["status"] == "noUpdate"
        assert not usr1_pending(pid)  # on the managed binary already: no second pass

        move_managed_binary(shim_home, "moved")
        shim_home.ok("update", "--yes")
        assert usr1_pending(pid)  # behind: it follows at once
    finally:
        os.kill(pid, signal.SIGCONT)
    assert updater_ready(shim_home, starts=2) == pid


def test_a_pass_from_a_checkout_that_is_gone_says_so(shim_home: Home, tmp_path: Path) -> None:
    gone = tmp_path / "gone-checkout"
    shim_home.env["CODEXD_CHANNEL"] = str(gone)
    shim_home.ok("bootstrap")
    pid = updater_ready(shim_home, starts=1)

    os.kill(pid, signal.SIGUSR1)

    def no_source() -> dict[str, Any] | None:
        record = last_pass(shim_home)
        return record if record and record.get("installer") == "noSource" else None

    record = wait_for(no_source, timeout=PASS_TIMEOUT_SECONDS, what="the pass")
    assert record["installerDetail"] == f"the channel {gone} is gone", record
    log = updater_log(shim_home)
    assert f"the channel {gone} is gone: run `sh install.sh` once" in log
    assert "cannot open" not in log
