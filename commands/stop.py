"""`codexd stop [--all]`."""

import click

from commands.common import home_paths, run_and_print, run_lifecycle


@click.command("stop")
@click.option(
    "--all",
    "stop_all",
    is_flag=True,
    help="Stop the updater too (reboot persistence stays as it is).",
)
def stop(stop_all: bool) -> None:
    """Stop the managed app-server: SIGTERM to its keeper, which gives it the grace
    window, then SIGKILL, and ends everything it started.

    Prints {"status": "stopped"|"notRunning", ...}; with --all
    {"status": ..., "appServer": "stopped"|"notRunning", "updater": ...}, after which
    no process of this home runs. Exits 0, or 1 on failure."""
    if not stop_all:
        run_lifecycle("stop")
        return
    from supervisor.lifecycle import Daemon

    run_and_print(lambda: Daemon(home_paths()).stop_all())
