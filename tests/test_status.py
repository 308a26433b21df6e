"""`codexd status`: the judgements behind it (tables) and what a person or a program
sees with nothing running, with the daemon up, and while daemon.lock is held."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from supervisor.decisions import WorkerState
from supervisor.locks import FlockLock
from supervisor.standalone import DiskUsage
from supervisor.status import next_pass_at, release_of, version_of_release
from supervisor.status_facts import DiskSection
from supervisor.status_render import Tone, disk_row, format_duration
from supervisor.status_report import NextPassSource, is_unmanaged
from supervisor.timestamps import parse_timestamp, timestamp
from supervisor.update_pass import pass_from_json
from tests.conftest import Home, wait_for

UTC = datetime.UTC
T0 = datetime.datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def iso(seconds: float) -> str:
    return at(seconds).isoformat(timespec="seconds")


DELAY, INTERVAL = 300.0, 3600.0


@pytest.mark.parametrize(
    ("pid", "started", "last_pass", "expected"),
    [
        # Not running: no next pass.
        (None, None, {"pid": 7, "finishedAt": iso(10)}, (None, None)),
        # No pass yet: the initial delay from the start.
        (7, at(0), None, (at(DELAY), NextPassSource.COMPUTED)),
        # The last pass is another updater's (an earlier bootstrap): same.
        (7, at(0), {"pid": 6, "finishedAt": iso(-50)}, (at(DELAY), NextPassSource.COMPUTED)),
        # Same pid, but before this process started (a pid reused after a reboot).
        (7, at(0), {"pid": 7, "finishedAt": iso(-500)}, (at(DELAY), NextPassSource.COMPUTED)),
        # This updater's pass: finish + interval.
        (
            7,
            at(0),
            {"pid": 7, "finishedAt": iso(400)},
            (at(400 + INTERVAL), NextPassSource.COMPUTED),
        ),
        # ... unless the pass recorded its next one.
        (
            7,
            at(0),
            {"pid": 7, "finishedAt": iso(400), "nextPassAt": iso(999)},
            (at(999), NextPassSource.RECORDED),
        ),
        # An unreadable finish time: back to the schedule from the start.
        (7, at(0), {"pid": 7, "finishedAt": "yesterday"}, (at(DELAY), NextPassSource.COMPUTED)),
    ],
)
def test_next_pass_at(
    pid: int | None,
    started: datetime.datetime | None,
    last_pass: dict[str, Any] | None,
    expected: tuple[datetime.datetime | None, NextPassSource | None],
) -> None:
    record = None if last_pass is None else pass_from_json(last_pass)
    assert next_pass_at(pid, started, record, DELAY, INTERVAL) == expected


RELEASES = Path("/h/packages/standalone/releases")


@pytest.mark.parametrize(
    ("executable", "release"),
    [
        (None, None),
        (f"{RELEASES}/0.1.0-0123456789ab/codex", "0.1.0-0123456789ab"),
        ("/h/packages/standalone/current/codex", None),
        ("/usr/bin/codex", None),
    ],
)
def test_release_of(executable: str | None, release: str | None) -> None:
    assert release_of(executable, RELEASES) == release


@pytest.mark.parametrize(
    ("release", "version"),
    [
        ("0.1.0-0123456789ab", "0.1.0"),
        ("1.2.3-rc1-abcdefabcdef", "1.2.3-rc1"),
        ("0.1.0-xyz", None),
        ("", None),
        (None, None),
    ],
)
def test_version_of_release(release: str | None, version: str | None) -> None:
    assert version_of_release(release) == version


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (42, "42s"), (60, "1m 0s"), (423, "7m 3s"), (7500, "2h 5m"), (273600, "3d 4h")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-01-01T12:00:00+00:00", T0),
        ("2025-01-01T12:00:00Z", T0),
        ("2025-01-01T12:00:00", T0),
        ("soon", None),
        (5, None),
    ],
)
def test_parse_timestamp(value: object, expected: datetime.datetime | None) -> None:
    assert parse_timestamp(value) == expected


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (T0.replace(microsecond=123456), "2025-01-01T12:00:00+00:00"),
        # Another zone is written as UTC: the state files and --json use one zone.
        (
            datetime.datetime(
                2025, 1, 1, 14, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
            ),
            "2025-01-01T12:00:00+00:00",
        ),
    ],
)
def test_timestamp_is_utc_to_the_second(moment: datetime.datetime, text: str) -> None:
    assert timestamp(moment) == text
    assert parse_timestamp(text) == moment.replace(microsecond=0)


@pytest.mark.parametrize(
    ("state", "answering", "unmanaged"),
    [
        (WorkerState.NOT_RUNNING, True, True),
        (WorkerState.STALE, True, True),
        # Our lock is held: the app-server that answers is ours.
        (WorkerState.RUNNING, True, False),
        (WorkerState.STARTING, True, False),
        (WorkerState.UNREADABLE, True, False),
        *[(state, False, False) for state in WorkerState],
    ],
)
def test_is_unmanaged(state: WorkerState, answering: bool, unmanaged: bool) -> None:
    assert is_unmanaged(state, answering) is unmanaged


# -- the command ---------------------------------------------------------------------


MB = 1024 * 1024


@pytest.mark.parametrize(
    ("free", "text", "tone"),
    [
        (
            40 * 1024 * MB,
            "3.0 MiB (codex 2.0 MiB, codexd 512.0 KiB, releases 512.0 KiB); 40.0 GiB free",
            Tone.PLAIN,
        ),
        (100 * MB, "; 100.0 MiB free", Tone.WARN),
        (None, "; free space unknown", Tone.WARN),
    ],
)
def test_the_disk_row_says_what_the_install_takes_and_warns_when_space_runs_low(
    free: int | None, text: str, tone: Tone
) -> None:
    usage = DiskUsage(releases=MB // 2, codex=2 * MB, codexd=MB // 2)
    row = disk_row(DiskSection(Path("/h"), free, None, usage))
    assert text in row.value
    assert row.tone is tone


def test_status_with_nothing_running_says_so_and_exits_0(bare_home: Home) -> None:
    result = bare_home.run("status")
    assert result.returncode == 0, result.stderr
    assert "not running" in result.stdout
    assert "not installed" in result.stdout
    assert "\x1b[" not in result.stdout  # no colour into a pipe
    assert all(line == line.rstrip() for line in result.stdout.splitlines())
    assert not bare_home.paths.state_dir.exists()  # status creates nothing


def test_status_json_with_nothing_running(bare_home: Home) -> None:
    output = bare_home.ok("status", "--json")
    assert set(output) == {
        "home", "stateDir", "cliVersion", "appServer", "updater", "managedRelease",
        "previousRelease", "settings", "persistence", "logs", "hints", "daemonLock", "disk",
    }  # fmt: skip
    assert output["daemonLock"] == {"held": False, "holders": []}
    assert output["appServer"]["status"] == "notRunning"
    assert output["appServer"]["pid"] is None
    assert output["appServer"]["answering"] is False
    assert output["updater"]["status"] == "notRunning"
    assert output["updater"]["nextPassAt"] is None
    assert output["managedRelease"]["path"] is None
    assert [log["name"] for log in output["logs"]] == ["app-server", "updater"]
    # Nothing can start before a managed release is installed: only that is suggested.
    assert output["hints"] == [
        {
            "section": "release",
            "text": "install a managed release (in a codexd checkout, or with "
            "CODEXD_CHANNEL=<channel>): sh install.sh",
            "command": "sh install.sh",
        }
    ]


def test_status_after_bootstrap_shows_both_workers_and_the_schedule(home: Home) -> None:
    home.env.update(
        CODEXD_UPDATE_INITIAL_DELAY_SECONDS="3600", CODEXD_UPDATE_INTERVAL_SECONDS="7200"
    )
    home.ok("bootstrap", "--remote-control")
    # The updater records itself once it runs; status reads what it wrote.
    wait_for(lambda: home.paths.updater_record.exists(), what="the updater's record")

    output = home.ok("status", "--json", env={"CODEXD_UPDATE_INITIAL_DELAY_SECONDS": "5"})

    server = output["appServer"]
    assert server["status"] == "running"
    [keeper] = home.keeper_pids()
    assert server["keeper"]["pid"] == keeper
    assert server["keeper"]["state"] == "running"
    assert server["pid"] == home.serving(keeper)
    assert server["restarts"] == 0 and server["lastExit"] is None
    assert server["busyProcesses"] == 0
    assert server["version"] == "0.1.0"
    assert server["remoteControlEnabled"] is True
    assert server["answering"] is True
    assert server["executableDigest"].startswith("sha256:")
    assert server["uptimeSeconds"] >= 0
    updater = output["updater"]
    assert updater["status"] == "running"
    started = parse_timestamp(updater["startedAt"])
    assert started is not None
    # The updater's own schedule counts, not the one in status's environment.
    assert parse_timestamp(updater["nextPassAt"]) == started + datetime.timedelta(seconds=3600)
    assert updater["nextPassSource"] == "computed"
    assert output["managedRelease"]["digest"] == server["executableDigest"]
    assert output["logs"][0]["sizeBytes"] > 0

    # A pass by this updater sets the next one: finish + its interval, or what it recorded.
    last = {"pass": 1, "installer": "ok", "appServer": "alreadyCurrent", "pid": updater["pid"]}
    finished = datetime.datetime.now(UTC).replace(microsecond=0)
    last["finishedAt"] = finished.isoformat()
    home.paths.updater_last_pass.write_text(json.dumps(last))
    output = home.ok("status", "--json")
    assert parse_timestamp(output["updater"]["nextPassAt"]) == finished + datetime.timedelta(
        seconds=7200
    )
    assert output["updater"]["lastPassOutcome"] == "upToDate"

    text = home.run("status").stdout
    for expected in (
        "running", "upToDate", "0.1.0", str(server["pid"]), "app-server.log", " free",
    ):  # fmt: skip
        assert expected in text


def test_status_says_how_to_start_what_is_not_running(home: Home, tmp_path: Path) -> None:
    # A crontab command: this home could persist (elsewhere the hint says what is missing).
    crontab = tmp_path / "bin" / "crontab"
    crontab.parent.mkdir()
    crontab.write_text("#!/bin/sh\necho 'no crontab for you' >&2; exit 1\n")
    crontab.chmod(0o755)
    home.env["PATH"] = f"{crontab.parent}:{home.env.get('PATH', '')}"
    home.ok("start")
    output = home.ok("status", "--json")
    assert {hint["section"]: hint["command"] for hint in output["hints"]} == {
        "updater": "codexd bootstrap",
        "release": "codexd bootstrap --persist",
    }
    text = home.run("status").stdout
    assert "start it (restarts the app-server too): codexd bootstrap\n" in text
    assert "codexd start" not in text  # the app-server runs

    # A bare bootstrap would turn remote control off: the hint keeps it on.
    home.ok("enable-remote-control")
    home.ok("stop")
    output = home.ok("status", "--json")
    assert [hint["command"] for hint in output["hints"]] == [
        "codexd start",
        "codexd bootstrap --remote-control",
        "codexd bootstrap --remote-control --persist",
    ]


def test_status_takes_no_lock(home: Home) -> None:
    home.ok("start")
    lock = FlockLock(home.paths.daemon_lock)
    lock.acquire(timeout=5)
    try:
        output = home.ok("status", "--json")
    finally:
        lock.release()
    assert output["appServer"]["status"] == "running"


def test_status_reports_an_unreadable_record_and_still_exits_0(home: Home) -> None:
    home.ok("start")
    home.paths.app_server_record.write_text("{not json")
    output = home.ok("status", "--json")
    assert output["appServer"]["status"] == "unreadable"
    assert str(home.paths.app_server_record) in output["appServer"]["error"]


def test_lifecycle_commands_do_not_import_rich() -> None:
    code = (
        "import sys, commands.cli;"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'rich'], 'rich imported'"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr


def test_status_names_who_holds_daemon_lock(home: Home, tmp_path: Path) -> None:
    marker = tmp_path / "paused"
    cli = home.spawn("start", env={"CODEXD_TEST_PAUSE_AT": f"locked:{marker}"})
    wait_for(lambda: marker.exists() and marker.read_text().endswith("\n"), what="the pause")
    output = home.ok("status", "--json")
    assert output["daemonLock"]["held"] is True
    [holder] = output["daemonLock"]["holders"]
    assert holder["pid"] == cli.pid and "start" in holder["command"]
    assert f"held by pid {cli.pid}" in home.run("status").stdout
    cli.kill()
    cli.communicate()
    assert home.ok("status", "--json")["daemonLock"] == {"held": False, "holders": []}


@pytest.mark.parametrize(
    ("count", "said"), [(0, "0 processes"), (1, "1 process"), (2, "2 processes")]
)
def test_process_counts_read_as_english(count: int, said: str) -> None:
    from supervisor.procfs import count_processes

    assert count_processes(count) == said


@pytest.mark.parametrize(
    ("lines", "found"),
    [
        ([], None),
        (["2026-11-26T00:00:01+0000 codexd keeper[7]: started for /h"], None),
        (
            [
                "2026-11-26T00:00:01+0000 codexd keeper[7]: started for /h",
                "2026-11-26T00:00:09+0000 codexd keeper[7]: SIGTERM: stopping",
                "2026-11-26T00:00:10+0000 codexd keeper[7]: stopped",
                "some output of the app-server",
            ],
            ("2026-11-26T00:00:09+0000", "SIGTERM: stopping"),
        ),
        (
            [
                "2026-11-26T00:00:02+0000 codexd keeper[7]: SIGINT: stopping",
                "2026-11-26T00:00:05+0000 codexd keeper[8]: giving up: 5 failures within 120 s",
            ],
            ("2026-11-26T00:00:05+0000", "giving up: 5 failures within 120 s"),
        ),
        (
            [
                "2026-11-26T00:00:03+0000 codexd keeper[7]: app-server pid 9 exited: "
                "killed by SIGTERM (stopped by someone else) after 3.0 s",
            ],
            (
                "2026-11-26T00:00:03+0000",
                "app-server pid 9 exited: killed by SIGTERM (stopped by someone else) after 3.0 s",
            ),
        ),
        # The app-server's own words are not the keeper's.
        (["2026-11-26T00:00:04+0000 codexd-like keeper[7]: X: stopping"], None),
    ],
)
def test_last_stop(lines: list[str], found: tuple[str, str] | None) -> None:
    from supervisor.status_report import last_stop

    stop = last_stop(lines)
    assert (None if stop is None else (stop.at, stop.what)) == found


@pytest.mark.parametrize(
    ("line", "printed"),
    [
        ("status          running   ", "status          running"),
        ("\x1b[33mnot running      \x1b[0m", "\x1b[33mnot running\x1b[0m"),
        ("a  \x1b[2m  \x1b[0mb    \x1b[0m\x1b[1m", "a  \x1b[2m  \x1b[0mb\x1b[0m\x1b[1m"),
        ("no padding", "no padding"),
    ],
)
def test_status_lines_end_without_padding(line: str, printed: str) -> None:
    from supervisor.status_render import _TRAILING_SPACES

    assert _TRAILING_SPACES.sub(r"\1", line) == printed
