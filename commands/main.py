"""codexd's entry point.

Remote clients run the lifecycle commands over SSH many times a day, so those take
a fast path: when the arguments are exactly a lifecycle command (flat or in codex's
grammar), only the supervisor is imported, not click and the other commands' needs.
Everything else (options, help, errors in the arguments) goes through click.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from supervisor.version import CODEXD_VERSION

if TYPE_CHECKING:
    from commands.common import JsonOutput

LIFECYCLE_COMMANDS = (
    "start",
    "restart",
    "stop",
    "version",
    "enable-remote-control",
    "disable-remote-control",
)


def lifecycle_command(argv: list[str]) -> str | None:
    """The lifecycle command `argv` is exactly, in either grammar; None otherwise."""
    if len(argv) == 1 and argv[0] in LIFECYCLE_COMMANDS:
        return argv[0]
    if len(argv) == 3 and argv[:2] == ["app-server", "daemon"] and argv[2] in LIFECYCLE_COMMANDS:
        return argv[2]
    return None


def operation(command: str) -> Callable[[], JsonOutput]:
    from commands.common import home_paths
    from supervisor.lifecycle import Daemon

    daemon = Daemon(home_paths())
    operations: dict[str, Callable[[], JsonOutput]] = {
        "start": daemon.start,
        "restart": daemon.restart,
        "stop": daemon.stop,
        "version": daemon.version,
        "enable-remote-control": lambda: daemon.set_remote_control(True),
        "disable-remote-control": lambda: daemon.set_remote_control(False),
    }
    return operations[command]


def main() -> None:
    argv = sys.argv[1:]
    if argv == ["--version"]:
        print(f"codexd {CODEXD_VERSION}")
        return
    command = lifecycle_command(argv)
    if command is not None:
        from commands.common import run_and_print

        run_and_print(lambda: operation(command)())
        return
    from commands.cli import main as click_main

    click_main()
