"""`codexd app-server proxy`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from commands.common import home_paths
from supervisor.proxy import ProxyError, run_proxy


def _warn(message: str) -> None:
    click.echo(f"codexd proxy: {message}", err=True)


@click.command("proxy")
@click.option(
    "--sock",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The control socket (default: CODEX_HOME/app-server-control/app-server-control.sock).",
)
def proxy(sock: Path | None) -> None:
    """Copy JSON-RPC messages between stdin/stdout (one per line) and the control socket.

    Exits 0 when stdin ends or the server closes the connection; exits 1 with a message
    on stderr when nothing listens on the socket."""
    socket_path = sock if sock is not None else home_paths().socket_path
    try:
        status = run_proxy(socket_path, sys.stdin.fileno(), sys.stdout.buffer, _warn)
    except ProxyError as error:
        click.echo(f"codexd: {error}", err=True)
        sys.exit(1)
    sys.exit(status)
