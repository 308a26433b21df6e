"""`codexd status`: one screen about this home, or one JSON object with --json."""

from __future__ import annotations

import json

import click

from commands.common import home_paths


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead.")
def status(as_json: bool) -> None:
    """Show the app-server, the updater, the managed and previous release, whether the
    daemon comes back after a reboot, the log files, and what to run to fix what it
    shows (hints such as `codexd bootstrap` when the updater is not running).

    Prints a table (coloured on a terminal), or with --json one object with the same
    facts (keys appServer, updater, managedRelease, previousRelease, settings,
    persistence, logs, hints). Takes no lock; exits 0 whether or not anything runs."""
    from supervisor.status import gather_status

    report = gather_status(home_paths())
    if as_json:
        click.echo(json.dumps(report.to_json()))
    else:
        from supervisor.status_render import print_status

        print_status(report)
