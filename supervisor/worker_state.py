"""What a worker's lock and pid record say about it, read into a `WorkerState`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from supervisor.decisions import WorkerFacts, WorkerState, classify_worker
from supervisor.errors import DaemonError
from supervisor.identity import identity_of
from supervisor.locks import FlockLock
from supervisor.paths import lock_path_for
from supervisor.pidrecord import PidRecord, read_record
from supervisor.procfs import ProcStat, descendants
from supervisor.statefile import StateFileError


@dataclass(frozen=True)
class Observation:
    state: WorkerState
    # The record as read: a running worker's, a dead one's (stale), a failed keeper's.
    record: PidRecord | None

    @property
    def live_record(self) -> PidRecord | None:
        """The record, when it names the running worker."""
        return self.record if self.state is WorkerState.RUNNING else None


def observe_worker(record_path: Path) -> Observation:
    """Read a worker's lock and record into a state (see `classify_worker`)."""
    lock_held = FlockLock(lock_path_for(record_path)).is_locked()
    record: PidRecord | None = None
    present = readable = True
    try:
        record = read_record(record_path)
        present = record is not None
    except StateFileError:
        readable = False
    alive = False
    if record is not None:
        live = identity_of(record.pid)
        alive = live is not None and live.same_process(record.identity)
    failed = record is not None and record.failed
    state = classify_worker(WorkerFacts(lock_held, present, readable, alive, failed))
    if state is WorkerState.UNREADABLE:
        raise DaemonError(
            f"{record_path} is unreadable but its worker is alive "
            f"({lock_path_for(record_path)} is locked); inspect it by hand"
        )
    return Observation(state, record)


def processes_below_app_server(record: PidRecord) -> list[ProcStat]:
    """What runs below a keeper besides its app-server: the tools, MCP servers and jobs
    the app-server started (orphans come back to the keeper, so they count too). Work
    an update would interrupt."""
    child = record.app_server
    return [
        process for process in descendants(record.pid) if child is None or process.pid != child.pid
    ]
