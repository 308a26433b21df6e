"""Churn: the app-server is killed, crashed and restarted at random while its jobs come
and go; the keeper leaves no zombie and no stray process, and always comes back."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time

import psutil

from supervisor.standalone import RELEASE_MARKER
from tests.conftest import CODEXD, Home, wait_for
from tests.reliability.invariants import check_home

# An app-server that keeps starting short jobs, some of them orphaned when it dies.
JOB_LOOP = "( while :; do sleep 0.05 & sleep 0.2; done ) &"
# A zombie the keeper has had this long to reap is one it missed.
REAP_SECONDS = 1.0


def install_churning_binary(home: Home) -> None:
    managed = home.paths.managed_binary
    managed.parent.mkdir(parents=True, exist_ok=True)
    managed.write_text(
        f'#!/bin/sh\ncase " $* " in *" --listen "*) {JOB_LOOP} ;; esac\nexec "{CODEXD}" "$@"\n'
    )
    managed.chmod(0o755)
    (managed.parent / RELEASE_MARKER).write_text("release=churn\n")


def zombies_below(keeper: int) -> set[int]:
    found = set()
    with contextlib.suppress(psutil.NoSuchProcess):
        for child in psutil.Process(keeper).children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                if child.status() == psutil.STATUS_ZOMBIE:
                    found.add(child.pid)
    return found


def app_server_of(home: Home) -> int | None:
    record = home.record()
    return None if record is None else record.get("appServerPid")


def test_a_minute_of_churn_leaves_no_zombie(home: Home, rng: random.Random, full: bool) -> None:
    home.env.update(
        CODEXD_RESTART_DELAY_SECONDS="0.05",
        CODEXD_RESTART_BURST="100000",
        CODEXD_WATCHDOG_SECONDS="0.5",
    )
    install_churning_binary(home)
    keeper = home.ok("start")["pid"]
    actions = {
        "kill": signal.SIGKILL,
        "segv": signal.SIGSEGV,
        "hup": signal.SIGHUP,
        "usr1": signal.SIGUSR1,
    }
    seen: dict[int, float] = {}  # zombie pid -> when first seen
    deadline = time.monotonic() + (60.0 if full else 12.0)
    rounds = 0
    while time.monotonic() < deadline:
        name = rng.choice(sorted(actions))
        target = keeper if name in ("hup", "usr1") else app_server_of(home)
        if target is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(target, actions[name])
        rounds += 1
        # Watch for zombies while the keeper works.
        pause_until = time.monotonic() + rng.uniform(0.05, 0.6)
        while time.monotonic() < pause_until:
            now = time.monotonic()
            current = zombies_below(keeper)
            for pid in current:
                seen.setdefault(pid, now)
            seen = {pid: first for pid, first in seen.items() if pid in current}
            stale = [pid for pid, first in seen.items() if now - first > REAP_SECONDS]
            assert not stale, f"zombies the keeper did not reap: {stale} (round {rounds})"
            time.sleep(0.05)

    assert home.keeper_pids() == [keeper], "the keeper itself must survive the churn"
    record = home.record()
    assert record is not None and record["keeper"]["restarts"] > 0
    # The churn has grown the restart delay; `start` asks for the app-server now.
    assert home.ok("start")["status"] in ("alreadyRunning", "started")

    def settled() -> bool:
        record = home.record()
        return bool(record and record["keeper"]["state"] == "running") and not zombies_below(keeper)

    wait_for(settled, timeout=20.0, what="the keeper to settle with no zombie")
    check_home(home.path)
    assert home.ok("stop")["status"] == "stopped"
    assert home.nothing_runs()
    check_home(home.path)
