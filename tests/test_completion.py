"""Shell completion through click, and the --help of every command."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from commands.cli import cli
from tests.conftest import CODEXD, Home


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_a_script_for_codexd(home: Home, shell: str) -> None:
    result = home.run("completion", shell)
    assert result.returncode == 0, result.stderr
    assert "codexd" in result.stdout
    assert "_CODEXD_COMPLETE" in result.stdout


def test_completion_refuses_an_unknown_shell(home: Home) -> None:
    result = home.run("completion", "tcsh")
    assert result.returncode == 2
    assert result.stdout == ""


def test_click_completes_st_to_start_status_stop(home: Home) -> None:
    result = home.run(
        env={"_CODEXD_COMPLETE": "bash_complete", "COMP_WORDS": "codexd st", "COMP_CWORD": "1"}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["plain,start", "plain,status", "plain,stop"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_offers_start_status_stop_for_codexd_st(home: Home) -> None:
    script = home.run("completion", "bash").stdout
    program = (
        f"{script}\n"
        "COMP_WORDS=(codexd st); COMP_CWORD=1\n"
        "_codexd_completion codexd st codexd\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    completed = subprocess.run(
        ["bash", "-c", program],
        env={**home.env, "PATH": f"{CODEXD.parent}:{home.env.get('PATH', '')}"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["start", "status", "stop"]


FLAT_COMMANDS = sorted(name for name, command in cli.commands.items() if not command.hidden)


@pytest.mark.parametrize("name", FLAT_COMMANDS)
def test_every_command_help_says_what_it_prints_and_how_it_exits(name: str) -> None:
    command = cli.commands[name]
    help_text = (command.help or "").lower()
    assert help_text, f"{name} has no help"
    if name != "app-server":
        assert "print" in help_text, f"{name}'s help does not say what it prints"
        assert "exit" in help_text, f"{name}'s help does not give its exit statuses"
