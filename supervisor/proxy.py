"""`app-server proxy`: JSON-RPC lines on stdin/stdout <-> WebSocket frames on the control
socket, so a client that speaks line-delimited JSON can reach the app-server.

One JSON message per line on stdin becomes one text frame; one text frame from the
server becomes one line on stdout. The server's frames are read in the calling thread;
stdin is read in a daemon thread straight from its fd (no buffered stdin object), so
the process can exit while that thread is still blocked in read().
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from supervisor.errors import DaemonError

if TYPE_CHECKING:
    from websockets.sync.client import ClientConnection

CONNECT_TIMEOUT_SECONDS = 10.0
# After stdin ends: how long the server may take to answer the requests already sent,
# then to answer our close frame.
DRAIN_TIMEOUT_SECONDS = 10.0
CLOSE_TIMEOUT_SECONDS = 5.0
READ_CHUNK_BYTES = 1 << 16


class ProxyError(DaemonError):
    """The proxy could not reach the app-server; the message names the socket."""


def lines_from_fd(fd: int) -> Iterator[bytes]:
    """The lines read from `fd` until end-of-file, without their line endings; a last
    line without a newline counts too."""
    pending = b""
    while chunk := os.read(fd, READ_CHUNK_BYTES):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line.rstrip(b"\r")
    if pending:
        yield pending.rstrip(b"\r")


def message_from_line(line: bytes) -> str | None:
    """The frame to send for one stdin line; None for a blank line. ValueError (with
    the reason) for a line that is not a JSON message."""
    text = line.decode("utf-8").strip()  # UnicodeDecodeError is a ValueError
    if not text:
        return None
    json.loads(text)
    return text


def line_from_frame(frame: str) -> bytes:
    """One stdout line for a server frame. A frame is one JSON message; should it hold
    line breaks (pretty-printed), it is re-encoded compactly to stay one line."""
    if "\n" in frame or "\r" in frame:
        try:
            frame = json.dumps(json.loads(frame), separators=(",", ":"))
        except ValueError:
            frame = frame.replace("\r", "\\r").replace("\n", "\\n")
    return frame.encode("utf-8") + b"\n"


def connect(socket_path: Path) -> ClientConnection:
    """A WebSocket connection to the control socket, or ProxyError naming the socket.

    The socket is opened as the probe opens it (`connect_control_socket`: a symlink
    followed only into a private directory of ours, a listener running as us), so the
    messages we copy never reach someone else's server."""
    # Imported here, as in control_socket: websockets is slow to import.
    from websockets.exceptions import InvalidHandshake, InvalidURI
    from websockets.sync.client import connect as websocket_connect

    from supervisor.control_socket import ProbeError, Unreachable, connect_control_socket

    try:
        sock, _ = connect_control_socket(socket_path, time.monotonic() + CONNECT_TIMEOUT_SECONDS)
    except ProbeError as error:
        if error.reason is Unreachable.NOT_LISTENING:
            raise ProxyError(f"no app-server is listening on {error}") from error
        raise ProxyError(f"cannot connect to {error}") from error
    where = f"control socket {socket_path}"
    import socket  # websockets wants the full socket object, not _socket's

    try:
        full = socket.socket(fileno=sock.detach())
        full.settimeout(None)  # the handshake's limit is open_timeout
        return websocket_connect(
            "ws://localhost/",
            sock=full,
            open_timeout=CONNECT_TIMEOUT_SECONDS,
            close_timeout=CLOSE_TIMEOUT_SECONDS,
            ping_interval=None,
            max_size=None,  # the server's messages (thread histories) can be large
        )
    except TimeoutError as error:
        sock.close()
        raise ProxyError(
            f"{where} did not answer the WebSocket handshake within {CONNECT_TIMEOUT_SECONDS:g} s"
        ) from error
    except (InvalidHandshake, InvalidURI) as error:
        sock.close()
        raise ProxyError(f"{where} did not answer the WebSocket handshake: {error}") from error
    except OSError as error:
        sock.close()
        raise ProxyError(f"cannot connect to {where}: {error.strerror or error}") from error


class PendingRequests:
    """The ids of requests sent and not answered yet, so that stdin's end can wait for
    their answers: the real codex drops the connection at our close frame, answers in
    flight included."""

    def __init__(self) -> None:
        self._ids: set[str] = set()
        self._changed = threading.Condition()

    @staticmethod
    def _key(request_id: object) -> str:
        return json.dumps(request_id, sort_keys=True)

    def sent(self, message: str) -> None:
        value = json.loads(message)
        if isinstance(value, dict) and "id" in value and "method" in value:
            with self._changed:
                self._ids.add(self._key(value["id"]))

    def received(self, frame: str) -> None:
        try:
            value = json.loads(frame)
        except ValueError:
            return
        if isinstance(value, dict) and "id" in value and "method" not in value:
            with self._changed:
                self._ids.discard(self._key(value["id"]))
                self._changed.notify_all()

    def wait_answered(self, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: not self._ids, timeout)


def run_proxy(
    socket_path: Path,
    stdin_fd: int,
    stdout: BinaryIO,
    warn: Callable[[str], None],
) -> int:
    """Copy messages both ways until either side ends; the exit status.

    At stdin's end the proxy waits (up to DRAIN_TIMEOUT_SECONDS) for the answers to the
    requests it sent, writes them, then closes the connection and returns 0. The
    server closing the connection returns 0 too; the server dropping it without a close
    frame, 1. Lines that are not JSON are reported through `warn` and skipped."""
    from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

    websocket = connect(socket_path)
    pending = PendingRequests()
    closing = threading.Event()
    with websocket:
        pump = threading.Thread(
            target=_copy_stdin,
            args=(stdin_fd, websocket, warn, pending, closing),
            name="proxy-stdin",
            daemon=True,
        )
        pump.start()
        try:
            while True:
                frame = websocket.recv()
                if isinstance(frame, bytes):
                    warn("skipping a binary frame from the server (not a JSON message)")
                    continue
                stdout.write(line_from_frame(frame))
                stdout.flush()
                pending.received(frame)
        except ConnectionClosedOK:
            return 0
        except ConnectionClosed as error:
            if closing.is_set():
                return 0  # we closed: the real codex drops the connection in answer
            warn(f"connection to control socket {socket_path} lost: {error}")
            return 1


def _copy_stdin(
    stdin_fd: int,
    websocket: ClientConnection,
    warn: Callable[[str], None],
    pending: PendingRequests,
    closing: threading.Event,
) -> None:
    from websockets.exceptions import ConnectionClosed

    try:
        for number, line in enumerate(lines_from_fd(stdin_fd), start=1):
            try:
                message = message_from_line(line)
            except ValueError as error:
                warn(f"skipping stdin line {number}: not a JSON message ({error})")
                continue
            if message is not None:
                pending.sent(message)
                websocket.send(message)
    except ConnectionClosed:
        return  # the server went away; the reading side reports it
    except OSError as error:
        warn(f"cannot read stdin: {error.strerror or error}")
    if not pending.wait_answered(DRAIN_TIMEOUT_SECONDS):
        warn(f"stdin ended; closing with requests unanswered after {DRAIN_TIMEOUT_SECONDS:g} s")
    closing.set()
    websocket.close()
