"""Bringing the daemon back after a reboot: a systemd user unit where a user manager
runs, else an `@reboot` crontab line. Either runs
`<managed binary> app-server daemon bootstrap --saved-remote-control` with CODEX_HOME
set, and PATH as the persisting user had it (`boot_time_path`): the remote-control setting
saved at boot time wins, so enabling or disabling it later needs no new unit.

The unit is `Type=oneshot` with `RemainAfterExit=yes`: bootstrap detaches the
app-server and the updater and exits once they answer, which a oneshot takes as
success; the workers stay in the unit's cgroup, so stopping the unit (at shutdown)
sends them SIGTERM. `Type=forking` would make systemd guess one main pid among two
workers whose pids change on every update.

The text of the unit and of the cron line is made by pure functions; the I/O
functions below take their tools (`PersistenceTools`) so tests can point them at a
temporary directory and fake `systemctl`/`crontab` commands.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from supervisor.errors import DaemonError
from supervisor.paths import HomePaths

TOOL_TIMEOUT_SECONDS = 30.0
BOOT_LOG_NAME = "boot.log"
CRON_MARKER = "codexd-persist"
# bootstrap waits up to 75 s for daemon.lock, then up to 10 s per worker.
UNIT_START_TIMEOUT_SECONDS = 180


class PersistenceKind(Enum):
    SYSTEMD = "systemd"
    CRON = "cron"


def home_tag(home: Path) -> str:
    """Names one home's unit and cron line, so two homes never share them."""
    return hashlib.sha256(os.fsencode(home)).hexdigest()[:12]


def unit_name(home: Path) -> str:
    return f"codexd-{home_tag(home)}.service"


def bootstrap_command(managed_binary: Path) -> list[str]:
    return [str(managed_binary), "app-server", "daemon", "bootstrap", "--saved-remote-control"]


def _refuse_control_characters(value: str) -> str:
    if any(ord(character) < 0x20 or ord(character) == 0x7F for character in value):
        raise DaemonError(f"cannot persist a path with control characters: {value!r}")
    return value


_PLAIN_WORD = re.compile(r"[A-Za-z0-9_@%+=:,./$-]+")


def systemd_quote(value: str, *, in_command: bool) -> str:
    """One word of a unit file, double-quoted when it needs to be. `%` starts a
    specifier everywhere and `$` a variable in a command's arguments, so both are
    doubled there."""
    _refuse_control_characters(value)
    escaped = value.replace("%", "%%")
    if in_command:
        escaped = escaped.replace("$", "$$")
    if value and _PLAIN_WORD.fullmatch(value):
        return escaped
    quoted = escaped.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}"'


# What a login shell has at least; cron gives `/usr/bin:/bin` alone.
SYSTEM_PATH = ("/usr/local/bin", "/usr/bin", "/bin")


# vixie cron (Debian's among its heirs) cuts a crontab command at 1000 characters,
# silently: the line's PATH stays well under that.
BOOT_PATH_MAX_CHARS = 512


def boot_time_path(user_path: str) -> str:
    """The PATH the boot-time bootstrap runs with: the persisting user's, so that the
    updater it starts finds npm, node and git where the user's shell found them (cron's
    `/usr/bin:/bin` and the user manager's PATH miss ~/.nvm and the like), then the
    system's directories it lacks. Only absolute directories, each once: cron starts in
    $HOME, where a relative one would mean something else. Only UTF-8 ones: a unit file
    and a crontab are text."""
    kept: list[str] = []
    room = BOOT_PATH_MAX_CHARS - len(os.pathsep.join(SYSTEM_PATH))
    for directory in [*user_path.split(os.pathsep), *SYSTEM_PATH]:
        printable = not any(ord(c) < 0x20 or ord(c) == 0x7F for c in directory)
        text = not any("\udc80" <= c <= "\udcff" for c in directory)  # undecodable bytes
        if not (directory.startswith("/") and printable and text) or directory in kept:
            continue
        if directory not in SYSTEM_PATH:  # the system's always fit: room is kept for them
            if len(directory) + 1 > room:
                continue  # the user's first directories (nvm's, ~/.local/bin) come first
            room -= len(directory) + 1
        kept.append(directory)
    return os.pathsep.join(kept)


def unit_text(home: Path, managed_binary: Path, path: str) -> str:
    # systemd expands $VARIABLES in a command's arguments, not in its path.
    executable, *arguments = bootstrap_command(managed_binary)
    exec_start = " ".join(
        [
            systemd_quote(executable, in_command=False),
            *(systemd_quote(word, in_command=True) for word in arguments),
        ]
    )
    environment = " ".join(
        systemd_quote(assignment, in_command=False)
        for assignment in (f"CODEX_HOME={home}", f"PATH={path}")
    )
    description = f"codexd app-server and updater for CODEX_HOME={home}".replace("%", "%%")
    return (
        "# Written by `codexd bootstrap --persist`; `codexd unpersist` removes it.\n"
        "[Unit]\n"
        f"Description={_refuse_control_characters(description)}\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        "RemainAfterExit=yes\n"
        f"Environment={environment}\n"
        f"ExecStart={exec_start}\n"
        f"TimeoutStartSec={UNIT_START_TIMEOUT_SECONDS}\n"
        "\n"
        "[Install]\n"
        "WantedBy=default.target\n"
    )


