"""Reading the workers' logs back for people: the last lines of each (`codexd logs`),
then, with `-f`, what is appended, across rotations, like `tail -F`.

How the logs are written and rotated is `logs.py`'s job; a follower only has to
notice the two ways a rotation shows: another file at the path (a rename) or the
same file, shorter (a copy-truncate).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import BinaryIO

TAIL_BLOCK_BYTES = 64 * 1024
SEEN_BYTES = 64
FOLLOW_POLL_SECONDS = 0.2

# Where each log shown stands: its (st_dev, st_ino) and the offset shown up to.
Shown = dict[Path, tuple[tuple[int, int], int]]

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


def header(path: Path) -> str:
    return f"==> {path} <=="


def print_tails(
    logs: dict[str, Path],
    count: int,
    out: BinaryIO,
    write_header: Callable[[str], None],
    warn: Callable[[str], None],
) -> Shown:
    """The last `count` lines of each log under a header; for each log shown, its
    (st_dev, st_ino) and the offset shown up to."""
    shown: Shown = {}
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
    shown: Shown,
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


def show_logs(logs: dict[str, Path], count: int, keep_following: bool) -> bool:
    """`codexd logs`: the tails on stdout, headers in colour on a terminal, warnings on
    stderr; then follow until SIGTERM or SIGINT when asked. False when no log was shown
    and none was followed (the command exits 1 then)."""
    # rich costs tens of milliseconds to import: only status and logs pay for it.
    from rich.console import Console
    from rich.text import Text

    console = Console(highlight=False, soft_wrap=True)
    out = sys.stdout.buffer

    def write_header(text: str) -> None:
        sys.stdout.flush()
        console.print(Text(text, style="bold cyan"))
        console.file.flush()

    def warn(message: str) -> None:
        print(f"codexd logs: {message}", file=sys.stderr, flush=True)

    shown = print_tails(logs, count, out, write_header, warn)
    if keep_following:
        follow(logs, out, write_header, warn, shown)
        return True
    return bool(shown)
