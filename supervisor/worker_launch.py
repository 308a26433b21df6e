"""Launching one home's workers from its managed binary (a keeper for the app-server, or
the updater) and waiting until the app-server answers.

Split from lifecycle.py, which decides when to launch; this carries a launch out, from
clearing the old record to the app-server's first answer, and says why when none comes
(app_server_messages.py). The detaching itself is launcher.py. Callers hold daemon.lock.
"""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path

from supervisor import config
from supervisor.app_server_messages import exit_message, log_tail
from supervisor.control_socket import ProbeError, ProbeInfo, probe
from supervisor.errors import DaemonError
from supervisor.faults import pause_point
from supervisor.managed import managed_digest, require_managed_binary
from supervisor.paths import HomePaths, lock_path_for
from supervisor.pidrecord import PidRecord, read_record
from supervisor.process_handle import ProcessHandle
from supervisor.settings import Settings
from supervisor.statefile import StateFileError
from supervisor.worker_control import (
    UPDATER_ARGS,
    keeper_command,
    proven_worker,
    worker_environment,
)
from supervisor.worker_stop import clear_record

# A release's front is a short script; the real codex binary (hundreds of MB) is not one.
FRONT_MAX_BYTES = 64 * 1024


class AppServerExited(DaemonError):
    """The keeper exited before its app-server answered."""


def executable_digest(paths: HomePaths, executable: Path) -> str:
    digest = managed_digest(executable, paths.managed_binary_cache)
    if digest is None:
        raise DaemonError(f"cannot read the managed binary {executable}")
    return digest


def launch_updater(
    paths: HomePaths, while_detaching: contextlib.AbstractContextManager[object] | None = None
) -> int:
    """Launch the updater from the managed binary (it re-executes itself from there
    after an update). `while_detaching`: see `launcher.launch`."""
    managed = require_managed_binary(paths.managed_binary)
    return launch_worker(
        paths,
        "updater",
        paths.updater_record,
        paths.updater_log,
        [str(managed), *UPDATER_ARGS],
        while_detaching=while_detaching,
    )


def require_launchable(paths: HomePaths) -> Path:
    """The resolved managed binary, once it and every part its release's front runs
    are there (release_parts.py, doctor's "incomplete"); an error naming what is
    missing and the repair otherwise. Cheap: the front's text and a stat per part."""
    managed = require_managed_binary(paths.managed_binary)
    from supervisor.release_parts import front_parts, missing_parts  # launching only
    from supervisor.standalone import layout_of

    try:
        with open(managed, "rb") as front:
            text = front.read(FRONT_MAX_BYTES).decode(errors="replace")
    except OSError:
        return managed  # launching says what is wrong with it
    parts = front_parts(text)
    missing = () if parts is None else missing_parts(layout_of(paths).packages, parts)
    if missing:
        raise DaemonError(
            f"release {managed.parent.name} is incomplete: missing {', '.join(missing)}; "
            "repair it with `sh install.sh`, then rerun this command (nothing was stopped)"
        )
    return managed


def launch_app_server(paths: HomePaths, settings: Settings) -> tuple[int, ProbeInfo]:
    """Launch a keeper for the managed binary's app-server and wait until the
    app-server answers; the keeper's pid and the answer."""
    managed = require_managed_binary(paths.managed_binary)
    clear_record(paths.app_server_record, paths.home)
    log_offset = _file_size(paths.app_server_log)
    pid = launch_worker(
        paths,
        "keeper",
        paths.app_server_record,
        paths.app_server_log,
        keeper_command(managed),
        remote_control_enabled=settings.remote_control_enabled,
        socket_path=str(paths.socket_path),
    )
    pause_point("launched")
    return pid, wait_until_ready(paths, pid, log_offset)


def launch_worker(
    paths: HomePaths,
    name: str,
    record_path: Path,
    log_path: Path,
    command: list[str],
    remote_control_enabled: bool | None = None,
    socket_path: str | None = None,
    while_detaching: contextlib.AbstractContextManager[object] | None = None,
) -> int:
    """Launch a detached worker; its pid once it holds its lock."""
    # Imported here: only launching commands need them.
    from supervisor.launcher import WorkerSpec, launch
    from supervisor.logs import rotate_before_launch

    executable = require_managed_binary(paths.managed_binary)
    clear_record(record_path, paths.home)
    rotate_before_launch(log_path)  # nobody writes it now
    return launch(
        WorkerSpec(
            name=name,
            record_path=record_path,
            log_path=log_path,
            command=command,
            executable=executable,
            executable_digest=executable_digest(paths, executable),
            env=worker_environment(paths.home),
            remote_control_enabled=remote_control_enabled,
            socket_path=socket_path,
        ),
        while_detaching,
    )


def hurry_keeper(paths: HomePaths, record: PidRecord) -> None:
    """A keeper waiting out a restart delay restarts its app-server now: `start` asks
    for it to run."""
    if record.keeper is None or record.keeper.state != "backoff":
        return
    if proven_worker(record, lock_path_for(paths.app_server_record)):
        with ProcessHandle(record.pid) as handle:
            handle.send(signal.SIGHUP)


def wait_until_ready(paths: HomePaths, pid: int, log_offset: int | None = None) -> ProbeInfo:
    """Until the app-server answers `initialize` and its keeper has seen it answer
    (so a crash from then on is restarted, not a failed start), the keeper exits,
    or START_TIMEOUT passes."""
    deadline = time.monotonic() + config.START_TIMEOUT_SECONDS
    info: ProbeInfo | None = None
    with ProcessHandle(pid) as handle:
        while True:
            remaining = deadline - time.monotonic()
            if info is None:
                try:
                    info = probe(
                        paths.socket_path,
                        timeout=max(min(config.PROBE_TIMEOUT_SECONDS, remaining), 0.05),
                    )
                except ProbeError as error:
                    last_error = str(error)
            if info is not None:
                if keeper_says_running(paths, pid):
                    return info
                last_error = "it answers, but its keeper has not seen it answer yet"
            # The wait doubles as the poll interval: an exit ends it at once.
            exited = handle.wait(min(config.READY_POLL_SECONDS, max(remaining, 0)))
            if exited:
                raise AppServerExited(exit_message(paths, pid, log_offset))
            if time.monotonic() >= deadline:
                raise DaemonError(
                    f"app-server (keeper pid {pid}) did not answer within "
                    f"{config.START_TIMEOUT_SECONDS:g} s on {paths.socket_path}: "
                    f"{last_error}{log_tail(paths, log_offset)}"
                )


def keeper_says_running(paths: HomePaths, keeper: int) -> bool:
    try:
        record = read_record(paths.app_server_record)
    except StateFileError:
        return False
    return (
        record is not None
        and record.pid == keeper
        and (record.keeper is None or record.keeper.state == "running")
    )


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
