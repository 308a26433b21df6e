"""What the updater decides after each installer pass, and the app-server refresh it
carries out under daemon.lock."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from supervisor.errors import DaemonError
from supervisor.standalone import (
    current_release,
    previous_release,
    reject_release,
    switch_current,
)

if TYPE_CHECKING:
    from supervisor.lifecycle import Daemon


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


def refresh_app_server(daemon: Daemon, managed: Image) -> RefreshOutcome:
    """Restart a managed app-server that runs an older image than `managed` onto
    the managed binary. A release whose app-server does not answer is not adopted:
    `current` goes back to the previous release, which is relaunched."""
    record = daemon.running_record()
    if record is None:
        return RefreshOutcome.NOT_RUNNING
    if not app_server_is_behind(Image(record.executable_digest, record.version), managed):
        return RefreshOutcome.ALREADY_CURRENT
    settings = daemon.load_settings()
    daemon.stop_app_server()
    try:
        daemon.launch_app_server(settings)
    except DaemonError as error:
        bad = current_release(daemon.paths)
        previous = previous_release(daemon.paths)
        if bad is None or previous is None or previous == bad:
            raise DaemonError(f"{error}; no previous release to roll back to") from error
        print(
            f"codexd updater: release {bad} did not start ({error}); rolling back to {previous}",
            file=sys.stderr,
            flush=True,
        )
        daemon.stop_app_server()  # in case it is still half up
        reject_release(daemon.paths, bad)
        switch_current(daemon.paths, previous)
        daemon.launch_app_server(settings)
        return RefreshOutcome.ROLLED_BACK
    return RefreshOutcome.RESTARTED
