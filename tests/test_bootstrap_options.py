"""bootstrap's remote-control options: a bare bootstrap turns remote control off (as
codex's does), --saved-remote-control keeps what was saved, and the two kinds of
option do not mix."""

from __future__ import annotations

import json

from tests.conftest import Home


def saved_setting(home: Home) -> object:
    return json.loads(home.paths.settings_file.read_text())["remoteControlEnabled"]


def test_bare_bootstrap_turns_remote_control_off_and_saved_keeps_it(home: Home) -> None:
    home.ok("enable-remote-control")

    output = home.ok("bootstrap", "--saved-remote-control")
    assert output["remoteControlEnabled"] is True
    record = home.record()
    assert record is not None
    assert record["remoteControlEnabled"] is True  # the app-server was launched with it

    output = home.ok("bootstrap")
    assert output["remoteControlEnabled"] is False
    assert saved_setting(home) is False
    assert home.ok("status", "--json")["appServer"]["remoteControlEnabled"] is False


def test_saved_remote_control_with_an_explicit_setting_is_refused(home: Home) -> None:
    home.ok("enable-remote-control")
    for flag in ("--remote-control", "--no-remote-control"):
        result = home.run("bootstrap", "--saved-remote-control", flag)
        assert result.returncode == 2
        assert result.stdout == ""
        assert f"--saved-remote-control and {flag} contradict each other" in result.stderr
    assert saved_setting(home) is True
    assert home.app_server_pids() == []
    assert not home.paths.updater_record.exists()


def test_bootstrap_help_documents_the_remote_control_options(home: Home) -> None:
    text = " ".join(home.run("bootstrap", "--help").stdout.split())
    assert "--saved-remote-control" in text
    assert "off, as codex's bootstrap does" in text
