"""A lock file we may not open, and who holds a busy lock: named, with its owner, its
holder's command and whether that holder is stopped."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import lockfile
import pytest

from supervisor.errors import DaemonError
from supervisor.locks import (
    FlockLock,
    LockFileError,
    acquire_naming_holder,
    describe_who_holds,
    who_holds,
)
from tests.conftest import wait_for
from tests.second_user import acting_as
from tests.test_locks import HOLDER, child_running


@pytest.fixture
def lock_path(tmp_path: Path) -> Path:
    return tmp_path / "daemon.lock"


# -- a lock file we may not use, and who holds a busy one ---------------------------------


STRANGER_UID = 4242


def test_is_locked_on_a_lock_file_we_may_not_open_names_it_and_its_owner() -> None:
    # What `sudo codexd start` leaves in a user's home: root's 0600 lock files.
    directory = Path(tempfile.mkdtemp(prefix="cxl-", dir="/tmp"))
    try:
        directory.chmod(0o755)
        path = directory / "app-server.pid.lock"
        path.touch(mode=0o600)
        with acting_as(STRANGER_UID), pytest.raises(LockFileError) as raised:
            FlockLock(path).is_locked()
        assert str(raised.value) == (
            f"cannot open lock file {path}: permission denied (owned by uid 0 (root), "
            "mode 0600); run codexd as its owner"
        )
        assert isinstance(raised.value, DaemonError)  # a command shows it as one line
    finally:
        shutil.rmtree(directory)


def test_is_locked_on_a_fifo_answers_at_once(lock_path: Path) -> None:
    os.mkfifo(lock_path)
    began = time.monotonic()
    assert FlockLock(lock_path).is_locked() is False
    assert time.monotonic() - began < 1.0


def test_who_holds_names_the_holder_its_command_and_whether_it_is_stopped(
    lock_path: Path,
) -> None:
    with child_running(HOLDER, str(lock_path), ready="locked") as holder:
        (running,) = who_holds(lock_path)
        assert running.pid == holder.pid
        assert running.command is not None and "from supervisor.locks import" in running.command
        assert running.state == "sleeping"
        os.kill(holder.pid, signal.SIGSTOP)
        try:
            wait_for(lambda: who_holds(lock_path)[0].state == "stopped", what="stopped state")
            assert describe_who_holds(lock_path).startswith(f"pid {holder.pid} (")
            assert describe_who_holds(lock_path).endswith("; stopped)")
        finally:
            os.kill(holder.pid, signal.SIGCONT)
    assert who_holds(lock_path) == []
    assert describe_who_holds(lock_path) == "an unknown process"


def test_acquire_naming_holder_says_once_who_holds_and_names_it_in_the_timeout(
    lock_path: Path,
) -> None:
    notices: list[str] = []
    with child_running(HOLDER, str(lock_path), ready="locked") as holder:
        lock = FlockLock(lock_path)
        with pytest.raises(lockfile.LockTimeout) as raised:
            acquire_naming_holder(lock, 0.3, "the daemon operation lock", notices.append)
        assert not lock.i_am_locking()
    holder_text = f"held by pid {holder.pid} ("
    assert len(notices) == 1
    assert notices[0].startswith(f"waiting up to 0.3 s for the daemon operation lock {lock_path}")
    assert holder_text in notices[0]
    assert str(raised.value).startswith(
        f"timed out after 0.3 s waiting for the daemon operation lock {lock_path}"
    )
    assert holder_text in str(raised.value)


def test_acquire_naming_holder_of_a_free_lock_says_nothing(lock_path: Path) -> None:
    notices: list[str] = []
    lock = FlockLock(lock_path)
    acquire_naming_holder(lock, 1.0, "the daemon operation lock", notices.append)
    assert lock.i_am_locking() and notices == []
    lock.release()
