"""`codexd bootstrap [--remote-control | --saved-remote-control] [--persist]`."""

from __future__ import annotations

import click

from commands.common import home_paths, run_and_print
from commands.start import TAKEOVER_HELP
from supervisor.lifecycle import Daemon
from supervisor.output import BootstrapOutput


@click.command("bootstrap")
@click.option(
    "--remote-control/--no-remote-control",
    default=None,
    help="Launch the app-server with remote control on (saved in settings.json). "
    "Without it, bootstrap turns remote control off, as codex's does.",
)
@click.option(
    "--saved-remote-control",
    is_flag=True,
    help="Keep the remote-control setting saved in settings.json; the bootstrap "
    "--persist runs at every boot uses it.",
)
@click.option(
    "--auto-update/--no-auto-update",
    default=None,
    help="Run the updater (saved in settings.json); without either, the saved setting "
    "stays (on when nothing was saved).",
)
@click.option(
    "--persist",
    is_flag=True,
    help="Also run this bootstrap at every boot (systemd user unit, else crontab @reboot).",
)
@click.option("--takeover", is_flag=True, help=TAKEOVER_HELP)
def bootstrap(
    remote_control: bool | None,
    saved_remote_control: bool,
    auto_update: bool | None,
    persist: bool,
    takeover: bool,
) -> None:
    """Set up a machine: save the remote-control setting, (re)start the app-server
    from the managed install, and (re)start the detached updater that keeps both on
    the newest release. With --persist, also install a systemd user unit (where
    `systemctl --user` works) or a crontab @reboot line that bootstraps again at boot.

    \b
    Remote control, saved in settings.json for later starts:
      --remote-control         on
      (none), --no-remote-control
                               off, as codex's bootstrap does
      --saved-remote-control   as saved (by enable/disable-remote-control or an
                               earlier bootstrap); off when nothing was saved

    \b
    Automatic updates, saved in settings.json too:
      --auto-update            on: the updater runs
      --no-auto-update         off: no updater runs (a running one is stopped)
      (none)                   as saved; on when nothing was saved

    Prints {"status": "bootstrapped", "autoUpdateEnabled": true|false, ...}, with
    "persistence": "systemd"|"cron" under --persist; exits 0, or 1 on failure (no
    managed install, an unmanaged app-server on the socket, nowhere to persist, ...),
    or 2 for --saved-remote-control with --[no-]remote-control."""
    if saved_remote_control and remote_control is not None:
        flag = "--remote-control" if remote_control else "--no-remote-control"
        raise click.UsageError(f"--saved-remote-control and {flag} contradict each other")
    # None: the saved setting stays, so a reboot does not undo enable/disable-remote-control.
    wanted = None if saved_remote_control else bool(remote_control)
    tools = None
    if persist:
        from supervisor.persistence import PersistenceTools

        tools = PersistenceTools.from_environment()

    def operation() -> BootstrapOutput:
        output = Daemon(home_paths()).bootstrap(wanted, auto_update, tools, takeover)
        if output.warning is not None:
            click.echo(f"codexd: warning: {output.warning}", err=True)
        return output

    run_and_print(operation)
