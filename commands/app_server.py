"""`codexd app-server --listen unix://`: run the reference app-server in the foreground."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import click

from commands.common import home_paths

SUPPORTED_LISTEN = "unix://"


def run_app_server(listen: str, features: tuple[str, ...]) -> NoReturn:
    if listen != SUPPORTED_LISTEN:
        raise click.UsageError(
            f"--listen {listen!r} is not supported; use --listen {SUPPORTED_LISTEN}"
        )
    # Imported here: the lifecycle commands never need the server.
    from workers.reference_app_server import serve

    status = serve(home_paths().home, remote_control="remote_control" in features)
    # The socket is gone and the log flushed: skip the interpreter's teardown, which
    # would only make `stop` wait longer.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
