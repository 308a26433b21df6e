"""The two flock(2) questions every command asks, light enough for the fast path:
is this lock held, and can I take it without waiting. supervisor/locks.py builds the
`lockfile`-style lock on them (`lockfile` imports logging and threading)."""

from __future__ import annotations

import errno
import fcntl
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    StrPath = str | os.PathLike[str]

# O_NONBLOCK: a FIFO planted in a lock's place must not hang us; O_NOFOLLOW: a lock
# swapped for a symlink must not make us lock a file elsewhere.
PROBE_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK


def try_flock(fd: int, operation: int) -> bool:
    """flock without waiting: False when someone else holds it."""
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    return True


def is_held(path: StrPath) -> bool:
    """Whether anyone holds the flock on `path`. A missing file, or a symlink (none of
    our workers holds one: they never follow one), is not held. OSError for anything
    else that keeps us from looking (for the caller to name)."""
    try:
        fd = os.open(path, PROBE_FLAGS)
    except FileNotFoundError:
        return False
    except OSError as error:
        if error.errno == errno.ELOOP:
            return False
        raise
    try:
        # Shared: two probes never see each other as the holder.
        return not try_flock(fd, fcntl.LOCK_SH)
    finally:
        os.close(fd)  # closing drops the probe's own lock, if it got one
