"""`codexd enable-remote-control` and `codexd disable-remote-control`."""

import click

from commands.common import run_lifecycle


@click.command("enable-remote-control")
def enable_remote_control() -> None:
    """Persist remote control on; restart a running app-server so it takes effect.

    Prints {"status": "enabled"|"alreadyEnabled", ...}; exits 0, or 1 on failure."""
    run_lifecycle("enable-remote-control")


@click.command("disable-remote-control")
def disable_remote_control() -> None:
    """Persist remote control off; restart a running app-server so it takes effect.

    Prints {"status": "disabled"|"alreadyDisabled", ...}; exits 0, or 1 on failure."""
    run_lifecycle("disable-remote-control")
