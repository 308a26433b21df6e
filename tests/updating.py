"""Homes installed from real releases built from this checkout, and the helpers that
drive and read their updater: the fixtures `releases` (session), `channel` and
`installed` (registered in tests/conftest.py), for the updater's tests and the update
commands'.

Passes are triggered with SIGUSR1 (the schedule is set to an hour), and each test
waits for the updater's last-pass file to show the pass finished.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from supervisor.digest import file_digest
from tests.conftest import Home, make_home, wait_for
from tests.releases import artifact_variant, copy_checkout, publish, publish_artifact

PASS_TIMEOUT_SECONDS = 60.0
QUIET_SCHEDULE = {
    "CODEXD_UPDATE_INITIAL_DELAY_SECONDS": "3600",
    "CODEXD_UPDATE_INTERVAL_SECONDS": "3600",
}


@dataclass(frozen=True)
class Releases:
    """codexd artifacts built once per session: v1 from this checkout, v2 with version 0.2.0."""

    v1: Path
    v2: Path


@pytest.fixture(scope="session")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Releases:
    root = tmp_path_factory.mktemp("releases")
    v1 = publish(root / "v1", copy_checkout(root / "codexd")).artifact
    return Releases(v1=v1, v2=artifact_variant(v1, root / "codexd-0.2.0", "0.2.0"))


@pytest.fixture
def channel(tmp_path: Path, releases: Releases) -> Path:
    """A channel of the test's own whose latest is v1."""
    path = tmp_path / "channel"
    publish_artifact(path, releases.v1)
    return path


def codex_source(home: Home, source: str) -> None:
    """Move the recorded codex source, as `CODEXD_CODEX_SOURCE=... sh install.sh` would."""
    (home.paths.standalone_dir / "codex-source").write_text(source + "\n")


@pytest.fixture
def installed(tmp_path: Path, channel: Path) -> Iterator[Home]:
    """A home with v1 installed by install.sh from `channel`, codex from the reference."""
    home = make_home(tmp_path / "home")
    home.env.update(QUIET_SCHEDULE, CODEXD_BIN_DIR=str(tmp_path / "bin"))
    try:
        install(home, channel, CODEXD_CODEX_SOURCE="reference")
        yield home
    finally:
        home.cleanup()


def install(home: Home, channel: Path, **extra: str) -> None:
    completed = subprocess.run(
        ["sh", str(channel / "install.sh")],
        env={**home.env, "CODEXD_CHANNEL": str(channel), **extra},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr


def managed_digest(home: Home) -> str:
    return file_digest(home.paths.managed_binary.resolve())


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    assert isinstance(value, dict)
    return value


def updater_record(home: Home) -> dict[str, Any] | None:
    return read_json(home.paths.updater_record)


def last_pass(home: Home) -> dict[str, Any] | None:
    return read_json(home.paths.updater_last_pass)


def updater_log(home: Home) -> str:
    try:
        return home.paths.updater_log.read_text()
    except FileNotFoundError:
        return ""


def updater_ready(home: Home, starts: int) -> int:
    """The updater's pid once its log shows `starts` starts (each installs its signal
    handlers before it logs)."""

    def ready() -> int | None:
        log = updater_log(home)
        count = log.count("]: started;") + log.count("]: resumed after re-exec;")
        record = updater_record(home)
        return record["pid"] if record and count >= starts else None

    pid: int = wait_for(ready, timeout=PASS_TIMEOUT_SECONDS, what="updater to start")
    return pid


def run_pass(home: Home, pid: int) -> dict[str, Any]:
    """Ask the updater for a pass now; the pass's outcome once it is written."""
    before = (last_pass(home) or {}).get("pass", 0)
    os.kill(pid, signal.SIGUSR1)

    def finished() -> dict[str, Any] | None:
        outcome = last_pass(home)
        return outcome if outcome and outcome.get("pass", 0) > before else None

    outcome: dict[str, Any] = wait_for(finished, timeout=PASS_TIMEOUT_SECONDS, what="a pass")
    return outcome


def app_server_digest(home: Home) -> str:
    record = home.record()
    assert record is not None
    digest: str = record["executableDigest"]
    return digest


def installer_processes(marker: str) -> list[psutil.Process]:
    """Live processes whose command line shows `marker` (an installer a test made)."""
    found = []
    for process in psutil.process_iter():
        try:
            if marker in " ".join(process.cmdline()) and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found
