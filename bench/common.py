"""What every bench module shares: where things are, the error a failed command
raises, progress on stderr. Standard library only."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
CHECKOUT = BENCH.parent
RESULTS = BENCH / "results"
COMMAND_TIMEOUT_SECONDS = 180.0


class BenchError(Exception):
    """A command failed or answered something unexpected; the message says which."""


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)
