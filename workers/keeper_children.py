"""What the keeper forks: the app-server (up to its exec) and the watchdog's probe.

Each starts as a fork of the keeper, so each first gives up what is the keeper's alone:
the lock's fds (only the keeper may hold `app-server.pid.lock`), its signal handlers and
its wakeup fd. Neither child ever returns into the keeper's loop.
"""

from __future__ import annotations

import os
import sys

from supervisor.prctl import set_parent_death_signal
from supervisor.worker_process import set_title

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
else:
    import _signal as signal  # as supervisor/signals.py explains

# Dispositions an app-server must start with: SIG_IGN survives exec (Python ignores
# SIGPIPE), handled signals are reset by the exec itself.
_CHILD_DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)


def close_fds(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def signal_process(pid: int, signum: int) -> None:
    """`kill`, when the process is still there to signal."""
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _drop_signal_handling(handled: tuple[int, ...]) -> None:
    signal.set_wakeup_fd(-1)
    for signum in handled:
        signal.signal(signum, signal.SIG_DFL)


def spawn_app_server(
    argv: list[str], env: dict[str, str], lock_fds: list[int], handled: tuple[int, ...]
) -> int:
    """Fork the app-server: in its own process group, SIGKILLed when the keeper dies,
    with default signal dispositions and stdin from /dev/null. Returns its pid."""
    keeper = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child, until its exec
        try:
            close_fds(lock_fds)
            os.setpgid(0, 0)
            set_parent_death_signal(signal.SIGKILL)
            if os.getppid() != keeper:  # the keeper died before the line above
                os._exit(1)
            _drop_signal_handling((*_CHILD_DEFAULT_SIGNALS, *handled))
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.execve(argv[0], argv, env)
        except BaseException as error:
            try:
                print(f"codexd keeper: cannot run {argv[0]}: {error}", file=sys.stderr, flush=True)
            except Exception:
                pass
            os._exit(127)
    return pid


class Probe:
    """One `initialize` handshake in flight, in a forked child, so a hung app-server never
    blocks the keeper: the child exits 0 and writes the version to a pipe when the
    app-server answers, 1 when not. The keeper reaps it like any child."""

    __slots__ = ("_pipe", "pid")

    def __init__(self, pid: int, pipe: int) -> None:
        self.pid = pid
        self._pipe: int | None = pipe

    @classmethod
    def start(
        cls,
        socket_path: str,
        timeout: float,
        title: str,
        lock_fds: list[int],
        handled: tuple[int, ...],
    ) -> Probe:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the probe child
            os.close(read_end)
            close_fds(lock_fds)
            set_title(title)
            _probe_and_report(socket_path, timeout, write_end, handled)
        os.close(write_end)
        return cls(pid, read_end)

    def version(self) -> str | None:
        """What the exited probe reported (None when nothing); reads it once."""
        if self._pipe is None:
            return None
        try:
            return os.read(self._pipe, 256).decode(errors="replace").strip() or None
        except OSError:
            return None
        finally:
            os.close(self._pipe)
            self._pipe = None

    def end(self) -> None:
        """Kill and reap a probe still in flight."""
        signal_process(self.pid, signal.SIGKILL)
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
        self.version()


def _probe_and_report(
    socket_path: str, timeout: float, report_fd: int, handled: tuple[int, ...]
) -> None:
    status = 1
    try:
        _drop_signal_handling(handled)
        from supervisor.control_socket import ProbeError, probe

        try:
            info = probe(socket_path, timeout=timeout)
        except ProbeError:
            pass
        else:
            os.write(report_fd, info.app_server_version.encode()[:200])
            status = 0
    finally:
        os._exit(status)
