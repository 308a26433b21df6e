"""The keeper, with real processes: it restarts a crashed or hung app-server, gives up
on a crash loop, contains and ends everything the app-server starts, takes a person's
`kill -TERM` as a stop, and heals the updater (and is healed by it)."""

from __future__ import annotations

import datetime
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from supervisor.locks import lock_holders
from supervisor.paths import lock_path_for
from supervisor.standalone import RELEASE_MARKER
from tests.conftest import CODEXD, Home, is_gone, updater_pids, wait_for

FAST = {"CODEXD_RESTART_DELAY_SECONDS": "0.1", "CODEXD_WATCHDOG_SECONDS": "0.5"}
# Time for a keeper to notice, act and settle on a loaded two-core machine.
SETTLE_SECONDS = 20.0


def install_binary(home: Home, before_exec: str) -> Path:
    """A managed binary that runs `before_exec` (shell) when it is launched as the
    app-server, then becomes this checkout's codexd."""
    managed = home.paths.managed_binary
    managed.parent.mkdir(parents=True, exist_ok=True)
    managed.write_text(
        f'#!/bin/sh\ncase " $* " in *" --listen "*)\n{before_exec}\n;; esac\nexec "{CODEXD}" "$@"\n'
    )
    managed.chmod(0o755)
    (managed.parent / RELEASE_MARKER).write_text("release=test\n")
    return managed


def keeper_state(home: Home) -> dict[str, Any] | None:
    record = home.record()
    return None if record is None else record.get("keeper")


def new_app_server(home: Home, keeper: int, old: int) -> Callable[[], int | None]:
    """A condition: the keeper runs an app-server other than `old` and says so."""

    def check() -> int | None:
        record = home.record()
        if record is None or record["pid"] != keeper or record["keeper"]["state"] != "running":
            return None
        new = record.get("appServerPid")
        return new if new not in (None, old) else None

    return check


def below(pid: int) -> list[int]:
    return [child.pid for child in psutil.Process(pid).children(recursive=True)]


def log_says(home: Home, path: Path, text: str) -> Callable[[], bool]:
    return lambda: path.exists() and text in path.read_text()


# -- crashes and hangs -------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGSEGV])
def test_a_crashed_app_server_comes_back_and_answers(home: Home, signum: signal.Signals) -> None:
    home.env.update(FAST)
    keeper = home.ok("start")["pid"]
    crashed = home.serving(keeper)
    os.kill(crashed, signum)

    new = wait_for(new_app_server(home, keeper, crashed), SETTLE_SECONDS, "a new app-server")
    assert home.serving(keeper) == new
    assert home.ok("version")["appServerVersion"] == "0.1.0"
    state = keeper_state(home)
    assert state is not None and state["restarts"] == 1
    assert state["lastExit"]["description"] == f"killed by {signum.name}"
    assert state["lastExit"]["reason"] == "crashed"
    status = home.ok("status", "--json")["appServer"]
    assert status["status"] == "running" and status["restarts"] == 1
    assert status["pid"] == new and status["keeper"]["pid"] == keeper
    log = home.paths.app_server_log.read_text()
    assert f"app-server pid {crashed} exited: killed by {signum.name} (crashed)" in log
    assert f"launched app-server pid {new}" in log


def crashed_into_a_long_delay(home: Home) -> tuple[int, int]:
    """A keeper waiting out a restart delay (capped at 30 s) after its app-server was
    SIGKILLed: the keeper's pid and the crashed app-server's."""
    home.env.update(FAST, CODEXD_RESTART_DELAY_SECONDS="600")
    keeper = home.ok("start")["pid"]
    crashed = home.serving(keeper)
    os.kill(crashed, signal.SIGKILL)
    wait_for(lambda: (keeper_state(home) or {}).get("state") == "backoff", what="the backoff")
    return keeper, crashed


