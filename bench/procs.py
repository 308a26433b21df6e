"""Finding, measuring and ending the processes the benchmark starts, through /proc.

Every worker codexd or codex launches carries `CODEX_HOME=<home>` in its environment,
so a home's processes are found by that, whoever their parent is. Standard library
only: the harness runs with the machine's python3.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    env = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    return env


def _state(pid: int) -> str | None:
    """The one-letter state from /proc/<pid>/stat; None when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[0]


def is_gone(pid: int) -> bool:
    """Exited; a zombie counts (this sandbox's init does not reap orphans)."""
    state = _state(pid)
    return state is None or state in ("Z", "X")


def processes_of_home(home: Path) -> list[int]:
    """Live pids whose environment has CODEX_HOME=home, this process excluded."""
    wanted = str(home)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid == os.getpid() or is_gone(pid):
            continue
        if _environ(pid).get("CODEX_HOME") == wanted:
            found.append(pid)
    return found


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until every pid is gone; return those still alive at the deadline."""
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if not is_gone(pid)]
        if alive:
            time.sleep(0.01)
    for pid in pids:  # reap our own children, if any
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
    return [pid for pid in alive if not is_gone(pid)]


def end_home(home: Path, term_grace: float = 5.0) -> None:
    """End every process of `home`: SIGTERM, then SIGKILL after `term_grace` seconds."""
    pids = processes_of_home(home)
    if not pids:
        return
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    left = wait_gone(pids, term_grace)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_gone(left, 5.0)


def kill_home(home: Path) -> None:
    """SIGKILL every process of `home` at once (cleanup after a failure)."""
    for _ in range(3):  # a dying CLI may still fork a worker
        pids = processes_of_home(home)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_gone(pids, 5.0)


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and Pss (KiB) of a live process."""
    values: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                values["rss"] = int(line.split()[1])
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                values["pss"] = int(line.split()[1])
            elif line.startswith(("Private_Clean:", "Private_Dirty:")):
                values["uss"] = values.get("uss", 0) + int(line.split()[1])
    return values


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]
