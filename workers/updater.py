"""The updater loop (`codexd app-server daemon pid-update-loop`).

Launched detached like the keeper. Each pass runs the installer, then compares
the managed binary's content digest with the images the keeper (and its app-server)
and the updater run: a keeper behind is restarted onto the managed binary under
daemon.lock, and only once that succeeded (or none runs) does the updater `execve`
the managed binary itself, keeping its pid and its lock. Between passes it relaunches
a keeper that died without being asked, as the keeper does for it.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path

from supervisor import config
from supervisor.decisions import WorkerState
from supervisor.errors import DaemonError
from supervisor.identity import ProcessIdentity, identity_of
from supervisor.installer import current_source, installer_command, installer_environment
from supervisor.lifecycle import Daemon
from supervisor.locks import AlreadyLocked, FlockLock
from supervisor.logs import rotate_if_needed
from supervisor.managed import require_managed_binary
from supervisor.paths import HomePaths, lock_path_for
from supervisor.pidrecord import read_record, remove_record, write_record
from supervisor.process_handle import ProcessHandle
from supervisor.signals import SignalInbox
from supervisor.statefile import StateFileError, read_json_object, write_json_atomic
from supervisor.supervision import peer_note, should_relaunch_peer
from supervisor.timestamps import timestamp
from supervisor.update_pass import (
    InstallerResult,
    PassRecord,
    RefreshOutcome,
    Trigger,
    read_last_pass,
    write_last_pass,
)
from supervisor.updates import (
    Deferral,
    Image,
    refresh_action,
    refresh_app_server,
    running_image,
    should_reexec_updater,
)
from supervisor.worker_control import UPDATER_ARGS
from supervisor.worker_log import log as log_line
from supervisor.worker_process import child_environment, keep_lock_across_exec, set_title
from supervisor.worker_state import processes_below_app_server

# Set on the re-exec'd updater: it resumes the schedule instead of starting over.
RESUMED_ENV = "CODEXD_UPDATER_RESUMED"
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


# A restart deferred for a busy app-server is tried again this often (or every interval,
# when that is shorter).
DEFER_RETRY_SECONDS = 60.0


class Stopping(Exception):
    """SIGTERM or SIGINT arrived: unwind and exit."""


@dataclass(frozen=True)
class PendingRestart:
    """A restart onto `digest` that waits for the app-server to be idle."""

    digest: str
    since: float  # monotonic
    since_text: str  # the same moment, ISO 8601, for the pass record
    retry_due: float  # monotonic


def now() -> str:
    return timestamp(datetime.datetime.now(datetime.UTC))


def log(message: str) -> None:
    log_line("updater", message)


class Updater:
    def __init__(self, paths: HomePaths) -> None:
        self.paths = paths
        self.daemon = Daemon(paths)
        self.inbox = SignalInbox(HANDLED_SIGNALS)
        self.initial_delay, self.interval = config.update_schedule()
        self.install_timeout = config.install_timeout_seconds()
        self.log_settings = config.log_settings()
        self.keeper_seen: WorkerState | None = None  # as the last health check saw it
        self.max_defer = config.seconds_from_env(
            config.UPDATE_MAX_DEFER_ENV, config.UPDATE_MAX_DEFER_SECONDS
        )
        self.deferred: PendingRestart | None = None  # a restart waiting for a busy app-server
        self.next_pass_due = time.monotonic()
        # Between passes it wakes this often to heal the keeper and bound the logs.
        self.check_interval = max(
            config.seconds_from_env(config.WATCHDOG_ENV, config.WATCHDOG_SECONDS), 0.1
        )

    # -- waiting -----------------------------------------------------------------

    def handle(self, signums: list[int]) -> bool:
        """Act on signals received; True when SIGUSR1 asked for a pass now."""
        for signum in signums:
            name = signal.Signals(signum).name
            if signum in STOP_SIGNALS:
                log(f"{name}: stopping")
                raise Stopping
            if signum == signal.SIGUSR2:
                log(f"{self.describe_schedule()}; next pass in {self.next_pass_in():g} s")
            elif signum != signal.SIGUSR1:
                log(f"{name}: ignored")
        return signal.SIGUSR1 in signums

    def next_pass_in(self) -> float:
        return max(self.next_pass_due - time.monotonic(), 0.0)

    def sleep_until(self, due: float) -> bool:
        """Until `due` (monotonic) or SIGUSR1 asks for a pass now (True); SIGTERM raises
        Stopping. Between, it looks after the keeper and the logs."""
        while (remaining := due - time.monotonic()) > 0:
            if self.handle(self.inbox.wait(min(remaining, self.check_interval))):
                return True
            self.heal_keeper()
            self.rotate_logs()
        return False

    def heal_keeper(self) -> None:
        """Relaunch a keeper that died without being asked (its record left behind: a
        SIGKILL, the OOM killer), under daemon.lock. A stopped keeper removed its record;
        a failed one marked it: neither comes back."""
        try:
            state = self.daemon.observe().state
        except DaemonError as error:  # an unreadable record: a person must look
            log(f"cannot check the keeper: {error}")
            return
        note = peer_note("keeper", self.keeper_seen, state)
        self.keeper_seen = state
        if note is not None:
            log(note)
        if not should_relaunch_peer(state):
            return
        try:
            with self.daemon.operation_lock(self.acquire_patiently):
                if not should_relaunch_peer(self.daemon.observe().state):
                    return
                settings = self.daemon.load_settings()
                pid, _ = self.daemon.launch_app_server(settings)
            log(f"relaunched the keeper (pid {pid}): it had died without being asked")
        except DaemonError as error:
            log(f"cannot relaunch the keeper: {error}")

    def rotate_logs(self) -> None:
        """Copy-truncate a worker log grown past CODEXD_LOG_MAX_BYTES."""
        for rotated in rotate_if_needed(self.paths, self.log_settings):
            log(f"rotated {rotated}")

    def acquire_patiently(self, lock: FlockLock) -> None:
        """daemon.lock, retried every 50 ms for as long as it takes, SIGTERM aside."""
        while True:
            try:
                lock.acquire(timeout=0)
                return
            except AlreadyLocked:
                self.handle(self.inbox.wait(config.UPDATER_LOCK_RETRY_SECONDS))

    # -- the loop ----------------------------------------------------------------

    def run(self) -> int:
        resumed = os.environ.pop(RESUMED_ENV, None) == "1"
        first = self.interval if resumed else self.initial_delay
        log(
            f"{'resumed after re-exec' if resumed else 'started'}; {self.describe_schedule()}; "
            f"first pass in {first:g} s"
        )
        self.end_orphaned_installer()
        with contextlib.suppress(DaemonError):
            self.keeper_seen = self.daemon.observe().state
            every = f"{self.check_interval:g} s"
            log(f"the keeper is {self.keeper_seen.value}; checking on it every {every}")
        try:
            self.next_pass_due = time.monotonic() + first
            while True:
                retry_due = None if self.deferred is None else self.deferred.retry_due
                due = min(self.next_pass_due, retry_due or self.next_pass_due)
                asked = self.sleep_until(due)
                if asked or time.monotonic() >= self.next_pass_due:
                    self.run_pass(Trigger.SIGNAL if asked else Trigger.SCHEDULE)
                    self.next_pass_due = time.monotonic() + self.interval
                else:
                    self.run_pass(Trigger.RETRY)
        except Stopping:
            log("stopping on signal")
            return 0
        finally:
            self.remove_own_record()

    def describe_schedule(self) -> str:
        return f"initial delay {self.initial_delay:g} s, interval {self.interval:g} s"

    def run_pass(self, trigger: Trigger) -> None:
        record = PassRecord(
            number=self.count_passes() + 1, started_at=now(), trigger=trigger, pid=os.getpid()
        )
        try:
            record = self.run_pass_steps(record)
        except (DaemonError, OSError) as error:
            # Whatever failed, the loop goes on: the next pass may find it mended.
            record = replace(record, error=str(error))
            log(f"pass failed: {error}")
        self.write_pass(record)

    def run_pass_steps(self, record: PassRecord) -> PassRecord:
        if record.trigger is not Trigger.RETRY:  # a retry only tries the restart again
            result, detail = self.run_installer()
            record = replace(record, installer=result, installer_detail=detail)
            if result is not InstallerResult.OK:
                return record
        managed_path = require_managed_binary(self.paths.managed_binary)
        managed = Image(self.daemon.executable_digest(managed_path), self.daemon.managed_version())
        record = replace(record, managed_binary=str(managed_path), managed_digest=managed.digest)
        # The re-exec decision is made under daemon.lock too, so bootstrap cannot race
        # the handoff; the lock's fd is close-on-exec, so the exec releases it.
        with self.daemon.operation_lock(self.acquire_patiently):
            running = self.daemon.running_record()
            busy = 0 if running is None else len(processes_below_app_server(running))
            deferral = Deferral(self.max_defer, self.waited_for(managed.digest))
            action = refresh_action(running_image(running), managed, busy, deferral, force=False)
            outcome = refresh_app_server(self.daemon, managed, action)
            record = replace(record, app_server=outcome)
            record = self.note_deferral(record, managed.digest, outcome, busy)
            log(f"app-server: {outcome.value}")
            own = read_record(self.paths.updater_record)
            if own is None or own.pid != os.getpid():
                raise DaemonError(f"{self.paths.updater_record} does not name this updater")
            if should_reexec_updater(own.executable_digest, managed.digest, outcome):
                record = replace(record, reexec=True)
                self.write_pass(record)
                self.reexec(managed_path, managed.digest)
        return record

    # -- a restart that waits for a busy app-server ---------------------------------

    def waited_for(self, digest: str) -> float | None:
        """How long the restart onto `digest` has waited; None when it has not."""
        if self.deferred is None or self.deferred.digest != digest:
            return None
        return time.monotonic() - self.deferred.since

    def note_deferral(
        self, record: PassRecord, digest: str, outcome: RefreshOutcome, busy: int
    ) -> PassRecord:
        if outcome is not RefreshOutcome.DEFERRED:
            if self.deferred is not None:
                log("the deferred restart is done")
            self.deferred = None
            return record
        if self.deferred is None or self.deferred.digest != digest:
            self.deferred = PendingRestart(digest, time.monotonic(), now(), 0.0)
        retry = min(DEFER_RETRY_SECONDS, self.interval)
        self.deferred = replace(self.deferred, retry_due=time.monotonic() + retry)
        log(
            f"update deferred: app-server busy ({busy} processes) since "
            f"{self.deferred.since_text}; trying again in {retry:g} s, restarting anyway "
            f"{self.max_defer:g} s after it began"
        )
        return replace(record, busy_processes=busy, deferred_since=self.deferred.since_text)

    def end_orphaned_installer(self) -> None:
        """An installer whose updater was SIGKILLed runs on in its own process group:
        end that group, if its leader is still the process recorded."""
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
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(recorded.pid, signal.SIGKILL)
            log(f"ended installer process group {recorded.pid} left by a killed updater")
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def run_installer(self) -> tuple[InstallerResult, str | None]:
        """What the installer did, and a detail when it failed; its output goes to our
        log."""
        source = current_source(self.paths)
        if source is None:
            log("no release source: run install.sh once, or set CODEXD_CHANNEL")
            return InstallerResult.NO_SOURCE, "no release source"
        command = installer_command(source)
        log(f"running installer from {source.kind} {source.location}")
        env = installer_environment(self.paths, source)
        # The installer is recorded before it may start, so that, should this updater be
        # SIGKILLed, the next one ends it: it waits on a pipe for our go, and never runs
        # if we die first (end of file instead of a line).
        gate_read, gate_write = os.pipe()
        gated = ["sh", "-c", f'read go <&{gate_read} && exec "$@" {gate_read}<&-', "sh"]
        try:
            installer = subprocess.Popen(
                [*gated, *command],
                env=env,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd="/",
                pass_fds=(gate_read,),
            )
        finally:
            os.close(gate_read)
        with os.fdopen(gate_write, "wb") as gate:
            live = identity_of(installer.pid)
            if live is not None:
                with contextlib.suppress(StateFileError):
                    write_json_atomic(
                        self.paths.updater_installer_record,
                        {
                            "pid": live.pid,
                            "processStartTime": live.start_time,
                            "bootId": live.boot_id,
                        },
                    )
            with contextlib.suppress(BrokenPipeError):
                gate.write(b"go\n")
        try:
            with ProcessHandle(installer.pid) as handle:
                deadline = time.monotonic() + self.install_timeout
                while not handle.has_exited():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        log(f"installer timed out after {self.install_timeout:g} s")
                        return InstallerResult.TIMED_OUT, f"after {self.install_timeout:g} s"
                    # Without a pidfd to wake us, poll the installer's exit.
                    wait = remaining if handle.fds() else min(remaining, 0.05)
                    self.handle(self.inbox.wait(wait, also=handle.fds()))
        finally:
            # Its process group: a hung curl or a build started by it goes too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(installer.pid, signal.SIGKILL)
            installer.wait()
            with contextlib.suppress(FileNotFoundError):
                self.paths.updater_installer_record.unlink()
        if installer.returncode != 0:
            log(f"installer failed with exit status {installer.returncode}")
            return InstallerResult.FAILED, f"exit status {installer.returncode}"
        return InstallerResult.OK, None

    def reexec(self, managed_path: Path, digest: str) -> None:
        """Become the managed binary's updater: same pid, same lock (its fd is
        inheritable), new record. Never detaches again."""
        own = read_record(self.paths.updater_record)
        assert own is not None
        write_record(
            self.paths.updater_record,
            own.replace(executable=str(managed_path), executable_digest=digest),
        )
        log(f"re-executing from {managed_path} ({digest})")
        self.inbox.close()
        lock = lock_path_for(self.paths.updater_record)
        keep_lock_across_exec(lock, keep=True)
        env = {**child_environment(), RESUMED_ENV: "1"}
        try:
            os.execve(managed_path, [str(managed_path), *UPDATER_ARGS], env)
        except OSError as error:
            keep_lock_across_exec(lock, keep=False)
            write_record(self.paths.updater_record, own)
            self.inbox = SignalInbox(HANDLED_SIGNALS)
            raise DaemonError(f"cannot re-execute {managed_path}: {error}") from error

    # -- state -------------------------------------------------------------------

    def count_passes(self) -> int:
        """Passes so far, across re-execs: the last pass file keeps the count."""
        last = read_last_pass(self.paths.updater_last_pass)
        return 0 if last is None else last.number

    def write_pass(self, record: PassRecord) -> None:
        """The pass, for people and tests to read, with when the next full pass is due
        (an interval after this one ends; a re-exec'd updater resumes so too)."""
        finished = datetime.datetime.now(datetime.UTC)
        if record.trigger is Trigger.RETRY:
            next_pass = finished + datetime.timedelta(seconds=self.next_pass_in())
        else:
            next_pass = finished + datetime.timedelta(seconds=self.interval)
        try:
            write_last_pass(
                self.paths.updater_last_pass,
                replace(record, finished_at=timestamp(finished), next_pass_at=timestamp(next_pass)),
            )
        except StateFileError as error:
            log(str(error))

    def remove_own_record(self) -> None:
        with contextlib.suppress(StateFileError):
            record = read_record(self.paths.updater_record)
            if record is not None and record.pid == os.getpid():
                remove_record(self.paths.updater_record)


def run_update_loop(home: str | os.PathLike[str]) -> int:
    paths = HomePaths(Path(home))
    set_title(f"codexd updater {home}")
    keep_lock_across_exec(lock_path_for(paths.updater_record), keep=False)
    return Updater(paths).run()
