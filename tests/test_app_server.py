"""The reference app-server, run as a real process in a temporary CODEX_HOME."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, suppress
from pathlib import Path
from typing import Any, Protocol

import pytest
from websockets.exceptions import ConnectionClosedError
from websockets.sync.client import ClientConnection, unix_connect

from supervisor.control_socket import ProbeError, probe
from supervisor.paths import (
    HomePaths,
    connectable_socket_path,
    fits_sun_path,
    private_socket_dir,
)
from workers.reference_app_server import Session

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVE = (
    "import sys; from pathlib import Path; from workers.reference_app_server import serve; "
    "sys.exit(serve(Path(sys.argv[1]), sys.argv[2] == '1'))"
)
READY_SECONDS = 10.0


# --- the protocol, without a socket -------------------------------------------------------


def initialize_frame(request_id: int = 1) -> str:
    client_info = {"name": "test", "version": "1"}
    return json.dumps(
        {"id": request_id, "method": "initialize", "params": {"clientInfo": client_info}}
    )


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        ([], []),
        (["not json"], []),
        ([b'{"id": 1, "method": "thread/start"}'], []),
        (["[1]"], []),
        (['{"method": "initialized"}'], []),
        (['{"id": 5, "result": {}}'], []),
        (['{"id": 2, "method": "thread/start"}'], [(2, -32600, "Not initialized")]),
        (['{"id": 3, "method": 7}'], [(3, -32600, "Invalid request: bad method")]),
        (
            ['{"id": 4, "method": "initialize", "params": {}}'],
            [(4, -32602, "Invalid params: clientInfo.name is required")],
        ),
        (
            ['{"id": 4, "method": "initialize", "params": {"clientInfo": {"version": "1"}}}'],
            [(4, -32602, "Invalid params: clientInfo.name is required")],
        ),
        ([initialize_frame(1), initialize_frame(2)], [(2, -32600, "Already initialized")]),
        (
            [initialize_frame(1), '{"id": "x", "method": "thread/start"}'],
            [("x", -32601, "Method not found: thread/start")],
        ),
    ],
)
def test_session_errors(frames: list[str | bytes], expected: list[tuple[Any, int, str]]) -> None:
    session = Session(Path("/h"), remote_control=False)
    replies = [reply for frame in frames for reply in session.handle_frame(frame)]
    errors = [
        (reply["id"], reply["error"]["code"], reply["error"]["message"])
        for reply in replies
        if "error" in reply
    ]
    assert errors == expected


def test_session_initialize_answers_then_reports_remote_control() -> None:
    session = Session(Path("/h"), remote_control=True)
    response, notification = session.handle_frame(initialize_frame(7))
    assert response["id"] == 7
    assert response["result"]["userAgent"].startswith("test/0.1.0 (")
    assert response["result"]["codexHome"] == "/h"
    assert notification["method"] == "remoteControl/status/changed"
    assert notification["params"]["status"] == "enabled"
    assert session.initialized


# --- the real process ---------------------------------------------------------------------


class AppServer:
    """One app-server subprocess; `stop` kills it and its process group whatever happened."""

    def __init__(self, home: Path, runtime_dir: Path, log: Path) -> None:
        self.home = home
        self.runtime_dir = runtime_dir
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        return HomePaths(self.home).socket_path

    def start(self, remote_control: bool = False) -> subprocess.Popen[bytes]:
        env = dict(os.environ, XDG_RUNTIME_DIR=str(self.runtime_dir), PYTHONPATH=str(REPO_ROOT))
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", SERVE, str(self.home), "1" if remote_control else "0"],
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                umask=0o022,
            )
        return self.proc

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"app-server exited {self.proc.returncode}: {self.log.read_text()}")
            try:
                probe(self.socket_path, timeout=1.0)
                return
            except ProbeError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        self.proc = None


@pytest.fixture
def runtime_dir() -> Iterator[Path]:
    # A short $XDG_RUNTIME_DIR of our own: pytest's tmp_path is too long to bind under, and
    # nothing may land in the shared /tmp/codexd-<uid>.
    path = Path(tempfile.mkdtemp(prefix="cx-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def servers() -> Iterator[list[AppServer]]:
    started: list[AppServer] = []
    try:
        yield started
    finally:
        for server in started:
            server.stop()


class ServerFactory(Protocol):
    def __call__(self, home: Path, log: Path | None = None) -> AppServer: ...


@pytest.fixture
def new_server(servers: list[AppServer], tmp_path: Path, runtime_dir: Path) -> ServerFactory:
    """Builds AppServers that the test's teardown kills."""

    def build(home: Path, log: Path | None = None) -> AppServer:
        server = AppServer(home, runtime_dir, log or tmp_path / f"app-server-{len(servers)}.log")
        servers.append(server)
        return server

    return build


