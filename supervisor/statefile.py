"""Atomic, private state files: a reader sees the old file or the new one, never half.

Reading is as careful as writing: a state file may have been replaced by anything
(a FIFO that would block us, a sparse gigabyte, JSON nested past the parser's depth),
and each of those is one line that names the file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from supervisor.errors import DaemonError
from supervisor.faults import pause_point
from supervisor.identity import identity_of
from supervisor.paths import HomePaths
from supervisor.private_dir import describe_owner, ensure_home

STATE_FILE_MODE = 0o600
# Far above any state file codexd writes (a few hundred bytes): a bigger one is not ours.
STATE_FILE_MAX_BYTES = 1024 * 1024
# `.<name>.<writer pid>.<random>.tmp`: the pid tells a dead writer's leftover from a
# live writer's work in progress.
_TEMP_FILE = re.compile(r"\.(?P<name>.+)\.(?P<pid>[0-9]+)\.[A-Za-z0-9_]+\.tmp")
_FILE_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFLNK: "a symlink",
}


class StateFileError(DaemonError):
    """A state file that cannot be read or written; the message names it."""


def file_kind(mode: int) -> str:
    """What a file is, for messages: `a directory`, `a FIFO`, ..."""
    return _FILE_KINDS.get(stat.S_IFMT(mode), "not a regular file")


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


def _unreadable(path: Path, error: OSError) -> str:
    if error.errno == errno.ELOOP:
        return f"cannot read {path}: it is a symlink; refusing to follow it"
    if error.errno == errno.EACCES:
        return f"cannot read {path}: permission denied ({describe_owner(path)})"
    with contextlib.suppress(OSError):
        mode = os.lstat(path).st_mode
        if not stat.S_ISREG(mode):
            return f"{path} is {file_kind(mode)}, not a state file"
    return f"cannot read {path}: {error.strerror or error}"


def read_state_file(path: Path) -> bytes | None:
    """The bytes of the regular file `path`, None when it does not exist.

    O_NONBLOCK: a FIFO must not hang us (holding daemon.lock); O_NOFOLLOW: nobody
    redirects a state file elsewhere; the size cap keeps a sparse giant out of memory."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise StateFileError(_unreadable(path, error)) from error
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise StateFileError(f"{path} is {file_kind(st.st_mode)}, not a state file")
        chunks, size = [], 0
        while size <= STATE_FILE_MAX_BYTES and (chunk := os.read(fd, 65536)):
            chunks.append(chunk)
            size += len(chunk)
    except OSError as error:
        raise StateFileError(_unreadable(path, error)) from error
    finally:
        os.close(fd)
    if size > STATE_FILE_MAX_BYTES:
        raise StateFileError(
            f"{path} is larger than {STATE_FILE_MAX_BYTES // 1024 // 1024} MiB, "
            "too large to be a state file"
        )
    return b"".join(chunks)


def read_json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`, None when the file does not exist.

    Raises StateFileError naming the file when it is unreadable or not an object."""
    data = read_state_file(path)
    if data is None:
        return None
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise StateFileError(f"cannot read {path}: {error}") from error
    except json.JSONDecodeError as error:
        raise StateFileError(f"{path} is not valid JSON: {error}") from error
    except RecursionError as error:
        # Valid JSON nested deeper than the parser goes: no state file of ours.
        raise StateFileError(f"{path} is nested too deeply to be a state file") from error
    if not isinstance(value, dict):
        raise StateFileError(f"{path} does not hold a JSON object")
    return value
