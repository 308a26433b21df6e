"""Log rotation (rename and copy-truncate), its settings, reading logs back, and
`codexd logs`."""

from __future__ import annotations

import os
import queue
import signal
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from supervisor.config import LogSettings, log_settings
from supervisor.errors import DaemonError
from supervisor.log_tail import (
    FileFacts,
    FollowAction,
    follow_action,
    last_lines,
    tail_file,
)
from supervisor.logs import (
    excess_numbers,
    needs_rotation,
    rotate_before_launch,
    rotate_if_needed,
    rotate_log,
    shift_moves,
)
from supervisor.paths import HomePaths
from tests.conftest import Home, wait_for

# -- tables ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "max_bytes", "expected"),
    [(0, 10, False), (9, 10, False), (10, 10, True), (11, 10, True), (5, 0, False)],
)
def test_needs_rotation(size: int, max_bytes: int, expected: bool) -> None:
    assert needs_rotation(size, max_bytes) is expected


@pytest.mark.parametrize(
    ("keep", "moves"),
    [(0, []), (1, []), (2, [(1, 2)]), (3, [(2, 3), (1, 2)]), (4, [(3, 4), (2, 3), (1, 2)])],
)
def test_shift_moves_oldest_first(keep: int, moves: list[tuple[int, int]]) -> None:
    assert shift_moves(keep) == moves


@pytest.mark.parametrize(
    ("existing", "keep", "excess"),
    [([], 3, []), ([1, 2, 3], 3, []), ([1, 2, 3, 4, 7], 3, [4, 7]), ([2, 1], 0, [1, 2])],
)
def test_excess_numbers(existing: list[int], keep: int, excess: list[int]) -> None:
    assert excess_numbers(existing, keep) == excess


@pytest.mark.parametrize(
    ("data", "count", "expected"),
    [
        (b"", 5, b""),
        (b"a\nb\nc\n", 0, b""),
        (b"a\nb\nc\n", 2, b"b\nc\n"),
        (b"a\nb\nc\n", 3, b"a\nb\nc\n"),
        (b"a\nb\nc\n", 10, b"a\nb\nc\n"),
        (b"a\nb\nc", 1, b"c"),
        (b"a\nb\nc", 2, b"b\nc"),
        (b"\n\n", 1, b"\n"),
    ],
)
def test_last_lines(data: bytes, count: int, expected: bytes) -> None:
    assert last_lines(data, count) == expected


SAME = (1, 10)
OTHER = (1, 11)


@pytest.mark.parametrize(
    ("opened", "position", "now", "action"),
    [
        (None, 0, None, FollowAction.WAIT),
        (SAME, 5, None, FollowAction.WAIT),
        (None, 0, FileFacts(SAME, 0), FollowAction.REOPEN),
        (SAME, 5, FileFacts(OTHER, 0), FollowAction.REOPEN),
        (SAME, 5, FileFacts(SAME, 5), FollowAction.READ),
        (SAME, 5, FileFacts(SAME, 9), FollowAction.READ),
        (SAME, 5, FileFacts(SAME, 2), FollowAction.FROM_TOP),
        (SAME, 5, FileFacts(SAME, 9, seen_bytes_unchanged=False), FollowAction.FROM_TOP),
    ],
)
def test_follow_action(
    opened: tuple[int, int] | None, position: int, now: FileFacts | None, action: FollowAction
) -> None:
    assert follow_action(opened, position, now) is action


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, LogSettings(10 * 1024 * 1024, 3)),
        ({"CODEXD_LOG_MAX_BYTES": "", "CODEXD_LOG_KEEP": ""}, LogSettings(10 * 1024 * 1024, 3)),
        ({"CODEXD_LOG_MAX_BYTES": "1000", "CODEXD_LOG_KEEP": "5"}, LogSettings(1000, 5)),
        ({"CODEXD_LOG_KEEP": "0"}, LogSettings(10 * 1024 * 1024, 0)),
    ],
)
def test_log_settings(environ: dict[str, str], expected: LogSettings) -> None:
    assert log_settings(environ) == expected


@pytest.mark.parametrize(
    "environ",
    [
        {"CODEXD_LOG_MAX_BYTES": "0"},
        {"CODEXD_LOG_MAX_BYTES": "10MB"},
        {"CODEXD_LOG_MAX_BYTES": "1.5"},
        {"CODEXD_LOG_KEEP": "-1"},
        {"CODEXD_LOG_KEEP": "three"},
    ],
)
def test_bad_log_settings_name_the_variable(environ: dict[str, str]) -> None:
    with pytest.raises(DaemonError, match=next(iter(environ))):
        log_settings(environ)


# -- rotation on disk ----------------------------------------------------------------


def write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "w") as file:
        file.write(text)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_rotate_by_rename_shifts_keeps_and_deletes_the_excess(tmp_path: Path) -> None:
    log = tmp_path / "app-server.log"
    write(log, "current\n")
    for number, text in [(1, "one"), (2, "two"), (3, "three"), (5, "five")]:
        write(tmp_path / f"app-server.log.{number}", text)

    assert rotate_log(log, max_bytes=4, keep=3) is True

    assert not log.exists()
    assert (tmp_path / "app-server.log.1").read_text() == "current\n"
    assert (tmp_path / "app-server.log.2").read_text() == "one"
    assert (tmp_path / "app-server.log.3").read_text() == "two"
    assert not (tmp_path / "app-server.log.4").exists()
    assert not (tmp_path / "app-server.log.5").exists()
    assert all(mode(tmp_path / f"app-server.log.{n}") == 0o600 for n in (1, 2, 3))


