"""The client side of the codex control-socket protocol.

The control socket carries WebSocket over a Unix socket; each text frame holds one
JSON-RPC 2.0 message without the `"jsonrpc"` member. A probe is the handshake every
codex client does first: `initialize`, its response, then the `initialized`
notification.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.paths import connectable_socket_path, fits_sun_path
from supervisor.version import CLIENT_NAME, CODEXD_VERSION
from supervisor.websocket_client import (
    OP_TEXT,
    ConnectionClosedError,
    FrameTooBigError,
    HandshakeError,
    WebSocketClient,
)

INITIALIZE_REQUEST_ID = 1

# The handshake's answer is small; a bigger frame means we are not talking to an
# app-server.
PROBE_MAX_FRAME_BYTES = 1024 * 1024


class ProbeError(Exception):
    """The control socket did not answer the `initialize` handshake."""


@dataclass(frozen=True)
class ProbeInfo:
    app_server_version: str
    user_agent: str


def parse_version_from_user_agent(user_agent: str) -> str:
    """The server version in a user agent: `name/1.2.3 (Linux 6.8.0; x86_64) ...` -> `1.2.3`."""
    _, slash, rest = user_agent.partition("/")
    if not slash:
        raise ValueError(f"user agent {user_agent!r} has no '/'")
    words = rest.split(None, 1)
    if not words or rest[0].isspace():
        raise ValueError(f"user agent {user_agent!r} has no version after '/'")
    return words[0]


def initialize_request() -> dict[str, Any]:
    return {
        "id": INITIALIZE_REQUEST_ID,
        "method": "initialize",
        "params": {
            "clientInfo": {"name": CLIENT_NAME, "title": CLIENT_NAME, "version": CODEXD_VERSION}
        },
    }


def _initialize_response(frame: str | bytes) -> dict[str, Any] | None:
    """The frame's message if it answers our `initialize`; None for anything to skip
    (notifications, server requests, binary or non-JSON frames)."""
    if not isinstance(frame, str):
        return None
    try:
        message = json.loads(frame)
    except ValueError:
        return None
    if not isinstance(message, dict):
        return None
    request_id = message.get("id")
    # `type is int` because True == 1 in Python.
    if type(request_id) is not int or request_id != INITIALIZE_REQUEST_ID:
        return None
    if "result" not in message and "error" not in message:
        return None
    return message


def _probe_info(where: str, response: dict[str, Any]) -> ProbeInfo:
    if "error" in response:
        error = response["error"]
        detail = error.get("message") if isinstance(error, dict) else error
        raise ProbeError(f"{where}: initialize failed: {detail}")
    result = response["result"]
    user_agent = result.get("userAgent") if isinstance(result, dict) else None
    if not isinstance(user_agent, str):
        raise ProbeError(f"{where}: bad response: initialize result has no userAgent")
    try:
        version = parse_version_from_user_agent(user_agent)
    except ValueError as exc:
        raise ProbeError(f"{where}: bad response: {exc}") from exc
    return ProbeInfo(app_server_version=version, user_agent=user_agent)


def probe(socket_path: Path, timeout: float = 2.0) -> ProbeInfo:
    """Do the `initialize` handshake on the control socket, all within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    target = connectable_socket_path(socket_path)
    where = f"control socket {socket_path}"
    if target != socket_path:
        where += f" (-> {target})"
    if not fits_sun_path(target):
        # Too long to connect to, and no symlink to a short path: nothing serves it.
        raise ProbeError(f"{where}: no such file")
    try:
        client = WebSocketClient(str(target), deadline, PROBE_MAX_FRAME_BYTES)
        try:
            client.send_text(json.dumps(initialize_request()))
            while True:
                opcode, payload = client.receive()
                if opcode != OP_TEXT:
                    continue
                response = _initialize_response(payload.decode("utf-8", "replace"))
                if response is not None:
                    break
            info = _probe_info(where, response)
            client.send_text(json.dumps({"method": "initialized"}))
        finally:
            client.close()
        return info
    except ProbeError:
        raise
    except FileNotFoundError as exc:
        raise ProbeError(f"{where}: no such file") from exc
    except ConnectionRefusedError as exc:
        raise ProbeError(f"{where}: connection refused (nothing is listening)") from exc
    except TimeoutError as exc:
        raise ProbeError(f"{where}: timed out after {timeout:g} s") from exc
    except ConnectionClosedError as exc:
        raise ProbeError(f"{where}: connection closed before initialize answered") from exc
    except (HandshakeError, FrameTooBigError) as exc:
        raise ProbeError(f"{where}: bad response: {exc}") from exc
    except OSError as exc:
        raise ProbeError(f"{where}: {exc.strerror or exc}") from exc
