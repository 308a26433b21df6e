"""What the updater decides after each installer pass, and the app-server refresh it
carries out under daemon.lock."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class Image:
    """An executable image: its content digest and the version it reports."""

    digest: str
    version: str | None


class RefreshOutcome(Enum):
    NOT_RUNNING = "notRunning"  # no managed app-server: nothing to refresh
    ALREADY_CURRENT = "alreadyCurrent"  # it runs the managed binary's image already
    RESTARTED = "restarted"  # it was restarted onto the managed binary and answered
    ROLLED_BACK = "rolledBack"  # the new release did not answer; the previous one runs


def app_server_is_behind(running: Image, managed: Image) -> bool:
    """Older image or older version: either is reason to restart onto the managed binary."""
    if running.digest != managed.digest:
        return True
    return managed.version is not None and running.version != managed.version


def should_reexec_updater(
    updater_digest: str, managed_digest: str, outcome: RefreshOutcome
) -> bool:
    """Replace the updater's own image only once the app-server is safely on the managed
    binary (or none runs): never after a rollback, which means that binary is bad."""
    if updater_digest == managed_digest:
        return False
    return outcome in (
        RefreshOutcome.NOT_RUNNING,
        RefreshOutcome.ALREADY_CURRENT,
        RefreshOutcome.RESTARTED,
    )
