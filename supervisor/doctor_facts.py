"""What `doctor` reads beyond `status`: the directories of the home, what the front
names, the `codexd` command on PATH, the socket's directory and listener, the update
sources, the boot id and the clock (the logs' recent errors: `doctor_logs`).

Each gatherer reads into a small frozen dataclass and judges nothing; the parser
`front_parts` is pure. Nothing here writes, signals or uses the network: the one
process it may start is `npm --version`.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor import config
from supervisor.control_socket import PeerCredentials
from supervisor.front import render_bin_command
from supervisor.identity import BOOT_ID_FILE, command_line
from supervisor.installer import local_source_problem, resolve_source
from supervisor.paths import HomePaths
from supervisor.private_dir import (
    HOME,
    PRIVATE_SOCKET_DIR,
    SOCKET_DIR,
    STATE_DIR,
    DirFacts,
    DirRule,
)
from supervisor.release_parts import FrontParts as FrontParts  # doctor and its tests
from supervisor.release_parts import front_parts as front_parts
from supervisor.release_parts import missing_parts
from supervisor.standalone import RELEASE_MARKER, ReleaseSource, layout_of, read_line, read_marker

# Far above any front or `codexd` command install.sh writes (under 1 KiB).
SCRIPT_MAX_BYTES = 64 * 1024
NPM_VERSION_TIMEOUT_SECONDS = 5.0
# What install.sh records when no codex source is given and npm is on PATH.
DEFAULT_NPM_SOURCE = "npm:latest"

# -- directories -----------------------------------------------------------------------


@dataclass(frozen=True)
class DirCheck:
    path: Path
    rule: DirRule
    facts: DirFacts | None  # None: missing, or it could not be looked at (error)
    error: str | None = None


def dir_check(path: Path, rule: DirRule) -> DirCheck:
    """Owner, mode and kind, as `private_dir` judges them: a symlink is followed only
    where the rule allows and only when we or root made it."""
    try:
        info = os.lstat(path)
        if rule.follow_symlink and stat.S_ISLNK(info.st_mode) and info.st_uid in (os.geteuid(), 0):
            info = os.stat(path)
    except FileNotFoundError:
        return DirCheck(path, rule, None)
    except OSError as error:
        return DirCheck(path, rule, None, f"cannot look at {rule.what} {path}: {error.strerror}")
    facts = DirFacts(
        is_directory=stat.S_ISDIR(info.st_mode),
        is_symlink=stat.S_ISLNK(info.st_mode),
        owner_uid=info.st_uid,
        mode=stat.S_IMODE(info.st_mode),
    )
    return DirCheck(path, rule, facts)


def dir_details(check: DirCheck) -> dict[str, Any]:
    facts = check.facts
    return {
        "path": str(check.path),
        "ownerUid": None if facts is None else facts.owner_uid,
        "mode": None if facts is None else f"{facts.mode:04o}",
    }


def gather_home_dirs(paths: HomePaths) -> list[DirCheck]:
    return [dir_check(paths.home, HOME), dir_check(paths.state_dir, STATE_DIR)]


# -- the managed install ---------------------------------------------------------------


@dataclass(frozen=True)
class InstallFacts:
    managed_binary: Path
    current_target: str | None  # what `current` points at; None: no symlink
    executable: bool  # the resolved managed binary is an executable file
    marker: dict[str, str]  # the current release's .codexd-release
    front: FrontParts | None  # None: not a front install.sh wrote
    missing_parts: tuple[str, ...] = ()  # what the front names that is not there


def _read_small(path: Path) -> str | None:
    """A regular file's text, when it is small; None otherwise (a FIFO never blocks)."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_size > SCRIPT_MAX_BYTES:
            return None
        return path.read_text(errors="replace")
    except OSError:
        return None


