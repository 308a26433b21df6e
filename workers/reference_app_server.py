"""The reference app-server: serves the codex control-socket protocol in the foreground.

Detaching is the launcher's job; this process only binds the control socket, answers
clients until SIGTERM or SIGINT, and removes its socket on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import platform
import signal
import socket
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection, unix_serve
from websockets.exceptions import ConnectionClosed

from supervisor.control_socket import ProbeError, trusted_socket_target
from supervisor.descriptors import AcceptErrorLog, is_accept_exhaustion, raise_open_file_limit
from supervisor.paths import SOCKET_FILE_NAME, HomePaths, fits_sun_path, private_socket_dir
from supervisor.private_dir import (
    HOME,
    PRIVATE_SOCKET_DIR,
    SOCKET_DIR,
    PrivateDirError,
    ensure_private_dir,
)
from supervisor.version import CODEXD_VERSION

# Big enough for any request a client sends; a bigger frame closes that connection only.
MAX_FRAME_BYTES = 1024 * 1024
# Shutdown must finish within a second, even with clients that ignore the close frame.
CLOSE_TIMEOUT_SECONDS = 0.25
SHUTDOWN_TIMEOUT_SECONDS = 0.5
# Pending connections the kernel queues before connect() fails with EAGAIN: a burst of
# clients must not make a probe think nothing serves (asyncio's default is 100).
LISTEN_BACKLOG = 1024
# asyncio also uses its `backlog` as the number of accept() calls per loop turn, and when
# one fails for want of descriptors it goes on trying and schedules a retry for every
# failure (CPython 3.11 to 3.13): with 1024, a thousand failures a second, each logged.
# One per turn makes it one failure per retry, once a second; the kernel's queue is set
# to LISTEN_BACKLOG separately.
ACCEPT_BATCH = 1

INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602


class ServeError(Exception):
    """The app-server cannot serve; the message names the path concerned."""


@dataclass(frozen=True)
class BoundSocket:
    """A listening socket and the paths that lead to it."""

    sock: socket.socket
    bind_path: Path
    # The public path when it is a symlink to `bind_path`, else None.
    symlink_path: Path | None
    # Identity of the socket file we bound, so cleanup never removes a successor's.
    inode: tuple[int, int]


# --- protocol ---------------------------------------------------------------------------


def user_agent(client_name: str) -> str:
    return (
        f"{client_name}/{CODEXD_VERSION} "
        f"({platform.system()} {platform.release()}; {platform.machine()})"
    )


def platform_os() -> str:
    return "macos" if sys.platform == "darwin" else "linux"


def error_response(request_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"id": request_id, "error": {"code": code, "message": message}}


class Session:
    """One client connection's protocol state: messages in, messages out."""

    def __init__(self, home: Path, remote_control: bool) -> None:
        self.home = home
        self.remote_control = remote_control
        self.initialized = False

    def handle_frame(self, frame: str | bytes) -> list[dict[str, Any]]:
        """The messages to send back for one incoming frame (often none)."""
        if not isinstance(frame, str):
            return []
        try:
            message = json.loads(frame)
        except (ValueError, RecursionError):
            # RecursionError: valid JSON nested deeper than the parser goes.
            return []
        if not isinstance(message, dict):
            return []
        if "id" not in message:
            # Notifications (`initialized`, ...) need no answer.
            return []
        request_id = message["id"]
        method = message.get("method")
        if method is None:
            # A response to a request of ours; we send none.
            return []
        if not isinstance(method, str):
            return [error_response(request_id, INVALID_REQUEST, "Invalid request: bad method")]
        if method == "initialize":
            return self.initialize(request_id, message.get("params"))
        if not self.initialized:
            return [error_response(request_id, INVALID_REQUEST, "Not initialized")]
        return [error_response(request_id, METHOD_NOT_FOUND, f"Method not found: {method}")]

    def initialize(self, request_id: Any, params: Any) -> list[dict[str, Any]]:
        if self.initialized:
            return [error_response(request_id, INVALID_REQUEST, "Already initialized")]
        client_info = params.get("clientInfo") if isinstance(params, dict) else None
        name = client_info.get("name") if isinstance(client_info, dict) else None
        if not isinstance(name, str):
            return [
                error_response(
                    request_id, INVALID_PARAMS, "Invalid params: clientInfo.name is required"
                )
            ]
        self.initialized = True
        result = {
            "userAgent": user_agent(name),
            "codexHome": str(self.home),
            "platformFamily": "unix",
            "platformOs": platform_os(),
        }
        status = {
            "status": "enabled" if self.remote_control else "disabled",
            "serverName": socket.gethostname(),
            "environmentId": None,
        }
        return [
            {"id": request_id, "result": result},
            {"method": "remoteControl/status/changed", "params": status},
        ]


