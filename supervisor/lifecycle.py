"""The lifecycle operations: gather facts, ask `decisions`, carry out the answer.

Every mutating operation runs under `daemon.lock`, taken before the first probe
so that what it observes cannot change under it; `version` takes no lock.

The app-server runs under a keeper (workers/keeper.py): `app-server.pid` names the
keeper, and starting or stopping the app-server means launching or stopping its keeper.
`Daemon` holds the operations and the steps its callers compose; carrying a step out
lives beside it: launching and waiting until the app-server answers in worker_launch.py,
stopping in worker_stop.py, what is said when the app-server is not up in
app_server_messages.py.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from supervisor import config
from supervisor.app_server_messages import failure_message, keeper_at_work
from supervisor.control_socket import (
    ProbeError,
    ProbeInfo,
    Unreachable,
    probe,
    unreachable_message,
)
from supervisor.decisions import (
    SocketUse,
    StartAction,
    WorkerState,
    is_managed,
    remote_control_plan,
    start_action,
)
from supervisor.errors import DaemonError
from supervisor.faults import pause_point
from supervisor.identity import process_state
from supervisor.locks import FlockLock, LockFailed, LockTimeout, acquire_naming_holder
from supervisor.managed import managed_version, require_managed_binary
from supervisor.output import (
    BootstrapOutput,
    LifecycleOutput,
    LifecycleStatus,
    RemoteControlOutput,
    StopAllOutput,
    UnpersistOutput,
)
from supervisor.paths import HomePaths
from supervisor.pidrecord import PidRecord
from supervisor.settings import Settings, load_settings, save_settings
from supervisor.statefile import StateFileError, prepare_state_dir
from supervisor.takeover import clear_socket, foreign_listener
from supervisor.worker_control import is_codexd_release
from supervisor.worker_launch import (
    AppServerExited,
    executable_digest,
    hurry_keeper,
    launch_app_server,
    launch_updater,
    require_launchable,
    wait_until_ready,
)
from supervisor.worker_state import Observation, observe_worker
from supervisor.worker_stop import running_record, stop_app_server, stop_worker

TYPE_CHECKING = False
if TYPE_CHECKING:
    from supervisor.persistence import PersistenceTools, PersistResult


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
        return executable_digest(self.paths, executable)

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
            observation = self.observe()
            managed = is_managed(observation.state)
            info = (
                self.try_probe()
                if managed
                else self.refuse_unmanaged(takeover, SocketUse.REPORT, observation.state)
            )
            action = start_action(observation.state, info is not None)
            if action is StartAction.REPORT_RUNNING:
                assert info is not None
                return self.lifecycle_output(LifecycleStatus.ALREADY_RUNNING, managed, info)
            record = self.running_record() if action is StartAction.WAIT_UNTIL_READY else None
            if record is not None:
                hurry_keeper(self.paths, record)
                try:
                    info = wait_until_ready(self.paths, record.pid)
                    # Nothing answered when asked: to the client, it started now.
                    return self.lifecycle_output(LifecycleStatus.STARTED, True, info, record.pid)
                except AppServerExited:
                    pass  # it was on its way out (a stop, a kill by hand): start anew
            self.require_launchable()
            pid, info = self.launch_app_server(settings)
            return self.lifecycle_output(LifecycleStatus.STARTED, True, info, pid)

    def restart(self, takeover: bool = False) -> LifecycleOutput:
        with self.operation_lock():
            settings = self.load_settings()
            self.require_launchable()
            self.refuse_unmanaged(takeover, SocketUse.LAUNCH)
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
                raise DaemonError(failure_message(self.paths, observation.record)) from error
            foreign = foreign_listener(error, observation)
            if foreign is not None:
                raise DaemonError(foreign) from error
            # Nothing listens because our keeper is at work on it: say so. Anything else
            # seen there (a hang, a refusal) says more than the keeper can.
            at_work = (
                keeper_at_work(observation) if error.reason is Unreachable.NOT_LISTENING else None
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
            if plan.restart_server:
                self.require_launchable()  # before anything changes
            if plan.save_setting:
                settings = settings.with_remote_control(wanted)
                save_settings(self.paths.settings_file, settings)
            info: ProbeInfo | None = None
            if plan.restart_server:
                self.stop_app_server()
                _, info = self.launch_app_server(settings)
            elif running is not None:
                info = wait_until_ready(self.paths, running.pid)
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
            self.require_launchable()
            self.refuse_unmanaged(takeover, SocketUse.LAUNCH)
            save_settings(self.paths.settings_file, settings)
            self.stop_app_server()
            _, info = self.launch_app_server(settings)
            stop_worker(self.paths, "updater", self.paths.updater_record)
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
            updater = stop_worker(self.paths, "updater", self.paths.updater_record)
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

    def refuse_unmanaged(
        self,
        takeover: bool = False,
        use: SocketUse = SocketUse.LEAVE,
        state: WorkerState | None = None,
    ) -> ProbeInfo | None:
        """Before anything is stopped or launched: refuse a listener codexd did not
        start that this command would act on or launch into, naming it; with
        `takeover`, stop it instead (see supervisor/takeover.py). The answer of an
        unmanaged app-server `start` reports; None otherwise."""
        if state is None:
            observed = self.paths.state_dir.is_dir()
            state = self.observe().state if observed else WorkerState.NOT_RUNNING
        if is_managed(state):
            return None  # our own server needs no probe: only a socket we do not account for
        return clear_socket(self.paths.socket_path, state, use, takeover)

    # The steps other callers compose (updates.py, manual_update.py, the workers), here
    # where they find them; worker_launch.py and worker_stop.py carry them out.

    def launch_updater(
        self, while_detaching: contextlib.AbstractContextManager[object] | None = None
    ) -> int:
        return launch_updater(self.paths, while_detaching)

    def require_launchable(self) -> None:
        """The managed binary and every part its release runs are there: checked
        before a running app-server is stopped for a launch that could not succeed."""
        require_launchable(self.paths)

    def launch_app_server(self, settings: Settings) -> tuple[int, ProbeInfo]:
        return launch_app_server(self.paths, settings)

    def running_record(self, record_path: Path | None = None) -> PidRecord | None:
        return running_record(record_path or self.paths.app_server_record)

    def stop_app_server(self) -> bool:
        return stop_app_server(self.paths)

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
