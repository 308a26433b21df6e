"""`codexd update [-y] [--from-cli]` and `codexd rollback`."""

from __future__ import annotations

import sys

import click

from commands.common import home_paths, run_and_print, run_lifecycle


def confirm_on_terminal(busy: int) -> bool:
    return click.confirm(
        f"The app-server is busy ({busy} processes below it: a tool or an MCP server in "
        "flight). Restart it onto the new release now?",
        default=False,
        err=True,
    )


@click.command("update")
@click.option(
    "-y",
    "--yes",
    is_flag=True,
    help="Restart a busy app-server onto the new release without asking.",
)
@click.option(
    "--from-cli",
    is_flag=True,
    hidden=True,
    help="codex's: copy and pin the running CLI package (not supported by codexd).",
)
def update(yes: bool, from_cli: bool) -> None:
    """Run one update pass now, in the foreground, whether or not the updater runs:
    the installer (codex from CODEXD_CODEX_SOURCE, codexd from its channel; its output
    on stderr), then the app-server restarted onto the new release. A busy app-server
    (processes below it) is restarted only with --yes, or when you say so on a
    terminal; otherwise it keeps the previous release and the updater restarts it once
    it is idle (see CODEXD_UPDATE_MAX_DEFER_SECONDS).

    Prints {"status": "updated"|"noUpdate"|"unsupported", "managedCodexPath",
    "installedVersion", "runningVersion", "message", "release", "previousRelease",
    "appServerRestarted", "restartDeferred", ...}; exits 0, or 1 on failure (the
    installer failed, the new release did not start and was rolled back), 2 for
    --from-cli."""
    if from_cli:
        raise click.UsageError(
            "--from-cli is codex's (copy and pin the running CLI package); codexd installs "
            "from its channel: pin codex with CODEXD_CODEX_SOURCE=npm:<version>"
        )
    from supervisor.lifecycle import Daemon
    from supervisor.manual_update import update as update_now

    ask = None if yes or not (sys.stdin.isatty() and sys.stderr.isatty()) else confirm_on_terminal
    run_and_print(lambda: update_now(Daemon(home_paths()), yes, ask))


@click.command("rollback")
def rollback() -> None:
    """Point `current` back at the previous release and restart a running app-server
    onto it. The release rolled back from is remembered (packages/standalone/rejected)
    and not installed again until a newer one appears.

    Prints {"status": "rolledBack", "release", "rolledBackFrom", ...}; exits 0, or 1
    when there is no previous release (or it is gone from disk)."""
    run_lifecycle("rollback")
