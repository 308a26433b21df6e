"""Talking to a proxy process through its stdin/stdout pipes, with deadlines.

`LineReader` reads JSON lines (codexd's proxy); `RawWebSocketClient` speaks
WebSocket itself over the pipes, for the real codex's proxy, which copies bytes.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from typing import IO, Any

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

READ_TIMEOUT_SECONDS = 15.0


def read_some(stream: IO[bytes], deadline: float, what: str) -> bytes:
    """Whatever the pipe has (b"" at end-of-file), waiting until `deadline`."""
    remaining = deadline - time.monotonic()
    ready, _, _ = select.select([stream], [], [], max(remaining, 0))
    if not ready:
        raise AssertionError(f"timed out waiting for {what}")
    return os.read(stream.fileno(), 1 << 16)


class LineReader:
    """JSON messages from a pipe that carries one per line."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.buffer = b""

    def message(self, timeout: float = READ_TIMEOUT_SECONDS) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            chunk = read_some(self.stream, deadline, "a line from the proxy")
            if not chunk:
                raise AssertionError(f"end of output before a full line: {self.buffer!r}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        value = json.loads(line)
        assert isinstance(value, dict), line
        return value

    def response(self, request_id: int, timeout: float = READ_TIMEOUT_SECONDS) -> dict[str, Any]:
        """The answer to `request_id`, skipping notifications."""
        deadline = time.monotonic() + timeout
        while True:
            message = self.message(max(deadline - time.monotonic(), 0))
            if message.get("id") == request_id and "method" not in message:
                return message


class RawWebSocketClient:
    """A WebSocket client (websockets' sans-I/O protocol) over a process's pipes."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self.stdin = process.stdin
        self.stdout = process.stdout
        self.protocol = ClientProtocol(parse_uri("ws://localhost/"))
        self.protocol.send_request(self.protocol.connect())
        self.flush()
        self.texts: list[str] = []
        self.handshake: Response | None = None

    def flush(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self.stdin.write(data)
        self.stdin.flush()

    def pump(self, deadline: float, what: str) -> None:
        data = read_some(self.stdout, deadline, what)
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
        for event in self.protocol.events_received():
            if isinstance(event, Response):
                self.handshake = event
            elif isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                self.texts.append(bytes(event.data).decode())
        self.flush()  # pongs, close answers
        if not data and self.handshake is None:
            raise AssertionError(f"end of output before {what}")

    def wait_open(self, timeout: float = READ_TIMEOUT_SECONDS) -> Response:
        deadline = time.monotonic() + timeout
        while self.handshake is None:
            self.pump(deadline, "the WebSocket handshake response")
        return self.handshake

    def send(self, message: dict[str, Any]) -> None:
        self.protocol.send_text(json.dumps(message).encode())
        self.flush()

    def response(self, request_id: int, timeout: float = READ_TIMEOUT_SECONDS) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            while self.texts:
                message = json.loads(self.texts.pop(0))
                if message.get("id") == request_id and "method" not in message:
                    assert isinstance(message, dict)
                    return message
            self.pump(deadline, f"the response to request {request_id}")

    def close(self, timeout: float = READ_TIMEOUT_SECONDS) -> int:
        """Send a close frame, end stdin, and wait for the process: its exit status."""
        self.protocol.send_close()
        self.flush()
        self.process.communicate(timeout=timeout)  # closes stdin, drains the output
        return self.process.returncode
