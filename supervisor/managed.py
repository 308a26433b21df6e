"""The managed binary (`current/codex`, a release's front): the one executable every
worker is launched from. Its `--version` is the real codex's (codexd's with the
`reference` source), and its content digest identifies the release.

Light to import: the command fast path reads the version from the cache with it.
"""

from __future__ import annotations

import os

from supervisor.errors import DaemonError
from supervisor.state_read import StateFileError, read_json_object

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    StrPath = str | os.PathLike[str]

VERSION_TIMEOUT_SECONDS = 10.0


def require_managed_binary(managed_binary: Path) -> Path:
    """The resolved managed binary, or an error that says how to install it."""
    from pathlib import Path  # the launching commands' path, not the fast one

    resolved = Path(os.path.realpath(managed_binary))
    if not (resolved.is_file() and os.access(resolved, os.X_OK)):
        raise DaemonError(
            f"managed codex install not found at {managed_binary}: install codexd and codex "
            "with `sh install.sh` from a codexd checkout (or `CODEXD_CHANNEL=<channel> sh "
            "install.sh`), then rerun this command"
        )
    return resolved


def managed_version(managed_binary: StrPath, cache: StrPath | None = None) -> str | None:
    """What `<managed binary> --version` reports, None when it cannot say."""
    return _cached_fact(managed_binary, cache, "version", _run_version)


def managed_digest(managed_binary: StrPath, cache: StrPath | None = None) -> str | None:
    """The resolved managed binary's content digest, None when it cannot be read."""

    def digest(path: str) -> str | None:
        from supervisor.digest import file_digest  # only on a cache miss

        try:
            return file_digest(path)
        except OSError:
            return None

    return _cached_fact(managed_binary, cache, "digest", digest)


def _cached_fact(
    managed_binary: StrPath,
    cache: StrPath | None,
    name: str,
    compute: Callable[[str], str | None],
) -> str | None:
    """A fact about the resolved managed binary, kept in `cache` keyed by the file's
    identity (device, inode, size, mtime, ctime): running a release or hashing a
    300 MB binary costs far more than the command that asks, and any write to or
    replacement of the file changes the key."""
    resolved = os.path.realpath(managed_binary)
    try:
        stat = os.stat(resolved)
    except OSError:
        return None
    key = (
        f"{resolved}:{stat.st_dev}:{stat.st_ino}:{stat.st_size}:"
        f"{stat.st_mtime_ns}:{stat.st_ctime_ns}"
    )
    entry: dict[str, object] = {}
    if cache is not None:
        try:
            entry = read_json_object(cache) or {}
        except StateFileError:
            entry = {}
        if entry.get("key") != key:
            entry = {"key": key}
        cached = entry.get(name)
        if isinstance(cached, str):
            return cached
    value = compute(resolved)
    if cache is not None and value is not None:
        from supervisor.statefile import write_json_atomic  # only on a cache miss

        # Not contextlib.suppress: contextlib is slow to import on the fast path.
        try:
            write_json_atomic(cache, {**entry, name: value})
        except StateFileError:
            pass  # only a cache
    return value


def _run_version(executable: str) -> str | None:
    import subprocess  # only on a cache miss

    try:
        completed = subprocess.run(
            [executable, "--version"],
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


def parse_version_output(output: str) -> str | None:
    """`codex --version` prints `<name> <version>`; the version is the second word."""
    words = output.split()
    return words[1] if len(words) >= 2 else None
