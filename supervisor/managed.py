"""The managed binary: the one executable every worker is launched from."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

from supervisor.decisions import parse_version_output
from supervisor.errors import DaemonError
from supervisor.statefile import StateFileError, read_json_object, write_json_atomic

VERSION_TIMEOUT_SECONDS = 10.0


def require_managed_binary(managed_binary: Path) -> Path:
    """The resolved managed binary, or an error that says how to install it."""
    resolved = Path(os.path.realpath(managed_binary))
    if not (resolved.is_file() and os.access(resolved, os.X_OK)):
        raise DaemonError(
            f"managed codexd install not found at {managed_binary}: install it with "
            "`sh install.sh` from a codexd checkout (or `CODEXD_CHANNEL=<channel> sh install.sh`), "
            "then rerun this command"
        )
    return resolved


def managed_version(managed_binary: Path, cache: Path | None = None) -> str | None:
    """What `<managed binary> --version` reports, None when it cannot say.

    Running a release costs far more than the command that asks, so the answer is
    kept in `cache`, keyed by the resolved file's identity (device, inode, size,
    mtime): any replacement of the file asks again."""
    resolved = Path(os.path.realpath(managed_binary))
    try:
        stat = resolved.stat()
    except OSError:
        return None
    key = f"{resolved}:{stat.st_dev}:{stat.st_ino}:{stat.st_size}:{stat.st_mtime_ns}"
    if cache is not None:
        try:
            cached = read_json_object(cache) or {}
        except StateFileError:
            cached = {}
        if cached.get("key") == key and isinstance(cached.get("version"), str):
            return str(cached["version"])
    version = _run_version(resolved)
    if cache is not None and version is not None:
        with contextlib.suppress(StateFileError):  # only a cache
            write_json_atomic(cache, {"key": key, "version": version})
    return version


def _run_version(executable: Path) -> str | None:
    try:
        completed = subprocess.run(
            [str(executable), "--version"],
            capture_output=True,
            text=True,
            timeout=VERSION_TIMEOUT_SECONDS,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if completed.returncode != 0:
        return None
    return parse_version_output(completed.stdout)
