"""Hostile or broken environments: records from another boot or naming someone else,
a read-only or full state dir, a socket directory someone else made, symlinked state
files, an exotic CODEX_HOME path, and no python3 on PATH."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from supervisor.paths import fits_sun_path, private_socket_dir
from tests.conftest import Home, make_home
from tests.reliability.invariants import check_home

CHECKOUT = Path(__file__).resolve().parents[2]
OTHER_BOOT_ID = "00000000-0000-4000-8000-000000000000"
SETTINGS_OFF = b'{\n  "remoteControlEnabled": false\n}\n'


def error_of(home: Home, command: str) -> str:
    """The command must fail cleanly: nothing on stdout, a codexd message on stderr."""
    result = home.run(command)
    assert result.returncode != 0, f"{command} succeeded: {result.stdout}"
    assert result.stdout == ""
    assert result.stderr.startswith("codexd: "), result.stderr
    return result.stderr


# --- records that lie ------------------------------------------------------------------


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    sleep = shutil.which("sleep")
    assert sleep is not None
    process = subprocess.Popen([sleep, "600"], stdin=subprocess.DEVNULL)
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def plant_record(home: Home, pid: int, start_time: float, boot_id: str) -> None:
    state_dir = home.paths.state_dir
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    executable = Path(psutil.Process(pid).exe())
    record = {
        "pid": pid,
        "processStartTime": start_time,
        "bootId": boot_id,
        "executable": str(executable),
        "executableDigest": "sha256:" + hashlib.sha256(executable.read_bytes()).hexdigest(),
        "remoteControlEnabled": False,
        "socketPath": str(home.paths.socket_path),
    }
    home.paths.app_server_record.write_text(json.dumps(record))
    home.paths.app_server_record.chmod(0o600)


def assert_untouched(bystander: subprocess.Popen[bytes]) -> None:
    assert bystander.poll() is None, f"the bystander exited {bystander.returncode}"
    status = psutil.Process(bystander.pid).status()
    assert status in (psutil.STATUS_SLEEPING, psutil.STATUS_RUNNING), status


@pytest.mark.parametrize("lie", ["another boot", "a reused pid"])
def test_a_record_naming_a_live_stranger_is_stale_and_never_signalled(
    home: Home, bystander: subprocess.Popen[bytes], lie: str
) -> None:
    created = psutil.Process(bystander.pid).create_time()
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    # Another boot: same pid and start time, recorded before a reboot.
    plant = (created, OTHER_BOOT_ID) if lie == "another boot" else (created - 3600.0, boot_id)
    for command, status in (("stop", "notRunning"), ("restart", "restarted")):
        plant_record(home, bystander.pid, *plant)
        assert home.ok(command)["status"] == status
        assert_untouched(bystander)
        check_home(home.path)
    assert home.ok("stop")["status"] == "stopped"
    plant_record(home, bystander.pid, *plant)
    assert home.ok("start")["status"] == "started"
    check_home(home.path)
    assert_untouched(bystander)


@pytest.mark.long  # waits out the 10 s a starting worker is given to write its record
def test_the_record_of_a_live_server_overwritten_to_name_a_stranger_is_refused(
    home: Home, bystander: subprocess.Popen[bytes]
) -> None:
    pid = home.ok("start")["pid"]
    created = psutil.Process(bystander.pid).create_time()
    plant_record(home, bystander.pid, created, OTHER_BOOT_ID)
    # The lock says a worker is alive, the record names someone else: nobody is
    # signalled, and the message names both files.
    message = error_of(home, "stop")
    assert str(home.paths.app_server_record) in message, message
    assert_untouched(bystander)
    assert home.keeper_pids() == [pid]
    assert home.ok("version")["appServerVersion"] == "0.1.0"


# --- a state dir that cannot be written --------------------------------------------------


def mount(*args: str) -> None:
    completed = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        pytest.skip(f"mount {' '.join(args)} is not permitted here: {completed.stderr.strip()}")


def umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """`path` read-only even for root: a read-only bind mount of itself."""
    mount("--bind", str(path), str(path))
    try:
        mount("-o", "remount,bind,ro", str(path))
        yield
    finally:
        umount(path)


def test_a_read_only_state_dir_fails_clearly_and_changes_nothing(home: Home) -> None:
    pid = home.ok("start")["pid"]
    home.paths.settings_file.write_bytes(SETTINGS_OFF)
    home.paths.settings_file.chmod(0o600)
    with read_only(home.paths.state_dir):
        for command in ("stop", "restart", "enable-remote-control", "start"):
            message = error_of(home, command)
            assert str(home.paths.state_dir) in message, message
            assert "Read-only file system" in message, message
        # `version` takes no lock and writes nothing: it still answers.
        assert home.ok("version")["appServerVersion"] == "0.1.0"
        assert home.paths.settings_file.read_bytes() == SETTINGS_OFF
        assert home.keeper_pids() == [pid]
    check_home(home.path)
    assert home.ok("enable-remote-control")["status"] == "enabled"
    check_home(home.path)


def test_a_full_state_dir_fails_clearly_and_loses_nothing(home: Home) -> None:
    state_dir = home.paths.state_dir
    state_dir.mkdir(parents=True)
    mount("-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(state_dir))
    try:
        home.paths.settings_file.write_bytes(SETTINGS_OFF)
        home.paths.settings_file.chmod(0o600)
        filler = state_dir / "filler"
        with filler.open("wb", buffering=0) as file, contextlib.suppress(OSError):
            while True:
                file.write(b"\0" * 4096)
        for command in ("start", "enable-remote-control"):
            message = error_of(home, command)
            assert "No space left on device" in message, message
        assert home.paths.settings_file.read_bytes() == SETTINGS_OFF
        check_home(home.path)
        assert not [name for name in os.listdir(state_dir) if name.endswith(".tmp")]

        filler.unlink()
        assert home.ok("enable-remote-control")["status"] == "enabled"
        assert home.ok("start")["status"] == "started"
        check_home(home.path)
        assert home.ok("stop")["status"] == "stopped"
    finally:
        home.cleanup()
        umount(state_dir)


# --- a socket directory someone else made ----------------------------------------------


@pytest.fixture
def long_home(tmp_path: Path) -> Iterator[Home]:
    """A home whose socket path is too long for sun_path, so the socket is bound in a
    private directory under a runtime dir of the test's own."""
    path = tmp_path / ("long-" + "x" * 60) / "home"
    home = make_home(path)
    home.install_managed_shim()
    # Short, as a real runtime dir is: the private directory in it must fit sun_path.
    runtime = Path(tempfile.mkdtemp(prefix="cxr-", dir="/tmp"))
    home.env["XDG_RUNTIME_DIR"] = str(runtime)
    assert not fits_sun_path(home.paths.socket_path)
    try:
        yield home
    finally:
        home.cleanup()
        shutil.rmtree(runtime)


