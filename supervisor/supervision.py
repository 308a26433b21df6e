"""The keeper's judgement, as pure functions: one app-server's life as a state machine
(supervisord's states, one transition function), the restart delay, the crash-loop
limit, and what an exit means.

The keeper (workers/keeper.py) gathers facts (an exit status, a probe's answer, a
signal, a deadline), turns them into one `Event` with the helpers below, asks
`transition` what to do and carries out the actions; tests/test_supervision.py pins
every state-event pair. Light to import (no `enum`, `dataclasses` or `signal`): the keeper
is resident, and each would add to its memory for its whole life.
"""

from __future__ import annotations

from supervisor.decisions import WorkerState
from supervisor.lean import Choice, Value
from supervisor.signals import signal_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from collections.abc import Sequence
else:
    import _signal as signal  # as supervisor/signals.py explains

MAX_RESTART_DELAY_SECONDS = 30.0
# A run this long resets the doubling restart delay: the crash before it is history.
HEALTHY_RUN_SECONDS = 60.0
# Consecutive failed watchdog probes that make an app-server unresponsive.
UNRESPONSIVE_PROBES = 3
# The longest one watchdog probe may wait for an answer.
WATCHDOG_PROBE_TIMEOUT_SECONDS = 10.0


class KeeperState(Choice):
    LAUNCHING = "launching"  # the keeper's first app-server, not yet answering
    STARTING = "starting"  # a restarted app-server, not yet answering
    RUNNING = "running"
    BACKOFF = "backoff"  # no app-server: waiting out the restart delay
    REPLACING = "replacing"  # TERM sent to an app-server that starts again (hang, HUP)
    STOPPING = "stopping"  # TERM sent; the keeper stops once it is gone
    GIVING_UP = "givingUp"  # TERM sent; the keeper fails once it is gone
    STOPPED = "stopped"
    FAILED = "failed"


TERMINAL_STATES = frozenset({KeeperState.STOPPED, KeeperState.FAILED})


class Event(Choice):
    READY = "ready"  # the app-server answered `initialize`
    UNRESPONSIVE = "unresponsive"  # no answer: watchdog probes, or the start deadline
    UNRESPONSIVE_LIMIT = "unresponsiveLimit"  # the same, and the crash-loop limit is reached
    CRASHED = "crashed"  # exited unasked (any status, any signal but TERM/INT)
    CRASH_LIMIT = "crashLimit"  # the same, and the crash-loop limit is reached
    KILLED_BY_PERSON = "killedByPerson"  # exited by a TERM or INT the keeper did not send
    EXITED = "exited"  # exited after the keeper asked it to
    GRACE_OVER = "graceOver"  # TERM sent a grace window ago and it still runs
    BACKOFF_OVER = "backoffOver"
    STOP = "stop"  # TERM, INT or QUIT to the keeper
    RESTART = "restart"  # HUP to the keeper


class Action(Choice):
    SPAWN = "spawn"  # start an app-server
    TERMINATE = "terminate"  # SIGTERM to the app-server, then wait a grace window
    KILL = "kill"  # SIGKILL to the app-server
    WAIT_BACKOFF = "waitBackoff"  # wait the restart delay
    END_DESCENDANTS = "endDescendants"  # TERM, short grace, KILL to everything left
    EXIT = "exit"


class Step(Value):
    __slots__ = ("actions", "state")

    def __init__(self, state: KeeperState, actions: tuple[Action, ...] = ()) -> None:
        self.state = state
        self.actions = actions


_END = (Action.END_DESCENDANTS, Action.EXIT)
# An app-server that is up or on its way up: what each event does to it.
_LIVE: dict[Event, Step] = {
    Event.READY: Step(KeeperState.RUNNING),
    Event.UNRESPONSIVE: Step(KeeperState.REPLACING, (Action.TERMINATE,)),
    Event.UNRESPONSIVE_LIMIT: Step(KeeperState.GIVING_UP, (Action.TERMINATE,)),
    Event.CRASHED: Step(KeeperState.BACKOFF, (Action.END_DESCENDANTS, Action.WAIT_BACKOFF)),
    Event.CRASH_LIMIT: Step(KeeperState.FAILED, _END),
    Event.KILLED_BY_PERSON: Step(KeeperState.STOPPED, _END),
    # Nobody asked: only a keeper that lost track could see it. Count it as a crash.
    Event.EXITED: Step(KeeperState.BACKOFF, (Action.END_DESCENDANTS, Action.WAIT_BACKOFF)),
    Event.STOP: Step(KeeperState.STOPPING, (Action.TERMINATE,)),
    Event.RESTART: Step(KeeperState.REPLACING, (Action.TERMINATE,)),
}
# The first app-server of a keeper: a `start` waits for it, so any failure is final
# and reported there at once, instead of restarted in the background.
_LAUNCHING: dict[Event, Step] = {
    **_LIVE,
    Event.UNRESPONSIVE: Step(KeeperState.GIVING_UP, (Action.TERMINATE,)),
    Event.CRASHED: Step(KeeperState.FAILED, _END),
    Event.EXITED: Step(KeeperState.FAILED, _END),
}
# TERM sent: waiting for the exit, killing it when the grace window is over.
_EXIT_EVENTS = (Event.CRASHED, Event.CRASH_LIMIT, Event.KILLED_BY_PERSON, Event.EXITED)


def _ending(state: KeeperState, after_exit: Step) -> dict[Event, Step]:
    return {
        **{event: after_exit for event in _EXIT_EVENTS},
        Event.GRACE_OVER: Step(state, (Action.KILL,)),
    }