# Inside single quotes it ends them and starts them again; outside, it quotes a `%`.
QUOTED_CRON_PERCENT = "'\\%'"


def cron_marker(home: Path) -> str:
    return f"# {CRON_MARKER} {home_tag(home)}"


def cron_line(home: Path, managed_binary: Path, boot_log: Path, path: str) -> str:
    """`@reboot` and a sh command. `%` means newline to cron, and `\\%` is its escape,
    but a backslash before it (`/a\\%b`) would pair with cron's: each `%` is written
    `'\\%'`, outside sh's quotes, which cron makes `'%'` and sh a plain `%`."""
    command = " ".join(
        [
            "umask 077;",
            f"PATH={shlex.quote(_refuse_control_characters(path))}",
            f"CODEX_HOME={shlex.quote(_refuse_control_characters(str(home)))}",
            "exec",
            *(
                shlex.quote(_refuse_control_characters(word))
                for word in bootstrap_command(managed_binary)
            ),
            f">>{shlex.quote(str(boot_log))}",
            "2>&1",
        ]
    )
    return f"@reboot {command.replace('%', QUOTED_CRON_PERCENT)} {cron_marker(home)}"


def crontab_without_ours(crontab: str, home: Path) -> str:
    """The crontab with this home's line gone; every other line kept as it was."""
    marker = cron_marker(home)
    lines = [line for line in crontab.splitlines() if not line.rstrip().endswith(marker)]
    return "".join(f"{line}\n" for line in lines)


def crontab_with_ours(crontab: str, home: Path, line: str) -> str:
    return crontab_without_ours(crontab, home) + line + "\n"


NOWHERE_TO_PERSIST = (
    "no systemd user manager answers `systemctl --user` and there is no `crontab` "
    "command; install cron or enable a user manager (loginctl enable-linger)"
)


def persistence_blocker(systemd_user_manager: bool, crontab_present: bool) -> str | None:
    """Why nothing can bring a home back after a reboot here; None: something can."""
    return None if systemd_user_manager or crontab_present else NOWHERE_TO_PERSIST


def choose_persistence(systemd_user_manager: bool, crontab_present: bool) -> PersistenceKind:
    blocker = persistence_blocker(systemd_user_manager, crontab_present)
    if blocker is not None:
        raise DaemonError(f"cannot persist: {blocker}")
    return PersistenceKind.SYSTEMD if systemd_user_manager else PersistenceKind.CRON


# -- I/O -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PersistenceTools:
    unit_dir: Path
    systemctl: str = "systemctl"
    crontab: str = "crontab"
    loginctl: str = "loginctl"
    # $XDG_RUNTIME_DIR, where a running user manager has its socket; None: unset.
    runtime_dir: Path | None = None
    # The PATH written into the unit or cron line (`boot_time_path` of the user's).
    boot_path: str = os.pathsep.join(SYSTEM_PATH)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> PersistenceTools:
        """`$XDG_CONFIG_HOME/systemd/user` (else ~/.config/...), where the user manager
        looks for units; the tools from PATH."""
        env = os.environ if environ is None else environ
        config = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        runtime = env.get("XDG_RUNTIME_DIR")
        return cls(
            unit_dir=Path(config) / "systemd" / "user",
            runtime_dir=Path(runtime) if runtime else None,
            boot_path=boot_time_path(env.get("PATH", "")),
        )


@dataclass(frozen=True)
class PersistResult:
    kind: PersistenceKind
    warning: str | None = None


def _run(command: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            command,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=TOOL_TIMEOUT_SECONDS,
            check=False,
            stdin=None if stdin is not None else subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError) as error:
        raise DaemonError(f"cannot run {' '.join(command)}: {error}") from error


def _checked(command: list[str], stdin: str | None = None) -> str:
    completed = _run(command, stdin)
    if completed.returncode != 0:
        message = completed.stderr.strip() or f"exit status {completed.returncode}"
        raise DaemonError(f"{' '.join(command)} failed: {message}")
    return completed.stdout


def systemd_user_manager_runs(tools: PersistenceTools) -> bool:
    if shutil.which(tools.systemctl) is None:
        return False
    return _run([tools.systemctl, "--user", "show-environment"]).returncode == 0


def crontab_present(tools: PersistenceTools) -> bool:
    return shutil.which(tools.crontab) is not None


def user_manager_socket_present(tools: PersistenceTools) -> bool:
    """A user manager runs, by its private socket: what `systemctl --user` connects to
    first, looked at without starting a process (status reads this on every run)."""
    if tools.runtime_dir is None or shutil.which(tools.systemctl) is None:
        return False
    return (tools.runtime_dir / "systemd" / "private").exists()


