"""What an operator runs by hand: `codexd update` (one update pass now, in the
foreground, whether or not the updater runs) and `codexd rollback` (`current` back to
the previous release, the app-server restarted onto it).

Both share the updater's pieces: the installer command (supervisor/installer.py), the
refresh and rollback (supervisor/updates.py), the pass record (supervisor/update_pass.py).
"""

from __future__ import annotations

import datetime
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from supervisor import config
from supervisor.errors import DaemonError
from supervisor.installer import (
    NEW_SOURCE_REMEDY,
    current_source,
    installer_command,
    installer_environment,
    local_source_problem,
)
from supervisor.lifecycle import Daemon
from supervisor.managed import require_managed_binary
from supervisor.paths import lock_path_for
from supervisor.private_dir import ensure_home
from supervisor.procfs import count_processes
from supervisor.standalone import current_release, previous_release
from supervisor.timestamps import timestamp
from supervisor.update_pass import (
    InstallerResult,
    PassRecord,
    RefreshOutcome,
    Trigger,
    read_last_pass,
    write_last_pass,
)
from supervisor.updates import (
    Deferral,
    Image,
    RefreshAction,
    refresh_action,
    refresh_app_server,
    roll_back,
    running_image,
)
from supervisor.version import CODEXD_VERSION
from supervisor.worker_control import is_codexd_release, proven_worker
from supervisor.worker_state import observe_worker, processes_below_app_server

UNSUPPORTED_MESSAGE = (
    "This command requires a managed install made by install.sh (a codexd release at "
    "packages/standalone/current)."
)


class UpdateStatus:
    UPDATED = "updated"
    NO_UPDATE = "noUpdate"
    UNSUPPORTED = "unsupported"


@dataclass(frozen=True)
class UpdateOutput:
    """codex's keys (status, managedCodexPath, installedVersion, runningVersion,
    message), then codexd's own."""

    status: str
    managed_codex_path: str
    installed_version: str | None
    running_version: str | None
    message: str
    release: str | None = None
    previous_release: str | None = None
    app_server_restarted: bool = False
    restart_deferred: bool = False
    busy_processes: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "managedCodexPath": self.managed_codex_path,
            "installedVersion": self.installed_version,
            "runningVersion": self.running_version,
            "message": self.message,
            "cliVersion": CODEXD_VERSION,
            "release": self.release,
            "previousRelease": self.previous_release,
            "appServerRestarted": self.app_server_restarted,
            "restartDeferred": self.restart_deferred,
            "busyProcesses": self.busy_processes,
        }


def update_message(
    changed: bool, outcome: RefreshOutcome, busy: int, release: str | None
) -> tuple[str, str]:
    """The status and the sentence for what an update did (pure)."""
    status = (
        UpdateStatus.UPDATED
        if changed or outcome is RefreshOutcome.RESTARTED
        else (UpdateStatus.NO_UPDATE)
    )
    if outcome is RefreshOutcome.RESTARTED:
        return status, (
            f"Updated to {release}; the app-server was restarted onto it. Work in progress "
            "may have been interrupted."
        )
    if outcome is RefreshOutcome.DEFERRED:
        return status, (
            f"Installed {release}; the app-server is busy ({count_processes(busy)} below it) and "
            "keeps running the previous release: rerun with --yes to restart it now, or let "
            "the updater restart it once it is idle."
        )
    if outcome is RefreshOutcome.NOT_RUNNING:
        return status, (
            f"{'Updated to' if changed else 'Already on'} {release}; no app-server was running."
        )
    return status, f"{'Updated to' if changed else 'Already on'} {release}; the app-server runs it."


