"""Launch a worker (the keeper or the updater) as a detached, pid-locked process.

The calling process forks; the child enters python-daemon's `DaemonContext`
(double fork, setsid, umask 077, chdir /, other fds closed, stdout and stderr to
the worker's log) whose pidfile is the worker's `.pid.lock`. The detached
process writes the pid record and `execve`s the worker's command, keeping the
lock's fd open across the exec: one pid for the worker's whole life, and the
kernel drops the lock however it dies.

A pipe reports back to the caller: `ok <pid>` once the lock is held and the
record written, or `error <message>`; it is close-on-exec, so end-of-file after
`ok` means the exec happened.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import sys
import time
from pathlib import Path

from supervisor.errors import DaemonError
from supervisor.identity import current_boot_id, identity_of, start_ticks
from supervisor.lean import Value
from supervisor.locks import FlockLock
from supervisor.paths import lock_path_for
from supervisor.pidrecord import PidRecord, remove_record, write_record
from supervisor.statefile import StateFileError
from supervisor.worker_log import timestamp_now

LAUNCH_REPORT_TIMEOUT_SECONDS = 10.0
# Signals a worker must start with default dispositions: SIG_IGN survives exec, and
# Python ignores SIGPIPE.
_RESET_SIGNALS = (
    signal.SIGPIPE,
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGTSTP,
    signal.SIGTTIN,
    signal.SIGTTOU,
)


class WorkerSpec(Value):
    __slots__ = (
        "command",
        "env",
        "executable",
        "executable_digest",
        "log_path",
        "name",
        "record_path",
        "remote_control_enabled",
        "socket_path",
    )

    def __init__(
        self,
        name: str,  # "keeper" or "updater", for messages
        record_path: Path,
        log_path: Path,
        command: list[str],  # what the detached process executes: argv[0] is a path
        # The managed binary the worker runs, resolved (what runs even if `current`
        # moves later), and its content digest: what the updater compares releases by.
        executable: Path,
        executable_digest: str,
        env: dict[str, str],
        remote_control_enabled: bool | None = None,
        socket_path: str | None = None,
    ) -> None:
        self.name = name
        self.record_path = record_path
        self.log_path = log_path
        self.command = command
        self.executable = executable
        self.executable_digest = executable_digest
        self.env = env
        self.remote_control_enabled = remote_control_enabled
        self.socket_path = socket_path


def launch(
    spec: WorkerSpec, while_detaching: contextlib.AbstractContextManager[object] | None = None
) -> int:
    """Start the worker detached; return its pid once it holds its lock and its record
    is written. Raises DaemonError when the launch fails before the exec.

    `while_detaching` is held from the fork until the forked child has exited, which
    is when the detached process gets its new parent (the keeper, a child subreaper,
    must not be it)."""
    read_end, write_end = os.pipe()
    with while_detaching or contextlib.nullcontext():
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the forked child
            os.close(read_end)
            try:
                _become_worker(spec, write_end)  # returns only by raising
            except BaseException as error:
                _report(write_end, f"error cannot launch {spec.name}: {error}")
            os._exit(1)
        os.close(write_end)
        try:
            os.waitpid(child, 0)  # returns at once: DaemonContext's first fork exits
        except BaseException:
            os.close(read_end)
            raise
    try:
        report = _read_report(read_end, LAUNCH_REPORT_TIMEOUT_SECONDS)
    finally:
        os.close(read_end)
    if report.startswith("ok "):
        return int(report.split()[1])
    if report.startswith("error "):
        raise DaemonError(report.removeprefix("error "))
    raise DaemonError(f"{spec.name} exited while launching; see {spec.log_path}")


def _read_report(fd: int, timeout: float) -> str:
    """Everything written before end-of-file (or the deadline)."""
    deadline = time.monotonic() + timeout
    chunks = []
    while (remaining := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace").strip()


def _report(fd: int, message: str) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, (message.replace("\n", " ") + "\n").encode())


def _become_worker(spec: WorkerSpec, report_fd: int) -> None:  # pragma: no cover - child
    # Imported here: only the launching child needs python-daemon.
    import daemon

    # O_NOFOLLOW: a log swapped for a symlink must not make us append to another file.
    try:
        log_fd = os.open(
            spec.log_path,
            os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
            0o600,
        )
    except OSError as error:
        reason = "it is a symlink" if error.errno == errno.ELOOP else error.strerror
        raise DaemonError(f"cannot open log {spec.log_path}: {reason}") from error
    log = os.fdopen(log_fd, "ab", buffering=0)
    # An explicit /dev/null: left to itself, DaemonContext opens it after closing every
    # fd, gets fd 0 back close-on-exec, and the worker would start without stdin.
    devnull = open(os.devnull, "rb")  # noqa: SIM115 - must stay open until the exec
    lock = FlockLock(lock_path_for(spec.record_path), timeout=0)
    context = daemon.DaemonContext(
        detach_process=True,
        umask=0o077,
        working_directory="/",
        pidfile=lock,
        stdin=devnull,
        stdout=log,
        stderr=log,
        files_preserve=[report_fd],
        signal_map={},
    )
    try:
        context.open()
    except Exception as error:
        # Only the detached grandchild gets here (the forks before it exit inside
        # open()); its stderr is the log already.
        _report(report_fd, f"error cannot start {spec.name}: {error}")
        os._exit(1)
    _exec_worker(spec, lock, report_fd)


def _exec_worker(spec: WorkerSpec, lock: FlockLock, report_fd: int) -> None:  # pragma: no cover
    try:
        me = identity_of(os.getpid())
        assert me is not None
        record = PidRecord(
            pid=os.getpid(),
            process_start_time=me.start_time,
            start_ticks=start_ticks(os.getpid()),
            boot_id=current_boot_id(),
            executable=str(spec.executable),
            executable_digest=spec.executable_digest,
            remote_control_enabled=spec.remote_control_enabled,
            socket_path=spec.socket_path,
            session_id=os.getsid(0),
        )
        write_record(spec.record_path, record)
    except StateFileError as error:  # its message names the file already
        _report(report_fd, f"error {error}")
        os._exit(1)
    except Exception as error:
        _report(report_fd, f"error cannot write {spec.record_path}: {error}")
        os._exit(1)
    lock.inheritable_fd()
    # Reported while SIGPIPE is still ignored: a launching CLI that went away (a dropped
    # SSH session) must not kill the worker on the way to its exec.
    _report(report_fd, f"ok {record.pid}")
    print(
        f"{timestamp_now()} codexd: launching {spec.name} pid {record.pid}: "
        f"{' '.join(spec.command)}",
        file=sys.stderr,
        flush=True,
    )
    for signum in _RESET_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    try:
        os.execve(spec.command[0], spec.command, spec.env)
    except OSError as error:
        print(f"codexd: cannot execute {spec.command[0]}: {error}", file=sys.stderr, flush=True)
        remove_record(spec.record_path)
        os._exit(127)
