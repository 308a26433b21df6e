"""`codexd restart`."""

import click

from commands.common import run_lifecycle


@click.command("restart")
def restart() -> None:
    """Stop the managed app-server, if any, and start it again.

    Prints {"status": "restarted", "pid": ...}; exits 0, or 1 on failure."""
    run_lifecycle("restart")