def update(
    daemon: Daemon, yes: bool, confirm_restart: Callable[[int], bool] | None
) -> UpdateOutput:
    """One pass now: the installer in the foreground (its output on stderr), then the
    app-server onto the managed binary under daemon.lock. A busy app-server (processes
    below it) is restarted only with `yes`, or when `confirm_restart(busy)` says so
    (asked on a terminal); else the restart is deferred to the updater."""
    paths = daemon.paths
    managed_path = require_managed_binary(paths.managed_binary)
    if not is_codexd_release(managed_path):
        return UpdateOutput(
            UpdateStatus.UNSUPPORTED, str(paths.managed_binary), None, None, UNSUPPORTED_MESSAGE
        )
    # The pass record goes in the state dir, which a home never started lacks.
    ensure_home(paths)
    last = read_last_pass(paths.updater_last_pass)
    record = PassRecord(
        number=(0 if last is None else last.number) + 1,
        started_at=_now(),
        trigger=Trigger.COMMAND,
    )
    before = current_release(paths)
    result, detail = run_installer_in_foreground(daemon)
    record = replace(record, installer=result, installer_detail=detail)
    if result is InstallerResult.NO_SOURCE:
        _write(daemon, record)
        raise DaemonError(f"cannot update: {detail}; nothing was changed")
    if result is not InstallerResult.OK:
        _write(daemon, record)
        raise DaemonError(f"the installer failed ({detail}); nothing was changed")
    managed_path = require_managed_binary(paths.managed_binary)
    managed = Image(daemon.executable_digest(managed_path), daemon.managed_version())
    record = replace(record, managed_binary=str(managed_path), managed_digest=managed.digest)
    never = Deferral(max_seconds=float("inf"))  # only the updater waits it out
    force = yes
    if not yes and confirm_restart is not None:
        # Asked before daemon.lock is taken: a person thinking holds up nobody.
        running = daemon.running_record()
        busy = 0 if running is None else len(processes_below_app_server(running))
        action = refresh_action(running_image(running), managed, busy, never, force=False)
        force = action is RefreshAction.DEFER and confirm_restart(busy)
    with daemon.operation_lock():
        running = daemon.running_record()
        busy = 0 if running is None else len(processes_below_app_server(running))
        action = refresh_action(running_image(running), managed, busy, never, force=force)
        outcome = refresh_app_server(daemon, managed, action)
        record = replace(record, app_server=outcome)
        if outcome is RefreshOutcome.DEFERRED:
            record = replace(record, busy_processes=busy, deferred_since=record.started_at)
        _write(daemon, record)
    release = current_release(paths)
    if outcome is RefreshOutcome.ROLLED_BACK:
        raise DaemonError(
            f"the new release did not start: rolled back to {release}; see {paths.app_server_log}"
        )
    _nudge_updater(daemon, managed.digest)
    status, message = update_message(release != before, outcome, busy, release)
    running_now = daemon.running_record()
    return UpdateOutput(
        status=status,
        managed_codex_path=str(paths.managed_binary),
        installed_version=daemon.managed_version(),
        running_version=None if running_now is None else running_now.version,
        message=message,
        release=release,
        previous_release=previous_release(paths),
        app_server_restarted=outcome is RefreshOutcome.RESTARTED,
        restart_deferred=outcome is RefreshOutcome.DEFERRED,
        busy_processes=busy,
    )


def run_installer_in_foreground(daemon: Daemon) -> tuple[InstallerResult, str | None]:
    source = current_source(daemon.paths)
    if source is None:
        return InstallerResult.NO_SOURCE, "no release source: run install.sh once"
    # Before running it: a gone checkout would fail with sh's "cannot open .../install.sh".
    problem = local_source_problem(source)
    if problem is not None:
        return InstallerResult.NO_SOURCE, f"{problem}: {NEW_SOURCE_REMEDY}"
    timeout = config.install_timeout_seconds()
    print(f"codexd: running the installer from {source.kind} {source.location}", file=sys.stderr)
    try:
        completed = subprocess.run(
            installer_command(source),
            env=installer_environment(daemon.paths, source),
            stdin=subprocess.DEVNULL,
            stdout=sys.stderr,  # stdout carries the one JSON object
            cwd="/",
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return InstallerResult.TIMED_OUT, f"after {timeout:g} s"
    if completed.returncode != 0:
        return InstallerResult.FAILED, f"exit status {completed.returncode}"
    return InstallerResult.OK, None


def _nudge_updater(daemon: Daemon, digest: str) -> None:
    """A running updater of another release follows at once (SIGUSR1: a pass now, in
    which it re-executes itself onto the managed binary) instead of at its next
    scheduled pass. One already on it is left alone: its pass would repeat this one."""
    observation = observe_worker(daemon.paths.updater_record)
    record = observation.live_record
    if record is None or record.executable_digest == digest:
        return
    if proven_worker(record, lock_path_for(daemon.paths.updater_record)):
        from supervisor.process_handle import ProcessHandle

        with ProcessHandle(record.pid) as handle:
            handle.send(signal.SIGUSR1)


def _now() -> str:
    return timestamp(datetime.datetime.now(datetime.UTC))


def _write(daemon: Daemon, record: PassRecord) -> None:
    finished = replace(record, finished_at=_now())
    write_last_pass(daemon.paths.updater_last_pass, finished)


# -- rollback ------------------------------------------------------------------------


@dataclass(frozen=True)
class RollbackOutput:
    release: str
    rolled_back_from: str
    managed_codex_path: str
    managed_codex_version: str | None
    app_server_restarted: bool
    app_server_version: str | None

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {
            "status": "rolledBack",
            "release": self.release,
            "rolledBackFrom": self.rolled_back_from,
            "managedCodexPath": self.managed_codex_path,
            "managedCodexVersion": self.managed_codex_version,
            "appServerRestarted": self.app_server_restarted,
            "cliVersion": CODEXD_VERSION,
        }
        if self.app_server_version is not None:
            value["appServerVersion"] = self.app_server_version
        return value


def rollback(daemon: Daemon) -> RollbackOutput:
    """`current` back to the previous release; a running app-server is restarted onto
    it. The release rolled back from is not installed again until a newer one appears.
    A home with no managed install (a mistyped CODEX_HOME) is refused before any lock
    file is made in it."""
    require_managed_binary(daemon.paths.managed_binary)
    with daemon.operation_lock():
        daemon.refuse_unmanaged()
        settings = daemon.load_settings()
        was_running = daemon.running_record() is not None
        done = roll_back(daemon)
        info = daemon.launch_app_server(settings)[1] if was_running else None
        return RollbackOutput(
            release=done.release,
            rolled_back_from=done.rolled_back_from,
            managed_codex_path=str(daemon.paths.managed_binary),
            managed_codex_version=daemon.managed_version(),
            app_server_restarted=was_running,
            app_server_version=None if info is None else info.app_server_version,
        )
