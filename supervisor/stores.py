"""The two stores releases are made of, filled by install.sh's installer:

packages/codexd/<release>/            a codexd release artifact, unpacked, byte-compiled by
                                      the interpreter that will run it, checked to import
packages/codex/<version>-<12 hex>/    a codex payload, fetched with npm or copied in

An entry is staged beside its final name as `.<name>.tmp.<pid>` and renamed into place
complete, its marker saying where it came from. Releases share entries, so a
codexd-only update does not copy codex's payload again; an entry no kept release names
is pruned. Standard library only.
"""

from __future__ import annotations

import contextlib
import errno
import os
import py_compile
import re
import shutil
import subprocess
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from supervisor.codex_npm import Npm, fetch_npm_payload, platform_package
from supervisor.codex_source import (
    DEFAULT_ENTRYPOINT,
    CodexSource,
    SourceError,
    SourceKind,
    binary_version,
    copy_payload,
    integrity_hex,
    payload_entrypoint,
    payload_root_of,
    tree_integrity,
)
from supervisor.front import CodexdPart, CodexPart
from supervisor.standalone import (
    CODEX_MARKER,
    CODEXD_MARKER,
    RELEASE_MARKER,
    Layout,
    read_marker,
    render_marker,
    stores_to_keep,
)

CHECK_TIMEOUT_SECONDS = 60.0
# `.<name>.tmp.<pid>` while staged, `.<name>.old.<pid>` while moved aside.
_LEFTOVER = re.compile(r"\.(?P<name>.+)\.(?:tmp|old)\.(?P<pid>[0-9]+)")
_UNSAFE_VERSION_CHARS = re.compile(r"[^A-Za-z0-9.+_-]")
# Imports every top-level package of a codexd store, as `python -I -S <store>` would.
_IMPORT_CHECK = (
    "import importlib, os, sys\n"
    "root = sys.argv[1]\n"
    "sys.path.insert(0, root)\n"
    "for name in sorted(os.listdir(root)):\n"
    "    if os.path.isfile(os.path.join(root, name, '__init__.py')):\n"
    "        importlib.import_module(name)\n"
)


class StoreError(Exception):
    """A store entry cannot be made; the message names it and why."""


def staging_path(parent: Path, name: str, kind: str = "tmp") -> Path:
    return parent / f".{name}.{kind}.{os.getpid()}"


def pid_alive(pid: int) -> bool:
    """Running: a zombie is not (an orphan may wait long for a reaper)."""
    try:
        os.kill(pid, 0)
    except OSError as error:
        return error.errno == errno.EPERM
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def sweep_leftovers(directories: list[Path]) -> list[str]:
    """Remove what installs killed mid-way left (their pid is gone); the names."""
    removed = []
    for directory in directories:
        with contextlib.suppress(OSError):
            for entry in os.scandir(directory):
                match = _LEFTOVER.fullmatch(entry.name)
                if match and not pid_alive(int(match["pid"])):
                    remove(Path(entry.path))
                    removed.append(entry.name)
    return removed


def run_check(command: list[str], what: str) -> str:
    """Run a check; its stdout, or StoreError with the output's tail."""
    try:
        completed = subprocess.run(
            command,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=CHECK_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as error:
        raise StoreError(f"{what}: {error}") from error
    if completed.returncode != 0:
        tail = (completed.stdout + completed.stderr).strip()[-1500:]
        raise StoreError(f"{what} failed (exit {completed.returncode}): {tail}")
    return completed.stdout


# -- codexd ---------------------------------------------------------------------------


def codexd_installed(layout: Layout, part: CodexdPart) -> bool:
    marker = read_marker(layout.codexd_store / part.store / CODEXD_MARKER)
    return marker.get("sha256") == part.sha256


def unpack_artifact(artifact: Path, destination: Path) -> None:
    try:
        with zipfile.ZipFile(artifact) as archive:
            for info in archive.infolist():
                path = PurePosixPath(info.filename)
                if path.is_absolute() or ".." in path.parts:
                    raise StoreError(f"{artifact} holds the unsafe path {info.filename!r}")
                target = destination.joinpath(*path.parts)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(info))
                target.chmod(0o755 if (info.external_attr >> 16) & 0o111 else 0o644)
    except (OSError, zipfile.BadZipFile) as error:
        raise StoreError(f"cannot unpack {artifact}: {error}") from error


