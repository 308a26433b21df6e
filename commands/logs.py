"""`codexd logs [app-server|updater] [-f] [-n N]`: the workers' logs."""

from __future__ import annotations

import sys

import click

from commands.common import home_paths

WORKERS = ("app-server", "updater")


@click.command("logs")
@click.argument("worker", required=False, type=click.Choice(WORKERS))
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines, like tail -F.")
@click.option(
    "-n",
    "--lines",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    help="How many of the last lines of each log to print first.",
)
def logs(worker: str | None, follow: bool, lines: int) -> None:
    """Print the last lines of the app-server's and the updater's logs (or of WORKER's
    only), each under a `==> path <==` header. With -f, keep printing what is
    appended, across log rotations, until Ctrl-C or SIGTERM.

    Exits 0; 1 when none of the logs exists (without -f, which waits for them)."""
    from supervisor.log_tail import show_logs
    from supervisor.logs import worker_logs

    selected = {
        name: path for name, path in worker_logs(home_paths()).items() if worker in (None, name)
    }
    if not show_logs(selected, lines, follow):
        sys.exit(1)
