"""`codexd stop`."""

import click

from commands.common import home_paths, run_and_print
from supervisor.lifecycle import Daemon


@click.command("stop")
def stop() -> None:
    """Stop the managed app-server: SIGTERM, the grace window, then SIGKILL.

    Prints {"status": "stopped"|"notRunning", ...}; exits 0, or 1 on failure."""
    run_and_print(Daemon(home_paths()).stop)
