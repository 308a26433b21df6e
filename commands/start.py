"""`codexd start`."""

import click

from commands.common import home_paths, run_and_print
from supervisor.lifecycle import Daemon


@click.command("start")
def start() -> None:
    """Start the app-server if none runs and wait until it answers.

    Prints {"status": "started"|"alreadyRunning", ...}; exits 0, or 1 on failure
    (no managed install, no answer within 10 s: the message quotes the log)."""
    run_and_print(Daemon(home_paths()).start)