def test_version_while_the_keeper_waits_to_restart_says_so(home: Home) -> None:
    keeper, _ = crashed_into_a_long_delay(home)

    answer = home.run("version")

    assert answer.returncode == 1 and answer.stdout == ""
    assert answer.stderr.startswith(
        f"codexd: app server is not answering yet: its keeper (pid {keeper}) is waiting out "
        "its restart delay after killed by SIGKILL (crashed) (backoff since "
    ), answer.stderr
    # status says when it comes back by itself, and that start need not wait.
    retry_at = home.ok("status", "--json")["appServer"]["keeper"]["retryAt"]
    assert retry_at is not None
    wait = datetime.datetime.fromisoformat(retry_at) - datetime.datetime.now(datetime.UTC)
    assert 20 < wait.total_seconds() <= 30  # the delay is capped at 30 s
    assert "`codexd start` starts it now" in home.run("status").stdout
    assert home.ok("start")["status"] == "started"  # the delay cut short
    assert home.ok("status", "--json")["appServer"]["keeper"]["retryAt"] is None
    assert home.ok("version")["appServerVersion"] == "0.1.0"


def test_start_while_the_keeper_waits_to_restart_reports_started_with_the_keepers_pid(
    home: Home,
) -> None:
    """Nothing answered when `start` was asked: to a client it started an app-server,
    whose keeper's pid it prints, as every `started` does."""
    keeper, crashed = crashed_into_a_long_delay(home)

    started = home.ok("start")

    assert started["status"] == "started" and started["pid"] == keeper
    assert started["backend"] == "pid" and started["appServerVersion"] == "0.1.0"
    assert home.serving(keeper) != crashed
    assert home.ok("start")["status"] == "alreadyRunning"


def test_a_stopped_app_server_is_replaced_by_the_watchdog(home: Home) -> None:
    home.env.update(FAST)
    keeper = home.ok("start")["pid"]
    hung = home.serving(keeper)
    os.kill(hung, signal.SIGSTOP)
    try:
        new = wait_for(new_app_server(home, keeper, hung), SETTLE_SECONDS, "a replacement")
    finally:
        if not is_gone(hung):
            os.kill(hung, signal.SIGCONT)
    assert is_gone(hung)
    assert home.serving(keeper) == new
    state = keeper_state(home)
    assert state is not None and state["lastExit"]["reason"] == "unresponsive"
    assert "watchdog: app-server" in home.paths.app_server_log.read_text()
    assert home.ok("version")["status"] == "running"


def test_a_crash_loop_fails_and_start_with_a_fixed_binary_works(home: Home) -> None:
    home.env.update(FAST, CODEXD_RESTART_BURST="3")
    # Answers, then dies by SIGSEGV two seconds after it starts: every time.
    install_binary(home, "( sleep 2; kill -SEGV $$ ) &")
    keeper = home.ok("start")["pid"]

    wait_for(lambda: is_gone(keeper), 3 * SETTLE_SECONDS, "the keeper to give up")
    assert home.nothing_runs()
    state = keeper_state(home)
    assert state is not None and state["state"] == "failed"
    assert "3 failures within 120 s" in state["failure"]
    assert [exit["description"] for exit in state["failedExits"]] == ["killed by SIGSEGV"] * 3

    status = home.ok("status", "--json")["appServer"]
    assert status["status"] == "failed"
    assert status["failure"] == state["failure"]
    version = home.run("version")
    assert version.returncode == 1 and version.stdout == ""
    assert "failed" in version.stderr and "killed by SIGSEGV" in version.stderr
    assert str(home.paths.app_server_log) in version.stderr
    assert len(version.stderr.strip().splitlines()) == 1

    home.install_managed_shim()
    started = home.ok("start")
    assert started["status"] == "started"
    home.serving(started["pid"])
    state = keeper_state(home)
    assert state is not None and state["state"] == "running" and state["restarts"] == 0


def test_an_app_server_that_exits_at_once_fails_start_with_its_status(home: Home) -> None:
    # Coloured, as codex writes its log even into a file: quoted without the colours.
    install_binary(home, r"printf '\033[31mERROR\033[0m cannot start: no config\n' >&2; exit 3")
    result = home.run("start")
    assert result.returncode == 1 and result.stdout == ""
    assert "exit status 3" in result.stderr
    assert "ERROR cannot start: no config" in result.stderr
    assert "\x1b" not in result.stderr
    assert home.nothing_runs()
    assert home.ok("status", "--json")["appServer"]["status"] == "failed"
    # Why, for status, doctor and the updater: a start that failed, not a crash loop.
    state = keeper_state(home)
    assert state is not None
    assert state["failure"] == "the app-server did not start (exit status 3)"


