"""`codexd app-server daemon pid-update-loop`: the updater, in the foreground.

Hidden: `bootstrap` launches it detached; it is not for people to run."""

import sys

import click

from commands.common import home_paths


@click.command("pid-update-loop", hidden=True)
def pid_update_loop() -> None:
    """Run the updater loop in the foreground."""
    from workers.updater import run_update_loop

    sys.exit(run_update_loop(home_paths().home))
