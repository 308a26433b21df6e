"""`codexd restart [--takeover]`."""

import click

from commands.common import home_paths, run_and_print, run_lifecycle
from commands.start import TAKEOVER_HELP


@click.command("restart")
@click.option("--takeover", is_flag=True, help=TAKEOVER_HELP)
def restart(takeover: bool) -> None:
    """Stop the managed app-server, if any, and start it again.

    Prints {"status": "restarted", "pid": ...}; exits 0, or 1 on failure (a process
    codexd did not start holds the socket: the message names its pid and command line;
    --takeover stops it. An incomplete release: refused before anything is stopped)."""
    if not takeover:
        run_lifecycle("restart")
        return
    from supervisor.lifecycle import Daemon

    run_and_print(lambda: Daemon(home_paths()).restart(takeover=True))
