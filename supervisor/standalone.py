"""The managed install as install.sh lays it out under `CODEX_HOME/packages/`:

standalone/releases/<release>/codex       the front: codexd for `app-server daemon ...`,
                                          the real codex for everything else
standalone/releases/<release>/codexd      codexd itself (what the `codexd` command runs)
standalone/releases/<release>/.codexd-release   what the release is made of
standalone/current -> releases/<release>  the release in use (`current/codex` is the
                                          managed binary)
standalone/previous                       the release before current, for rollback
standalone/rejected                       releases rolled back here; never installed again
standalone/source                         codexd's source: `channel <dir|url>` or
                                          `checkout <path>`
standalone/codex-source                   codex's source: `npm:<version|tag>`, `path:<file>`
                                          or `reference` (CODEXD_CODEX_SOURCE overrides it)
standalone/python                         the interpreter codexd runs with
standalone/install.lock                   held by every install into this home
codex/<version>-<12 hex>/                 a codex payload (bin/codex, codex-resources/, ...)
codexd/<release>/                         a codexd release unpacked and byte-compiled

A release names one codex payload and one codexd release; a codexd-only update shares
the codex payload with the release before it. Standard library only: install.sh's
installer runs it from the release artifact.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from supervisor.errors import DaemonError
from supervisor.lean import Value
from supervisor.paths import HomePaths
from supervisor.statefile import write_atomic

RELEASE_MARKER = ".codexd-release"
CODEX_MARKER = ".codexd-payload"
CODEXD_MARKER = ".codexd-artifact"
REFERENCE = "reference"


class ReleaseSource(Value):
    __slots__ = ("kind", "location")

    def __init__(self, kind: str, location: str) -> None:
        self.kind = kind  # "channel" or "checkout"
        self.location = location


class Layout(Value):
    """Every path of the managed install under one home."""

    __slots__ = ("home",)

    def __init__(self, home: Path) -> None:
        self.home = home

    @property
    def packages(self) -> Path:
        return self.home / "packages"

    @property
    def standalone(self) -> Path:
        return self.packages / "standalone"

    @property
    def releases(self) -> Path:
        return self.standalone / "releases"

    @property
    def current(self) -> Path:
        return self.standalone / "current"

    @property
    def codex_store(self) -> Path:
        return self.packages / "codex"

    @property
    def codexd_store(self) -> Path:
        return self.packages / "codexd"

    @property
    def install_lock(self) -> Path:
        return self.standalone / "install.lock"

    def record(self, name: str) -> Path:
        """One of standalone/'s one-line records: previous, source, codex-source, python."""
        return self.standalone / name


def layout_of(paths: HomePaths) -> Layout:
    return Layout(paths.home)


def read_line(path: Path) -> str | None:
    try:
        line = path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return line or None


def read_marker(path: Path) -> dict[str, str]:
    """A `key=value` marker file; empty when missing or unreadable."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return {}
    pairs = (line.partition("=") for line in text.splitlines())
    return {key: value for key, sep, value in pairs if sep}


def render_marker(values: dict[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in values.items())


def is_release_name(name: str) -> bool:
    """A plain entry of releases/: not hidden (staging), not a path."""
    return bool(name) and not name.startswith(".") and "/" not in name


def current_release(paths: HomePaths) -> str | None:
    try:
        return Path(os.readlink(paths.standalone_dir / "current")).name
    except OSError:
        return None


def codexd_current_release(layout: Layout) -> str | None:
    """The release `current` points at when it is codexd's: a symlink to
    releases/<name> holding the marker."""
    try:
        target = Path(os.readlink(layout.current))
    except OSError:
        return None
    if target.parent not in (Path("releases"), layout.releases) or not is_release_name(target.name):
        return None
    return target.name if (layout.releases / target.name / RELEASE_MARKER).is_file() else None


def previous_release(paths: HomePaths) -> str | None:
    return read_line(paths.standalone_dir / "previous")


def release_binary(paths: HomePaths, release: str) -> Path:
    return paths.releases_dir / release / "codex"


def read_source(paths: HomePaths) -> ReleaseSource | None:
    line = read_line(paths.standalone_dir / "source")
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
    temporary = paths.standalone_dir / f".current.tmp.{os.getpid()}"
    try:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        temporary.symlink_to(Path("releases") / release)
        os.replace(temporary, current)
    except OSError as error:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise DaemonError(f"cannot point {current} at {release}: {error.strerror}") from error


def read_rejected(layout: Layout) -> list[str]:
    try:
        return layout.record("rejected").read_text().split()
    except (OSError, UnicodeDecodeError):
        return []


def reject_release(paths: HomePaths, release: str) -> None:
    """Remember that `release` failed here, so install.sh does not install it again."""
    layout = layout_of(paths)
    names = read_rejected(layout)
    if release not in names:
        write_atomic(
            layout.record("rejected"), "".join(f"{name}\n" for name in [*names, release]).encode()
        )


# -- what stays on disk ---------------------------------------------------------------


def releases_to_keep(current: str | None, previous: str | None, in_use: set[str]) -> set[str]:
    """Current and previous, and any release a live worker still runs from."""
    return {name for name in (current, previous, *in_use) if name}


def stores_to_keep(kept_markers: list[dict[str, str]]) -> tuple[set[str], set[str]]:
    """The codex payloads and codexd releases the kept releases are made of."""
    codex = {m["codex"] for m in kept_markers if m.get("codex") not in (None, "", REFERENCE)}
    codexd = {m["codexd"] for m in kept_markers if m.get("codexd")}
    return codex, codexd


def releases_in_use(home: Path) -> set[str]:
    """Releases the recorded workers were launched from (their `executable` is a
    release's front): removing one would pull files from under a running process."""
    import json  # only install.sh's prune asks

    layout = Layout(home)
    found = set()
    state_dir = home / "app-server-daemon"
    for record in ("app-server.pid", "app-server-updater.pid"):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            executable = Path(json.loads((state_dir / record).read_text()).get("executable", ""))
            if executable.parent.parent == layout.releases:
                found.add(executable.parent.name)
    return found


class DiskUsage(Value):
    """Bytes on disk (allocated blocks, each hard-linked file once) of the managed
    install: the release dirs, the codex payloads and the codexd releases."""

    __slots__ = ("codex", "codexd", "releases")

    def __init__(self, releases: int, codex: int, codexd: int) -> None:
        self.releases = releases
        self.codex = codex
        self.codexd = codexd

    @property
    def total(self) -> int:
        return self.releases + self.codex + self.codexd


def release_disk_usage(paths: HomePaths) -> DiskUsage:
    layout = layout_of(paths)
    seen: set[tuple[int, int]] = set()
    return DiskUsage(
        releases=_disk_usage(layout.releases, seen),
        codex=_disk_usage(layout.codex_store, seen),
        codexd=_disk_usage(layout.codexd_store, seen),
    )


def _disk_usage(root: Path, seen: set[tuple[int, int]]) -> int:
    total = 0
    for directory, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            with contextlib.suppress(OSError):
                info = os.lstat(os.path.join(directory, name))
                if (info.st_dev, info.st_ino) not in seen:
                    seen.add((info.st_dev, info.st_ino))
                    total += info.st_blocks * 512
    return total
