"""`codexd doctor [--json]`: every check of this home, with what to do about each."""

from __future__ import annotations

import json
import sys

import click


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead.")
def doctor(as_json: bool) -> None:
    """Check the managed install, the codexd command, the settings, the app-server
    (record, keeper, control socket and who listens on it), the updater and its
    sources, reboot persistence, disk space, recent errors in the logs, the boot id and
    the clock. Prints one line per check (ok, warning or fail) with what to do under
    each one that is not ok, and the overall verdict last.

    With --json, one object in the shape of codex's doctor: schemaVersion, generatedAt,
    overallStatus and checks keyed by id, each with id, category, status, summary,
    details, remediation and durationMs. Like status, it takes no lock, changes
    nothing and uses no network (it runs `npm --version` for an npm codex source).
    Exits 1 when a check fails, else 0."""
    from supervisor.doctor import run_doctor
    from supervisor.doctor_checks import CheckStatus
    from supervisor.paths import HomePaths, resolve_home

    # Not `home_paths()`: a home that is not ours is the home check's to report.
    report = run_doctor(HomePaths(resolve_home()))
    if as_json:
        click.echo(json.dumps(report.to_json()))
    else:
        from supervisor.doctor_render import print_doctor

        print_doctor(report)
    if report.overall is CheckStatus.FAIL:
        sys.exit(1)
