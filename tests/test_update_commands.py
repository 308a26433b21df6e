"""`codexd update`, `codexd rollback`, and updates that wait for a busy app-server, with
real releases built from this checkout (tests/updating.py)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import psutil

from tests.conftest import CODEXD, Home, is_gone, wait_for
from tests.releases import artifact_variant, fake_codex, publish_artifact, run_version
from tests.updating import (
    PASS_TIMEOUT_SECONDS,
    Releases,
    app_server_digest,
    codex_source,
    last_pass,
    managed_digest,
    updater_ready,
)


def busy_codex(path: Path, version: str) -> Path:
    """A codex whose app-server starts a job that stays: the app-server is busy."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = --version ]; then echo "codex-cli {version}"; exit 0; fi\n'
        'if [ "$1" = app-server ] && [ "$2" = --listen ]; then\n'
        f'  sleep 600 &\n  exec "{CODEXD}" "$@"\nfi\n'
        "exit 7\n"
    )
    path.chmod(0o755)
    return path


def job_of(home: Home) -> int:
    record = home.record()
    assert record is not None
    [job] = [
        child.pid
        for child in psutil.Process(record["pid"]).children(recursive=True)
        if child.pid != record["appServerPid"]
    ]
    return job


def install_busy_codex(installed: Home, tmp_path: Path) -> None:
    """codex from a `path:` source whose app-server keeps a job below it."""
    codex_source(installed, f"path:{busy_codex(tmp_path / 'codex', '1.0.0')}")
    assert installed.ok("update")["status"] == "updated"  # onto the busy codex


# -- update ----------------------------------------------------------------------------


def test_update_installs_a_new_release_and_restarts_an_idle_app_server(
    installed: Home, channel: Path, releases: Releases
) -> None:
    keeper = installed.ok("start")["pid"]
    assert installed.ok("update") == {
        **installed.ok("update"),
        "status": "noUpdate",
        "appServerRestarted": False,
    }
    publish_artifact(channel, releases.v2)

    result = installed.run("update")

    updated = result.json
    assert updated["status"] == "updated"
    assert updated["appServerRestarted"] is True and updated["restartDeferred"] is False
    # install.sh's own notice that the app-server stays on v1 would be wrong here.
    assert "install.sh: installed release 0.2.0-" in result.stderr
    assert "stays on release" not in result.stderr
    assert updated["installedVersion"] == "0.2.0" and updated["runningVersion"] == "0.2.0"
    assert updated["managedCodexPath"] == str(installed.paths.managed_binary)
    assert updated["release"].startswith("0.2.0-")
    assert updated["previousRelease"].startswith("0.1.0-")
    assert "restarted" in updated["message"]
    assert is_gone(keeper)
    assert app_server_digest(installed) == managed_digest(installed)
    assert installed.ok("version")["appServerVersion"] == "0.2.0"
    passed = last_pass(installed)
    assert passed is not None
    assert passed["trigger"] == "command" and passed["appServer"] == "restarted"


def test_update_leaves_a_busy_app_server_on_its_release_unless_told(
    installed: Home, channel: Path, releases: Releases, tmp_path: Path
) -> None:
    install_busy_codex(installed, tmp_path)
    keeper = installed.ok("start")["pid"]
    job = job_of(installed)
    old = app_server_digest(installed)
    publish_artifact(channel, releases.v2)

    deferred = installed.ok("update")  # no terminal to ask on: the restart waits

    assert deferred["status"] == "updated"
    assert deferred["restartDeferred"] is True and deferred["appServerRestarted"] is False
    assert deferred["busyProcesses"] == 1
    assert "--yes" in deferred["message"]
    assert installed.keeper_pids() == [keeper] and not is_gone(job)
    assert app_server_digest(installed) == old != managed_digest(installed)
    passed = last_pass(installed)
    assert passed is not None and passed["appServer"] == "deferred"
    assert passed["busyProcesses"] == 1
    summary = installed.run("status").stdout
    assert "update deferred: app-server busy (1 process) since" in summary

    forced = installed.ok("update", "--yes")
    assert forced["appServerRestarted"] is True
    assert is_gone(job) and is_gone(keeper)
    assert app_server_digest(installed) == managed_digest(installed)


def test_update_says_unsupported_without_a_codexd_release(bare_home: Home) -> None:
    managed = bare_home.paths.managed_binary
    managed.parent.mkdir(parents=True)
    managed.write_text("#!/bin/sh\necho 'codex-cli 9.9.9'\n")
    managed.chmod(0o755)
    output = bare_home.ok("update")
    assert output["status"] == "unsupported"
    assert output["installedVersion"] is None and output["runningVersion"] is None
    assert "install.sh" in output["message"]


