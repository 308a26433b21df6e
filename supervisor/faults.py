"""A test-only hook that stops a command at a named point, so a test can SIGKILL it
there. Unset in normal use; `CODEXD_TEST_PAUSE_AT=<point>:<marker file>` arms it.

Points in a command: `locked` (daemon.lock just taken), `launched` (keeper launched,
its app-server not yet ready), `signalled` (SIGTERM sent to the keeper, exit not yet
seen), and `staged-<file name>` (a state file's new content written and fsynced beside
it, not yet renamed over it: `staged-settings.json` in the CLI,
`staged-app-server.pid` in the detached worker before its exec).

Points in the keeper (the launch passes only these on): `keeper-spawned` (an app-server
forked, the record not yet naming it), `keeper-terminating` (SIGTERM sent to the
app-server), `keeper-ending` (SIGTERM sent to what the app-server left behind).

A second test-only hook, `CODEXD_TEST_MODULES_TO=<directory>`: a resident worker asked
for its state (SIGUSR1 to the keeper, SIGUSR2 to the updater) writes the modules it has
imported into `<directory>/<pid>`, one a line, so a test can hold it to its diet
(tests/test_resident_imports.py).
"""

from __future__ import annotations

import os

from supervisor.config import MODULES_ENV, PAUSE_ENV


def pause_point(name: str) -> None:
    spec = os.environ.get(PAUSE_ENV)
    if not spec:
        return
    point, _, marker = spec.partition(":")
    if point != name or not marker:
        return
    import signal  # a test's pause only

    with open(marker, "w") as file:
        file.write(f"{os.getpid()}\n")
    while True:  # until the test kills us
        signal.pause()


def report_modules() -> None:
    directory = os.environ.get(MODULES_ENV)
    if not directory:
        return
    import sys  # loaded at start-up already

    target = os.path.join(directory, str(os.getpid()))
    with open(f"{target}.tmp", "w") as file:
        file.write("".join(f"{name}\n" for name in sorted(sys.modules)))
    os.replace(f"{target}.tmp", target)  # whole, or not yet there