def gather_install(paths: HomePaths) -> InstallFacts:
    layout = layout_of(paths)
    managed = paths.managed_binary
    try:
        target: str | None = os.readlink(layout.current)
    except OSError:
        target = None
    resolved = Path(os.path.realpath(managed))
    executable = resolved.is_file() and os.access(resolved, os.X_OK)
    text = _read_small(managed) if executable else None
    front = None if text is None else front_parts(text)
    return InstallFacts(
        managed_binary=managed,
        current_target=target,
        executable=executable,
        marker=read_marker(managed.parent / RELEASE_MARKER),
        front=front,
        missing_parts=() if front is None else missing_parts(layout.packages, front),
    )


# -- the codexd command ----------------------------------------------------------------


@dataclass(frozen=True)
class CommandFacts:
    command: Path  # ${CODEXD_BIN_DIR:-~/.local/bin}/codexd
    text: str | None  # None: no such file (or not a small regular file)
    expected: str  # what install.sh writes there for this home
    on_path: bool  # its directory is on PATH
    path_finds: str | None  # what `codexd` on PATH is
    finds_this: bool  # ... and it is `command`
    running: str  # the codexd running this doctor
    home: Path = Path()  # the home doctor looks at
    serves: Path | None = None  # the home the command serves; None: cannot tell
    serves_expected: str = ""  # what install.sh writes there for that home


_SERVED_HOME = re.compile(r'^if \[ -z "\$\{CODEX_HOME:-\}" \]; then CODEX_HOME=(.+); export', re.M)


def served_home(text: str | None) -> Path | None:
    """The home a codexd command install.sh wrote serves (when CODEX_HOME is unset)."""
    found = None if text is None else _SERVED_HOME.search(text)
    if found is None:
        return None
    try:
        words = shlex.split(found.group(1))
    except ValueError:
        return None
    return Path(words[0]) if len(words) == 1 else None


def gather_command(paths: HomePaths) -> CommandFacts:
    environ = os.environ
    home = Path(environ.get("HOME") or Path.home())
    bin_dir = Path(environ.get(config.BIN_DIR_ENV) or home / ".local" / "bin")
    command = bin_dir / "codexd"
    found = shutil.which("codexd")
    try:
        finds_this = found is not None and os.path.samefile(found, command)
    except OSError:
        finds_this = False
    text = _read_small(command)
    serves = served_home(text)
    return CommandFacts(
        command=command,
        text=text,
        expected=render_bin_command(paths.home),
        on_path=str(bin_dir) in environ.get("PATH", "").split(os.pathsep),
        path_finds=found,
        finds_this=finds_this,
        running=sys.argv[0],
        home=paths.home,
        serves=serves,
        serves_expected="" if serves is None else render_bin_command(serves),
    )


# -- the control socket ----------------------------------------------------------------


@dataclass(frozen=True)
class SocketFacts:
    directory: DirCheck  # app-server-control/
    kind: str  # what the socket path is: socket, symlink, missing, or another file kind
    target: Path | None = None  # a symlink's target
    target_directory: DirCheck | None = None  # the private directory it leads into
    listener_command: str | None = None  # the command line of who accepted the probe


def gather_socket(paths: HomePaths, listener: PeerCredentials | None) -> SocketFacts:
    socket_path = paths.socket_path
    directory = dir_check(socket_path.parent, SOCKET_DIR)
    target = target_directory = None
    try:
        mode = os.lstat(socket_path).st_mode
        kind = "socket" if stat.S_ISSOCK(mode) else "symlink" if stat.S_ISLNK(mode) else "other"
        if kind == "symlink":
            target = Path(os.path.join(socket_path.parent, os.readlink(socket_path)))
            target_directory = dir_check(target.parent, PRIVATE_SOCKET_DIR)
    except FileNotFoundError:
        kind = "missing"
    except OSError as error:
        kind = f"unreadable ({error.strerror})"
    command = None if listener is None else command_line(listener.pid)
    return SocketFacts(directory, kind, target, target_directory, command)


# -- update sources --------------------------------------------------------------------