def install_codexd(layout: Layout, part: CodexdPart, artifact: Path, python: str) -> Path:
    """The codexd release in the store: unpacked, compiled for `python` (the installer's
    own interpreter) with the paths it will have, checked to import and to run."""
    final = layout.codexd_store / part.store
    staged = staging_path(layout.codexd_store, part.store)
    remove(staged)
    staged.mkdir(parents=True)
    try:
        unpack_artifact(artifact, staged)
        import compileall

        # Unchecked hashes: imports never stat or re-read a source, and nothing changes
        # a store entry after this.
        compiled = compileall.compile_dir(
            str(staged),
            quiet=1,
            ddir=str(final),
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
        if not compiled:
            raise StoreError(f"byte-compiling {staged} with {python} failed (see above)")
        what = f"codexd release {part.store} does not run with {python}"
        run_check([python, "-I", "-S", "-c", _IMPORT_CHECK, str(staged)], f"{what}: importing")
        words = run_check(
            [python, "-I", "-S", str(staged), "--version"], f"{what}: --version"
        ).split()
        if words[1:2] != [part.version]:
            raise StoreError(f"codexd {part.store} reports {' '.join(words)!r}, not {part.version}")
        (staged / CODEXD_MARKER).write_text(
            render_marker({"release": part.store, "sha256": part.sha256, "python": python})
        )
        staged.chmod(0o755)
        remove(final)  # a damaged copy (no or another marker)
        os.rename(staged, final)
    finally:
        remove(staged)
    return final


# -- codex ----------------------------------------------------------------------------


def safe_version(version: str) -> str:
    return _UNSAFE_VERSION_CHARS.sub("_", version)[:64] or "unknown"


def find_codex(layout: Layout, key: str, value: str) -> CodexPart | None:
    """A complete payload in the store whose marker has `key=value`."""
    with contextlib.suppress(OSError):
        for entry in sorted(layout.codex_store.iterdir()):
            marker = read_marker(entry / CODEX_MARKER)
            if not entry.name.startswith(".") and marker.get(key) == value:
                return CodexPart(
                    store=entry.name,
                    entrypoint=marker.get("entrypoint", DEFAULT_ENTRYPOINT),
                    integrity=marker.get("integrity", ""),
                    version=marker.get("version", ""),
                    source=marker.get("origin", ""),
                )
    return None


@dataclass(frozen=True)
class PlannedCodex:
    """The payload a release will use; `fetch` fills a staging dir when it is not in
    the store yet and returns the payload's integrity."""

    part: CodexPart
    fetch: Callable[[Path], str] | None
    missing: str | None = None  # the entry is in the store but lacks this: fetch replaces it


def payload_missing(layout: Layout, part: CodexPart) -> str | None:
    """The codex binary of a store entry when it is not an executable file there (the
    entry is incomplete, as doctor says), else None."""
    binary = layout.codex_store / part.store / part.entrypoint
    return None if binary.is_file() and os.access(binary, os.X_OK) else str(binary)


def _planned(layout: Layout, part: CodexPart, fetch: Callable[[Path], str]) -> PlannedCodex:
    """A payload to fetch; a repair when its entry is there but incomplete."""
    there = (layout.codex_store / part.store / CODEX_MARKER).is_file()
    return PlannedCodex(part, fetch, payload_missing(layout, part) if there else None)


def plan_codex(layout: Layout, source: CodexSource, npm: Npm | None) -> PlannedCodex | None:
    """What the source offers now, learnt without writing anything: a dist-tag is
    resolved, a version already in the store is reused without asking the registry
    (npm never changes a published version), a `path:` source once copied never moves."""
    if source.kind is SourceKind.REFERENCE:
        return None
    if source.kind is SourceKind.NPM:
        if npm is None:
            raise StoreError(
                f"the codex source {source} needs npm, which is not on PATH: install Node.js "
                "and npm, or choose CODEXD_CODEX_SOURCE=path:<codex binary> or reference"
            )
        version = npm.resolve_version(source.value)
        package = platform_package(version)
        found = find_codex(layout, "origin", package)
        if found is not None and payload_missing(layout, found) is None:
            return PlannedCodex(found, None)
        integrity = npm.integrity(package)
        part = CodexPart(
            store=f"{safe_version(version)}-{integrity_hex(integrity)[:12]}",
            entrypoint=DEFAULT_ENTRYPOINT,
            integrity=integrity,
            version=version,
            source=package,
        )

        def fetch_npm(staged: Path) -> str:
            return fetch_npm_payload(npm, version, staged / "payload", staged, integrity)

        return _planned(layout, part, fetch_npm)
    origin = str(source)
    found = find_codex(layout, "origin", origin)
    if found is not None and payload_missing(layout, found) is None:
        return PlannedCodex(found, None)
    binary = Path(source.value).resolve()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise StoreError(f"the codex source {source} is not an executable file")
    root = payload_root_of(binary)
    integrity = tree_integrity(root) if root else _single_file_integrity(binary)
    version = binary_version(Path(source.value))  # named as the user gave it
    part = CodexPart(
        store=f"{safe_version(version)}-{integrity_hex(integrity)[:12]}",
        entrypoint=payload_entrypoint(root) if root else DEFAULT_ENTRYPOINT,
        integrity=integrity,
        version=version,
        source=origin,
    )

    def fetch_path(staged: Path) -> str:
        return copy_payload(binary, staged / "payload")

    return _planned(layout, part, fetch_path)


def _single_file_integrity(binary: Path) -> str:
    """What `tree_integrity` gives once the file is copied in as bin/codex."""
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        link = Path(scratch, DEFAULT_ENTRYPOINT)
        link.parent.mkdir(parents=True)
        link.symlink_to(binary)
        return tree_integrity(Path(scratch))


def install_codex(layout: Layout, planned: PlannedCodex) -> Path:
    """The planned payload in the store, checked to run and to be the version planned."""
    part = planned.part
    final = layout.codex_store / part.store
    if planned.fetch is None:
        return final
    staged = staging_path(layout.codex_store, part.store)
    remove(staged)
    staged.mkdir(parents=True)
    try:
        integrity = planned.fetch(staged)
        payload = staged / "payload"
        if integrity != part.integrity:
            raise StoreError(f"{part.source} changed while it was copied in; try again")
        if payload_entrypoint(payload) != part.entrypoint:
            raise StoreError(
                f"{part.source}: {payload_entrypoint(payload)} is its codex, not {part.entrypoint}"
            )
        reported = binary_version(payload / part.entrypoint)
        if reported != part.version:
            raise StoreError(
                f"{part.source}'s codex reports version {reported}, not {part.version}"
            )
        (payload / CODEX_MARKER).write_text(
            render_marker(
                {
                    "origin": part.source,
                    "version": part.version,
                    "integrity": part.integrity,
                    "entrypoint": part.entrypoint,
                }
            )
        )
        payload.chmod(0o755)
        # A damaged entry is moved aside, not removed first, so the name is never empty
        # while a release that names it might run.
        aside = staging_path(layout.codex_store, part.store, "old")
        if final.exists():
            os.rename(final, aside)
        os.rename(payload, final)
        remove(aside)
    except SourceError as error:
        raise StoreError(str(error)) from error
    finally:
        remove(staged)
    return final


# -- pruning --------------------------------------------------------------------------


def prune(layout: Layout, keep: set[str]) -> list[str]:
    """Remove codexd's releases not in `keep`, then the store entries no kept release
    names; only entries with codexd's markers are touched. The paths removed. Every
    kept release is read before anything goes, and an entry that cannot be moved aside
    is left for the next prune: the walk goes on."""
    removed: list[str] = []
    kept_markers, doomed = [], []
    with contextlib.suppress(OSError):
        for entry in sorted(layout.releases.iterdir()):
            marker = read_marker(entry / RELEASE_MARKER)
            if entry.name in keep:
                kept_markers.append(marker)
            elif marker and not entry.name.startswith("."):
                doomed.append(entry)
    codex_keep, codexd_keep = stores_to_keep(kept_markers)
    for store, wanted, marker_name in (
        (layout.codex_store, codex_keep, CODEX_MARKER),
        (layout.codexd_store, codexd_keep, CODEXD_MARKER),
    ):
        with contextlib.suppress(OSError):
            for entry in sorted(store.iterdir()):
                if entry.name.startswith(".") or entry.name in wanted:
                    continue
                if (entry / marker_name).is_file():
                    doomed.append(entry)
    for entry in doomed:
        try:
            remove_whole(entry)
        except OSError:
            continue
        removed.append(str(entry))
    return removed


def remove_whole(entry: Path) -> None:
    """Renamed aside first, then removed: an install killed mid-removal leaves a
    leftover the next one sweeps, never a half-removed entry without its marker (which
    no prune would touch again)."""
    doomed = staging_path(entry.parent, entry.name, "old")
    os.rename(entry, doomed)
    remove(doomed)
