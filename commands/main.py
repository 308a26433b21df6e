"""codexd's entry point.

Remote clients run the lifecycle commands over SSH many times a day, so those take
a fast path: when the arguments are exactly one of `LIFECYCLE_OPERATIONS` (flat or
in codex's grammar), only the supervisor is imported, not click and the other
commands' needs. Everything else (options, help, errors in the arguments) goes
through click.
"""

from __future__ import annotations

import sys

from supervisor.version import CODEXD_VERSION


def lifecycle_command(argv: list[str]) -> str | None:
    """The lifecycle command `argv` is exactly, in either grammar; None otherwise."""
    from commands.common import LIFECYCLE_OPERATIONS

    if len(argv) == 1 and argv[0] in LIFECYCLE_OPERATIONS:
        return argv[0]
    if argv[:2] == ["app-server", "daemon"] and len(argv) == 3 and argv[2] in LIFECYCLE_OPERATIONS:
        return argv[2]
    return None


def main() -> None:
    argv = sys.argv[1:]
    if argv == ["--version"]:
        print(f"codexd {CODEXD_VERSION}")
        return
    command = lifecycle_command(argv)
    if command is not None:
        from commands.common import run_lifecycle

        run_lifecycle(command)
        return
    from commands.cli import main as click_main

    click_main()
