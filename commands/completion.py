"""`codexd completion bash|zsh|fish`: the shell completion script, through click."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

COMPLETE_VAR = "_CODEXD_COMPLETE"
SHELLS = ("bash", "zsh", "fish")


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the completion script for SHELL. Load it with, for bash,
    `eval "$(codexd completion bash)"` in ~/.bashrc; for zsh the same in ~/.zshrc; for
    fish `codexd completion fish > ~/.config/fish/completions/codexd.fish`.

    Prints the script; exits 0 (2 for an unknown shell)."""
    completion_class = get_completion_class(shell)
    assert completion_class is not None  # click knows every shell in SHELLS
    root = ctx.find_root().command
    click.echo(completion_class(root, {}, "codexd", COMPLETE_VAR).source())
