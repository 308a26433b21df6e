"""The standalone managed install as install.sh lays it out:

packages/standalone/releases/<release>/codex   the artifacts
packages/standalone/current -> releases/<release>
packages/standalone/previous                   the release before current
packages/standalone/rejected                   releases rolled back here
packages/standalone/source                     `channel <dir|url>` or `checkout <path>`
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from supervisor.errors import DaemonError
from supervisor.paths import HomePaths
from supervisor.statefile import write_atomic


@dataclass(frozen=True)
class ReleaseSource:
    kind: str  # "channel" or "checkout"
    location: str


def _read_line(path: Path) -> str | None:
    try:
        line = path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return line or None


def current_release(paths: HomePaths) -> str | None:
    try:
        return Path(os.readlink(paths.standalone_dir / "current")).name
    except OSError:
        return None


def previous_release(paths: HomePaths) -> str | None:
    return _read_line(paths.standalone_dir / "previous")


def release_binary(paths: HomePaths, release: str) -> Path:
    return paths.releases_dir / release / "codex"


def read_source(paths: HomePaths) -> ReleaseSource | None:
    line = _read_line(paths.standalone_dir / "source")
    if line is None:
        return None
    kind, _, location = line.partition(" ")
    if kind not in ("channel", "checkout") or not location:
        return None
    return ReleaseSource(kind, location)


def switch_current(paths: HomePaths, release: str) -> None:
    """Point `current` at `release`: a new symlink renamed over the old, so `current`
    always names a release."""
    current = paths.standalone_dir / "current"
    temporary = paths.standalone_dir / f".current.{os.getpid()}.tmp"
    try:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        temporary.symlink_to(Path("releases") / release)
        os.replace(temporary, current)
    except OSError as error:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise DaemonError(f"cannot point {current} at {release}: {error.strerror}") from error


def reject_release(paths: HomePaths, release: str) -> None:
    """Remember that `release` failed here, so install.sh does not install it again."""
    path = paths.standalone_dir / "rejected"
    try:
        names = path.read_text().split()
    except FileNotFoundError:
        names = []
    if release not in names:
        write_atomic(path, "".join(f"{name}\n" for name in [*names, release]).encode())
