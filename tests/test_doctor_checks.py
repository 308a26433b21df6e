"""`codexd doctor`'s judgements of the home, the install, the settings and the system:
a table per check (every input row and the verdict it must give), the parsers behind
the facts, and the lines people read."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from supervisor.doctor_checks import (
    CheckStatus,
    Verdict,
    check_clock,
    check_codexd_command,
    check_disk,
    check_home,
    check_managed_install,
    check_persistence,
    check_settings,
    worst,
)
from supervisor.doctor_facts import (
    ClockFacts,
    CommandFacts,
    DirCheck,
    FrontParts,
    InstallFacts,
    front_parts,
    served_home,
)
from supervisor.front import CodexdPart, CodexPart, Release, render_bin_command, render_front
from supervisor.persistence import NOWHERE_TO_PERSIST
from supervisor.private_dir import HOME, STATE_DIR, DirFacts
from supervisor.standalone import DiskUsage
from supervisor.status_facts import DiskSection
from supervisor.status_report import ReleaseSection, SettingsSection

OK, WARNING, FAIL = CheckStatus.OK, CheckStatus.WARNING, CheckStatus.FAIL
UID = 1000
GIB = 1024**3


def judged(verdict: Verdict, status: CheckStatus, *words: str) -> None:
    """The verdict has `status`, and each word is in its summary or remediation."""
    text = f"{verdict.summary} | {verdict.remediation}"
    assert verdict.status is status, text
    for word in words:
        assert word in text, f"{word!r} not in {text!r}"
    if status is not OK:
        assert verdict.remediation is None or "\n" not in verdict.remediation


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], OK),
        ([OK, OK], OK),
        ([OK, WARNING, OK], WARNING),
        ([WARNING, FAIL, OK], FAIL),
        ([FAIL, WARNING], FAIL),
    ],
)
def test_the_overall_status_is_the_worst_check(
    statuses: list[CheckStatus], expected: CheckStatus
) -> None:
    assert worst(statuses) is expected


# -- the home ----------------------------------------------------------------------------


def directory(mode: int = 0o700, owner: int = UID, *, kind: str = "dir") -> DirFacts:
    return DirFacts(kind == "dir", kind == "symlink", owner, mode)


@pytest.mark.parametrize(
    ("home", "state", "expected", "words"),
    [
        (directory(0o755), directory(), OK, ["/h: yours"]),
        (directory(0o755), None, OK, []),  # nothing ran yet
        (None, None, FAIL, ["no codex home at /h", "install.sh"]),
        (directory(0o775), directory(), WARNING, ["chmod go-w /h"]),
        (directory(0o755), directory(0o755), WARNING, ["chmod go-w /h/app-server-daemon"]),
        (directory(0o755, owner=0), directory(), FAIL, ["owned by uid 0", "run codexd as"]),
        (directory(0o755), directory(owner=0), FAIL, ["state directory", "uid 0"]),
        (
            directory(kind="file"),
            None,
            FAIL,
            ["/h is a file, not a directory", "point CODEX_HOME at a directory", "rename"],
        ),
        (
            directory(),
            directory(kind="file"),
            FAIL,
            ["/h/app-server-daemon is a file", "remove or rename", "the next start makes"],
        ),
        (directory(), directory(kind="symlink"), FAIL, ["symlink"]),
    ],
)
def test_the_home_check(
    home: DirFacts | None, state: DirFacts | None, expected: CheckStatus, words: list[str]
) -> None:
    dirs = [
        DirCheck(Path("/h"), HOME, home),
        DirCheck(Path("/h/app-server-daemon"), STATE_DIR, state),
    ]
    judged(check_home(dirs, UID), expected, *words)


def test_a_file_in_place_of_a_directory_is_no_question_of_ownership() -> None:
    for home, state in [(directory(kind="file"), None), (directory(), directory(kind="file"))]:
        dirs = [
            DirCheck(Path("/h"), HOME, home),
            DirCheck(Path("/h/app-server-daemon"), STATE_DIR, state),
        ]
        verdict = check_home(dirs, UID)
        assert "owner" not in f"{verdict.summary} {verdict.remediation}"


def test_a_home_that_cannot_be_looked_at_fails() -> None:
    dirs = [DirCheck(Path("/h"), HOME, None, "cannot look at codex home /h: Permission denied")]
    judged(check_home(dirs, UID), FAIL, "Permission denied")


# -- the managed install ---------------------------------------------------------------

CODEX = CodexPart("0.169.0-aaaaaaaaaaaa", "bin/codex", "sha512-x", "0.169.0", "npm:latest")
CODEXD = CodexdPart("0.1.0-bbbbbbbbbbbb", "b" * 64, "0.1.0")
RELEASE = Release("/usr/bin/python3", Path("/h/packages"), CODEXD, CODEX)
FRONT = render_front(RELEASE)
PARTS = FrontParts(
    "/usr/bin/python3", "codexd/0.1.0-bbbbbbbbbbbb", "codex/0.169.0-aaaaaaaaaaaa/bin/codex"
)
MANAGED = ReleaseSection(
    "0.169.0-cccccccccccc", Path("/h/r/codex"), "0.169.0", "sha256:" + "c" * 64
)
MARKER = {"codex": CODEX.store, "codexd": CODEXD.store, "sha256": "c" * 64}
INSTALL = InstallFacts(
    Path("/h/packages/standalone/current/codex"),
    "releases/0.169.0-cccccccccccc",
    executable=True,
    marker=MARKER,
    front=PARTS,
)


@pytest.mark.parametrize(
    ("managed", "install", "expected", "words"),
    [
        ({}, {}, OK, ["release 0.169.0-cccccccccccc: codex 0.169.0, codexd 0.1.0"]),
        ({"path": None}, {"current_target": None}, FAIL, ["no managed release", "install.sh"]),
        ({"path": None}, {}, FAIL, ["releases/0.169.0-cccccccccccc, which is missing"]),
        ({}, {"executable": False}, FAIL, ["not executable", "install.sh"]),
        (
            {},
            {"missing_parts": ("/h/packages/codex/x/bin/codex",)},
            FAIL,
            ["incomplete", "bin/codex", "rollback"],
        ),
        ({"digest": "sha256:" + "d" * 64}, {}, WARNING, ["changed after install.sh"]),
        ({"version": None}, {}, WARNING, ["--version"]),
        ({}, {"front": None, "marker": {}}, OK, ["not a release install.sh wrote"]),
        (
            {},
            {"front": PARTS.replace(codex=None)},
            OK,
            ["the reference app-server", "codexd 0.1.0"],
        ),
    ],
)
def test_the_managed_install_check(
    managed: dict[str, Any], install: dict[str, Any], expected: CheckStatus, words: list[str]
) -> None:
    verdict = check_managed_install(replace(MANAGED, **managed), None, replace(INSTALL, **install))
    judged(verdict, expected, *words)


def test_the_managed_install_check_reports_versions_and_digests() -> None:
    previous = replace(MANAGED, release="0.166.0-eeeeeeeeeeee")
    details = check_managed_install(MANAGED, previous, INSTALL).details
    assert details["version"] == "0.169.0" and details["digest"] == MANAGED.digest
    assert details["codexdVersion"] == "0.1.0" and details["codexPayload"] == CODEX.store
    assert (
        details["codexBinary"] == PARTS.codex
        and details["previousRelease"] == "0.166.0-eeeeeeeeeeee"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (FRONT, PARTS),
        (render_front(replace(RELEASE, codex=None)), PARTS.replace(codex=None)),
        (
            render_front(replace(RELEASE, python="/opt/it's/python3")),
            PARTS.replace(python="/opt/it's/python3"),
        ),
        ('#!/bin/sh\nexec "/usr/bin/codexd" "$@"\n', None),  # a shim of the tests
        ("# The managed binary, written by install.sh\n", None),  # cut short
        ("\x7fELF...", None),  # a codex binary put there by hand
    ],
)
def test_front_parts_reads_what_a_front_runs(text: str, expected: FrontParts | None) -> None:
    assert front_parts(text) == expected


# -- the codexd command ----------------------------------------------------------------

EXPECTED_COMMAND = render_bin_command(Path("/h"))
COMMAND = CommandFacts(
    command=Path("/u/.local/bin/codexd"),
    text=EXPECTED_COMMAND,
    expected=EXPECTED_COMMAND,
    on_path=True,
    path_finds="/u/.local/bin/codexd",
    finds_this=True,
    running="/u/.local/bin/codexd",
    home=Path("/h"),
    serves=Path("/h"),
    serves_expected=EXPECTED_COMMAND,
)
MAIN_HOME = {  # the command serves the main home; doctor looks at a second one
    "home": Path("/second"),
    "expected": render_bin_command(Path("/second")),
}


@pytest.mark.parametrize(
    ("changes", "expected", "words"),
    [
        ({}, OK, ["/u/.local/bin/codexd, on PATH"]),
        ({"text": None}, WARNING, ["no codexd command", "install.sh", "CODEXD_BIN_DIR"]),
        ({"text": "#!/bin/sh\nexec mine\n"}, WARNING, ["not written by install.sh"]),
        # A second home: the command serves the main one, which is not for this check to
        # change (rerunning install.sh here would point `codexd` away from it).
        (MAIN_HOME, OK, ["serves /h", "CODEX_HOME=/second codexd", "CODEXD_BIN_DIR"]),
        ({**MAIN_HOME, "on_path": False}, WARNING, ["is not on PATH"]),
        (
            {**MAIN_HOME, "text": EXPECTED_COMMAND + "# older\n"},
            WARNING,
            ["older install.sh", "CODEX_HOME=/h sh install.sh"],
        ),
        # The command serves this home, but not as install.sh writes it now.
        ({"text": EXPECTED_COMMAND + "# older\n"}, WARNING, ["older install.sh", "this home"]),
        ({"text": EXPECTED_COMMAND + "# older\n", "serves": None}, WARNING, ["older install.sh"]),
        ({"on_path": False}, WARNING, ['export PATH="/u/.local/bin:$PATH"']),
        ({"path_finds": "/usr/bin/codexd", "finds_this": False}, WARNING, ["/usr/bin/codexd"]),
    ],
)
def test_the_codexd_command_check(
    changes: dict[str, Any], expected: CheckStatus, words: list[str]
) -> None:
    verdict = check_codexd_command(replace(COMMAND, **changes))
    judged(verdict, expected, *words)
    assert "CODEX_HOME=/second sh install.sh" not in str(verdict.remediation)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (render_bin_command(Path("/h")), Path("/h")),
        (render_bin_command(Path("/a b/it's")), Path("/a b/it's")),
        ("#!/bin/sh\nexec mine\n", None),
        (None, None),
    ],
)
def test_served_home(text: str | None, expected: Path | None) -> None:
    assert served_home(text) == expected


# -- settings, persistence, disk, logs, clock --------------------------------------------

SETTINGS = Path("/h/app-server-daemon/settings.json")


@pytest.mark.parametrize(
    ("settings", "expected", "words"),
    [
        (
            SettingsSection(SETTINGS, True, auto_update_enabled=None),
            OK,
            ["remote control on, automatic updates on"],
        ),
        (
            SettingsSection(SETTINGS, False, auto_update_enabled=False),
            OK,
            ["automatic updates off"],
        ),
        (
            SettingsSection(SETTINGS, None, f"{SETTINGS}: not JSON"),
            FAIL,
            ["not JSON", f"fix or remove {SETTINGS}"],
        ),
    ],
)
def test_the_settings_check(
    settings: SettingsSection, expected: CheckStatus, words: list[str]
) -> None:
    judged(check_settings(settings), expected, *words)


@pytest.mark.parametrize(
    ("persistence", "remote_control", "blocked", "cannot", "expected", "words"),
    [
        ("systemd", False, None, None, OK, ["systemd user unit"]),
        ("cron", False, None, None, OK, ["@reboot"]),
        (None, False, None, None, WARNING, ["`codexd bootstrap --persist`"]),
        (None, True, None, None, WARNING, ["`codexd bootstrap --remote-control --persist`"]),
        (None, True, "install first", None, WARNING, ["install first"]),
        # Nothing here could persist: what is missing, not a bootstrap that would fail.
        (None, True, None, NOWHERE_TO_PERSIST, WARNING, ["loginctl enable-linger"]),
        (None, True, "install first", NOWHERE_TO_PERSIST, WARNING, ["install cron"]),
        ("cron", False, None, NOWHERE_TO_PERSIST, OK, ["@reboot"]),
    ],
)
def test_the_persistence_check(
    persistence: str | None,
    remote_control: bool,
    blocked: str | None,
    cannot: str | None,
    expected: CheckStatus,
    words: list[str],
) -> None:
    verdict = check_persistence(persistence, remote_control, blocked, cannot)
    judged(verdict, expected, *words)
    if cannot is not None and persistence is None:
        assert verdict.remediation == NOWHERE_TO_PERSIST


USAGE = DiskUsage(releases=1024, codex=400 * 1024**2, codexd=20 * 1024**2)


@pytest.mark.parametrize(
    ("free", "error", "expected", "words"),
    [
        (50 * GIB, None, OK, ["50.0 GiB free", "takes 420.0 MiB"]),
        (GIB - 1, None, WARNING, ["500 MB", "Recover from a full disk"]),
        (10 * 1024**2, None, FAIL, ["10.0 MiB free", "cannot be written", "full disk"]),
        (None, "/h: Permission denied", WARNING, ["Permission denied"]),
    ],
)
def test_the_disk_check(
    free: int | None, error: str | None, expected: CheckStatus, words: list[str]
) -> None:
    judged(check_disk(DiskSection(Path("/h"), free, 100 * GIB, USAGE, error)), expected, *words)


def test_the_disk_check_without_facts_warns() -> None:
    judged(check_disk(None), WARNING)


NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("changes", "expected", "words"),
    [
        ({}, OK, ["boot id b00t"]),
        ({"newest_mtime": NOW + 3}, OK, []),  # within the slack
        ({"newest_mtime": NOW + 3600}, WARNING, ["the clock is behind", "1h", "timedatectl"]),
        (
            {"boot_id": None, "boot_id_error": "cannot read boot_id"},
            WARNING,
            ["cannot read boot_id"],
        ),
        ({"newest_file": None, "newest_mtime": None}, OK, []),
    ],
)
def test_the_clock_check(changes: dict[str, Any], expected: CheckStatus, words: list[str]) -> None:
    facts = ClockFacts(NOW, "b00t", None, Path("/h/s/app-server.pid"), NOW - 60)
    judged(check_clock(replace(facts, **changes)), expected, *words)