@pytest.fixture
def home(runtime_dir: Path) -> Path:
    # Short enough to bind in place; pytest's tmp_path is not, for long test names.
    path = runtime_dir / "codex-home"
    path.mkdir()
    assert fits_sun_path(HomePaths(path).socket_path)
    return path


@pytest.fixture
def running(new_server: ServerFactory, home: Path) -> AppServer:
    server = new_server(home)
    server.start()
    server.wait_ready()
    return server


def connect(server: AppServer) -> AbstractContextManager[ClientConnection]:
    path = connectable_socket_path(server.socket_path)
    return unix_connect(str(path), uri="ws://localhost/", open_timeout=5)


def request(websocket: ClientConnection, message: dict[str, Any] | str) -> dict[str, Any]:
    websocket.send(message if isinstance(message, str) else json.dumps(message))
    return recv(websocket)


def recv(websocket: ClientConnection) -> dict[str, Any]:
    reply = json.loads(websocket.recv(timeout=5))
    assert isinstance(reply, dict)
    return reply


def initialize(websocket: ClientConnection) -> dict[str, Any]:
    response = request(websocket, initialize_frame(1))
    recv(websocket)  # remoteControl/status/changed
    return response


def wait_exit(proc: subprocess.Popen[bytes], seconds: float) -> int | None:
    try:
        return proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return None


def test_probe_reports_version(running: AppServer) -> None:
    info = probe(running.socket_path)
    assert info.app_server_version == "0.1.0"
    assert info.user_agent.startswith("codexd/0.1.0 (")
    # Who answered, as the kernel saw it: what a takeover or a doctor check acts on.
    assert running.proc is not None
    assert info.peer is not None
    assert (info.peer.pid, info.peer.uid) == (running.proc.pid, os.geteuid())


@pytest.mark.parametrize(("flag", "status"), [(False, "disabled"), (True, "enabled")])
def test_initialize_answers_then_reports_remote_control(
    new_server: ServerFactory, home: Path, flag: bool, status: str
) -> None:
    server = new_server(home)
    server.start(remote_control=flag)
    server.wait_ready()
    with connect(server) as websocket:
        response = request(websocket, initialize_frame(1))
        notification = recv(websocket)
    assert response["id"] == 1
    assert "jsonrpc" not in response
    assert response["result"]["codexHome"] == str(home)
    assert response["result"]["platformFamily"] == "unix"
    assert response["result"]["platformOs"] == "linux"
    assert notification == {
        "method": "remoteControl/status/changed",
        "params": {"status": status, "serverName": socket.gethostname(), "environmentId": None},
    }
    assert f"remote control {status}" in server.log.read_text()


def test_request_before_initialize_is_rejected(running: AppServer) -> None:
    with connect(running) as websocket:
        reply = request(websocket, {"id": 9, "method": "thread/start"})
    assert reply == {"id": 9, "error": {"code": -32600, "message": "Not initialized"}}


def test_second_initialize_is_rejected(running: AppServer) -> None:
    with connect(running) as websocket:
        initialize(websocket)
        reply = request(websocket, initialize_frame(2))
    assert reply == {"id": 2, "error": {"code": -32600, "message": "Already initialized"}}


def test_unknown_method_gets_an_error_and_the_connection_lives_on(running: AppServer) -> None:
    with connect(running) as websocket:
        initialize(websocket)
        reply = request(websocket, {"id": 3, "method": "no/such"})
        assert reply == {"id": 3, "error": {"code": -32601, "message": "Method not found: no/such"}}
        assert request(websocket, {"id": 4, "method": "no/other"})["id"] == 4


def test_initialize_without_client_info_is_invalid_params(running: AppServer) -> None:
    with connect(running) as websocket:
        reply = request(websocket, {"id": 1, "method": "initialize", "params": {}})
        assert reply["error"]["code"] == -32602
        assert "userAgent" in initialize(websocket)["result"]


