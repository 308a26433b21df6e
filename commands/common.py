"""What every lifecycle command shares: resolve the home, run one supervisor call,
print its JSON object on one line, or one message on stderr and exit 1."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, Protocol

from supervisor.errors import DaemonError
from supervisor.paths import HomePaths
from supervisor.private_dir import checked_home_paths


class JsonOutput(Protocol):
    def to_json(self) -> dict[str, Any]: ...


def home_paths() -> HomePaths:
    return checked_home_paths()


def run_and_print(operation: Callable[[], JsonOutput]) -> None:
    try:
        output = operation()
    except DaemonError as error:  # StateFileError among them
        print(f"codexd: {error}", file=sys.stderr, flush=True)
        sys.exit(1)
    print(json.dumps(output.to_json()), flush=True)
