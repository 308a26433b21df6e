"""`codexd status`: one screen about this home, or one JSON object with --json."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from commands.common import home_paths

if TYPE_CHECKING:
    from rich.console import Console

    from supervisor.status import StatusReport, Tone


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead.")
def status(as_json: bool) -> None:
    """Show the app-server, the updater, the managed and previous release, whether the
    daemon comes back after a reboot, and the log files.

    Prints a table (coloured on a terminal), or with --json one object with the same
    facts (keys appServer, updater, managedRelease, previousRelease, settings,
    persistence, logs). Takes no lock; exits 0 whether or not anything runs."""
    from supervisor.status import gather_status

    report = gather_status(home_paths())
    if as_json:
        click.echo(json.dumps(report.to_json()))
    else:
        render_status(report)


def render_status(report: StatusReport) -> None:
    # rich costs tens of milliseconds to import: only status and logs pay for it.
    from rich.console import Console

    from supervisor.status import Tone

    styles = {Tone.PLAIN: "", Tone.GOOD: "green", Tone.WARN: "yellow", Tone.BAD: "bold red"}
    console = Console(highlight=False)
    if not console.is_terminal:
        # A pipe or a file: no colour (rich's own choice), no wrapping of long paths, and
        # no padding at the ends of lines.
        plain = Console(highlight=False, width=1000)
        with plain.capture() as captured:
            print_sections(plain, report, styles)
        click.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))
        return
    print_sections(console, report, styles)


def print_sections(console: Console, report: StatusReport, styles: dict[Tone, str]) -> None:
    from rich.table import Table
    from rich.text import Text

    from supervisor.status import status_sections

    console.print(Text(f"codexd status for {report.home}", style="bold"))
    for section in status_sections(report):
        table = Table.grid(padding=(0, 2))
        table.add_column(min_width=14, style="dim")
        table.add_column()
        for row in section.rows:
            table.add_row(Text(row.label), Text(row.value, style=styles[row.tone]))
        console.print()
        console.print(Text(section.title, style="bold cyan"))
        console.print(table)
