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


class SocketHolder(Choice):
    """Who holds the control socket, as a command that may launch over it sees it."""

    MANAGED = "managed"  # our keeper runs (whatever the socket says, it is at work on it)
    NOBODY = "nobody"  # nothing listens
    UNMANAGED_APP_SERVER = "unmanagedAppServer"  # an app-server we did not start answers
    NOT_AN_APP_SERVER = "notAnAppServer"  # a listener accepts, but does not answer as one


def socket_holder(state: WorkerState, socket_answers: bool, someone_listens: bool) -> SocketHolder:
    """`someone_listens`: the probe reached a listener (the kernel named it, or it
    accepted and never answered) even though no app-server answered."""
    if is_managed(state):
        return SocketHolder.MANAGED
    if socket_answers:
        return SocketHolder.UNMANAGED_APP_SERVER
    return SocketHolder.NOT_AN_APP_SERVER if someone_listens else SocketHolder.NOBODY


class SocketUse(Choice):
    """What a command does about the socket when no managed app-server runs."""

    REPORT = "report"  # start: reports an app-server that answers, launches otherwise
    LAUNCH = "launch"  # restart, bootstrap: launch whatever was there
    LEAVE = "leave"  # stop, the remote-control commands, rollback: launch nothing


class HolderAction(Choice):
    PROCEED = "proceed"
    REFUSE = "refuse"
    TAKE_OVER = "takeOver"


def holder_action(holder: SocketHolder, use: SocketUse, takeover: bool) -> HolderAction:
    """Before a command acts: a holder it would launch over (and fail against) is
    refused before anything is stopped or launched, or, with --takeover, stopped."""
    if holder in (SocketHolder.MANAGED, SocketHolder.NOBODY):
        return HolderAction.PROCEED
    if takeover:
        return HolderAction.TAKE_OVER
    if holder is SocketHolder.UNMANAGED_APP_SERVER:
        # start reports it as running; any other command would be acting on a server
        # it does not manage.
        return HolderAction.PROCEED if use is SocketUse.REPORT else HolderAction.REFUSE
    # No app-server answers: only a command that launches one runs into it.
    return HolderAction.PROCEED if use is SocketUse.LEAVE else HolderAction.REFUSE


def listener_is_ours(managed: bool, listener_pid: int, app_server_pid: int | None) -> bool:
    """Whether the process the kernel names on the socket is the keeper's app-server
    (`app_server_pid`: the record's, None while the keeper has not named one)."""
    return managed and app_server_pid in (None, listener_pid)


class StartAction(Choice):
    REPORT_RUNNING = "reportRunning"  # an app-server answers: alreadyRunning
    # Our keeper is at work (starting, or waiting out a restart delay) and nothing
    # answers: to a client nothing was running, so `started` with the keeper's pid
    # once it answers.
    WAIT_UNTIL_READY = "waitUntilReady"
    LAUNCH = "launch"  # started, with the new keeper's pid


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
