"""Lines the workers write into their logs: a timestamp, who, what."""

from __future__ import annotations

import os
import sys
import time


def timestamp_now() -> str:
    """Local time with its UTC offset, to the second: `2026-11-25T21:00:00+0000`."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def log(who: str, message: str) -> None:
    """One timestamped line on stderr, which a worker's DaemonContext points at its log."""
    print(f"{timestamp_now()} codexd {who}[{os.getpid()}]: {message}", file=sys.stderr, flush=True)
