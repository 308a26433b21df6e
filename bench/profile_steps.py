"""Time the steps of a codexd lifecycle command inside one interpreter.

Run by `bench/run.py` with a codexd release's own interpreter, as the front starts it
(`<python> -I -S bench/profile_steps.py <home>/packages/codexd/<release> NAME=HOME ...`),
in a fresh process each time, so the import times are cold-process (warm page cache)
times. Prints one JSON object of seconds.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

# The release's modules first, as `python -I -S <release dir>` has them.
sys.path.insert(0, sys.argv[1])
started = time.perf_counter()
# What every CLI invocation imports: the console script's module (commands.main, the
# fast path, where it exists; commands.cli, the click CLI, before it).
try:
    import commands.main
except ImportError:
    import commands.cli  # noqa: F401

imported_entry = time.perf_counter()
import supervisor.lifecycle  # noqa: E402  (what a lifecycle command runs)

imported_lifecycle = time.perf_counter()
import supervisor.control_socket  # noqa: E402, F401  (the probe and its WebSocket client)

imported_probe = time.perf_counter()
import inspect  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from supervisor.control_socket import probe  # noqa: E402
from supervisor.managed import managed_version  # noqa: E402
from supervisor.paths import HomePaths  # noqa: E402
from supervisor.worker_state import observe_worker  # noqa: E402


def timed(function: Callable[..., object], *args: object) -> float:
    begin = time.perf_counter()
    function(*args)
    return time.perf_counter() - begin


result = {
    "import entry point": imported_entry - started,
    "import supervisor.lifecycle (after it)": imported_lifecycle - imported_entry,
    "import supervisor.control_socket (after those)": imported_probe - imported_lifecycle,
}
for argument in sys.argv[2:]:
    name, _, home = argument.partition("=")
    paths = HomePaths(Path(home))
    result[f"probe[{name}]"] = timed(probe, paths.socket_path)
    result[f"observe_worker[{name}]"] = timed(observe_worker, paths.app_server_record)
    # Uncached: the `<managed binary> --version` subprocess itself.
    result[f"managed_version uncached[{name}]"] = timed(managed_version, paths.managed_binary)
    if len(inspect.signature(managed_version).parameters) > 1:  # the version cache
        with tempfile.TemporaryDirectory() as scratch:
            cache = Path(scratch) / "managed-version.json"
            managed_version(paths.managed_binary, cache)
            result[f"managed_version cached[{name}]"] = timed(
                managed_version, paths.managed_binary, cache
            )
print(json.dumps(result))
