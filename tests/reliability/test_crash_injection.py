"""SIGKILL at every pause point of every mutating command, and SIGKILL of the
app-server and the updater at random moments: the next command succeeds and the
invariants of `invariants.check_home` hold."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from supervisor.config import PAUSE_ENV
from tests.conftest import Home, is_gone, processes_of_home, updater_pids, wait_for
from tests.reliability.invariants import check_home

SETTLE_SECONDS = 15.0
# A command may wait this long for daemon.lock, plus its own work.
COMMAND_DEADLINE_SECONDS = 75.0 + 30.0
QUIET_SCHEDULE = {
    "CODEXD_UPDATE_INITIAL_DELAY_SECONDS": "3600",
    "CODEXD_UPDATE_INTERVAL_SECONDS": "3600",
}
SETTINGS_ON = b'{\n  "remoteControlEnabled": true\n}\n'
SETTINGS_OFF = b'{\n  "remoteControlEnabled": false\n}\n'


@dataclass(frozen=True)
class Crash:
    command: str
    point: str
    server_before: bool

    def __str__(self) -> str:
        return f"{self.command}@{self.point}{'+server' if self.server_before else ''}"


CRASHES = [
    Crash("start", "locked", False),
    Crash("start", "launched", False),
    # The detached worker itself dies after staging its record, before its exec.
    Crash("start", "staged-app-server.pid", False),
    Crash("restart", "locked", True),
    Crash("restart", "signalled", True),
    Crash("restart", "launched", True),
    Crash("restart", "launched", False),
    Crash("stop", "locked", True),
    Crash("stop", "signalled", True),
    Crash("bootstrap", "locked", True),
    Crash("bootstrap", "staged-settings.json", True),
    Crash("bootstrap", "signalled", True),
    Crash("bootstrap", "launched", True),
    Crash("bootstrap", "launched", False),
    Crash("enable-remote-control", "locked", True),
    Crash("enable-remote-control", "staged-settings.json", True),
    Crash("enable-remote-control", "staged-settings.json", False),
    Crash("enable-remote-control", "signalled", True),
    Crash("enable-remote-control", "launched", True),
    Crash("disable-remote-control", "staged-settings.json", True),
    Crash("disable-remote-control", "signalled", True),
    Crash("disable-remote-control", "launched", True),
]


def assert_well_formed(command: str, returncode: int, stdout: str, stderr: str) -> None:
    """One JSON object on one line and exit 0, or nothing on stdout, a `codexd:` message
    on stderr and a non-zero exit."""
    if returncode == 0:
        lines = stdout.splitlines()
        assert len(lines) == 1, f"{command}: expected one line of JSON, got {stdout!r}"
        assert isinstance(json.loads(lines[0]), dict), f"{command}: {stdout!r}"
    else:
        assert stdout == "", f"{command} failed ({returncode}) but printed {stdout!r}"
        assert stderr.startswith("codexd: "), f"{command} failed with {stderr!r}"


def pause_and_kill(home: Home, command: str, point: str, marker: Path) -> subprocess.Popen[str]:
    """Run `command` until a process reaches `point`, SIGKILL that process, and return
    the CLI (which is the paused process unless the point is in a worker)."""
    cli = home.spawn(command, env={PAUSE_ENV: f"{point}:{marker}"})

    def paused() -> bool:
        if cli.poll() is not None:
            _, stderr = cli.communicate()
            raise AssertionError(f"{command} exited {cli.returncode} before {point}: {stderr}")
        return marker.exists() and marker.read_text().endswith("\n")

    wait_for(paused, timeout=SETTLE_SECONDS, what=f"{command} to pause at {point}")
    os.kill(int(marker.read_text()), signal.SIGKILL)
    return cli


def stray_temp_files(home: Home) -> list[str]:
    state_dir = home.paths.state_dir
    return sorted(p.name for p in state_dir.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("crash", CRASHES, ids=str)
def test_a_command_killed_at_a_pause_point_loses_nothing(
    home: Home, tmp_path: Path, crash: Crash
) -> None:
    home.env.update(QUIET_SCHEDULE)
    wanted_remote = {"enable-remote-control": True, "disable-remote-control": False}
    if crash.command == "disable-remote-control":
        home.ok("enable-remote-control")
    before = home.ok("start")["pid"] if crash.server_before else None
    settings_before = (
        home.paths.settings_file.read_bytes() if home.paths.settings_file.exists() else None
    )

    cli = pause_and_kill(home, crash.command, crash.point, tmp_path / "paused")
    stdout, stderr = cli.communicate(timeout=COMMAND_DEADLINE_SECONDS)
    if cli.returncode != -signal.SIGKILL:
        # The worker was killed, not the CLI: the CLI must fail cleanly.
        assert cli.returncode != 0, f"{crash.command} succeeded though its worker died"
        assert_well_formed(crash.command, cli.returncode, stdout, stderr)

    # A settings file is old or new, never half: the rename is what commits it.
    if crash.point == "staged-settings.json":
        assert (
            home.paths.settings_file.read_bytes() if home.paths.settings_file.exists() else None
        ) == settings_before

    again = home.run(crash.command)
    assert_well_formed(crash.command, again.returncode, again.stdout, again.stderr)
    assert again.returncode == 0, f"{crash.command} after the kill failed: {again.stderr}"
    state = check_home(home.path)

    if crash.command in wanted_remote:
        assert home.paths.settings_file.read_bytes() == (
            SETTINGS_ON if wanted_remote[crash.command] else SETTINGS_OFF
        )
    if crash.command == "stop":
        assert state.app_server is None
        assert before is not None and is_gone(before)
    elif crash.command in wanted_remote and (crash.point == "signalled" or not crash.server_before):
        # Nothing ran, or the setting was saved and the old server signalled: the retry
        # finds the setting as wanted and restarts the old server only if it is still on
        # its way out; otherwise none runs until the `start` below.
        assert state.app_server is None or crash.server_before
    else:
        assert state.app_server is not None
        if crash.command == "bootstrap":
            assert state.updater is not None
    if state.app_server is not None and state.remote_control is not None:
        cmdline = psutil.Process(state.app_server).cmdline()
        assert ("remote_control" in cmdline) == state.remote_control, cmdline

    assert home.ok("start")["status"] in ("started", "alreadyRunning")
    check_home(home.path)
    assert stray_temp_files(home) == [], "a killed writer's temp file was never cleaned up"


def kill_app_servers(home: Home) -> list[int]:
    killed = []
    for pid in home.app_server_pids():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        killed.append(pid)
    return killed


def test_app_server_killed_at_random_moments(home: Home, rng: random.Random, full: bool) -> None:
    home.env.update(QUIET_SCHEDULE)
    operations = ["start", "restart", "enable-remote-control", "disable-remote-control"]
    for round_number in range(30 if full else 6):
        command = rng.choice(operations)
        delay = rng.uniform(0.0, 1.5)
        cli = home.spawn(command)
        # The random moment: now, unless the command finished first.
        with contextlib.suppress(subprocess.TimeoutExpired):
            cli.wait(timeout=delay)
        killed = kill_app_servers(home)
        stdout, stderr = cli.communicate(timeout=COMMAND_DEADLINE_SECONDS)
        where = f"round {round_number}: {command}, app-servers {killed} killed after {delay:.3f} s"
        assert_well_formed(where, cli.returncode, stdout, stderr)
        for pid in killed:
            wait_for(functools.partial(is_gone, pid), what=f"{pid} to die ({where})")
        started = home.run("start")
        assert started.returncode == 0, f"{where}; then start failed: {started.stderr}"
        state = check_home(home.path)
        assert state.app_server is not None, where


def test_updater_killed_at_random_moments_is_relaunched_by_the_keeper(
    home: Home, rng: random.Random, full: bool, tmp_path: Path
) -> None:
    # A channel whose installer takes a moment and installs nothing new, and a schedule
    # that keeps the updater busy: the kill lands mid-sleep, mid-install or mid-compare.
    channel = tmp_path / "channel"
    channel.mkdir()
    (channel / "install.sh").write_text("sleep 0.2\n")
    home.env.update(
        CODEXD_CHANNEL=str(channel),
        CODEXD_UPDATE_INITIAL_DELAY_SECONDS="0",
        CODEXD_UPDATE_INTERVAL_SECONDS="0.1",
        CODEXD_WATCHDOG_SECONDS="0.5",
    )
    assert home.ok("bootstrap")["status"] == "bootstrapped"
    for round_number in range(12 if full else 3):
        state = check_home(home.path, busy=True)
        assert state.updater is not None and state.keeper is not None
        delay = rng.uniform(0.0, 1.0)
        with pytest.raises(psutil.TimeoutExpired):
            psutil.Process(state.updater).wait(timeout=delay)  # the random moment
        os.kill(state.updater, signal.SIGKILL)
        wait_for(functools.partial(is_gone, state.updater), what="the updater to die")
        where = f"round {round_number}: updater killed {delay:.3f} s after it started"

        def relaunched(killed: int = state.updater) -> bool:
            # Its title is set and its record names it: the launch is over.
            pids = updater_pids(home.path)
            record = home.paths.updater_record
            return (
                bool(pids)
                and pids != [killed]
                and f'"pid": {pids[0]},' in (record.read_text() if record.exists() else "")
            )

        wait_for(relaunched, timeout=SETTLE_SECONDS, what=f"a new updater ({where})")
        assert check_home(home.path, busy=True).keeper == state.keeper, where


def test_an_updater_killed_mid_install_leaves_no_installer_behind(
    home: Home, tmp_path: Path
) -> None:
    channel = tmp_path / "channel"
    channel.mkdir()
    started = tmp_path / "installer-started"
    (channel / "install.sh").write_text(f"touch '{started}'\nsleep 600\n")
    home.env.update(
        CODEXD_CHANNEL=str(channel),
        CODEXD_UPDATE_INITIAL_DELAY_SECONDS="0",
        CODEXD_UPDATE_INTERVAL_SECONDS="3600",
    )
    assert home.ok("bootstrap")["status"] == "bootstrapped"
    updater = check_home(home.path).updater
    assert updater is not None
    wait_for(started.exists, timeout=SETTLE_SECONDS, what="the installer to start")
    os.kill(updater, signal.SIGKILL)
    wait_for(functools.partial(is_gone, updater), what=f"updater {updater} to die")

    assert home.ok("bootstrap")["status"] == "bootstrapped"
    check_home(home.path)  # the hung installer of the killed updater is gone too


# -- the keeper killed at its own pause points -------------------------------------------


@dataclass(frozen=True)
class KeeperCrash:
    point: str
    command: str  # what makes the keeper reach the point
    # A job the app-server starts that ignores SIGTERM: only a SIGKILL ends it.
    job: bool = False

    def __str__(self) -> str:
        return f"{self.command}@{self.point}{'+job' if self.job else ''}"


KEEPER_CRASHES = [
    # Its first app-server forked, the record not yet naming it: `start` waits for it.
    KeeperCrash("keeper-spawned", "start"),
    # SIGTERM sent to the app-server by `stop`; the keeper dies in the grace window.
    KeeperCrash("keeper-terminating", "stop"),
    KeeperCrash("keeper-terminating", "stop", job=True),
    # The app-server is gone; SIGTERM sent to what it left, which ignores it.
    KeeperCrash("keeper-ending", "stop", job=True),
]
STUBBORN_JOB = "(trap '' TERM; exec sleep 600) &"


@pytest.mark.parametrize("crash", KEEPER_CRASHES, ids=str)
def test_a_keeper_killed_at_a_pause_point_leaves_nothing_behind(
    home: Home, tmp_path: Path, crash: KeeperCrash
) -> None:
    managed = home.paths.managed_binary
    if crash.job:
        managed.write_text(
            f'#!/bin/sh\ncase " $* " in *" --listen "*) {STUBBORN_JOB} ;; esac\n'
            + managed.read_text().split("\n", 1)[1]
        )
    marker = tmp_path / "paused"
    pause = {PAUSE_ENV: f"{crash.point}:{marker}"}
    if crash.command == "start":
        cli = home.spawn("start", env=pause)
    else:
        home.ok("start", env=pause)
        cli = home.spawn(crash.command)
    wait_for(
        lambda: marker.exists() and marker.read_text().endswith("\n"),
        timeout=SETTLE_SECONDS,
        what=f"the keeper to pause at {crash.point}",
    )
    keeper = int(marker.read_text())
    os.kill(keeper, signal.SIGKILL)
    stdout, stderr = cli.communicate(timeout=COMMAND_DEADLINE_SECONDS)
    assert_well_formed(str(crash), cli.returncode, stdout, stderr)
    wait_for(lambda: is_gone(keeper), what=f"keeper {keeper} to die")
    # No app-server outlives its keeper (the kernel's parent-death signal), and a stop
    # ends what the dead keeper's app-server left, SIGTERM-proof jobs too.
    wait_for(lambda: home.app_server_pids() == [], what="the app-server to die with its keeper")
    if crash.command == "stop":
        assert cli.returncode == 0, stderr
        assert processes_of_home(home.path) == []

    # The next command starts afresh and ends whatever the dead keeper left.
    home.install_managed_shim()
    started = home.run("start")
    assert started.returncode == 0, f"{crash}: then start failed: {started.stderr}"
    state = check_home(home.path)
    assert state.keeper is not None and state.app_server is not None
    assert home.ok("stop")["status"] == "stopped"
    assert home.nothing_runs()
    check_home(home.path)
