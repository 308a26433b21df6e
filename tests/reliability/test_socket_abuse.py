"""Abuse of the control socket of codexd's own app-server: random bytes, frames that
are not JSON, oversized frames, half-open and idle connections, hundreds at once.
The app-server stays up, its memory stays bounded, and a probe still answers in 2 s."""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
import select
import socket
import struct
import time
from collections.abc import Iterator

import psutil
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import unix_connect

from supervisor.control_socket import initialize_request, probe
from supervisor.paths import connectable_socket_path
from tests.conftest import Home, wait_for
from tests.reliability.invariants import check_home

PROBE_SECONDS = 2.0
MAX_RSS_BYTES = 200 * 1024 * 1024
# Growth allowed between rounds once every connection of a round closed.
MAX_RSS_GROWTH_BYTES = 20 * 1024 * 1024
CONNECTIONS_AT_ONCE = 500
CONNECT_SECONDS = 10.0
UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


@pytest.fixture
def server(home: Home) -> Iterator[tuple[Home, int]]:
    pid: int = home.ok("start")["pid"]
    yield home, pid
    # The abuse must not have cost the server its life or its record.
    app_server = home.serving(pid)
    state = check_home(home.path)
    assert state.keeper == pid and state.app_server == app_server, (
        f"app-server {app_server} of keeper {pid} did not survive"
    )


@pytest.fixture(autouse=True)
def enough_file_descriptors() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = CONNECTIONS_AT_ONCE * 2 + 256
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def raw_connection(home: Home) -> socket.socket:
    """A connected socket; a full backlog (EAGAIN) is waited out, as a client would."""
    path = os.fspath(connectable_socket_path(home.paths.socket_path))
    deadline = time.monotonic() + CONNECT_SECONDS
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(CONNECT_SECONDS)
        try:
            sock.connect(path)
            return sock
        except BlockingIOError:
            sock.close()
            if time.monotonic() >= deadline:
                raise
            select.select([], [], [], 0.01)  # the backlog drains as the server accepts


def answers_quickly(home: Home) -> float:
    began = time.monotonic()
    assert probe(home.paths.socket_path, timeout=PROBE_SECONDS).app_server_version == "0.1.0"
    return time.monotonic() - began


def rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def masked_frame(opcode: int, payload: bytes, claimed_length: int | None = None) -> bytes:
    """A client frame (clients must mask), optionally claiming another length."""
    length = len(payload) if claimed_length is None else claimed_length
    header = bytes([0x80 | opcode])
    if length < 126:
        header += bytes([0x80 | length])
    elif length < 1 << 16:
        header += bytes([0x80 | 126]) + struct.pack("!H", length)
    else:
        header += bytes([0x80 | 127]) + struct.pack("!Q", length)
    mask = os.urandom(4)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def test_random_bytes_and_broken_handshakes_leave_the_server_serving(
    server: tuple[Home, int], rng: random.Random, full: bool
) -> None:
    home, pid = server
    for _ in range(200 if full else 50):
        garbage = rng.randbytes(rng.randint(1, 8192))
        if rng.random() < 0.3:
            garbage = UPGRADE + garbage  # a good handshake, then noise as frames
        with contextlib.closing(raw_connection(home)) as sock, contextlib.suppress(OSError):
            sock.sendall(garbage)
    assert answers_quickly(home) < PROBE_SECONDS
    assert rss(pid) < MAX_RSS_BYTES


def test_frames_that_are_not_json_are_ignored_on_the_same_connection(
    server: tuple[Home, int],
) -> None:
    home, _ = server
    target = connectable_socket_path(home.paths.socket_path)
    with unix_connect(os.fspath(target), uri="ws://localhost/", ping_interval=None) as client:
        for frame in (
            "not json",
            "{",
            "[1, 2, 3]",
            '"a string"',
            "null",
            "[" * 100_000 + "]" * 100_000,  # valid JSON too deep for the parser
            '{"id": {}, "method": 7}',
            '{"id": 9, "method": "initialize", "params": "nope"}',
        ):
            client.send(frame)
        client.send(b"\x00\xffbinary")
        client.send(json.dumps(initialize_request()))
        replies = [json.loads(client.recv(timeout=PROBE_SECONDS)) for _ in range(4)]
    ids = [reply.get("id") for reply in replies]
    assert ids == [{}, 9, 1, None], replies
    assert "result" in replies[2], replies


def test_oversized_frames_close_only_their_connection(server: tuple[Home, int]) -> None:
    home, pid = server
    target = connectable_socket_path(home.paths.socket_path)
    with unix_connect(os.fspath(target), uri="ws://localhost/", ping_interval=None) as client:
        client.send("x" * (2 * 1024 * 1024))
        with pytest.raises(ConnectionClosed):
            client.recv(timeout=5.0)
    # A header claiming an exabyte, with no payload behind it.
    with contextlib.closing(raw_connection(home)) as sock:
        sock.sendall(UPGRADE)
        assert sock.recv(4096).startswith(b"HTTP/1.1 101")
        sock.sendall(masked_frame(0x1, b"", claimed_length=1 << 62))
        closing = sock.recv(4096)
        assert closing[:1] == b"\x88", closing  # a close frame: "message too big"
    assert answers_quickly(home) < PROBE_SECONDS
    assert rss(pid) < MAX_RSS_BYTES


def test_hundreds_of_half_open_and_idle_connections_at_once(
    server: tuple[Home, int], rng: random.Random, full: bool
) -> None:
    home, pid = server
    after_round = []
    for _ in range(5 if full else 2):
        sockets = []
        try:
            for index in range(CONNECTIONS_AT_ONCE):
                sock = raw_connection(home)
                sockets.append(sock)
                kind = index % 4
                if kind == 1:
                    sock.sendall(UPGRADE[: rng.randint(1, len(UPGRADE) - 1)])  # half a request
                elif kind == 2:
                    sock.sendall(UPGRADE)  # a connection that then says nothing
                elif kind == 3:
                    sock.sendall(UPGRADE + masked_frame(0x1, b"x" * 1000, 1 << 20)[:64])
            # Every one of them is still open while a real client comes along.
            assert answers_quickly(home) < PROBE_SECONDS
            assert rss(pid) < MAX_RSS_BYTES
        finally:
            for sock in sockets:
                sock.close()

        def settled() -> bool:
            return len(psutil.Process(pid).net_connections(kind="unix")) < 10

        wait_for(settled, timeout=30, what="the server to drop the closed connections")
        after_round.append(rss(pid))
    assert after_round[-1] - after_round[0] < MAX_RSS_GROWTH_BYTES, after_round
    assert answers_quickly(home) < PROBE_SECONDS
