"""The real codex from npm, as a user gets it: install.sh with `npm:0.166.0`, codexd
driven through the managed binary as remote clients drive it, then the source moved to
`npm:0.169.0` and one updater pass.

Skipped without npm. npm keeps the tarballs in its own cache, so a second run fetches
nothing; each run unpacks both payloads (about 400 MB each) into the test's home.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from supervisor.standalone import release_disk_usage
from tests.conftest import Home, make_home, wait_for
from tests.releases import copy_checkout, publish
from tests.updating import QUIET_SCHEDULE, codex_source, install, run_pass, updater_ready

FIRST, SECOND = "0.166.0", "0.169.0"
COMMAND_TIMEOUT_SECONDS = 120.0


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Home]:
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed: the real codex comes from npm")
    home = make_home(tmp_path / "home")
    home.env.update(QUIET_SCHEDULE, CODEXD_BIN_DIR=str(tmp_path / "bin"))
    try:
        yield home
    finally:
        # SIGTERM, not the cleanup's SIGKILL: codex then removes its socket under
        # /tmp/codex-daemon-<uid>/.
        if home.paths.managed_binary.exists():
            managed(home, "app-server", "daemon", "stop")
        home.cleanup()


def managed(home: Home, *args: str) -> subprocess.CompletedProcess[str]:
    """`current/codex <args>`, as a remote client runs it over SSH."""
    return subprocess.run(
        [str(home.paths.managed_binary), *args],
        env=home.env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def app_server_executable(home: Home) -> Path:
    [pid] = home.app_server_pids()
    return Path(psutil.Process(pid).exe())


def test_npm_codex_is_installed_served_and_moved_by_the_updater(tmp_path: Path, home: Home) -> None:
    channel = publish(tmp_path / "channel", copy_checkout(tmp_path / "codexd")).channel
    install(home, channel, CODEXD_CODEX_SOURCE=f"npm:{FIRST}")

    assert managed(home, "--version").stdout.split()[1:2] == [FIRST]
    assert (home.paths.standalone_dir / "codex-source").read_text() == f"npm:{FIRST}\n"
    [first_payload] = (home.path / "packages" / "codex").iterdir()
    assert (first_payload / "codex-resources").is_dir() and (first_payload / "codex-path").is_dir()

    bootstrapped = managed(home, "app-server", "daemon", "bootstrap", "--remote-control")
    assert bootstrapped.returncode == 0, bootstrapped.stderr
    output = json.loads(bootstrapped.stdout)
    assert output["status"] == "bootstrapped" and output["remoteControlEnabled"] is True
    assert output["managedCodexVersion"] == FIRST and output["appServerVersion"] == FIRST
    assert output["cliVersion"] == "0.1.0"
    assert app_server_executable(home) == first_payload / "bin" / "codex"
    version = json.loads(managed(home, "app-server", "daemon", "version").stdout)
    assert version["appServerVersion"] == FIRST and version["backend"] == "pid"

    pid = updater_ready(home, starts=1)
    codex_source(home, f"npm:{SECOND}")
    outcome = run_pass(home, pid)

    assert outcome["installer"] == "ok" and outcome["appServer"] == "restarted", outcome
    assert managed(home, "--version").stdout.split()[1:2] == [SECOND]
    version = json.loads(managed(home, "app-server", "daemon", "version").stdout)
    assert version["appServerVersion"] == SECOND
    assert version["managedCodexVersion"] == SECOND
    assert app_server_executable(home).parent.parent.name.startswith(f"{SECOND}-")
    # The previous release and its codex stay for rollback; the disk they take is known.
    previous = (home.paths.standalone_dir / "previous").read_text().strip()
    assert previous.startswith(f"{FIRST}-")
    assert len(list((home.path / "packages" / "codex").iterdir())) == 2
    assert release_disk_usage(home.paths).codex > 2 * 300_000_000
    wait_for(lambda: updater_ready(home, starts=2) == pid, what="the updater's re-exec")
    socket_target = home.paths.socket_path.resolve()
    assert managed(home, "app-server", "daemon", "stop").returncode == 0
    assert not socket_target.exists()
