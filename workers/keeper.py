"""The keeper (`codexd app-server daemon keeper`): the resident process that owns one
app-server.

Launched detached like the updater; it holds `app-server.pid.lock` (close-on-exec, so
nothing it starts inherits it) and is a child subreaper, so whatever the app-server
starts comes back to it when orphaned. It starts the managed binary's
`app-server --listen unix://` as its child (own process group, SIGKILLed by the kernel
if the keeper dies), probes it, restarts it when it crashes or hangs, gives up on a
crash loop, and on SIGTERM stops it and everything below it (systemd's
`KillMode=mixed`).

One loop, one wait: on the signal inbox (SIGCHLD included) with a timeout at the next
deadline. Probes run in a forked child, so a hung app-server never blocks the loop.
The decisions are `supervisor.supervision`'s; this module gathers facts and acts. What
it forks (the app-server, the probe) is in `keeper_children`, its rare chores
(relaunching the updater, bounding logs, removing a dead app-server's socket) in
`keeper_chores`.

It stays resident, so it imports only what its loop uses (tests/test_resident_imports.py
holds it to that): no `pathlib` (its paths are strings), `dataclasses`, `enum`,
`contextlib`, `datetime` or `socket`; what it needs rarely (relaunching the updater,
rotating a log, its exit) it imports when it needs it.
"""

from __future__ import annotations

import os
import time

from supervisor import config
from supervisor.decisions import WorkerState
from supervisor.descriptors import raise_open_file_limit
from supervisor.faults import pause_point, report_modules
from supervisor.identity import identity_of, start_ticks
from supervisor.paths import WorkerPaths, lock_path_for
from supervisor.pidrecord import (
    ChildRecord,
    ExitReport,
    KeeperReport,
    PidRecord,
    read_record,
    remove_record,
    write_record,
)
from supervisor.prctl import set_child_subreaper
from supervisor.procfs import count_processes, descendants, open_fds_of
from supervisor.signals import SignalInbox, signal_name
from supervisor.state_read import StateFileError
from supervisor.supervision import (
    Action,
    Event,
    ExitKind,
    KeeperState,
    RestartPolicy,
    consecutive_failures,
    describe_exit,
    exit_event,
    exit_kind,
    is_crash_loop,
    restart_delay,
    transition,
    unresponsive_event,
    watchdog_probe_timeout,
)
from supervisor.worker_log import log as log_line
from supervisor.worker_log import utc_timestamp
from supervisor.worker_process import child_environment, keep_lock_across_exec, set_title
from workers.keeper_children import Probe, signal_process, spawn_app_server
from workers.keeper_chores import bound_logs, heal_updater, remove_stale_socket

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
else:
    import _signal as signal  # as supervisor/signals.py explains

# Signals that end the keeper deliberately; HUP restarts the app-server; USR1 probes now
# and logs the state; the rest are noted and ignored (a stopped keeper keeps nothing).
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGQUIT})
HANDLED_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGCHLD,
    signal.SIGTSTP,
    signal.SIGTTIN,
    signal.SIGTTOU,
)
# Readiness probes follow each other this closely: a `start` waits for the first answer.
READY_POLL_SECONDS = 0.025
# What is left below a stopped app-server gets this long between TERM and KILL.
DESCENDANT_GRACE_SECONDS = 5.0
LOG_CHECK_SECONDS = 10.0


def log(message: str) -> None:
    log_line("keeper", message)