# -- what the app-server starts ----------------------------------------------------------


def test_a_background_job_never_holds_the_lock_is_ended_by_stop_and_start_works_at_once(
    home: Home,
) -> None:
    install_binary(home, "sleep 600 &")
    keeper = home.ok("start")["pid"]
    app_server = home.serving(keeper)
    [job] = [pid for pid in below(keeper) if pid != app_server]
    assert psutil.Process(job).cmdline() == ["sleep", "600"]
    assert lock_holders(lock_path_for(home.paths.app_server_record)) == [keeper]
    assert home.ok("status", "--json")["appServer"]["busyProcesses"] == 1

    assert home.ok("stop")["status"] == "stopped"
    assert is_gone(job) and is_gone(app_server) and is_gone(keeper)
    assert "ending 1 process left by the app-server" in home.paths.app_server_log.read_text()

    home.install_managed_shim()
    started = home.ok("start")
    assert started["status"] == "started"
    home.serving(started["pid"])


def test_a_sigkilled_keeper_takes_its_app_server_and_start_ends_the_jobs_left(
    home: Home,
) -> None:
    install_binary(home, "sleep 600 &")
    keeper = home.ok("start")["pid"]
    app_server = home.serving(keeper)
    [job] = [pid for pid in below(keeper) if pid != app_server]

    os.kill(keeper, signal.SIGKILL)
    wait_for(lambda: is_gone(app_server), what="the app-server to die with its keeper")
    assert not is_gone(job)  # an orphan now, of init

    home.install_managed_shim()
    started = home.ok("start")
    assert started["status"] == "started"
    assert is_gone(job)
    home.serving(started["pid"])


# -- signals -----------------------------------------------------------------------------


def test_term_to_the_app_server_by_hand_is_a_deliberate_stop(home: Home) -> None:
    keeper = home.ok("start")["pid"]
    os.kill(home.serving(keeper), signal.SIGTERM)
    wait_for(lambda: is_gone(keeper), what="the keeper to stop")
    assert home.nothing_runs()
    assert home.record() is None
    assert not os.path.lexists(home.paths.socket_path)
    assert home.ok("stop")["status"] == "notRunning"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT])
def test_term_int_and_quit_to_the_keeper_stop_everything(home: Home, signum: int) -> None:
    install_binary(home, "sleep 600 &")
    keeper = home.ok("start")["pid"]
    tree = below(keeper)
    os.kill(keeper, signum)
    wait_for(lambda: is_gone(keeper), what="the keeper to stop")
    assert all(is_gone(pid) for pid in tree)
    assert home.record() is None
    assert not os.path.lexists(home.paths.socket_path)
    # Why nothing runs, for whoever asks next.
    name = signal.Signals(signum).name
    stop = home.ok("status", "--json")["appServer"]["lastStop"]
    assert stop is not None and stop["what"] == f"{name}: stopping", stop
    assert f"last stop       {name}: stopping, " in home.run("status").stdout


def test_hup_restarts_the_app_server_and_other_signals_are_ignored(home: Home) -> None:
    keeper = home.ok("start")["pid"]
    first = home.serving(keeper)
    for signum in (signal.SIGUSR2, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU):
        os.kill(keeper, signum)
        name = signal.Signals(signum).name
        wait_for(log_says(home, home.paths.app_server_log, f"{name}: ignored"), what=name)
    assert home.serving(keeper) == first
    os.kill(keeper, signal.SIGUSR1)
    wait_for(log_says(home, home.paths.app_server_log, "state running"), what="USR1's state")

    os.kill(keeper, signal.SIGHUP)
    new = wait_for(new_app_server(home, keeper, first), SETTLE_SECONDS, "the HUP restart")
    assert is_gone(first)
    state = keeper_state(home)
    assert state is not None
    assert state["restarts"] == 1
    assert state["lastExit"]["reason"] == "restart requested (SIGHUP)"
    assert home.serving(keeper) == new


