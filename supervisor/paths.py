"""Where everything lives for one CODEX_HOME.

Pure path arithmetic: nothing here touches the file system except
`resolve_home`, which reads the environment. Light to import (no pathlib at import
time): the command fast path (supervisor/fast_path.py) joins the names below as
strings; everything else uses `HomePaths`.
"""

from __future__ import annotations

import os

from supervisor.lean import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import TypeVar

    AnyPath = TypeVar("AnyPath", str, Path)

STATE_DIR_NAME = "app-server-daemon"
SOCKET_DIR_NAME = "app-server-control"
SOCKET_FILE_NAME = "app-server-control.sock"
SETTINGS_NAME = "settings.json"
MANAGED_BINARY_CACHE_NAME = "managed-binary.json"
DAEMON_LOCK_NAME = "daemon.lock"
APP_SERVER_RECORD_NAME = "app-server.pid"
APP_SERVER_LOG_NAME = "app-server.log"
UPDATER_RECORD_NAME = "app-server-updater.pid"
UPDATER_LOG_NAME = "app-server-updater.log"
UPDATER_INSTALLER_RECORD_NAME = "app-server-updater.installer.json"
UPDATER_LAST_PASS_NAME = "app-server-updater.last-pass.json"
LOCK_SUFFIX = ".lock"
# Every file codexd reads or replaces in the state dir.
STATE_FILE_NAMES = (
    APP_SERVER_RECORD_NAME,
    UPDATER_RECORD_NAME,
    APP_SERVER_RECORD_NAME + LOCK_SUFFIX,
    UPDATER_RECORD_NAME + LOCK_SUFFIX,
    SETTINGS_NAME,
    MANAGED_BINARY_CACHE_NAME,
    DAEMON_LOCK_NAME,
    UPDATER_INSTALLER_RECORD_NAME,
    UPDATER_LAST_PASS_NAME,
    APP_SERVER_LOG_NAME,
    UPDATER_LOG_NAME,
)
# packages/standalone/current/codex, under the home.
MANAGED_BINARY_PARTS = ("packages", "standalone", "current", "codex")

# sun_path is 108 bytes on Linux, one of them the terminating NUL.
SUN_PATH_MAX_BYTES = 107


def home_from_environment(environ: dict[str, str] | None = None) -> str:
    """`$CODEX_HOME`, else `~/.codex`, made absolute."""
    env = os.environ if environ is None else environ
    home = env.get("CODEX_HOME") or os.path.join(os.path.expanduser("~"), ".codex")
    return os.path.abspath(os.path.expanduser(home))


def resolve_home(environ: dict[str, str] | None = None) -> Path:
    from pathlib import Path

    return Path(home_from_environment(environ))


class HomePaths(Value):
    """Every path the daemon reads or writes under one home."""

    __slots__ = ("home",)

    def __init__(self, home: Path) -> None:
        self.home = home

    @property
    def state_dir(self) -> Path:
        return self.home / STATE_DIR_NAME

    @property
    def settings_file(self) -> Path:
        return self.state_dir / SETTINGS_NAME

    @property
    def managed_binary_cache(self) -> Path:
        return self.state_dir / MANAGED_BINARY_CACHE_NAME

    @property
    def daemon_lock(self) -> Path:
        return self.state_dir / DAEMON_LOCK_NAME

    @property
    def app_server_record(self) -> Path:
        return self.state_dir / APP_SERVER_RECORD_NAME

    @property
    def app_server_log(self) -> Path:
        return self.state_dir / APP_SERVER_LOG_NAME

    @property
    def updater_record(self) -> Path:
        return self.state_dir / UPDATER_RECORD_NAME

    @property
    def updater_installer_record(self) -> Path:
        """The updater's running installer, so a successor can end it."""
        return self.state_dir / UPDATER_INSTALLER_RECORD_NAME

    @property
    def updater_last_pass(self) -> Path:
        return self.state_dir / UPDATER_LAST_PASS_NAME

    @property
    def updater_log(self) -> Path:
        return self.state_dir / UPDATER_LOG_NAME

    def state_files(self) -> list[Path]:
        """Every file codexd reads or replaces in the state dir."""
        return [self.state_dir / name for name in STATE_FILE_NAMES]

    @property
    def standalone_dir(self) -> Path:
        return self.home / "packages" / "standalone"

    @property
    def managed_binary(self) -> Path:
        return self.home.joinpath(*MANAGED_BINARY_PARTS)

    @property
    def releases_dir(self) -> Path:
        return self.standalone_dir / "releases"

    @property
    def socket_path(self) -> Path:
        """The control socket's public path (a symlink when it is too long to bind)."""
        return self.home / SOCKET_DIR_NAME / SOCKET_FILE_NAME


class WorkerPaths(Value):
    """The paths a resident worker (the keeper, the updater) uses at every turn, as
    strings: `HomePaths` would keep `pathlib` (2 MB with what it imports) in their memory
    for their whole life. `home_paths()` for the rare work that takes a `HomePaths`."""

    __slots__ = (
        "app_server_log",
        "app_server_record",
        "home",
        "socket_path",
        "state_dir",
        "updater_installer_record",
        "updater_log",
        "updater_record",
    )

    def __init__(self, home: str) -> None:
        self.home = home
        self.state_dir = os.path.join(home, STATE_DIR_NAME)
        self.app_server_record = os.path.join(self.state_dir, APP_SERVER_RECORD_NAME)
        self.app_server_log = os.path.join(self.state_dir, APP_SERVER_LOG_NAME)
        self.updater_record = os.path.join(self.state_dir, UPDATER_RECORD_NAME)
        self.updater_log = os.path.join(self.state_dir, UPDATER_LOG_NAME)
        self.updater_installer_record = os.path.join(self.state_dir, UPDATER_INSTALLER_RECORD_NAME)
        self.socket_path = os.path.join(home, SOCKET_DIR_NAME, SOCKET_FILE_NAME)

    def home_paths(self) -> HomePaths:
        from pathlib import Path  # for rare work only: see above

        return HomePaths(Path(self.home))


def lock_path_for(record: AnyPath) -> AnyPath:
    """The liveness lock beside a pid record: `app-server.pid` -> `app-server.pid.lock`
    (a string for a string, a Path for a Path)."""
    return type(record)(os.fspath(record) + LOCK_SUFFIX)


def fits_sun_path(path: str | os.PathLike[str]) -> bool:
    return len(os.fsencode(path)) <= SUN_PATH_MAX_BYTES


def private_socket_dir(socket_path: Path, uid: int, runtime_dir: str | None) -> Path:
    """The short directory a too-long socket path is bound in.

    One directory per public socket path, so two homes never share a socket.
    `$XDG_RUNTIME_DIR` is per-user already; `/tmp` needs a per-user parent.
    """
    import hashlib  # only long socket paths need it
    from pathlib import Path

    tag = hashlib.sha256(os.fsencode(socket_path)).hexdigest()[:16]
    base = Path(runtime_dir) / "codexd" if runtime_dir else Path("/tmp") / f"codexd-{uid}"
    return base / tag


def connectable_socket_path(socket_path: Path) -> Path:
    """Where the public path leads: the symlink's target when it is too long for
    sun_path. Path arithmetic only, for tests and messages: a client connects through
    `control_socket.connect_control_socket`, which first checks where the link leads."""
    from pathlib import Path

    if fits_sun_path(socket_path):
        return socket_path
    try:
        return Path(os.readlink(socket_path))
    except OSError:
        return socket_path
