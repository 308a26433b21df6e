"""bootstrap --persist and unpersist: the unit and cron line as text (tables), their
installation through fake `systemctl`/`crontab` commands, and systemd's own check."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from supervisor.errors import DaemonError
from supervisor.paths import HomePaths
from supervisor.persistence import (
    NOWHERE_TO_PERSIST,
    PersistenceKind,
    PersistenceTools,
    boot_time_path,
    choose_persistence,
    cron_line,
    cron_marker,
    crontab_with_ours,
    crontab_without_ours,
    home_tag,
    persist,
    persisted_kind,
    persistence_blocker,
    quick_persistence_blocker,
    systemd_quote,
    unit_name,
    unit_text,
    unpersist,
)
from tests.conftest import Home

HOME = Path("/home/me/.codex")
MANAGED = HOME / "packages/standalone/current/codex"

# -- text ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "in_command", "expected"),
    [
        ("/usr/bin/codex", True, "/usr/bin/codex"),
        ("--remote-control", True, "--remote-control"),
        ("/a b/codex", True, '"/a b/codex"'),
        ("100%", True, "100%%"),
        ("$HOME", True, "$$HOME"),
        ("CODEX_HOME=$x", False, "CODEX_HOME=$x"),
        ('say "hi"', True, '"say \\"hi\\""'),
        ("back\\slash", True, '"back\\\\slash"'),
        ("", True, '""'),
    ],
)
def test_systemd_quote(value: str, in_command: bool, expected: str) -> None:
    assert systemd_quote(value, in_command=in_command) == expected


def test_systemd_quote_refuses_newlines() -> None:
    with pytest.raises(DaemonError, match="control characters"):
        systemd_quote("a\nb", in_command=True)


BOOT_PATH = "/home/me/.nvm/versions/node/v22/bin:/usr/local/bin:/usr/bin:/bin"


@pytest.mark.parametrize(
    ("user_path", "expected"),
    [
        ("", "/usr/local/bin:/usr/bin:/bin"),
        ("/usr/bin:/bin", "/usr/bin:/bin:/usr/local/bin"),
        ("/opt/node/bin:/usr/bin", "/opt/node/bin:/usr/bin:/usr/local/bin:/bin"),
        # Relative and empty entries would mean cron's cwd ($HOME): dropped; repeats once.
        (".:bin::/a:/a:/usr/local/bin", "/a:/usr/local/bin:/usr/bin:/bin"),
        ("/a b/100%/$x:/bin", "/a b/100%/$x:/bin:/usr/local/bin:/usr/bin"),
        ("/with\nnewline:/ok", "/ok:/usr/local/bin:/usr/bin:/bin"),
        # Not UTF-8 (a surrogate-escaped byte): no unit or crontab could be written.
        ("/opt/\udcff/bin:/ok", "/ok:/usr/local/bin:/usr/bin:/bin"),
        # Kept short for cron's 1000-character commands: the first directories win.
        (
            ":".join(["/n/bin", *(f"/d{i:03}/" + "x" * 40 for i in range(30)), "/bin"]),
            ":".join(["/n/bin", *(f"/d{i:03}/" + "x" * 40 for i in range(10)), "/bin"])
            + ":/usr/local/bin:/usr/bin",
        ),
    ],
)
def test_boot_time_path(user_path: str, expected: str) -> None:
    assert boot_time_path(user_path) == expected


def test_unit_text_bootstraps_with_the_saved_remote_control_setting() -> None:
    text = unit_text(HOME, MANAGED, BOOT_PATH)
    assert f"ExecStart={MANAGED} app-server daemon bootstrap --saved-remote-control\n" in text
    assert f"Environment=CODEX_HOME={HOME} PATH={BOOT_PATH}\n" in text
    assert "Type=oneshot\n" in text
    assert "RemainAfterExit=yes\n" in text
    assert "WantedBy=default.target\n" in text


def test_units_and_cron_lines_of_two_homes_differ() -> None:
    other = Path("/home/me/other-codex")
    assert unit_name(HOME) != unit_name(other)
    assert cron_marker(HOME) != cron_marker(other)
    assert unit_name(HOME) == f"codexd-{home_tag(HOME)}.service"


def parse_cron_line(line: str) -> tuple[str, list[str]]:
    """The schedule and the shell words of the command, as cron then sh would see them."""
    schedule, command = line.split(None, 1)
    words = shlex.split(command.replace("\\%", "%"), comments=True)
    return schedule, words


@pytest.mark.parametrize("home", [HOME, Path("/srv/codex homes/100% x's")])
def test_cron_line_parses_back(home: Path) -> None:
    managed = home / "packages/standalone/current/codex"
    boot_log = home / "app-server-daemon/boot.log"
    path = f"{home}/bin:/usr/bin:/bin"
    line = cron_line(home, managed, boot_log, path)
    assert "\n" not in line
    assert "%" not in line.replace("\\%", "")
    schedule, words = parse_cron_line(line)
    assert schedule == "@reboot"
    bootstrap = [str(managed), "app-server", "daemon", "bootstrap", "--saved-remote-control"]
    assert words == [
        "umask", "077;", f"PATH={path}", f"CODEX_HOME={home}", "exec", *bootstrap,
        f">>{boot_log}", "2>&1",
    ]  # fmt: skip
    assert line.endswith(cron_marker(home))


OURS = cron_line(HOME, MANAGED, HOME / "boot.log", BOOT_PATH)
OTHER_HOME = Path("/home/me/other")
THEIRS = cron_line(OTHER_HOME, OTHER_HOME / "codex", OTHER_HOME / "boot.log", BOOT_PATH)


@pytest.mark.parametrize(
    ("crontab", "expected"),
    [
        ("", ""),
        ("MAILTO=me\n0 * * * * backup\n", "MAILTO=me\n0 * * * * backup\n"),
        (f"0 * * * * backup\n{OURS}\n", "0 * * * * backup\n"),
        (f"{OURS}\n{THEIRS}\n", f"{THEIRS}\n"),
        (f"{OURS}\n{OURS}\n# note\n", "# note\n"),
        ("no newline at end", "no newline at end\n"),
    ],
)
def test_crontab_without_ours(crontab: str, expected: str) -> None:
    assert crontab_without_ours(crontab, HOME) == expected


def test_crontab_with_ours_replaces_and_never_duplicates() -> None:
    once = crontab_with_ours("0 * * * * backup\n", HOME, OURS)
    assert crontab_with_ours(once, HOME, OURS) == once == f"0 * * * * backup\n{OURS}\n"


@pytest.mark.parametrize(
    ("systemd", "cron", "expected"),
    [
        (True, True, PersistenceKind.SYSTEMD),
        (True, False, PersistenceKind.SYSTEMD),
        (False, True, PersistenceKind.CRON),
    ],
)
def test_choose_persistence(systemd: bool, cron: bool, expected: PersistenceKind) -> None:
    assert choose_persistence(systemd, cron) is expected


def test_choose_persistence_without_either_is_an_error() -> None:
    with pytest.raises(DaemonError, match="cannot persist") as raised:
        choose_persistence(False, False)
    assert str(raised.value) == f"cannot persist: {NOWHERE_TO_PERSIST}"


@pytest.mark.parametrize(
    ("systemd", "cron", "expected"),
    [
        (True, True, None),
        (True, False, None),
        (False, True, None),
        (False, False, NOWHERE_TO_PERSIST),
    ],
)
def test_persistence_blocker(systemd: bool, cron: bool, expected: str | None) -> None:
    assert persistence_blocker(systemd, cron) == expected


@pytest.mark.parametrize(
    ("cron", "systemctl", "socket", "expected"),
    [
        (True, False, False, None),
        (False, True, True, None),  # a user manager's socket, and systemctl to reach it
        (False, True, False, NOWHERE_TO_PERSIST),
        (False, False, True, NOWHERE_TO_PERSIST),  # a socket, but no systemctl
    ],
)
def test_the_quick_persistence_blocker_runs_nothing(
    tmp_path: Path, cron: bool, systemctl: bool, socket: bool, expected: str | None
) -> None:
    bin_dir = fake_tools(tmp_path, user_manager=True, cron=cron)
    runtime = tmp_path / "run"
    if socket:
        (runtime / "systemd").mkdir(parents=True)
        (runtime / "systemd" / "private").touch()
    tools = replace(
        tools_in(tmp_path, bin_dir),
        systemctl=str(bin_dir / "systemctl") if systemctl else str(tmp_path / "none"),
        runtime_dir=runtime,
    )
    assert quick_persistence_blocker(tools) == expected
    assert calls(tmp_path) == []  # not even `systemctl --user`


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is absent")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    home = tmp_path / "a home with 100% $pecial chars"
    managed = home / "packages/standalone/current/codex"
    managed.parent.mkdir(parents=True)
    managed.write_text("#!/bin/sh\n")
    managed.chmod(0o755)
    unit = tmp_path / unit_name(home)
    unit.write_text(unit_text(home, managed, f"{home}/bin:/usr/bin"))
    completed = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if "Failed to initialize manager" in completed.stderr:
        pytest.skip(f"systemd-analyze cannot run here: {completed.stderr.strip()}")
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr == ""


def npm_reporter(directory: Path) -> tuple[Path, Path]:
    """A managed binary that writes where `npm` is on its PATH (as the updater would
    find it), and a bin directory with npm in it, as nvm has."""
    npm = directory / "nvm" / "bin" / "npm"
    npm.parent.mkdir(parents=True)
    npm.write_text("#!/bin/sh\necho 10.0.0\n")
    npm.chmod(0o755)
    managed = directory / "a home" / "current" / "codex"
    managed.parent.mkdir(parents=True)
    managed.write_text(f"#!/bin/sh\ncommand -v npm > {shlex.quote(str(directory / 'found'))}\n")
    managed.chmod(0o755)
    return managed, npm


def test_the_boot_time_cron_command_finds_npm_where_the_user_did(tmp_path: Path) -> None:
    managed, npm = npm_reporter(tmp_path)
    path = boot_time_path(f"{npm.parent}:/usr/bin:/bin")
    line = cron_line(managed.parent, managed, tmp_path / "boot.log", path)
    command = line.split(None, 1)[1].replace("\\%", "%")
    cron = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SHELL": "/bin/sh"}  # cron's
    subprocess.run(["/bin/sh", "-c", command], env=cron, cwd=tmp_path, timeout=30, check=True)
    assert (tmp_path / "found").read_text() == f"{npm}\n"


def as_cron_runs_it(line: str) -> str:
    """The sh command cron runs for a crontab line (vixie cron and cronie): `\\%` is a
    `%`, a backslash before anything else stays, and an unescaped `%` ends the command
    (the rest is its stdin)."""
    command, escaped = "", False
    for character in line.split(None, 1)[1]:
        if escaped:
            command = command[:-1] + "%" if character == "%" else command + character
            escaped = False
            continue
        if character == "%":
            break
        escaped = character == "\\"
        command += character
    return command


HOSTILE = ["/a b", "/q'uote", '/d"q', "/$HOME", "/`id`", "/p%c", "/b\\%c", "/b\\\\%c", "/e\\"]


@pytest.mark.parametrize("value", HOSTILE)
def test_the_cron_line_carries_any_path_and_home_exactly(tmp_path: Path, value: str) -> None:
    home = tmp_path / ("home" + value.replace("/", " "))
    managed = home / "codex"
    managed.parent.mkdir()
    managed.write_text('#!/bin/sh\nprintf "%s\\n%s\\n" "$PATH" "$CODEX_HOME"\n')
    managed.chmod(0o755)
    path = boot_time_path(f"{value};touch {tmp_path}/injected:/usr/bin:/bin")
    boot_log = home / "boot.log"
    command = as_cron_runs_it(cron_line(home, managed, boot_log, path))
    cron = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SHELL": "/bin/sh"}
    completed = subprocess.run(
        ["/bin/sh", "-c", command], env=cron, cwd=tmp_path, capture_output=True, timeout=30
    )
    assert completed.returncode == 0, completed.stderr
    assert boot_log.read_text().splitlines() == [path, str(home)]
    assert not (tmp_path / "injected").exists()


def unit_environment(text: str) -> dict[str, str]:
    """The unit's Environment= assignments as systemd reads them (the quoting
    `systemd_quote` writes: double quotes, backslash escapes, `%%`)."""
    [line] = [line for line in text.splitlines() if line.startswith("Environment=")]
    words = shlex.split(line.removeprefix("Environment="), posix=True)
    return dict(word.replace("%%", "%").split("=", 1) for word in words)


def test_the_unit_runs_bootstrap_with_the_users_path(tmp_path: Path) -> None:
    managed, npm = npm_reporter(tmp_path)
    path = boot_time_path(f"{npm.parent}:/usr/bin:/bin")
    environment = unit_environment(unit_text(managed.parent, managed, path))
    assert environment == {"CODEX_HOME": str(managed.parent), "PATH": path}
    subprocess.run([str(managed)], env=environment, cwd=tmp_path, timeout=30, check=True)
    assert (tmp_path / "found").read_text() == f"{npm}\n"


# -- installing, through fake tools ---------------------------------------------------

FAKE_SYSTEMCTL = """#!/bin/sh
echo "$*" >> "$FAKE_DIR/systemctl.calls"
if [ "$2" = show-environment ] && [ ! -e "$FAKE_DIR/user-manager" ]; then
    echo "Failed to connect to bus" >&2; exit 1
