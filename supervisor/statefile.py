"""Atomic, private state files: a reader sees the old file or the new one, never half.

Reading them (supervisor/state_read.py, light enough for the command fast path) is as
careful as writing: a state file may have been replaced by anything (a FIFO that would
block us, a sparse gigabyte, JSON nested past the parser's depth), and each of those
is one line that names the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from supervisor.faults import pause_point
from supervisor.identity import identity_of
from supervisor.paths import HomePaths
from supervisor.private_dir import ensure_home
from supervisor.state_read import (
    STATE_FILE_MAX_BYTES,
    StateFileError,
    file_kind,
    read_json_object,
    read_state_file,
)

__all__ = [
    "STATE_FILE_MAX_BYTES",
    "StateFileError",
    "file_kind",
    "prepare_state_dir",
    "read_json_object",
    "read_state_file",
    "remove_stale_temp_files",
    "write_atomic",
    "write_json_atomic",
]

STATE_FILE_MODE = 0o600
# `.<name>.<writer pid>.<random>.tmp`: the pid tells a dead writer's leftover from a
# live writer's work in progress.
_TEMP_FILE = re.compile(r"\.(?P<name>.+)\.(?P<pid>[0-9]+)\.[A-Za-z0-9_]+\.tmp")


def prepare_state_dir(paths: HomePaths) -> None:
    """What every lifecycle command does before it takes daemon.lock: the home, the
    socket dir and the state dir are ours and private (`ensure_home`), nothing but a
    regular file (or a symlink, which no reader follows) sits where a state file
    belongs, and the temp files of writers killed mid-write are gone."""
    ensure_home(paths)
    for path in paths.state_files():
        with contextlib.suppress(FileNotFoundError):
            mode = os.lstat(path).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
                raise StateFileError(
                    f"{path} is {file_kind(mode)}, not a state file: move it out of the way "
                    "(codexd removes nothing it did not write)"
                )
    remove_stale_temp_files(paths.state_dir)


def remove_stale_temp_files(directory: Path) -> list[str]:
    """Remove the temp files of `write_atomic` calls whose process is gone (a SIGKILL
    between the write and the rename; a zombie counts as gone); the names removed."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(directory):
            match = _TEMP_FILE.fullmatch(entry.name)
            if match is None or identity_of(int(match["pid"])) is not None:
                continue
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(entry.name)
    return removed


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Temp file in the same directory, fsync, rename over `path`.

    The rename replaces a symlink at `path` rather than writing through it."""
    import tempfile  # only writers pay for it: `version` and most `start`s write nothing

    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp"
        )
    except OSError as error:
        raise StateFileError(f"cannot write {path}: {error.strerror}") from error
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), STATE_FILE_MODE)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        pause_point(f"staged-{path.name}")
        os.replace(tmp, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise StateFileError(f"cannot write {path}: {error.strerror}") from error


def write_json_atomic(path: str | os.PathLike[str], value: Any) -> None:
    write_atomic(path, (json.dumps(value, indent=2, sort_keys=False) + "\n").encode())