# --- the socket on disk ----------------------------------------------------------------


def something_answers(path: Path) -> bool:
    """Whether a process accepts connections on the Unix socket at `path`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe_sock:
        probe_sock.settimeout(1.0)
        try:
            probe_sock.connect(os.fspath(path))
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
            return False
        except TimeoutError:
            # A full backlog: alive but busy.
            return True
        except OSError as exc:
            if exc.errno in (errno.ENOTSOCK, errno.ECONNREFUSED, errno.ENOENT):
                return False
            raise ServeError(f"control socket {path}: {exc.strerror}") from exc
    return True


def remove_stale_socket(path: Path) -> None:
    """Unlink a socket (or a symlink to one) that nobody listens on; leave nothing else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not (stat.S_ISSOCK(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        raise ServeError(f"control socket {path} is not a socket; refusing to replace it")
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def bind_control_socket(home: Path, uid: int, runtime_dir: str | None) -> BoundSocket:
    """Bind the control socket at its public path, or, when that path is too long for
    sun_path, in a private directory with the public path a symlink to it."""
    public_path = HomePaths(home).socket_path
    try:
        ensure_private_dir(home, HOME)
        ensure_private_dir(public_path.parent, SOCKET_DIR)
        if fits_sun_path(public_path):
            bind_path, symlink_path = public_path, None
        else:
            private_dir = private_socket_dir(public_path, uid, runtime_dir)
            # The per-user parent is checked too: whoever owns it could rename our directory.
            ensure_private_dir(private_dir.parent, PRIVATE_SOCKET_DIR)
            ensure_private_dir(private_dir, PRIVATE_SOCKET_DIR)
            bind_path, symlink_path = private_dir / SOCKET_FILE_NAME, public_path
    except PrivateDirError as exc:
        raise ServeError(str(exc)) from exc

    # Clients connect through the public path: anything answering there, or at our bind
    # path, is another app-server we must not take the socket from. A public path that
    # leads somewhere no client would follow is only a stale link, replaced below.
    in_use = [bind_path]
    with contextlib.suppress(ProbeError):
        in_use.insert(0, Path(trusted_socket_target(public_path)))
    for path in dict.fromkeys(in_use):
        if fits_sun_path(path) and something_answers(path):
            raise ServeError(f"control socket {public_path} is already in use")
    remove_stale_socket(bind_path)

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # The socket file is created by bind(): a umask is the only race-free way to 0600.
        with umask(0o177):
            sock.bind(os.fspath(bind_path))
        st = os.lstat(bind_path)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ServeError(f"control socket {public_path} is already in use") from exc
        # "AF_UNIX path too long" and the like carry no strerror.
        raise ServeError(f"control socket {bind_path}: {exc.strerror or exc}") from exc
    if symlink_path is not None:
        try:
            replace_with_symlink(symlink_path, bind_path)
        except OSError as exc:
            sock.close()
            with contextlib.suppress(OSError):
                bind_path.unlink()
            raise ServeError(
                f"control socket {symlink_path}: cannot link it to {bind_path}: {exc.strerror}"
            ) from exc
    return BoundSocket(sock, bind_path, symlink_path, (st.st_dev, st.st_ino))


def replace_with_symlink(link: Path, target: Path) -> None:
    """Point `link` at `target`; a rename so clients never see the link missing."""
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(target, tmp)
    try:
        os.replace(tmp, link)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def remove_control_socket(bound: BoundSocket) -> None:
    """Remove our socket file and the symlink to it, unless a successor replaced them,
    and the private directory we bound in once it is empty."""
    with contextlib.suppress(OSError):
        st = os.lstat(bound.bind_path)
        if (st.st_dev, st.st_ino) == bound.inode:
            bound.bind_path.unlink()
    if bound.symlink_path is not None:
        with contextlib.suppress(OSError):
            if os.readlink(bound.symlink_path) == os.fspath(bound.bind_path):
                bound.symlink_path.unlink()
        with contextlib.suppress(OSError):
            bound.bind_path.parent.rmdir()  # fails while anything is left in it


# --- serving ---------------------------------------------------------------------------


async def handle_connection(websocket: ServerConnection, home: Path, remote_control: bool) -> None:
    session = Session(home, remote_control)
    try:
        async for frame in websocket:
            for reply in session.handle_frame(frame):
                # Compact, as codex itself sends it.
                await websocket.send(json.dumps(reply, separators=(",", ":")))
    except ConnectionClosed:
        # An oversized frame or a vanished client ends this connection, not the server.
        pass


def log_accept_failures_once_per_interval(
    loop: asyncio.AbstractEventLoop, stopping: asyncio.Event
) -> None:
    """Failed accepts (out of descriptors) as one line per interval with a count; every
    other exception the loop reports goes to its default handler."""
    failures = AcceptErrorLog()

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if stopping.is_set() and "_start_serving" in repr(context.get("handle")):
            return  # an accept retry asyncio left pending, firing on the closed socket
        if not is_accept_exhaustion(context):
            loop.default_exception_handler(context)
            return
        line = failures.note(context["exception"], loop.time())
        if line is not None:
            print(f"codexd app-server: {line}", file=sys.stderr, flush=True)

    loop.set_exception_handler(handle)


async def serve_until_signalled(home: Path, remote_control: bool) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    log_accept_failures_once_per_interval(loop, stop)
    # Handlers only take note; the shutdown runs below, in the loop.
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    try:
        bound = bind_control_socket(home, os.getuid(), os.environ.get("XDG_RUNTIME_DIR"))
    except ServeError as exc:
        print(f"codexd app-server: {exc}", file=sys.stderr, flush=True)
        return 1

    try:

        async def handler(websocket: ServerConnection) -> None:
            await handle_connection(websocket, home, remote_control)

        server = await unix_serve(
            handler,
            sock=bound.sock,
            max_size=MAX_FRAME_BYTES,
            close_timeout=CLOSE_TIMEOUT_SECONDS,
            backlog=ACCEPT_BATCH,
        )
        bound.sock.listen(LISTEN_BACKLOG)
        public_path = HomePaths(home).socket_path
        where = f"{public_path} -> {bound.bind_path}" if bound.symlink_path else str(public_path)
        state = "enabled" if remote_control else "disabled"
        print(
            f"codexd app-server listening on {where} (remote control {state})",
            file=sys.stderr,
            flush=True,
        )
        await stop.wait()
        # The socket goes first: a client arriving now is told at once nothing serves.
        remove_control_socket(bound)
        server.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(server.wait_closed(), SHUTDOWN_TIMEOUT_SECONDS)
    finally:
        remove_control_socket(bound)
        bound.sock.close()
    print("codexd app-server stopped", file=sys.stderr, flush=True)
    return 0


def serve(home: Path, remote_control: bool) -> int:
    """Serve the control socket for `home` until SIGTERM or SIGINT; the exit status."""
    before, after = raise_open_file_limit()
    if after != before:
        print(
            f"codexd app-server: open file limit raised from {before} to {after}",
            file=sys.stderr,
            flush=True,
        )
    return asyncio.run(serve_until_signalled(home, remote_control))
