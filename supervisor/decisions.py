"""Every judgement the lifecycle makes, as pure functions of facts already gathered.

The modules that touch processes and files read the facts, call one of these, and
carry out the answer; the tables in tests/test_decisions.py pin every row. The outcomes
are `lean.Choice`s (Enums to mypy): the resident keeper imports this module, and `enum`
would stay in its memory.
"""

from __future__ import annotations

from supervisor.lean import Choice, Value


class WorkerState(Choice):
    NOT_RUNNING = "notRunning"  # lock free, no record
    STALE = "stale"  # lock free, a record left behind by a dead worker
    FAILED = "failed"  # lock free, the keeper's record says it gave up (and why)
    STARTING = "starting"  # lock held, record not (yet) naming the holder
    RUNNING = "running"  # lock held, record names the live process
    UNREADABLE = "unreadable"  # lock held, record corrupt: a human must look


class WorkerFacts(Value):
    __slots__ = (
        "lock_held",
        "record_failed",
        "record_present",
        "record_process_alive",
        "record_readable",
    )

    def __init__(
        self,
        lock_held: bool,
        record_present: bool,
        record_readable: bool,
        # The record's pid, start time and boot id match a live process.
        record_process_alive: bool,
        # The record says its keeper gave up; kept, for `status` and `version`, until a
        # start.
        record_failed: bool = False,
    ) -> None:
        self.lock_held = lock_held
        self.record_present = record_present
        self.record_readable = record_readable
        self.record_process_alive = record_process_alive
        self.record_failed = record_failed


def classify_worker(facts: WorkerFacts) -> WorkerState:
    if not facts.lock_held:
        if not facts.record_present:
            return WorkerState.NOT_RUNNING
        return WorkerState.FAILED if facts.record_failed else WorkerState.STALE
    if not facts.record_present:
        # The launcher takes the lock before it writes the record.
        return WorkerState.STARTING
    if not facts.record_readable:
        return WorkerState.UNREADABLE
    if facts.record_process_alive:
        return WorkerState.RUNNING
    # Lock held but the record names someone gone: an old record the new holder
    # has not replaced yet.
    return WorkerState.STARTING


def is_managed(state: WorkerState) -> bool:
    return state in (WorkerState.RUNNING, WorkerState.STARTING)


def is_unmanaged_server(state: WorkerState, socket_answers: bool) -> bool:
    """Something answers on our socket that this daemon did not start."""
    return socket_answers and not is_managed(state)


class StartAction(Choice):
    REPORT_RUNNING = "reportRunning"
    WAIT_UNTIL_READY = "waitUntilReady"
    LAUNCH = "launch"


def start_action(state: WorkerState, socket_answers: bool) -> StartAction:
    if socket_answers:
        return StartAction.REPORT_RUNNING
    if is_managed(state):
        return StartAction.WAIT_UNTIL_READY
    return StartAction.LAUNCH


class RemoteControlStatus(Choice):
    ENABLED = "enabled"
    DISABLED = "disabled"
    ALREADY_ENABLED = "alreadyEnabled"
    ALREADY_DISABLED = "alreadyDisabled"


class RemoteControlPlan(Value):
    __slots__ = ("restart_server", "save_setting", "status")

    def __init__(
        self, status: RemoteControlStatus, save_setting: bool, restart_server: bool
    ) -> None:
        self.status = status
        self.save_setting = save_setting
        self.restart_server = restart_server


def remote_control_plan(
    setting: bool, wanted: bool, running_server_setting: bool | None
) -> RemoteControlPlan:
    """`running_server_setting` is the flag the managed app-server was launched with,
    None when none runs. A server launched with the other flag (settings edited by
    hand) is restarted even when the setting is already as wanted."""
    changed = setting != wanted
    if wanted:
        status = RemoteControlStatus.ENABLED if changed else RemoteControlStatus.ALREADY_ENABLED
    else:
        status = RemoteControlStatus.DISABLED if changed else RemoteControlStatus.ALREADY_DISABLED
    restart = running_server_setting is not None and (changed or running_server_setting != wanted)
    return RemoteControlPlan(status=status, save_setting=changed, restart_server=restart)


class StopStep(Choice):
    DONE = "done"
    KILL = "kill"
    GIVE_UP = "giveUp"


def next_stop_step(exited: bool, killed: bool) -> StopStep:
    """After a wait: the grace window (after SIGTERM) or the kill wait (after SIGKILL)."""
    if exited:
        return StopStep.DONE
    return StopStep.GIVE_UP if killed else StopStep.KILL


# What a keeper whose app-server does not answer is doing about it, by its state.
_KEEPER_AT_WORK = {
    "launching": "starting it",
    "starting": "starting it again",
    "backoff": "waiting out its restart delay",
    "replacing": "replacing it",
    "stopping": "stopping it",
    "givingUp": "stopping it after a crash loop",
}


def keeper_at_work_message(
    keeper_pid: int, state: str, since: str, last_exit: str | None
) -> str | None:
    """`version`'s line when nothing answers but a live keeper is at work on it; None
    when the keeper's state says nothing of the kind (running, failed, ...)."""
    doing = _KEEPER_AT_WORK.get(state)
    if doing is None:
        return None
    after = f" after {last_exit}" if last_exit else ""
    return (
        f"app server is not answering yet: its keeper (pid {keeper_pid}) is {doing}{after} "
        f"({state} since {since}); retry in a moment, `codexd status` says more"
    )
