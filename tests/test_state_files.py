"""State files a sysadmin can `cat`: atomic, private, and errors that name the file.

Also process identity, which is what a pid record is checked against before any
signal is sent.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from supervisor.digest import file_digest
from supervisor.identity import (
    ProcessIdentity,
    current_boot_id,
    identity_of,
    lstart,
)
from supervisor.pidrecord import (
    PidRecord,
    read_record,
    record_from_json,
    remove_record,
    write_record,
)
from supervisor.settings import Settings, load_settings, save_settings
from supervisor.statefile import (
    StateFileError,
    read_json_object,
    write_atomic,
    write_json_atomic,
)
from tests.conftest import wait_for


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode_of(path: Path) -> int:
    return path.stat().st_mode & 0o777


# -- write_atomic -----------------------------------------------------------------------


def test_write_atomic_creates_a_0600_file_under_umask_022(tmp_path: Path, umask_022: None) -> None:
    path = tmp_path / "settings.json"
    write_atomic(path, b"{}\n")
    assert path.read_bytes() == b"{}\n"
    assert mode_of(path) == 0o600


def test_write_atomic_makes_an_existing_0644_file_0600(tmp_path: Path, umask_022: None) -> None:
    path = tmp_path / "settings.json"
    path.write_text("old")
    path.chmod(0o644)
    write_atomic(path, b"new")
    assert path.read_bytes() == b"new"
    assert mode_of(path) == 0o600


def test_write_atomic_replaces_the_file_rather_than_rewriting_its_inode(tmp_path: Path) -> None:
    path = tmp_path / "app-server.pid"
    path.write_text("old")
    before = path.stat().st_ino
    write_atomic(path, b"new")
    assert path.stat().st_ino != before


def test_write_atomic_replaces_a_symlink_instead_of_writing_through_it(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.txt"
    target.write_text("precious")
    target.chmod(0o644)
    path = tmp_path / "settings.json"
    path.symlink_to(target)
    write_atomic(path, b"{}\n")
    assert not path.is_symlink()
    assert path.read_bytes() == b"{}\n"
    assert target.read_text() == "precious"
    assert mode_of(target) == 0o644


def test_write_atomic_leaves_no_temp_files_behind(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    for index in range(3):
        write_atomic(path, f"{index}".encode())
    assert sorted(os.listdir(tmp_path)) == ["settings.json"]


def test_write_atomic_failure_names_the_file_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.mkdir()  # a rename cannot replace a directory with a file
    with pytest.raises(StateFileError, match=str(path)):
        write_atomic(path, b"{}")
    assert sorted(os.listdir(tmp_path)) == ["settings.json"]


def test_write_atomic_into_a_missing_directory_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "settings.json"
    with pytest.raises(StateFileError, match=str(path)):
        write_atomic(path, b"{}")


def test_write_json_atomic_writes_pretty_json_with_a_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    write_json_atomic(path, {"b": 1, "a": [True]})
    text = path.read_text()
    assert text.endswith("}\n")
    assert "\n  " in text
    assert json.loads(text) == {"b": 1, "a": [True]}
    assert list(json.loads(text)) == ["b", "a"]  # key order kept


# -- read_json_object -------------------------------------------------------------------


def test_read_json_object_of_a_missing_file_is_none(tmp_path: Path) -> None:
    assert read_json_object(tmp_path / "absent.json") is None


def test_read_json_object_returns_the_object(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"a": 1}')
    assert read_json_object(path) == {"a": 1}


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("{not json", "not valid JSON"),
        ("", "not valid JSON"),
        ("[1, 2]", "does not hold a JSON object"),
        ('"text"', "does not hold a JSON object"),
        ("null", "does not hold a JSON object"),
    ],
)
def test_read_json_object_errors_name_the_file(tmp_path: Path, content: str, why: str) -> None:
    path = tmp_path / "settings.json"
    path.write_text(content)
    with pytest.raises(StateFileError, match=str(path)) as raised:
        read_json_object(path)
    assert why in str(raised.value)


def test_read_json_object_of_undecodable_bytes_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_bytes(b"\xff\xfe{")
    with pytest.raises(StateFileError, match=str(path)):
        read_json_object(path)


def test_read_json_object_of_a_directory_names_it(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.mkdir()
    with pytest.raises(StateFileError, match=str(path)):
        read_json_object(path)


# -- settings.json ----------------------------------------------------------------------


def test_load_settings_gives_defaults_when_the_file_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    settings = load_settings(path)
    assert settings == Settings(remote_control_enabled=False, extra={})
    assert not path.exists()  # loading never writes


def test_load_settings_defaults_remote_control_off_when_the_key_is_missing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "settings.json"
    path.write_text('{"theme": "dark"}')
    assert load_settings(path) == Settings(remote_control_enabled=False, extra={"theme": "dark"})


@pytest.mark.parametrize("enabled", [False, True])
def test_settings_round_trip(tmp_path: Path, enabled: bool) -> None:
    path = tmp_path / "settings.json"
    save_settings(path, Settings(remote_control_enabled=enabled))
    assert load_settings(path).remote_control_enabled is enabled
    assert json.loads(path.read_text()) == {"remoteControlEnabled": enabled}
    assert mode_of(path) == 0o600


def test_save_settings_keeps_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text('{"remoteControlEnabled": false, "future": {"nested": [1, 2]}, "n": 3}')
    save_settings(path, load_settings(path).with_remote_control(True))
    assert json.loads(path.read_text()) == {
        "remoteControlEnabled": True,
        "future": {"nested": [1, 2]},
        "n": 3,
    }


@pytest.mark.parametrize("value", ['"yes"', "1", "0", "null", "[]"])
def test_load_settings_rejects_a_non_bool_remote_control_naming_the_file(
    tmp_path: Path, value: str
) -> None:
    path = tmp_path / "settings.json"
    path.write_text(f'{{"remoteControlEnabled": {value}}}')
    with pytest.raises(StateFileError, match=str(path)) as raised:
        load_settings(path)
    assert "remoteControlEnabled" in str(raised.value)


def test_load_settings_of_a_corrupt_file_names_it_and_leaves_it_alone(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text('{"remoteControlEnabled": tru')
    with pytest.raises(StateFileError, match=str(path)):
        load_settings(path)
    assert path.read_text() == '{"remoteControlEnabled": tru'


# -- pid records ------------------------------------------------------------------------

RECORD_JSON: dict[str, Any] = {
    "pid": 4242,
    # A string for codex, which reads this file as its own record; ours is the number.
    "processStartTime": lstart(1700000000.25),
    "processStartSeconds": 1700000000.25,
    "bootId": "3c1e6c1e-0000-4000-8000-000000000000",
    "executable": "/home/u/.codex/packages/standalone/releases/r1/codex",
    "executableDigest": "sha256:" + "ab" * 32,
    "processIdentity": {"bootId": "3c1e6c1e-0000-4000-8000-000000000000", "startTicks": 123456},
}


def full_record() -> PidRecord:
    return PidRecord(
        pid=4242,
        process_start_time=1700000000.25,
        boot_id="3c1e6c1e-0000-4000-8000-000000000000",
        executable="/home/u/.codex/packages/standalone/releases/r1/codex",
        executable_digest="sha256:" + "ab" * 32,
        remote_control_enabled=False,
        socket_path="/home/u/.codex/app-server-control/app-server-control.sock",
        version="0.169.0",
        start_ticks=123456,
    )


def test_record_round_trips_through_json(tmp_path: Path) -> None:
    path = tmp_path / "app-server.pid"
    record = full_record()
    assert record_from_json(path, record.to_json()) == record


def test_record_round_trips_through_the_file(tmp_path: Path) -> None:
    path = tmp_path / "app-server.pid"
    record = full_record()
    write_record(path, record)
    assert read_record(path) == record
    assert mode_of(path) == 0o600


def test_record_json_uses_the_contract_keys() -> None:
    assert full_record().to_json() == {
        **RECORD_JSON,
        "remoteControlEnabled": False,
        "socketPath": "/home/u/.codex/app-server-control/app-server-control.sock",
        "version": "0.169.0",
    }


def test_updater_record_leaves_out_the_app_server_keys(tmp_path: Path) -> None:
    path = tmp_path / "app-server-updater.pid"
    record = record_from_json(path, dict(RECORD_JSON))
    assert record.remote_control_enabled is None
    assert record.socket_path is None
    assert record.version is None
    assert record.to_json() == RECORD_JSON


def test_legacy_record_with_a_numeric_start_time_reads_as_float(tmp_path: Path) -> None:
    legacy = {key: item for key, item in RECORD_JSON.items() if key != "processStartSeconds"}
    record = record_from_json(tmp_path / "x.pid", {**legacy, "processStartTime": 1700000000})
    assert record.process_start_time == 1700000000.0
    assert isinstance(record.process_start_time, float)


def test_record_with_version_sets_only_the_version() -> None:
    record = full_record()
    updated = record.with_version("0.170.0")
    assert updated.version == "0.170.0"
    assert updated.replace(version=record.version) == record


def test_record_identity_is_pid_start_time_and_boot_id() -> None:
    record = full_record()
    assert record.identity == ProcessIdentity(4242, 1700000000.25, record.boot_id)


@pytest.mark.parametrize(
    "key", ["pid", "processStartSeconds", "bootId", "executable", "executableDigest"]
)
def test_record_missing_a_required_key_is_rejected_naming_the_file(
    tmp_path: Path, key: str
) -> None:
    path = tmp_path / "app-server.pid"
    value = {name: item for name, item in RECORD_JSON.items() if name != key}
    with pytest.raises(StateFileError, match=str(path)) as raised:
        record_from_json(path, value)
    assert key in str(raised.value)


@pytest.mark.parametrize(
    ("key", "bad"),
    [
        ("pid", "4242"),
        ("pid", True),
        ("pid", 42.5),
        ("processStartSeconds", "1700000000"),
        ("processStartSeconds", True),
        ("bootId", 7),
        ("executable", None),
        ("executableDigest", ["sha256:ab"]),
    ],
)
def test_record_with_a_wrongly_typed_required_key_is_rejected_naming_the_file(
    tmp_path: Path, key: str, bad: object
) -> None:
    path = tmp_path / "app-server.pid"
    with pytest.raises(StateFileError, match=str(path)):
        record_from_json(path, {**RECORD_JSON, key: bad})


@pytest.mark.parametrize("pid", [0, -1])
def test_record_with_a_non_positive_pid_is_rejected_naming_the_file(
    tmp_path: Path, pid: int
) -> None:
    # os.kill(0, ...) signals our own process group and os.kill(-1, ...) every process
    # we may signal: such a record must never get as far as an identity check.
    path = tmp_path / "app-server.pid"
    with pytest.raises(StateFileError, match=str(path)):
        record_from_json(path, {**RECORD_JSON, "pid": pid})


def test_record_keeps_unknown_keys_when_written_back(tmp_path: Path) -> None:
    path = tmp_path / "app-server.pid"
    value = {**RECORD_JSON, "version": "0.1.0", "launchedBy": "bootstrap", "future": [1]}
    record = record_from_json(path, value)
    assert record.extra == {"launchedBy": "bootstrap", "future": [1]}
    write_record(path, record.with_version("0.2.0"))
    assert json.loads(path.read_text()) == {**value, "version": "0.2.0"}


def test_read_record_of_a_missing_file_is_none(tmp_path: Path) -> None:
    assert read_record(tmp_path / "app-server.pid") is None


def test_read_record_of_a_corrupt_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "app-server.pid"
    path.write_text('{"pid": 4')
    with pytest.raises(StateFileError, match=str(path)):
        read_record(path)


def test_remove_record_removes_it_and_tolerates_absence(tmp_path: Path) -> None:
    path = tmp_path / "app-server.pid"
    write_record(path, full_record())
    remove_record(path)
    assert not path.exists()
    remove_record(path)


# -- identity ---------------------------------------------------------------------------


def test_identity_of_this_process_matches_itself() -> None:
    me = identity_of(os.getpid())
    assert me is not None
    assert me.pid == os.getpid()
    assert me.boot_id == current_boot_id()
    assert me.start_time == pytest.approx(psutil.Process().create_time())
    again = identity_of(os.getpid())
    assert again is not None
    assert me.same_process(again)


def test_identity_matches_a_record_written_from_it(tmp_path: Path) -> None:
    me = identity_of(os.getpid())
    assert me is not None
    path = tmp_path / "app-server.pid"
    record = PidRecord(
        me.pid, me.start_time, me.boot_id, sys.executable, file_digest(Path(sys.executable))
    )
    write_record(path, record)
    stored = read_record(path)
    assert stored is not None
    assert stored.identity.same_process(me)


@pytest.mark.parametrize(
    "change",
    [
        {"start_time": 1.0},  # the pid was reused by a later process
        {"start_time": -1.0},
        {"boot_id": "another-boot"},  # same pid and start time, but before a reboot
        {"pid": 1},
    ],
)
def test_a_different_start_time_boot_id_or_pid_does_not_match(change: dict[str, Any]) -> None:
    me = identity_of(os.getpid())
    assert me is not None
    if "start_time" in change:
        other = me.replace(start_time=me.start_time + change["start_time"])
    else:
        other = me.replace(**change)
    assert not me.same_process(other)
    assert not other.same_process(me)


def test_a_start_time_within_float_formatting_noise_matches() -> None:
    me = identity_of(os.getpid())
    assert me is not None
    assert me.same_process(me.replace(start_time=me.start_time + 0.001))


def test_identity_of_a_pid_that_does_not_exist_is_none() -> None:
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    assert identity_of(pid_max + 1) is None


def test_identity_of_an_exited_and_reaped_child_is_none() -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    assert identity_of(child.pid) is None


def test_identity_of_a_zombie_is_none() -> None:
    child = subprocess.Popen(["true"])
    try:
        wait_for(
            lambda: psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE,
            what="the child to become a zombie",
        )
        assert identity_of(child.pid) is None
    finally:
        child.wait()


@pytest.mark.parametrize("pid", [0, -1])
def test_identity_of_a_non_positive_pid_is_none(pid: int) -> None:
    assert identity_of(pid) is None


def test_current_boot_id_is_stable_and_not_empty() -> None:
    assert current_boot_id()
    assert current_boot_id() == current_boot_id()


@pytest.mark.parametrize("size", [0, 5, (1 << 20) + 17])
def test_file_digest_is_sha256_of_the_contents(tmp_path: Path, size: int) -> None:
    path = tmp_path / "codex"
    data = os.urandom(size)
    path.write_bytes(data)
    assert file_digest(path) == "sha256:" + hashlib.sha256(data).hexdigest()


def test_file_digest_follows_a_symlink_to_its_target(tmp_path: Path) -> None:
    target = tmp_path / "releases" / "r1" / "codex"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"#!/bin/sh\n")
    link = tmp_path / "current"
    link.symlink_to(target)
    assert file_digest(link) == file_digest(target)


@pytest.mark.parametrize(
    ("name", "writer"),
    [
        (".settings.json.123.abc_def9.tmp", 123),
        (".app-server.pid.77.x.tmp", 77),
        (".app-server.log.1.4242.copy.tmp", 4242),
        ("settings.json", None),
        (".settings.json.tmp", None),
        (".settings.json.12x.abc.tmp", None),
        (".settings.json.123..tmp", None),
        (".settings.json.123.a-b.tmp", None),
        ("..123.abc.tmp", None),
        (".x.١٢٣.abc.tmp", None),  # digits, but not ASCII ones
    ],
)
def test_temp_file_writer(name: str, writer: int | None) -> None:
    from supervisor.statefile import temp_file_writer

    assert temp_file_writer(name) == writer
