"""The workers' logs: bounded by size, rotated, and read back for people.

`app-server.log` becomes `app-server.log.1`, `.1` becomes `.2`, ... up to
CODEXD_LOG_KEEP rotated files, so a log takes at most (keep + 1) * max bytes
plus what is written between two checks. Two ways to rotate:
- by rename, before a worker is launched: nobody writes the file then;
- by copy-truncate, while a worker runs: the worker keeps its fd, which it opened
  with O_APPEND, so after the truncation its next write lands at the new end (0).
  Lines written between the copy and the truncation are lost.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import BinaryIO

from supervisor.config import LogSettings, log_settings
from supervisor.paths import HomePaths
from supervisor.statefile import STATE_FILE_MODE

TAIL_BLOCK_BYTES = 64 * 1024
SEEN_BYTES = 64


def worker_logs(paths: HomePaths) -> dict[str, Path]:
    """The workers' logs by the name `codexd logs` takes."""
    return {"app-server": paths.app_server_log, "updater": paths.updater_log}


# -- decisions ---------------------------------------------------------------------


def needs_rotation(size: int, max_bytes: int) -> bool:
    return size >= max_bytes > 0


def rotated_path(path: Path, number: int) -> Path:
    return path if number == 0 else path.with_name(f"{path.name}.{number}")


def shift_moves(keep: int) -> list[tuple[int, int]]:
    """Renames that make room for a new `.1`, oldest first: (keep-1 -> keep) ... (1 -> 2).
    The move of the live log to `.1` (a rename or a copy) comes after them."""
    return [(number, number + 1) for number in range(keep - 1, 0, -1)]


def excess_numbers(existing: Iterable[int], keep: int) -> list[int]:
    """Rotated files past `keep` (left by a larger CODEXD_LOG_KEEP), to delete."""
    return sorted(number for number in set(existing) if number > keep)


def rotated_numbers(path: Path) -> list[int]:
    """The N of every `path.N` present."""
    prefix = path.name + "."
    numbers = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(path.parent):
            suffix = entry.name[len(prefix) :] if entry.name.startswith(prefix) else ""
            if suffix.isdigit() and not suffix.startswith("0"):
                numbers.append(int(suffix))
    return sorted(numbers)


# -- rotation ----------------------------------------------------------------------


@contextlib.contextmanager
def _rotation_lock(directory: Path) -> Iterator[None]:
    """Serializes rotations of one state dir (the updater and a lifecycle command may
    check at once). The directory itself is locked: its inode outlives every log."""
    fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _make_room(path: Path, keep: int) -> None:
    for number in excess_numbers(rotated_numbers(path), keep):
        with contextlib.suppress(FileNotFoundError):
            rotated_path(path, number).unlink()
    for source, target in shift_moves(keep):
        with contextlib.suppress(FileNotFoundError):
            os.replace(rotated_path(path, source), rotated_path(path, target))


