"""`codexd start [--takeover]`."""

import click

from commands.common import home_paths, run_and_print, run_lifecycle

TAKEOVER_HELP = (
    "If a process of yours that codexd did not start holds the socket (an app-server "
    "run by hand or by a desktop app, or anything else listening there), stop it "
    "(SIGTERM, the grace window, SIGKILL) and start the managed one. Another user's "
    "process is never touched."
)


@click.command("start")
@click.option("--takeover", is_flag=True, help=TAKEOVER_HELP)
def start(takeover: bool) -> None:
    """Start the app-server if none runs and wait until it answers.

    Prints {"status": "started"|"alreadyRunning", ...}; exits 0, or 1 on failure
    (no managed install, an incomplete release, no answer within 10 s: the message
    quotes the log). "started" also when the keeper was waiting out a restart delay
    (cut short). Without --takeover, an app-server codexd did not start is reported as
    alreadyRunning, without "backend", and a listener that is no app-server is refused,
    named."""
    if not takeover:
        run_lifecycle("start")
        return
    from supervisor.lifecycle import Daemon

    run_and_print(lambda: Daemon(home_paths()).start(takeover=True))