def test_update_refuses_from_cli(installed: Home) -> None:
    result = installed.run("app-server", "daemon", "update", "--from-cli")
    assert result.returncode == 2 and result.stdout == ""
    assert "CODEXD_CODEX_SOURCE" in result.stderr


def test_a_failing_installer_fails_update_and_changes_nothing(
    installed: Home, tmp_path: Path
) -> None:
    installed.ok("start")
    before = managed_digest(installed)
    codex_source(installed, f"path:{tmp_path / 'no-such-codex'}")
    result = installed.run("update")
    assert result.returncode == 1 and result.stdout == ""
    assert "installer failed" in result.stderr.splitlines()[-1]
    assert managed_digest(installed) == before
    passed = last_pass(installed)
    assert passed is not None and passed["installer"] == "failed"


def test_update_from_a_gone_checkout_fails_first_naming_it(installed: Home, tmp_path: Path) -> None:
    gone = tmp_path / "moved-away-checkout"
    (installed.paths.standalone_dir / "source").write_text(f"checkout {gone}\n")
    installed.env.pop("CODEXD_CHANNEL", None)
    before = managed_digest(installed)

    result = installed.run("update")

    assert result.returncode == 1 and result.stdout == ""
    [line] = result.stderr.splitlines()  # one line, and no sh "cannot open"
    assert f"the checkout {gone} is gone" in line
    assert "sh install.sh` once from a codexd checkout" in line
    assert managed_digest(installed) == before
    passed = last_pass(installed)
    assert passed is not None and passed["installer"] == "noSource"
    source = installed.run("doctor", "--json").json["checks"]["updater.source"]
    assert source["status"] == "warning"
    assert f"the checkout {gone} is gone" in source["summary"], source


# -- rollback --------------------------------------------------------------------------


def test_rollback_returns_to_the_previous_release_until_a_newer_one_appears(
    installed: Home, channel: Path, releases: Releases, tmp_path: Path
) -> None:
    installed.ok("start")
    v1 = installed.paths.managed_binary.resolve().parent.name
    publish_artifact(channel, releases.v2)
    v2 = installed.ok("update")["release"]

    rolled = installed.ok("rollback")

    assert rolled["status"] == "rolledBack"
    assert rolled["release"] == v1 and rolled["rolledBackFrom"] == v2
    assert rolled["appServerRestarted"] is True and rolled["appServerVersion"] == "0.1.0"
    assert installed.paths.managed_binary.resolve().parent.name == v1
    assert app_server_digest(installed) == managed_digest(installed)
    assert run_version(installed.paths.managed_binary) == "codexd 0.1.0"
    assert (installed.paths.standalone_dir / "rejected").read_text().split() == [v2]
    status = installed.ok("status", "--json")
    assert status["managedRelease"]["rejected"] == [v2]
    assert "not installed again until a newer release" in installed.run("status").stdout

    # The release rolled back from is not installed again ...
    again = installed.ok("update")
    assert again["status"] == "noUpdate" and again["release"] == v1
    # ... nor is there anywhere further back to go.
    nowhere = installed.run("rollback")
    assert nowhere.returncode == 1 and "no previous release" in nowhere.stderr

    # A newer release is.
    publish_artifact(channel, artifact_variant(releases.v1, tmp_path / "v3", "0.3.0"))
    newer = installed.ok("update")
    assert newer["status"] == "updated" and newer["release"].startswith("0.3.0-")
    assert installed.ok("version")["appServerVersion"] == "0.3.0"


def test_rollback_with_no_app_server_switches_and_starts_nothing(
    installed: Home, channel: Path, releases: Releases
) -> None:
    publish_artifact(channel, releases.v2)
    installed.ok("update")
    rolled = installed.ok("rollback")
    assert rolled["appServerRestarted"] is False and "appServerVersion" not in rolled
    assert installed.nothing_runs()
    assert run_version(installed.paths.managed_binary) == "codexd 0.1.0"


# -- the updater waits for a busy app-server ------------------------------------------


