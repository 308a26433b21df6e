"""The codexd command line: codex's grammar (`codexd app-server daemon start`) and the
flat form (`codexd start`)."""

from __future__ import annotations

import sys

import click

from commands.app_server import run_app_server
from commands.bootstrap import bootstrap
from commands.completion import completion
from commands.doctor import doctor
from commands.logs import logs
from commands.proxy import proxy
from commands.remote_control import disable_remote_control, enable_remote_control
from commands.restart import restart
from commands.start import start
from commands.status import status
from commands.stop import stop
from commands.unpersist import unpersist
from commands.update import rollback, update
from commands.update_loop import pid_update_loop
from commands.version import version
from supervisor.errors import DaemonError
from supervisor.version import CODEXD_VERSION

KNOWN_FEATURES = ("remote_control",)
# Under `app-server daemon` (codex's grammar, codexd's extras too) and at the top (the
# flat form): `current/codex app-server daemon <command>` is `codexd <command>`.
DAEMON_COMMANDS = (
    start,
    restart,
    stop,
    version,
    enable_remote_control,
    disable_remote_control,
    bootstrap,
    update,
    rollback,
    doctor,
    status,
    logs,
    unpersist,
    completion,
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


def refuse_features(ctx: click.Context, command: str) -> None:
    """`--enable` is a flag of the app-server process this invocation runs; the managed
    app-server is launched later (by start, the updater, a reboot) from the saved
    setting, so a flag on a lifecycle command would be undone by the next launch."""
    features = ctx.find_root().params["enable"]
    if not features:
        return
    remedy = (
        "use `codexd bootstrap --remote-control`"
        if command == "bootstrap"
        else "remote control of the managed app-server is a saved setting: run "
        "`codexd enable-remote-control` (it restarts a running app-server)"
    )
    raise click.UsageError(
        f"--enable {features[0]} applies only to `app-server --listen`, not to "
        f"`{command}`; {remedy}",
        ctx,
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    CODEXD_VERSION, "--version", "-V", prog_name="codexd", message="%(prog)s %(version)s"
)
@click.option(
    "--enable",
    multiple=True,
    metavar="FEATURE",
    callback=_check_features,
    help="Turn a feature on for `app-server --listen` (remote_control). For the managed "
    "app-server, use enable-remote-control or bootstrap --remote-control.",
)
@click.pass_context
def cli(ctx: click.Context, enable: tuple[str, ...]) -> None:
    """codexd: keeps one app-server per CODEX_HOME running, current and reachable.

    Lifecycle commands print exactly one JSON object on stdout and exit 0, or print
    one message on stderr and exit 1. Errors in the arguments exit 2."""
    if ctx.invoked_subcommand not in (None, "app-server"):
        refuse_features(ctx, ctx.invoked_subcommand)


@cli.group("app-server", invoke_without_command=True)
@click.option(
    "--listen", metavar="URL", help="Serve the control socket: unix:// for its default path."
)
@click.pass_context
def app_server(ctx: click.Context, listen: str | None) -> None:
    """Run the app-server in the foreground (with --listen), or manage it (daemon ...)."""
    if ctx.invoked_subcommand == "proxy":
        refuse_features(ctx, "app-server proxy")
    if ctx.invoked_subcommand is None:
        if listen is None:
            raise click.UsageError("app-server needs --listen unix:// or a subcommand")
        run_app_server(listen, ctx.find_root().params["enable"])


@app_server.group("daemon")
@click.pass_context
def daemon_group(ctx: click.Context) -> None:
    """Lifecycle commands, as codex spells them."""
    if ctx.invoked_subcommand is not None:
        refuse_features(ctx, ctx.invoked_subcommand)


for _command in DAEMON_COMMANDS:
    cli.add_command(_command)
    daemon_group.add_command(_command)
daemon_group.add_command(pid_update_loop)
app_server.add_command(proxy)


def main() -> None:
    try:
        # Not standalone: Ctrl-C reaches commands/main.py, which says it in one line as
        # for every command (click's own would add "Aborted!").
        code = cli.main(prog_name="codexd", standalone_mode=False)
    except click.Abort as abort:
        if isinstance(abort.__cause__, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        click.echo("codexd: aborted", err=True)  # end of input at a prompt
        sys.exit(1)
    except click.ClickException as error:  # usage errors: exit 2, as click's own
        error.show()
        sys.exit(error.exit_code)
    except DaemonError as error:  # one line, never a traceback, from any command
        click.echo(f"codexd: {error}", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