# -- the keeper and the updater ----------------------------------------------------------


@pytest.fixture
def bootstrapped(home: Home) -> tuple[Home, int, int]:
    home.env.update(
        FAST, CODEXD_UPDATE_INITIAL_DELAY_SECONDS="3600", CODEXD_UPDATE_INTERVAL_SECONDS="3600"
    )
    assert home.ok("bootstrap")["status"] == "bootstrapped"
    [updater] = wait_for(lambda: updater_pids(home.path), what="the updater")
    [keeper] = home.keeper_pids()
    # The updater has had its first look at the keeper: what happens next, it sees.
    wait_for(log_says(home, home.paths.updater_log, "the keeper is running"), what="the look")
    return home, keeper, updater


def test_a_sigkilled_updater_is_relaunched_by_the_keeper(
    bootstrapped: tuple[Home, int, int],
) -> None:
    home, keeper, updater = bootstrapped
    os.kill(updater, signal.SIGKILL)

    def relaunched() -> list[int]:
        pids = [pid for pid in updater_pids(home.path) if pid != updater]
        return pids if pids and home.paths.updater_record.exists() else []

    [new] = wait_for(relaunched, SETTLE_SECONDS, "a new updater")
    wait_for(log_says(home, home.paths.app_server_log, f"relaunched the updater (pid {new})"))
    # Not below the keeper: ending the keeper's descendants must not end it.
    assert psutil.Process(new).ppid() != keeper
    assert home.keeper_pids() == [keeper]


def test_a_sigkilled_keeper_is_relaunched_by_the_updater(
    bootstrapped: tuple[Home, int, int],
) -> None:
    home, keeper, updater = bootstrapped
    app_server = home.serving(keeper)
    os.kill(keeper, signal.SIGKILL)
    wait_for(lambda: is_gone(app_server), what="the app-server to die with its keeper")

    def relaunched() -> int | None:
        keepers = [pid for pid in home.keeper_pids() if pid != keeper]
        state = keeper_state(home)
        return keepers[0] if keepers and state and state["state"] == "running" else None

    new = wait_for(relaunched, SETTLE_SECONDS, "a new keeper")
    wait_for(log_says(home, home.paths.updater_log, f"relaunched the keeper (pid {new})"))
    home.serving(new)
    assert updater_pids(home.path) == [updater]
    assert home.ok("version")["status"] == "running"


def test_a_stop_is_never_undone_by_the_updater(bootstrapped: tuple[Home, int, int]) -> None:
    home, keeper, updater = bootstrapped
    os.kill(home.serving(keeper), signal.SIGTERM)  # a person's kill -TERM of the app-server
    wait_for(lambda: is_gone(keeper), what="the keeper to stop")
    wait_for(
        log_says(home, home.paths.updater_log, "the keeper was stopped"),
        SETTLE_SECONDS,
        "the updater to see the stop",
    )
    assert home.nothing_runs()
    assert "relaunched the keeper" not in home.paths.updater_log.read_text()

    os.kill(updater, signal.SIGTERM)
    wait_for(lambda: is_gone(updater), what="the updater to stop")
    assert not home.paths.updater_record.exists()
    assert updater_pids(home.path) == []


def test_a_failed_keeper_is_not_relaunched_by_the_updater(
    bootstrapped: tuple[Home, int, int],
) -> None:
    home, keeper, _ = bootstrapped
    home.env.update(CODEXD_RESTART_BURST="2")
    install_binary(home, "( sleep 1; kill -KILL $$ ) &")
    keeper = home.ok("restart")["pid"]
    wait_for(lambda: is_gone(keeper), 3 * SETTLE_SECONDS, "the keeper to give up")
    wait_for(
        log_says(home, home.paths.updater_log, "the keeper gave up"),
        SETTLE_SECONDS,
        "the updater to see the failure",
    )
    assert home.keeper_pids() == []
    assert home.ok("status", "--json")["appServer"]["status"] == "failed"
