"""The control-socket client: version parsing and the `initialize` probe.

The probe runs against small in-process WebSocket servers that misbehave on purpose;
the real app-server is exercised in test_app_server.py.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.server import ServerConnection, unix_serve

from supervisor.control_socket import (
    PeerCredentials,
    ProbeError,
    ProbeInfo,
    parse_version_from_user_agent,
    probe,
)

USER_AGENT = "codexd/0.1.0 (Linux 6.8.0; x86_64)"


@pytest.mark.parametrize(
    ("user_agent", "version"),
    [
        ("name/1.2.3 (Linux 6.8.0; x86_64) codex_cli_rs/1.2.3", "1.2.3"),
        ("codexd/0.1.0 (Linux 6.8.0; x86_64)", "0.1.0"),
        ("codex_cli_rs/0.169.0", "0.169.0"),
        ("codex_cli_rs/0.169.0-alpha.1 (Mac OS 15.1; arm64) xterm", "0.169.0-alpha.1"),
        ("a/b/c d", "b/c"),
        ("name/1.0\t(tabbed)", "1.0"),
    ],
)
def test_parse_version_from_user_agent(user_agent: str, version: str) -> None:
    assert parse_version_from_user_agent(user_agent) == version


@pytest.mark.parametrize(
    "user_agent",
    ["", "codexd", "codexd 0.1.0", "codexd/", "codexd/ 0.1.0", "codexd/\n"],
)
def test_parse_version_from_user_agent_rejects_missing_version(user_agent: str) -> None:
    with pytest.raises(ValueError):
        parse_version_from_user_agent(user_agent)


Handler = Callable[[ServerConnection], None]


@contextmanager
def fake_server(path: Path, handler: Handler) -> Iterator[None]:
    server = unix_serve(handler, str(path))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        thread.join(timeout=5)


def recv_json(websocket: ServerConnection) -> dict[str, Any]:
    message = json.loads(websocket.recv(timeout=5))
    assert isinstance(message, dict)
    return message


def answer_initialize(*before: str | bytes, result: Any = None) -> Handler:
    """A server that sends `before` frames, then answers `initialize` with `result`."""

    def handler(websocket: ServerConnection) -> None:
        request = recv_json(websocket)
        for frame in before:
            websocket.send(frame)
        answer = {"userAgent": USER_AGENT} if result is None else result
        websocket.send(json.dumps({"id": request["id"], "result": answer}))
        websocket.recv(timeout=5)

    return handler


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "control.sock"


def test_probe_sends_initialize_then_initialized(sock_path: Path) -> None:
    received: list[dict[str, Any]] = []

    def handler(websocket: ServerConnection) -> None:
        received.append(recv_json(websocket))
        websocket.send(json.dumps({"id": 1, "result": {"userAgent": USER_AGENT}}))
        received.append(recv_json(websocket))

    with fake_server(sock_path, handler):
        info = probe(sock_path)

    # The peer is this process: the fake server listens in a thread of ours.
    peer = PeerCredentials(pid=os.getpid(), uid=os.geteuid(), gid=os.getegid())
    assert info == ProbeInfo(app_server_version="0.1.0", user_agent=USER_AGENT, peer=peer)
    assert received == [
        {
            "id": 1,
            "method": "initialize",
            "params": {"clientInfo": {"name": "codexd", "title": "codexd", "version": "0.1.0"}},
        },
        {"method": "initialized"},
    ]


def test_probe_skips_notifications_and_frames_that_are_not_json(sock_path: Path) -> None:
    handler = answer_initialize(
        "not json",
        b"\x00binary",
        "[1, 2]",
        json.dumps({"method": "remoteControl/status/changed", "params": {}}),
        json.dumps({"id": True, "result": {"userAgent": "wrong/9.9.9"}}),
        json.dumps({"id": 1, "method": "server/request"}),
    )
    with fake_server(sock_path, handler):
        assert probe(sock_path).app_server_version == "0.1.0"


def test_probe_reports_missing_socket(sock_path: Path) -> None:
    with pytest.raises(ProbeError, match=f"{sock_path}.*no such file"):
        probe(sock_path)


def test_probe_reports_refused_connection(sock_path: Path) -> None:
    # Bound but never listening: what a crashed server leaves behind.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(str(sock_path))
        with pytest.raises(ProbeError, match=f"{sock_path}.*connection refused"):
            probe(sock_path)


def test_probe_times_out_on_a_silent_listener(sock_path: Path) -> None:
    # Listening but never accepting: the kernel completes connect(), nobody answers.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.bind(str(sock_path))
        silent.listen(8)
        started = time.monotonic()
        with pytest.raises(ProbeError, match=f"{sock_path}.*timed out"):
            probe(sock_path, timeout=0.3)
        assert time.monotonic() - started < 1.0


def test_probe_times_out_when_initialize_is_never_answered(sock_path: Path) -> None:
    def handler(websocket: ServerConnection) -> None:
        recv_json(websocket)
        websocket.send(json.dumps({"method": "some/notification"}))
        time.sleep(1.5)

    with fake_server(sock_path, handler):
        started = time.monotonic()
        with pytest.raises(ProbeError, match="timed out"):
            probe(sock_path, timeout=0.3)
        # The close handshake is inside the deadline too.
        assert time.monotonic() - started < 1.0


def test_probe_reports_an_error_answer(sock_path: Path) -> None:
    def handler(websocket: ServerConnection) -> None:
        recv_json(websocket)
        websocket.send(json.dumps({"id": 1, "error": {"code": -32600, "message": "nope"}}))

    with (
        fake_server(sock_path, handler),
        pytest.raises(ProbeError, match="initialize failed: nope"),
    ):
        probe(sock_path)


@pytest.mark.parametrize(
    "result",
    [{"userAgent": "no-slash"}, {"codexHome": "/x"}, {"userAgent": 3}, ["not", "an", "object"]],
)
def test_probe_reports_a_bad_answer(sock_path: Path, result: Any) -> None:
    with (
        fake_server(sock_path, answer_initialize(result=result)),
        pytest.raises(ProbeError, match=f"{sock_path}.*bad response"),
    ):
        probe(sock_path)


def test_probe_reports_a_server_that_is_not_websocket(sock_path: Path) -> None:
    def http_500() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(4096)
            connection.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(sock_path))
        listener.listen(1)
        thread = threading.Thread(target=http_500, daemon=True)
        thread.start()
        with pytest.raises(ProbeError, match=f"{sock_path}.*bad response"):
            probe(sock_path)
        thread.join(timeout=5)


def test_probe_reports_a_server_that_hangs_up(sock_path: Path) -> None:
    def handler(websocket: ServerConnection) -> None:
        recv_json(websocket)

    with fake_server(sock_path, handler), pytest.raises(ProbeError, match="connection closed"):
        probe(sock_path)
