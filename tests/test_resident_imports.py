"""The resident workers stay small: the keeper and the updater, run as a release runs them
(`python -I -S`), import only what their loops use, at first idle, after a restart of
the app-server, and (the updater) after a pass, which runs in a child it forks.

Every module a resident process imports stays in its memory for its whole life; these
are the ones that cost most (each 0.5 to 3 MB with what it brings). bench/ measures the
memory itself; this holds the cause."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Home, updater_pids, wait_for

CHECKOUT = Path(__file__).resolve().parent.parent
HEAVY = (
    "pathlib",
    "dataclasses",
    "inspect",
    "enum",
    "signal",  # `_signal` has the numbers without the enum conversions
    "contextlib",
    "functools",
    "datetime",
    "socket",
    "selectors",
    "re",
    "json",
    "typing",
    "tempfile",
    "shutil",
    "subprocess",
    "threading",
    "logging",
    "lockfile",
    "psutil",
    "click",
    "daemon",
)
# Imported when the rare work needs them (relaunching the other worker, rotating a log,
# an unreadable lock), never at idle.
RARE = (
    "supervisor.lifecycle",
    "supervisor.worker_launch",
    "supervisor.worker_stop",
    "supervisor.app_server_messages",
    "supervisor.locks",
    "supervisor.logs",
    "supervisor.launcher",
)
KEEPER_NEVER = (*HEAVY, *RARE)
UPDATER_NEVER = (
    *HEAVY,
    *RARE,
    "workers.updater_pass",  # the pass, in its child
    "supervisor.installer",
    "supervisor.updates",
    "supervisor.update_pass",
)


def modules_after(*statements: str) -> set[str]:
    """The modules a bare `python -I -S` has after `statements`, this checkout first on
    sys.path."""
    site = [path for path in sys.path if path.endswith("site-packages")]
    code = "\n".join(
        [
            f"import sys; sys.path[:0] = {[str(CHECKOUT), *site]!r}",
            *statements,
            "print(' '.join(sorted(sys.modules)))",
        ]
    )
    ran = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(ran.stdout.split())


@pytest.mark.parametrize(
    ("module", "never"),
    [("workers.keeper", KEEPER_NEVER), ("workers.updater", UPDATER_NEVER)],
)
def test_a_resident_worker_module_imports_nothing_heavy(module: str, never: tuple[str]) -> None:
    imported = modules_after("import commands.main, commands.common", f"import {module}")
    assert sorted(imported & set(never)) == []


@pytest.fixture
def lean_home(home: Home, tmp_path: Path) -> Home:
    """A home whose managed binary runs this checkout's codexd as a release does (see
    release/artifact.py): `python -I -S`, the entry point as a file, only the checkout
    and the dependencies on sys.path; the workers report their modules on request."""
    site = [path for path in sys.path if path.endswith("site-packages")]
    main = tmp_path / "codexd-main.py"
    main.write_text(
        f"import sys\nsys.path[:0] = {[str(CHECKOUT), *site]!r}\n"
        "from commands.main import main\nmain()\n"
    )
    launcher = tmp_path / "codexd-release-like"
    launcher.write_text(
        f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -I -S {shlex.quote(str(main))} "$@"\n'
    )
    launcher.chmod(0o755)
    home.install_managed_shim(launcher)
    reports = tmp_path / "modules"
    reports.mkdir()
    home.env.update(
        CODEXD_TEST_MODULES_TO=str(reports),
        CODEXD_WATCHDOG_SECONDS="0.5",
        CODEXD_RESTART_DELAY_SECONDS="0.1",
        CODEXD_UPDATE_INITIAL_DELAY_SECONDS="3600",
        CODEXD_UPDATE_INTERVAL_SECONDS="3600",
    )
    return home


def modules_of(pid: int, ask: signal.Signals, home: Home) -> set[str]:
    """Ask a worker for its state until its report shows that its health check of the
    other worker has run (supervisor.worker_state); the modules it lists."""
    report = Path(home.env["CODEXD_TEST_MODULES_TO"]) / str(pid)

    def reported() -> set[str] | None:
        report.unlink(missing_ok=True)
        os.kill(pid, ask)
        listed = wait_for(report.exists, what=f"pid {pid}'s modules") and report.read_text()
        names = set(listed.split())
        return names if "supervisor.worker_state" in names else None

    found: set[str] = wait_for(reported, what=f"pid {pid} after its health check")
    return found


def test_the_keeper_and_the_updater_stay_on_their_diet(lean_home: Home) -> None:
    home = lean_home
    assert home.ok("bootstrap")["status"] == "bootstrapped"
    [updater] = wait_for(lambda: updater_pids(home.path), what="the updater")
    [keeper] = home.keeper_pids()
    first = home.serving(keeper)

    # The app-server crashes and comes back: the keeper's restart path has run.
    os.kill(first, signal.SIGKILL)

    def restarted() -> bool:
        record = home.record() or {}
        running = (record.get("keeper") or {}).get("state") == "running"
        return running and record.get("appServerPid") not in (None, first)

    wait_for(restarted, what="the restarted app-server")
    home.serving(keeper)
    keeper_modules = modules_of(keeper, signal.SIGUSR1, home)

    # A pass (there is no release source here: the installer is not run), in its child.
    last_pass = home.paths.updater_last_pass
    os.kill(updater, signal.SIGUSR1)
    wait_for(last_pass.exists, what="the pass")
    assert updater_pids(home.path) == [updater]
    updater_modules = modules_of(updater, signal.SIGUSR2, home)

    assert "workers.keeper" in keeper_modules and "workers.updater" in updater_modules
    assert sorted(keeper_modules & set(KEEPER_NEVER)) == []
    assert sorted(updater_modules & set(UPDATER_NEVER)) == []
