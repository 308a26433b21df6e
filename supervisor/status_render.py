"""`codexd status` for people: the report as titled rows (pure), printed with rich, in
colour on a terminal and as plain text into a pipe."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from supervisor.decisions import WorkerState
from supervisor.procfs import count_processes
from supervisor.status_facts import LOW_DISK_WARNING_BYTES, DiskSection
from supervisor.status_report import StatusReport, WorkerSection
from supervisor.timestamps import UTC, parse_timestamp
from supervisor.update_pass import PassOutcome, PassRecord

if TYPE_CHECKING:
    from rich.console import Console


class Tone(Enum):
    PLAIN = "plain"
    GOOD = "good"
    WARN = "warn"
    BAD = "bad"


@dataclass(frozen=True)
class Row:
    label: str
    value: str
    tone: Tone = Tone.PLAIN


@dataclass(frozen=True)
class Section:
    title: str
    rows: list[Row]


_STATE_TEXTS = {
    WorkerState.RUNNING: ("running", Tone.GOOD),
    WorkerState.STARTING: ("starting", Tone.WARN),
    WorkerState.NOT_RUNNING: ("not running", Tone.WARN),
    WorkerState.STALE: ("not running (stale record)", Tone.WARN),
    WorkerState.UNREADABLE: ("unreadable", Tone.BAD),
    WorkerState.FAILED: ("failed: `codexd start` starts it afresh", Tone.BAD),
}
_UNMANAGED_TEXT = ("not managed by codexd (something else answers)", Tone.BAD)
_OUTCOME_TONES = {
    PassOutcome.NO_PASS_YET: Tone.PLAIN,
    PassOutcome.FAILED: Tone.BAD,
    PassOutcome.INSTALLER_FAILED: Tone.BAD,
    PassOutcome.ROLLED_BACK: Tone.WARN,
    PassOutcome.DEFERRED: Tone.WARN,
    PassOutcome.UPDATED: Tone.GOOD,
    PassOutcome.UP_TO_DATE: Tone.GOOD,
}
_STYLES = {Tone.PLAIN: "", Tone.GOOD: "green", Tone.WARN: "yellow", Tone.BAD: "bold red"}


# -- formatting --------------------------------------------------------------------


def format_duration(seconds: float) -> str:
    """`3d 4h`, `2h 5m`, `7m 3s`, `42s`: the two largest units."""
    seconds = max(0, int(seconds))
    units = [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)]
    parts: list[str] = []
    for name, size in units:
        count, seconds = divmod(seconds, size)
        if count or parts:
            parts.append(f"{count}{name}")
        if len(parts) == 2:
            break
    return " ".join(parts) or "0s"


def format_relative(moment: datetime.datetime | None, now: datetime.datetime) -> str:
    if moment is None:
        return "-"
    delta = (moment - now).total_seconds()
    when = moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    if abs(delta) < 1:
        return f"{when} (now)"
    if delta > 0:
        return f"{when} (in {format_duration(delta)})"
    return f"{when} ({format_duration(-delta)} ago)"


def format_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def pass_summary(last_pass: PassRecord | None, outcome: PassOutcome) -> str:
    """One line: the outcome and the detail that explains it."""
    if last_pass is None:
        return outcome.value
    if outcome is PassOutcome.FAILED:
        return f"{outcome.value}: {last_pass.error}"
    if outcome is PassOutcome.INSTALLER_FAILED:
        installer = "not run" if last_pass.installer is None else last_pass.installer.value
        detail = f" ({last_pass.installer_detail})" if last_pass.installer_detail else ""
        return f"{outcome.value}: installer {installer}{detail}"
    if outcome is PassOutcome.DEFERRED:
        return (
            f"update deferred: app-server busy ({count_processes(last_pass.busy_processes or 0)}) "
            f"since {last_pass.deferred_since}"
        )
    app_server = "-" if last_pass.app_server is None else last_pass.app_server.value
    detail = f"app-server {app_server}"
    if last_pass.reexec:
        detail += ", updater re-executed"
    return f"{outcome.value} ({detail})"


def _short_digest(digest: str | None) -> str:
    return "-" if digest is None else digest.removeprefix("sha256:")[:12]


# -- sections ----------------------------------------------------------------------


def _worker_rows(
    worker: WorkerSection, now: datetime.datetime, unmanaged: bool = False
) -> list[Row]:
    text, tone = _UNMANAGED_TEXT if unmanaged else _STATE_TEXTS[worker.state]
    rows = [Row("status", text, tone)]
    if worker.error is not None:
        rows.append(Row("error", worker.error, Tone.BAD))
    if worker.record is not None and worker.started is not None:
        rows.append(Row("pid", str(worker.record.pid)))
        rows.append(Row("uptime", format_duration((now - worker.started).total_seconds())))
    return rows


_KEEPER_TONES = {"running": Tone.GOOD, "failed": Tone.BAD, "stopped": Tone.PLAIN}


def _app_server_rows(report: StatusReport) -> list[Row]:
    app, now = report.app_server, report.now
    if app.worker.state is WorkerState.RUNNING and app.keeper is not None:
        status = app.status
        rows = [Row("status", status, _KEEPER_TONES.get(status, Tone.WARN))]
    else:
        rows = [
            row for row in _worker_rows(app.worker, now, app.unmanaged) if row.label == "status"
        ]
    child, keeper = app.child, app.keeper
    if child is not None:
        started = datetime.datetime.fromtimestamp(child.start_time, UTC)
        rows += [
            Row("pid", str(child.pid)),
            Row("uptime", format_duration((now - started).total_seconds())),
        ]
    if app.worker.record is not None:
        record = app.worker.record
        rows += [
            Row("keeper", f"pid {record.pid}, up {_uptime(app.worker, now)}"),
            Row("version", app.version or "-"),
            Row("release", app.worker.release or record.executable),
            Row("digest", _short_digest(record.executable_digest)),
        ]
        if app.busy_processes:
            rows.append(Row("busy", f"{count_processes(app.busy_processes)} below the app-server"))
    if keeper is not None:
        rows.append(Row("restarts", str(keeper.restarts)))
        if keeper.last_exit is not None:
            last = keeper.last_exit
            moment = format_relative(parse_timestamp(last.at), now)
            rows.append(Row("last exit", f"{last.description} ({last.reason}), {moment}"))
        if keeper.retry_at is not None:
            moment = format_relative(parse_timestamp(keeper.retry_at), now)
            rows.append(Row("next start", f"{moment} (`codexd start` starts it now)", Tone.WARN))
        if keeper.failure is not None:
            rows.append(Row("failure", keeper.failure, Tone.BAD))
    if app.last_stop is not None:
        stop = app.last_stop
        rows.append(
            Row("last stop", f"{stop.what}, {format_relative(parse_timestamp(stop.at), now)}")
        )
    remote = app.remote_control_enabled
    rows += [
        Row("remote control", "-" if remote is None else ("on" if remote else "off")),
        Row("socket", str(app.socket_path)),
        Row("answering", "yes" if app.answering_version is not None else "no"),
    ]
    if report.settings.error is not None:
        rows.append(Row("settings", report.settings.error, Tone.BAD))
    for holder in report.operation_holders:
        rows.append(Row("daemon.lock", f"held by {holder.describe()}", Tone.WARN))
    return rows


def _uptime(worker: WorkerSection, now: datetime.datetime) -> str:
    started = worker.started
    return "-" if started is None else format_duration((now - started).total_seconds())


def _updater_rows(report: StatusReport) -> list[Row]:
    updater, now = report.updater, report.now
    last = "none yet"
    if updater.last_pass is not None:
        finished = parse_timestamp(updater.last_pass.finished_at)
        last = f"#{updater.last_pass.number} {format_relative(finished, now)}"
    outcome_tone = Tone.PLAIN if updater.last_pass is None else _OUTCOME_TONES[updater.outcome]
    next_pass = (
        format_relative(updater.next_pass, now)
        if updater.next_pass
        else "- (the updater is not running)"
    )
    return [
        *_worker_rows(updater.worker, now),
        Row("last pass", last),
        Row("outcome", pass_summary(updater.last_pass, updater.outcome), outcome_tone),
        Row("next pass", next_pass),
    ]


def _release_rows(report: StatusReport) -> list[Row]:
    managed, previous = report.managed, report.previous
    installed = managed.path is not None
    return [
        Row(
            "managed",
            f"{managed.release or managed.path}" if installed else "not installed",
            Tone.PLAIN if installed else Tone.WARN,
        ),
        Row("version", managed.version or "-"),
        Row("digest", _short_digest(managed.digest)),
        Row("previous", "-" if previous is None else previous.release or "-"),
        *(
            Row("rolled back", f"{name}: not installed again until a newer release appears")
            for name in managed.rejected
        ),
        Row(
            "after reboot",
            report.persistence or "not persisted",
            Tone.PLAIN if report.persistence else Tone.WARN,
        ),
        *([] if report.disk is None else [disk_row(report.disk)]),
    ]


def disk_row(disk: DiskSection) -> Row:
    usage = disk.usage
    takes = (
        f"{format_size(usage.total)} (codex {format_size(usage.codex)}, "
        f"codexd {format_size(usage.codexd)}, releases {format_size(usage.releases)})"
    )
    if disk.free_bytes is None:
        return Row("disk", f"{takes}; free space unknown", Tone.WARN)
    low = disk.free_bytes < LOW_DISK_WARNING_BYTES
    return Row(
        "disk", f"{takes}; {format_size(disk.free_bytes)} free", Tone.WARN if low else Tone.PLAIN
    )


def _log_rows(report: StatusReport) -> list[Row]:
    rows = []
    for log in report.logs:
        if log.size is None:
            rows.append(Row(log.name, f"{log.path} (none yet)"))
            continue
        rotated = f", {len(log.rotated)} rotated" if log.rotated else ""
        rows.append(Row(log.name, f"{log.path} ({format_size(log.size)}{rotated})"))
    return rows


def status_sections(report: StatusReport) -> list[Section]:
    """The report as titled rows, in the order a person reads them; each section ends
    with its hints (what to run to fix what it shows)."""
    sections = [
        Section("app-server", _app_server_rows(report)),
        Section("updater", _updater_rows(report)),
        Section("release", _release_rows(report)),
        Section("logs", _log_rows(report)),
    ]
    hints = report.hints
    return [
        Section(
            section.title,
            section.rows
            + [
                Row("hint", hint.text, Tone.WARN) for hint in hints if hint.section == section.title
            ],
        )
        for section in sections
    ]


# -- printing ----------------------------------------------------------------------


_TRAILING_SPACES = re.compile(r" +((?:\x1b\[[0-9;]*m)*)$")


def print_status(report: StatusReport) -> None:
    # rich costs tens of milliseconds to import: only status and logs pay for it.
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal:
        # A pipe or a file: no colour (rich's own choice), no wrapping of long paths.
        console = Console(highlight=False, width=1000)
    with console.capture() as captured:
        _print_sections(console, report)
    # rich pads every cell to its column's width: no spaces at the ends of lines (before
    # a colour's reset, on a terminal).
    lines = (_TRAILING_SPACES.sub(r"\1", line) for line in captured.get().splitlines())
    print("\n".join(lines), flush=True)


def _print_sections(console: Console, report: StatusReport) -> None:
    from rich.table import Table
    from rich.text import Text

    console.print(Text(f"codexd status for {report.home}", style="bold"))
    for section in status_sections(report):
        table = Table.grid(padding=(0, 2))
        table.add_column(min_width=14, style="dim")
        table.add_column()
        for row in section.rows:
            table.add_row(Text(row.label), Text(row.value, style=_STYLES[row.tone]))
        console.print()
        console.print(Text(section.title, style="bold cyan"))
        console.print(table)