def test_garbage_frames_are_ignored(running: AppServer) -> None:
    with connect(running) as websocket:
        websocket.send("{not json")
        websocket.send(b"\xff\x00binary")
        websocket.send('"a string"')
        websocket.send('{"method": "initialized"}')
        # The first answer is to the first request: nothing was sent for the garbage.
        assert initialize(websocket)["id"] == 1


def test_oversized_frame_closes_only_that_connection(running: AppServer) -> None:
    with connect(running) as websocket:
        websocket.send("x" * (2 * 1024 * 1024))
        with pytest.raises(ConnectionClosedError) as closed:
            websocket.recv(timeout=5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009  # message too big
    assert probe(running.socket_path).app_server_version == "0.1.0"


def test_clients_keep_their_own_state(running: AppServer) -> None:
    with connect(running) as first, connect(running) as second:
        initialize(first)
        assert request(second, {"id": 1, "method": "x"})["error"]["message"] == "Not initialized"
        assert request(first, {"id": 2, "method": "x"})["error"]["code"] == -32601


def test_many_clients_at_once(running: AppServer) -> None:
    clients = [connect(running) for _ in range(20)]
    websockets = [client.__enter__() for client in clients]
    try:
        for websocket in websockets:
            websocket.send(initialize_frame(1))
        for websocket in websockets:
            assert recv(websocket)["result"]["userAgent"].startswith("test/0.1.0")
    finally:
        for client in clients:
            client.__exit__(None, None, None)


def test_socket_is_0600_and_its_dir_0700_under_umask_022(running: AppServer) -> None:
    assert stat.S_IMODE(os.lstat(running.socket_path).st_mode) == 0o600
    assert stat.S_ISSOCK(os.lstat(running.socket_path).st_mode)
    assert stat.S_IMODE(os.lstat(running.socket_path.parent).st_mode) == 0o700


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_exits_0_within_a_second_and_removes_the_socket(
    running: AppServer, signum: signal.Signals
) -> None:
    assert running.proc is not None
    # An idle client must not hold the shutdown up.
    with connect(running) as websocket:
        initialize(websocket)
        running.proc.send_signal(signum)
        assert wait_exit(running.proc, 1.0) == 0
    assert not running.socket_path.exists()
    assert not running.socket_path.is_symlink()


def test_sigterm_does_not_wait_for_clients_that_never_finish(running: AppServer) -> None:
    assert running.proc is not None
    path = str(connectable_socket_path(running.socket_path))
    with (
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as before_handshake,
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as deaf,
    ):
        before_handshake.connect(path)
        before_handshake.sendall(b"GET / HTTP/1.1\r\n")
        # Completes the handshake, then never reads, so it never answers the close frame.
        deaf.connect(path)
        deaf.sendall(
            b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        assert deaf.recv(4096).startswith(b"HTTP/1.1 101 ")
        running.proc.send_signal(signal.SIGTERM)
        assert wait_exit(running.proc, 1.0) == 0
    assert not running.socket_path.exists()


def test_stale_socket_is_replaced(new_server: ServerFactory, home: Path) -> None:
    socket_path = HomePaths(home).socket_path
    socket_path.parent.mkdir(mode=0o700)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(str(socket_path))
    server = new_server(home)
    server.start()
    server.wait_ready()


def test_regular_file_at_socket_path_is_refused(new_server: ServerFactory, home: Path) -> None:
    socket_path = HomePaths(home).socket_path
    socket_path.parent.mkdir(mode=0o700)
    socket_path.write_text("precious")
    server = new_server(home)
    assert wait_exit(server.start(), READY_SECONDS) == 1
    assert f"control socket {socket_path} is not a socket" in server.log.read_text()
    assert socket_path.read_text() == "precious"


def test_second_server_on_the_same_home_refuses(
    running: AppServer, new_server: ServerFactory, home: Path, tmp_path: Path
) -> None:
    second = new_server(home, log=tmp_path / "second.log")
    assert wait_exit(second.start(), READY_SECONDS) == 1
    message = f"control socket {running.socket_path} is already in use"
    assert message in second.log.read_text()
    assert probe(running.socket_path).app_server_version == "0.1.0"


@pytest.fixture
def long_home(tmp_path: Path) -> Path:
    path = tmp_path / ("h" * 60) / ("o" * 60)
    path.mkdir(parents=True)
    assert not fits_sun_path(HomePaths(path).socket_path)
    return path


def test_long_socket_path_binds_in_a_private_dir_behind_a_symlink(
    new_server: ServerFactory, long_home: Path, runtime_dir: Path
) -> None:
    server = new_server(long_home)
    proc = server.start()
    server.wait_ready()

    private_dir = private_socket_dir(server.socket_path, os.getuid(), str(runtime_dir))
    target = Path(os.readlink(server.socket_path))
    assert target.parent == private_dir
    assert stat.S_ISSOCK(os.lstat(target).st_mode)
    assert stat.S_IMODE(os.lstat(target).st_mode) == 0o600
    assert stat.S_IMODE(os.lstat(private_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.lstat(private_dir.parent).st_mode) == 0o700
    assert probe(server.socket_path).app_server_version == "0.1.0"

    proc.send_signal(signal.SIGTERM)
    assert wait_exit(proc, 1.0) == 0
    assert not server.socket_path.is_symlink()
    assert not target.exists()


def test_long_socket_path_replaces_a_stale_symlink(
    new_server: ServerFactory, long_home: Path
) -> None:
    socket_path = HomePaths(long_home).socket_path
    socket_path.parent.mkdir(mode=0o700)
    socket_path.symlink_to("/nonexistent/old.sock")
    server = new_server(long_home)
    server.start()
    server.wait_ready()
    assert os.readlink(socket_path) != "/nonexistent/old.sock"


def test_second_server_on_a_long_home_refuses(
    new_server: ServerFactory, long_home: Path, tmp_path: Path
) -> None:
    first = new_server(long_home)
    first.start()
    first.wait_ready()
    second = new_server(long_home, log=tmp_path / "second.log")
    assert wait_exit(second.start(), READY_SECONDS) == 1
    assert "is already in use" in second.log.read_text()
    assert probe(first.socket_path).app_server_version == "0.1.0"


def test_a_loose_private_dir_of_ours_is_tightened_and_used(
    new_server: ServerFactory, long_home: Path, runtime_dir: Path
) -> None:
    socket_path = HomePaths(long_home).socket_path
    private_dir = private_socket_dir(socket_path, os.getuid(), str(runtime_dir))
    private_dir.mkdir(parents=True)
    private_dir.parent.chmod(0o770)
    private_dir.chmod(0o755)

    server = new_server(long_home)
    server.start()
    server.wait_ready()
    # Ours, so nobody else can have loosened it: made private again, then used.
    assert stat.S_IMODE(os.lstat(private_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.lstat(private_dir.parent).st_mode) == 0o700
    assert Path(os.readlink(socket_path)).parent == private_dir


def test_private_dir_that_is_a_symlink_is_refused(
    new_server: ServerFactory, long_home: Path, runtime_dir: Path, tmp_path: Path
) -> None:
    socket_path = HomePaths(long_home).socket_path
    private_dir = private_socket_dir(socket_path, os.getuid(), str(runtime_dir))
    private_dir.parent.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    private_dir.symlink_to(elsewhere)

    server = new_server(long_home)
    assert wait_exit(server.start(), READY_SECONDS) == 1
    assert (
        f"private socket directory {private_dir} is a symlink; refusing to use it"
        in server.log.read_text()
    )
    assert list(elsewhere.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a directory away")
def test_private_dir_owned_by_someone_else_is_refused(
    new_server: ServerFactory, long_home: Path, runtime_dir: Path
) -> None:
    socket_path = HomePaths(long_home).socket_path
    private_dir = private_socket_dir(socket_path, os.getuid(), str(runtime_dir))
    private_dir.mkdir(parents=True, mode=0o700)
    private_dir.parent.chmod(0o700)
    os.chown(private_dir, 65534, 65534)

    server = new_server(long_home)
    assert wait_exit(server.start(), READY_SECONDS) == 1
    assert f"private socket directory {private_dir} is owned by uid 65534" in server.log.read_text()
    assert os.lstat(private_dir).st_uid == 65534


def test_missing_runtime_dir_is_an_error_that_names_it(
    new_server: ServerFactory, long_home: Path, runtime_dir: Path
) -> None:
    shutil.rmtree(runtime_dir)
    server = new_server(long_home)
    assert wait_exit(server.start(), READY_SECONDS) == 1
    assert (
        f"cannot create private socket directory {runtime_dir / 'codexd'}: No such file"
        in server.log.read_text()
    )