def wait_for_pass(home: Home, condition: Any, what: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        passed = last_pass(home)
        return passed if passed is not None and condition(passed) else None

    found: dict[str, Any] = wait_for(check, timeout=PASS_TIMEOUT_SECONDS, what=what)
    return found


def bootstrap_busy(installed: Home, tmp_path: Path, **env: str) -> tuple[int, int]:
    install_busy_codex(installed, tmp_path)
    installed.env.update(CODEXD_UPDATE_INITIAL_DELAY_SECONDS="1", **env)
    installed.ok("bootstrap")
    updater_ready(installed, starts=1)
    [keeper] = installed.keeper_pids()
    return keeper, job_of(installed)


def test_the_updater_restarts_a_busy_app_server_once_it_is_idle(
    installed: Home, channel: Path, releases: Releases, tmp_path: Path
) -> None:
    # Passes every 2 s, so a deferred restart is tried again every 2 s.
    keeper, job = bootstrap_busy(installed, tmp_path, CODEXD_UPDATE_INTERVAL_SECONDS="2")
    publish_artifact(channel, releases.v2)

    deferred = wait_for_pass(
        installed, lambda p: p.get("appServer") == "deferred", "a deferred restart"
    )
    assert deferred["busyProcesses"] == 1 and "deferredSince" in deferred
    assert installed.keeper_pids() == [keeper] and not is_gone(job)
    status = installed.ok("status", "--json")["updater"]
    assert status["lastPassOutcome"] == "deferred"

    os.kill(job, signal.SIGTERM)  # the tool finished: the app-server is idle
    wait_for_pass(installed, lambda p: p.get("appServer") == "restarted", "the restart")
    assert is_gone(keeper)
    assert app_server_digest(installed) == managed_digest(installed)


def test_the_updater_restarts_a_busy_app_server_anyway_after_the_longest_wait(
    installed: Home, channel: Path, releases: Releases, tmp_path: Path
) -> None:
    keeper, job = bootstrap_busy(
        installed,
        tmp_path,
        CODEXD_UPDATE_INTERVAL_SECONDS="1",
        CODEXD_UPDATE_MAX_DEFER_SECONDS="3",
    )
    publish_artifact(channel, releases.v2)

    wait_for_pass(installed, lambda p: p.get("appServer") == "deferred", "a deferred restart")
    restarted = wait_for_pass(
        installed, lambda p: p.get("appServer") == "restarted", "the restart anyway"
    )
    assert restarted["trigger"] in ("retry", "schedule")
    assert is_gone(keeper) and is_gone(job)  # the job went with the old app-server
    assert app_server_digest(installed) == managed_digest(installed)


# -- what install.sh and update say and leave ---------------------------------------------


def run_install_sh(home: Home, channel: Path, source: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(channel / "install.sh")],
        env={**home.env, "CODEXD_CHANNEL": str(channel), "CODEXD_CODEX_SOURCE": source},
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_install_sh_says_a_running_app_server_stays_on_its_release(
    installed: Home, channel: Path, tmp_path: Path
) -> None:
    quiet = run_install_sh(installed, channel, f"path:{fake_codex(tmp_path / 'a', '1.0.0')}")
    assert quiet.returncode == 0, quiet.stderr
    assert "app-server" not in quiet.stderr  # none runs
    installed.ok("start")
    running = installed.record()
    assert running is not None
    old = Path(running["executable"]).parent.name

    ran = run_install_sh(installed, channel, f"path:{fake_codex(tmp_path / 'b', '1.1.0')}")

    assert ran.returncode == 0, ran.stderr
    [line] = [line for line in ran.stderr.splitlines() if "running app-server" in line]
    assert line == (
        f"install.sh: the running app-server stays on release {old} until `codexd update` "
        "or `codexd restart`, or the updater's next pass"
    )


def test_update_repairs_an_incomplete_codex_payload(installed: Home, tmp_path: Path) -> None:
    codex_source(installed, f"path:{fake_codex(tmp_path / 'codex', '1.0.0')}")
    assert installed.ok("update")["status"] == "updated"
    [entry] = list((installed.paths.home / "packages" / "codex").iterdir())
    (entry / "bin" / "codex").unlink()

    result = installed.run("update")

    assert result.returncode == 0, result.stderr
    assert f"is incomplete (missing {entry / 'bin' / 'codex'})" in result.stderr
    assert "repaired release" in result.stderr
    assert run_version(installed.paths.managed_binary) == "codex-cli 1.0.0"


def test_update_in_a_home_without_an_install_creates_nothing(bare_home: Home) -> None:
    result = bare_home.run("update")
    assert result.returncode == 1
    assert "managed codex install not found" in result.stderr
    assert not (bare_home.paths.home / "packages").exists()


def test_rollback_in_a_home_without_an_install_creates_nothing(bare_home: Home) -> None:
    result = bare_home.run("rollback")
    assert result.returncode == 1 and result.stdout == ""
    assert "managed codex install not found" in result.stderr
    assert list(bare_home.paths.home.iterdir()) == []
