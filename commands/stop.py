"""`codexd stop`."""

import click

from commands.common import run_lifecycle


@click.command("stop")
def stop() -> None:
    """Stop the managed app-server: SIGTERM, the grace window, then SIGKILL.

    Prints {"status": "stopped"|"notRunning", ...}; exits 0, or 1 on failure."""
    run_lifecycle("stop")