class Keeper:
    def __init__(self, paths: WorkerPaths, record: PidRecord, lock_fds: list[int]) -> None:
        self.paths = paths
        self.record = record
        # The lock's fds: a forked child closes them first, so only the keeper holds it.
        self.lock_fds = lock_fds
        self.managed_binary = record.executable
        self.policy = RestartPolicy(
            first_delay=config.seconds_from_env(
                config.RESTART_DELAY_ENV, config.RESTART_DELAY_SECONDS
            ),
            burst=config.count_from_env(config.RESTART_BURST_ENV, config.RESTART_BURST, 1),
            window=config.seconds_from_env(
                config.RESTART_WINDOW_ENV, config.RESTART_WINDOW_SECONDS
            ),
        )
        self.watchdog_interval = max(
            config.seconds_from_env(config.WATCHDOG_ENV, config.WATCHDOG_SECONDS), 0.1
        )
        self.grace = config.stop_grace_seconds()
        self.log_settings = config.log_settings()
        self.inbox = SignalInbox(HANDLED_SIGNALS)

        self.state = KeeperState.LAUNCHING
        self.state_since = utc_timestamp()
        self.restarts = 0
        self.last_exit: ExitReport | None = None
        self.failure: str | None = None
        self.failure_times: list[float] = []  # monotonic, of unasked exits and hangs
        self.failed_exits: list[ExitReport] = []
        self.consecutive = 0

        # The app-server now running, if any.
        self.child_pid: int | None = None
        self.child_started = 0.0  # monotonic
        self.asked_reason: str | None = None  # why we sent it TERM/KILL, if we did
        self.pending_reason: str | None = None  # why we are about to ask
        # Deadlines (monotonic), None when not armed.
        self.ready_deadline: float | None = None
        self.next_probe: float | None = None
        self.grace_deadline: float | None = None
        self.backoff_until: float | None = None
        self.next_health_check = time.monotonic() + self.watchdog_interval
        self.next_log_check = time.monotonic() + LOG_CHECK_SECONDS
        self.updater_seen: WorkerState | None = None  # as the last health check saw it
        self.probe: Probe | None = None  # in flight
        self.probe_failures = 0

    # -- the loop ------------------------------------------------------------------

    def run(self) -> int:
        log(f"started for {self.paths.home}; app-server from {self.managed_binary}")
        self.spawn()
        self.publish()
        while self.state not in (KeeperState.STOPPED, KeeperState.FAILED):
            timeout = self.next_deadline() - time.monotonic()
            for signum in self.inbox.wait(max(timeout, 0)):
                self.on_signal(signum)
            self.reap()
            self.on_deadlines()
        return 0 if self.state is KeeperState.STOPPED else 1

    def next_deadline(self) -> float:
        deadlines = [
            self.next_health_check,
            self.next_log_check,
            *(
                moment
                for moment in (
                    self.ready_deadline,
                    self.next_probe if self.probe is None else None,
                    self.grace_deadline,
                    self.backoff_until,
                )
                if moment is not None
            ),
        ]
        return min(deadlines)

    def handle(self, event: Event) -> None:
        step = transition(self.state, event)
        if step.state is not self.state:
            log(f"{self.state.value} -> {step.state.value} ({event.value})")
            self.state = step.state
            self.state_since = utc_timestamp()
        for action in step.actions:
            self.act(action)
        self.publish()

    # -- facts into events -----------------------------------------------------------

    def on_signal(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            return  # reap() follows
        name = signal_name(signum)
        if signum in STOP_SIGNALS:
            log(f"{name}: stopping")
            self.pending_reason = "stopped"
            self.handle(Event.STOP)
        elif signum == signal.SIGHUP:
            log("SIGHUP: restarting the app-server")
            self.pending_reason = "restart requested (SIGHUP)"
            self.handle(Event.RESTART)
        elif signum == signal.SIGUSR1:
            log(self.describe())
            report_modules()
            self.next_probe = time.monotonic()
        else:
            log(f"{name}: ignored")

    def describe(self) -> str:
        busy = len(self.app_server_descendants())
        return (
            f"state {self.state.value}, app-server pid {self.child_pid}, "
            f"{self.restarts} restarts, {count_processes(busy)} below the app-server"
        )

    def reap(self) -> None:
        """Collect every exit: the app-server's, a probe's, and any orphan's."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.child_pid:
                self.on_app_server_exit(status)
            elif self.probe is not None and pid == self.probe.pid:
                self.on_probe_result(os.waitstatus_to_exitcode(status) == 0)

    def on_app_server_exit(self, status: int) -> None:
        signum = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        description = describe_exit(code, signum)
        ran = time.monotonic() - self.child_started
        kind = exit_kind(code, signum, asked=self.asked_reason is not None)
        now = time.monotonic()
        crash_loop = False
        if kind is ExitKind.CRASH:
            reason = "crashed"
            crash_loop = self.note_failure(now, ran)
        elif kind is ExitKind.DELIBERATE:
            reason = "stopped by someone else"
        else:
            reason = self.asked_reason or "stopped"
        self.last_exit = ExitReport(utc_timestamp(), description, reason)
        if kind is ExitKind.CRASH:
            self.failed_exits.append(self.last_exit)
        log(f"app-server pid {self.child_pid} exited: {description} ({reason}) after {ran:.1f} s")
        self.child_pid = None
        self.asked_reason = None
        self.ready_deadline = self.next_probe = self.grace_deadline = None
        self.end_probe()
        self.handle(exit_event(kind, crash_loop))

    def note_failure(self, now: float, ran: float) -> bool:
        """Count a crash or a hang; True when it makes a crash loop."""
        self.failure_times = [*self.failure_times, now][-max(self.policy.burst, 1) :]
        self.consecutive = consecutive_failures(self.consecutive, ran)
        if is_crash_loop(self.failure_times, now, self.policy):
            self.failure = (
                f"{len(self.failure_times)} failures within {self.policy.window:g} s "
                "(crash loop); not restarting"
            )
            return True
        return False

    def on_probe_result(self, answered: bool) -> None:
        assert self.probe is not None
        version = self.probe.version()
        self.probe = None
        now = time.monotonic()
        if self.child_pid is None:
            return
        if answered:
            self.probe_failures = 0
            if self.state in (KeeperState.LAUNCHING, KeeperState.STARTING):
                log(f"app-server pid {self.child_pid} answers (version {version or '?'})")
                self.ready_deadline = None
                if version and version != self.record.version:
                    self.record = self.record.with_version(version)
                self.handle(Event.READY)
            self.next_probe = now + self.watchdog_interval
            return
        if self.state in (KeeperState.LAUNCHING, KeeperState.STARTING):
            self.next_probe = now + READY_POLL_SECONDS
            return
        if self.state is not KeeperState.RUNNING:
            return
        self.probe_failures += 1
        log(f"watchdog: app-server pid {self.child_pid} did not answer ({self.probe_failures})")
        if self.probe_failures >= 3:
            self.on_unresponsive("unresponsive")
        else:
            self.next_probe = now + self.watchdog_interval

    def on_unresponsive(self, why: str) -> None:
        now = time.monotonic()
        crash_loop = self.note_failure(now, now - self.child_started)
        self.failed_exits.append(ExitReport(utc_timestamp(), why, "unresponsive"))
        self.pending_reason = "unresponsive"
        self.probe_failures = 0
        self.handle(unresponsive_event(crash_loop))

    def on_deadlines(self) -> None:
        now = time.monotonic()
        if self.grace_deadline is not None and now >= self.grace_deadline:
            self.grace_deadline = None
            self.handle(Event.GRACE_OVER)
        if self.backoff_until is not None and now >= self.backoff_until:
            self.backoff_until = None
            self.handle(Event.BACKOFF_OVER)
        if self.ready_deadline is not None and now >= self.ready_deadline:
            self.ready_deadline = None
            self.end_probe()
            log(
                f"app-server pid {self.child_pid} did not answer within "
                f"{config.START_TIMEOUT_SECONDS:g} s of its start"
            )
            self.on_unresponsive(f"no answer within {config.START_TIMEOUT_SECONDS:g} s")
        if self.next_probe is not None and self.probe is None and now >= self.next_probe:
            self.next_probe = None
            self.start_probe()
        if now >= self.next_health_check:
            self.next_health_check = now + self.watchdog_interval
            self.updater_seen = heal_updater(self.paths, self.updater_seen)
        if now >= self.next_log_check:
            self.next_log_check = now + LOG_CHECK_SECONDS
            bound_logs(self.paths, self.log_settings)

    # -- actions -----------------------------------------------------------------------

    def act(self, action: Action) -> None:
        if action is Action.SPAWN:
            self.restarts += 1
            self.spawn()
        elif action is Action.TERMINATE:
            self.signal_app_server(signal.SIGTERM)
            # As systemd does: a stopped (SIGSTOP) app-server must run to handle TERM.
            self.signal_app_server(signal.SIGCONT)
            pause_point("keeper-terminating")
            self.grace_deadline = time.monotonic() + self.grace
        elif action is Action.KILL:
            self.signal_app_server(signal.SIGKILL)
            self.grace_deadline = time.monotonic() + config.KILL_WAIT_SECONDS
        elif action is Action.WAIT_BACKOFF:
            delay = restart_delay(self.consecutive, self.policy)
            log(f"restarting the app-server in {delay:g} s")
            self.backoff_until = time.monotonic() + delay
        elif action is Action.END_DESCENDANTS:
            self.end_descendants()
        elif action is Action.EXIT:
            self.finish()

    def spawn(self) -> None:
        argv = [self.managed_binary, "app-server", "--listen", "unix://"]
        if self.record.remote_control_enabled:
            argv[1:1] = ["--enable", "remote_control"]
        pid = spawn_app_server(argv, child_environment(), self.lock_fds, HANDLED_SIGNALS)
        self.child_pid = pid
        self.child_started = time.monotonic()
        self.asked_reason = None
        self.probe_failures = 0
        self.ready_deadline = self.child_started + config.START_TIMEOUT_SECONDS
        self.next_probe = self.child_started + READY_POLL_SECONDS
        live = identity_of(pid)
        self.record = self.record.replace(
            app_server=ChildRecord(pid, live.start_time if live else time.time(), start_ticks(pid)),
        )
        log(f"launched app-server pid {pid}: {' '.join(argv)}")
        pause_point("keeper-spawned")

    def signal_app_server(self, signum: int) -> None:
        # Our own unreaped child: its pid cannot have been reused.
        if self.child_pid is None:
            return
        self.asked_reason = self.asked_reason or self.pending_reason or "stopped"
        signal_process(self.child_pid, signum)

    def app_server_descendants(self) -> list[int]:
        keep = {self.child_pid, self.probe.pid if self.probe else None}
        return [proc.pid for proc in descendants(os.getpid()) if proc.pid not in keep]

    def end_descendants(self) -> None:
        """TERM what is left below the keeper, a short grace, KILL, and reap it all."""
        self.end_probe()
        left = self.app_server_descendants()
        if not left:
            return
        log(f"ending {count_processes(len(left))} left by the app-server: {left}")
        for pid in left:
            signal_process(pid, signal.SIGTERM)
        pause_point("keeper-ending")
        deadline = time.monotonic() + min(DESCENDANT_GRACE_SECONDS, self.grace)
        while self.app_server_descendants() and time.monotonic() < deadline:
            self.inbox.wait(0.05)  # SIGCHLD wakes it; other signals wait their turn
            self.reap_orphans()
        for pid in self.app_server_descendants():
            signal_process(pid, signal.SIGKILL)
        deadline = time.monotonic() + config.KILL_WAIT_SECONDS
        while self.app_server_descendants() and time.monotonic() < deadline:
            self.inbox.wait(0.05)
            self.reap_orphans()

    def reap_orphans(self) -> None:
        """Reap while ending descendants (the app-server is gone by then)."""
        try:
            while os.waitpid(-1, os.WNOHANG)[0] != 0:
                pass
        except ChildProcessError:
            pass

    def finish(self) -> None:
        self.end_probe()
        remove_stale_socket(self.paths.socket_path)
        if self.state is KeeperState.FAILED:
            log(f"giving up: {self.failure_reason()}")
        else:
            log("stopped")

    # -- probes ----------------------------------------------------------------------

    def start_probe(self) -> None:
        if self.child_pid is None:
            return
        timeout = (
            watchdog_probe_timeout(self.watchdog_interval)
            if self.state is KeeperState.RUNNING
            else min(config.PROBE_TIMEOUT_SECONDS, config.START_TIMEOUT_SECONDS)
        )
        title = f"codexd probe {self.paths.home}"
        self.probe = Probe.start(
            self.paths.socket_path, timeout, title, self.lock_fds, HANDLED_SIGNALS
        )

    def end_probe(self) -> None:
        if self.probe is not None:
            self.probe.end()
            self.probe = None

    # -- state for status, version and the updater -------------------------------------

    def retry_at(self) -> str | None:
        """When the app-server starts again, while the keeper waits out a delay."""
        if self.state is not KeeperState.BACKOFF or self.backoff_until is None:
            return None
        return utc_timestamp(time.time() + max(self.backoff_until - time.monotonic(), 0.0))

    def failure_reason(self) -> str:
        """Why the keeper gave up: a crash loop, or its first app-server never answered."""
        if self.failure is not None:
            return self.failure
        last = f" ({self.last_exit.description})" if self.last_exit else ""
        return f"the app-server did not start{last}"

    def publish(self) -> None:
        report = KeeperReport(
            state=self.state.value,
            since=self.state_since,
            restarts=self.restarts,
            last_exit=self.last_exit,
            failure=self.failure_reason() if self.state is KeeperState.FAILED else None,
            failed_exits=tuple(self.failed_exits[-self.policy.burst :])
            if self.state is KeeperState.FAILED
            else (),
            retry_at=self.retry_at(),
        )
        if self.state is KeeperState.STOPPED:
            remove_record(self.paths.app_server_record)
            return
        running = self.child_pid is not None
        self.record = self.record.replace(
            keeper=report, app_server=self.record.app_server if running else None
        )
        try:
            write_record(self.paths.app_server_record, self.record)
        except StateFileError as error:
            log(str(error))


def run_keeper(home: str | os.PathLike[str]) -> int:
    paths = WorkerPaths(os.fspath(home))
    set_title(f"codexd keeper {home}")
    lock = lock_path_for(paths.app_server_record)
    keep_lock_across_exec(lock, keep=False)
    # Inherited by the app-server: clients holding many connections must not starve it.
    before, after = raise_open_file_limit()
    if after != before:
        log(f"raised the open files limit from {before} to {after}")
    set_child_subreaper(True)
    record = read_record(paths.app_server_record)
    if record is None or record.pid != os.getpid():
        log(f"{paths.app_server_record} does not name this keeper; exiting")
        return 1
    return Keeper(paths, record, open_fds_of(lock)).run()
