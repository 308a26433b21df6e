"""`codexd version`."""

import click

from commands.common import run_lifecycle


@click.command("version")
def version() -> None:
    """Report the running app-server's version.

    Prints {"status": "running", "appServerVersion": ...}; exits 0, or 1 when
    none answers. Takes no lock."""
    run_lifecycle("version")
