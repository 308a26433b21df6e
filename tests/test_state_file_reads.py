"""Reading a state file someone replaced: a FIFO, a sparse giant, JSON nested past the
parser's depth, a symlink, a file we may not read. Each is one error naming the file,
at once, whichever reader meets it."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from supervisor.managed import managed_version
from supervisor.pidrecord import read_record
from supervisor.settings import load_settings
from supervisor.statefile import STATE_FILE_MAX_BYTES, StateFileError, read_json_object
from tests.second_user import acting_as

DEEP_JSON = "[" * 5000 + "]" * 5000
DEEP_OBJECT = '{"a": ' * 5000 + "1" + "}" * 5000
STRANGER_UID = 4242

READERS: dict[str, Callable[[Path], Any]] = {
    "read_json_object": read_json_object,
    "load_settings": load_settings,
    "read_record": read_record,
}


@pytest.mark.parametrize("reader", READERS.values(), ids=READERS.keys())
@pytest.mark.parametrize("content", [DEEP_JSON, DEEP_OBJECT], ids=["array", "object"])
def test_json_nested_past_the_parsers_depth_is_named(
    tmp_path: Path, reader: Callable[[Path], Any], content: str
) -> None:
    path = tmp_path / "state.json"
    path.write_text(content)
    with pytest.raises(StateFileError) as raised:
        reader(path)
    assert str(raised.value) == f"{path} is nested too deeply to be a state file"


@pytest.mark.parametrize("reader", READERS.values(), ids=READERS.keys())
def test_a_fifo_is_named_at_once(tmp_path: Path, reader: Callable[[Path], Any]) -> None:
    path = tmp_path / "settings.json"
    os.mkfifo(path)
    began = time.monotonic()
    with pytest.raises(StateFileError) as raised:
        reader(path)
    assert time.monotonic() - began < 1.0
    assert str(raised.value) == f"{path} is a FIFO, not a state file"


def test_a_socket_is_named(tmp_path: Path) -> None:
    path = tmp_path / "app-server.pid"
    with socket.socket(socket.AF_UNIX) as bound:
        bound.bind(str(path))
        with pytest.raises(StateFileError) as raised:
            read_json_object(path)
    assert str(raised.value) == f"{path} is a socket, not a state file"


def test_a_sparse_giant_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    with path.open("wb") as file:
        file.truncate(1 << 30)  # 1 GiB, no blocks
    began = time.monotonic()
    with pytest.raises(StateFileError) as raised:
        load_settings(path)
    assert time.monotonic() - began < 1.0
    assert str(raised.value) == f"{path} is larger than 1 MiB, too large to be a state file"


def test_a_file_at_the_size_limit_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    padding = STATE_FILE_MAX_BYTES - len('{"pad": ""}')
    path.write_text('{"pad": "' + "x" * padding + '"}')
    assert path.stat().st_size == STATE_FILE_MAX_BYTES
    assert load_settings(path).extra == {"pad": "x" * padding}


def test_a_symlink_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.json"
    target.write_text('{"remoteControlEnabled": true}')
    path = tmp_path / "settings.json"
    path.symlink_to(target)
    with pytest.raises(StateFileError) as raised:
        load_settings(path)
    assert str(raised.value) == f"cannot read {path}: it is a symlink; refusing to follow it"


def test_a_file_we_may_not_read_names_its_owner() -> None:
    directory = Path(tempfile.mkdtemp(prefix="cxs-", dir="/tmp"))
    try:
        directory.chmod(0o755)
        path = directory / "app-server.pid"
        path.write_text("{}")
        path.chmod(0o600)
        with acting_as(STRANGER_UID), pytest.raises(StateFileError) as raised:
            read_record(path)
        assert str(raised.value) == (
            f"cannot read {path}: permission denied (owned by uid 0 (root), mode 0600)"
        )
    finally:
        shutil.rmtree(directory)


def test_a_corrupt_managed_binary_cache_is_only_a_cache(tmp_path: Path) -> None:
    binary = tmp_path / "codex"
    binary.write_text("#!/bin/sh\necho 'codex 1.2.3'\n")
    binary.chmod(0o755)
    cache = tmp_path / "managed-binary.json"
    cache.write_text(DEEP_JSON)
    assert managed_version(binary, cache) == "1.2.3"
    assert read_json_object(cache) is not None  # rewritten
