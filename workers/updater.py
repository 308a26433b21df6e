"""The updater loop (`codexd app-server daemon pid-update-loop`).

Launched detached like the keeper. Each pass runs the installer, then compares
the managed binary's content digest with the images the keeper (and its app-server)
and the updater run: a keeper behind is restarted onto the managed binary under
daemon.lock, and only once that succeeded (or none runs) does the updater `execve`
the managed binary itself, keeping its pid and its lock. Between passes it relaunches
a keeper that died without being asked, as the keeper does for it.

It stays resident, so its loop imports little (tests/test_resident_imports.py holds it
to that): a pass runs in a forked child (workers/updater_pass.py), whose imports (the
lifecycle, the installer's subprocess, json, pathlib: 5 MB) end with it. The child
holds daemon.lock for the pass; when the updater is to re-execute, it hands that over
by waiting until the updater's exec closes their pipe.
"""

from __future__ import annotations

import os
import select
import time

from supervisor import config, fastjson
from supervisor.decisions import WorkerState
from supervisor.errors import DaemonError
from supervisor.faults import report_modules
from supervisor.identity import ProcessIdentity, identity_of
from supervisor.lean import Value
from supervisor.paths import WorkerPaths, lock_path_for
from supervisor.pidrecord import read_record, remove_record, write_record
from supervisor.process_handle import ProcessHandle
from supervisor.procfs import open_fds_of
from supervisor.signals import SignalInbox, signal_name
from supervisor.state_read import StateFileError, read_json_object
from supervisor.supervision import peer_note, should_relaunch_peer
from supervisor.worker_log import any_log_needs_rotation
from supervisor.worker_log import log as log_line
from supervisor.worker_process import child_environment, keep_lock_across_exec, set_title
from supervisor.worker_state import observe_worker

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal

    from supervisor.lifecycle import Daemon
    from supervisor.locks import FlockLock
else:
    import _signal as signal  # as supervisor/signals.py explains

# Set on the re-exec'd updater: it resumes the schedule instead of starting over, and
# with RESUMED_PASS_ASKED runs the pass a SIGUSR1 asked for during the last one first.
RESUMED_ENV = "CODEXD_UPDATER_RESUMED"
RESUMED, RESUMED_PASS_ASKED = "1", "pass-asked"
# Ends the updater; USR1 runs a pass now, USR2 logs its state; the rest are noted and
# ignored.
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGQUIT})
HANDLED_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGHUP,
    signal.SIGTSTP,
    signal.SIGTTIN,
    signal.SIGTTOU,
)
# What starts a pass (update_pass.Trigger's values).
SCHEDULE, ASKED, RETRY = "schedule", "signal", "retry"
# The pass child's exit status when SIGTERM (from the updater) ended it.
PASS_STOPPED_STATUS = 3
# Without a pidfd, the wait for a pass child polls this often.
PASS_POLL_SECONDS = 0.05


class Stopping(Exception):
    """SIGTERM or SIGINT arrived: unwind and exit."""


class PendingRestart(Value):
    """A restart onto `digest` that waits for the app-server to be idle."""

    __slots__ = ("digest", "retry_due", "since", "since_text")

    def __init__(self, digest: str, since: float, since_text: str, retry_due: float) -> None:
        self.digest = digest
        self.since = since  # monotonic (one clock for the updater and its pass child)
        self.since_text = since_text  # the same moment, ISO 8601, for the pass record
        self.retry_due = retry_due  # monotonic

    def to_json(self) -> list[object]:
        return [self.digest, self.since, self.since_text, self.retry_due]

    @classmethod
    def from_json(cls, value: object) -> PendingRestart | None:
        if not isinstance(value, list) or len(value) != 4:
            return None
        digest, since, since_text, retry_due = value
        return cls(str(digest), float(since), str(since_text), float(retry_due))


def log(message: str, pid: int | None = None) -> None:
    log_line("updater", message, pid)