_TABLE: dict[KeeperState, dict[Event, Step]] = {
    KeeperState.LAUNCHING: _LAUNCHING,
    KeeperState.STARTING: _LIVE,
    KeeperState.RUNNING: _LIVE,
    KeeperState.BACKOFF: {
        Event.BACKOFF_OVER: Step(KeeperState.STARTING, (Action.SPAWN,)),
        Event.RESTART: Step(KeeperState.STARTING, (Action.SPAWN,)),
        Event.STOP: Step(KeeperState.STOPPED, _END),
    },
    KeeperState.REPLACING: {
        **_ending(
            KeeperState.REPLACING,
            Step(KeeperState.STARTING, (Action.END_DESCENDANTS, Action.SPAWN)),
        ),
        # The TERM is out already: its grace window goes on.
        Event.STOP: Step(KeeperState.STOPPING),
    },
    KeeperState.STOPPING: _ending(KeeperState.STOPPING, Step(KeeperState.STOPPED, _END)),
    KeeperState.GIVING_UP: {
        **_ending(KeeperState.GIVING_UP, Step(KeeperState.FAILED, _END)),
        Event.STOP: Step(KeeperState.STOPPING),
    },
    KeeperState.STOPPED: {},
    KeeperState.FAILED: {},
}


def transition(state: KeeperState, event: Event) -> Step:
    """What `event` does in `state`: the next state and the actions, in order. An event
    a state does not expect (a probe's answer while the app-server is being replaced)
    changes nothing."""
    return _TABLE[state].get(event, Step(state))


# -- restart policy ------------------------------------------------------------------


class RestartPolicy(Value):
    __slots__ = ("burst", "first_delay", "window")

    def __init__(self, first_delay: float = 1.0, burst: int = 5, window: float = 120.0) -> None:
        self.first_delay = first_delay
        self.burst = burst  # this many unasked exits within `window` seconds: give up
        self.window = window


def restart_delay(consecutive_failures: int, policy: RestartPolicy) -> float:
    """The wait before restart number `consecutive_failures` (1 for the first): the
    first delay, doubling, at most 30 s."""
    # Capped before the power: a long crash history must not overflow a float.
    exponent = min(max(consecutive_failures - 1, 0), 64)
    return min(policy.first_delay * float(2**exponent), MAX_RESTART_DELAY_SECONDS)


def consecutive_failures(previous: int, ran_seconds: float) -> int:
    """The count after a failure: a healthy run of 60 s starts the doubling over."""
    return 1 if ran_seconds >= HEALTHY_RUN_SECONDS else previous + 1


def recent_failures(failure_times: Sequence[float], now: float, policy: RestartPolicy) -> int:
    """Failures (monotonic times) within the crash-loop window ending `now`."""
    return sum(1 for moment in failure_times if now - moment <= policy.window)


def is_crash_loop(failure_times: Sequence[float], now: float, policy: RestartPolicy) -> bool:
    """`failure_times` includes the failure just seen."""
    return recent_failures(failure_times, now, policy) >= policy.burst


# -- what an exit means --------------------------------------------------------------


class ExitKind(Choice):
    ASKED = "asked"  # the keeper had sent TERM or KILL
    DELIBERATE = "deliberate"  # a clean end nobody here asked for: a person stopping it
    CRASH = "crash"


DELIBERATE_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


def exit_kind(status: int | None, signum: int | None, asked: bool) -> ExitKind:
    """`status`: the exit status, None when a signal (`signum`) ended the app-server.

    Clean as systemd's `Restart=on-failure` counts it: exit status 0, or SIGTERM or
    SIGINT. An app-server that handles SIGTERM (codex's and codexd's do) exits 0 after
    a person's `kill -TERM`, so the status says as much as the signal."""
    if asked:
        return ExitKind.ASKED
    if signum in DELIBERATE_SIGNALS or (signum is None and status == 0):
        return ExitKind.DELIBERATE
    return ExitKind.CRASH


def exit_event(kind: ExitKind, crash_loop: bool) -> Event:
    if kind is ExitKind.ASKED:
        return Event.EXITED
    if kind is ExitKind.DELIBERATE:
        return Event.KILLED_BY_PERSON
    return Event.CRASH_LIMIT if crash_loop else Event.CRASHED


def unresponsive_event(crash_loop: bool) -> Event:
    return Event.UNRESPONSIVE_LIMIT if crash_loop else Event.UNRESPONSIVE


def describe_exit(status: int | None, signum: int | None) -> str:
    """`exit status 3`, `killed by SIGSEGV (core dumped)` style, for logs and status."""
    if signum is not None:
        return f"killed by {signal_name(signum)}"
    return f"exit status {status}"


# -- the keeper and the updater look after each other ------------------------------------


def should_relaunch_peer(state: WorkerState) -> bool:
    """Only a worker that died without being asked (its record left behind: SIGKILL,
    the OOM killer) comes back: a stop removes the record, a failed keeper marks it."""
    return state is WorkerState.STALE


def peer_note(name: str, before: WorkerState | None, after: WorkerState) -> str | None:
    """A line for the log when the other worker's state changes in a way a sysadmin
    will ask about; None otherwise."""
    if before is None or before is after or before is not WorkerState.RUNNING:
        return None
    if after is WorkerState.NOT_RUNNING:
        return f"the {name} was stopped (its record is gone): not relaunching it"
    if after is WorkerState.FAILED:
        return (
            f"the {name} gave up (`codexd status` says why): not relaunching it; "
            "`codexd start` does"
        )
    if after is WorkerState.STALE:
        return f"the {name} died without being asked: relaunching it"
    return None


def watchdog_probe_timeout(interval: float) -> float:
    """A probe gets 10 s to answer, or the watchdog interval when that is shorter (tests
    run the watchdog every second), but never less than half a second."""
    return max(min(WATCHDOG_PROBE_TIMEOUT_SECONDS, interval), 0.5)