def test_a_loose_socket_directory_of_ours_is_tightened(long_home: Home) -> None:
    runtime = Path(long_home.env["XDG_RUNTIME_DIR"])
    parent = private_socket_dir(long_home.paths.socket_path, os.getuid(), str(runtime)).parent
    parent.mkdir()
    parent.chmod(0o777)
    assert long_home.ok("start")["status"] == "started"
    assert stat.S_IMODE(parent.stat().st_mode) == 0o700
    check_home(long_home.path)


@pytest.mark.parametrize("how", ["another owner", "tag of another owner", "symlink"])
def test_a_socket_directory_someone_else_made_is_refused(long_home: Home, how: str) -> None:
    home = long_home
    runtime = Path(home.env["XDG_RUNTIME_DIR"])
    private = private_socket_dir(home.paths.socket_path, os.getuid(), str(runtime))
    parent = private.parent
    if how == "another owner":
        parent.mkdir(mode=0o700)
        os.chown(parent, 4242, 4242)
        suspect = parent
    elif how == "tag of another owner":
        parent.mkdir(mode=0o700)
        private.mkdir(mode=0o700)
        os.chown(private, 4242, 4242)
        suspect = private
    else:
        elsewhere = runtime / "elsewhere"
        elsewhere.mkdir(mode=0o700)
        parent.symlink_to(elsewhere)
        suspect = parent
    before = sorted(os.listdir(suspect))

    message = error_of(home, "start")

    assert f"{suspect}" in message, message
    assert "refusing to use it" in message, message
    assert sorted(os.listdir(suspect)) == before
    assert check_home(home.path).app_server is None

    # Once the directory is ours and private again, everything works.
    if suspect.is_symlink():
        suspect.unlink()
    else:
        shutil.rmtree(suspect)
    assert home.ok("start")["status"] == "started"
    check_home(home.path)


