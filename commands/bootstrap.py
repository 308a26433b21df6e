"""`codexd bootstrap [--remote-control]`."""

import click

from commands.common import home_paths, run_and_print
from supervisor.lifecycle import Daemon


@click.command("bootstrap")
@click.option(
    "--remote-control/--no-remote-control",
    default=False,
    help="Launch the app-server with remote control on (persisted).",
)
def bootstrap(remote_control: bool) -> None:
    """Set up a machine: persist the remote-control setting, (re)start the app-server
    from the managed install, and (re)start the detached updater that keeps both on
    the newest release.

    Prints {"status": "bootstrapped", "autoUpdateEnabled": true, ...}; exits 1 on
    failure (no managed install, an unmanaged app-server on the socket, ...)."""
    run_and_print(lambda: Daemon(home_paths()).bootstrap(remote_control))
