"""The keeper's policy, as tables: every state-event pair has an answer, the rows that
matter are pinned, and the restart delay, crash loop and exit meaning are exact."""

from __future__ import annotations

import datetime
import itertools
import signal

import pytest

from supervisor.decisions import WorkerState
from supervisor.signals import signal_name
from supervisor.supervision import (
    MAX_RESTART_DELAY_SECONDS,
    TERMINAL_STATES,
    Action,
    Event,
    ExitKind,
    KeeperState,
    RestartPolicy,
    Step,
    consecutive_failures,
    describe_exit,
    exit_event,
    exit_kind,
    is_crash_loop,
    peer_note,
    recent_failures,
    restart_delay,
    should_relaunch_peer,
    transition,
    unresponsive_event,
    watchdog_probe_timeout,
)
from supervisor.timestamps import parse_timestamp, timestamp
from supervisor.worker_log import utc_timestamp

S, E, A = KeeperState, Event, Action
END = (A.END_DESCENDANTS, A.EXIT)

# -- the state machine -----------------------------------------------------------------

PINNED = [
    # The first app-server: ready, or a failure that is final (a `start` waits for it).
    (S.LAUNCHING, E.READY, Step(S.RUNNING)),
    (S.LAUNCHING, E.CRASHED, Step(S.FAILED, END)),
    (S.LAUNCHING, E.EXITED, Step(S.FAILED, END)),
    (S.LAUNCHING, E.UNRESPONSIVE, Step(S.GIVING_UP, (A.TERMINATE,))),
    (S.LAUNCHING, E.KILLED_BY_PERSON, Step(S.STOPPED, END)),
    (S.LAUNCHING, E.STOP, Step(S.STOPPING, (A.TERMINATE,))),
    # A crash is restarted after the delay, what it left ended first.
    (S.RUNNING, E.CRASHED, Step(S.BACKOFF, (A.END_DESCENDANTS, A.WAIT_BACKOFF))),
    (S.STARTING, E.CRASHED, Step(S.BACKOFF, (A.END_DESCENDANTS, A.WAIT_BACKOFF))),
    (S.RUNNING, E.CRASH_LIMIT, Step(S.FAILED, END)),
    (S.STARTING, E.CRASH_LIMIT, Step(S.FAILED, END)),
    # A person's kill -TERM of the app-server is a deliberate stop: nothing comes back.
    (S.RUNNING, E.KILLED_BY_PERSON, Step(S.STOPPED, END)),
    (S.STARTING, E.KILLED_BY_PERSON, Step(S.STOPPED, END)),
    # A hang is replaced; a hang that completes a crash loop gives up.
    (S.RUNNING, E.UNRESPONSIVE, Step(S.REPLACING, (A.TERMINATE,))),
    (S.STARTING, E.UNRESPONSIVE, Step(S.REPLACING, (A.TERMINATE,))),
    (S.RUNNING, E.UNRESPONSIVE_LIMIT, Step(S.GIVING_UP, (A.TERMINATE,))),
    (S.REPLACING, E.EXITED, Step(S.STARTING, (A.END_DESCENDANTS, A.SPAWN))),
    (S.REPLACING, E.GRACE_OVER, Step(S.REPLACING, (A.KILL,))),
    (S.GIVING_UP, E.EXITED, Step(S.FAILED, END)),
    (S.GIVING_UP, E.GRACE_OVER, Step(S.GIVING_UP, (A.KILL,))),
    # HUP restarts, from anywhere an app-server runs or waits to.
    (S.RUNNING, E.RESTART, Step(S.REPLACING, (A.TERMINATE,))),
    (S.BACKOFF, E.RESTART, Step(S.STARTING, (A.SPAWN,))),
    (S.BACKOFF, E.BACKOFF_OVER, Step(S.STARTING, (A.SPAWN,))),
    # SIGTERM to the keeper: the app-server gets its grace window, then the rest goes.
    (S.RUNNING, E.STOP, Step(S.STOPPING, (A.TERMINATE,))),
    (S.STARTING, E.STOP, Step(S.STOPPING, (A.TERMINATE,))),
    (S.BACKOFF, E.STOP, Step(S.STOPPED, END)),
    (S.REPLACING, E.STOP, Step(S.STOPPING)),
    (S.GIVING_UP, E.STOP, Step(S.STOPPING)),
    (S.STOPPING, E.EXITED, Step(S.STOPPED, END)),
    (S.STOPPING, E.CRASHED, Step(S.STOPPED, END)),
    (S.STOPPING, E.GRACE_OVER, Step(S.STOPPING, (A.KILL,))),
    (S.STOPPING, E.STOP, Step(S.STOPPING)),
    (S.STOPPING, E.RESTART, Step(S.STOPPING)),
    # Answers that arrive too late change nothing.
    (S.RUNNING, E.READY, Step(S.RUNNING)),
    (S.REPLACING, E.READY, Step(S.REPLACING)),
    (S.BACKOFF, E.READY, Step(S.BACKOFF)),
]