# --- symlinked state files -------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["settings.json", "app-server.pid", "daemon.lock", "app-server.pid.lock"]
)
def test_a_symlinked_state_file_is_never_written_through(
    home: Home, tmp_path: Path, name: str
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = elsewhere / f"target-{name}"
    content = b'{"remoteControlEnabled": false, "owner": "someone else"}\n'
    if not name.endswith(".lock"):
        target.write_bytes(content)
    home.paths.state_dir.mkdir(mode=0o700, parents=True)
    link = home.paths.state_dir / name
    link.symlink_to(target)

    for command in ("enable-remote-control", "start", "restart", "stop"):
        home.run(command)  # may refuse; must not write through
        if name.endswith(".lock"):
            assert not target.exists(), f"{command} created {target} through {link}"
        else:
            assert target.read_bytes() == content, f"{command} wrote through {link}"

    if name != "app-server.pid":
        # Refused with a message that names the link (a lock is never followed, nor is
        # settings.json read through one); removing it is the fix.
        message = error_of(home, "start")
        assert str(link) in message, message
        link.unlink()
    check_home(home.path)
    # A stale record is removed, link or not, and never followed.
    assert home.ok("start")["status"] in ("started", "alreadyRunning")
    check_home(home.path)
    assert not link.is_symlink()


def test_a_symlinked_log_is_never_written_through(home: Home, tmp_path: Path) -> None:
    target = tmp_path / "victim.txt"
    target.write_bytes(b"precious\n")
    home.paths.state_dir.mkdir(mode=0o700, parents=True)
    home.paths.app_server_log.symlink_to(target)

    message = error_of(home, "start")

    assert str(home.paths.app_server_log) in message, message
    assert target.read_bytes() == b"precious\n"
    check_home(home.path)
    home.paths.app_server_log.unlink()
    assert home.ok("start")["status"] == "started"
    check_home(home.path)


# --- an exotic home --------------------------------------------------------------------


def test_a_home_with_spaces_and_non_ascii_characters_works(tmp_path: Path) -> None:
    runtime = Path(tempfile.mkdtemp(prefix="cxr-", dir="/tmp"))
    home = make_home(tmp_path / "home with spaces" / "ünïcødé 日本 'quote\" $x")
    home.env["XDG_RUNTIME_DIR"] = str(runtime)
    home.install_managed_shim()
    try:
        assert home.ok("start")["status"] == "started"
        assert home.ok("version")["socketPath"] == str(home.paths.socket_path)
        assert home.ok("enable-remote-control")["status"] == "enabled"
        assert home.ok("restart")["status"] == "restarted"
        state = check_home(home.path)
        assert state.app_server is not None and state.remote_control is True
        assert home.ok("stop")["status"] == "stopped"
        check_home(home.path)
    finally:
        home.cleanup()
        shutil.rmtree(runtime)


# --- no python3 ------------------------------------------------------------------------


def path_without_python(tmp_path: Path) -> str:
    """A PATH with every tool of this one except python3 (and python)."""
    bin_dir = tmp_path / "bin-without-python"
    bin_dir.mkdir()
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not directory or not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            link = bin_dir / entry.name
            if entry.name.startswith("python") or link.exists() or link.is_symlink():
                continue
            if os.access(entry.path, os.X_OK) and not entry.is_dir():
                link.symlink_to(entry.path)
    return str(bin_dir)


def test_install_from_a_checkout_without_python3_fails_clearly(tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("CODEXD_") and key != "CODEX_HOME"
    }
    env.update(CODEX_HOME=str(tmp_path / "home"), PATH=path_without_python(tmp_path))
    completed = subprocess.run(
        ["sh", str(CHECKOUT / "install.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert completed.returncode != 0
    assert "python3 is needed" in completed.stderr, completed.stderr
    assert not (tmp_path / "home" / "packages").exists()


@pytest.mark.skipif(sys.platform != "linux", reason="Linux only")
def test_a_release_without_python3_fails_clearly(tmp_path: Path) -> None:
    channel = tmp_path / "channel"
    published = subprocess.run(
        [sys.executable, str(CHECKOUT / "release" / "publish.py"), "--channel", str(channel)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert published.returncode == 0, published.stderr
    release = published.stdout.strip()
    artifact = channel / "artifacts" / release
    no_python = path_without_python(tmp_path)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("CODEXD_") and key != "CODEX_HOME"
    }
    env.update(CODEX_HOME=str(tmp_path / "home"), PATH=no_python, CODEXD_CHANNEL=str(channel))

    ran = subprocess.run(
        [str(artifact), "--version"], env=env, capture_output=True, text=True, timeout=60
    )
    assert ran.returncode != 0
    assert "python" in ran.stderr.lower(), ran.stderr

    installed = subprocess.run(
        ["sh", str(channel / "install.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert installed.returncode != 0
    assert f"release {release} does not run" in installed.stderr, installed.stderr
    assert "no python3 on PATH" in installed.stderr, installed.stderr
    # It stops before it creates anything.
    assert not (tmp_path / "home" / "packages").exists()
