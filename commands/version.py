"""`codexd version`."""

import click

from commands.common import home_paths, run_and_print
from supervisor.lifecycle import Daemon


@click.command("version")
def version() -> None:
    """Report the running app-server's version.

    Prints {"status": "running", "appServerVersion": ...}; exits 0, or 1 when
    none answers. Takes no lock."""
    run_and_print(Daemon(home_paths()).version)
