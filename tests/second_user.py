"""A second local user for the security tests: created with useradd for one test,
removed after it with every process it was given, skipped when we are not root."""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# Its processes run the system python: this checkout's venv may sit where another user
# cannot read it (under /root).
SYSTEM_PYTHON = Path("/usr/bin/python3")


@dataclass
class SecondUser:
    name: str
    uid: int
    gid: int
    started: list[subprocess.Popen[str]] = field(default_factory=list)

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        """Start `args` as this user, with an empty environment; killed at teardown."""
        process = subprocess.Popen(
            list(args),
            user=self.uid,
            group=self.gid,
            extra_groups=[],
            env={"PATH": "/usr/bin:/bin"},
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.started.append(process)
        return process

    def spawn_until(self, line: str, *args: str) -> subprocess.Popen[str]:
        """`spawn`, then wait for `line` on its stdout (it prints it once ready)."""
        process = self.spawn(*args)
        assert process.stdout is not None
        ready = process.stdout.readline().strip()
        if ready != line:
            process.kill()
            _, stderr = process.communicate(timeout=10)
            raise AssertionError(f"{args[0]} as {self.name} did not start: {stderr}")
        return process

    def run(self, *args: str) -> None:
        subprocess.run(
            list(args),
            user=self.uid,
            group=self.gid,
            extra_groups=[],
            env={"PATH": "/usr/bin:/bin"},
            cwd="/",
            check=True,
            capture_output=True,
            timeout=30,
        )

    def python(self, script: Path, *args: str) -> list[str]:
        """The command line that runs `script` (standard library only) as this user."""
        return [str(SYSTEM_PYTHON), "-c", script.read_text(), *args]

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.communicate(timeout=10)


@pytest.fixture(name="second_user")
def second_user_fixture() -> Iterator[SecondUser]:
    """Import this into a test module and ask for `second_user`."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create a second user (useradd)")
    if shutil.which("useradd") is None or shutil.which("userdel") is None:
        pytest.skip("needs useradd and userdel")
    if not SYSTEM_PYTHON.exists():
        pytest.skip(f"needs {SYSTEM_PYTHON} for the second user's processes")
    name = f"cxd-{secrets.token_hex(4)}"
    subprocess.run(
        ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group", name],
        check=True,
        capture_output=True,
        timeout=30,
    )
    entry = pwd.getpwnam(name)
    user = SecondUser(name, entry.pw_uid, entry.pw_gid)
    try:
        yield user
    finally:
        user.stop_all()
        subprocess.run(["userdel", name], check=False, capture_output=True, timeout=30)
        subprocess.run(["groupdel", name], check=False, capture_output=True, timeout=30)


@contextlib.contextmanager
def acting_as(uid: int) -> Iterator[None]:
    """Run the block with `uid` as this (root) process's effective uid and gid, so the
    kernel's permission checks answer as they would for that user. No account is
    needed; the real uid stays root's, which is how the block gives the role back."""
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another uid")
    os.setegid(uid)
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
