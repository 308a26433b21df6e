"""The entry point's fast path: which argument lists skip click."""

from __future__ import annotations

import pytest

from commands.main import lifecycle_command


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["start"], "start"),
        (["stop"], "stop"),
        (["restart"], "restart"),
        (["version"], "version"),
        (["enable-remote-control"], "enable-remote-control"),
        (["disable-remote-control"], "disable-remote-control"),
        (["app-server", "daemon", "start"], "start"),
        (["app-server", "daemon", "version"], "version"),
        (["app-server", "daemon", "disable-remote-control"], "disable-remote-control"),
        # Everything else goes through click: options, help, other commands, typos.
        ([], None),
        (["start", "--help"], None),
        (["--help"], None),
        (["bootstrap"], None),
        (["status"], None),
        (["app-server", "daemon", "bootstrap", "--remote-control"], None),
        (["app-server", "daemon", "pid-update-loop"], None),
        (["app-server", "--listen", "unix://"], None),
        (["app-server", "start"], None),
        (["daemon", "start"], None),
        (["strat"], None),
    ],
)
def test_lifecycle_command(argv: list[str], command: str | None) -> None:
    assert lifecycle_command(argv) == command
