"""The workers' logs: where they are, and how they stay bounded by size.

`app-server.log` becomes `app-server.log.1`, `.1` becomes `.2`, ... up to
CODEXD_LOG_KEEP rotated files, so a log takes at most (keep + 1) * max bytes
plus what is written between two checks. Two ways to rotate:
- by rename, before a worker is launched: nobody writes the file then;
- by copy-truncate, while a worker runs: the worker keeps its fd, which it opened
  with O_APPEND, so after the truncation its next write lands at the new end (0).
  Lines written between the copy and the truncation are lost.

Reading them back (`codexd logs`, `-f`) is `log_tail.py`'s job.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from supervisor.config import LogSettings, log_settings
from supervisor.paths import HomePaths
from supervisor.statefile import STATE_FILE_MODE
from supervisor.worker_log import needs_rotation as needs_rotation  # the workers' check


def worker_logs(paths: HomePaths) -> dict[str, Path]:
    """The workers' logs by the name `codexd logs` takes."""
    return {"app-server": paths.app_server_log, "updater": paths.updater_log}


# -- decisions ---------------------------------------------------------------------


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
