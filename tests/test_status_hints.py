"""What `codexd status` tells the user to run: a table over its facts."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from supervisor.decisions import WorkerState
from supervisor.persistence import NOWHERE_TO_PERSIST
from supervisor.status_hints import HintFacts, bootstrap_command, status_hints

RUNNING, STOPPED, STALE = WorkerState.RUNNING, WorkerState.NOT_RUNNING, WorkerState.STALE
ALL_WELL = HintFacts(
    installed=True,
    settings_file=Path("/h/app-server-daemon/settings.json"),
    settings_readable=True,
    remote_control=False,
    auto_update=True,
    app_server=RUNNING,
    unmanaged=False,
    socket_path=Path("/h/app-server-control/app-server-control.sock"),
    updater=RUNNING,
    last_pass_failed=False,
    last_pass_rolled_back=False,
    persisted=True,
)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, []),
        ({"app_server": WorkerState.STARTING, "updater": WorkerState.STARTING}, []),
        ({"app_server": WorkerState.UNREADABLE}, []),  # its error row says what to do
        ({"app_server": STOPPED}, [("app-server", "codexd start")]),
        ({"app_server": STALE}, [("app-server", "codexd start")]),
        ({"updater": STOPPED}, [("updater", "codexd bootstrap")]),
        (
            {"updater": STALE, "remote_control": True},
            [("updater", "codexd bootstrap --remote-control")],
        ),
        ({"persisted": False}, [("release", "codexd bootstrap --persist")]),
        # Nothing here could persist: no command that would fail, the words of what is missing.
        ({"persisted": False, "persistence_blocker": NOWHERE_TO_PERSIST}, [("release", None)]),
        ({"persistence_blocker": NOWHERE_TO_PERSIST}, []),  # persisted already
        # Automatic updates turned off: the hint turns them on, not a plain bootstrap.
        ({"auto_update": False}, []),
        (
            {"updater": STOPPED, "auto_update": False},
            [("updater", "codexd bootstrap --auto-update")],
        ),
        (
            {"updater": STOPPED, "auto_update": False, "remote_control": True},
            [("updater", "codexd bootstrap --remote-control --auto-update")],
        ),
        (
            {"app_server": STOPPED, "updater": STOPPED, "persisted": False},
            [
                ("app-server", "codexd start"),
                ("updater", "codexd bootstrap"),
                ("release", "codexd bootstrap --persist"),
            ],
        ),
        ({"last_pass_failed": True}, [("updater", "codexd logs updater")]),
        ({"last_pass_rolled_back": True}, [("updater", "codexd logs app-server")]),
        ({"update_deferred": True}, [("updater", "codexd update --yes")]),
        # What would be refused is not suggested: install first ...
        (
            {"installed": False, "app_server": STOPPED, "updater": STOPPED, "persisted": False},
            [("release", "sh install.sh")],
        ),
        # ... fix the settings first ...
        (
            {"settings_readable": False, "app_server": STOPPED, "updater": STOPPED},
            [("app-server", None)],
        ),
        # ... take over what codexd did not start first.
        (
            {"unmanaged": True, "app_server": STOPPED, "updater": STOPPED},
            [("app-server", "codexd start --takeover")],
        ),
        # A failed pass is worth a look whatever else is wrong.
        (
            {"installed": False, "updater": STOPPED, "last_pass_failed": True},
            [("release", "sh install.sh"), ("updater", "codexd logs updater")],
        ),
    ],
)
def test_status_hints(changes: dict[str, object], expected: list[tuple[str, str | None]]) -> None:
    hints = status_hints(replace(ALL_WELL, **changes))  # type: ignore[arg-type]
    assert [(hint.section, hint.command) for hint in hints] == expected
    for hint in hints:
        assert hint.command is None or hint.text.endswith(f": {hint.command}")


def test_the_settings_and_unmanaged_hints_name_the_file_and_the_socket() -> None:
    [settings] = status_hints(replace(ALL_WELL, settings_readable=False))
    assert str(ALL_WELL.settings_file) in settings.text
    [unmanaged] = status_hints(replace(ALL_WELL, unmanaged=True))
    assert str(ALL_WELL.socket_path) in unmanaged.text


@pytest.mark.parametrize(
    ("remote_control", "persist", "command"),
    [
        (False, False, "codexd bootstrap"),
        (True, False, "codexd bootstrap --remote-control"),
        (False, True, "codexd bootstrap --persist"),
        (True, True, "codexd bootstrap --remote-control --persist"),
    ],
)
def test_bootstrap_command_keeps_the_saved_setting(
    remote_control: bool, persist: bool, command: str
) -> None:
    assert bootstrap_command(remote_control, persist) == command


def test_the_cannot_persist_hint_says_what_to_install() -> None:
    [hint] = status_hints(
        replace(ALL_WELL, persisted=False, persistence_blocker=NOWHERE_TO_PERSIST)
    )
    assert hint.text.endswith("install cron or enable a user manager (loginctl enable-linger)")
    assert "--persist" not in hint.text
