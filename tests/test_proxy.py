"""`codexd app-server proxy` against codexd's own app-server: JSON lines on stdin and
stdout, one WebSocket frame each on the control socket."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any, cast

import pytest

from supervisor.proxy import line_from_frame, lines_from_fd, message_from_line
from tests.conftest import CODEXD, COMMAND_TIMEOUT_SECONDS, Home
from tests.pipes import LineReader

EXIT_TIMEOUT_SECONDS = 15.0


def initialize(request_id: int = 1) -> dict[str, Any]:
    return {
        "id": request_id,
        "method": "initialize",
        "params": {"clientInfo": {"name": "proxy-test", "version": "1.0"}},
    }


def spawn_proxy(
    home: Home, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`codexd app-server proxy` with pipes on all three streams; killed at teardown."""
    process = subprocess.Popen(
        [str(CODEXD), "app-server", "proxy", *args],
        env={**home.env, **(env or {})},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # Home.cleanup kills and reaps it whatever its stream mode.
    home.started.append(cast("subprocess.Popen[str]", process))
    return process


def send_line(process: subprocess.Popen[bytes], line: str) -> None:
    assert process.stdin is not None
    process.stdin.write(line.encode() + b"\n")
    process.stdin.flush()


def finish(process: subprocess.Popen[bytes]) -> tuple[int, bytes, str]:
    """Close stdin; the exit status, the rest of stdout and all of stderr."""
    out, err = process.communicate(timeout=EXIT_TIMEOUT_SECONDS)
    return process.returncode, out, err.decode()


def run_proxy_with_input(home: Home, text: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CODEXD), "app-server", "proxy", *args],
        env=home.env,
        input=text,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
    )


def test_proxy_relays_an_initialize_round_trip_line_by_line(home: Home) -> None:
    home.ok("start")
    process = spawn_proxy(home)
    assert process.stdout is not None
    reader = LineReader(process.stdout)
    send_line(
        process,
        '{"id": 1, "method": "initialize", '
        '"params": {"clientInfo": {"name": "proxy-test", "version": "1.0"}}}',
    )
    response = reader.response(1)
    assert response["result"]["userAgent"].startswith("proxy-test/0.1.0 ")
    assert response["result"]["codexHome"] == str(home.path)
    notification = reader.message()
    assert notification["method"] == "remoteControl/status/changed"
    send_line(process, '{"id": 2, "method": "no/such/method"}')
    assert reader.response(2)["error"]["code"] == -32601
    returncode, _, stderr = finish(process)
    assert returncode == 0, stderr


def test_proxy_exits_zero_when_stdin_ends_at_once(home: Home) -> None:
    home.ok("start")
    result = run_proxy_with_input(home, "")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


def test_proxy_writes_the_answers_to_requests_sent_before_stdin_ended(home: Home) -> None:
    home.ok("start")
    result = run_proxy_with_input(home, f'{json.dumps(initialize(7))}\n{{"id": 8, "method": "x"}}')
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line]
    assert '"id":7' in lines[0].replace(" ", "")
    assert any('"id":8' in line.replace(" ", "") for line in lines)


def test_proxy_skips_blank_and_non_json_lines_and_keeps_going(home: Home) -> None:
    home.ok("start")
    process = spawn_proxy(home)
    assert process.stdout is not None
    reader = LineReader(process.stdout)
    send_line(process, "")
    send_line(process, "   ")
    send_line(process, "this is not json")
    send_line(
        process,
        '{"id": 3, "method": "initialize", '
        '"params": {"clientInfo": {"name": "after-garbage", "version": "1"}}}',
    )
    assert reader.response(3)["result"]["userAgent"].startswith("after-garbage/")
    returncode, _, stderr = finish(process)
    assert returncode == 0
    assert "not a JSON message" in stderr
    assert "stdin line 3" in stderr
    assert "stdin line 1" not in stderr  # blank lines are skipped silently
    assert "stdin line 2" not in stderr


def test_proxy_with_nothing_listening_fails_naming_the_socket(home: Home) -> None:
    result = run_proxy_with_input(home, "")
    assert result.returncode == 1
    assert result.stdout == ""
    assert str(home.paths.socket_path) in result.stderr
    assert "no app-server is listening" in result.stderr


def test_proxy_with_a_sock_that_refuses_connections_fails_naming_it(
    home: Home, tmp_path: Path
) -> None:
    dead = tmp_path / "dead.sock"
    with socket.socket(socket.AF_UNIX) as bound:
        bound.bind(str(dead))  # bound but never listening: connect() is refused
        result = run_proxy_with_input(home, "", "--sock", str(dead))
    assert result.returncode == 1
    assert str(dead) in result.stderr
    assert "connection refused" in result.stderr


def test_proxy_sock_option_overrides_the_home_socket(home: Home, tmp_path: Path) -> None:
    home.ok("start")
    other_home = tmp_path / "elsewhere"
    other_home.mkdir()
    process = spawn_proxy(
        home, "--sock", str(home.paths.socket_path), env={"CODEX_HOME": str(other_home)}
    )
    assert process.stdout is not None
    send_line(process, json.dumps(initialize(1)))
    response = LineReader(process.stdout).response(1)
    assert response["result"]["codexHome"] == str(home.path)
    assert finish(process)[0] == 0


def test_proxy_exits_zero_when_the_server_closes(home: Home) -> None:
    home.ok("start")
    process = spawn_proxy(home)
    assert process.stdout is not None
    send_line(process, json.dumps(initialize(1)))
    LineReader(process.stdout).response(1)
    assert home.ok("stop")["status"] == "stopped"
    # stdin stays open: the server's close alone ends the proxy.
    assert process.wait(timeout=EXIT_TIMEOUT_SECONDS) == 0


# -- the pure parts --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chunks", "lines"),
    [
        ([b""], []),
        ([b"a\nb\n"], [b"a", b"b"]),
        ([b"a", b"b\nc"], [b"ab", b"c"]),  # a line split across reads; a last line without \n
        ([b"a\r\n\n"], [b"a", b""]),
    ],
)
def test_lines_from_fd_splits_on_newlines_across_reads(
    chunks: list[bytes], lines: list[bytes]
) -> None:
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb", buffering=0) as reader:
        with os.fdopen(write_end, "wb", buffering=0) as writer:
            for chunk in chunks:
                writer.write(chunk)
        assert list(lines_from_fd(reader.fileno())) == lines


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b'{"id": 1, "method": "x"}', '{"id": 1, "method": "x"}'),
        (b'  {"method": "initialized"}  ', '{"method": "initialized"}'),
        (b"", None),
        (b" \t ", None),
    ],
)
def test_message_from_line_sends_json_and_skips_blank_lines(
    line: bytes, message: str | None
) -> None:
    assert message_from_line(line) == message


@pytest.mark.parametrize("line", [b"not json", b'{"id": 1', b"\xff\xfe"])
def test_message_from_line_rejects_what_is_not_json(line: bytes) -> None:
    with pytest.raises(ValueError):
        message_from_line(line)


@pytest.mark.parametrize(
    ("frame", "line"),
    [
        ('{"id":1}', b'{"id":1}\n'),
        ('{\n  "id": 1\n}', b'{"id":1}\n'),  # pretty-printed: kept on one line
        ("not\njson", b"not\\njson\n"),
    ],
)
def test_line_from_frame_is_always_one_line(frame: str, line: bytes) -> None:
    assert line_from_frame(frame) == line
