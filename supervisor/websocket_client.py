"""A minimal blocking WebSocket client (RFC 6455) over a Unix socket, for the probe.

Written by hand on purpose: every lifecycle command probes the control socket, and
importing the `websockets` client costs more than the whole rest of such a command
(about 100 ms against a few). The probe needs only the opening handshake, masked
text frames out, unfragmented or fragmented text frames in, ping/pong and close;
the proxy and the app-server keep using `websockets`.
"""

from __future__ import annotations

import binascii
import os
import struct
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HEADER_BYTES = 16 * 1024

OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class HandshakeError(Exception):
    """The peer did not accept the WebSocket upgrade."""


class ConnectionClosedError(Exception):
    """The peer closed the connection."""


class FrameTooBigError(Exception):
    """A frame larger than the client accepts."""


def accept_key(key: bytes) -> bytes:
    # CPython's builtin SHA-1: hashlib would load OpenSSL, several ms per probe.
    from _sha1 import sha1  # type: ignore[import-not-found]

    digest: bytes = sha1(key + _GUID).digest()
    return binascii.b2a_base64(digest, newline=False)


def encode_frame(opcode: int, payload: bytes, mask: bytes) -> bytes:
    """One final, masked frame (clients must mask)."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    repeated = (mask * (length // 4 + 1))[:length]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        length, "big"
    )
    return header + mask + masked


class WebSocketClient:
    """One connection; every call honours the absolute `deadline` (time.monotonic())."""

    def __init__(self, sock: _socket.socket, deadline: float, max_frame_bytes: int) -> None:
        """Take over `sock`, connected already (the caller checks who it reaches)."""
        self.deadline = deadline
        self.max_frame_bytes = max_frame_bytes
        self.buffer = b""
        self.sock = sock
        try:
            self._handshake()
        except BaseException:
            self.sock.close()
            raise

    def _settimeout(self) -> None:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self.sock.settimeout(remaining)

    def _recv(self) -> bytes:
        self._settimeout()
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionClosedError("the peer closed the connection")
        return chunk

    def _read_exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            self.buffer += self._recv()
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def _handshake(self) -> None:
        # binascii, not base64: `import base64` imports `re`, slow for every command.
        key = binascii.b2a_base64(os.urandom(16), newline=False)
        self.sock.sendall(
            b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        while b"\r\n\r\n" not in self.buffer:
            if len(self.buffer) > _MAX_HEADER_BYTES:
                raise HandshakeError("the upgrade response headers are too long")
            self.buffer += self._recv()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status, *lines = head.decode("latin-1").split("\r\n")
        parts = status.split(" ", 2)
        if len(parts) < 2 or parts[1] != "101":
            raise HandshakeError(f"the server answered {status!r} instead of switching protocols")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("sec-websocket-accept", "").encode() != accept_key(key):
            raise HandshakeError("the server's Sec-WebSocket-Accept does not match")

    def send_text(self, text: str) -> None:
        self._send(OP_TEXT, text.encode())

    def _send(self, opcode: int, payload: bytes) -> None:
        self._settimeout()
        self.sock.sendall(encode_frame(opcode, payload, os.urandom(4)))

    def receive(self) -> tuple[int, bytes]:
        """The next whole message (text or binary), answering pings on the way."""
        message_opcode: int | None = None
        fragments: list[bytes] = []
        while True:
            first, second = self._read_exactly(2)
            fin, opcode = first & 0x80, first & 0x0F
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", self._read_exactly(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", self._read_exactly(8))
            mask = self._read_exactly(4) if second & 0x80 else b""
            if length > self.max_frame_bytes:
                raise FrameTooBigError(f"a {length}-byte frame is over the limit")
            payload = self._read_exactly(length)
            if mask:
                repeated = (mask * (length // 4 + 1))[:length]
                payload = bytes(a ^ b for a, b in zip(payload, repeated, strict=True))
            if opcode == OP_CLOSE:
                raise ConnectionClosedError("the peer sent a close frame")
            if opcode == OP_PING:
                self._send(OP_PONG, payload)
                continue
            if opcode == OP_PONG:
                continue
            if opcode != OP_CONTINUATION:
                message_opcode = opcode
            fragments.append(payload)
            if sum(map(len, fragments)) > self.max_frame_bytes:
                raise FrameTooBigError("a message is over the limit")
            if fin and message_opcode is not None:
                return message_opcode, b"".join(fragments)

    def close(self) -> None:
        """The closing handshake: send a close frame (1000), wait (within the deadline)
        for the peer's, then drop the connection. Leaving before the peer's close frame
        would make some servers discard what we sent last."""
        try:
            self._send(OP_CLOSE, struct.pack("!H", 1000))
            while True:
                self.receive()
        except (OSError, TimeoutError, ConnectionClosedError, FrameTooBigError):
            pass
        finally:
            self.sock.close()
