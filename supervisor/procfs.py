"""Process facts read straight from /proc: who descends from whom, who is in a
session, who has a file open.

Read by hand rather than through psutil: the keeper asks these questions and must stay
small (psutil alone would add 2 MB to its memory), and each is one pass over /proc.
For the same reason no `dataclasses`, `pathlib` or `contextlib`: paths are strings.
"""

from __future__ import annotations

import os

from supervisor.lean import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

    StrPath = str | os.PathLike[str]


class ProcStat(Value):
    """The fields of /proc/<pid>/stat codexd uses."""

    __slots__ = ("pgid", "pid", "ppid", "sid", "start_ticks", "state")

    def __init__(
        self, pid: int, state: str, ppid: int, pgid: int, sid: int, start_ticks: int
    ) -> None:
        self.pid = pid
        self.state = state  # "R", "S", "Z" (zombie), ...
        self.ppid = ppid
        self.pgid = pgid
        self.sid = sid
        self.start_ticks = start_ticks  # clock ticks after boot

    @property
    def is_zombie(self) -> bool:
        return self.state in ("Z", "X")


def parse_stat(pid: int, text: bytes) -> ProcStat | None:
    """/proc/<pid>/stat's line; the command name (field 2) may hold spaces and
    parentheses, so the fields are split after its last `)`."""
    try:
        fields = text.rsplit(b")", 1)[1].split()
        return ProcStat(
            pid=pid,
            state=fields[0].decode(),
            ppid=int(fields[1]),
            pgid=int(fields[2]),
            sid=int(fields[3]),
            start_ticks=int(fields[19]),
        )
    except (IndexError, ValueError):
        return None


def proc_stat(pid: int) -> ProcStat | None:
    """None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return parse_stat(pid, stat.read())
    except OSError:
        return None


def all_processes() -> Iterator[ProcStat]:
    try:
        entries = list(os.scandir("/proc"))
    except OSError:
        return
    for entry in entries:
        if entry.name.isdigit():
            stat = proc_stat(int(entry.name))
            if stat is not None:
                yield stat


def descendants_in(processes: list[ProcStat], root: int) -> list[ProcStat]:
    """Every live process below `root` in the parent tree, zombies left out (they
    hold nothing but an exit status)."""
    children: dict[int, list[ProcStat]] = {}
    for process in processes:
        children.setdefault(process.ppid, []).append(process)
    found: list[ProcStat] = []
    pending = [root]
    while pending:
        for child in children.get(pending.pop(), []):
            if child.pid == root or child in found:
                continue
            found.append(child)
            pending.append(child.pid)
    return [process for process in found if not process.is_zombie]


def descendants(root: int) -> list[ProcStat]:
    return descendants_in(list(all_processes()), root)


def session_members(sid: int, started_after_ticks: int) -> list[ProcStat]:
    """Live processes of session `sid` that started at or after `started_after_ticks`:
    what a dead keeper's app-server left behind (a session id outlives its leader, so
    the start time keeps a reused one out)."""
    return [
        process
        for process in all_processes()
        if process.sid == sid
        and process.start_ticks >= started_after_ticks
        and not process.is_zombie
        and process.pid != os.getpid()
    ]


def environment_value(pid: int, name: str) -> str | None:
    """`name` in the environment process `pid` started with; None when unset or not
    readable (another user's process)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as environ:
            entries = environ.read().split(b"\0")
    except OSError:
        return None
    prefix = os.fsencode(name) + b"="
    for entry in entries:
        if entry.startswith(prefix):
            return os.fsdecode(entry[len(prefix) :])
    return None


def _same_file(path: str, target: os.stat_result) -> bool:
    try:
        opened = os.stat(path)
    except OSError:
        return False
    return (opened.st_dev, opened.st_ino) == (target.st_dev, target.st_ino)


def has_open(pid: int, path: StrPath) -> bool:
    """Whether process `pid` has `path` open (compared by device and inode)."""
    try:
        target = os.stat(path)
        fds = list(os.scandir(f"/proc/{pid}/fd"))
    except OSError:
        return False
    return any(_same_file(fd.path, target) for fd in fds)


def open_fds_of(path: StrPath) -> list[int]:
    """This process's file descriptors open on `path`."""
    try:
        target = os.stat(path)
    except OSError:
        return []
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            opened = os.fstat(int(name))
        except OSError:
            continue
        if (opened.st_dev, opened.st_ino) == (target.st_dev, target.st_ino):
            found.append(int(name))
    return found


PROC_NET_UNIX = "/proc/net/unix"
# /proc/net/unix's Flags for a socket that listen() was called on (__SO_ACCEPTCON).
_ACCEPTING = 0x10000


def listening_socket_inodes(
    bound_path: str | os.PathLike[str], table: str | None = None
) -> set[int]:
    """The inodes of the Unix sockets listening at `bound_path` (/proc/net/unix:
    `Num RefCount Protocol Flags Type St Inode Path`)."""
    if table is None:
        try:
            with open(PROC_NET_UNIX, errors="replace") as unix:
                table = unix.read()
        except OSError:
            return set()
    inodes = set()
    wanted = os.fsdecode(bound_path)
    for line in table.splitlines()[1:]:
        fields = line.split(None, 7)
        if len(fields) == 8 and fields[7] == wanted:
            try:
                if int(fields[3], 16) & _ACCEPTING:
                    inodes.add(int(fields[6]))
            except ValueError:
                continue
    return inodes


def _link_of(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def holds_socket(pid: int, inodes: set[int]) -> bool:
    """Whether process `pid` has one of these socket inodes open."""
    links = {f"socket:[{inode}]" for inode in inodes}
    try:
        fds = list(os.scandir(f"/proc/{pid}/fd"))
    except OSError:
        return False
    return any(_link_of(fd.path) in links for fd in fds)


def owner_uid(pid: int) -> int | None:
    """The real user id the process runs as."""
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def count_processes(count: int) -> str:
    """`1 process`, `3 processes`: for messages."""
    return f"{count} process" if count == 1 else f"{count} processes"
