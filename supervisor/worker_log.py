"""Lines the workers write into their logs (a timestamp, who, what), and the moments
and log sizes a resident worker checks at every turn, with `time` and `os` alone:
`datetime` and the rotation's own imports (supervisor/logs.py) would stay in its memory
for its whole life."""

from __future__ import annotations

import os
import sys
import time


def timestamp_now() -> str:
    """Local time with its UTC offset, to the second: `2026-11-25T21:00:00+0000`."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def utc_timestamp(seconds: float | None = None) -> str:
    """A moment (now by default) as the state files write it (supervisor/timestamps.py):
    `2025-01-01T12:00:00+00:00`."""
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(seconds))


def log(who: str, message: str, pid: int | None = None) -> None:
    """One timestamped line on stderr, which a worker's DaemonContext points at its log;
    `pid` for a child that works for the worker (the updater's pass) and speaks as it."""
    pid = os.getpid() if pid is None else pid
    print(f"{timestamp_now()} codexd {who}[{pid}]: {message}", file=sys.stderr, flush=True)


def needs_rotation(size: int, max_bytes: int) -> bool:
    return size >= max_bytes > 0


def any_log_needs_rotation(logs: tuple[str, ...], max_bytes: int) -> bool:
    """Whether one of `logs` has grown to CODEXD_LOG_MAX_BYTES: only then does a worker
    import the rotation (supervisor/logs.py)."""
    for path in logs:
        try:
            size = os.stat(path).st_size
        except OSError:
            continue
        if needs_rotation(size, max_bytes):
            return True
    return False
