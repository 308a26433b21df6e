"""The codexd command line: codex's grammar (`codexd app-server daemon start`) and the
flat form (`codexd start`)."""

from __future__ import annotations

import sys

import click

from commands.app_server import run_app_server
from commands.bootstrap import bootstrap
from commands.completion import completion
from commands.logs import logs
from commands.proxy import proxy
from commands.remote_control import disable_remote_control, enable_remote_control
from commands.restart import restart
from commands.start import start
from commands.status import status
from commands.stop import stop
from commands.unpersist import unpersist
from commands.update_loop import pid_update_loop
from commands.version import version
from supervisor.errors import DaemonError
from supervisor.version import CODEXD_VERSION

KNOWN_FEATURES = ("remote_control",)
LIFECYCLE_COMMANDS = (
    start,
    restart,
    stop,
    version,
    enable_remote_control,
    disable_remote_control,
    bootstrap,
)


def _check_features(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> tuple[str, ...]:
    for feature in value:
        if feature not in KNOWN_FEATURES:
            raise click.BadParameter(
                f"unknown feature {feature!r} (known: {', '.join(KNOWN_FEATURES)})"
            )
    return value


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    CODEXD_VERSION, "--version", "-V", prog_name="codexd", message="%(prog)s %(version)s"
)
@click.option(
    "--enable",
    multiple=True,
    metavar="FEATURE",
    callback=_check_features,
    help="Turn a feature on for the app-server (remote_control).",
)
def cli(enable: tuple[str, ...]) -> None:
    """codexd: keeps one app-server per CODEX_HOME running, current and reachable.

    Lifecycle commands print exactly one JSON object on stdout and exit 0, or print
    one message on stderr and exit 1."""


@cli.group("app-server", invoke_without_command=True)
@click.option(
    "--listen", metavar="URL", help="Serve the control socket: unix:// for its default path."
)
@click.pass_context
def app_server(ctx: click.Context, listen: str | None) -> None:
    """Run the app-server in the foreground (with --listen), or manage it (daemon ...)."""
    if ctx.invoked_subcommand is None:
        if listen is None:
            raise click.UsageError("app-server needs --listen unix:// or a subcommand")
        run_app_server(listen, ctx.find_root().params["enable"])


@app_server.group("daemon")
def daemon_group() -> None:
    """Lifecycle commands, as codex spells them."""


for _command in LIFECYCLE_COMMANDS:
    cli.add_command(_command)
    daemon_group.add_command(_command)
daemon_group.add_command(pid_update_loop)
cli.add_command(status)
cli.add_command(logs)
cli.add_command(unpersist)
cli.add_command(completion)
app_server.add_command(proxy)


def main() -> None:
    try:
        cli(prog_name="codexd")
    except DaemonError as error:  # one line, never a traceback, from any command
        click.echo(f"codexd: {error}", err=True)
        sys.exit(1)
