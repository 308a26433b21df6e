"""The entry point: which argument lists skip click, the one table both paths run the
lifecycle commands from, and `--enable` where it does not apply."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import click
import pytest

from commands.cli import app_server, cli
from commands.common import LIFECYCLE_OPERATIONS
from commands.main import lifecycle_command
from supervisor.config import PAUSE_ENV
from tests.conftest import CODEXD, Home, is_gone, wait_for


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["start"], "start"),
        (["stop"], "stop"),
        (["restart"], "restart"),
        (["version"], "version"),
        (["enable-remote-control"], "enable-remote-control"),
        (["disable-remote-control"], "disable-remote-control"),
        (["app-server", "daemon", "start"], "start"),
        (["app-server", "daemon", "version"], "version"),
        (["app-server", "daemon", "disable-remote-control"], "disable-remote-control"),
        # Everything else goes through click: options, help, other commands, typos.
        ([], None),
        (["start", "--help"], None),
        (["--help"], None),
        (["bootstrap"], None),
        (["status"], None),
        (["--enable", "remote_control", "start"], None),
        (["app-server", "daemon", "bootstrap", "--remote-control"], None),
        (["app-server", "daemon", "pid-update-loop"], None),
        (["app-server", "--listen", "unix://"], None),
        (["app-server", "start"], None),
        (["daemon", "start"], None),
        (["strat"], None),
    ],
)
def test_lifecycle_command(argv: list[str], command: str | None) -> None:
    assert lifecycle_command(argv) == command


def daemon_group() -> click.Group:
    group = app_server.commands["daemon"]
    assert isinstance(group, click.Group)
    return group


def test_the_table_and_click_know_the_same_lifecycle_commands() -> None:
    """Every command of the table has its click command in both grammars, takes no
    required option (the fast path runs it bare), and every daemon command without
    options is in the table, so the fast path runs it."""
    daemon = daemon_group()
    for name in LIFECYCLE_OPERATIONS:
        assert cli.commands[name] is daemon.commands[name]
        assert not any(param.required for param in daemon.commands[name].params)
    optionless = {
        name
        for name, command in daemon.commands.items()
        if not command.hidden and all(param.name == "help" for param in command.params)
    }
    # `unpersist` is codexd's own and rare: click runs it.
    assert optionless - {"unpersist"} <= set(LIFECYCLE_OPERATIONS)


def test_every_flat_command_is_also_under_app_server_daemon() -> None:
    """The README's promise: `codexd <command>` is `current/codex app-server daemon
    <command>`, codexd's extras included (status, logs, doctor, ...)."""
    daemon = daemon_group()
    for name, command in cli.commands.items():
        if name != "app-server":
            assert daemon.commands.get(name) is command, name


def test_status_through_the_daemon_grammar_is_the_flat_status(bare_home: Home) -> None:
    flat = bare_home.ok("status", "--json")
    spelled = bare_home.ok("app-server", "daemon", "status", "--json")
    assert spelled.keys() == flat.keys()
    assert spelled["appServer"]["status"] == flat["appServer"]["status"] == "notRunning"


def test_the_fast_path_does_not_import_click(bare_home: Home) -> None:
    code = (
        "import sys; sys.argv = ['codexd', 'version']\n"
        "from commands.main import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "assert 'click' not in sys.modules, 'click imported'\n"
        "assert 'supervisor.lifecycle' in sys.modules, 'the operation did not run'\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code],
        env=bare_home.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "app server is not running" in completed.stderr


@pytest.mark.parametrize(
    ("argv", "remedy"),
    [
        (["--enable", "remote_control", "start"], "codexd enable-remote-control"),
        (["--enable", "remote_control", "restart"], "codexd enable-remote-control"),
        (
            ["--enable", "remote_control", "app-server", "daemon", "start"],
            "codexd enable-remote-control",
        ),
        (
            ["--enable", "remote_control", "app-server", "daemon", "bootstrap"],
            "codexd bootstrap --remote-control",
        ),
        (["--enable", "remote_control", "app-server", "proxy"], "codexd enable-remote-control"),
        (["--enable", "remote_control", "status"], "codexd enable-remote-control"),
    ],
)
def test_enable_on_a_command_that_launches_nothing_is_refused(
    home: Home, argv: list[str], remedy: str
) -> None:
    result = home.run(*argv)
    assert result.returncode == 2
    assert result.stdout == ""
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: --enable remote_control applies only to `app-server --listen`")
    assert remedy in error
    assert home.app_server_pids() == []
    assert not home.paths.app_server_record.exists()
    assert not home.paths.settings_file.exists()


# -- what the user sees when the answer cannot be written, or Ctrl-C ----------------------


@pytest.mark.parametrize(
    "args", [("--version",), ("stop",), ("status", "--json"), ("completion", "bash")]
)
def test_a_full_stdout_is_said_in_one_line(bare_home: Home, args: tuple[str, ...]) -> None:
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [str(CODEXD), *args],
            env=bare_home.env,
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert done.stderr == "codexd: cannot write the answer to stdout: No space left on device\n"


def test_a_closed_stdout_is_said_and_fails(bare_home: Home) -> None:
    done = subprocess.run(
        ["sh", "-c", 'exec "$0" stop >&-', str(CODEXD)],
        env=bare_home.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr == "codexd: stdout is closed: there is nowhere to write the answer\n"


def test_a_reader_that_left_is_no_error_message(bare_home: Home) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # as `| head -1` that has read its line
    try:
        done = subprocess.run(
            [str(CODEXD), "status"],
            env=bare_home.env,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 1
    assert done.stderr == ""


def test_ctrl_c_of_a_waiting_command_is_one_line(home: Home, tmp_path: Path) -> None:
    marker = tmp_path / "locked"
    home.spawn("start", env={PAUSE_ENV: f"locked:{marker}"})  # holds daemon.lock
    wait_for(marker.exists, what="the first start to hold daemon.lock")
    waiter = home.spawn("restart")
    assert waiter.stderr is not None
    assert "waiting up to 75 s for the daemon operation lock" in waiter.stderr.readline()

    os.kill(waiter.pid, signal.SIGINT)

    _, stderr = waiter.communicate(timeout=30)
    assert waiter.returncode == 130
    assert stderr == NOT_RUNNING_AFTER_CTRL_C


NOT_RUNNING_AFTER_CTRL_C = (
    "codexd: interrupted; the app-server is not running: `codexd start` starts it\n"
)


def test_ctrl_c_of_a_restart_after_its_stop_says_the_app_server_is_down(
    home: Home, tmp_path: Path
) -> None:
    keeper = home.ok("start")["pid"]
    marker = tmp_path / "signalled"
    restart = home.spawn("restart", env={PAUSE_ENV: f"signalled:{marker}"})
    wait_for(marker.exists, what="the restart to have stopped the keeper")
    wait_for(lambda: is_gone(keeper), timeout=30, what="the keeper to exit")

    os.kill(restart.pid, signal.SIGINT)

    _, stderr = restart.communicate(timeout=30)
    assert restart.returncode == 130
    assert stderr == NOT_RUNNING_AFTER_CTRL_C
    assert home.ok("start")["status"] == "started"


def test_ctrl_c_with_the_app_server_up_says_so(home: Home, tmp_path: Path) -> None:
    home.ok("start")
    marker = tmp_path / "locked"
    start = home.spawn("start", env={PAUSE_ENV: f"locked:{marker}"})
    wait_for(marker.exists, what="the second start to hold daemon.lock")

    os.kill(start.pid, signal.SIGINT)

    _, stderr = start.communicate(timeout=30)
    assert start.returncode == 130
    assert stderr == "codexd: interrupted; the app-server is running\n"


def test_ctrl_c_of_a_click_command_is_one_line_too(home: Home, tmp_path: Path) -> None:
    marker = tmp_path / "locked"
    home.spawn("start", env={PAUSE_ENV: f"locked:{marker}"})  # holds daemon.lock
    wait_for(marker.exists, what="the first start to hold daemon.lock")
    waiter = home.spawn("bootstrap", "--no-auto-update")  # through click
    assert waiter.stderr is not None
    assert "waiting up to 75 s for the daemon operation lock" in waiter.stderr.readline()

    os.kill(waiter.pid, signal.SIGINT)

    _, stderr = waiter.communicate(timeout=30)
    assert waiter.returncode == 130
    assert "Aborted" not in stderr and "Traceback" not in stderr
    assert stderr.strip() == NOT_RUNNING_AFTER_CTRL_C.strip()


@pytest.mark.parametrize(
    ("argv", "changes"),
    [
        (["start"], True),
        (["app-server", "daemon", "restart"], True),
        (["bootstrap", "--remote-control"], True),
        (["update", "--yes"], True),
        (["version"], False),
        (["status"], False),
        (["logs", "-f"], False),
        ([], False),
    ],
)
def test_which_commands_say_where_ctrl_c_left_the_app_server(
    bare_home: Home, argv: list[str], changes: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from commands.main import interrupted_message

    monkeypatch.setenv("CODEX_HOME", str(bare_home.path))
    message = interrupted_message(argv)
    assert (message != "interrupted") == changes, message
