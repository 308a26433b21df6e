"""What `codexd doctor` makes of the worker logs: the recent lines that report an
error, with the terminal escape codes codex writes taken off, less the messages codex
reports as errors but has already dealt with itself.

`handled_by_codex` and `error_lines` are pure (with `escapes.strip_escapes`), each
pinned by a table in tests/test_doctor_logs.py; `scan_log` reads, `check_logs` judges.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from supervisor.doctor_checks import Verdict, ok, warning
from supervisor.escapes import strip_escapes
from supervisor.log_tail import tail_file

LOG_LINES_SCANNED = 200
SUMMARY_LINE_CHARS = 160

_REPORTS_ERROR = re.compile(r"ERROR|Traceback|\b(?i:cannot|failed)\b")


@dataclass(frozen=True)
class HandledMessage:
    """A message codex logs as an error although it has dealt with it: `says` is
    codex's own words for what it did instead (so a different message never matches)."""

    says: str
    why: str  # why it needs nothing from the user


# The one place such messages are listed. A message belongs here only when codex
# itself says, in the same line, how it carried on; anything else stays an error.
CODEX_HANDLED_MESSAGES = (
    HandledMessage(
        says="Codex will use the bundled bubblewrap",
        why="codex logs at every start, on a host without bubblewrap on PATH, that it "
        "sandboxes with the bubblewrap it ships; installing bubblewrap only quiets it",
    ),
)


def handled_by_codex(line: str) -> HandledMessage | None:
    """The message codex says it dealt with that `line` is, if any."""
    return next((known for known in CODEX_HANDLED_MESSAGES if known.says in line), None)


def error_lines(lines: list[str]) -> tuple[list[str], list[str]]:
    """The lines that report an error (ERROR, a Traceback, `cannot`, `failed`), escape
    codes taken off: those codex did not deal with, and those it says it did."""
    reported = [line for line in map(strip_escapes, lines) if _REPORTS_ERROR.search(line)]
    errors = [line for line in reported if handled_by_codex(line) is None]
    handled = [line for line in reported if handled_by_codex(line) is not None]
    return errors, handled


@dataclass(frozen=True)
class LogScan:
    name: str  # as `codexd logs` takes it
    path: Path
    lines: int  # lines looked at (the last LOG_LINES_SCANNED)
    errors: int
    latest: str | None  # the last error line, escape codes taken off
    error: str | None = None  # the log could not be read
    handled: int = 0  # error lines codex says it dealt with (not counted in `errors`)


def scan_log(name: str, path: Path) -> LogScan:
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return LogScan(name, path, 0, 0, None, f"{path} is not a regular file")
        raw = tail_file(path, LOG_LINES_SCANNED).decode(errors="replace").splitlines()
    except FileNotFoundError:
        return LogScan(name, path, 0, 0, None)
    except OSError as error:
        return LogScan(name, path, 0, 0, None, f"cannot read {path}: {error.strerror}")
    errors, handled = error_lines(raw)
    latest = errors[-1].strip() if errors else None
    return LogScan(name, path, len(raw), len(errors), latest, None, len(handled))


def _cut(line: str) -> str:
    return line if len(line) <= SUMMARY_LINE_CHARS else line[: SUMMARY_LINE_CHARS - 3] + "..."


def check_logs(scans: list[LogScan]) -> Verdict:
    """Errors among the last lines of each worker log."""
    details = {
        scan.name: {
            "path": str(scan.path),
            "linesScanned": scan.lines,
            "errorLines": scan.errors,
            "handledByCodex": scan.handled,
            "latest": scan.latest,
            **({"error": scan.error} if scan.error else {}),
        }
        for scan in scans
    }
    noisy = [scan for scan in scans if scan.errors]
    unreadable = [scan for scan in scans if scan.error]
    if noisy or unreadable:
        found = [
            f"{scan.path.name}: {scan.errors} of the last {scan.lines} lines report errors, "
            f"the latest: {_cut(scan.latest or '')}"
            for scan in noisy
        ]
        found += [scan.error for scan in unreadable if scan.error]
        first = (noisy or unreadable)[0]
        return warning(
            "; ".join(found), f"`codexd logs {first.name} -n {LOG_LINES_SCANNED}`", details
        )
    names = ", ".join(scan.path.name for scan in scans)
    return ok(f"no errors in the last {LOG_LINES_SCANNED} lines of {names}", details)
