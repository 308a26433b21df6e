"""What codexd says when the app-server is not up: why its keeper failed or exited
before it answered, with the tail of the app-server's log, and that a keeper is at work
on it.

Split from lifecycle.py: only text, composed from a pid record and the log, which both
`version` and the wait after a launch (worker_launch.py) report.
"""

from __future__ import annotations

import contextlib

from supervisor.decisions import keeper_at_work_message
from supervisor.paths import HomePaths
from supervisor.pidrecord import PidRecord, read_record
from supervisor.statefile import StateFileError
from supervisor.worker_state import Observation

LOG_TAIL_LINES = 20


def exit_message(paths: HomePaths, keeper: int, log_offset: int | None) -> str:
    """Why a keeper ended before its app-server answered, from the record it left."""
    with contextlib.suppress(StateFileError):
        record = read_record(paths.app_server_record)
        if record is not None and record.pid == keeper and record.failed:
            return failure_message(paths, record, log_offset)
    return (
        f"app-server (keeper pid {keeper}) exited before it answered on "
        f"{paths.socket_path}{log_tail(paths, log_offset)}"
    )


def failure_message(paths: HomePaths, record: PidRecord, log_offset: int | None = None) -> str:
    keeper = record.keeper
    exits = "; ".join(
        f"{report.description} at {report.at}" for report in (keeper.failed_exits if keeper else ())
    )
    reason = (keeper.failure if keeper else None) or "it did not start"
    detail = f" (exits: {exits})" if exits else ""
    where = log_tail(paths, log_offset) if log_offset is not None else ""
    return f"app-server failed: {reason}{detail}; see {paths.app_server_log}, then run start{where}"


def log_tail(paths: HomePaths, offset: int | None) -> str:
    try:
        with open(paths.app_server_log, "rb") as log:
            if offset is not None:
                log.seek(offset)
            lines = log.read().decode(errors="replace").splitlines()[-LOG_TAIL_LINES:]
    except OSError:
        return ""
    if not lines:
        return f" ({paths.app_server_log} is empty)"
    from supervisor.escapes import strip_escapes  # on a failure only: `re`

    quoted = "\n".join(f"  {strip_escapes(line)}" for line in lines)
    return f"\nlast lines of {paths.app_server_log}:\n{quoted}"


def keeper_at_work(observation: Observation | None) -> str | None:
    record = None if observation is None else observation.live_record
    if record is None or record.keeper is None:
        return None
    last = record.keeper.last_exit
    return keeper_at_work_message(
        record.pid,
        record.keeper.state,
        record.keeper.since,
        None if last is None else f"{last.description} ({last.reason})",
    )
