"""The managed binary: the one executable every worker is launched from."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from supervisor.decisions import parse_version_output
from supervisor.errors import DaemonError

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


def managed_version(managed_binary: Path) -> str | None:
    """What `<managed binary> --version` reports, None when it cannot say."""
    try:
        completed = subprocess.run(
            [str(managed_binary), "--version"],
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
