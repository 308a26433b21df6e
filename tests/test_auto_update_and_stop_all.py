"""Operator controls over the two workers: `bootstrap --no-auto-update` (saved, kept by a
later plain bootstrap) and `stop --all`."""

from __future__ import annotations

import json

from tests.conftest import Home, is_gone, processes_of_home, updater_pids, wait_for

QUIET = {"CODEXD_UPDATE_INITIAL_DELAY_SECONDS": "3600", "CODEXD_UPDATE_INTERVAL_SECONDS": "3600"}


def saved_settings(home: Home) -> dict[str, object]:
    value = json.loads(home.paths.settings_file.read_text())
    assert isinstance(value, dict)
    return value


def test_no_auto_update_is_saved_starts_no_updater_and_is_kept_by_a_plain_bootstrap(
    home: Home,
) -> None:
    home.env.update(QUIET)
    assert home.ok("bootstrap")["autoUpdateEnabled"] is True
    [updater] = wait_for(lambda: updater_pids(home.path), what="the updater")

    off = home.ok("bootstrap", "--no-auto-update")
    assert off["status"] == "bootstrapped"
    assert off["autoUpdateEnabled"] is False
    assert is_gone(updater)  # the running one is stopped
    assert updater_pids(home.path) == []
    assert saved_settings(home)["autoUpdateEnabled"] is False

    again = home.ok("bootstrap", "--remote-control")
    assert again["autoUpdateEnabled"] is False
    assert again["remoteControlEnabled"] is True
    assert updater_pids(home.path) == []
    status = home.ok("status", "--json")
    assert status["settings"]["autoUpdateEnabled"] is False
    hints = [hint["command"] for hint in status["hints"] if hint["section"] == "updater"]
    assert hints == ["codexd bootstrap --remote-control --auto-update"]

    on = home.ok("bootstrap", "--auto-update")
    assert on["autoUpdateEnabled"] is True
    wait_for(lambda: updater_pids(home.path), what="the updater")
    assert "autoUpdateEnabled" not in saved_settings(home)  # back to codex's own file


def test_the_boot_time_bootstrap_keeps_auto_update_off(home: Home) -> None:
    home.env.update(QUIET)
    home.ok("bootstrap", "--no-auto-update", "--remote-control")
    kept = home.ok("bootstrap", "--saved-remote-control")
    assert kept["autoUpdateEnabled"] is False and kept["remoteControlEnabled"] is True
    assert updater_pids(home.path) == []


def test_stop_all_stops_the_updater_and_the_app_server_and_nothing_runs_after(
    home: Home,
) -> None:
    home.env.update(QUIET, CODEXD_WATCHDOG_SECONDS="0.5")
    home.ok("bootstrap")
    [updater] = wait_for(lambda: updater_pids(home.path), what="the updater")
    [keeper] = home.keeper_pids()

    stopped = home.ok("stop", "--all")
    assert stopped["status"] == "stopped"
    assert stopped["appServer"] == "stopped" and stopped["updater"] == "stopped"
    assert is_gone(updater) and is_gone(keeper)
    assert processes_of_home(home.path) == []
    assert home.record() is None and not home.paths.updater_record.exists()

    again = home.ok("stop", "--all")
    assert again == {
        "status": "notRunning",
        "appServer": "notRunning",
        "updater": "notRunning",
        "cliVersion": "0.1.0",
    }


def test_stop_all_with_only_an_updater_stops_it(home: Home) -> None:
    home.env.update(QUIET)
    home.ok("bootstrap")
    [updater] = wait_for(lambda: updater_pids(home.path), what="the updater")
    home.ok("stop")
    stopped = home.ok("stop", "--all")
    assert stopped["appServer"] == "notRunning" and stopped["updater"] == "stopped"
    assert is_gone(updater)


def test_stop_all_in_a_home_that_never_ran_creates_nothing(bare_home: Home) -> None:
    assert bare_home.ok("stop", "--all")["status"] == "notRunning"
    assert not bare_home.paths.state_dir.exists()