@pytest.mark.parametrize(("state", "event", "expected"), PINNED)
def test_pinned_transitions(state: KeeperState, event: Event, expected: Step) -> None:
    assert transition(state, event) == expected


@pytest.mark.parametrize(("state", "event"), list(itertools.product(KeeperState, Event)))
def test_every_state_event_pair_has_a_sound_answer(state: KeeperState, event: Event) -> None:
    step = transition(state, event)
    assert isinstance(step.state, KeeperState)
    assert all(isinstance(action, Action) for action in step.actions)
    # The keeper's process only ends through EXIT, and only into a terminal state.
    assert (Action.EXIT in step.actions) == (
        step.state in TERMINAL_STATES and state not in TERMINAL_STATES
    )
    if Action.EXIT in step.actions:
        assert step.actions[-1] is Action.EXIT
        assert Action.END_DESCENDANTS in step.actions  # nothing is left behind
    # Terminal states answer nothing.
    if state in TERMINAL_STATES:
        assert step == Step(state)
    # Only states with a live app-server signal it.
    if {Action.TERMINATE, Action.KILL} & set(step.actions):
        assert state not in (S.BACKOFF, *TERMINAL_STATES)


def test_a_terminal_state_is_reached_from_every_state_by_a_stop_and_an_exit() -> None:
    for state in KeeperState:
        reached = transition(state, Event.STOP).state
        if reached is S.STOPPING:
            reached = transition(reached, Event.EXITED).state
        assert reached in TERMINAL_STATES or state in TERMINAL_STATES, state


# -- restart delay and crash loop --------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "failures", "expected"),
    [
        (1.0, 1, 1.0),
        (1.0, 2, 2.0),
        (1.0, 3, 4.0),
        (1.0, 5, 16.0),
        (1.0, 6, MAX_RESTART_DELAY_SECONDS),
        (1.0, 10_000, MAX_RESTART_DELAY_SECONDS),
        (0.1, 1, 0.1),
        (0.1, 4, 0.8),
        (0.0, 7, 0.0),
        (1.0, 0, 1.0),
    ],
)
def test_restart_delay_doubles_up_to_thirty_seconds(
    first: float, failures: int, expected: float
) -> None:
    assert restart_delay(failures, RestartPolicy(first_delay=first)) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("previous", "ran", "expected"),
    [(0, 0.5, 1), (1, 2.0, 2), (4, 59.9, 5), (4, 60.0, 1), (9, 3600.0, 1)],
)
def test_a_healthy_minute_resets_the_doubling(previous: int, ran: float, expected: int) -> None:
    assert consecutive_failures(previous, ran) == expected


POLICY = RestartPolicy(first_delay=1.0, burst=5, window=120.0)


@pytest.mark.parametrize(
    ("times", "now", "recent", "loop"),
    [
        ([], 0.0, 0, False),
        ([10.0], 10.0, 1, False),
        ([0.0, 10.0, 20.0, 30.0], 30.0, 4, False),
        ([0.0, 10.0, 20.0, 30.0, 40.0], 40.0, 5, True),
        ([0.0, 10.0, 20.0, 30.0, 121.0], 121.0, 4, False),  # the first fell out
        ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 6.0, 6, True),
    ],
)
def test_crash_loop_is_burst_failures_within_the_window(
    times: list[float], now: float, recent: int, loop: bool
) -> None:
    assert recent_failures(times, now, POLICY) == recent
    assert is_crash_loop(times, now, POLICY) is loop


