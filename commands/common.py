"""What every lifecycle command shares: resolve the home, run one supervisor call,
print its JSON object on one line, or one message on stderr and exit 1.

`LIFECYCLE_OPERATIONS` is the one table of the commands that take no options: the
entry point's fast path runs them from it without click, and their click commands
(start.py, ...) run them from it too. Light to import: the lifecycle is loaded only
when an operation runs.
"""

from __future__ import annotations

import sys

from supervisor import fastjson
from supervisor.errors import DaemonError
from supervisor.private_dir import checked_home_paths

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Protocol

    from supervisor.lifecycle import Daemon
    from supervisor.paths import HomePaths

    class JsonOutput(Protocol):
        def to_json(self) -> dict[str, Any]: ...


LIFECYCLE_OPERATIONS: dict[str, Callable[[Daemon], JsonOutput]] = {
    "start": lambda daemon: daemon.start(),
    "restart": lambda daemon: daemon.restart(),
    "stop": lambda daemon: daemon.stop(),
    "version": lambda daemon: daemon.version(),
    "enable-remote-control": lambda daemon: daemon.set_remote_control(True),
    "disable-remote-control": lambda daemon: daemon.set_remote_control(False),
    "rollback": lambda daemon: _rollback(daemon),
}


def _rollback(daemon: Daemon) -> JsonOutput:
    from supervisor.manual_update import rollback

    return rollback(daemon)


def home_paths() -> HomePaths:
    return checked_home_paths()


def run_and_print(operation: Callable[[], JsonOutput]) -> None:
    try:
        output = operation()
    except DaemonError as error:  # StateFileError among them
        print(f"codexd: {error}", file=sys.stderr, flush=True)
        sys.exit(1)
    print_json(output.to_json())


def print_json(value: dict[str, Any]) -> None:
    """The one JSON object, on one line (as `json.dumps` writes it)."""
    print(fastjson.dumps(value), flush=True)


def run_lifecycle(command: str) -> None:
    """Run one of `LIFECYCLE_OPERATIONS` on this home and print its result."""
    from supervisor.lifecycle import Daemon

    operation = LIFECYCLE_OPERATIONS[command]
    run_and_print(lambda: operation(Daemon(home_paths())))
