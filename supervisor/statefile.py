"""Atomic, private state files: a reader sees the old file or the new one, never half.

Reading them (supervisor/state_read.py, light enough for the command fast path) is as
careful as writing: a state file may have been replaced by anything (a FIFO that would
block us, a sparse gigabyte, JSON nested past the parser's depth), and each of those
is one line that names the file.
"""

from __future__ import annotations

import errno
import os
import stat

from supervisor import fastjson
from supervisor.faults import pause_point
from supervisor.identity import identity_of
from supervisor.paths import STATE_FILE_NAMES, HomePaths
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
    "temp_file_writer",
    "write_atomic",
    "write_json_atomic",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    StrPath = str | os.PathLike[str]

STATE_FILE_MODE = 0o600
TEMP_SUFFIX = ".tmp"


def prepare_state_dir(paths: HomePaths) -> None:
    """What every lifecycle command does before it takes daemon.lock: the home, the
    socket dir and the state dir are ours and private (`ensure_home`), nothing but a
    regular file (or a symlink, which no reader follows) sits where a state file
    belongs, and the temp files of writers killed mid-write are gone."""
    ensure_home(paths)
    check_state_files(paths.state_dir)
    remove_stale_temp_files(paths.state_dir)


def check_state_files(state_dir: StrPath) -> None:
    """Nothing but a regular file (or a symlink, which no reader follows) sits where a
    state file belongs: a FIFO would block a reader, a directory fail a writer."""
    for name in STATE_FILE_NAMES:
        path = os.path.join(state_dir, name)
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            continue
        if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
            raise StateFileError(
                f"{path} is {file_kind(mode)}, not a state file: move it out of the way "
                "(codexd removes nothing it did not write)"
            )


def temp_file_writer(name: str) -> int | None:
    """The writer's pid in the name of a `write_atomic` temp file,
    `.<name>.<writer pid>.<random>.tmp`; None for any other name. (No regular
    expression: `re` is slow to import for every command.)"""
    if not (name.startswith(".") and name.endswith(TEMP_SUFFIX)):
        return None
    parts = name[1 : -len(TEMP_SUFFIX)].rsplit(".", 2)
    if len(parts) != 3 or not parts[0]:
        return None
    _, pid, random = parts
    if not (pid.isascii() and pid.isdigit() and random and random.replace("_", "").isalnum()):
        return None
    if not random.isascii():
        return None
    return int(pid)


def remove_stale_temp_files(directory: StrPath) -> list[str]:
    """Remove the temp files of `write_atomic` calls whose process is gone (a SIGKILL
    between the write and the rename; a zombie counts as gone); the names removed."""
    # try/except rather than contextlib.suppress: contextlib is slow to import for `start`.
    removed: list[str] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        writer = temp_file_writer(entry.name)
        if writer is None or identity_of(writer) is not None:
            continue
        try:
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append(entry.name)
    return removed


def _create_temp_file(path: str) -> tuple[int, str]:
    """`.<name>.<pid>.<random>.tmp` beside `path`, created as `tempfile.mkstemp` does
    (exclusively, 0600, not through a symlink). Not through `tempfile`: it imports
    `random` and `shutil`, which would stay in the keeper's memory."""
    directory, name = os.path.split(path)
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(100):
        tmp = os.path.join(directory, f".{name}.{os.getpid()}.{os.urandom(6).hex()}{TEMP_SUFFIX}")
        try:
            return os.open(tmp, flags, STATE_FILE_MODE), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unused temporary file name", path)


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Temp file in the same directory, fsync, rename over `path`.

    The rename replaces a symlink at `path` rather than writing through it."""
    path = os.fspath(path)
    try:
        fd, tmp = _create_temp_file(path)
    except OSError as error:
        raise StateFileError(f"cannot write {path}: {error.strerror}") from error
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), STATE_FILE_MODE)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        pause_point(f"staged-{os.path.basename(path)}")
        os.replace(tmp, path)
    except OSError as error:
        try:
            os.unlink(tmp)
        except OSError:
            pass  # the error that matters is the one raised below
        raise StateFileError(f"cannot write {path}: {error.strerror}") from error


def write_json_atomic(path: str | os.PathLike[str], value: Any) -> None:
    """Pretty (indented) JSON, for people to read, as `json.dumps(value, indent=2)`
    writes it."""
    write_atomic(path, (fastjson.dumps_indented(value) + "\n").encode())
