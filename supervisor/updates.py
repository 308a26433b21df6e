"""What an update decides after the installer ran, and the app-server refresh it
carries out under daemon.lock (the updater's passes and `codexd update` alike), and the
rollback to the previous release (after a failed refresh, or `codexd rollback`)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from supervisor.errors import DaemonError
from supervisor.standalone import (
    current_release,
    layout_of,
    previous_release,
    reject_release,
    switch_current,
)
from supervisor.update_pass import RefreshOutcome

if TYPE_CHECKING:
    from supervisor.lifecycle import Daemon
    from supervisor.pidrecord import PidRecord


@dataclass(frozen=True)
class Image:
    """An executable image: its content digest and the version it reports."""

    digest: str
    version: str | None


def app_server_is_behind(running: Image, managed: Image) -> bool:
    """Older image or older version: either is reason to restart onto the managed binary."""
    if running.digest != managed.digest:
        return True
    return managed.version is not None and running.version != managed.version


class RefreshAction(Enum):
    NONE = "none"
    RESTART = "restart"
    DEFER = "defer"


@dataclass(frozen=True)
class Deferral:
    """How long a restart may wait for a busy app-server, and how long it has."""

    max_seconds: float
    waited_seconds: float | None = None  # None: it has not waited yet


def refresh_action(
    running: Image | None, managed: Image, busy: int, deferral: Deferral, force: bool
) -> RefreshAction:
    """A behind app-server is restarted, unless it is busy (processes below it: a tool
    or an MCP server in flight) and has not waited the longest it may; `force` (an
    operator's `update --yes`) restarts it anyway."""
    if running is None or not app_server_is_behind(running, managed):
        return RefreshAction.NONE
    if force or busy == 0:
        return RefreshAction.RESTART
    waited = deferral.waited_seconds
    if waited is not None and waited >= deferral.max_seconds:
        return RefreshAction.RESTART
    return RefreshAction.DEFER


def should_reexec_updater(
    updater_digest: str, managed_digest: str, outcome: RefreshOutcome
) -> bool:
    """Replace the updater's own image only once the app-server is safely on the managed
    binary (or none runs): never after a rollback, which means that binary is bad, nor
    while the app-server waits on the old one."""
    if updater_digest == managed_digest:
        return False
    return outcome in (
        RefreshOutcome.NOT_RUNNING,
        RefreshOutcome.ALREADY_CURRENT,
        RefreshOutcome.RESTARTED,
    )


def running_image(record: PidRecord | None) -> Image | None:
    return None if record is None else Image(record.executable_digest, record.version)


def refresh_app_server(daemon: Daemon, managed: Image, action: RefreshAction) -> RefreshOutcome:
    """Carry out `action` for the keeper's app-server (the caller holds daemon.lock and
    decided with `refresh_action`). A release whose app-server does not answer is not
    adopted: `current` goes back to the previous release, which is relaunched."""
    record = daemon.running_record()
    if record is None:
        return RefreshOutcome.NOT_RUNNING
    if action is RefreshAction.NONE:
        return RefreshOutcome.ALREADY_CURRENT
    if action is RefreshAction.DEFER:
        return RefreshOutcome.DEFERRED
    settings = daemon.load_settings()
    daemon.stop_app_server()
    try:
        daemon.launch_app_server(settings)
    except DaemonError as error:
        try:
            rollback = roll_back(daemon)
        except DaemonError as cannot:
            raise DaemonError(f"{error}; {cannot}") from error
        # The updater's log (its stderr), or the terminal of `codexd update`.
        print(
            f"codexd: release {rollback.rolled_back_from} did not start ({error}); "
            f"rolled back to {rollback.release}",
            file=sys.stderr,
            flush=True,
        )
        daemon.launch_app_server(settings)
        return RefreshOutcome.ROLLED_BACK
    return RefreshOutcome.RESTARTED


@dataclass(frozen=True)
class Rollback:
    release: str  # current now
    rolled_back_from: str  # rejected: not installed again until a newer release appears


def roll_back(daemon: Daemon) -> Rollback:
    """`current` back to the previous release, under the install lock so that no
    install switches `current` meanwhile. The release rolled back from is rejected
    (install.sh, and so the updater, skip it until a newer one appears) and `previous`
    is cleared: a second rollback has nowhere to go. Whatever runs is stopped first;
    the caller relaunches what it wants."""
    from supervisor.install import install_lock  # only a rollback needs it

    layout = layout_of(daemon.paths)
    with install_lock(layout):
        bad = current_release(daemon.paths)
        previous = previous_release(daemon.paths)
        if bad is None or previous is None or previous == bad:
            raise DaemonError(
                f"no previous release to roll back to ({daemon.paths.standalone_dir}/previous "
                "names none)"
            )
        if not daemon.paths.releases_dir.joinpath(previous, "codex").is_file():
            raise DaemonError(
                f"the previous release {previous} is no longer on disk; reinstall with install.sh"
            )
        daemon.stop_app_server()  # in case it is still half up
        reject_release(daemon.paths, bad)
        switch_current(daemon.paths, previous)
        layout.record("previous").unlink(missing_ok=True)
    return Rollback(release=previous, rolled_back_from=bad)