# -- what an exit means ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "signum", "asked", "kind"),
    [
        (1, None, False, ExitKind.CRASH),  # any failing exit status nobody asked for
        (143, None, False, ExitKind.CRASH),
        (None, signal.SIGKILL, False, ExitKind.CRASH),  # OOM killer, kill -9
        (None, signal.SIGSEGV, False, ExitKind.CRASH),
        (None, signal.SIGABRT, False, ExitKind.CRASH),
        (None, signal.SIGHUP, False, ExitKind.CRASH),
        (None, signal.SIGPIPE, False, ExitKind.CRASH),
        # Clean: a person's kill -TERM, seen as the signal or as the handler's exit 0.
        (None, signal.SIGTERM, False, ExitKind.DELIBERATE),
        (None, signal.SIGINT, False, ExitKind.DELIBERATE),
        (0, None, False, ExitKind.DELIBERATE),
        (None, signal.SIGTERM, True, ExitKind.ASKED),
        (None, signal.SIGKILL, True, ExitKind.ASKED),
        (1, None, True, ExitKind.ASKED),
        (0, None, True, ExitKind.ASKED),
    ],
)
def test_exit_kind(status: int | None, signum: int | None, asked: bool, kind: ExitKind) -> None:
    assert exit_kind(status, signum, asked) is kind


@pytest.mark.parametrize(
    ("kind", "loop", "event"),
    [
        (ExitKind.ASKED, False, E.EXITED),
        (ExitKind.ASKED, True, E.EXITED),
        (ExitKind.DELIBERATE, False, E.KILLED_BY_PERSON),
        (ExitKind.DELIBERATE, True, E.KILLED_BY_PERSON),
        (ExitKind.CRASH, False, E.CRASHED),
        (ExitKind.CRASH, True, E.CRASH_LIMIT),
    ],
)
def test_exit_event(kind: ExitKind, loop: bool, event: Event) -> None:
    assert exit_event(kind, loop) is event


def test_unresponsive_event() -> None:
    assert unresponsive_event(False) is E.UNRESPONSIVE
    assert unresponsive_event(True) is E.UNRESPONSIVE_LIMIT


@pytest.mark.parametrize(
    ("status", "signum", "text"),
    [
        (0, None, "exit status 0"),
        (3, None, "exit status 3"),
        (None, signal.SIGKILL, "killed by SIGKILL"),
        (None, signal.SIGSEGV, "killed by SIGSEGV"),
        (None, 99, "killed by signal 99"),
    ],
)
def test_describe_exit(status: int | None, signum: int | None, text: str) -> None:
    assert describe_exit(status, signum) == text


@pytest.mark.parametrize("signum", range(signal.NSIG + 2))
def test_signal_name_is_the_signals_enum_name(signum: int) -> None:
    try:
        expected = signal.Signals(signum).name
    except ValueError:
        expected = f"signal {signum}"
    assert signal_name(signum) == expected


@pytest.mark.parametrize(
    ("interval", "timeout"), [(30.0, 10.0), (10.0, 10.0), (1.0, 1.0), (0.1, 0.5)]
)
def test_watchdog_probe_timeout(interval: float, timeout: float) -> None:
    assert watchdog_probe_timeout(interval) == timeout


# -- the keeper and the updater look after each other ------------------------------------

W = WorkerState


@pytest.mark.parametrize("state", list(WorkerState))
def test_only_a_worker_that_died_unasked_is_relaunched(state: WorkerState) -> None:
    assert should_relaunch_peer(state) is (state is W.STALE)


@pytest.mark.parametrize(
    ("before", "after", "says"),
    [
        (None, W.NOT_RUNNING, None),
        (W.RUNNING, W.RUNNING, None),
        (W.RUNNING, W.NOT_RUNNING, "was stopped"),
        (W.RUNNING, W.FAILED, "gave up"),
        (W.RUNNING, W.STALE, "died without being asked"),
        (W.RUNNING, W.STARTING, None),
        (W.NOT_RUNNING, W.RUNNING, None),
        (W.STALE, W.RUNNING, None),
        (W.FAILED, W.NOT_RUNNING, None),
    ],
)
def test_peer_note(before: WorkerState | None, after: WorkerState, says: str | None) -> None:
    note = peer_note("keeper", before, after)
    if says is None:
        assert note is None
    else:
        assert note is not None and says in note and "keeper" in note


@pytest.mark.parametrize("seconds", [0.0, 1.999, 86399.5, 1_767_225_600.25, 4_102_444_800.0])
def test_the_keepers_utc_timestamp_is_the_state_files_timestamp(seconds: float) -> None:
    """The keeper writes its moments with `time` (no `datetime` in its memory), as
    supervisor/timestamps.py writes them."""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    assert utc_timestamp(seconds) == timestamp(moment)


def test_utc_timestamp_is_now_by_default() -> None:
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    moment = parse_timestamp(utc_timestamp())
    assert moment is not None
    assert before <= moment <= datetime.datetime.now(datetime.UTC)
