"""Whom the probe (and the proxy) talk to: a socket symlink is followed only into a
directory of ours, the listener must run as us (SO_PEERCRED), and `version` says what
it saw when nothing of ours answers."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from supervisor.control_socket import (
    PeerCredentials,
    ProbeError,
    Unreachable,
    probe,
    trusted_socket_target,
    unreachable_message,
)
from tests.second_user import acting_as
from tests.test_control_socket import answer_initialize, fake_server


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "control.sock"


# -- whom the probe talks to ------------------------------------------------------------


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another uid")
STRANGER_UID = 4242
LISTEN_AS = """
import os, socket, sys, time
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(sys.argv[1])
uid = int(sys.argv[2])
os.setgroups([])
os.setresgid(uid, uid, uid)
os.setresuid(uid, uid, uid)
listener.listen(8)  # SO_PEERCRED reports who called listen()
print("listening", flush=True)
time.sleep(60)
"""


@pytest.fixture
def private_link(tmp_path: Path) -> tuple[Path, Path]:
    """A public socket path that is a symlink into a private directory of ours, as the
    server leaves it for a socket path too long to bind: (link, target)."""
    parent = tmp_path / "codexd-0"
    parent.mkdir(mode=0o700)
    (parent / "tag").mkdir(mode=0o700)
    target = parent / "tag" / "control.sock"
    link = tmp_path / "public.sock"
    link.symlink_to(target)
    return link, target


def test_a_symlink_into_a_private_dir_of_ours_is_followed(
    private_link: tuple[Path, Path],
) -> None:
    link, target = private_link
    with fake_server(target, answer_initialize()):
        assert trusted_socket_target(link) == str(target)
        assert probe(link).app_server_version == "0.1.0"


def test_codexs_own_layout_under_a_sticky_tmp_is_followed(tmp_path: Path) -> None:
    # codex binds `/tmp/codex-daemon-<uid>/<hash>` itself: the socket straight in a
    # private directory whose parent is the sticky, world-writable /tmp.
    shared = Path(tempfile.mkdtemp(prefix="cxt-", dir="/tmp"))  # short enough to bind in
    try:
        shared.chmod(0o1777)
        private = shared / "codex-daemon-0"
        private.mkdir(mode=0o700)
        target = private / ("f" * 32)
        link = tmp_path / "public.sock"
        link.symlink_to(target)
        with fake_server(target, answer_initialize()):
            assert probe(link).app_server_version == "0.1.0"
    finally:
        shutil.rmtree(shared)


@pytest.mark.parametrize("which", ["tag", "parent"])
def test_a_symlink_into_a_loose_dir_is_not_followed(
    private_link: tuple[Path, Path], which: str
) -> None:
    link, target = private_link
    loose = target.parent if which == "tag" else target.parent.parent
    loose.chmod(0o777)
    with (
        fake_server(target, answer_initialize()),
        pytest.raises(ProbeError, match=f"{loose} has mode 0777") as raised,
    ):
        probe(link)
    assert raised.value.reason is Unreachable.UNTRUSTED
    assert stat.S_IMODE(loose.stat().st_mode) == 0o777  # a client changes nothing


@needs_root
def test_a_symlink_into_a_dir_owned_by_someone_else_is_not_followed(
    private_link: tuple[Path, Path],
) -> None:
    link, target = private_link
    with fake_server(target, answer_initialize()):
        os.chown(target.parent, STRANGER_UID, STRANGER_UID)
        with pytest.raises(
            ProbeError, match=f"{target.parent} is owned by uid {STRANGER_UID}"
        ) as raised:
            probe(link)
    assert raised.value.reason is Unreachable.UNTRUSTED


def test_a_symlink_into_a_missing_dir_is_not_running(private_link: tuple[Path, Path]) -> None:
    link, target = private_link
    target.parent.rmdir()
    with pytest.raises(ProbeError, match="no such file") as raised:
        probe(link)
    assert raised.value.reason is Unreachable.NOT_LISTENING


def test_a_symlink_to_a_symlink_is_not_followed(private_link: tuple[Path, Path]) -> None:
    link, target = private_link
    target.symlink_to("/elsewhere.sock")
    with pytest.raises(ProbeError, match="the target is a symlink") as raised:
        probe(link)
    assert raised.value.reason is Unreachable.UNTRUSTED


@needs_root
def test_a_listener_running_as_another_uid_is_never_talked_to(sock_path: Path) -> None:
    listener = subprocess.Popen(
        [sys.executable, "-c", LISTEN_AS, str(sock_path), str(STRANGER_UID)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert listener.stdout is not None
        assert listener.stdout.readline().strip() == "listening"
        with pytest.raises(ProbeError) as raised:
            probe(sock_path)
    finally:
        listener.kill()
        listener.wait()
    assert raised.value.reason is Unreachable.UNTRUSTED
    assert f"the listener (pid {listener.pid}) runs as uid {STRANGER_UID}" in str(raised.value)
    assert raised.value.peer is not None
    assert (raised.value.peer.pid, raised.value.peer.uid) == (listener.pid, STRANGER_UID)


# -- what `version` says when nothing of ours answers ---------------------------------------


def probe_error(reason: Unreachable, listener_pid: int | None = None) -> ProbeError:
    error = ProbeError("control socket /h/s.sock: detail", reason)
    if listener_pid is not None:
        error.peer = PeerCredentials(listener_pid, 1000, 1000)
    return error


@pytest.mark.parametrize(
    ("reason", "listener", "state", "message"),
    [
        (
            Unreachable.NOT_LISTENING,
            None,
            None,
            "app server is not running: control socket /h/s.sock: detail",
        ),
        (
            Unreachable.UNTRUSTED,
            None,
            None,
            "app server is not running: control socket /h/s.sock: detail",
        ),
        (
            Unreachable.UNTRUSTED,
            7,
            "sleeping",
            "app server is not running: control socket /h/s.sock: detail",
        ),
        (
            Unreachable.NO_ANSWER,
            7,
            "stopped",
            "app server (pid 7, stopped) is stopped and cannot answer: control socket "
            "/h/s.sock: detail; continue it (kill -CONT) or restart it",
        ),
        (
            Unreachable.NO_ANSWER,
            7,
            "stopped by a debugger",
            "app server (pid 7, stopped by a debugger) is stopped and cannot answer: control "
            "socket /h/s.sock: detail; continue it (kill -CONT) or restart it",
        ),
        (
            Unreachable.NO_ANSWER,
            7,
            "sleeping",
            "app server (pid 7, sleeping) is not answering: control socket /h/s.sock: detail; "
            "it may be overloaded or out of file descriptors (see its log)",
        ),
        (
            Unreachable.NO_ANSWER,
            None,
            None,
            "app server is not answering: control socket /h/s.sock: detail; it may be "
            "overloaded or out of file descriptors (see its log)",
        ),
        (
            Unreachable.DENIED,
            None,
            None,
            "app server is not reachable: control socket /h/s.sock: detail",
        ),
        (
            Unreachable.OUT_OF_RESOURCES,
            None,
            None,
            "cannot reach the app server: control socket /h/s.sock: detail",
        ),
        (
            Unreachable.BAD_ANSWER,
            7,
            "sleeping",
            "app server is not running: control socket /h/s.sock: detail",
        ),
        (
            Unreachable.FAILED,
            None,
            None,
            "app server is not running: control socket /h/s.sock: detail",
        ),
    ],
)
def test_unreachable_message(
    reason: Unreachable, listener: int | None, state: str | None, message: str
) -> None:
    assert unreachable_message(probe_error(reason, listener), state) == message


def test_every_reason_has_a_row() -> None:
    rows = test_unreachable_message.pytestmark[0].args[1]  # type: ignore[attr-defined]
    assert {row[0] for row in rows} == set(Unreachable)


def test_probe_error_names_the_listener_that_never_answered(sock_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.bind(str(sock_path))
        silent.listen(8)
        with pytest.raises(ProbeError) as raised:
            probe(sock_path, timeout=0.2)
    assert raised.value.reason is Unreachable.NO_ANSWER
    assert raised.value.peer == PeerCredentials(os.getpid(), os.geteuid(), os.getegid())


def test_probe_of_a_socket_we_may_not_connect_to_is_denied_naming_its_owner() -> None:
    directory = Path(tempfile.mkdtemp(prefix="cxp-", dir="/tmp"))
    sock_path = directory / "control.sock"
    try:
        directory.chmod(0o755)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
            listener.bind(str(sock_path))
            listener.listen(8)
            sock_path.chmod(0o600)
            with acting_as(STRANGER_UID), pytest.raises(ProbeError) as raised:
                probe(sock_path, timeout=0.5)
    finally:
        shutil.rmtree(directory)
    assert raised.value.reason is Unreachable.DENIED
    assert str(raised.value) == (
        f"control socket {sock_path}: permission denied (owned by uid 0 (root), mode 0600)"
    )