@dataclass(frozen=True)
class SourceFacts:
    codexd: ReleaseSource | None  # where codexd comes from; None: nothing recorded
    codexd_from_env: bool  # CODEXD_CHANNEL, not the recorded source
    # The channel directory or checkout, with its install.sh, is there; None: not
    # looked at (an https:// channel: doctor uses no network).
    codexd_present: bool | None
    codex: str  # codex's source as install.sh would read it
    codex_origin: str  # CODEXD_CODEX_SOURCE, the record, or the default
    npm: str | None = None  # npm on PATH
    npm_version: str | None = None
    npm_error: str | None = None
    codex_file_present: bool | None = None  # for a path: source
    codexd_problem: str | None = None  # why codexd's installer cannot run (gone, no install.sh)


def _source_environment(updater_pid: int | None) -> dict[str, str]:
    """The running updater's environment (its passes read CODEXD_CHANNEL and
    CODEXD_CODEX_SOURCE from it), else ours."""
    if updater_pid is not None:
        import psutil

        try:
            return psutil.Process(updater_pid).environ()
        except (psutil.Error, OSError):
            pass
    return dict(os.environ)


def _npm_version(npm: str) -> tuple[str | None, str | None]:
    import subprocess

    try:
        completed = subprocess.run(
            [npm, "--version"],
            capture_output=True,
            text=True,
            timeout=NPM_VERSION_TIMEOUT_SECONDS,
            stdin=subprocess.DEVNULL,
            cwd="/",
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as error:
        return None, f"{npm} --version: {error}"
    if completed.returncode != 0:
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-1:] or [""]
        return None, f"{npm} --version exited {completed.returncode}: {tail[0]}"
    return completed.stdout.strip(), None


def gather_sources(paths: HomePaths, updater_pid: int | None) -> SourceFacts:
    environ = _source_environment(updater_pid)
    codexd = resolve_source(paths, environ)
    present: bool | None = None
    problem = None if codexd is None else local_source_problem(codexd)
    if codexd is not None and not codexd.location.startswith("https://"):
        present = problem is None
    record = layout_of(paths).record("codex-source")
    npm = shutil.which("npm", path=environ.get("PATH"))
    if environ.get(config.CODEX_SOURCE_ENV):
        codex, origin = environ[config.CODEX_SOURCE_ENV], config.CODEX_SOURCE_ENV
    elif (recorded := read_line(record)) is not None:
        codex, origin = recorded, str(record)
    else:
        codex, origin = (DEFAULT_NPM_SOURCE if npm else "reference"), "default"
    npm_version = npm_error = None
    if codex.startswith("npm:") and npm is not None:
        npm_version, npm_error = _npm_version(npm)
    file_present = None
    if codex.startswith("path:"):
        file_present = Path(os.path.expanduser(codex.removeprefix("path:"))).is_file()
    return SourceFacts(
        codexd=codexd,
        codexd_from_env=bool(environ.get(config.CHANNEL_ENV)),
        codexd_present=present,
        codexd_problem=problem,
        codex=codex,
        codex_origin=origin,
        npm=npm,
        npm_version=npm_version,
        npm_error=npm_error,
        codex_file_present=file_present,
    )


# -- boot id and clock -----------------------------------------------------------------


@dataclass(frozen=True)
class ClockFacts:
    now: float  # seconds since the epoch
    boot_id: str | None
    boot_id_error: str | None = None
    newest_file: Path | None = None  # the state file written last
    newest_mtime: float | None = None


def gather_clock(paths: HomePaths) -> ClockFacts:
    try:
        boot_id: str | None = Path(BOOT_ID_FILE).read_text().strip() or None
        boot_error = None if boot_id else f"{BOOT_ID_FILE} is empty"
    except OSError as error:
        boot_id, boot_error = None, f"cannot read {BOOT_ID_FILE}: {error.strerror}"
    newest: tuple[float, Path] | None = None
    for path in paths.state_files():
        try:
            mtime = os.lstat(path).st_mtime
        except OSError:
            continue
        if newest is None or mtime > newest[0]:
            newest = (mtime, path)
    return ClockFacts(
        now=time.time(),
        boot_id=boot_id,
        boot_id_error=boot_error,
        newest_file=None if newest is None else newest[1],
        newest_mtime=None if newest is None else newest[0],
    )
