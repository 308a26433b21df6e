"""The update pass as a typed record, and the judgements an update makes: what the
pass came to, whether the app-server is behind, restart or defer, re-exec or not."""

from __future__ import annotations

from typing import Any

import pytest

from supervisor.update_pass import (
    InstallerResult,
    PassOutcome,
    PassRecord,
    RefreshOutcome,
    Trigger,
    pass_from_json,
    pass_outcome,
)
from supervisor.updates import (
    Deferral,
    Image,
    RefreshAction,
    app_server_is_behind,
    refresh_action,
    should_reexec_updater,
)

OK, R = InstallerResult.OK, RefreshOutcome


def record(**fields: Any) -> PassRecord:
    return PassRecord(number=1, started_at="2026-01-01T00:00:00+00:00", **fields)


@pytest.mark.parametrize(
    ("last", "outcome"),
    [
        (None, PassOutcome.NO_PASS_YET),
        (record(installer=OK, error="boom"), PassOutcome.FAILED),
        (record(installer=InstallerResult.FAILED), PassOutcome.INSTALLER_FAILED),
        (record(installer=InstallerResult.TIMED_OUT), PassOutcome.INSTALLER_FAILED),
        (record(installer=InstallerResult.NO_SOURCE), PassOutcome.INSTALLER_FAILED),
        (record(), PassOutcome.INSTALLER_FAILED),  # it never got as far as the installer
        (record(installer=OK, app_server=R.ROLLED_BACK), PassOutcome.ROLLED_BACK),
        (record(installer=OK, app_server=R.DEFERRED), PassOutcome.DEFERRED),
        (record(trigger=Trigger.RETRY, app_server=R.DEFERRED), PassOutcome.DEFERRED),
        (record(trigger=Trigger.RETRY, app_server=R.RESTARTED), PassOutcome.UPDATED),
        (record(installer=OK, app_server=R.RESTARTED, reexec=True), PassOutcome.UPDATED),
        (record(installer=OK, app_server=R.NOT_RUNNING, reexec=True), PassOutcome.UPDATED),
        (record(installer=OK, app_server=R.ALREADY_CURRENT), PassOutcome.UP_TO_DATE),
        (record(installer=OK, app_server=R.NOT_RUNNING), PassOutcome.UP_TO_DATE),
    ],
)
def test_pass_outcome(last: PassRecord | None, outcome: PassOutcome) -> None:
    assert pass_outcome(last) is outcome


def test_a_record_survives_its_json() -> None:
    full = record(
        trigger=Trigger.COMMAND,
        installer=InstallerResult.FAILED,
        installer_detail="exit status 2",
        managed_binary="/h/packages/standalone/releases/r/codex",
        managed_digest="sha256:ab",
        app_server=R.DEFERRED,
        busy_processes=3,
        deferred_since="2026-01-01T00:00:05+00:00",
        reexec=True,
        error="boom",
        pid=42,
        finished_at="2026-01-01T00:00:09+00:00",
        next_pass_at="2026-01-01T01:00:09+00:00",
    )
    assert pass_from_json(full.to_json()) == full
    assert pass_from_json(record().to_json()) == record()


@pytest.mark.parametrize(
    ("value", "installer"),
    [
        ({"installer": "ok"}, InstallerResult.OK),
        ({"installer": "failed with exit status 3"}, InstallerResult.FAILED),  # older passes
        ({"installer": "timed out"}, InstallerResult.TIMED_OUT),
        ({"installer": "no release source"}, InstallerResult.NO_SOURCE),
        ({}, None),
    ],
)
def test_older_pass_files_read_back(value: dict[str, Any], installer: InstallerResult) -> None:
    assert pass_from_json({"pass": 2, "startedAt": "x", **value}).installer is installer


def test_a_corrupt_pass_file_reads_as_far_as_it_can() -> None:
    read = pass_from_json({"pass": "two", "appServer": "exploded", "reexec": "yes"})
    assert read.number == 0 and read.app_server is None and read.reexec is False


# -- the app-server's refresh ------------------------------------------------------------

NEW = Image("sha256:new", "0.2.0")


@pytest.mark.parametrize(
    ("running", "behind"),
    [
        (Image("sha256:new", "0.2.0"), False),
        (Image("sha256:old", "0.2.0"), True),  # another image, whatever its version
        (Image("sha256:new", "0.1.0"), True),  # same image, older version recorded
        (Image("sha256:new", None), True),  # it never said its version
    ],
)
def test_app_server_is_behind(running: Image, behind: bool) -> None:
    assert app_server_is_behind(running, NEW) is behind


def test_app_server_is_behind_without_a_managed_version() -> None:
    assert app_server_is_behind(Image("sha256:new", "0.1.0"), Image("sha256:new", None)) is False


OLD = Image("sha256:old", "0.1.0")
NEVER, WAITED, TOO_LONG = None, 100.0, 3600.0


@pytest.mark.parametrize(
    ("running", "busy", "waited", "force", "action"),
    [
        (None, 0, NEVER, False, RefreshAction.NONE),  # nothing runs
        (NEW, 5, NEVER, True, RefreshAction.NONE),  # already current
        (OLD, 0, NEVER, False, RefreshAction.RESTART),  # idle: at once
        (OLD, 2, NEVER, False, RefreshAction.DEFER),  # busy: wait
        (OLD, 2, WAITED, False, RefreshAction.DEFER),
        (OLD, 2, TOO_LONG, False, RefreshAction.RESTART),  # waited the longest it may
        (OLD, 2, NEVER, True, RefreshAction.RESTART),  # update --yes
        (OLD, 0, WAITED, False, RefreshAction.RESTART),  # became idle
    ],
)
def test_refresh_action(
    running: Image | None, busy: int, waited: float | None, force: bool, action: RefreshAction
) -> None:
    assert refresh_action(running, NEW, busy, Deferral(3600.0, waited), force) is action


@pytest.mark.parametrize(
    ("updater", "outcome", "reexec"),
    [
        ("sha256:new", R.RESTARTED, False),  # already the managed image
        ("sha256:old", R.RESTARTED, True),
        ("sha256:old", R.ALREADY_CURRENT, True),
        ("sha256:old", R.NOT_RUNNING, True),
        ("sha256:old", R.ROLLED_BACK, False),  # that binary is bad
        ("sha256:old", R.DEFERRED, False),  # the app-server still runs the old one
    ],
)
def test_should_reexec_updater(updater: str, outcome: RefreshOutcome, reexec: bool) -> None:
    assert should_reexec_updater(updater, "sha256:new", outcome) is reexec
