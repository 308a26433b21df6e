"""`codexd restart`."""

import click

from commands.common import home_paths, run_and_print
from supervisor.lifecycle import Daemon


@click.command("restart")
def restart() -> None:
    """Stop the managed app-server, if any, and start it again.

    Prints {"status": "restarted", "pid": ...}; exits 0, or 1 on failure."""
    run_and_print(Daemon(home_paths()).restart)