def quick_persistence_blocker(tools: PersistenceTools) -> str | None:
    """`persistence_blocker` from facts that cost no process, for `status`: bootstrap
    --persist asks `systemctl --user` itself and may find a manager this misses."""
    if crontab_present(tools):
        return None
    return persistence_blocker(user_manager_socket_present(tools), False)


def read_crontab(tools: PersistenceTools) -> str:
    """The user's crontab; empty when they have none (`crontab -l` then fails)."""
    completed = _run([tools.crontab, "-l"])
    if completed.returncode != 0:
        if "no crontab" in completed.stderr.lower():
            return ""
        message = completed.stderr.strip() or f"exit status {completed.returncode}"
        raise DaemonError(f"{tools.crontab} -l failed: {message}")
    return completed.stdout


def write_crontab(tools: PersistenceTools, text: str) -> None:
    _checked([tools.crontab, "-"], stdin=text)


def _linger_warning(tools: PersistenceTools) -> str | None:
    """Without lingering, a user manager starts at the first login, not at boot."""
    if shutil.which(tools.loginctl) is None:
        return None
    completed = _run([tools.loginctl, "show-user", str(os.getuid()), "-p", "Linger", "--value"])
    if completed.returncode == 0 and completed.stdout.strip() == "no":
        return (
            "the systemd user manager starts at the first login, not at boot, until "
            "lingering is on: run `loginctl enable-linger` once"
        )
    return None


def install_unit(paths: HomePaths, tools: PersistenceTools) -> None:
    name = unit_name(paths.home)
    text = unit_text(paths.home, paths.managed_binary, tools.boot_path)
    try:
        tools.unit_dir.mkdir(parents=True, exist_ok=True)
        temporary = tools.unit_dir / f".{name}.{os.getpid()}.tmp"
        temporary.write_text(text)
        os.replace(temporary, tools.unit_dir / name)
    except OSError as error:
        raise DaemonError(f"cannot write {tools.unit_dir / name}: {error.strerror}") from error
    _checked([tools.systemctl, "--user", "daemon-reload"])
    _checked([tools.systemctl, "--user", "enable", name])


def remove_unit(paths: HomePaths, tools: PersistenceTools) -> bool:
    """Disable and delete this home's unit; False when there was none."""
    name = unit_name(paths.home)
    unit = tools.unit_dir / name
    if not unit.exists():
        return False
    if systemd_user_manager_runs(tools):
        _checked([tools.systemctl, "--user", "disable", name])
    else:
        # No manager to ask: remove what `enable` made by hand.
        with contextlib.suppress(FileNotFoundError):
            (tools.unit_dir / "default.target.wants" / name).unlink()
    unit.unlink()
    if systemd_user_manager_runs(tools):
        _checked([tools.systemctl, "--user", "daemon-reload"])
    return True


def install_cron_line(paths: HomePaths, tools: PersistenceTools) -> None:
    line = cron_line(
        paths.home, paths.managed_binary, paths.state_dir / BOOT_LOG_NAME, tools.boot_path
    )
    write_crontab(tools, crontab_with_ours(read_crontab(tools), paths.home, line))


def remove_cron_line(paths: HomePaths, tools: PersistenceTools) -> bool:
    """Delete this home's line; False when there was none."""
    if not crontab_present(tools):
        return False
    current = read_crontab(tools)
    kept = crontab_without_ours(current, paths.home)
    if kept == current:
        return False
    write_crontab(tools, kept)
    return True


def persist(paths: HomePaths, tools: PersistenceTools) -> PersistResult:
    """Install this home's unit, or its cron line, replacing what an earlier call left."""
    kind = choose_persistence(systemd_user_manager_runs(tools), crontab_present(tools))
    if kind is PersistenceKind.SYSTEMD:
        remove_cron_line(paths, tools)
        install_unit(paths, tools)
        return PersistResult(kind, _linger_warning(tools))
    remove_unit(paths, tools)
    install_cron_line(paths, tools)
    return PersistResult(kind)


def unpersist(paths: HomePaths, tools: PersistenceTools) -> list[PersistenceKind]:
    """Remove this home's unit and cron line; what was removed."""
    removed = []
    if remove_unit(paths, tools):
        removed.append(PersistenceKind.SYSTEMD)
    if remove_cron_line(paths, tools):
        removed.append(PersistenceKind.CRON)
    return removed


def persisted_kind(paths: HomePaths, tools: PersistenceTools) -> PersistenceKind | None:
    """How this home comes back after a reboot, if it does; for `status`."""
    if (tools.unit_dir / unit_name(paths.home)).exists():
        return PersistenceKind.SYSTEMD
    if crontab_present(tools):
        with contextlib.suppress(DaemonError):
            if cron_marker(paths.home) in read_crontab(tools):
                return PersistenceKind.CRON
    return None
