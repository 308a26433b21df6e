"""`codexd doctor`'s reading of the worker logs: escape codes taken off, the lines that
report an error, the messages codex says it dealt with, and the verdict."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from supervisor.doctor_checks import CheckStatus
from supervisor.doctor_logs import (
    CODEX_HANDLED_MESSAGES,
    LogScan,
    check_logs,
    error_lines,
    handled_by_codex,
    scan_log,
)
from supervisor.escapes import strip_escapes
from tests.test_doctor_checks import judged

OK, WARNING = CheckStatus.OK, CheckStatus.WARNING
# What codex 0.169.0 logs at every start on a host without bubblewrap on PATH, as it
# writes it into app-server.log: coloured, at ERROR, though it carries on.
CODEX_BUBBLEWRAP_LINE = (
    "\x1b[2m2026-11-26T00:32:48.593117Z\x1b[0m \x1b[31mERROR\x1b[0m "
    "\x1b[2mcodex_app_server\x1b[0m\x1b[2m:\x1b[0m Codex could not find bubblewrap on PATH. "
    "Install bubblewrap with your OS package manager. See the sandbox prerequisites: "
    "https://developers.openai.com/codex/concepts/sandboxing#prerequisites. "
    "Codex will use the bundled bubblewrap in the meantime."
)
BUBBLEWRAP_TEXT = (
    "2026-11-26T00:32:48.593117Z ERROR codex_app_server: Codex could not find bubblewrap on "
    "PATH. Install bubblewrap with your OS package manager. See the sandbox prerequisites: "
    "https://developers.openai.com/codex/concepts/sandboxing#prerequisites. "
    "Codex will use the bundled bubblewrap in the meantime."
)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("plain text, no codes", "plain text, no codes"),
        (CODEX_BUBBLEWRAP_LINE, BUBBLEWRAP_TEXT),
        ("\x1b[1;31mbold red\x1b[m and \x1b[38;5;208morange\x1b[39m", "bold red and orange"),
        ("\x1b[?25lcursor hidden\x1b[?25h", "cursor hidden"),  # private parameters
        ("\x1b[2Kerased line", "erased line"),
        ("\x1b]0;a title\x07after", "after"),  # OSC ended by BEL
        ("\x1b]8;;https://example.com\x1b\\link\x1b]8;;\x1b\\", "link"),  # OSC ended by ST
        ("before\x1b]0;never ended", "before"),  # OSC to the end of the line
        ("\x1bcreset", "reset"),  # ESC c
        ("\x1b(Bcharset \x1b7saved", "charset saved"),  # ESC ( B, ESC 7
        ("half a CSI \x1b[", "half a CSI "),
        ("a stray escape at the end\x1b", "a stray escape at the end"),
        ("\x9b31mone-byte CSI", "31mone-byte CSI"),  # its introducer goes: nothing recolours
        ("tab\tstays, carriage\r goes", "tab\tstays, carriage goes"),
        ("unicode ✓ → stays", "unicode ✓ → stays"),
    ],
)
def test_escape_codes_are_taken_off(line: str, expected: str) -> None:
    assert strip_escapes(line) == expected


@pytest.mark.parametrize(
    ("line", "handled"),
    [
        (BUBBLEWRAP_TEXT, True),
        ("ERROR codex_app_server: Codex will use the bundled bubblewrap in the meantime.", True),
        # Without codex saying how it carried on, the same complaint is an error.
        ("ERROR codex_app_server: Codex could not find bubblewrap on PATH.", False),
        ("ERROR codex_app_server: bubblewrap failed: permission denied", False),
        ("ERROR codex_core: boom", False),
    ],
)
def test_only_messages_codex_says_it_dealt_with_are_handled(line: str, handled: bool) -> None:
    assert (handled_by_codex(line) is not None) is handled


def test_every_handled_message_says_why_it_needs_nothing() -> None:
    for known in CODEX_HANDLED_MESSAGES:
        assert known.says and len(known.why) > 40
        assert known.says == strip_escapes(known.says)


@pytest.mark.parametrize(
    ("lines", "expected", "handled"),
    [
        (["launched app-server pid 7", "app-server pid 7 answers"], [], []),
        (["ERROR codex: boom"], ["ERROR codex: boom"], []),
        (
            ["Traceback (most recent call last):", "  File x"],
            ["Traceback (most recent call last):"],
            [],
        ),
        (
            ["installer failed: exit status 2", "Failed to refresh"],
            ["installer failed: exit status 2", "Failed to refresh"],
            [],
        ),
        (["cannot bind: in use", "Cannot read"], ["cannot bind: in use", "Cannot read"], []),
        (["an error", "3 failures within 120 s", "error: none", "unfailed"], [], []),
        ([CODEX_BUBBLEWRAP_LINE], [], [BUBBLEWRAP_TEXT]),
        (
            [CODEX_BUBBLEWRAP_LINE, "\x1b[31mERROR\x1b[0m codex_core: boom"],
            ["ERROR codex_core: boom"],
            [BUBBLEWRAP_TEXT],
        ),
        # An escape code inside the word still leaves an ERROR line an error.
        (["\x1b[31mERR\x1b[1mOR\x1b[0m x"], ["ERROR x"], []),
    ],
)
def test_error_lines_are_those_that_report_an_error(
    lines: list[str], expected: list[str], handled: list[str]
) -> None:
    assert error_lines(lines) == (expected, handled)


def test_a_scan_counts_handled_lines_apart_and_quotes_no_escape_codes(tmp_path: Path) -> None:
    log = tmp_path / "app-server.log"
    log.write_text(
        f"{CODEX_BUBBLEWRAP_LINE}\n\x1b[31mERROR\x1b[0m codex_core: boom\n{CODEX_BUBBLEWRAP_LINE}\n"
    )
    scan = scan_log("app-server", log)
    assert (scan.lines, scan.errors, scan.handled) == (3, 1, 2)
    assert scan.latest == "ERROR codex_core: boom"


APP_LOG = LogScan("app-server", Path("/h/s/app-server.log"), 120, 0, None)
UPDATER_LOG = LogScan("updater", Path("/h/s/app-server-updater.log"), 40, 0, None)


@pytest.mark.parametrize(
    ("app", "updater", "expected", "words"),
    [
        ({}, {}, OK, ["no errors in the last 200 lines of app-server.log, app-server-updater.log"]),
        ({"lines": 0}, {"lines": 0}, OK, []),  # no logs yet
        ({"handled": 3}, {}, OK, ["no errors"]),  # only what codex dealt with
        (
            {},
            {"errors": 2, "latest": "installer failed: exit 1"},
            WARNING,
            [
                "app-server-updater.log: 2 of the last 40",
                "installer failed: exit 1",
                "`codexd logs updater -n 200`",
            ],
        ),
        (
            {"errors": 1, "latest": "ERROR x"},
            {"errors": 1, "latest": "cannot y"},
            WARNING,
            ["ERROR x", "cannot y", "`codexd logs app-server -n 200`"],
        ),
        (
            {"errors": 1, "latest": "ERROR x", "handled": 1},
            {},
            WARNING,
            ["app-server.log: 1 of the last 120", "ERROR x"],
        ),
        (
            {"error": "/h/s/app-server.log is not a regular file"},
            {},
            WARNING,
            ["not a regular file"],
        ),
    ],
)
def test_the_logs_check(
    app: dict[str, Any], updater: dict[str, Any], expected: CheckStatus, words: list[str]
) -> None:
    judged(check_logs([replace(APP_LOG, **app), replace(UPDATER_LOG, **updater)]), expected, *words)


def test_the_logs_check_details_count_handled_lines() -> None:
    verdict = check_logs([replace(APP_LOG, handled=2), UPDATER_LOG])
    assert verdict.details["app-server"]["handledByCodex"] == 2
    assert verdict.details["app-server"]["errorLines"] == 0
