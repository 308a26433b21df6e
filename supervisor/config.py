"""Timeouts and other knobs, with the environment variables that override them."""

from __future__ import annotations

import math
import os

from supervisor.errors import DaemonError

STOP_GRACE_ENV = "CODEXD_STOP_GRACE_SECONDS"
STOP_GRACE_SECONDS = 60.0
KILL_WAIT_SECONDS = 10.0
START_TIMEOUT_SECONDS = 10.0
LOCK_TIMEOUT_SECONDS = 75.0
PROBE_TIMEOUT_SECONDS = 2.0
READY_POLL_SECONDS = 0.02


def seconds_from_env(name: str, default: float, environ: dict[str, str] | None = None) -> float:
    """A non-negative number of seconds from `name`, else `default`."""
    value = (os.environ if environ is None else environ).get(name)
    if value is None or value == "":
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not (math.isfinite(seconds) and seconds >= 0):
        raise DaemonError(f"{name}={value!r} is not a number of seconds")
    return seconds


def stop_grace_seconds() -> float:
    return seconds_from_env(STOP_GRACE_ENV, STOP_GRACE_SECONDS)


UPDATE_INITIAL_DELAY_ENV = "CODEXD_UPDATE_INITIAL_DELAY_SECONDS"
UPDATE_INITIAL_DELAY_SECONDS = 300.0
UPDATE_INTERVAL_ENV = "CODEXD_UPDATE_INTERVAL_SECONDS"
UPDATE_INTERVAL_SECONDS = 3600.0
INSTALL_TIMEOUT_ENV = "CODEXD_UPDATE_INSTALL_TIMEOUT_SECONDS"
INSTALL_TIMEOUT_SECONDS = 600.0
CHANNEL_ENV = "CODEXD_CHANNEL"
# The updater retries a busy daemon.lock this often, watching for SIGTERM in between.
UPDATER_LOCK_RETRY_SECONDS = 0.05


def update_schedule(environ: dict[str, str] | None = None) -> tuple[float, float]:
    """The updater's initial delay and interval, in seconds."""
    return (
        seconds_from_env(UPDATE_INITIAL_DELAY_ENV, UPDATE_INITIAL_DELAY_SECONDS, environ),
        seconds_from_env(UPDATE_INTERVAL_ENV, UPDATE_INTERVAL_SECONDS, environ),
    )
