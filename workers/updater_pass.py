"""One pass of the updater, in a child it forks (workers/updater.py): the installer, then
the refresh of a keeper behind the managed binary, under daemon.lock.

Everything a pass imports (the lifecycle, subprocess, json, pathlib) ends with the
child, so the resident updater stays small. The child logs as the updater and records
the pass with the updater's pid; it answers the updater with one line on a pipe: the
restart it defers, if any, and the image to re-execute onto, if the updater is to. In
that case it still holds daemon.lock and waits until the updater's exec closes the
`hold` pipe (or the updater writes there why the exec failed), so that no `bootstrap`
races the handoff.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import replace

from supervisor import fastjson
from supervisor.errors import DaemonError
from supervisor.identity import identity_of
from supervisor.installer import (
    NEW_SOURCE_REMEDY,
    current_source,
    installer_command,
    installer_environment,
    local_source_problem,
)
from supervisor.lifecycle import Daemon
from supervisor.locks import AlreadyLocked, FlockLock
from supervisor.managed import require_managed_binary
from supervisor.pidrecord import read_record
from supervisor.prctl import set_parent_death_signal
from supervisor.process_handle import ProcessHandle
from supervisor.signals import SignalInbox
from supervisor.statefile import StateFileError, write_json_atomic
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
from supervisor.worker_log import log as log_line
from supervisor.worker_log import utc_timestamp
from supervisor.worker_state import processes_below_app_server
from workers.updater import (
    HANDLED_SIGNALS,
    PASS_STOPPED_STATUS,
    STOP_SIGNALS,
    PendingRestart,
    Stopping,
    Updater,
)

# A restart deferred for a busy app-server is tried again this often (or every interval,
# when that is shorter).
DEFER_RETRY_SECONDS = 60.0


class HandedOver(Exception):
    """The updater re-executed: this pass is over, and recorded."""


def run_in_child(updater: Updater, trigger: str, answer_fd: int, hold_fd: int) -> int:
    """The pass child's life (`updater` is the forked copy: its settings and state as the
    pass began): the exit status for `os._exit`."""
    set_parent_death_signal(signal.SIGKILL)  # as the pass died with the updater before
    if os.getppid() != updater.pid:
        return PASS_STOPPED_STATUS
    try:
        UpdatePass(updater, trigger, answer_fd, hold_fd).run()
    except Stopping:
        return PASS_STOPPED_STATUS
    return 0


class UpdatePass:
    def __init__(self, updater: Updater, trigger: str, answer_fd: int, hold_fd: int) -> None:
        self.updater = updater
        self.trigger = Trigger(trigger)
        self.paths = updater.paths.home_paths()
        self.daemon = Daemon(self.paths)
        self.deferred = updater.deferred
        self.answer_fd = answer_fd
        self.hold_fd = hold_fd
        self.answered = False
        # Signals reach the child only from the updater, which passes SIGTERM on.
        self.inbox = SignalInbox(HANDLED_SIGNALS)

    def log(self, message: str) -> None:
        log_line("updater", message, self.updater.pid)

    def check_signals(self, timeout: float, also: tuple[int, ...] = ()) -> None:
        if any(signum in STOP_SIGNALS for signum in self.inbox.wait(timeout, also)):
            raise Stopping

    def acquire_patiently(self, lock: FlockLock) -> None:
        """daemon.lock, retried every 50 ms for as long as it takes, SIGTERM aside."""
        from supervisor import config

        while True:
            try:
                lock.acquire(timeout=0)
                return
            except AlreadyLocked:
                self.check_signals(config.UPDATER_LOCK_RETRY_SECONDS)

    def answer(self, reexec: tuple[str, str] | None = None) -> None:
        deferred = None if self.deferred is None else self.deferred.to_json()
        line = fastjson.dumps({"deferred": deferred, "reexec": reexec and list(reexec)})
        os.write(self.answer_fd, (line + "\n").encode())
        self.answered = True

    def run(self) -> None:
        record = PassRecord(
            number=self.count_passes() + 1,
            started_at=utc_timestamp(),
            trigger=self.trigger,
            pid=self.updater.pid,
        )
        try:
            record = self.run_steps(record)
        except HandedOver:
            return
        except (DaemonError, OSError) as error:
            # Whatever failed, the loop goes on: the next pass may find it mended.
            record = replace(record, error=str(error))
            self.log(f"pass failed: {error}")
        self.write_pass(record)
        if not self.answered:
            self.answer()

    def run_steps(self, record: PassRecord) -> PassRecord:
        if record.trigger is not Trigger.RETRY:  # a retry only tries the restart again
            result, detail = self.run_installer()
            record = replace(record, installer=result, installer_detail=detail)
            if result is not InstallerResult.OK:
                return record
        managed_path = require_managed_binary(self.paths.managed_binary)
        managed = Image(self.daemon.executable_digest(managed_path), self.daemon.managed_version())
        record = replace(record, managed_binary=str(managed_path), managed_digest=managed.digest)
        # The re-exec decision is made under daemon.lock too, so bootstrap cannot race
        # the handoff: the lock is held here until the updater's exec.
        with self.daemon.operation_lock(self.acquire_patiently):
            running = self.daemon.running_record()
            busy = 0 if running is None else len(processes_below_app_server(running))
            deferral = Deferral(self.updater.max_defer, self.waited_for(managed.digest))
            action = refresh_action(running_image(running), managed, busy, deferral, force=False)
            outcome = refresh_app_server(self.daemon, managed, action)
            record = replace(record, app_server=outcome)
            record = self.note_deferral(record, managed.digest, outcome, busy)
            self.log(f"app-server: {outcome.value}")
            own = read_record(self.paths.updater_record)
            if own is None or own.pid != self.updater.pid:
                raise DaemonError(f"{self.paths.updater_record} does not name this updater")
            if should_reexec_updater(own.executable_digest, managed.digest, outcome):
                record = replace(record, reexec=True)
                self.write_pass(record)
                self.hand_over(str(managed_path), managed.digest)
        return record

    def hand_over(self, managed_path: str, digest: str) -> None:
        """Ask the updater to re-execute onto `managed_path`, and hold daemon.lock until
        it has (HandedOver); DaemonError when its exec failed."""
        self.answer((managed_path, digest))
        failure = b""
        while chunk := os.read(self.hold_fd, 512):
            failure += chunk
        if failure:
            raise DaemonError(failure.decode(errors="replace"))
        raise HandedOver

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
                self.log("the deferred restart is done")
            self.deferred = None
            return record
        if self.deferred is None or self.deferred.digest != digest:
            self.deferred = PendingRestart(digest, time.monotonic(), utc_timestamp(), 0.0)
        retry = min(DEFER_RETRY_SECONDS, self.updater.interval)
        self.deferred = self.deferred.replace(retry_due=time.monotonic() + retry)
        self.log(
            f"update deferred: app-server busy ({busy} processes) since "
            f"{self.deferred.since_text}; trying again in {retry:g} s, restarting anyway "
            f"{self.updater.max_defer:g} s after it began"
        )
        return replace(record, busy_processes=busy, deferred_since=self.deferred.since_text)

    # -- the installer ---------------------------------------------------------------

    def run_installer(self) -> tuple[InstallerResult, str | None]:
        """What the installer did, and a detail when it failed; its output goes to our
        log."""
        source = current_source(self.paths)
        if source is None:
            self.log("no release source: run install.sh once, or set CODEXD_CHANNEL")
            return InstallerResult.NO_SOURCE, "no release source"
        problem = local_source_problem(source)
        if problem is not None:  # say so, not sh's "cannot open .../install.sh"
            self.log(f"{problem}: {NEW_SOURCE_REMEDY}")
            return InstallerResult.NO_SOURCE, problem
        command = installer_command(source)
        self.log(f"running installer from {source.kind} {source.location}")
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
                try:
                    write_json_atomic(
                        self.paths.updater_installer_record,
                        {
                            "pid": live.pid,
                            "processStartTime": live.start_time,
                            "bootId": live.boot_id,
                        },
                    )
                except StateFileError:
                    pass
            try:
                gate.write(b"go\n")
            except BrokenPipeError:
                pass
        timeout = self.updater.install_timeout
        try:
            with ProcessHandle(installer.pid) as handle:
                deadline = time.monotonic() + timeout
                while not handle.has_exited():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        self.log(f"installer timed out after {timeout:g} s")
                        return InstallerResult.TIMED_OUT, f"after {timeout:g} s"
                    # Without a pidfd to wake us, poll the installer's exit.
                    wait = remaining if handle.fds() else min(remaining, 0.05)
                    self.check_signals(wait, also=handle.fds())
        finally:
            # Its process group: a hung curl or a build started by it goes too.
            try:
                os.killpg(installer.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            installer.wait()
            try:
                self.paths.updater_installer_record.unlink()
            except FileNotFoundError:
                pass
        if installer.returncode != 0:
            self.log(f"installer failed with exit status {installer.returncode}")
            return InstallerResult.FAILED, f"exit status {installer.returncode}"
        return InstallerResult.OK, None

    # -- the pass record -----------------------------------------------------------------

    def count_passes(self) -> int:
        """Passes so far, across re-execs: the last pass file keeps the count."""
        last = read_last_pass(self.paths.updater_last_pass)
        return 0 if last is None else last.number

    def write_pass(self, record: PassRecord) -> None:
        """The pass, for people and tests to read, with when the next full pass is due
        (an interval after this one ends; a re-exec'd updater resumes so too)."""
        import datetime

        finished = datetime.datetime.now(datetime.UTC)
        if record.trigger is Trigger.RETRY:
            next_in = max(self.updater.next_pass_due - time.monotonic(), 0.0)
        else:
            next_in = self.updater.interval
        next_pass = finished + datetime.timedelta(seconds=next_in)
        try:
            write_last_pass(
                self.paths.updater_last_pass,
                replace(record, finished_at=timestamp(finished), next_pass_at=timestamp(next_pass)),
            )
        except StateFileError as error:
            self.log(str(error))
