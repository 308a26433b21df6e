"""The lifecycle operations: gather facts, ask `decisions`, carry out the answer.

Every mutating operation runs under `daemon.lock`, taken before the first probe
so that what it observes cannot change under it; `version` takes no lock.

The app-server runs under a keeper (workers/keeper.py): `app-server.pid` names the
keeper, and starting or stopping the app-server means launching or stopping its keeper.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from supervisor import config
from supervisor.control_socket import (
    ProbeError,
    ProbeInfo,
    Unreachable,
    probe,
    unreachable_message,
)
from supervisor.decisions import (
    StartAction,
    WorkerState,
    is_managed,
    is_unmanaged_server,
    keeper_at_work_message,
    remote_control_plan,
    start_action,
)
from supervisor.errors import DaemonError
from supervisor.faults import pause_point
from supervisor.identity import process_state
from supervisor.locks import FlockLock, LockFailed, LockTimeout, acquire_naming_holder
from supervisor.managed import managed_digest, managed_version, require_managed_binary
from supervisor.output import (
    BootstrapOutput,
    LifecycleOutput,
    LifecycleStatus,
    RemoteControlOutput,
    StopAllOutput,
    UnpersistOutput,
)
from supervisor.paths import HomePaths, lock_path_for
from supervisor.pidrecord import PidRecord, read_record, remove_record
from supervisor.process_handle import ProcessHandle
from supervisor.settings import Settings, load_settings, save_settings
from supervisor.statefile import StateFileError, prepare_state_dir
from supervisor.takeover import identify, refusal, take_over
from supervisor.worker_control import (
    KEEPER_EXIT_MARGIN_SECONDS,
    UPDATER_ARGS,
    end_leftovers,
    is_codexd_release,
    keeper_command,
    proven_worker,
    stop_with_grace,
    unnamed_holder_message,
    worker_environment,
)
from supervisor.worker_state import Observation, observe_worker

TYPE_CHECKING = False
if TYPE_CHECKING:
    from supervisor.persistence import PersistenceTools, PersistResult

LOG_TAIL_LINES = 20


class AppServerExited(DaemonError):
    """The keeper exited before its app-server answered."""


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

    def start(self, takeover: bool = False) -> LifecycleOutput:
        with self.operation_lock():
            settings = self.load_settings()
            if takeover:
                self.refuse_unmanaged(takeover=True)
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
                self.hurry_keeper(record)
                try:
                    info = self.wait_until_ready(record.pid)
                    return self.lifecycle_output(LifecycleStatus.ALREADY_RUNNING, True, info)
                except AppServerExited:
                    pass  # it was on its way out (a stop, a kill by hand): start anew
            pid, info = self.launch_app_server(settings)
            return self.lifecycle_output(LifecycleStatus.STARTED, True, info, pid)

    def restart(self, takeover: bool = False) -> LifecycleOutput:
        with self.operation_lock():
            settings = self.load_settings()
            self.refuse_unmanaged(takeover)
            require_managed_binary(self.paths.managed_binary)
            self.stop_app_server()
            pid, info = self.launch_app_server(settings)
            return self.lifecycle_output(LifecycleStatus.RESTARTED, True, info, pid)

    def stop(self) -> LifecycleOutput:
        if not self.paths.state_dir.is_dir():
            # Nothing of ours ever ran here: say so without creating anything.
            self.refuse_unmanaged()
            return self.lifecycle_output(LifecycleStatus.NOT_RUNNING, False, None)
        with self.operation_lock():
            self.refuse_unmanaged()
            stopped = self.stop_app_server()
            status = LifecycleStatus.STOPPED if stopped else LifecycleStatus.NOT_RUNNING
            return self.lifecycle_output(status, stopped, None)

    def version(self) -> LifecycleOutput:
        try:
            info = probe(self.paths.socket_path, timeout=config.PROBE_TIMEOUT_SECONDS)
        except ProbeError as error:
            observation = self.observe() if self.paths.state_dir.is_dir() else None
            if observation is not None and observation.state is WorkerState.FAILED:
                assert observation.record is not None
                raise DaemonError(self.failure_message(observation.record)) from error
            # Nothing listens because our keeper is at work on it: say so. Anything else
            # seen there (a foreign listener, a hang) says more than the keeper can.
            at_work = (
                _keeper_at_work(observation) if error.reason is Unreachable.NOT_LISTENING else None
            )
            if at_work is not None:
                raise DaemonError(at_work) from error
            state = None if error.peer is None else process_state(error.peer.pid)
            raise DaemonError(unreachable_message(error, state)) from error
        managed = is_managed(self.observe().state) if self.paths.state_dir.is_dir() else False
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
        self,
        remote_control: bool | None,
        auto_update: bool | None = None,
        persist_with: PersistenceTools | None = None,
        takeover: bool = False,
    ) -> BootstrapOutput:
        """Save the settings (None keeps the saved one), (re)start the app-server, then
        (re)start the updater unless auto-update is off; with `persist_with`, also come
        back after a reboot. One hold of daemon.lock for all of it."""
        with self.operation_lock():
            managed = require_managed_binary(self.paths.managed_binary)
            if not is_codexd_release(managed):
                raise DaemonError(
                    f"bootstrap needs a managed install made by install.sh, and {managed} "
                    "is not one (the updater runs from it): run install.sh, then bootstrap"
                )
            settings = self.load_settings()
            if remote_control is not None:
                settings = settings.with_remote_control(remote_control)
            if auto_update is not None:
                settings = settings.with_auto_update(auto_update)
            self.refuse_unmanaged(takeover)
            save_settings(self.paths.settings_file, settings)
            self.stop_app_server()
            _, info = self.launch_app_server(settings)
            self.stop_worker("updater", self.paths.updater_record)
            if settings.auto_update_enabled:
                self.launch_updater()
            persisted = None if persist_with is None else self.persist(persist_with)
            return BootstrapOutput(
                remote_control_enabled=settings.remote_control_enabled,
                auto_update_enabled=settings.auto_update_enabled,
                managed_codex_path=self.paths.managed_binary,
                managed_codex_version=self.managed_version(),
                socket_path=self.paths.socket_path,
                app_server_version=info.app_server_version,
                persistence=None if persisted is None else persisted.kind.value,
                warning=None if persisted is None else persisted.warning,
            )

    def stop_all(self) -> StopAllOutput:
        """The updater, then the app-server (its keeper); persistence stays. The updater
        goes first and daemon.lock is held throughout, so neither relaunches the other."""
        if not self.paths.state_dir.is_dir():
            self.refuse_unmanaged()
            return StopAllOutput(app_server_stopped=False, updater_stopped=False)
        with self.operation_lock():
            self.refuse_unmanaged()
            updater = self.stop_worker("updater", self.paths.updater_record)
            app_server = self.stop_app_server()
            return StopAllOutput(app_server_stopped=app_server, updater_stopped=updater)

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

    def refuse_unmanaged(self, takeover: bool = False) -> None:
        """Refuse when an app-server codexd did not start answers on the socket, naming
        it; with `takeover`, stop it instead (see supervisor/takeover.py)."""
        # Our own server needs no probe: only a socket we do not account for does.
        state = self.observe().state if self.paths.state_dir.is_dir() else WorkerState.NOT_RUNNING
        if is_managed(state):
            return
        info = self.try_probe()
        if not is_unmanaged_server(state, info is not None):
            return
        assert info is not None
        server = identify(self.paths.socket_path, info)
        if not takeover:
            raise DaemonError(refusal(server))
        take_over(server, config.stop_grace_seconds())

    def launch_updater(
        self, while_detaching: contextlib.AbstractContextManager[object] | None = None
    ) -> int:
        """Launch the updater from the managed binary (it re-executes itself from there
        after an update). `while_detaching`: see `launcher.launch`."""
        managed = require_managed_binary(self.paths.managed_binary)
        return self.launch_worker(
            "updater",
            self.paths.updater_record,
            self.paths.updater_log,
            [str(managed), *UPDATER_ARGS],
            while_detaching=while_detaching,
        )

    def launch_app_server(self, settings: Settings) -> tuple[int, ProbeInfo]:
        """Launch a keeper for the managed binary's app-server and wait until the
        app-server answers; the keeper's pid and the answer."""
        managed = require_managed_binary(self.paths.managed_binary)
        self.clear_record(self.paths.app_server_record)
        log_offset = _file_size(self.paths.app_server_log)
        pid = self.launch_worker(
            "keeper",
            self.paths.app_server_record,
            self.paths.app_server_log,
            keeper_command(managed),
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
        command: list[str],
        remote_control_enabled: bool | None = None,
        socket_path: str | None = None,
        while_detaching: contextlib.AbstractContextManager[object] | None = None,
    ) -> int:
        """Launch a detached worker; its pid once it holds its lock."""
        # Imported here: only launching commands need them.
        from supervisor.launcher import WorkerSpec, launch
        from supervisor.logs import rotate_before_launch

        executable = require_managed_binary(self.paths.managed_binary)
        self.clear_record(record_path)
        rotate_before_launch(log_path)  # nobody writes it now
        return launch(
            WorkerSpec(
                name=name,
                record_path=record_path,
                log_path=log_path,
                command=command,
                executable=executable,
                executable_digest=self.executable_digest(executable),
                env=worker_environment(self.paths.home),
                remote_control_enabled=remote_control_enabled,
                socket_path=socket_path,
            ),
            while_detaching,
        )

    def clear_record(self, record_path: Path) -> None:
        """Remove the record of a worker that is gone (its lock is free), ending what its
        session still runs."""
        with contextlib.suppress(StateFileError):
            record = read_record(record_path)
            if record is not None:
                end_leftovers(record, self.paths.home)
        remove_record(record_path)

    def running_record(self, record_path: Path | None = None) -> PidRecord | None:
        """The record of the worker that holds its lock; None when none does. A worker
        still starting is waited for until its record names it."""
        record_path = record_path or self.paths.app_server_record
        deadline = time.monotonic() + config.START_TIMEOUT_SECONDS
        while True:
            observation = observe_worker(record_path)
            if observation.live_record is not None or not is_managed(observation.state):
                return observation.live_record
            if time.monotonic() >= deadline:
                raise DaemonError(unnamed_holder_message(record_path))
            time.sleep(config.READY_POLL_SECONDS)

    def hurry_keeper(self, record: PidRecord) -> None:
        """A keeper waiting out a restart delay restarts its app-server now: `start` asks
        for it to run."""
        if record.keeper is None or record.keeper.state != "backoff":
            return
        if proven_worker(record, lock_path_for(self.paths.app_server_record)):
            with ProcessHandle(record.pid) as handle:
                handle.send(signal.SIGHUP)

    def wait_until_ready(self, pid: int, log_offset: int | None = None) -> ProbeInfo:
        """Until the app-server answers `initialize` and its keeper has seen it answer
        (so a crash from then on is restarted, not a failed start), the keeper exits,
        or START_TIMEOUT passes."""
        deadline = time.monotonic() + config.START_TIMEOUT_SECONDS
        info: ProbeInfo | None = None
        with ProcessHandle(pid) as handle:
            while True:
                remaining = deadline - time.monotonic()
                if info is None:
                    try:
                        info = probe(
                            self.paths.socket_path,
                            timeout=max(min(config.PROBE_TIMEOUT_SECONDS, remaining), 0.05),
                        )
                    except ProbeError as error:
                        last_error = str(error)
                if info is not None:
                    if self.keeper_says_running(pid):
                        return info
                    last_error = "it answers, but its keeper has not seen it answer yet"
                # The wait doubles as the poll interval: an exit ends it at once.
                exited = handle.wait(min(config.READY_POLL_SECONDS, max(remaining, 0)))
                if exited:
                    raise AppServerExited(self.exit_message(pid, log_offset))
                if time.monotonic() >= deadline:
                    raise DaemonError(
                        f"app-server (keeper pid {pid}) did not answer within "
                        f"{config.START_TIMEOUT_SECONDS:g} s on {self.paths.socket_path}: "
                        f"{last_error}{self.log_tail(log_offset)}"
                    )

    def keeper_says_running(self, keeper: int) -> bool:
        try:
            record = read_record(self.paths.app_server_record)
        except StateFileError:
            return False
        return (
            record is not None
            and record.pid == keeper
            and (record.keeper is None or record.keeper.state == "running")
        )

    def exit_message(self, keeper: int, log_offset: int | None) -> str:
        """Why a keeper ended before its app-server answered, from the record it left."""
        with contextlib.suppress(StateFileError):
            record = read_record(self.paths.app_server_record)
            if record is not None and record.pid == keeper and record.failed:
                return self.failure_message(record, log_offset)
        return (
            f"app-server (keeper pid {keeper}) exited before it answered on "
            f"{self.paths.socket_path}{self.log_tail(log_offset)}"
        )

    def failure_message(self, record: PidRecord, log_offset: int | None = None) -> str:
        keeper = record.keeper
        exits = "; ".join(
            f"{report.description} at {report.at}"
            for report in (keeper.failed_exits if keeper else ())
        )
        reason = (keeper.failure if keeper else None) or "it did not start"
        detail = f" (exits: {exits})" if exits else ""
        where = self.log_tail(log_offset) if log_offset is not None else ""
        return (
            f"app-server failed: {reason}{detail}; see {self.paths.app_server_log}, "
            f"then run start{where}"
        )

    def stop_app_server(self) -> bool:
        """Stop the managed app-server (its keeper), if one runs; False when none did."""
        return self.stop_worker("app-server", self.paths.app_server_record)

    def stop_worker(self, name: str, record_path: Path) -> bool:
        """Stop a worker, if one runs; False when none did. Clears a stale record (its
        worker is dead) and what its session left, signalling nobody else."""
        grace = config.stop_grace_seconds()
        if record_path == self.paths.app_server_record:
            # The keeper spends the grace window on its app-server, then ends the rest.
            grace += KEEPER_EXIT_MARGIN_SECONDS
        record = self.running_record(record_path)
        if record is None:
            observation = observe_worker(record_path)
            if observation.state is not WorkerState.FAILED:
                self.clear_record(record_path)
            return False
        stop_with_grace(name, record, record_path, grace)
        self.clear_record(record_path)
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


def _notice(message: str) -> None:
    print(f"codexd: {message}", file=sys.stderr, flush=True)


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _keeper_at_work(observation: Observation | None) -> str | None:
    record = None if observation is None else observation.live_record
    if record is None or record.keeper is None:
        return None
    last = record.keeper.last_exit
    return keeper_at_work_message(
        record.pid,
        record.keeper.state,
        record.keeper.since,
        None if last is None else f"{last.description} ({last.reason})",
    )
