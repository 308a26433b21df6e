"""flock-backed locks with the `lockfile` package's interface.

`lockfile`'s own classes mark a lock by creating files, which a SIGKILL leaves
behind; an `flock` belongs to an open file description, so the kernel drops it
however the holder dies. The interface (and the exception classes) are
`lockfile`'s so that python-daemon's `DaemonContext(pidfile=...)` takes it.
The lock file itself is never deleted: its inode is what everyone locks.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from lockfile import AlreadyLocked, LockFailed, LockTimeout, NotLocked, NotMyLock

from supervisor.errors import DaemonError
from supervisor.flock import is_held, try_flock
from supervisor.identity import command_line, process_state
from supervisor.lean import Value
from supervisor.private_dir import describe_owner

__all__ = [
    "AlreadyLocked",
    "FlockLock",
    "LockFailed",
    "LockFileError",
    "LockTimeout",
    "NotLocked",
    "NotMyLock",
]

LOCK_RETRY_SECONDS = 0.01
PROBE_PATIENCE_SECONDS = 0.05
PROC_LOCKS = Path("/proc/locks")
# A wait this short is routine (another command finishing) and not worth a line.
QUIET_WAIT_SECONDS = 0.5


class LockFileError(LockFailed, DaemonError):  # type: ignore[misc] # lockfile is untyped
    """A lock file that cannot be opened; the message names it (and its owner when
    we may not open it). A DaemonError too, so a command shows it as one line."""


def _reason(path: Path, error: OSError) -> str:
    if error.errno == errno.ELOOP:
        return "it is a symlink; refusing to follow it (remove it)"
    if error.errno in (errno.EACCES, errno.EPERM):
        # Typically left by `sudo codexd ...` in a user's home.
        return f"permission denied ({describe_owner(path)}); run codexd as its owner"
    return error.strerror or str(error)


def cannot_open(path: Path | str, error: OSError) -> LockFileError:
    """The error for a lock file that cannot be opened, naming why."""
    return LockFileError(f"cannot open lock file {path}: {_reason(Path(path), error)}")


def lock_holders(path: Path) -> list[int]:
    """Pids that have `path` open, from /proc: who may hold its flock. flock records
    no owner the kernel shows reliably (a lock passed on through fork or exec keeps
    its first owner's pid in /proc/locks), so this is for messages, not decisions."""
    try:
        target = os.stat(path)
    except OSError:
        return []
    holders = []
    with contextlib.suppress(OSError):
        for process in os.scandir("/proc"):
            if not process.name.isdigit() or int(process.name) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                for fd in os.scandir(f"/proc/{process.name}/fd"):
                    with contextlib.suppress(OSError):
                        opened = os.stat(fd.path)
                        if (opened.st_dev, opened.st_ino) == (target.st_dev, target.st_ino):
                            holders.append(int(process.name))
                            break
    return sorted(holders)


def _has_open(pid: int, target: os.stat_result) -> bool:
    with contextlib.suppress(OSError):
        for fd in os.scandir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                opened = os.stat(fd.path)
                if (opened.st_dev, opened.st_ino) == (target.st_dev, target.st_ino):
                    return True
    return False


def _flock_owner_pids(inode: int) -> list[int]:
    """The pids /proc/locks names for the granted flocks on `inode`; waiters (lines
    with `->`) are left out."""
    try:
        text = PROC_LOCKS.read_text()
    except OSError:
        return []
    pids = []
    for line in text.splitlines():
        fields = line.split()  # `1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF`
        if len(fields) < 6 or fields[1] != "FLOCK":
            continue
        with contextlib.suppress(ValueError, IndexError):
            if int(fields[5].rsplit(":", 1)[1]) == inode:
                pids.append(int(fields[4]))
    return pids


class LockHolder(Value):
    """A process that holds (or may hold) a lock, as a message shows it."""

    __slots__ = ("command", "pid", "state")

    def __init__(self, pid: int, command: str | None, state: str | None) -> None:
        self.pid = pid
        self.command = command
        self.state = state  # `sleeping`, `stopped`, ... (identity.process_state)

    def describe(self) -> str:
        return f"pid {self.pid} ({self.command or 'command unknown'}; {self.state or 'gone'})"


def who_holds(path: Path) -> list[LockHolder]:
    """Who holds the flock on `path`, for messages: the process /proc/locks names when
    it still has the file open, else every process that has it open (a lock passed on
    through fork or exec may keep a departed owner's pid in /proc/locks)."""
    try:
        target = os.stat(path)
    except OSError:
        return []
    pids = [pid for pid in _flock_owner_pids(target.st_ino) if _has_open(pid, target)]
    if not pids:
        pids = lock_holders(path)
    return [LockHolder(pid, command_line(pid), process_state(pid)) for pid in dict.fromkeys(pids)]


def describe_who_holds(path: Path) -> str:
    """`pid 123 (codexd stop; stopped)`, or `an unknown process`."""
    return ", ".join(holder.describe() for holder in who_holds(path)) or "an unknown process"


def acquire_naming_holder(
    lock: FlockLock, timeout: float, what: str, notice: Callable[[str], None]
) -> None:
    """`lock.acquire(timeout)`, except that a busy lock is explained: once through
    `notice` when the wait starts (after QUIET_WAIT_SECONDS), and again in the
    LockTimeout, each naming the holder, so nobody waits in silence behind a stopped
    process."""
    started = time.monotonic()
    try:
        lock.acquire(timeout=min(QUIET_WAIT_SECONDS, timeout))
        return
    except (AlreadyLocked, LockTimeout):
        pass
    notice(
        f"waiting up to {timeout:g} s for {what} {lock.path}, held by "
        f"{describe_who_holds(lock.path)}"
    )
    try:
        lock.acquire(timeout=max(timeout - (time.monotonic() - started), LOCK_RETRY_SECONDS))
    except LockTimeout as error:
        raise LockTimeout(
            f"timed out after {timeout:g} s waiting for {what} {lock.path}, held by "
            f"{describe_who_holds(lock.path)}"
        ) from error


class FlockLock:
    """An exclusive `flock` on `path`, created 0600 if missing."""

    def __init__(
        self, path: Path, timeout: float | None = None, retry_seconds: float = LOCK_RETRY_SECONDS
    ) -> None:
        self.path = Path(path)
        self.timeout = timeout  # used when acquire() is given none, as in lockfile
        self.retry_seconds = retry_seconds
        self.fd: int | None = None

    def _open(self) -> int:
        # O_NOFOLLOW: a lock file swapped for a symlink must not make us create or lock
        # a file elsewhere.
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except OSError as error:
            raise cannot_open(self.path, error) from error

    def acquire(self, timeout: float | None = None) -> None:
        """Block until locked. `timeout` None waits forever, <= 0 tries briefly
        (AlreadyLocked), > 0 waits that long (LockTimeout)."""
        if self.fd is not None:
            return
        if timeout is None:
            timeout = self.timeout
        fd = self._open()
        try:
            if timeout is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                # "Try once" still retries for a moment: an `is_locked` probe elsewhere
                # holds a shared lock for microseconds, and must not read as a holder.
                patience = timeout if timeout > 0 else PROBE_PATIENCE_SECONDS
                deadline = time.monotonic() + patience
                while not try_flock(fd, fcntl.LOCK_EX):
                    if time.monotonic() >= deadline:
                        if timeout <= 0:
                            raise AlreadyLocked(f"{self.path} is locked by another process")
                        raise LockTimeout(f"timed out after {timeout:g} s waiting for {self.path}")
                    time.sleep(self.retry_seconds)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd

    def release(self) -> None:
        if self.fd is None:
            if self.is_locked():
                raise NotMyLock(f"{self.path} is locked by another process")
            raise NotLocked(f"{self.path} is not locked")
        fd, self.fd = self.fd, None
        os.close(fd)

    def is_locked(self) -> bool:
        """True while anyone, this object included, holds the lock."""
        if self.fd is not None:
            return True
        try:
            return is_held(self.path)
        except OSError as error:
            raise cannot_open(self.path, error) from error

    def i_am_locking(self) -> bool:
        return self.fd is not None

    def break_lock(self) -> None:
        """Drop our own hold. Another process's flock cannot be broken and need not
        be: the kernel releases it when that process dies."""
        if self.fd is not None:
            self.release()

    def inheritable_fd(self) -> int:
        """The held lock's fd, marked to survive `execv`, so the exec'd worker holds it."""
        if self.fd is None:
            raise NotLocked(f"{self.path} is not locked")
        os.set_inheritable(self.fd, True)
        return self.fd

    def __enter__(self) -> FlockLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
