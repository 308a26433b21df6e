"""Every knob codexd reads from the environment, with its default, in one table.

`SETTINGS` is what the README's "Environment variables" table lists (a test holds the
two together); the readers below turn a variable into a checked value, with an error
that names the variable. Fixed timeouts that no variable overrides follow.
"""

from __future__ import annotations

import math
import os

from supervisor.errors import DaemonError
from supervisor.lean import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping


class Setting(Value):
    __slots__ = ("default", "env", "meaning")

    def __init__(self, env: str, default: str, meaning: str) -> None:
        self.env = env
        self.default = default  # as the README shows it
        self.meaning = meaning


CODEX_HOME_ENV = "CODEX_HOME"
STOP_GRACE_ENV = "CODEXD_STOP_GRACE_SECONDS"
STOP_GRACE_SECONDS = 60.0
UPDATE_INITIAL_DELAY_ENV = "CODEXD_UPDATE_INITIAL_DELAY_SECONDS"
UPDATE_INITIAL_DELAY_SECONDS = 300.0
UPDATE_INTERVAL_ENV = "CODEXD_UPDATE_INTERVAL_SECONDS"
UPDATE_INTERVAL_SECONDS = 3600.0
INSTALL_TIMEOUT_ENV = "CODEXD_UPDATE_INSTALL_TIMEOUT_SECONDS"
INSTALL_TIMEOUT_SECONDS = 600.0
UPDATE_MAX_DEFER_ENV = "CODEXD_UPDATE_MAX_DEFER_SECONDS"
UPDATE_MAX_DEFER_SECONDS = 3600.0
CHANNEL_ENV = "CODEXD_CHANNEL"
CODEX_SOURCE_ENV = "CODEXD_CODEX_SOURCE"
BIN_DIR_ENV = "CODEXD_BIN_DIR"
LOG_MAX_BYTES_ENV = "CODEXD_LOG_MAX_BYTES"
LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_KEEP_ENV = "CODEXD_LOG_KEEP"
LOG_KEEP = 3
RESTART_DELAY_ENV = "CODEXD_RESTART_DELAY_SECONDS"
RESTART_DELAY_SECONDS = 1.0
RESTART_BURST_ENV = "CODEXD_RESTART_BURST"
RESTART_BURST = 5
RESTART_WINDOW_ENV = "CODEXD_RESTART_WINDOW_SECONDS"
RESTART_WINDOW_SECONDS = 120.0
WATCHDOG_ENV = "CODEXD_WATCHDOG_SECONDS"
WATCHDOG_SECONDS = 30.0
PAUSE_ENV = "CODEXD_TEST_PAUSE_AT"
MODULES_ENV = "CODEXD_TEST_MODULES_TO"
# Read by install.sh and release/publish.py, listed here with the rest.
PYTHON_ENV = "CODEXD_PYTHON"
BUILD_CACHE_ENV = "CODEXD_BUILD_CACHE"

SETTINGS = (
    Setting(CODEX_HOME_ENV, "~/.codex", "the home"),
    Setting(STOP_GRACE_ENV, "60", "grace window between SIGTERM and SIGKILL"),
    Setting(UPDATE_INITIAL_DELAY_ENV, "300", "the updater's wait before its first pass"),
    Setting(UPDATE_INTERVAL_ENV, "3600", "the updater's wait between passes"),
    Setting(INSTALL_TIMEOUT_ENV, "600", "time limit of one installer run"),
    Setting(UPDATE_MAX_DEFER_ENV, "3600", "longest an update waits for a busy app-server"),
    Setting(CHANNEL_ENV, "the source install.sh last installed from", "codexd's release channel"),
    Setting(CODEX_SOURCE_ENV, "recorded at install", "where codex comes from"),
    Setting(BIN_DIR_ENV, "~/.local/bin", "where install.sh puts the codexd command"),
    Setting(LOG_MAX_BYTES_ENV, "10485760", "a worker log at this size is rotated"),
    Setting(LOG_KEEP_ENV, "3", "rotated logs kept per worker"),
    Setting(RESTART_DELAY_ENV, "1", "first restart delay after a crash (doubles up to 30 s)"),
    Setting(RESTART_BURST_ENV, "5", "this many crashes within the window: the keeper gives up"),
    Setting(RESTART_WINDOW_ENV, "120", "the crash-loop window"),
    Setting(WATCHDOG_ENV, "30", "the keeper's health probe interval"),
    Setting(PYTHON_ENV, "the interpreter recorded at install", "the python codexd runs with"),
    Setting(BUILD_CACHE_ENV, "~/.cache/codexd-build", "where release builds keep their wheels"),
    Setting(PAUSE_ENV, "unset", "tests only: stop a command at a named point"),
    Setting(MODULES_ENV, "unset", "tests only: where a resident worker lists its modules"),
)

# Fixed: no variable overrides these.
KILL_WAIT_SECONDS = 10.0
START_TIMEOUT_SECONDS = 10.0
LOCK_TIMEOUT_SECONDS = 75.0
PROBE_TIMEOUT_SECONDS = 2.0
READY_POLL_SECONDS = 0.02
# The updater retries a busy daemon.lock this often, watching for SIGTERM in between.
UPDATER_LOCK_RETRY_SECONDS = 0.05


def _environ(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def seconds_from_env(name: str, default: float, environ: Mapping[str, str] | None = None) -> float:
    """A non-negative number of seconds from `name`, else `default`."""
    value = _environ(environ).get(name)
    if value is None or value == "":
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not (math.isfinite(seconds) and seconds >= 0):
        raise DaemonError(f"{name}={value!r} is not a number of seconds")
    return seconds


def count_from_env(
    name: str, default: int, minimum: int, environ: Mapping[str, str] | None = None
) -> int:
    """A whole number >= `minimum` from `name`, else `default`."""
    value = _environ(environ).get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        number = minimum - 1
    if number < minimum:
        raise DaemonError(f"{name}={value!r} is not a whole number >= {minimum}")
    return number


def stop_grace_seconds(environ: Mapping[str, str] | None = None) -> float:
    return seconds_from_env(STOP_GRACE_ENV, STOP_GRACE_SECONDS, environ)


def update_schedule(environ: Mapping[str, str] | None = None) -> tuple[float, float]:
    """The updater's initial delay and interval, in seconds."""
    return (
        seconds_from_env(UPDATE_INITIAL_DELAY_ENV, UPDATE_INITIAL_DELAY_SECONDS, environ),
        seconds_from_env(UPDATE_INTERVAL_ENV, UPDATE_INTERVAL_SECONDS, environ),
    )


def install_timeout_seconds(environ: Mapping[str, str] | None = None) -> float:
    return seconds_from_env(INSTALL_TIMEOUT_ENV, INSTALL_TIMEOUT_SECONDS, environ)


class LogSettings(Value):
    __slots__ = ("keep", "max_bytes")

    def __init__(self, max_bytes: int = LOG_MAX_BYTES, keep: int = LOG_KEEP) -> None:
        self.max_bytes = max_bytes
        self.keep = keep


def log_settings(environ: Mapping[str, str] | None = None) -> LogSettings:
    """CODEXD_LOG_MAX_BYTES (> 0) and CODEXD_LOG_KEEP (>= 0; 0 keeps no old log)."""
    return LogSettings(
        max_bytes=count_from_env(LOG_MAX_BYTES_ENV, LOG_MAX_BYTES, 1, environ),
        keep=count_from_env(LOG_KEEP_ENV, LOG_KEEP, 0, environ),
    )