def _copy_private(source: Path, target: Path) -> None:
    # `.<name>.<pid>.<tag>.tmp`, as write_atomic names its temp files, so a killed
    # copy's leftover is swept like theirs (see statefile.remove_stale_temp_files).
    temporary = target.with_name(f".{target.name}.{os.getpid()}.copy.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out, open(source, "rb") as data:
            shutil.copyfileobj(data, out)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise


def rotate_log(path: Path, max_bytes: int, keep: int, *, copy_truncate: bool = False) -> bool:
    """Rotate `path` when it holds `max_bytes` or more; True when it did.

    By rename unless `copy_truncate` (for a log a running worker writes). With
    keep = 0 the log is emptied and nothing is kept. Every file is left 0600."""
    if not needs_rotation(_size(path), max_bytes):
        return False
    with _rotation_lock(path.parent):
        if not needs_rotation(_size(path), max_bytes):
            return False  # another process rotated it while we waited
        _make_room(path, keep)
        first = rotated_path(path, 1)
        if copy_truncate:
            if keep > 0:
                _copy_private(path, first)
            os.truncate(path, 0)
        elif keep > 0:
            os.replace(path, first)
        else:
            path.unlink()
        for number in range(1, keep + 1):
            with contextlib.suppress(FileNotFoundError):
                os.chmod(rotated_path(path, number), STATE_FILE_MODE)
    return True


def rotate_before_launch(log: Path, settings: LogSettings | None = None) -> bool:
    """Rotate a worker's log by rename; call it under daemon.lock, before the launch,
    when no worker writes that log."""
    settings = settings or log_settings()
    try:
        return rotate_log(log, settings.max_bytes, settings.keep)
    except OSError:
        return False  # a log that cannot be rotated grows; the launch goes on


def rotate_if_needed(paths: HomePaths, settings: LogSettings | None = None) -> list[Path]:
    """Copy-truncate every worker log that has grown past the limit; the logs rotated.

    Safe while the workers run. An I/O error (a full disk, say) leaves that log as it
    was: rotation must never be why a lifecycle command or the updater fails."""
    settings = settings or log_settings()
    rotated = []
    for log in worker_logs(paths).values():
        try:
            if rotate_log(log, settings.max_bytes, settings.keep, copy_truncate=True):
                rotated.append(log)
        except OSError:
            continue
    return rotated


# -- reading -----------------------------------------------------------------------


def last_lines(data: bytes, count: int) -> bytes:
    """The last `count` lines of `data` (a final line without a newline counts)."""
    if count <= 0 or not data:
        return b""
    body = data[:-1] if data.endswith(b"\n") else data
    cut = len(body)
    for _ in range(count):
        cut = body.rfind(b"\n", 0, cut)
        if cut < 0:
            return data
    return data[cut + 1 :]


def tail_file(path: Path, count: int) -> bytes:
    """The last `count` lines of the file, read backwards a block at a time."""
    return tail_with_end(path, count)[0]


def tail_with_end(path: Path, count: int) -> tuple[bytes, tuple[int, int], int]:
    """The last `count` lines, the file's (st_dev, st_ino) and the offset read up to:
    where following it goes on."""
    with open(path, "rb") as file:
        stat = os.fstat(file.fileno())
        end = file.seek(0, os.SEEK_END)
        start = end
        data = b""
        while start > 0 and data.count(b"\n") <= count:
            start = max(0, start - TAIL_BLOCK_BYTES)
            file.seek(start)
            data = file.read(end - start)
    return last_lines(data, count), (stat.st_dev, stat.st_ino), end


class FollowAction(Enum):
    READ = "read"  # same file: read what was appended
    FROM_TOP = "fromTop"  # same file, now shorter: it was truncated
    REOPEN = "reopen"  # another file at the path: the old one was renamed away
    WAIT = "wait"  # nothing at the path (yet)


@dataclass(frozen=True)
class FileFacts:
    inode: tuple[int, int]  # (st_dev, st_ino)
    size: int
    # The bytes just before our position are still the ones we read: False when the
    # file was truncated and has grown past our position again since the last look.
    seen_bytes_unchanged: bool = True


def follow_action(
    opened: tuple[int, int] | None, position: int, now: FileFacts | None
) -> FollowAction:
    if now is None:
        return FollowAction.WAIT
    if opened is None or now.inode != opened:
        return FollowAction.REOPEN
    if now.size < position or not now.seen_bytes_unchanged:
        return FollowAction.FROM_TOP
    return FollowAction.READ


class LogFollower:
    """`tail -F` for one file: reads what is appended, across renames and truncations."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._inode: tuple[int, int] | None = None
        self.position = 0
        self._seen = b""  # the last bytes read, up to SEEN_BYTES

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    def resume(self, inode: tuple[int, int], position: int) -> None:
        """Go on from `position` in the file `inode` (what was printed already); from
        the top of the file now at the path if that one was rotated away meanwhile."""
        if self._open() and self._fd is not None and self._inode == inode:
            self.position = position
            start = max(0, position - SEEN_BYTES)
            self._seen = os.pread(self._fd, position - start, start)

    def _open(self) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        self.close()
        stat = os.fstat(fd)
        self._fd, self._inode, self.position = fd, (stat.st_dev, stat.st_ino), 0
        self._seen = b""
        return True

    def _read_rest(self) -> bytes:
        if self._fd is None:
            return b""
        chunks = []
        while chunk := os.pread(self._fd, TAIL_BLOCK_BYTES, self.position):
            chunks.append(chunk)
            self.position += len(chunk)
        data = b"".join(chunks)
        if data:
            self._seen = (self._seen + data)[-SEEN_BYTES:]
        return data

    def _facts(self) -> FileFacts | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        inode = (stat.st_dev, stat.st_ino)
        unchanged = True
        if self._fd is not None and inode == self._inode and self._seen:
            start = self.position - len(self._seen)
            unchanged = os.pread(self._fd, len(self._seen), start) == self._seen
        return FileFacts(inode, stat.st_size, unchanged)

    def poll(self) -> tuple[bytes, FollowAction]:
        """What was appended since the last poll, and what was noticed on the way."""
        action = follow_action(self._inode, self.position, self._facts())
        if action is FollowAction.FROM_TOP:
            self.position, self._seen = 0, b""
        if action is FollowAction.REOPEN:
            rest = self._read_rest()  # the end of the file that was renamed away
            self._open()
            return rest + self._read_rest(), action
        return self._read_rest(), action

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# -- `codexd logs` -------------------------------------------------------------------

FOLLOW_POLL_SECONDS = 0.2


def header(path: Path) -> str:
    return f"==> {path} <=="


def print_tails(
    logs: dict[str, Path],
    count: int,
    out: BinaryIO,
    write_header: Callable[[str], None],
    warn: Callable[[str], None],
) -> dict[Path, tuple[tuple[int, int], int]]:
    """The last `count` lines of each log under a header; for each log shown, its
    (st_dev, st_ino) and the offset shown up to."""
    shown: dict[Path, tuple[tuple[int, int], int]] = {}
    for path in logs.values():
        try:
            data, inode, end = tail_with_end(path, count)
        except FileNotFoundError:
            warn(f"{path} does not exist yet")
            continue
        except OSError as error:
            warn(f"cannot read {path}: {error.strerror}")
            continue
        shown[path] = (inode, end)
        if len(shown) > 1:
            out.write(b"\n")
            out.flush()
        write_header(header(path))
        out.write(data)
        if data and not data.endswith(b"\n"):
            out.write(b"\n")
        out.flush()
    return shown


def follow(
    logs: dict[str, Path],
    out: BinaryIO,
    write_header: Callable[[str], None],
    warn: Callable[[str], None],
    shown: dict[Path, tuple[tuple[int, int], int]],
) -> None:
    """`tail -F` over the logs until SIGTERM or SIGINT: new lines under a header each
    time the file they come from changes, across rotations (rename or truncation)."""
    from supervisor.signals import SignalInbox

    inbox = SignalInbox((signal.SIGTERM, signal.SIGINT))
    followers = [LogFollower(path) for path in logs.values()]
    for follower in followers:
        if follower.path in shown:
            follower.resume(*shown[follower.path])
    # A log missing from the tails is read from its top once it appears.
    last_shown = list(shown)[-1] if shown else None
    try:
        while True:
            for follower in followers:
                had_file = follower.is_open
                data, action = follower.poll()
                if action is FollowAction.FROM_TOP:
                    warn(f"{follower.path}: file truncated")
                elif action is FollowAction.REOPEN and had_file:
                    warn(f"{follower.path} has been replaced; following the new file")
                if not data:
                    continue
                if follower.path != last_shown:
                    out.write(b"\n" if last_shown is not None else b"")
                    out.flush()
                    write_header(header(follower.path))
                    last_shown = follower.path
                out.write(data)
                out.flush()
            if inbox.wait(FOLLOW_POLL_SECONDS):
                return
    finally:
        for follower in followers:
            follower.close()
        inbox.close()
