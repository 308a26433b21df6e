"""A release's own directory and the files beside it, for install.sh's installer:
staging and switching `releases/<release>/`, the one-line records, the interpreter
check and the `codexd` command on PATH. Standard library only."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import sys
import time
import zipfile
from pathlib import Path

from supervisor.config import BIN_DIR_ENV
from supervisor.front import BIN_COMMAND_MARK, CodexdPart, Release, render_bin_command
from supervisor.standalone import (
    REFERENCE,
    RELEASE_MARKER,
    Layout,
    read_line,
    read_marker,
    render_marker,
)
from supervisor.stores import StoreError, remove, run_check, staging_path

# Written by release/artifact.py: keep the two in step.
ARTIFACT_METADATA = "codexd-release.json"
# Read by install.sh, named here for messages (not in config.py: codexd never reads it).
PYTHON_ENV = "CODEXD_PYTHON"


class InstallError(Exception):
    """The install cannot go on; the message names what and where."""


def artifact_metadata(artifact: Path) -> dict[str, str]:
    try:
        if artifact.is_dir():
            text = (artifact / ARTIFACT_METADATA).read_bytes()
        else:
            with zipfile.ZipFile(artifact) as archive:
                text = archive.read(ARTIFACT_METADATA)
        value = json.loads(text)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
        raise InstallError(
            f"{artifact} is not a codexd release artifact ({ARTIFACT_METADATA}: {error})"
        ) from error
    if not isinstance(value, dict):
        raise InstallError(f"{artifact}: {ARTIFACT_METADATA} is not a JSON object")
    return {str(key): str(item) for key, item in value.items()}


def interpreter_mismatch(built_for: dict[str, str], running: dict[str, str]) -> str | None:
    """What differs between the Python a release's wheels are for and the one that
    would run it; None when they match."""
    keys = ("implementation", "python", "machine")
    wanted = " ".join(built_for.get(key, "?") for key in keys)
    have = " ".join(running[key] for key in keys)
    return None if wanted == have else f"it is built for {wanted}, this Python is {have}"


def check_interpreter(artifact: Path, release: str, python: str) -> None:
    built_for = artifact_metadata(artifact)
    running = {
        "implementation": sys.implementation.name,
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "machine": platform.machine(),
    }
    mismatch = interpreter_mismatch(built_for, running)
    if mismatch is not None:
        raise InstallError(
            f"release {release} cannot run with {python}: {mismatch}. Set {PYTHON_ENV} to a "
            f"python{built_for.get('python', '')} and run install.sh again, or publish a "
            f"release built with this Python (`{python} release/publish.py`)"
        )


def codexd_part(artifact: Path, release: str, sha256: str) -> CodexdPart:
    version = artifact_metadata(artifact).get("version", "")
    if not version:
        raise InstallError(f"{artifact}: {ARTIFACT_METADATA} names no version")
    return CodexdPart(store=release, sha256=sha256, version=version)


def write_file(path: Path, text: str, mode: int) -> None:
    """Through a temp file beside it (`.<name>.tmp.<pid>`: swept once we are gone)."""
    temporary = staging_path(path.parent, path.name)
    try:
        temporary.write_text(text)
        temporary.chmod(mode)
        os.replace(temporary, path)
    except OSError as error:
        remove(temporary)
        raise InstallError(f"cannot write {path}: {error.strerror}") from error


def write_record(layout: Layout, name: str, value: str) -> None:
    """A one-line record in standalone/, written only when it changes."""
    path = layout.record(name)
    if read_line(path) != value:
        write_file(path, value + "\n", 0o644)


def check_release(directory: Path, release: Release) -> None:
    """The staged release runs: its front and its codexd report their versions."""
    name = directory.name
    for script, wanted in (("codex", release.codex_version), ("codexd", release.codexd.version)):
        try:
            words = run_check([str(directory / script), "--version"], f"{script} --version").split()
        except StoreError as error:
            raise InstallError(f"release {name} does not run: {error}") from error
        if words[1:2] != [wanted]:
            raise InstallError(
                f"release {name} does not run: {script} --version printed "
                f"{' '.join(words)!r}, not version {wanted}"
            )


def stage_release(
    layout: Layout,
    name: str,
    front: str,
    launcher: str,
    release: Release,
    current: str | None,
    force: bool,
) -> None:
    """Stage releases/<name>, check it runs, put it in place, write `previous`, switch
    `current`. Anything that fails puts back what was there."""
    final = layout.releases / name
    marker = {
        "release": name,
        "codex": REFERENCE if release.codex is None else release.codex.store,
        "codexd": release.codexd.store,
        "python": release.python,
        "sha256": hashlib.sha256(front.encode()).hexdigest(),
    }
    layout.releases.mkdir(parents=True, exist_ok=True)
    staged = staging_path(layout.releases, name)
    aside = staging_path(layout.releases, name, "old")
    placed = False
    previous_before = read_line(layout.record("previous"))
    kept: Path | None = None
    try:
        remove(staged)
        staged.mkdir()
        (staged / "codex").write_text(front)
        (staged / "codexd").write_text(launcher)
        (staged / RELEASE_MARKER).write_text(render_marker(marker))
        for script in ("codex", "codexd"):
            (staged / script).chmod(0o755)
        staged.chmod(0o755)
        check_release(staged, release)
        if final.exists() or final.is_symlink():
            # A damaged copy of this release, or with --force a foreign one: put back
            # should anything below fail.
            if not read_marker(final / RELEASE_MARKER) and not force:
                raise InstallError(
                    f"{final} exists and is not a codexd release; rerun with --force to replace it"
                )
            os.rename(final, aside)
        os.rename(staged, final)
        placed = True
        if current is not None and current != name:
            write_record(layout, "previous", current)
        if layout.current.is_dir() and not layout.current.is_symlink():
            # rename(2) cannot put a symlink over a directory: keep the foreign one beside.
            kept = (
                layout.standalone
                / f"current.replaced.{time.strftime('%Y%m%d%H%M%S')}.{os.getpid()}"
            )
            os.rename(layout.current, kept)
            print(f"install.sh: moved the previous {layout.current} to {kept}", file=sys.stderr)
        switch = staging_path(layout.standalone, "current")
        remove(switch)
        switch.symlink_to(Path("releases") / name)
        os.replace(switch, layout.current)
    except BaseException as failure:
        if kept is not None and not layout.current.exists():
            with contextlib.suppress(OSError):
                os.rename(kept, layout.current)
        if read_line(layout.record("previous")) != previous_before:
            if previous_before is None:
                remove(layout.record("previous"))
            else:
                write_record(layout, "previous", previous_before)
        if placed:
            remove(final)
        if aside.exists():
            with contextlib.suppress(OSError):
                os.rename(aside, final)
        remove(staged)
        remove(staging_path(layout.standalone, "current"))
        if isinstance(failure, OSError):
            raise InstallError(f"cannot put release {name} in place: {failure}") from failure
        raise
    remove(aside)


def install_bin_command(home: Path, environ: dict[str, str] | os._Environ[str]) -> None:
    """`${CODEXD_BIN_DIR:-~/.local/bin}/codexd`, which runs the current release's
    codexd; never over a file install.sh did not write. Says where, and what to add to
    PATH, when it writes it or a person watches. A failure here is reported, not fatal:
    the managed install is complete."""
    bin_dir = Path(
        environ.get(BIN_DIR_ENV) or Path(environ.get("HOME", "~")).expanduser() / ".local" / "bin"
    )
    command = bin_dir / "codexd"
    wanted = render_bin_command(home)
    try:
        existing = command.read_text() if command.exists() or command.is_symlink() else None
    except (OSError, UnicodeDecodeError):
        existing = ""
    if existing is not None and BIN_COMMAND_MARK not in existing:
        print(
            f"install.sh: left {command} alone (install.sh did not write it); codexd is "
            f"{home / 'packages' / 'standalone' / 'current' / 'codexd'}",
            file=sys.stderr,
        )
        return
    if existing != wanted:
        try:
            bin_dir.mkdir(parents=True, exist_ok=True)
            write_file(command, wanted, 0o755)
        except (OSError, InstallError) as error:
            print(
                f"install.sh: warning: cannot write the codexd command {command}: {error}",
                file=sys.stderr,
            )
            return
    elif not sys.stderr.isatty():
        return  # in place already: said at the install that wrote it (not every hour)
    on_path = str(bin_dir) in environ.get("PATH", "").split(os.pathsep)
    advice = (
        ""
        if on_path
        else (
            f'; {bin_dir} is not on PATH: add it (e.g. `export PATH="{bin_dir}:$PATH"` in '
            "~/.profile) or run the command by its path"
        )
    )
    print(f"install.sh: the codexd command is {command}{advice}", file=sys.stderr, flush=True)
