"""The lifecycle's judgements as tables: every input row and the answer it must give.

Also the JSON objects the commands print, whose key sets clients written for codex
rely on.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from supervisor.decisions import (
    HolderAction,
    RemoteControlPlan,
    RemoteControlStatus,
    SocketHolder,
    SocketUse,
    StartAction,
    StopStep,
    WorkerFacts,
    WorkerState,
    classify_worker,
    holder_action,
    is_managed,
    keeper_at_work_message,
    listener_is_ours,
    next_stop_step,
    remote_control_plan,
    socket_holder,
    start_action,
)
from supervisor.managed import parse_version_output
from supervisor.output import BACKEND_PID, LifecycleOutput, LifecycleStatus, RemoteControlOutput
from supervisor.version import CODEXD_VERSION

# -- classify_worker --------------------------------------------------------------------

# (lock_held, record_present, record_readable, record_process_alive) -> state.
# All 16 combinations, including those the facts can never show (a record that is not
# present is neither readable nor alive): the answer must still be defined.
CLASSIFY_TABLE = [
    # Lock free: nobody runs. A record left behind is stale, whatever it says.
    ((False, False, False, False), WorkerState.NOT_RUNNING),
    ((False, False, False, True), WorkerState.NOT_RUNNING),
    ((False, False, True, False), WorkerState.NOT_RUNNING),
    ((False, False, True, True), WorkerState.NOT_RUNNING),
    ((False, True, False, False), WorkerState.STALE),
    ((False, True, False, True), WorkerState.STALE),
    ((False, True, True, False), WorkerState.STALE),
    ((False, True, True, True), WorkerState.STALE),
    # Lock held, no record yet: the launcher locks before it writes the record.
    ((True, False, False, False), WorkerState.STARTING),
    ((True, False, False, True), WorkerState.STARTING),
    ((True, False, True, False), WorkerState.STARTING),
    ((True, False, True, True), WorkerState.STARTING),
    # Lock held, record corrupt: a human must look.
    ((True, True, False, False), WorkerState.UNREADABLE),
    ((True, True, False, True), WorkerState.UNREADABLE),
    # Lock held, record names someone gone: the new holder has not replaced it yet.
    ((True, True, True, False), WorkerState.STARTING),
    # Lock held, record names the live process.
    ((True, True, True, True), WorkerState.RUNNING),
]


def test_classify_table_covers_all_sixteen_combinations() -> None:
    rows = {facts for facts, _ in CLASSIFY_TABLE}
    assert rows == set(itertools.product([False, True], repeat=4))


@pytest.mark.parametrize(("facts", "expected"), CLASSIFY_TABLE)
def test_classify_worker_gives_the_state_of_each_row(
    facts: tuple[bool, bool, bool, bool], expected: WorkerState
) -> None:
    assert classify_worker(WorkerFacts(*facts)) is expected


@pytest.mark.parametrize(
    ("state", "managed"),
    [
        (WorkerState.NOT_RUNNING, False),
        (WorkerState.STALE, False),
        (WorkerState.STARTING, True),
        (WorkerState.RUNNING, True),
        (WorkerState.UNREADABLE, False),
    ],
)
def test_is_managed_only_for_a_held_lock_with_a_usable_record(
    state: WorkerState, managed: bool
) -> None:
    assert is_managed(state) is managed


# -- start_action, socket_holder and holder_action -------------------------------------------------

# UNREADABLE is left out on purpose: observe_worker raises an error naming the record
# before either function can be asked about it.
START_TABLE = [
    (WorkerState.NOT_RUNNING, True, StartAction.REPORT_RUNNING),
    (WorkerState.STALE, True, StartAction.REPORT_RUNNING),
    (WorkerState.STARTING, True, StartAction.REPORT_RUNNING),
    (WorkerState.RUNNING, True, StartAction.REPORT_RUNNING),
    (WorkerState.NOT_RUNNING, False, StartAction.LAUNCH),
    (WorkerState.STALE, False, StartAction.LAUNCH),
    (WorkerState.STARTING, False, StartAction.WAIT_UNTIL_READY),
    (WorkerState.RUNNING, False, StartAction.WAIT_UNTIL_READY),
]


@pytest.mark.parametrize(("state", "socket_answers", "expected"), START_TABLE)
def test_start_action_reports_waits_or_launches(
    state: WorkerState, socket_answers: bool, expected: StartAction
) -> None:
    assert start_action(state, socket_answers) is expected


H, U, A = SocketHolder, SocketUse, HolderAction
# (state, socket_answers, someone_listens) -> holder. A managed app-server is ours
# whatever the socket shows (its keeper is at work on it).
HOLDER_TABLE = [
    (state, answers, listens, H.MANAGED)
    for state in (WorkerState.STARTING, WorkerState.RUNNING)
    for answers in (False, True)
    for listens in (False, True)
] + [
    (state, answers, listens, holder)
    for state in (WorkerState.NOT_RUNNING, WorkerState.STALE, WorkerState.FAILED)
    for answers, listens, holder in [
        (True, False, H.UNMANAGED_APP_SERVER),
        (True, True, H.UNMANAGED_APP_SERVER),
        (False, True, H.NOT_AN_APP_SERVER),
        (False, False, H.NOBODY),
    ]
]


@pytest.mark.parametrize(("state", "answers", "listens", "holder"), HOLDER_TABLE)
def test_socket_holder(
    state: WorkerState, answers: bool, listens: bool, holder: SocketHolder
) -> None:
    assert socket_holder(state, answers, listens) is holder


# (holder, use, takeover) -> action: every combination.
HOLDER_ACTION_TABLE = [
    *[(h, u, t, A.PROCEED) for h in (H.MANAGED, H.NOBODY) for u in U for t in (False, True)],
    *[(h, u, True, A.TAKE_OVER) for h in (H.UNMANAGED_APP_SERVER, H.NOT_AN_APP_SERVER) for u in U],
    # start reports an app-server that answers; the others would act on it: refused.
    (H.UNMANAGED_APP_SERVER, U.REPORT, False, A.PROCEED),
    (H.UNMANAGED_APP_SERVER, U.LAUNCH, False, A.REFUSE),
    (H.UNMANAGED_APP_SERVER, U.LEAVE, False, A.REFUSE),
    # No app-server answers: a command that would launch one into it is refused before
    # it launches; one that launches nothing leaves it be.
    (H.NOT_AN_APP_SERVER, U.REPORT, False, A.REFUSE),
    (H.NOT_AN_APP_SERVER, U.LAUNCH, False, A.REFUSE),
    (H.NOT_AN_APP_SERVER, U.LEAVE, False, A.PROCEED),
]


def test_holder_action_table_covers_every_combination() -> None:
    rows = [row[:3] for row in HOLDER_ACTION_TABLE]
    assert sorted(rows, key=repr) == sorted(
        itertools.product(SocketHolder, SocketUse, [False, True]), key=repr
    )
    assert len(set(rows)) == len(rows)


@pytest.mark.parametrize(("holder", "use", "takeover", "action"), HOLDER_ACTION_TABLE)
def test_holder_action(
    holder: SocketHolder, use: SocketUse, takeover: bool, action: HolderAction
) -> None:
    assert holder_action(holder, use, takeover) is action


@pytest.mark.parametrize(
    ("managed", "listener", "app_server", "ours"),
    [
        (True, 42, 42, True),  # the keeper's app-server
        (True, 42, None, True),  # the keeper has not named one yet
        (True, 42, 7, False),  # another process holds the socket beside it
        (False, 42, 42, False),  # a stale record names a reused pid
        (False, 42, None, False),  # no keeper of ours runs
    ],
)
def test_listener_is_ours_only_when_it_is_the_keepers_app_server(
    managed: bool, listener: int, app_server: int | None, ours: bool
) -> None:
    assert listener_is_ours(managed, listener, app_server) is ours


# -- remote_control_plan ----------------------------------------------------------------

S = RemoteControlStatus
# (setting, wanted, running_server_setting) -> (status, save_setting, restart_server).
# running_server_setting None: no managed app-server runs, so nothing is restarted.
REMOTE_CONTROL_TABLE = [
    # Enable when disabled: save; restart whatever runs so the setting takes effect.
    (False, True, None, S.ENABLED, True, False),
    (False, True, True, S.ENABLED, True, True),
    (False, True, False, S.ENABLED, True, True),
    # Enable when enabled: nothing to save; restart only a server launched without it.
    (True, True, None, S.ALREADY_ENABLED, False, False),
    (True, True, True, S.ALREADY_ENABLED, False, False),
    (True, True, False, S.ALREADY_ENABLED, False, True),
    # Disable when enabled: save; restart whatever runs.
    (True, False, None, S.DISABLED, True, False),
    (True, False, True, S.DISABLED, True, True),
    (True, False, False, S.DISABLED, True, True),
    # Disable when disabled: nothing to save; restart only a server launched with it.
    (False, False, None, S.ALREADY_DISABLED, False, False),
    (False, False, True, S.ALREADY_DISABLED, False, True),
    (False, False, False, S.ALREADY_DISABLED, False, False),
]


def test_remote_control_table_covers_every_combination() -> None:
    rows = {row[:3] for row in REMOTE_CONTROL_TABLE}
    assert rows == set(itertools.product([False, True], [False, True], [None, True, False]))


@pytest.mark.parametrize(
    ("setting", "wanted", "running", "status", "save", "restart"), REMOTE_CONTROL_TABLE
)
def test_remote_control_plan_saves_and_restarts_as_the_table_says(
    setting: bool,
    wanted: bool,
    running: bool | None,
    status: RemoteControlStatus,
    save: bool,
    restart: bool,
) -> None:
    assert remote_control_plan(setting, wanted, running) == RemoteControlPlan(
        status=status, save_setting=save, restart_server=restart
    )


# -- next_stop_step ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exited", "killed", "expected"),
    [
        (True, False, StopStep.DONE),  # left within the grace window
        (True, True, StopStep.DONE),  # left after SIGKILL
        (False, False, StopStep.KILL),  # grace window over: SIGKILL
        (False, True, StopStep.GIVE_UP),  # survived SIGKILL's wait: an error
    ],
)
def test_next_stop_step_after_each_wait(exited: bool, killed: bool, expected: StopStep) -> None:
    assert next_stop_step(exited, killed) is expected


# -- parse_version_output ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("codex-cli 0.169.0", "0.169.0"),
        ("codexd 0.1.0\n", "0.1.0"),
        ("  codex-cli   0.169.0  \n", "0.169.0"),
        ("codex-cli 0.169.0 (extra words)\n", "0.169.0"),
        ("", None),
        ("\n", None),
        ("justone", None),
    ],
)
def test_parse_version_output_takes_the_second_word(output: str, expected: str | None) -> None:
    assert parse_version_output(output) == expected


# -- output.py --------------------------------------------------------------------------

LIFECYCLE_ALWAYS = {"status", "managedCodexPath", "managedCodexVersion", "socketPath", "cliVersion"}
MANAGED = Path("/home/u/.codex/packages/standalone/current/codex")
SOCKET = Path("/home/u/.codex/app-server-control/app-server-control.sock")


@pytest.mark.parametrize("status", list(LifecycleStatus))
@pytest.mark.parametrize(
    ("managed", "pid", "app_server_version", "extra_keys"),
    [
        (False, None, None, set()),
        (True, None, None, {"backend"}),
        (True, 4242, None, {"backend", "pid"}),
        (True, None, "0.169.0", {"backend", "appServerVersion"}),
        (True, 4242, "0.169.0", {"backend", "pid", "appServerVersion"}),
        (False, None, "0.169.0", {"appServerVersion"}),  # something unmanaged answers
    ],
)
def test_lifecycle_output_keys_appear_only_when_they_have_a_value(
    status: LifecycleStatus,
    managed: bool,
    pid: int | None,
    app_server_version: str | None,
    extra_keys: set[str],
) -> None:
    output = LifecycleOutput(
        status=status,
        managed=managed,
        managed_codex_path=MANAGED,
        managed_codex_version="0.1.0",
        socket_path=SOCKET,
        pid=pid,
        app_server_version=app_server_version,
    )
    value = output.to_json()
    assert set(value) == LIFECYCLE_ALWAYS | extra_keys
    assert value["status"] == status.value
    assert value["managedCodexPath"] == str(MANAGED)
    assert value["socketPath"] == str(SOCKET)
    assert value["cliVersion"] == CODEXD_VERSION
    if managed:
        assert value["backend"] == BACKEND_PID == "pid"
    if pid is not None:
        assert value["pid"] == pid
    if app_server_version is not None:
        assert value["appServerVersion"] == app_server_version
    assert json.loads(json.dumps(value)) == value


def test_lifecycle_statuses_are_codex_strings() -> None:
    assert {status.value for status in LifecycleStatus} == {
        "started",
        "alreadyRunning",
        "restarted",
        "stopped",
        "notRunning",
        "running",
    }


def test_lifecycle_output_unknown_managed_version_is_null_not_left_out() -> None:
    output = LifecycleOutput(
        status=LifecycleStatus.NOT_RUNNING,
        managed=False,
        managed_codex_path=MANAGED,
        managed_codex_version=None,
        socket_path=SOCKET,
    )
    value = output.to_json()
    assert "managedCodexVersion" in value
    assert value["managedCodexVersion"] is None
    assert '"managedCodexVersion": null' in json.dumps(value)


REMOTE_ALWAYS = {"status", "remoteControlEnabled", "socketPath", "cliVersion"}


@pytest.mark.parametrize("status", list(RemoteControlStatus))
@pytest.mark.parametrize(
    ("managed", "app_server_version", "extra_keys"),
    [
        (False, None, set()),
        (True, None, {"backend"}),
        (True, "0.169.0", {"backend", "appServerVersion"}),
    ],
)
@pytest.mark.parametrize("enabled", [False, True])
def test_remote_control_output_keys_appear_only_when_they_have_a_value(
    status: RemoteControlStatus,
    managed: bool,
    app_server_version: str | None,
    extra_keys: set[str],
    enabled: bool,
) -> None:
    output = RemoteControlOutput(
        status=status,
        managed=managed,
        remote_control_enabled=enabled,
        socket_path=SOCKET,
        app_server_version=app_server_version,
    )
    value = output.to_json()
    assert set(value) == REMOTE_ALWAYS | extra_keys
    assert value["status"] == status.value
    assert value["remoteControlEnabled"] is enabled
    assert value["socketPath"] == str(SOCKET)
    assert value["cliVersion"] == CODEXD_VERSION
    if managed:
        assert value["backend"] == "pid"
    if app_server_version is not None:
        assert value["appServerVersion"] == app_server_version
    assert json.loads(json.dumps(value)) == value


def test_remote_control_statuses_are_codex_strings() -> None:
    assert {status.value for status in RemoteControlStatus} == {
        "enabled",
        "disabled",
        "alreadyEnabled",
        "alreadyDisabled",
    }


# -- keeper_at_work_message ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "last_exit", "said"),
    [
        (
            "backoff",
            "killed by SIGKILL (crashed)",
            "waiting out its restart delay after killed by SIGKILL (crashed)",
        ),
        ("launching", None, "is starting it (launching since"),
        ("starting", "exit status 3 (crashed)", "starting it again after exit status 3"),
        ("replacing", "unresponsive (unresponsive)", "replacing it after unresponsive"),
        ("stopping", None, "is stopping it (stopping since"),
        ("givingUp", None, "stopping it after a crash loop"),
        ("running", None, None),
        ("failed", "killed by SIGSEGV (crashed)", None),
        ("stopped", None, None),
    ],
)
def test_keeper_at_work_message(state: str, last_exit: str | None, said: str | None) -> None:
    message = keeper_at_work_message(42, state, "2026-11-26T00:00:00+00:00", last_exit)
    if said is None:
        assert message is None
    else:
        assert message is not None and said in message, message
        assert message.startswith("app server is not answering yet: its keeper (pid 42) is ")
        assert "\n" not in message


def test_every_keeper_state_but_the_settled_ones_has_a_message() -> None:
    from supervisor.supervision import KeeperState

    settled = {KeeperState.RUNNING, KeeperState.STOPPED, KeeperState.FAILED}
    for state in KeeperState:
        message = keeper_at_work_message(1, state.value, "t", None)
        assert (message is None) == (state in settled), state
