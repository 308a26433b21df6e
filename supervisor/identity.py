"""Who a process is, beyond its pid.

A pid is reused; a pid with its start time and the boot it started in is not.
"""

from __future__ import annotations

import os
import time

from supervisor.lean import Value

BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"
PROC_STAT = "/proc/stat"
# create_time is derived from clock ticks (1/100 s); two readings of one process agree
# exactly, so this only absorbs float formatting.
START_TIME_TOLERANCE_SECONDS = 0.01


class ProcessIdentity(Value):
    __slots__ = ("boot_id", "pid", "start_time")

    def __init__(self, pid: int, start_time: float, boot_id: str) -> None:
        self.pid = pid
        self.start_time = start_time
        self.boot_id = boot_id

    def same_process(self, other: ProcessIdentity) -> bool:
        return (
            self.pid == other.pid
            and self.boot_id == other.boot_id
            and abs(self.start_time - other.start_time) <= START_TIME_TOLERANCE_SECONDS
        )


def current_boot_id() -> str:
    try:
        with open(BOOT_ID_FILE) as boot_id:
            return boot_id.read().strip()
    except OSError:
        import psutil  # not Linux: the boot time identifies the boot well enough

        return f"boot-time-{psutil.boot_time():.0f}"


def _proc_stat_fields(pid: int) -> list[bytes] | None:
    """/proc/<pid>/stat from field 3 (state) on; None when there is no such process.
    The command name (field 2) may hold spaces and parentheses: split after its end."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None


def _boot_time() -> float:
    """When this boot began (the `btime` line of /proc/stat), as psutil reads it."""
    with open("/proc/stat", "rb") as stat:
        for line in stat:
            if line.startswith(b"btime "):
                return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def identity_of(pid: int) -> ProcessIdentity | None:
    """The live process's identity; None when no such process runs (a zombie has
    exited: it holds no lock and answers nothing).

    Read from /proc by hand where there is one: every lifecycle command asks, and
    importing psutil would cost more than the rest of the question. The start time
    is psutil's own formula, so records written either way compare equal."""
    if pid <= 0:
        return None
    if not os.path.exists(PROC_STAT):
        return _identity_with_psutil(pid)
    fields = _proc_stat_fields(pid)
    if fields is None or fields[0] == b"Z":
        return None
    try:
        ticks = int(fields[19])
        start_time = ticks / os.sysconf("SC_CLK_TCK") + _boot_time()
    except (OSError, ValueError, IndexError):
        return _identity_with_psutil(pid)
    return ProcessIdentity(pid, start_time, current_boot_id())


def _identity_with_psutil(pid: int) -> ProcessIdentity | None:
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return ProcessIdentity(pid, process.create_time(), current_boot_id())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def start_ticks(pid: int) -> int | None:
    """When the process started, in clock ticks after boot (field 22 of
    /proc/<pid>/stat): what codex records as a process's identity."""
    fields = _proc_stat_fields(pid)
    try:
        return None if fields is None else int(fields[19])
    except (ValueError, IndexError):
        return None


def lstart(create_time: float) -> str:
    """A start time as `ps -o lstart=` prints it."""
    return time.strftime("%a %b %e %H:%M:%S %Y", time.localtime(create_time))


# What `ps` shows in its STAT column, in words (proc(5)).
_PROCESS_STATES = {
    b"R": "running",
    b"S": "sleeping",
    b"D": "in uninterruptible wait",
    b"T": "stopped",
    b"t": "stopped by a debugger",
    b"Z": "a zombie",
    b"I": "idle",
}


def process_state(pid: int) -> str | None:
    """What the process is doing, in words (`stopped` for a SIGSTOPped one); None when
    no such process runs."""
    fields = _proc_stat_fields(pid)
    if not fields:
        return None
    return _PROCESS_STATES.get(fields[0], fields[0].decode(errors="replace"))


def command_line(pid: int, limit: int = 120) -> str | None:
    """The process's command line as one string, cut at `limit` characters; None when
    it cannot be read (gone, or a kernel thread with none)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            words = cmdline.read().rstrip(b"\0").split(b"\0")
    except OSError:
        return None
    text = " ".join(word.decode(errors="replace") for word in words if word)
    if not text:
        return None
    return text if len(text) <= limit else text[: limit - 3] + "..."
