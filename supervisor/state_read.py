"""Reading a state file: only a regular file, never through a symlink, never blocking,
never more than 1 MiB, and JSON that is an object; anything else is one line naming
the file. Light to import (the command fast path reads the pid record and the caches
with it): JSON through supervisor.fastjson, and no contextlib (its import, with the
collections it brings, costs a millisecond or two on every command).
"""

from __future__ import annotations

import errno
import os
import stat

from supervisor import fastjson
from supervisor.errors import DaemonError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    StrPath = str | os.PathLike[str]

# Far above any state file codexd writes (a few hundred bytes): a bigger one is not ours.
STATE_FILE_MAX_BYTES = 1024 * 1024
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


def _unreadable(path: StrPath, error: OSError) -> str:
    if error.errno == errno.ELOOP:
        return f"cannot read {path}: it is a symlink; refusing to follow it"
    if error.errno == errno.EACCES:
        from supervisor.private_dir import describe_owner  # only this message needs it

        return f"cannot read {path}: permission denied ({describe_owner(path)})"
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        mode = stat.S_IFREG
    if not stat.S_ISREG(mode):
        return f"{path} is {file_kind(mode)}, not a state file"
    return f"cannot read {path}: {error.strerror or error}"


def read_state_file(path: StrPath) -> bytes | None:
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


def read_json_object(path: StrPath) -> dict[str, Any] | None:
    """The JSON object in `path`, None when the file does not exist.

    Raises StateFileError naming the file when it is unreadable or not an object."""
    data = read_state_file(path)
    if data is None:
        return None
    try:
        value = fastjson.loads(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise StateFileError(f"cannot read {path}: {error}") from error
    except ValueError as error:
        raise StateFileError(f"{path} is not valid JSON: {error}") from error
    except RecursionError as error:
        # Valid JSON nested deeper than the parser goes: no state file of ours.
        raise StateFileError(f"{path} is nested too deeply to be a state file") from error
    if not isinstance(value, dict):
        raise StateFileError(f"{path} does not hold a JSON object")
    return value
