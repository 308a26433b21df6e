"""The client side of the codex control-socket protocol.

The control socket carries WebSocket over a Unix socket; each text frame holds one
JSON-RPC 2.0 message without the `"jsonrpc"` member. A probe is the handshake every
codex client does first: `initialize`, its response, then the `initialized`
notification.
"""

from __future__ import annotations

import _socket  # not `socket`, whose import (enum conversions of every constant) is slow
import errno
import os
import stat
import struct
import time

from supervisor import fastjson
from supervisor.lean import Choice, Value
from supervisor.paths import fits_sun_path
from supervisor.private_dir import (
    PRIVATE_SOCKET_DIR,
    SOCKET_DIR_PARENT,
    PrivateDirError,
    check_private_dir,
    describe_owner,
    describe_uid,
)
from supervisor.version import CLIENT_NAME, CODEXD_VERSION
from supervisor.websocket_client import (
    OP_TEXT,
    ConnectionClosedError,
    FrameTooBigError,
    HandshakeError,
    WebSocketClient,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    StrPath = str | os.PathLike[str]

INITIALIZE_REQUEST_ID = 1

# The handshake's answer is small; a bigger frame means we are not talking to an
# app-server.
PROBE_MAX_FRAME_BYTES = 1024 * 1024
_PEERCRED_FORMAT = "3i"  # struct ucred: pid, uid, gid
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class Unreachable(Choice):
    """Why no app-server of ours answered on the control socket."""

    NOT_LISTENING = "notListening"  # no socket file, or nobody accepts on it
    UNTRUSTED = "untrusted"  # a directory or a peer that is not ours: never talked to
    DENIED = "denied"  # connect() was not permitted
    NO_ANSWER = "noAnswer"  # accepted (or queued) but no answer in time
    BAD_ANSWER = "badAnswer"  # answered, but not as an app-server does
    OUT_OF_RESOURCES = "outOfResources"  # this process could not make the connection
    FAILED = "failed"  # anything else


class ProbeError(Exception):
    """The control socket did not answer the `initialize` handshake; `reason` says
    what was seen."""

    def __init__(self, message: str, reason: Unreachable = Unreachable.FAILED) -> None:
        super().__init__(message)
        self.reason = reason
        # Who accepted the connection, when one did: `version` says what it is doing.
        self.peer: PeerCredentials | None = None

    def reached_listener(self) -> bool:
        """A process listens on the socket (the kernel named it, or it accepted and
        never answered), though no app-server answered."""
        return self.peer is not None or self.reason is Unreachable.NO_ANSWER


class PeerCredentials(Value):
    """Who listens on the socket, as the kernel saw it (SO_PEERCRED)."""

    __slots__ = ("gid", "pid", "uid")

    def __init__(self, pid: int, uid: int, gid: int) -> None:
        self.pid = pid
        self.uid = uid
        self.gid = gid


class ProbeInfo(Value):
    __slots__ = ("app_server_version", "peer", "user_agent")

    def __init__(
        self, app_server_version: str, user_agent: str, peer: PeerCredentials | None = None
    ) -> None:
        self.app_server_version = app_server_version
        self.user_agent = user_agent
        # None where the platform cannot tell (no SO_PEERCRED).
        self.peer = peer


def trusted_socket_target(socket_path: StrPath) -> str:
    """The path to connect() to for the control socket's public path.

    A symlink (a socket path too long for sun_path) is followed only into a directory
    of ours with mode 0700 (our /tmp/codexd-<uid>/<tag>, codex's /tmp/codex-daemon-<uid>)
    whose parent nobody else may rename things in (ours, or root's and sticky like
    /tmp): after an unclean end the link outlives its directory, and whoever recreates
    that directory under /tmp would otherwise receive our clients. ProbeError names
    the directory otherwise."""
    socket_path = os.fspath(socket_path)
    where = f"control socket {socket_path}"
    try:
        if not stat.S_ISLNK(os.lstat(socket_path).st_mode):
            return socket_path
        # os.path.join: a relative link is relative to its directory; an absolute one wins.
        target = os.path.join(os.path.dirname(socket_path), os.readlink(socket_path))
    except FileNotFoundError as error:
        raise ProbeError(f"{where}: no such file", Unreachable.NOT_LISTENING) from error
    except OSError as error:
        raise _connect_error(where, error, 0) from error
    where += f" (-> {target})"
    try:
        private = os.path.dirname(target)
        for directory, rule in (
            (os.path.dirname(private), SOCKET_DIR_PARENT),
            (private, PRIVATE_SOCKET_DIR),
        ):
            if not check_private_dir(directory, rule):
                raise ProbeError(f"{where}: no such file", Unreachable.NOT_LISTENING)
        if stat.S_ISLNK(os.lstat(target).st_mode):
            raise ProbeError(
                f"{where}: the target is a symlink; not following it", Unreachable.UNTRUSTED
            )
    except PrivateDirError as error:
        raise ProbeError(f"{where}: {error}", Unreachable.UNTRUSTED) from error
    except FileNotFoundError as error:
        raise ProbeError(f"{where}: no such file", Unreachable.NOT_LISTENING) from error
    except OSError as error:
        raise _connect_error(where, error, 0) from error
    return target


def peer_credentials(sock: _socket.socket) -> PeerCredentials | None:
    """The pid, uid and gid of the process that listens at the other end."""
    option = getattr(_socket, "SO_PEERCRED", None)
    if option is None:
        return None
    pid, uid, gid = struct.unpack(
        _PEERCRED_FORMAT,
        sock.getsockopt(_socket.SOL_SOCKET, option, struct.calcsize(_PEERCRED_FORMAT)),
    )
    return PeerCredentials(pid, uid, gid)


def _connect_error(
    where: str, error: OSError, timeout: float, target: str | None = None
) -> ProbeError:
    if isinstance(error, FileNotFoundError):
        return ProbeError(f"{where}: no such file", Unreachable.NOT_LISTENING)
    if isinstance(error, ConnectionRefusedError):
        return ProbeError(
            f"{where}: connection refused (nothing is listening)", Unreachable.NOT_LISTENING
        )
    if isinstance(error, TimeoutError):
        return ProbeError(f"{where}: timed out after {timeout:g} s", Unreachable.NO_ANSWER)
    if error.errno in (errno.EACCES, errno.EPERM):
        owner = "" if target is None else f" ({describe_owner(target)})"
        return ProbeError(f"{where}: permission denied{owner}", Unreachable.DENIED)
    if error.errno == errno.EAGAIN:
        # A Unix socket's listen backlog is full: something listens, and is swamped.
        return ProbeError(
            f"{where}: the listen backlog is full (the server is not accepting)",
            Unreachable.NO_ANSWER,
        )
    if error.errno in _OUT_OF_RESOURCES:
        return ProbeError(
            f"{where}: cannot connect: {error.strerror} (this process)",
            Unreachable.OUT_OF_RESOURCES,
        )
    return ProbeError(f"{where}: {error.strerror or error}", Unreachable.FAILED)


def connect_control_socket(
    socket_path: StrPath, deadline: float
) -> tuple[_socket.socket, PeerCredentials | None]:
    """A connected socket to the control socket and who listens on it, once both the
    path (`trusted_socket_target`) and the listener (its uid, from SO_PEERCRED) are
    ours. ProbeError, naming the socket and what was seen, otherwise."""
    target = trusted_socket_target(socket_path)
    where = f"control socket {socket_path}"
    if target != os.fspath(socket_path):
        where += f" (-> {target})"
    if not fits_sun_path(target):
        # Too long to connect to, and no symlink to a short path: nothing serves it.
        raise ProbeError(f"{where}: no such file", Unreachable.NOT_LISTENING)
    timeout = max(deadline - time.monotonic(), 0.0)
    try:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    except OSError as error:
        raise _connect_error(where, error, timeout) from error
    try:
        sock.settimeout(timeout)
        sock.connect(target)
        peer = peer_credentials(sock)
    except OSError as error:
        sock.close()
        raise _connect_error(where, error, timeout, target) from error
    if peer is not None and peer.uid != os.geteuid():
        sock.close()
        refused = ProbeError(
            f"{where}: the listener (pid {peer.pid}) runs as {describe_uid(peer.uid)}, not "
            f"as you ({describe_uid(os.geteuid())}); not talking to it",
            Unreachable.UNTRUSTED,
        )
        refused.peer = peer  # status and doctor name the listener
        raise refused
    return sock, peer


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
        message = fastjson.loads(frame)
    except (ValueError, RecursionError):
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


def _probe_info(where: str, response: dict[str, Any], peer: PeerCredentials | None) -> ProbeInfo:
    if "error" in response:
        error = response["error"]
        detail = error.get("message") if isinstance(error, dict) else error
        raise ProbeError(f"{where}: initialize failed: {detail}", Unreachable.BAD_ANSWER)
    result = response["result"]
    user_agent = result.get("userAgent") if isinstance(result, dict) else None
    if not isinstance(user_agent, str):
        raise ProbeError(
            f"{where}: bad response: initialize result has no userAgent", Unreachable.BAD_ANSWER
        )
    try:
        version = parse_version_from_user_agent(user_agent)
    except ValueError as exc:
        raise ProbeError(f"{where}: bad response: {exc}", Unreachable.BAD_ANSWER) from exc
    return ProbeInfo(app_server_version=version, user_agent=user_agent, peer=peer)


def probe(socket_path: StrPath, timeout: float = 2.0) -> ProbeInfo:
    """Do the `initialize` handshake on the control socket, all within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    sock, peer = connect_control_socket(socket_path, deadline)
    try:
        return _initialize(sock, peer, f"control socket {socket_path}", deadline, timeout)
    except ProbeError as error:
        error.peer = peer
        raise


def _initialize(
    sock: _socket.socket,
    peer: PeerCredentials | None,
    where: str,
    deadline: float,
    timeout: float,
) -> ProbeInfo:
    try:
        client = WebSocketClient(sock, deadline, PROBE_MAX_FRAME_BYTES)
        try:
            client.send_text(fastjson.dumps(initialize_request()))
            while True:
                opcode, payload = client.receive()
                if opcode != OP_TEXT:
                    continue
                response = _initialize_response(payload.decode("utf-8", "replace"))
                if response is not None:
                    break
            info = _probe_info(where, response, peer)
            client.send_text(fastjson.dumps({"method": "initialized"}))
        finally:
            client.close()
        return info
    except ProbeError:
        raise
    except TimeoutError as exc:
        raise ProbeError(
            f"{where}: timed out after {timeout:g} s waiting for the initialize answer",
            Unreachable.NO_ANSWER,
        ) from exc
    except ConnectionClosedError as exc:
        # What a server on its way out does (SIGTERM closes every connection).
        raise ProbeError(
            f"{where}: connection closed before initialize answered", Unreachable.NOT_LISTENING
        ) from exc
    except (HandshakeError, FrameTooBigError) as exc:
        raise ProbeError(f"{where}: bad response: {exc}", Unreachable.BAD_ANSWER) from exc
    except OSError as exc:
        raise _connect_error(where, exc, timeout) from exc


def unreachable_message(error: ProbeError, listener_state: str | None) -> str:
    """What `version` says when no app-server of ours answered: what was seen, not
    only "not running". `listener_state` is what the process that accepted the
    connection is doing (identity.process_state of `error.peer`), when one did."""
    listener = ""
    if error.peer is not None and error.peer.pid > 0:  # 0: outside our pid namespace
        listener = f" (pid {error.peer.pid}" + (f", {listener_state})" if listener_state else ")")
    if error.reason is Unreachable.NO_ANSWER:
        if listener_state is not None and listener_state.startswith("stopped"):
            return (
                f"app server{listener} is stopped and cannot answer: {error}; "
                "continue it (kill -CONT) or restart it"
            )
        return (
            f"app server{listener} is not answering: {error}; it may be overloaded or out "
            "of file descriptors (see its log)"
        )
    if error.reason is Unreachable.DENIED:
        return f"app server is not reachable: {error}"
    if error.reason is Unreachable.OUT_OF_RESOURCES:
        return f"cannot reach the app server: {error}"
    # Nothing listening, nothing of ours, or something that is no app-server (or one
    # shutting down, which answers a handshake with 503): none of it is running for us.
    return f"app server is not running: {error}"
