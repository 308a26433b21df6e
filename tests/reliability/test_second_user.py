"""A second local user against codexd: a socket directory recreated under /tmp after an
unclean end, and a state directory made by someone else. Nothing of ours talks to
that user's server or trusts that user's files; every refusal names the directory.

Each test creates the user (useradd) and removes it; without root they are skipped."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from supervisor.paths import private_socket_dir
from tests.conftest import Home, is_gone, make_home, wait_for
from tests.reliability.invariants import check_home
from tests.second_user import SYSTEM_PYTHON, SecondUser, second_user_fixture  # noqa: F401 - a fixture

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
IMPOSTOR = FIXTURES / "impostor_app_server.py"
IMPOSTOR_VERSION = "6.6.6"
HOLD_LOCK = (
    "import fcntl, os, sys, time\n"
    "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)\n"
    "fcntl.flock(fd, fcntl.LOCK_EX)\n"
    "print('locked', flush=True)\n"
    "time.sleep(600)\n"
)


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A runtime dir that behaves like /tmp (world-writable, sticky), so the second
    user can make directories in it, without touching the real /tmp/codexd-<uid>."""
    path = Path(tempfile.mkdtemp(prefix="cxr-", dir="/tmp"))
    path.chmod(0o1777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def long_home(tmp_path: Path, shared_tmp: Path) -> Iterator[Home]:
    """A home whose socket path is too long to bind: the socket lives under `shared_tmp`
    and the public path is a symlink to it."""
    home = make_home(tmp_path / ("long-" + "x" * 60) / "home")
    home.env["XDG_RUNTIME_DIR"] = str(shared_tmp)
    home.install_managed_shim()
    try:
        yield home
    finally:
        home.cleanup()


def failure(home: Home, *args: str) -> str:
    result = home.run(*args)
    assert (result.returncode, result.stdout) == (1, ""), (args, result.stdout, result.stderr)
    assert result.stderr.startswith("codexd: "), result.stderr
    return result.stderr


def test_a_hijacked_long_path_socket_is_never_talked_to(
    long_home: Home, second_user: SecondUser, shared_tmp: Path
) -> None:
    home = long_home
    # An unclean end (SIGKILL) leaves the public symlink behind...
    pid = home.ok("start")["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: is_gone(pid), what=f"pid {pid} to die")
    target = Path(os.readlink(home.paths.socket_path))
    assert target.parent == private_socket_dir(home.paths.socket_path, 0, str(shared_tmp))
    # ...a reboot clears the runtime dir, and another user makes the directory again
    # and listens in it.
    shutil.rmtree(target.parent.parent)
    second_user.run("mkdir", "-p", "-m", "0700", str(target.parent))
    frames = shared_tmp / "frames-received"
    second_user.spawn_until("listening", *second_user.python(IMPOSTOR, str(target), str(frames)))
    foreign = target.parent.parent
    owner = f"is owned by uid {second_user.uid} ({second_user.name})"

    message = failure(home, "version")
    assert "app server is not running" in message, message
    assert f"{foreign} {owner}" in message, message

    # `start` does not report the impostor as running; its app-server cannot bind in
    # the foreign directory, and the error (quoting the app-server's log) names it.
    message = failure(home, "start")
    assert f"private socket directory {foreign} {owner}" in message, message
    message = failure(home, "restart")
    assert "not managed by codexd" not in message, message
    assert f"{foreign} {owner}" in message, message

    proxied = home.run("app-server", "proxy")
    assert proxied.returncode == 1
    assert f"{foreign} {owner}" in proxied.stderr, proxied.stderr

    status = home.ok("status", "--json")
    assert IMPOSTOR_VERSION not in str(status)
    assert not frames.exists(), f"the impostor received {frames.read_text()!r}"

    # Once root removed it, everything works again.
    second_user.stop_all()
    shutil.rmtree(foreign)
    assert home.ok("start")["status"] == "started"
    assert home.ok("version")["appServerVersion"] == "0.1.0"
    check_home(home.path)


def test_a_state_dir_made_by_another_user_is_refused_and_nobody_is_signalled(
    second_user: SecondUser, shared_tmp: Path
) -> None:
    home = make_home(shared_tmp / "home")
    home.install_managed_shim()
    sleep = shutil.which("sleep")
    assert sleep is not None
    # A process of ours the planted record names.
    bystander = subprocess.Popen([sleep, "600"], stdin=subprocess.DEVNULL)
    try:
        plant_and_refuse(home, second_user, bystander.pid)
        assert bystander.poll() is None, "the bystander was signalled"
    finally:
        bystander.kill()
        bystander.wait()
        home.cleanup()


def plant_and_refuse(home: Home, second_user: SecondUser, victim: int) -> None:
    # A home others may write to lets another user make the state dir, plant a record
    # naming one of our processes, and hold its lock.
    home.path.chmod(0o777)
    state_dir = home.paths.state_dir
    second_user.run("mkdir", "-m", "0777", str(state_dir))
    record = json.dumps(
        {
            "pid": victim,
            "processStartSeconds": psutil.Process(victim).create_time(),
            "bootId": Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
            "executable": "/bin/sleep",
            "executableDigest": "sha256:0",
        }
    )
    second_user.run("sh", "-c", f"printf '%s' '{record}' > {home.paths.app_server_record}")
    lock = home.paths.state_dir / "app-server.pid.lock"
    second_user.spawn_until("locked", str(SYSTEM_PYTHON), "-c", HOLD_LOCK, str(lock))

    for command in ("stop", "start", "restart", "bootstrap", "version", "status"):
        message = failure(home, command)
        assert f"state directory {state_dir} is owned by uid {second_user.uid}" in message, (
            command,
            message,
        )
    assert sorted(os.listdir(state_dir)) == ["app-server.pid", "app-server.pid.lock"]
