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
from dataclasses import replace
from pathlib import Path
from typing import Any

from supervisor import config
from supervisor.decisions import WorkerState
from supervisor.errors import DaemonError
from supervisor.identity import ProcessIdentity, identity_of
from supervisor.lifecycle import Daemon
from supervisor.locks import AlreadyLocked, FlockLock
from supervisor.logs import rotate_if_needed
from supervisor.managed import require_managed_binary
from supervisor.paths import HomePaths, lock_path_for
from supervisor.pidrecord import read_record, remove_record, write_record
from supervisor.process_handle import ProcessHandle
from supervisor.signals import SignalInbox
from supervisor.standalone import ReleaseSource, read_source
from supervisor.statefile import StateFileError, read_json_object, write_json_atomic
from supervisor.supervision import peer_note, should_relaunch_peer
from supervisor.timestamps import timestamp
from supervisor.updates import Image, refresh_app_server, should_reexec_updater
from supervisor.worker_control import UPDATER_ARGS
from supervisor.worker_log import log as log_line
from supervisor.worker_process import child_environment, keep_lock_across_exec, set_title

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


class Stopping(Exception):
    """SIGTERM or SIGINT arrived: unwind and exit."""


def installer_command(source: ReleaseSource) -> list[str]:
    """The installer for a source, always run by `sh` with the script on stdin, as
    `curl ... | sh` would. From a checkout, the committed HEAD's install.sh (it then
    builds from HEAD too), so that an edit in progress is never rolled out; a checkout
    that is not a git one, its install.sh as it is. The script is read in full before
    `sh` starts, so that a failed download or `git show` fails the pass instead of
    running half a script."""
    if source.kind == "checkout":
        script = (
            'if git -C "$1" rev-parse -q --verify HEAD >/dev/null 2>&1; then '
            'script=$(git -C "$1" show HEAD:./install.sh) && printf "%s\\n" "$script" | sh; '
            'else sh "$1/install.sh"; fi'
        )
        return ["sh", "-c", script, "sh", source.location]
    if source.location.startswith("https://"):
        fetch = (
            'script=$(curl -fsSL --proto "=https" "$1/install.sh") && printf "%s\\n" "$script" | sh'
        )
        return ["sh", "-c", fetch, "sh", source.location]
    return ["sh", "-c", 'sh < "$1/install.sh"', "sh", source.location]


def resolve_source(paths: HomePaths, environ: dict[str, str]) -> ReleaseSource | None:
    """codexd's source: CODEXD_CHANNEL, else what the last install recorded. (codex's
    source, CODEXD_CODEX_SOURCE, is install.sh's to read: the installer inherits it.)"""
    channel = environ.get(config.CHANNEL_ENV)
    if channel:
        return ReleaseSource("channel", channel)
    return read_source(paths)


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

    def sleep(self, seconds: float) -> None:
        """Until `seconds` pass or SIGUSR1 asks for a pass now; SIGTERM raises Stopping."""
        self.next_pass_due = time.monotonic() + seconds
        while (remaining := self.next_pass_in()) > 0:
            if self.handle(self.inbox.wait(min(remaining, self.check_interval))):
                return
            self.heal_keeper()
            self.rotate_logs()

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
            self.sleep(first)
            while True:
                self.run_pass()
                self.sleep(self.interval)
        except Stopping:
            log("stopping on signal")
            return 0
        finally:
            self.remove_own_record()

    def describe_schedule(self) -> str:
        return f"initial delay {self.initial_delay:g} s, interval {self.interval:g} s"

    def run_pass(self) -> None:
        outcome: dict[str, Any] = {"pass": self.count_passes() + 1, "startedAt": now()}
        try:
            self.run_pass_steps(outcome)
        except (DaemonError, OSError) as error:
            # Whatever failed, the loop goes on: the next pass may find it mended.
            outcome["error"] = str(error)
            log(f"pass failed: {error}")
        self.write_pass(outcome)

    def run_pass_steps(self, outcome: dict[str, Any]) -> None:
        installer = self.run_installer()
        outcome["installer"] = installer
        if installer != "ok":
            return
        managed_path = require_managed_binary(self.paths.managed_binary)
        managed = Image(self.daemon.executable_digest(managed_path), self.daemon.managed_version())
        outcome.update(managedBinary=str(managed_path), managedDigest=managed.digest)
        # The re-exec decision is made under daemon.lock too, so bootstrap cannot race
        # the handoff; the lock's fd is close-on-exec, so the exec releases it.
        with self.daemon.operation_lock(self.acquire_patiently):
            refresh = refresh_app_server(self.daemon, managed)
            outcome["appServer"] = refresh.value
            log(f"app-server: {refresh.value}")
            own = read_record(self.paths.updater_record)
            if own is None or own.pid != os.getpid():
                raise DaemonError(f"{self.paths.updater_record} does not name this updater")
            if should_reexec_updater(own.executable_digest, managed.digest, refresh):
                outcome["reexec"] = True
                self.write_pass(outcome)
                self.reexec(managed_path, managed.digest)

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

    def run_installer(self) -> str:
        """ "ok", or what went wrong; the installer's output goes to our log."""
        source = resolve_source(self.paths, dict(os.environ))
        if source is None:
            log("no release source: run install.sh once, or set CODEXD_CHANNEL")
            return "no release source"
        command = installer_command(source)
        log(f"running installer from {source.kind} {source.location}")
        env = {**child_environment(), "CODEX_HOME": str(self.paths.home)}
        if source.kind == "channel":
            env[config.CHANNEL_ENV] = source.location
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
                        return "timed out"
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
            return f"failed with exit status {installer.returncode}"
        return "ok"

    def reexec(self, managed_path: Path, digest: str) -> None:
        """Become the managed binary's updater: same pid, same lock (its fd is
        inheritable), new record. Never detaches again."""
        own = read_record(self.paths.updater_record)
        assert own is not None
        write_record(
            self.paths.updater_record,
            replace(own, executable=str(managed_path), executable_digest=digest),
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
        try:
            last = read_json_object(self.paths.updater_last_pass) or {}
        except StateFileError:
            return 0
        count = last.get("pass")
        return count if isinstance(count, int) else 0

    def write_pass(self, outcome: dict[str, Any]) -> None:
        """The outcome of the last pass, for people and tests to read. The next pass
        is due an interval after this one ends (a re-exec'd updater resumes so too)."""
        finished = datetime.datetime.now(datetime.UTC)
        next_pass = finished + datetime.timedelta(seconds=self.interval)
        try:
            write_json_atomic(
                self.paths.updater_last_pass,
                {
                    **outcome,
                    "pid": os.getpid(),
                    "finishedAt": timestamp(finished),
                    "nextPassAt": timestamp(next_pass),
                },
            )
        except StateFileError as error:
            log(str(error))

    def remove_own_record(self) -> None:
        with contextlib.suppress(StateFileError):
            record = read_record(self.paths.updater_record)
            if record is not None and record.pid == os.getpid():
                remove_record(self.paths.updater_record)


def run_update_loop(home: Path) -> int:
    paths = HomePaths(home)
    set_title(f"codexd updater {home}")
    keep_lock_across_exec(lock_path_for(paths.updater_record), keep=False)
    return Updater(paths).run()
