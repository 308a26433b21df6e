"""What a worker's lock and pid record say about it, read into a `WorkerState`.

The keeper asks this about the updater (and the updater about the keeper) every
watchdog interval, so it stays light: no `dataclasses`, `pathlib`, or `lockfile` (whose
classes only a lock file that cannot be opened needs).
"""

from __future__ import annotations

import os

from supervisor.decisions import WorkerFacts, WorkerState, classify_worker
from supervisor.errors import DaemonError
from supervisor.flock import is_held
from supervisor.identity import identity_of
from supervisor.lean import Value
from supervisor.paths import lock_path_for
from supervisor.pidrecord import PidRecord, read_record
from supervisor.procfs import ProcStat, descendants
from supervisor.state_read import StateFileError

TYPE_CHECKING = False
if TYPE_CHECKING:
    StrPath = str | os.PathLike[str]


class Observation(Value):
    __slots__ = ("record", "state")

    def __init__(self, state: WorkerState, record: PidRecord | None) -> None:
        self.state = state
        # The record as read: a running worker's, a dead one's (stale), a failed keeper's.
        self.record = record

    @property
    def live_record(self) -> PidRecord | None:
        """The record, when it names the running worker."""
        return self.record if self.state is WorkerState.RUNNING else None


def lock_held(lock: str) -> bool:
    """As `FlockLock(lock).is_locked()`, LockFileError included."""
    try:
        return is_held(lock)
    except OSError as error:
        from supervisor.locks import cannot_open  # the error's class is lockfile's

        raise cannot_open(lock, error) from error


def observe_worker(record_path: StrPath) -> Observation:
    """Read a worker's lock and record into a state (see `classify_worker`)."""
    lock = lock_path_for(os.fspath(record_path))
    held = lock_held(lock)
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
    state = classify_worker(WorkerFacts(held, present, readable, alive, failed))
    if state is WorkerState.UNREADABLE:
        raise DaemonError(
            f"{record_path} is unreadable but its worker is alive ({lock} is locked); "
            "inspect it by hand"
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
