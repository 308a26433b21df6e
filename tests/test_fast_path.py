"""The command fast path: `version` and an already-running `start` answer as the
lifecycle would, and import nothing slow; everything else is left to the lifecycle."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor import fast_path
from supervisor.lifecycle import Daemon
from tests.conftest import Home, wait_for

# Each costs milliseconds to import, more than the rest of `version` together.
SLOW_MODULES = (
    "pathlib",
    "dataclasses",
    "typing",
    "re",
    "json",
    "socket",
    "enum",
    "functools",
    "inspect",
    "base64",
    "lockfile",
    "logging",
    "threading",
    "click",
    "psutil",
    "subprocess",
    "supervisor.lifecycle",
)
CHECKOUT = Path(__file__).resolve().parent.parent


def imported_by(home: Home, *argv: str) -> tuple[dict[str, object], list[str]]:
    """Run codexd's entry point as the release runs it (-I -S); its JSON and which of
    SLOW_MODULES it imported."""
    site = [path for path in sys.path if path.endswith("site-packages")]
    code = (
        f"import sys; sys.path[:0] = {[str(CHECKOUT), *site]!r}; sys.argv = ['codexd', *{argv!r}]\n"
        "from commands.main import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {SLOW_MODULES!r} if m in sys.modules), file=sys.stderr)\n"
    )
    ran = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code],
        env=home.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    output = json.loads(ran.stdout)
    assert isinstance(output, dict)
    return output, eval(ran.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", [("version",), ("app-server", "daemon", "start")])
def test_the_fast_path_imports_nothing_slow(home: Home, argv: tuple[str, ...]) -> None:
    home.ok("start")
    output, slow = imported_by(home, *argv)
    assert output["status"] in ("running", "alreadyRunning")
    assert output["backend"] == "pid"
    assert slow == []


@pytest.mark.parametrize("argv", [("restart",), ("stop",), ("start",)])
def test_the_lifecycle_commands_import_no_dataclasses(home: Home, argv: tuple[str, ...]) -> None:
    """The lifecycle pays for what the fast path skips, but not for `dataclasses` and
    `inspect` (8 ms): a start and a restart read the release's parts as lean Values."""
    if argv != ("start",):
        home.ok("start")
    output, slow = imported_by(home, *argv)
    assert output["status"] in ("restarted", "stopped", "started")
    assert "dataclasses" not in slow and "inspect" not in slow, slow


def test_version_answers_as_the_lifecycle_does(home: Home) -> None:
    home.ok("start")
    daemon = Daemon(home.paths)
    assert fast_path.version(str(home.path)) == daemon.version().to_json()


def test_start_answers_as_the_lifecycle_does_and_takes_daemon_lock(
    home: Home, tmp_path: Path
) -> None:
    started = home.ok("start")
    fast = fast_path.start(str(home.path))
    assert fast == {**home.ok("start"), "status": "alreadyRunning"}
    assert "pid" not in (fast or {}) and started["status"] == "started"
    # Someone holds daemon.lock: the fast path leaves it to the lifecycle, which waits.
    marker = tmp_path / "paused"
    cli = home.spawn("restart", env={"CODEXD_TEST_PAUSE_AT": f"locked:{marker}"})
    wait_for(lambda: marker.exists() and marker.read_text().endswith("\n"), what="the pause")
    try:
        assert fast_path.start(str(home.path)) is None
    finally:
        cli.kill()
        cli.communicate()


def test_an_unmanaged_server_is_reported_without_backend(home: Home) -> None:
    server = home.spawn("app-server", "--listen", "unix://")
    wait_for(lambda: fast_path.version(str(home.path)) is not None, what="the server")
    answer = fast_path.version(str(home.path))
    assert answer is not None and "backend" not in answer
    assert answer == Daemon(home.paths).version().to_json()
    assert server.poll() is None


@pytest.mark.parametrize(
    "situation", ["nothing runs", "corrupt record", "corrupt settings", "loose home"]
)
def test_the_unusual_is_left_to_the_lifecycle(home: Home, situation: str) -> None:
    if situation != "nothing runs":
        home.ok("start")
    if situation == "corrupt record":
        home.paths.app_server_record.write_text("{not json")
    if situation == "corrupt settings":
        home.paths.settings_file.write_text("{not json")
    if situation == "loose home":
        home.path.chmod(0o777)
    assert fast_path.start(str(home.path)) is None
    if situation in ("nothing runs", "corrupt record"):
        assert fast_path.version(str(home.path)) is None
    # ... and the lifecycle says what is wrong (or mends it: a loose home is tightened).
    result = home.run("start")
    if situation == "loose home":
        assert result.returncode == 0 and (home.path.stat().st_mode & 0o777) == 0o755
    elif situation == "nothing runs":
        assert result.json["status"] == "started"
    else:
        record = str(home.paths.app_server_record)
        named = str(home.paths.settings_file) if situation == "corrupt settings" else record
        assert result.returncode == 1 and named in result.stderr
