"""The directories codexd trusts: one check (`judge_dir`), one way to create-or-check
(`ensure_private_dir`), one way to only check (`check_private_dir`), and the clean
line every command gives for a home it cannot use."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.paths import HomePaths
from supervisor.private_dir import (
    HOME,
    PRIVATE_SOCKET_DIR,
    SOCKET_DIR,
    SOCKET_DIR_PARENT,
    STATE_DIR,
    DirFacts,
    DirRule,
    DirVerdict,
    PrivateDirError,
    check_home,
    check_private_dir,
    ensure_private_dir,
    judge_dir,
)
from supervisor.statefile import StateFileError, prepare_state_dir
from tests.conftest import Home

ME = 1000
SOMEONE_ELSE = 4242
ROOT = 0
# A uid no account has: as root, chown to it stands in for another user.
STRANGER_UID = 4242

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")


def directory(mode: int, owner: int = ME) -> DirFacts:
    return DirFacts(is_directory=True, is_symlink=False, owner_uid=owner, mode=mode)


FILE = DirFacts(is_directory=False, is_symlink=False, owner_uid=ME, mode=0o600)
SYMLINK = DirFacts(is_directory=False, is_symlink=True, owner_uid=ME, mode=0o777)


@pytest.mark.parametrize(
    ("facts", "rule", "verdict"),
    [
        (None, STATE_DIR, DirVerdict.MISSING),
        (directory(0o700), STATE_DIR, DirVerdict.PRIVATE),
        (directory(0o750), STATE_DIR, DirVerdict.LOOSE),
        (directory(0o755), STATE_DIR, DirVerdict.LOOSE),
        (directory(0o777), STATE_DIR, DirVerdict.LOOSE),
        (directory(0o700, SOMEONE_ELSE), STATE_DIR, DirVerdict.FOREIGN),
        (directory(0o777, SOMEONE_ELSE), STATE_DIR, DirVerdict.FOREIGN),
        (FILE, STATE_DIR, DirVerdict.NOT_A_DIRECTORY),
        (SYMLINK, PRIVATE_SOCKET_DIR, DirVerdict.SYMLINK),
        (directory(0o700), PRIVATE_SOCKET_DIR, DirVerdict.PRIVATE),
        (directory(0o701), PRIVATE_SOCKET_DIR, DirVerdict.LOOSE),
        (directory(0o700, SOMEONE_ELSE), PRIVATE_SOCKET_DIR, DirVerdict.FOREIGN),
        # Others may read the home and the socket dir, never write them.
        (directory(0o755), HOME, DirVerdict.PRIVATE),
        (directory(0o775), HOME, DirVerdict.LOOSE),
        (directory(0o757), HOME, DirVerdict.LOOSE),
        (directory(0o755, SOMEONE_ELSE), HOME, DirVerdict.FOREIGN),
        (FILE, HOME, DirVerdict.NOT_A_DIRECTORY),
        (directory(0o755), SOCKET_DIR, DirVerdict.PRIVATE),
        (directory(0o777), SOCKET_DIR, DirVerdict.LOOSE),
        # Above a socket directory: ours or root's, and shared only when sticky (/tmp).
        (directory(0o700), SOCKET_DIR_PARENT, DirVerdict.PRIVATE),
        (directory(0o1777, ROOT), SOCKET_DIR_PARENT, DirVerdict.PRIVATE),
        (directory(0o755, ROOT), SOCKET_DIR_PARENT, DirVerdict.PRIVATE),
        (directory(0o777, ROOT), SOCKET_DIR_PARENT, DirVerdict.LOOSE),
        (directory(0o1777, SOMEONE_ELSE), SOCKET_DIR_PARENT, DirVerdict.FOREIGN),
        (directory(0o700, SOMEONE_ELSE), SOCKET_DIR_PARENT, DirVerdict.FOREIGN),
        (directory(0o1777, ROOT), PRIVATE_SOCKET_DIR, DirVerdict.FOREIGN),
    ],
)
def test_judge_dir(facts: DirFacts | None, rule: DirRule, verdict: DirVerdict) -> None:
    assert judge_dir(facts, ME, rule) is verdict


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode_of(path: Path) -> int:
    return path.stat().st_mode & 0o777


# -- ensure_private_dir -----------------------------------------------------------------


def test_ensure_creates_a_0700_dir_and_its_parents(tmp_path: Path, umask_022: None) -> None:
    path = tmp_path / "home" / "app-server-daemon"
    ensure_private_dir(path, STATE_DIR)
    assert path.is_dir()
    assert mode_of(path) == 0o700


def test_ensure_tightens_a_0755_state_dir_and_keeps_its_files(tmp_path: Path) -> None:
    path = tmp_path / "app-server-daemon"
    path.mkdir()
    path.chmod(0o755)
    (path / "settings.json").write_text("{}")
    ensure_private_dir(path, STATE_DIR)
    assert mode_of(path) == 0o700
    assert (path / "settings.json").read_text() == "{}"


def test_ensure_takes_only_the_write_bits_off_a_loose_home(tmp_path: Path) -> None:
    path = tmp_path / "home"
    path.mkdir()
    path.chmod(0o777)
    ensure_private_dir(path, HOME)
    assert mode_of(path) == 0o755


def test_ensure_without_create_leaves_a_missing_dir_missing(tmp_path: Path) -> None:
    ensure_private_dir(tmp_path / "app-server-control", SOCKET_DIR, create=False)
    assert not (tmp_path / "app-server-control").exists()


def test_ensure_over_a_file_names_the_path_and_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "home"
    path.write_text("not a directory")
    with pytest.raises(PrivateDirError) as raised:
        ensure_private_dir(path, HOME)
    assert str(raised.value) == (
        f"codex home {path} is not a directory: point CODEX_HOME at a directory"
    )


def test_ensure_refuses_a_symlinked_socket_dir(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "codexd-0"
    link.symlink_to(real)
    with pytest.raises(PrivateDirError, match=f"{link} is a symlink; refusing to use it"):
        ensure_private_dir(link, PRIVATE_SOCKET_DIR)


@needs_root
@pytest.mark.parametrize("mode", [0o700, 0o777])
def test_ensure_refuses_a_dir_owned_by_someone_else_and_leaves_it_alone(
    tmp_path: Path, mode: int
) -> None:
    path = tmp_path / "app-server-daemon"
    path.mkdir()
    path.chmod(mode)
    os.chown(path, STRANGER_UID, STRANGER_UID)
    with pytest.raises(PrivateDirError) as raised:
        ensure_private_dir(path, STATE_DIR)
    message = str(raised.value)
    assert message.startswith(f"state directory {path} is owned by uid {STRANGER_UID}")
    assert "refusing to use it: run codexd as its owner" in message
    assert mode_of(path) == mode
    assert path.stat().st_uid == STRANGER_UID


@needs_root
def test_a_symlink_another_user_made_is_never_followed(tmp_path: Path) -> None:
    ours = tmp_path / "real-home"
    ours.mkdir(mode=0o700)
    link = tmp_path / "home"
    link.symlink_to(ours)
    assert check_private_dir(link, HOME) is True  # our own link to our own directory
    os.lchown(link, STRANGER_UID, STRANGER_UID)
    with pytest.raises(PrivateDirError, match=f"codex home {link} is a symlink"):
        check_private_dir(link, HOME)


# -- check_private_dir ------------------------------------------------------------------


def test_check_of_a_missing_dir_is_false_and_creates_nothing(tmp_path: Path) -> None:
    assert check_private_dir(tmp_path / "missing", STATE_DIR) is False
    assert not (tmp_path / "missing").exists()


def test_check_refuses_a_loose_dir_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "tag"
    path.mkdir()
    path.chmod(0o755)
    with pytest.raises(PrivateDirError, match=f"mode 0755.*chmod 700 {path}"):
        check_private_dir(path, PRIVATE_SOCKET_DIR)
    assert mode_of(path) == 0o755
    assert check_private_dir(path, PRIVATE_SOCKET_DIR, loose_ok=True) is True


def test_check_home_passes_a_missing_home_without_creating_it(tmp_path: Path) -> None:
    check_home(HomePaths(tmp_path / "home"))
    assert not (tmp_path / "home").exists()


@needs_root
@pytest.mark.parametrize("which", ["home", "state dir", "socket dir"])
def test_check_home_refuses_a_directory_owned_by_someone_else(tmp_path: Path, which: str) -> None:
    paths = HomePaths(tmp_path / "home")
    paths.state_dir.mkdir(parents=True, mode=0o700)
    paths.socket_path.parent.mkdir(mode=0o700)
    suspect = {
        "home": paths.home,
        "state dir": paths.state_dir,
        "socket dir": paths.socket_path.parent,
    }[which]
    os.chown(suspect, STRANGER_UID, STRANGER_UID)
    with pytest.raises(PrivateDirError, match=f"{suspect} is owned by uid {STRANGER_UID}"):
        check_home(paths)


# -- prepare_state_dir ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["app-server.pid", "app-server-updater.pid", "settings.json"])
@pytest.mark.parametrize("kind", ["directory", "FIFO"])
def test_prepare_refuses_something_else_where_a_state_file_belongs(
    tmp_path: Path, name: str, kind: str
) -> None:
    paths = HomePaths(tmp_path / "home")
    paths.state_dir.mkdir(parents=True, mode=0o700)
    suspect = paths.state_dir / name
    if kind == "directory":
        suspect.mkdir()
    else:
        os.mkfifo(suspect)
    with pytest.raises(StateFileError) as raised:
        prepare_state_dir(paths)
    assert str(raised.value).startswith(f"{suspect} is a {kind}, not a state file")
    assert suspect.exists()


# -- what a user sees -------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [["status"], ["status", "--json"], ["logs"], ["logs", "-f"], ["version"], ["start"]],
)
def test_a_home_that_is_a_file_is_one_clean_line(bare_home: Home, command: list[str]) -> None:
    bare_home.path.rmdir()
    bare_home.path.write_text("not a directory\n")
    result = bare_home.run(*command)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"codexd: codex home {bare_home.path} is not a directory: point CODEX_HOME at a directory\n"
    )


@needs_root
def test_a_state_dir_owned_by_someone_else_is_refused_by_every_command(home: Home) -> None:
    home.paths.state_dir.mkdir(mode=0o777)
    os.chown(home.paths.state_dir, STRANGER_UID, STRANGER_UID)
    for command in (["start"], ["stop"], ["version"], ["status", "--json"], ["bootstrap"]):
        result = home.run(*command)
        assert (result.returncode, result.stdout) == (1, ""), command
        assert f"state directory {home.paths.state_dir} is owned by uid {STRANGER_UID}" in (
            result.stderr
        )
        assert len(result.stderr.splitlines()) == 1, result.stderr
    assert os.listdir(home.paths.state_dir) == []
    assert home.app_server_pids() == []


def test_a_lifecycle_command_tightens_a_loose_home_and_state_dir(home: Home) -> None:
    home.path.chmod(0o777)
    home.paths.state_dir.mkdir(mode=0o755)
    assert home.ok("stop")["status"] == "notRunning"
    assert mode_of(home.path) == 0o755
    assert mode_of(home.paths.state_dir) == 0o700


def test_a_pid_record_that_is_a_directory_is_named_not_a_traceback(home: Home) -> None:
    home.paths.app_server_record.mkdir(parents=True)
    for command in ("start", "stop", "bootstrap"):
        result = home.run(command)
        assert (result.returncode, result.stdout) == (1, ""), command
        assert result.stderr == (
            f"codexd: {home.paths.app_server_record} is a directory, not a state file: "
            "move it out of the way (codexd removes nothing it did not write)\n"
        )
    assert home.app_server_pids() == []
    # `status` reads, never removes: the unreadable record of a worker whose lock is free.
    assert home.ok("status", "--json")["appServer"]["status"] == "stale"