fi
exit 0
"""
FAKE_CRONTAB = """#!/bin/sh
case "$1" in
    -l) [ -e "$FAKE_DIR/crontab" ] || { echo "no crontab for $(id -un)" >&2; exit 1; }
        cat "$FAKE_DIR/crontab" ;;
    -) cat > "$FAKE_DIR/crontab" ;;
    *) exit 2 ;;
esac
"""
FAKE_LOGINCTL = """#!/bin/sh
echo no
"""


def fake_tools(directory: Path, *, user_manager: bool, cron: bool) -> Path:
    """A bin directory with fake systemctl (and crontab); their state in `directory`."""
    bin_dir = directory / "bin"
    bin_dir.mkdir(parents=True)
    scripts = {"systemctl": FAKE_SYSTEMCTL, "loginctl": FAKE_LOGINCTL}
    if cron:
        scripts["crontab"] = FAKE_CRONTAB
    for name, script in scripts.items():
        (bin_dir / name).write_text(script.replace("$FAKE_DIR", shlex.quote(str(directory))))
        (bin_dir / name).chmod(0o755)
    if user_manager:
        (directory / "user-manager").touch()
    return bin_dir


def tools_in(directory: Path, bin_dir: Path) -> PersistenceTools:
    missing = str(directory / "no-such-command")
    crontab = bin_dir / "crontab"
    return PersistenceTools(
        unit_dir=directory / "config" / "systemd" / "user",
        systemctl=str(bin_dir / "systemctl"),
        crontab=str(crontab) if crontab.exists() else missing,
        loginctl=str(bin_dir / "loginctl"),
    )


def calls(directory: Path) -> list[str]:
    try:
        return (directory / "systemctl.calls").read_text().splitlines()
    except FileNotFoundError:
        return []


def test_persist_with_a_user_manager_installs_and_enables_the_unit(tmp_path: Path) -> None:
    paths = HomePaths(tmp_path / "home")
    tools = tools_in(tmp_path, fake_tools(tmp_path, user_manager=True, cron=True))
    (tmp_path / "crontab").write_text(f"0 * * * * backup\n{cron_marker(paths.home)}\n")

    result = persist(paths, tools)

    assert result.kind is PersistenceKind.SYSTEMD
    assert result.warning is not None and "enable-linger" in result.warning
    unit = tools.unit_dir / unit_name(paths.home)
    assert unit.read_text() == unit_text(paths.home, paths.managed_binary, tools.boot_path)
    assert calls(tmp_path)[-2:] == ["--user daemon-reload", f"--user enable {unit.name}"]
    assert (tmp_path / "crontab").read_text() == "0 * * * * backup\n"  # an old cron line goes
    assert persisted_kind(paths, tools) is PersistenceKind.SYSTEMD

    assert unpersist(paths, tools) == [PersistenceKind.SYSTEMD]
    assert not unit.exists()
    assert f"--user disable {unit.name}" in calls(tmp_path)
    assert persisted_kind(paths, tools) is None
    assert unpersist(paths, tools) == []


def test_persist_without_a_user_manager_adds_one_cron_line(tmp_path: Path) -> None:
    paths = HomePaths(tmp_path / "home")
    tools = tools_in(tmp_path, fake_tools(tmp_path, user_manager=False, cron=True))
    (tmp_path / "crontab").write_text("MAILTO=me\n0 * * * * backup\n")

    assert persist(paths, tools).kind is PersistenceKind.CRON
    assert persist(paths, tools).kind is PersistenceKind.CRON

    lines = (tmp_path / "crontab").read_text().splitlines()
    assert lines[:2] == ["MAILTO=me", "0 * * * * backup"]
    assert len(lines) == 3
    schedule, words = parse_cron_line(lines[2])
    assert schedule == "@reboot" and words[-3] == "--saved-remote-control"
    assert persisted_kind(paths, tools) is PersistenceKind.CRON
    assert not tools.unit_dir.exists()

    assert unpersist(paths, tools) == [PersistenceKind.CRON]
    assert (tmp_path / "crontab").read_text() == "MAILTO=me\n0 * * * * backup\n"


def test_persist_with_no_crontab_yet_creates_one(tmp_path: Path) -> None:
    paths = HomePaths(tmp_path / "home")
    tools = tools_in(tmp_path, fake_tools(tmp_path, user_manager=False, cron=True))
    assert persist(paths, tools).kind is PersistenceKind.CRON
    assert (tmp_path / "crontab").read_text().startswith("@reboot ")


def test_persist_with_neither_fails_and_writes_nothing(tmp_path: Path) -> None:
    paths = HomePaths(tmp_path / "home")
    tools = tools_in(tmp_path, fake_tools(tmp_path, user_manager=False, cron=False))
    with pytest.raises(DaemonError, match="cannot persist"):
        persist(paths, tools)
    assert not tools.unit_dir.exists()


# -- the commands -------------------------------------------------------------------


def persist_env(home: Home, tmp_path: Path, *, user_manager: bool) -> dict[str, str]:
    bin_dir = fake_tools(tmp_path / "fake", user_manager=user_manager, cron=True)
    return {
        "PATH": f"{bin_dir}:{home.env.get('PATH', '')}",
        "XDG_CONFIG_HOME": str(tmp_path / "fake" / "config"),
        "CODEXD_UPDATE_INITIAL_DELAY_SECONDS": "3600",
    }


def test_bootstrap_persist_reports_systemd_and_unpersist_removes_it(
    home: Home, tmp_path: Path
) -> None:
    env = persist_env(home, tmp_path, user_manager=True)
    output = home.ok("bootstrap", "--persist", env=env)
    assert output["status"] == "bootstrapped"
    assert output["persistence"] == "systemd"
    unit = tmp_path / "fake" / "config" / "systemd" / "user" / unit_name(home.path)
    assert f"Environment=CODEX_HOME={home.path}" in unit.read_text()
    assert home.ok("status", "--json", env=env)["persistence"] == "systemd"

    assert home.ok("unpersist", env=env) == {"status": "unpersisted", "removed": ["systemd"]}
    assert not unit.exists()
    assert home.ok("unpersist", env=env) == {"status": "notPersisted", "removed": []}
    assert len(home.app_server_pids()) == 1  # unpersist leaves the running daemon alone


def test_bootstrap_persist_falls_back_to_cron(home: Home, tmp_path: Path) -> None:
    env = persist_env(home, tmp_path, user_manager=False)
    output = home.ok("bootstrap", "--remote-control", "--persist", env=env)
    assert output["persistence"] == "cron"
    assert output["remoteControlEnabled"] is True
    (line,) = (tmp_path / "fake" / "crontab").read_text().splitlines()
    _, words = parse_cron_line(line)
    assert f"CODEX_HOME={home.path}" in words
    assert f"PATH={boot_time_path(env['PATH'])}" in words  # the PATH bootstrap ran with
    assert str(home.paths.managed_binary) in words
    assert home.ok("unpersist", env=env)["removed"] == ["cron"]
    assert (tmp_path / "fake" / "crontab").read_text() == ""


def test_bootstrap_persist_with_nowhere_to_persist_fails_after_bootstrapping(
    home: Home, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "empty-bin"
    bin_dir.mkdir()
    env = {
        "PATH": str(bin_dir),  # no systemctl, no crontab (the shim needs only its path)
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "CODEXD_UPDATE_INITIAL_DELAY_SECONDS": "3600",
    }
    result = home.run("bootstrap", "--persist", env=env)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "bootstrapped, but not persisted" in result.stderr
    assert NOWHERE_TO_PERSIST in result.stderr


def test_status_and_doctor_say_what_is_missing_where_nothing_can_persist(
    home: Home, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "empty-bin"
    bin_dir.mkdir()
    env = {"PATH": str(bin_dir), "XDG_RUNTIME_DIR": "", "XDG_CONFIG_HOME": str(tmp_path)}
    home.ok("start", env=env)

    hints = home.ok("status", "--json", env=env)["hints"]
    [release] = [hint for hint in hints if hint["section"] == "release"]
    assert release["command"] is None
    assert release["text"].endswith(NOWHERE_TO_PERSIST)
    assert "--persist" not in home.run("status", env=env).stdout

    check = home.run("doctor", "--json", env=env).json["checks"]["persistence"]
    assert check["remediation"] == NOWHERE_TO_PERSIST


def test_status_suggests_persisting_where_cron_is(home: Home, tmp_path: Path) -> None:
    env = persist_env(home, tmp_path, user_manager=False)
    home.ok("start", env=env)
    hints = home.ok("status", "--json", env=env)["hints"]
    assert {"section": "release", "command": "codexd bootstrap --persist"}.items() <= next(
        hint for hint in hints if hint["section"] == "release"
    ).items()


def test_the_boot_time_bootstrap_keeps_a_remote_control_change_made_after_persisting(
    home: Home, tmp_path: Path
) -> None:
    env = persist_env(home, tmp_path, user_manager=False)
    assert home.ok("bootstrap", "--persist", env=env)["remoteControlEnabled"] is False
    assert home.ok("enable-remote-control", env=env)["status"] == "enabled"
    home.ok("stop", env=env)

    (line,) = (tmp_path / "fake" / "crontab").read_text().splitlines()
    _, words = parse_cron_line(line)
    boot_args = words[words.index("exec") + 2 : -2]  # what the line runs, as at boot
    assert boot_args[-1] == "--saved-remote-control"
    output = home.ok(*boot_args, env=env)

    assert output["status"] == "bootstrapped"
    assert output["remoteControlEnabled"] is True
    assert '"remoteControlEnabled": true' in home.paths.settings_file.read_text()
