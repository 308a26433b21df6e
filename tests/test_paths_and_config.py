"""Where everything lives for one CODEX_HOME, and the environment knobs."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.config import (
    STOP_GRACE_ENV,
    STOP_GRACE_SECONDS,
    seconds_from_env,
    stop_grace_seconds,
)
from supervisor.errors import DaemonError
from supervisor.paths import (
    SUN_PATH_MAX_BYTES,
    HomePaths,
    WorkerPaths,
    connectable_socket_path,
    fits_sun_path,
    lock_path_for,
    private_socket_dir,
    resolve_home,
)

# -- resolve_home -----------------------------------------------------------------------


def test_resolve_home_is_codex_home_when_set(tmp_path: Path) -> None:
    assert resolve_home({"CODEX_HOME": str(tmp_path / "h")}) == tmp_path / "h"


def test_resolve_home_defaults_to_dot_codex_in_the_users_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_home({}) == tmp_path / ".codex"


def test_resolve_home_treats_an_empty_codex_home_as_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_home({"CODEX_HOME": ""}) == tmp_path / ".codex"


def test_resolve_home_expands_a_tilde_in_codex_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_home({"CODEX_HOME": "~/custom-codex"}) == tmp_path / "custom-codex"


def test_resolve_home_makes_a_relative_codex_home_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    home = resolve_home({"CODEX_HOME": "rel/home"})
    assert home.is_absolute()
    assert home == tmp_path / "rel" / "home"


def test_resolve_home_reads_the_process_environment_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CODEX_HOME", str(tmp_path / "from-env"))
    assert resolve_home() == tmp_path / "from-env"


# -- HomePaths --------------------------------------------------------------------------


def test_home_paths_follow_the_spec_table() -> None:
    home = Path("/home/u/.codex")
    paths = HomePaths(home)
    state = home / "app-server-daemon"
    assert paths.home == home
    assert paths.state_dir == state
    assert paths.settings_file == state / "settings.json"
    assert paths.daemon_lock == state / "daemon.lock"
    assert paths.app_server_record == state / "app-server.pid"
    assert paths.app_server_log == state / "app-server.log"
    assert paths.updater_record == state / "app-server-updater.pid"
    assert paths.updater_log == state / "app-server-updater.log"
    assert paths.managed_binary == home / "packages/standalone/current/codex"
    assert paths.releases_dir == home / "packages/standalone/releases"
    assert paths.socket_path == home / "app-server-control/app-server-control.sock"


@pytest.mark.parametrize(
    ("record", "lock"),
    [
        ("app-server.pid", "app-server.pid.lock"),
        ("app-server-updater.pid", "app-server-updater.pid.lock"),
    ],
)
def test_lock_path_for_a_record_is_beside_it(record: str, lock: str) -> None:
    state = HomePaths(Path("/h")).state_dir
    assert lock_path_for(state / record) == state / lock
    assert lock_path_for(str(state / record)) == str(state / lock)  # a string for a string


@pytest.mark.parametrize("home", ["/h", "/home/someone/.codex", "/a path/with spaces"])
def test_worker_paths_are_the_home_paths_as_strings(home: str) -> None:
    paths = HomePaths(Path(home))
    strings = WorkerPaths(home)
    for name in WorkerPaths.__slots__:
        assert getattr(strings, name) == str(getattr(paths, name)), name
    assert strings.home_paths() == paths


# -- sun_path ---------------------------------------------------------------------------


def path_of_bytes(length: int) -> Path:
    return Path("/" + "a" * (length - 1))


def test_sun_path_limit_is_107_bytes() -> None:
    assert SUN_PATH_MAX_BYTES == 107


def test_fits_sun_path_at_107_bytes_and_not_at_108() -> None:
    assert fits_sun_path(path_of_bytes(107))
    assert not fits_sun_path(path_of_bytes(108))


def test_fits_sun_path_counts_bytes_not_characters() -> None:
    path = Path("/" + "é" * 60)  # 61 characters, 121 bytes
    assert len(str(path)) <= SUN_PATH_MAX_BYTES
    assert not fits_sun_path(path)
    assert fits_sun_path(Path("/" + "é" * 53))  # 107 bytes


def test_connectable_socket_path_of_a_short_path_is_the_path(tmp_path: Path) -> None:
    socket = tmp_path / "s.sock"
    assert fits_sun_path(socket)
    assert connectable_socket_path(socket) == socket


def test_connectable_socket_path_of_a_long_path_is_the_symlink_target(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120)
    deep.mkdir()
    public = deep / "app-server-control.sock"
    target = tmp_path / "short.sock"
    public.symlink_to(target)
    assert not fits_sun_path(public)
    assert connectable_socket_path(public) == target


def test_connectable_socket_path_of_a_long_path_without_symlink_is_the_path(
    tmp_path: Path,
) -> None:
    public = tmp_path / ("d" * 120) / "app-server-control.sock"
    assert connectable_socket_path(public) == public


# -- private_socket_dir -----------------------------------------------------------------

LONG_SOCKET = Path("/home/u/" + "x" * 120 + "/app-server-control/app-server-control.sock")


def test_private_socket_dir_is_under_xdg_runtime_dir_when_set() -> None:
    directory = private_socket_dir(LONG_SOCKET, uid=1000, runtime_dir="/run/user/1000")
    assert directory.parent == Path("/run/user/1000/codexd")


@pytest.mark.parametrize("runtime_dir", [None, ""])
def test_private_socket_dir_is_under_a_per_user_tmp_dir_without_xdg_runtime_dir(
    runtime_dir: str | None,
) -> None:
    directory = private_socket_dir(LONG_SOCKET, uid=1000, runtime_dir=runtime_dir)
    assert directory.parent == Path("/tmp/codexd-1000")
    assert private_socket_dir(LONG_SOCKET, uid=1001, runtime_dir=runtime_dir).parent == Path(
        "/tmp/codexd-1001"
    )


def test_private_socket_dir_is_the_same_for_the_same_socket() -> None:
    first = private_socket_dir(LONG_SOCKET, uid=1000, runtime_dir=None)
    assert private_socket_dir(LONG_SOCKET, uid=1000, runtime_dir=None) == first


def test_distinct_homes_get_distinct_private_socket_dirs() -> None:
    one = HomePaths(Path("/home/u/" + "a" * 120)).socket_path
    two = HomePaths(Path("/home/u/" + "b" * 120)).socket_path
    for runtime_dir in (None, "/run/user/1000"):
        assert private_socket_dir(one, 1000, runtime_dir) != private_socket_dir(
            two, 1000, runtime_dir
        )


@pytest.mark.parametrize("runtime_dir", [None, "/run/user/1000"])
def test_a_socket_in_the_private_dir_fits_sun_path(runtime_dir: str | None) -> None:
    directory = private_socket_dir(LONG_SOCKET, uid=4294967294, runtime_dir=runtime_dir)
    assert fits_sun_path(directory / "app-server-control.sock")


# -- seconds_from_env -------------------------------------------------------------------

NAME = "CODEXD_TEST_SECONDS"


def test_seconds_from_env_is_the_default_when_unset() -> None:
    assert seconds_from_env(NAME, 60.0, {}) == 60.0


def test_seconds_from_env_is_the_default_when_empty() -> None:
    assert seconds_from_env(NAME, 60.0, {NAME: ""}) == 60.0


@pytest.mark.parametrize(
    ("value", "seconds"), [("1.5", 1.5), ("0", 0.0), ("5", 5.0), ("3600", 3600.0)]
)
def test_seconds_from_env_parses_a_number(value: str, seconds: float) -> None:
    assert seconds_from_env(NAME, 60.0, {NAME: value}) == seconds


@pytest.mark.parametrize("value", ["abc", "-1", "-0.5", "nan", "inf", "-inf", "1.5s", "0x10"])
def test_seconds_from_env_rejects_what_is_not_a_number_of_seconds_naming_the_variable(
    value: str,
) -> None:
    with pytest.raises(DaemonError, match=NAME) as raised:
        seconds_from_env(NAME, 60.0, {NAME: value})
    assert repr(value) in str(raised.value)


def test_seconds_from_env_reads_the_process_environment_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(NAME, "2.5")
    assert seconds_from_env(NAME, 60.0) == 2.5
    monkeypatch.delenv(NAME)
    assert seconds_from_env(NAME, 60.0) == 60.0


def test_stop_grace_window_comes_from_its_documented_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert STOP_GRACE_ENV == "CODEXD_STOP_GRACE_SECONDS"
    monkeypatch.delenv(STOP_GRACE_ENV, raising=False)
    assert stop_grace_seconds() == STOP_GRACE_SECONDS == 60.0
    monkeypatch.setenv(STOP_GRACE_ENV, "0.25")
    assert stop_grace_seconds() == 0.25


def test_the_readme_lists_every_environment_variable_with_its_default() -> None:
    """config.SETTINGS and the README's "Environment variables" table say the same."""
    import re

    from supervisor.config import SETTINGS

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Environment variables", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \| (.+?) \|", section, flags=re.MULTILINE))
    assert set(rows) == {setting.env for setting in SETTINGS}
    for setting in SETTINGS:
        if setting.default[0].isdigit() or setting.default.startswith("~"):
            assert rows[setting.env].startswith(f"`{setting.default}`"), setting.env
