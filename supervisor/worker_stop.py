"""Stopping one home's worker (its keeper or its updater) and clearing what a gone one
left: its pid record and what its session still runs.

Split from lifecycle.py, which decides when to stop; this carries a stop out, from
finding the live record to clearing it. The signals themselves (the proof, the grace
window, SIGKILL) are worker_control.stop_with_grace. Callers hold daemon.lock.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from supervisor import config
from supervisor.decisions import WorkerState, is_managed
from supervisor.errors import DaemonError
from supervisor.paths import HomePaths
from supervisor.pidrecord import PidRecord, read_record, remove_record
from supervisor.statefile import StateFileError
from supervisor.worker_control import (
    KEEPER_EXIT_MARGIN_SECONDS,
    end_leftovers,
    stop_with_grace,
    unnamed_holder_message,
)
from supervisor.worker_state import observe_worker


def running_record(record_path: Path) -> PidRecord | None:
    """The record of the worker that holds its lock; None when none does. A worker
    still starting is waited for until its record names it."""
    deadline = time.monotonic() + config.START_TIMEOUT_SECONDS
    while True:
        observation = observe_worker(record_path)
        if observation.live_record is not None or not is_managed(observation.state):
            return observation.live_record
        if time.monotonic() >= deadline:
            raise DaemonError(unnamed_holder_message(record_path))
        time.sleep(config.READY_POLL_SECONDS)


def clear_record(record_path: Path, home: Path) -> None:
    """Remove the record of a worker that is gone (its lock is free), ending what its
    session still runs."""
    with contextlib.suppress(StateFileError):
        record = read_record(record_path)
        if record is not None:
            end_leftovers(record, home)
    remove_record(record_path)


def stop_app_server(paths: HomePaths) -> bool:
    """Stop the managed app-server (its keeper), if one runs; False when none did."""
    return stop_worker(paths, "app-server", paths.app_server_record)


def stop_worker(paths: HomePaths, name: str, record_path: Path) -> bool:
    """Stop a worker, if one runs; False when none did. Clears a stale record (its
    worker is dead) and what its session left, signalling nobody else."""
    grace = config.stop_grace_seconds()
    if record_path == paths.app_server_record:
        # The keeper spends the grace window on its app-server, then ends the rest.
        grace += KEEPER_EXIT_MARGIN_SECONDS
    record = running_record(record_path)
    if record is None:
        observation = observe_worker(record_path)
        if observation.state is not WorkerState.FAILED:
            clear_record(record_path, paths.home)
        return False
    stop_with_grace(name, record, record_path, grace)
    clear_record(record_path, paths.home)
    return True
