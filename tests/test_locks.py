"""FlockLock: lockfile's interface over flock, so the kernel drops a lock however its
holder dies. Other holders are real processes, told through a pipe when to let go."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lockfile
import psutil
import pytest

from supervisor.locks import (
    FlockLock,
)
from tests.conftest import wait_for

REPO = Path(__file__).resolve().parent.parent
CHILD_TIMEOUT_SECONDS = 10.0
# Long enough for a probe loop to run thousands of times on a loaded 2-core machine.
RACE_SECONDS = 0.3

# Holds the lock, says so on stdout, lets go when stdin reaches a line or EOF.
HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from supervisor.locks import FlockLock
    lock = FlockLock(Path(sys.argv[1]))
    lock.acquire(timeout=5)
    print("locked", flush=True)
    sys.stdin.readline()
    lock.release()
    """
)

# Takes the lock, marks it inheritable (or not) and replaces itself with a shell that
# waits for a line on stdin.
EXEC_HOLDER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from supervisor.locks import FlockLock
    lock = FlockLock(Path(sys.argv[1]))
    lock.acquire(timeout=5)
    if sys.argv[2] == "inherit":
        lock.inheritable_fd()
    os.execv("/bin/sh", ["sh", "-c", "read line"])
    """
)

# Probes the lock in a loop until stdin closes.
PROBER = textwrap.dedent(
    """
    import os, sys, threading
    from pathlib import Path
    from supervisor.locks import FlockLock
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    lock = FlockLock(Path(sys.argv[1]))
    print("probing", flush=True)
    while not done.is_set():
        lock.is_locked()
    """
)


def spawn(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def finish(child: subprocess.Popen[str]) -> None:
    if child.poll() is None:
        child.kill()
    child.communicate(timeout=CHILD_TIMEOUT_SECONDS)


@contextmanager
def child_running(script: str, *args: str, ready: str) -> Iterator[subprocess.Popen[str]]:
    """A child that has printed `ready`; killed and reaped however the test ends."""
    child = spawn(script, *args)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == ready
        yield child
    finally:
        finish(child)


def let_go(child: subprocess.Popen[str]) -> None:
    child.communicate(input="\n", timeout=CHILD_TIMEOUT_SECONDS)
    assert child.returncode == 0


@pytest.fixture
def lock_path(tmp_path: Path) -> Path:
    return tmp_path / "daemon.lock"


# -- one process ------------------------------------------------------------------------


def test_acquire_then_release(lock_path: Path) -> None:
    lock = FlockLock(lock_path)
    assert not lock.is_locked()
    lock.acquire()
    assert lock.is_locked()
    assert lock.i_am_locking()
    lock.release()
    assert not lock.is_locked()
    assert not lock.i_am_locking()


def test_context_manager_holds_the_lock_for_the_block(lock_path: Path) -> None:
    lock = FlockLock(lock_path)
    with lock as entered:
        assert entered is lock
        assert lock.i_am_locking()
        assert FlockLock(lock_path).is_locked()
    assert not lock.i_am_locking()
    assert not FlockLock(lock_path).is_locked()


def test_context_manager_releases_when_the_block_raises(lock_path: Path) -> None:
    lock = FlockLock(lock_path)
    with pytest.raises(RuntimeError), lock:
        raise RuntimeError("boom")
    assert not FlockLock(lock_path).is_locked()


def test_lock_file_is_created_0600_and_kept_after_release(lock_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        with FlockLock(lock_path):
            assert lock_path.stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old_umask)
    assert lock_path.exists()


def test_is_locked_is_false_when_the_lock_file_does_not_exist(lock_path: Path) -> None:
    assert not FlockLock(lock_path).is_locked()
    assert not lock_path.exists()


def test_is_locked_probe_leaves_the_lock_free(lock_path: Path) -> None:
    assert not FlockLock(lock_path).is_locked()
    lock = FlockLock(lock_path)
    lock.acquire(timeout=0)
    lock.release()


def test_a_second_lock_object_in_the_same_process_sees_it_locked(lock_path: Path) -> None:
    with FlockLock(lock_path):
        other = FlockLock(lock_path)
        assert other.is_locked()
        assert not other.i_am_locking()
        with pytest.raises(lockfile.AlreadyLocked):
            other.acquire(timeout=0)


def test_release_when_not_locked_raises_not_locked(lock_path: Path) -> None:
    with pytest.raises(lockfile.NotLocked, match=str(lock_path)):
        FlockLock(lock_path).release()


def test_release_twice_raises_not_locked(lock_path: Path) -> None:
    lock = FlockLock(lock_path)
    lock.acquire()
    lock.release()
    with pytest.raises(lockfile.NotLocked):
        lock.release()


def test_break_lock_drops_our_own_hold_and_is_harmless_when_free(lock_path: Path) -> None:
    lock = FlockLock(lock_path)
    lock.break_lock()
    lock.acquire()
    lock.break_lock()
    assert not lock.is_locked()


def test_inheritable_fd_of_an_unheld_lock_raises_not_locked(lock_path: Path) -> None:
    with pytest.raises(lockfile.NotLocked):
        FlockLock(lock_path).inheritable_fd()


def test_inheritable_fd_is_the_held_fd_marked_inheritable(lock_path: Path) -> None:
    with FlockLock(lock_path) as lock:
        assert lock.fd is not None
        assert not os.get_inheritable(lock.fd)
        fd = lock.inheritable_fd()
        assert fd == lock.fd
        assert os.get_inheritable(fd)


def test_acquire_in_a_missing_directory_raises_lock_failed_naming_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "missing" / "daemon.lock"
    with pytest.raises(lockfile.LockFailed, match=str(path)):
        FlockLock(path).acquire(timeout=0)


# -- another process holds it -----------------------------------------------------------


def test_another_process_holding_the_lock_is_seen_until_it_lets_go(lock_path: Path) -> None:
    lock = FlockLock(lock_path)
    with child_running(HOLDER, str(lock_path), ready="locked") as holder:
        assert lock.is_locked()
        assert not lock.i_am_locking()
        let_go(holder)
        assert not lock.is_locked()
    lock.acquire(timeout=0)
    assert lock.i_am_locking()
    lock.release()


def test_acquire_timeout_zero_raises_already_locked_at_once(lock_path: Path) -> None:
    with child_running(HOLDER, str(lock_path), ready="locked"):
        began = time.monotonic()
        with pytest.raises(lockfile.AlreadyLocked, match=str(lock_path)):
            FlockLock(lock_path).acquire(timeout=0)
        assert time.monotonic() - began < 0.1


def test_acquire_with_a_timeout_raises_lock_timeout_after_waiting(lock_path: Path) -> None:
    with child_running(HOLDER, str(lock_path), ready="locked"):
        lock = FlockLock(lock_path)
        began = time.monotonic()
        with pytest.raises(lockfile.LockTimeout, match=str(lock_path)):
            lock.acquire(timeout=0.2)
        assert time.monotonic() - began >= 0.2
        assert not lock.i_am_locking()


def test_acquire_with_a_timeout_gets_the_lock_once_the_holder_lets_go(lock_path: Path) -> None:
    with child_running(HOLDER, str(lock_path), ready="locked") as holder:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.flush()
        lock = FlockLock(lock_path)
        lock.acquire(timeout=CHILD_TIMEOUT_SECONDS)
        assert lock.i_am_locking()
        lock.release()


def test_constructor_timeout_is_used_by_the_context_manager(lock_path: Path) -> None:
    with child_running(HOLDER, str(lock_path), ready="locked"):
        began = time.monotonic()
        with pytest.raises(lockfile.LockTimeout), FlockLock(lock_path, timeout=0.2):
            pass
        assert time.monotonic() - began >= 0.2
        with pytest.raises(lockfile.AlreadyLocked), FlockLock(lock_path, timeout=0):
            pass


def test_constructor_timeout_is_used_by_acquire_without_one(lock_path: Path) -> None:
    with child_running(HOLDER, str(lock_path), ready="locked"):
        with pytest.raises(lockfile.AlreadyLocked):
            FlockLock(lock_path, timeout=0).acquire()
        # An explicit timeout wins over the constructor's.
        with pytest.raises(lockfile.AlreadyLocked):
            FlockLock(lock_path, timeout=30).acquire(timeout=0)


def test_release_of_a_lock_another_process_holds_raises_not_my_lock(lock_path: Path) -> None:
    with child_running(HOLDER, str(lock_path), ready="locked") as holder:
        with pytest.raises(lockfile.NotMyLock, match=str(lock_path)):
            FlockLock(lock_path).release()
        assert FlockLock(lock_path).is_locked()
        let_go(holder)


def test_break_lock_cannot_take_another_process_hold(lock_path: Path) -> None:
    with child_running(HOLDER, str(lock_path), ready="locked"):
        FlockLock(lock_path).break_lock()
        assert FlockLock(lock_path).is_locked()


def test_a_holder_killed_with_sigkill_releases_the_lock_and_leaves_the_file(
    lock_path: Path,
) -> None:
    with child_running(HOLDER, str(lock_path), ready="locked") as holder:
        assert FlockLock(lock_path).is_locked()
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=CHILD_TIMEOUT_SECONDS)
        assert holder.returncode == -signal.SIGKILL
    assert lock_path.exists()
    lock = FlockLock(lock_path)
    assert not lock.is_locked()
    lock.acquire(timeout=0)
    lock.release()


# -- across execv -----------------------------------------------------------------------


def wait_until_exec_done(child: subprocess.Popen[str]) -> None:
    def is_shell() -> bool:
        return psutil.Process(child.pid).cmdline()[:2] == ["sh", "-c"]

    wait_for(is_shell, timeout=CHILD_TIMEOUT_SECONDS, what="the child to exec the shell")


def test_lock_survives_execv_with_inheritable_fd_until_the_process_ends(
    lock_path: Path,
) -> None:
    child = spawn(EXEC_HOLDER, str(lock_path), "inherit")
    try:
        wait_until_exec_done(child)
        assert FlockLock(lock_path).is_locked()
        with pytest.raises(lockfile.AlreadyLocked):
            FlockLock(lock_path).acquire(timeout=0)
        let_go(child)
        assert not FlockLock(lock_path).is_locked()
    finally:
        finish(child)


def test_lock_is_dropped_at_execv_without_inheritable_fd(lock_path: Path) -> None:
    child = spawn(EXEC_HOLDER, str(lock_path), "keep-cloexec")
    try:
        wait_until_exec_done(child)
        # The kernel shows the new command line a moment before it closes
        # close-on-exec fds: wait for the close rather than racing it.
        wait_for(
            lambda: not FlockLock(lock_path).is_locked(),
            timeout=CHILD_TIMEOUT_SECONDS,
            what="the exec to close the lock's fd",
        )
    finally:
        finish(child)


# -- probes racing the lock -------------------------------------------------------------
# A worker's liveness is probed without daemon.lock (`version` takes none), so a probe
# can run while a launcher takes the pid lock, or while another command probes too.


def test_a_concurrent_is_locked_probe_never_reports_a_free_lock_as_held(
    lock_path: Path,
) -> None:
    lock_path.touch()
    lock = FlockLock(lock_path)
    with child_running(PROBER, str(lock_path), ready="probing"):
        deadline = time.monotonic() + RACE_SECONDS
        probes = 0
        while time.monotonic() < deadline:
            probes += 1
            assert not lock.is_locked(), f"free lock reported held on probe {probes}"


def test_a_concurrent_is_locked_probe_never_makes_acquiring_a_free_lock_fail(
    lock_path: Path,
) -> None:
    lock_path.touch()
    lock = FlockLock(lock_path)
    with child_running(PROBER, str(lock_path), ready="probing"):
        deadline = time.monotonic() + RACE_SECONDS
        attempts = 0
        while time.monotonic() < deadline:
            attempts += 1
            try:
                lock.acquire(timeout=0)
            except lockfile.AlreadyLocked:
                pytest.fail(f"acquire(timeout=0) of a free lock failed on attempt {attempts}")
            lock.release()
