"""The lifecycle operations: gather facts, ask `decisions`, carry out the answer.

Every mutating operation runs under `daemon.lock`, taken before the first probe
so that what it observes cannot change under it; `version` takes no lock.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from supervisor import config
from supervisor.config import PAUSE_ENV
from supervisor.control_socket import ProbeError, ProbeInfo, probe, unreachable_message
from supervisor.decisions import (
    StartAction,
    StopStep,
    is_managed,
    is_unmanaged_server,
    next_stop_step,
    remote_control_plan,
    start_action,
)
from supervisor.errors import DaemonError
from supervisor.faults import pause_point
from supervisor.identity import identity_of, process_state
from supervisor.locks import (
    FlockLock,
    LockFailed,
    LockTimeout,
    acquire_naming_holder,
    lock_holders,
)
from supervisor.managed import managed_digest, managed_version, require_managed_binary
from supervisor.output import (
    BootstrapOutput,
    LifecycleOutput,
    LifecycleStatus,
    RemoteControlOutput,
    UnpersistOutput,
)
from supervisor.paths import HomePaths, lock_path_for
from supervisor.pidrecord import PidRecord, read_record, remove_record, write_record
from supervisor.process_handle import ProcessHandle
from supervisor.settings import Settings, load_settings, save_settings
from supervisor.statefile import StateFileError, prepare_state_dir
from supervisor.worker_state import Observation, observe_worker

if TYPE_CHECKING:
    from supervisor.persistence import PersistenceTools, PersistResult

UPDATER_ARGS = ("app-server", "daemon", "pid-update-loop")
UNMANAGED_MESSAGE = "app server is running but is not managed by codexd"
LOG_TAIL_LINES = 20


class AppServerExited(DaemonError):
    """The app-server exited before it answered."""


class Daemon:
    """One CODEX_HOME's app-server lifecycle."""

    def __init__(self, paths: HomePaths) -> None:
        self.paths = paths

    # -- facts -----------------------------------------------------------------

    def try_probe(self) -> ProbeInfo | None:
        try:
            return probe(self.paths.socket_path, timeout=config.PROBE_TIMEOUT_SECONDS)
        except ProbeError:
            return None

    def observe(self) -> Observation:
        return observe_worker(self.paths.app_server_record)

    def managed_version(self) -> str | None:
        return managed_version(self.paths.managed_binary, self.paths.managed_binary_cache)

    def executable_digest(self, executable: Path) -> str:
        digest = managed_digest(executable, self.paths.managed_binary_cache)
        if digest is None:
            raise DaemonError(f"cannot read the managed binary {executable}")
        return digest

    def load_settings(self) -> Settings:
        try:
            return load_settings(self.paths.settings_file)
        except StateFileError as error:
            raise DaemonError(f"{error}; fix or remove it, it was left unchanged") from error

    # -- locking ---------------------------------------------------------------

    @contextlib.contextmanager
    def operation_lock(self, acquire: Callable[[FlockLock], None] | None = None) -> Iterator[None]:
        """Hold daemon.lock. `acquire` replaces the default wait (up to
        LOCK_TIMEOUT_SECONDS), for the updater, which must stay responsive to SIGTERM."""
        prepare_state_dir(self.paths)
        lock = FlockLock(self.paths.daemon_lock)
        try:
            if acquire is None:
                acquire_naming_holder(
                    lock, config.LOCK_TIMEOUT_SECONDS, "the daemon operation lock", _notice
                )
            else:
                acquire(lock)
        except LockTimeout as error:
            raise DaemonError(str(error)) from error
        except LockFailed as error:
            raise DaemonError(str(error)) from error
        try:
            pause_point("locked")
            # Every mutating command and every updater pass keeps the logs bounded.
            from supervisor.logs import rotate_if_needed  # `version` takes no lock: skip it

            rotate_if_needed(self.paths)
            yield
        finally:
            lock.release()

    # -- operations ------------------------------------------------------------

    def start(self) -> LifecycleOutput:
        with self.operation_lock():
            settings = self.load_settings()
            observation = self.observe()
            info = self.try_probe()
            action = start_action(observation.state, info is not None)
            if action is StartAction.REPORT_RUNNING:
                assert info is not None
                return self.lifecycle_output(
                    LifecycleStatus.ALREADY_RUNNING, is_managed(observation.state), info
                )
            record = self.running_record() if action is StartAction.WAIT_UNTIL_READY else None
            if record is not None:
                try:
                    info = self.wait_until_ready(record.pid)
                    return self.lifecycle_output(LifecycleStatus.ALREADY_RUNNING, True, info)
                except AppServerExited:
                    pass  # it was on its way out (a stop, a kill by hand): start anew
            pid, info = self.launch_app_server(settings)
            return self.lifecycle_output(LifecycleStatus.STARTED, True, info, pid)

    def restart(self) -> LifecycleOutput:
        with self.operation_lock():
            settings = self.load_settings()
            self.refuse_unmanaged()
            require_managed_binary(self.paths.managed_binary)
            self.stop_app_server()
            pid, info = self.launch_app_server(settings)
            return self.lifecycle_output(LifecycleStatus.RESTARTED, True, info, pid)

    def stop(self) -> LifecycleOutput:
        with self.operation_lock():
            self.refuse_unmanaged()
            stopped = self.stop_app_server()
            status = LifecycleStatus.STOPPED if stopped else LifecycleStatus.NOT_RUNNING
            return self.lifecycle_output(status, stopped, None)

    def version(self) -> LifecycleOutput:
        try:
            info = probe(self.paths.socket_path, timeout=config.PROBE_TIMEOUT_SECONDS)
        except ProbeError as error:
            state = None if error.peer is None else process_state(error.peer.pid)
            raise DaemonError(unreachable_message(error, state)) from error
        managed = is_managed(self.observe().state)
        return self.lifecycle_output(LifecycleStatus.RUNNING, managed, info)

    def set_remote_control(self, wanted: bool) -> RemoteControlOutput:
        with self.operation_lock():
            settings = self.load_settings()
            self.refuse_unmanaged()
            running = self.running_record()
            plan = remote_control_plan(
                settings.remote_control_enabled,
                wanted,
                None if running is None else bool(running.remote_control_enabled),
            )
            if plan.save_setting:
                settings = settings.with_remote_control(wanted)
                save_settings(self.paths.settings_file, settings)
            info: ProbeInfo | None = None
            if plan.restart_server:
                require_managed_binary(self.paths.managed_binary)
                self.stop_app_server()
                _, info = self.launch_app_server(settings)
            elif running is not None:
                info = self.wait_until_ready(running.pid)
            return RemoteControlOutput(
                status=plan.status,
                managed=info is not None,
                remote_control_enabled=wanted,
                socket_path=self.paths.socket_path,
                app_server_version=None if info is None else info.app_server_version,
            )

    def bootstrap(
        self, remote_control: bool | None, persist_with: PersistenceTools | None = None
    ) -> BootstrapOutput:
        """Persist the setting (None keeps the saved one), (re)start the app-server, then
        (re)start the updater; with `persist_with`, also come back after a reboot. One
        hold of daemon.lock for all of it."""
        with self.operation_lock():
            require_managed_binary(self.paths.managed_binary)
            settings = self.load_settings()
            if remote_control is not None:
                settings = settings.with_remote_control(remote_control)
            self.refuse_unmanaged()
            save_settings(self.paths.settings_file, settings)
            self.stop_app_server()
            _, info = self.launch_app_server(settings)
            self.stop_worker("updater", self.paths.updater_record)
            self.launch_updater()
            persisted = None if persist_with is None else self.persist(persist_with)
            return BootstrapOutput(
                remote_control_enabled=settings.remote_control_enabled,
                managed_codex_path=self.paths.managed_binary,
                managed_codex_version=self.managed_version(),
                socket_path=self.paths.socket_path,
                app_server_version=info.app_server_version,
                persistence=None if persisted is None else persisted.kind.value,
                warning=None if persisted is None else persisted.warning,
            )

    def unpersist(self, tools: PersistenceTools) -> UnpersistOutput:
        """Remove this home's unit and cron line; running processes are left alone."""
        from supervisor.persistence import unpersist

        with self.operation_lock():
            return UnpersistOutput([kind.value for kind in unpersist(self.paths, tools)])

    # -- steps (callers hold daemon.lock) --------------------------------------

    def persist(self, tools: PersistenceTools) -> PersistResult:
        from supervisor.persistence import persist

        try:
            return persist(self.paths, tools)
        except DaemonError as error:
            raise DaemonError(f"bootstrapped, but not persisted: {error}") from error

    def refuse_unmanaged(self) -> None:
        # Our own server needs no probe: only a socket we do not account for does.
        state = self.observe().state
        if is_managed(state):
            return
        if is_unmanaged_server(state, self.try_probe() is not None):
            raise DaemonError(f"{UNMANAGED_MESSAGE} (socket {self.paths.socket_path})")

    def launch_updater(self) -> int:
        pid, _ = self.launch_worker(
            "updater", self.paths.updater_record, self.paths.updater_log, list(UPDATER_ARGS)
        )
        return pid

    def launch_app_server(self, settings: Settings) -> tuple[int, ProbeInfo]:
        """Launch the managed binary's app-server and wait until it answers."""
        args = ["app-server", "--listen", "unix://"]
        if settings.remote_control_enabled:
            args = ["--enable", "remote_control", *args]
        pid, log_offset = self.launch_worker(
            "app-server",
            self.paths.app_server_record,
            self.paths.app_server_log,
            args,
            remote_control_enabled=settings.remote_control_enabled,
            socket_path=str(self.paths.socket_path),
        )
        pause_point("launched")
        return pid, self.wait_until_ready(pid, log_offset)

    def launch_worker(
        self,
        name: str,
        record_path: Path,
        log_path: Path,
        args: list[str],
        remote_control_enabled: bool | None = None,
        socket_path: str | None = None,
    ) -> tuple[int, int]:
        """Launch a worker from the managed binary; its pid, and where its output starts
        in its log (for quoting the log if it fails)."""
        # Imported here: only launching commands need them.
        from supervisor.launcher import WorkerSpec, launch
        from supervisor.logs import rotate_before_launch

        executable = require_managed_binary(self.paths.managed_binary)
        remove_record(record_path)  # stale: its lock is free
        rotate_before_launch(log_path)  # nobody writes it now
        log_offset = _file_size(log_path)
        pid = launch(
            WorkerSpec(
                name=name,
                record_path=record_path,
                log_path=log_path,
                executable=executable,
                executable_digest=self.executable_digest(executable),
                args=args,
                env=worker_environment(self.paths.home),
                remote_control_enabled=remote_control_enabled,
                socket_path=socket_path,
            )
        )
        return pid, log_offset

    def running_record(self, record_path: Path | None = None) -> PidRecord | None:
        """The record of the worker that holds its lock; None when none does. A worker
        still starting is waited for until its record names it."""
        record_path = record_path or self.paths.app_server_record
        deadline = time.monotonic() + config.START_TIMEOUT_SECONDS
        while True:
            observation = observe_worker(record_path)
            if observation.record is not None or not is_managed(observation.state):
                return observation.record
            if time.monotonic() >= deadline:
                raise DaemonError(unnamed_holder_message(record_path))
            time.sleep(config.READY_POLL_SECONDS)

    def wait_until_ready(self, pid: int, log_offset: int | None = None) -> ProbeInfo:
        """Until the app-server answers `initialize`, it exits, or START_TIMEOUT passes."""
        deadline = time.monotonic() + config.START_TIMEOUT_SECONDS
        with ProcessHandle(pid) as handle:
            while True:
                remaining = deadline - time.monotonic()
                try:
                    info = probe(
                        self.paths.socket_path,
                        timeout=max(min(config.PROBE_TIMEOUT_SECONDS, remaining), 0.05),
                    )
                except ProbeError as error:
                    last_error = error
                else:
                    self.note_version(pid, info)
                    return info
                # The wait doubles as the poll interval: an exit ends it at once.
                exited = handle.wait(min(config.READY_POLL_SECONDS, max(remaining, 0)))
                if exited or time.monotonic() >= deadline:
                    what = (
                        "exited"
                        if exited
                        else (f"did not answer within {config.START_TIMEOUT_SECONDS:g} s")
                    )
                    raise (AppServerExited if exited else DaemonError)(
                        f"app-server (pid {pid}) {what} on {self.paths.socket_path}: "
                        f"{last_error}{self.log_tail(log_offset)}"
                    )

    def note_version(self, pid: int, info: ProbeInfo) -> None:
        """Write the answering version into the app-server's record."""
        with contextlib.suppress(StateFileError):
            record = read_record(self.paths.app_server_record)
            if (
                record is not None
                and record.pid == pid
                and record.version != info.app_server_version
            ):
                write_record(
                    self.paths.app_server_record, record.with_version(info.app_server_version)
                )

    def stop_app_server(self) -> bool:
        """Stop the managed app-server, if one runs; False when none did."""
        return self.stop_worker("app-server", self.paths.app_server_record)

    def stop_worker(self, name: str, record_path: Path) -> bool:
        """Stop a worker, if one runs; False when none did. Clears a stale record (its
        worker is dead) without signalling anyone."""
        grace = config.stop_grace_seconds()
        record = self.running_record(record_path)
        if record is None:
            remove_record(record_path)  # a dead worker's, if any: its lock is free
            return False
        stop_with_grace(name, record, grace)
        remove_record(record_path)
        return True

    def log_tail(self, offset: int | None) -> str:
        try:
            with open(self.paths.app_server_log, "rb") as log:
                if offset is not None:
                    log.seek(offset)
                lines = log.read().decode(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        except OSError:
            return ""
        if not lines:
            return f" ({self.paths.app_server_log} is empty)"
        quoted = "\n".join(f"  {line}" for line in lines)
        return f"\nlast lines of {self.paths.app_server_log}:\n{quoted}"

    # -- output ------------------------------------------------------------------

    def lifecycle_output(
        self,
        status: LifecycleStatus,
        managed: bool,
        info: ProbeInfo | None,
        pid: int | None = None,
    ) -> LifecycleOutput:
        return LifecycleOutput(
            status=status,
            managed=managed,
            managed_codex_path=self.paths.managed_binary,
            managed_codex_version=self.managed_version(),
            socket_path=self.paths.socket_path,
            pid=pid,
            app_server_version=None if info is None else info.app_server_version,
        )


def stop_with_grace(name: str, record: PidRecord, grace_seconds: float) -> None:
    """SIGTERM, the grace window, SIGKILL, then an error if it still lives.

    The process is signalled only when its start time and boot id match the record:
    a pid reused by an unrelated process is never touched."""
    with ProcessHandle(record.pid) as handle:
        live = identity_of(record.pid)
        if live is None or not live.same_process(record.identity):
            return  # already gone
        handle.send(signal.SIGTERM)
        pause_point("signalled")
        killed = False
        wait = grace_seconds
        while True:
            step = next_stop_step(handle.wait(wait), killed)
            if step is StopStep.DONE:
                return
            if step is StopStep.GIVE_UP:
                raise DaemonError(
                    f"{name} (pid {record.pid}) is still alive {config.KILL_WAIT_SECONDS:g} s "
                    "after SIGKILL"
                )
            handle.send(signal.SIGKILL)
            killed, wait = True, config.KILL_WAIT_SECONDS


def unnamed_holder_message(record_path: Path) -> str:
    """Why a held lock has no live worker to show for it, naming who holds it: most
    likely a child the worker started, which inherited the lock's fd and outlived it."""
    lock = lock_path_for(record_path)
    holders = ", ".join(str(pid) for pid in lock_holders(lock)) or "an unknown process"
    return (
        f"{lock} is held (pid {holders}) but {record_path} names no live worker: a "
        "worker that never finished starting, or a child of a dead worker that kept the "
        "lock; stop that process to continue"
    )


def _notice(message: str) -> None:
    print(f"codexd: {message}", file=sys.stderr, flush=True)


def worker_environment(home: Path) -> dict[str, str]:
    """The CLI's environment, pinned to this home, without test hooks."""
    env = {key: value for key, value in os.environ.items() if key != PAUSE_ENV}
    env["CODEX_HOME"] = str(home)
    return env


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