class Updater:
    def __init__(self, paths: WorkerPaths) -> None:
        self.paths = paths
        self.pid = os.getpid()
        self.inbox = SignalInbox(HANDLED_SIGNALS)
        self.initial_delay, self.interval = config.update_schedule()
        self.install_timeout = config.install_timeout_seconds()
        self.log_settings = config.log_settings()
        self.keeper_seen: WorkerState | None = None  # as the last health check saw it
        self.max_defer = config.seconds_from_env(
            config.UPDATE_MAX_DEFER_ENV, config.UPDATE_MAX_DEFER_SECONDS
        )
        self.deferred: PendingRestart | None = None  # a restart waiting for a busy app-server
        self.pass_asked = False  # SIGUSR1 came while a pass ran
        self.next_pass_due = time.monotonic()
        # Between passes it wakes this often to heal the keeper and bound the logs.
        self.check_interval = max(
            config.seconds_from_env(config.WATCHDOG_ENV, config.WATCHDOG_SECONDS), 0.1
        )

    # -- waiting -----------------------------------------------------------------

    def handle(self, signums: list[int]) -> bool:
        """Act on signals received; True when SIGUSR1 asked for a pass now."""
        for signum in signums:
            name = signal_name(signum)
            if signum in STOP_SIGNALS:
                log(f"{name}: stopping")
                raise Stopping
            if signum == signal.SIGUSR2:
                log(f"{self.describe_schedule()}; next pass in {self.next_pass_in():g} s")
                report_modules()
            elif signum != signal.SIGUSR1:
                log(f"{name}: ignored")
        return signal.SIGUSR1 in signums

    def next_pass_in(self) -> float:
        return max(self.next_pass_due - time.monotonic(), 0.0)

    def sleep_until(self, due: float) -> bool:
        """Until `due` (monotonic) or SIGUSR1 asks for a pass now (True); SIGTERM raises
        Stopping. Between, it looks after the keeper and the logs."""
        if self.pass_asked:
            self.pass_asked = False
            return True
        while (remaining := due - time.monotonic()) > 0:
            if self.handle(self.inbox.wait(min(remaining, self.check_interval))):
                return True
            reap_children()
            self.heal_keeper()
            self.rotate_logs()
            if self.pass_asked:  # SIGUSR1 while it waited to relaunch the keeper
                self.pass_asked = False
                return True
        return False

    def heal_keeper(self) -> None:
        """Relaunch a keeper that died without being asked (its record left behind: a
        SIGKILL, the OOM killer), under daemon.lock. A stopped keeper removed its record;
        a failed one marked it: neither comes back."""
        try:
            state = observe_worker(self.paths.app_server_record).state
        except DaemonError as error:  # an unreadable record: a person must look
            log(f"cannot check the keeper: {error}")
            return
        note = peer_note("keeper", self.keeper_seen, state)
        self.keeper_seen = state
        if note is not None:
            log(note)
        if not should_relaunch_peer(state):
            return
        daemon = self.daemon()
        try:
            with daemon.operation_lock(self.acquire_patiently):
                if not should_relaunch_peer(daemon.observe().state):
                    return
                settings = daemon.load_settings()
                pid, _ = daemon.launch_app_server(settings)
            log(f"relaunched the keeper (pid {pid}): it had died without being asked")
        except DaemonError as error:
            log(f"cannot relaunch the keeper: {error}")

    def daemon(self) -> Daemon:
        # Rare (a keeper SIGKILLed, or OOM-killed): the lifecycle's imports only then.
        from supervisor.lifecycle import Daemon

        return Daemon(self.paths.home_paths())

    def rotate_logs(self) -> None:
        """Copy-truncate a worker log grown past CODEXD_LOG_MAX_BYTES."""
        logs = (self.paths.app_server_log, self.paths.updater_log)
        if not any_log_needs_rotation(logs, self.log_settings.max_bytes):
            return
        # Rare (a log grew to CODEXD_LOG_MAX_BYTES): the rotation's imports only then.
        from supervisor.logs import rotate_if_needed

        for rotated in rotate_if_needed(self.paths.home_paths(), self.log_settings):
            log(f"rotated {rotated}")

    def acquire_patiently(self, lock: FlockLock) -> None:
        """daemon.lock, retried every 50 ms for as long as it takes, SIGTERM aside."""
        from supervisor.locks import AlreadyLocked

        while True:
            try:
                lock.acquire(timeout=0)
                return
            except AlreadyLocked:
                self.pass_asked |= self.handle(self.inbox.wait(config.UPDATER_LOCK_RETRY_SECONDS))

    # -- the loop ----------------------------------------------------------------

    def run(self) -> int:
        resumed_as = os.environ.pop(RESUMED_ENV, None)
        resumed = resumed_as in (RESUMED, RESUMED_PASS_ASKED)
        self.pass_asked = resumed_as == RESUMED_PASS_ASKED
        first = self.interval if resumed else self.initial_delay
        log(
            f"{'resumed after re-exec' if resumed else 'started'}; {self.describe_schedule()}; "
            f"first pass in {first:g} s"
        )
        reap_children()
        self.end_orphaned_installer()
        try:
            self.keeper_seen = observe_worker(self.paths.app_server_record).state
            every = f"{self.check_interval:g} s"
            log(f"the keeper is {self.keeper_seen.value}; checking on it every {every}")
        except DaemonError:
            pass
        try:
            self.next_pass_due = time.monotonic() + first
            while True:
                retry_due = None if self.deferred is None else self.deferred.retry_due
                due = min(self.next_pass_due, retry_due or self.next_pass_due)
                asked = self.sleep_until(due)
                if asked or time.monotonic() >= self.next_pass_due:
                    self.run_pass(ASKED if asked else SCHEDULE)
                    self.next_pass_due = time.monotonic() + self.interval
                else:
                    self.run_pass(RETRY)
        except Stopping:
            log("stopping on signal")
            return 0
        finally:
            self.remove_own_record()

    def describe_schedule(self) -> str:
        return f"initial delay {self.initial_delay:g} s, interval {self.interval:g} s"

    # -- a pass, in a forked child ------------------------------------------------

    def run_pass(self, trigger: str) -> None:
        answer_read, answer_write = os.pipe()
        hold_read, hold_write = os.pipe()  # close-on-exec: the exec closes it
        child = os.fork()
        if child == 0:  # pragma: no cover - the pass child
            set_title(f"codexd update pass {self.paths.home}")  # not another updater
            os.close(answer_read)
            os.close(hold_write)
            for fd in open_fds_of(lock_path_for(self.paths.updater_record)):
                os.close(fd)  # only the updater holds its lock
            self.inbox.close()
            from workers.updater_pass import run_in_child

            os._exit(run_in_child(self, trigger, answer_write, hold_read))
        os.close(answer_write)
        os.close(hold_read)
        answer: dict[str, object] | None = None
        try:
            answer, stopping = self.await_pass(child, answer_read)
            reexec = None if answer is None else answer.get("reexec")
            if stopping:
                if isinstance(reexec, list):
                    os.write(hold_write, b"the updater was stopped before it re-executed")
                raise Stopping
            if answer is not None:
                self.deferred = PendingRestart.from_json(answer.get("deferred"))
            if isinstance(reexec, list):
                self.reexec(str(reexec[0]), str(reexec[1]), hold_write)
        finally:
            os.close(answer_read)
            os.close(hold_write)  # a child holding daemon.lock for the exec lets it go
            status = reap(child)
            if answer is None:  # a pass child killed mid-install left its installer
                self.end_orphaned_installer("a killed pass")
        if answer is None and status != 0:
            log(f"pass failed: its process (pid {child}) exited with {status}")

    def await_pass(self, child: int, answer_fd: int) -> tuple[dict[str, object] | None, bool]:
        """The pass child's answer (None when it exited without one), and whether a
        stop signal came meanwhile: that is passed on to the child, and waited out."""
        stopping = False
        watched: tuple[int, ...] = (answer_fd,)
        with ProcessHandle(child) as handle:
            while True:
                exited = handle.has_exited()  # before the read: its answer is in the pipe
                if watched and select.select(watched, [], [], 0)[0]:
                    answer = read_answer(answer_fd)
                    if answer is not None:
                        return answer, stopping
                    watched = ()  # end of file: the child is exiting
                if exited:
                    return None, stopping
                wait = 3600.0 if handle.fds() else PASS_POLL_SECONDS
                for signum in self.inbox.wait(wait, also=(*watched, *handle.fds())):
                    name = signal_name(signum)
                    if signum in STOP_SIGNALS:
                        if not stopping:
                            log(f"{name}: stopping")
                            handle.send(signal.SIGTERM)
                        stopping = True
                    elif signum == signal.SIGUSR2:
                        log(f"a pass runs (pid {child}); {self.describe_schedule()}")
                    elif signum == signal.SIGUSR1:
                        self.pass_asked = True  # however late in this pass: one follows
                    else:
                        log(f"{name}: ignored while a pass runs")

    def reexec(self, managed_path: str, digest: str, hold_fd: int) -> None:
        """Become the managed binary's updater: same pid, same lock (its fd is
        inheritable), new record. Never detaches again. When the exec fails, the pass
        child hears why through `hold_fd` (and records it)."""
        from supervisor.worker_control import UPDATER_ARGS  # the process is replaced next

        try:
            own = read_record(self.paths.updater_record)
            if own is None or own.pid != os.getpid():
                raise StateFileError(f"{self.paths.updater_record} no longer names this updater")
            write_record(
                self.paths.updater_record,
                own.replace(executable=managed_path, executable_digest=digest),
            )
        except StateFileError as error:  # a full disk, a record changed under it
            message = f"cannot re-execute {managed_path}: {error}"
            log(message)
            os.write(hold_fd, message.encode()[:512])
            return
        log(f"re-executing from {managed_path} ({digest})")
        try:  # signals noted since the pass answered
            self.pass_asked |= self.handle(self.inbox.take())
        except Stopping:
            os.write(hold_fd, b"the updater was stopped before it re-executed")
            raise
        self.inbox.close()
        # Until the new image handles them, the signals that do not stop the updater
        # are ignored (SIG_IGN survives the exec): their default action (SIGUSR1 from
        # `codexd update`, SIGHUP) would end it mid-exec.
        for signum in HANDLED_SIGNALS:
            if signum not in STOP_SIGNALS:
                signal.signal(signum, signal.SIG_IGN)
        lock = lock_path_for(self.paths.updater_record)
        keep_lock_across_exec(lock, keep=True)
        resumed = RESUMED_PASS_ASKED if self.pass_asked else RESUMED
        env = {**child_environment(), RESUMED_ENV: resumed}
        try:
            os.execve(managed_path, [managed_path, *UPDATER_ARGS], env)
        except OSError as error:
            keep_lock_across_exec(lock, keep=False)
            self.inbox = SignalInbox(HANDLED_SIGNALS)
            try:
                write_record(self.paths.updater_record, own)
            except StateFileError as record_error:
                log(str(record_error))
            message = f"cannot re-execute {managed_path}: {error}"
            os.write(hold_fd, message.encode()[:512])

    # -- state -------------------------------------------------------------------

    def end_orphaned_installer(self, left_by: str = "a killed updater") -> None:
        """An installer whose updater or pass child was SIGKILLed runs on in its own
        process group: end that group, if its leader is still the process recorded."""
        path = self.paths.updater_installer_record
        try:
            value = read_json_object(path) or {}
            recorded = ProcessIdentity(
                int(value["pid"]), float(value["processStartTime"]), str(value["bootId"])
            )
        except (StateFileError, KeyError, TypeError, ValueError):
            recorded = None
        live = None if recorded is None else identity_of(recorded.pid)
        if recorded is not None and live is not None and live.same_process(recorded):
            try:
                os.killpg(recorded.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            log(f"ended installer process group {recorded.pid} left by {left_by}")
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def remove_own_record(self) -> None:
        try:
            record = read_record(self.paths.updater_record)
            if record is not None and record.pid == os.getpid():
                remove_record(self.paths.updater_record)
        except StateFileError:
            pass


def read_answer(fd: int) -> dict[str, object] | None:
    """The pass child's one line (written at once, shorter than a pipe's atomic write);
    None at end of file (it exited without one)."""
    data = os.read(fd, 65536)
    if not data:
        return None
    value = fastjson.loads(data.decode())
    return value if isinstance(value, dict) else None


def reap(pid: int) -> int | None:
    """Wait for our child `pid`; its exit code (negative: the signal), None if already
    reaped."""
    try:
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    except ChildProcessError:
        return None


def reap_children() -> None:
    """Reap a pass child that a re-exec handed over (it exits as soon as the exec closes
    its pipe, after this process image has forgotten it)."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0] != 0:
            pass
    except ChildProcessError:
        pass


def run_update_loop(home: str | os.PathLike[str]) -> int:
    paths = WorkerPaths(os.fspath(home))
    set_title(f"codexd updater {paths.home}")
    keep_lock_across_exec(lock_path_for(paths.updater_record), keep=False)
    return Updater(paths).run()
