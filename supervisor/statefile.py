"""Atomic, private state files: a reader sees the old file or the new one, never half."""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any

from supervisor.errors import DaemonError
from supervisor.faults import pause_point
from supervisor.identity import identity_of

STATE_DIR_MODE = 0o700
STATE_FILE_MODE = 0o600
# `.<name>.<writer pid>.<random>.tmp`: the pid tells a dead writer's leftover from a
# live writer's work in progress.
_TEMP_FILE = re.compile(r"\.(?P<name>.+)\.(?P<pid>[0-9]+)\.[A-Za-z0-9_]+\.tmp")


class StateFileError(DaemonError):
    """A state file that cannot be read or written; the message names it."""


def ensure_private_dir(path: Path) -> None:
    """Create `path` (and parents) and make sure it is 0700: it holds pid records and
    logs that name our processes. Temp files left by writers killed mid-write go."""
    try:
        path.mkdir(mode=STATE_DIR_MODE, parents=True, exist_ok=True)
        if path.stat().st_mode & 0o777 != STATE_DIR_MODE:
            path.chmod(STATE_DIR_MODE)
    except OSError as error:
        raise StateFileError(f"cannot create state directory {path}: {error.strerror}") from error
    remove_stale_temp_files(path)


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


def write_atomic(path: Path, data: bytes) -> None:
    """Temp file in the same directory, fsync, rename over `path`.

    The rename replaces a symlink at `path` rather than writing through it."""
    import tempfile  # only writers pay for it: `version` and most `start`s write nothing

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


def write_json_atomic(path: Path, value: Any) -> None:
    write_atomic(path, (json.dumps(value, indent=2, sort_keys=False) + "\n").encode())


def read_json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`, None when the file does not exist.

    Raises StateFileError naming the file when it is unreadable or not an object."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise StateFileError(f"cannot read {path}: {error}") from error
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise StateFileError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(value, dict):
        raise StateFileError(f"{path} does not hold a JSON object")
    return value
