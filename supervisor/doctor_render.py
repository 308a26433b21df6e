"""`codexd doctor` for people: one line per check with its mark (✓ ! ✗ on a terminal,
[ok] [!!] [XX] elsewhere), what to do under any that is not ok, the verdict last."""

from __future__ import annotations

import os
import sys
from collections import Counter

from supervisor.doctor import DoctorReport
from supervisor.doctor_checks import CheckStatus

UNICODE_MARKS = {CheckStatus.OK: "✓", CheckStatus.WARNING: "!", CheckStatus.FAIL: "✗"}
ASCII_MARKS = {CheckStatus.OK: "[ok]", CheckStatus.WARNING: "[!!]", CheckStatus.FAIL: "[XX]"}
_COLOURS = {CheckStatus.OK: "32", CheckStatus.WARNING: "33", CheckStatus.FAIL: "1;31"}


def _paint(text: str, status: CheckStatus, colour: bool) -> str:
    return f"\033[{_COLOURS[status]}m{text}\033[0m" if colour else text


def doctor_lines(report: DoctorReport, unicode: bool, colour: bool = False) -> list[str]:
    marks = UNICODE_MARKS if unicode else ASCII_MARKS
    arrow = "→" if unicode else "->"
    width = max((len(result.id) for result in report.results), default=0)
    lines = [f"codexd doctor for {report.home}"]
    for result in report.results:
        verdict = result.verdict
        mark = marks[verdict.status]
        lines.append(
            f"{_paint(mark, verdict.status, colour)} {result.id:<{width}}  {verdict.summary}"
        )
        if verdict.remediation is not None and verdict.status is not CheckStatus.OK:
            lines.append(f"{' ' * (len(mark) + width + 3)}{arrow} {verdict.remediation}")
    counts = Counter(result.verdict.status for result in report.results)
    tally = ", ".join(
        f"{counts[status]} {status.value}" for status in CheckStatus if counts[status]
    )
    overall = report.overall
    lines.append(f"overall: {_paint(overall.value, overall, colour)} ({tally})")
    return lines


def fancy_output(stream_is_terminal: bool, encoding: str | None) -> bool:
    """Marks and arrows outside ASCII only on a terminal that can show them."""
    return stream_is_terminal and (encoding or "").lower().replace("-", "") == "utf8"


def print_doctor(report: DoctorReport) -> None:
    terminal = sys.stdout.isatty()
    unicode = fancy_output(terminal, sys.stdout.encoding)
    colour = terminal and not os.environ.get("NO_COLOR")
    print("\n".join(doctor_lines(report, unicode, colour)), flush=True)
