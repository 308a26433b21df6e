"""An app-server of ours that codexd did not start holds the socket: every mutating
command names it and the flag; `--takeover` stops it (proven first) and starts the
managed one; another user's listener is never signalled."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CODEXD, Home, is_gone, make_home, wait_for
from tests.second_user import SecondUser, second_user_fixture  # noqa: F401


def start_unmanaged(home: Home) -> subprocess.Popen[str]:
    server = home.spawn("app-server", "--listen", "unix://")

    def answers() -> bool:
        if server.poll() is not None:
            _, stderr = server.communicate()
            raise AssertionError(f"the unmanaged app-server exited {server.returncode}: {stderr}")
        return home.run("version").returncode == 0

    wait_for(answers, what="the unmanaged app-server to answer")
    return server


@pytest.mark.parametrize(
    "command",
    [("restart",), ("bootstrap",), ("stop",), ("enable-remote-control",)],
)
def test_a_refusal_names_the_unmanaged_server_and_the_flag(
    home: Home, command: tuple[str, ...]
) -> None:
    server = start_unmanaged(home)
    result = home.run(*command)
    assert result.returncode == 1 and result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert "not managed by codexd" in line
    assert f"pid {server.pid}" in line and "app-server --listen unix://" in line
    assert "--takeover" in line
    assert server.poll() is None


@pytest.mark.parametrize("command", ["start", "restart", "bootstrap"])
def test_takeover_stops_the_unmanaged_server_and_starts_the_managed_one(
    home: Home, command: str
) -> None:
    home.env.update(CODEXD_UPDATE_INITIAL_DELAY_SECONDS="3600")
    server = start_unmanaged(home)
    output = home.ok(command, "--takeover")
    assert output["status"] in ("started", "restarted", "bootstrapped")
    assert output["backend"] == "pid"
    wait_for(lambda: server.poll() is not None, what="the unmanaged server to exit")
    assert server.returncode == 0  # it was asked (SIGTERM), not killed
    [keeper] = home.keeper_pids()
    home.serving(keeper)
    assert home.ok("version")["backend"] == "pid"


def test_takeover_with_nothing_unmanaged_is_a_plain_start(home: Home) -> None:
    assert home.ok("start", "--takeover")["status"] == "started"
    assert home.ok("start", "--takeover")["status"] == "alreadyRunning"


def test_start_without_takeover_reports_the_unmanaged_server_as_running(home: Home) -> None:
    server = start_unmanaged(home)
    output = home.ok("start")
    assert output["status"] == "alreadyRunning" and "backend" not in output
    assert server.poll() is None


def test_a_stubborn_unmanaged_server_is_killed_after_the_grace_window(
    home: Home, tmp_path: Path
) -> None:
    stubborn = Path(__file__).parent / "fixtures" / "stubborn_app_server.py"
    server = subprocess.Popen(
        [sys.executable, str(stubborn), "app-server", "--listen", "unix://"],
        env=home.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    home.started.append(server)
    wait_for(lambda: home.run("version").returncode == 0, what="the stubborn server")
    output = home.ok("start", "--takeover", env={"CODEXD_STOP_GRACE_SECONDS": "1"})
    assert output["status"] == "started"
    server.wait(timeout=10)
    assert server.returncode == -signal.SIGKILL


def test_another_users_listener_is_never_signalled(second_user: SecondUser, tmp_path: Path) -> None:
    """Another user serves on our socket path (its directory was left writable): it is
    never talked to (the peer is not ours), and --takeover neither signals it nor
    claims to have."""
    from tests.second_user import SYSTEM_PYTHON

    # A short home, so the other user can bind at its socket path itself.
    root = Path(tempfile.mkdtemp(prefix="cxd", dir="/tmp"))
    root.chmod(0o711)
    home = make_home(root / "h")
    try:
        home.path.chmod(0o711)
        home.install_managed_shim()
        socket_dir = home.paths.socket_path.parent
        socket_dir.mkdir()
        socket_dir.chmod(0o777)  # as if someone had loosened it
        listener = second_user.spawn_until(
            "listening",
            str(SYSTEM_PYTHON),
            "-c",
            "import socket, sys, time; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); "
            "s.listen(); print('listening', flush=True); time.sleep(600)",
            str(home.paths.socket_path),
        )
        result = home.run("start", "--takeover")
        assert result.returncode == 1 and result.stdout == ""
        assert str(home.paths.socket_path) in result.stderr
        assert listener.poll() is None and not is_gone(listener.pid)  # never signalled
    finally:
        home.cleanup()
        shutil.rmtree(root, ignore_errors=True)


# -- a listener that is no app-server --------------------------------------------------

# A Unix-socket server of ours at the socket path that is no app-server: it accepts and
# never answers, or answers what no WebSocket server would.
FOREIGN_LISTENERS = {
    "silent": "conns = []\nwhile True:\n    conns.append(s.accept()[0])",
    "garbage": (
        "while True:\n    c = s.accept()[0]\n    c.sendall(b'garbage\\r\\n\\r\\n')\n    c.close()"
    ),
}


@pytest.fixture
def short_home() -> Iterator[Home]:
    """A home whose socket path is short enough to bind at directly."""
    root = Path(tempfile.mkdtemp(prefix="cxd", dir="/tmp"))
    home = make_home(root / "h")
    try:
        home.install_managed_shim()
        yield home
    finally:
        home.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def start_foreign_listener(home: Home, flavor: str) -> subprocess.Popen[str]:
    socket_dir = home.paths.socket_path.parent
    socket_dir.mkdir(mode=0o700, exist_ok=True)
    code = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "s.bind(sys.argv[1])\n"
        "s.listen()\n"
        "print('listening', flush=True)\n" + FOREIGN_LISTENERS[flavor]
    )
    listener = subprocess.Popen(
        [sys.executable, "-c", code, str(home.paths.socket_path)],
        env=home.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    home.started.append(listener)
    assert listener.stdout is not None
    assert listener.stdout.readline() == "listening\n", listener.communicate()
    return listener


@pytest.mark.parametrize("flavor", sorted(FOREIGN_LISTENERS))
@pytest.mark.parametrize("command", [("start",), ("restart",), ("bootstrap", "--remote-control")])
def test_a_listener_that_is_no_app_server_is_refused_before_anything_starts(
    short_home: Home, flavor: str, command: tuple[str, ...]
) -> None:
    home = short_home
    listener = start_foreign_listener(home, flavor)

    result = home.run(*command)

    assert result.returncode == 1 and result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert f"pid {listener.pid}" in line and f"{sys.executable} -c" in line, line
    assert "not an app-server" in line and "--takeover" in line, line
    assert "failed" not in line, line  # nothing was launched to fail
    assert listener.poll() is None
    assert home.nothing_runs() and home.record() is None
    assert not home.paths.app_server_log.exists()


@pytest.mark.parametrize("flavor", sorted(FOREIGN_LISTENERS))
@pytest.mark.parametrize("command", [("start",), ("restart",), ("bootstrap", "--remote-control")])
def test_takeover_stops_a_listener_that_is_no_app_server(
    short_home: Home, flavor: str, command: tuple[str, ...]
) -> None:
    home = short_home
    home.env.update(CODEXD_UPDATE_INITIAL_DELAY_SECONDS="3600")
    listener = start_foreign_listener(home, flavor)

    output = home.ok(*command, "--takeover")

    assert output["status"] in ("started", "restarted", "bootstrapped")
    assert listener.wait(timeout=10) == -signal.SIGTERM
    [keeper] = home.keeper_pids()
    home.serving(keeper)
    assert home.ok("version")["backend"] == "pid"


def test_version_names_a_silent_listener_instead_of_guessing_overload(short_home: Home) -> None:
    listener = start_foreign_listener(short_home, "silent")

    result = short_home.run("version")

    assert result.returncode == 1 and result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert f"pid {listener.pid}" in line and f"{sys.executable} -c" in line, line
    assert "not an app-server codexd started" in line, line
    assert "overloaded" not in line and "codexd start --takeover" in line, line


def test_stop_names_what_stops_an_unmanaged_server(home: Home) -> None:
    """`stop` has no --takeover: it names the commands that work."""
    server = start_unmanaged(home)
    result = home.run("stop")
    assert result.returncode == 1 and result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert f"`kill -TERM {server.pid}`" in line and "`codexd start --takeover`" in line, line
    assert "rerun with" not in line, line
    assert server.poll() is None
    os.kill(server.pid, signal.SIGTERM)  # what it says works
    assert server.wait(timeout=10) == 0
    assert home.ok("stop")["status"] == "notRunning"


def unshare_pid_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = ["unshare", "--pid", "--fork", "true"]
    return subprocess.run(probe, capture_output=True, timeout=30, check=False).returncode == 0


def in_a_pid_namespace(home: Home, *command: str) -> str:
    """The one line a failing codexd command run in a new pid namespace says."""
    codexd = subprocess.run(
        ["unshare", "--pid", "--fork", str(CODEXD), *command],
        env=home.env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert codexd.returncode == 1 and codexd.stdout == "", codexd
    [line] = codexd.stderr.strip().splitlines()
    assert "pid 0" not in line, line
    return line


@pytest.mark.skipif(not unshare_pid_works(), reason="cannot make a pid namespace here")
def test_version_names_no_pid_0_for_a_listener_outside_our_pid_namespace(
    short_home: Home,
) -> None:
    listener = start_foreign_listener(short_home, "silent")
    line = in_a_pid_namespace(short_home, "version")
    assert "not answering" in line, line
    assert listener.poll() is None


@pytest.mark.skipif(not unshare_pid_works(), reason="cannot make a pid namespace here")
@pytest.mark.parametrize(
    ("listener", "command"),
    [
        ("silent", ("start", "--takeover")),
        ("silent", ("restart",)),
        ("app-server", ("stop",)),
        ("app-server", ("start", "--takeover")),
    ],
)
def test_a_listener_outside_our_pid_namespace_is_unnamed_never_pid_0(
    short_home: Home, listener: str, command: tuple[str, ...]
) -> None:
    """Run inside a pid namespace (a sandbox, a container), codexd hears pid 0 from the
    kernel for a listener outside it: no process it may name or signal (`kill -TERM 0`
    would signal the user's whole process group)."""
    home = short_home
    if listener == "silent":
        holder = start_foreign_listener(home, "silent")
    else:
        holder = start_unmanaged(home)
    line = in_a_pid_namespace(home, *command)
    assert "kill -TERM" not in line, line
    assert line.endswith("the kernel does not say which process listens: stop it yourself"), line
    assert holder.poll() is None
    assert home.keeper_pids() == [] and home.record() is None


def test_takeover_refuses_when_the_named_listener_left_its_socket_to_a_child(
    short_home: Home,
) -> None:
    """SO_PEERCRED names who called listen(); that process may have passed the socket
    on and exited. Its pid is gone, but the socket is not free: say so, launch nothing."""
    home = short_home
    socket_dir = home.paths.socket_path.parent
    socket_dir.mkdir(mode=0o700, exist_ok=True)
    code = (
        "import os, socket, sys, time\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "s.bind(sys.argv[1])\n"
        "s.listen()\n"
        "if os.fork() == 0:\n"
        "    print(os.getpid(), flush=True)\n"
        "    time.sleep(600)\n"
        "    os._exit(0)\n"
        "os._exit(0)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code, str(home.paths.socket_path)],
        env=home.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    parent.wait(timeout=10)
    try:
        result = home.run("start", "--takeover")
        assert result.returncode == 1 and result.stdout == "", result
        [line] = result.stderr.strip().splitlines()
        assert f"pid {parent.pid}" in line and "still listens" in line, line
        assert home.keeper_pids() == [] and home.record() is None
        assert not is_gone(child)
    finally:
        os.kill(child, signal.SIGKILL)
        wait_for(lambda: is_gone(child), what="the child listener to go")
