"""`codexd start`."""

import click

from commands.common import run_lifecycle


@click.command("start")
def start() -> None:
    """Start the app-server if none runs and wait until it answers.

    Prints {"status": "started"|"alreadyRunning", ...}; exits 0, or 1 on failure
    (no managed install, no answer within 10 s: the message quotes the log)."""
    run_lifecycle("start")