def test_a_small_log_is_not_rotated(tmp_path: Path) -> None:
    log = tmp_path / "app-server.log"
    write(log, "small\n")
    assert rotate_log(log, max_bytes=100, keep=3) is False
    assert log.read_text() == "small\n"
    assert not (tmp_path / "app-server.log.1").exists()
    assert rotate_log(tmp_path / "missing.log", max_bytes=1, keep=3) is False


def test_copy_truncate_keeps_an_append_writer_writing_at_the_start(tmp_path: Path) -> None:
    log = tmp_path / "app-server.log"
    writer = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(writer, b"before rotation\n" * 10)
        assert rotate_log(log, max_bytes=100, keep=2, copy_truncate=True) is True
        os.write(writer, b"after\n")
    finally:
        os.close(writer)
    assert log.read_bytes() == b"after\n"
    assert (tmp_path / "app-server.log.1").read_bytes() == b"before rotation\n" * 10
    assert mode(tmp_path / "app-server.log.1") == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_keep_zero_empties_the_log_and_keeps_nothing(tmp_path: Path) -> None:
    log = tmp_path / "app-server.log"
    write(log, "x" * 50)
    assert rotate_log(log, max_bytes=10, keep=0, copy_truncate=True) is True
    assert log.read_bytes() == b""
    write(log, "x" * 50)
    assert rotate_log(log, max_bytes=10, keep=0) is True
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_rotate_before_launch_and_rotate_if_needed(tmp_path: Path) -> None:
    paths = HomePaths(tmp_path)
    paths.state_dir.mkdir()
    write(paths.app_server_log, "a" * 30)
    write(paths.updater_log, "u" * 5)
    settings = LogSettings(max_bytes=10, keep=3)

    assert rotate_if_needed(paths, settings) == [paths.app_server_log]
    assert paths.app_server_log.read_text() == ""
    assert Path(f"{paths.app_server_log}.1").read_text() == "a" * 30

    write(paths.updater_log, "u" * 20)
    assert rotate_before_launch(paths.updater_log, settings) is True
    assert not paths.updater_log.exists()
    assert Path(f"{paths.updater_log}.1").read_text() == "u" * 20


def test_tail_file_reads_across_blocks(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    lines = [f"line {number} " + "x" * 200 for number in range(2000)]
    log.write_text("\n".join(lines) + "\n")
    assert tail_file(log, 3).decode().splitlines() == lines[-3:]
    assert tail_file(log, 1000).decode().splitlines() == lines[-1000:]


# -- codexd logs -------------------------------------------------------------------


def fill_logs(home: Home) -> None:
    home.paths.state_dir.mkdir(parents=True, exist_ok=True)
    home.paths.app_server_log.write_text("".join(f"server {n}\n" for n in range(100)))
    home.paths.updater_log.write_text("".join(f"updater {n}\n" for n in range(100)))


def test_logs_prints_the_last_50_lines_of_each_under_a_header(home: Home) -> None:
    fill_logs(home)
    result = home.run("logs")
    assert result.returncode == 0, result.stderr
    server_header = f"==> {home.paths.app_server_log} <=="
    updater_header = f"==> {home.paths.updater_log} <=="
    lines = result.stdout.splitlines()
    assert lines[0] == server_header
    assert lines[1:51] == [f"server {n}" for n in range(50, 100)]
    assert lines[51] == ""
    assert lines[52] == updater_header
    assert lines[53:] == [f"updater {n}" for n in range(50, 100)]
    assert "\x1b[" not in result.stdout


def test_logs_of_one_worker_with_n(home: Home) -> None:
    fill_logs(home)
    result = home.run("logs", "updater", "-n", "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"==> {home.paths.updater_log} <==",
        "updater 98",
        "updater 99",
    ]


def test_logs_without_any_log_exits_1(home: Home) -> None:
    result = home.run("logs")
    assert result.returncode == 1
    assert "does not exist yet" in result.stderr


class LineReader:
    """Reads a process's stdout in a thread, so a test can wait for a line."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert process.stdout is not None
        stdout = process.stdout
        threading.Thread(target=self._read, args=(stdout,), daemon=True).start()

    def _read(self, stdout: object) -> None:
        for line in stdout:  # type: ignore[attr-defined]
            self.lines.put(line.rstrip("\n"))

    def has(self, wanted: str) -> bool:
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return wanted in self.seen


def append(path: Path, text: str) -> None:
    with open(path, "a") as file:
        file.write(text)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_logs_follow_survives_rotation_and_exits_cleanly_on_signal(home: Home, signum: int) -> None:
    fill_logs(home)
    process = home.spawn("logs", "app-server", "-f", "-n", "1")
    reader = LineReader(process)
    wait_for(lambda: reader.has("server 99"), what="the last line")

    append(home.paths.app_server_log, "appended\n")
    wait_for(lambda: reader.has("appended"), what="an appended line")

    rotate_log(home.paths.app_server_log, max_bytes=1, keep=3)  # by rename
    append(home.paths.app_server_log, "in the new file\n")
    wait_for(lambda: reader.has("in the new file"), what="a line after a rename")

    rotate_log(home.paths.app_server_log, max_bytes=1, keep=3, copy_truncate=True)
    append(home.paths.app_server_log, "after truncation\n")
    wait_for(lambda: reader.has("after truncation"), what="a line after a truncation")

    process.send_signal(signum)
    assert process.wait(timeout=10) == 0
    assert process.stderr is not None
    assert "Traceback" not in process.stderr.read()
