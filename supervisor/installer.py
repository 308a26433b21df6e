"""The installer an update runs: install.sh from codexd's recorded source (a channel
or a checkout), which brings the newest codex of the codex source and the newest codexd
of the channel. The updater runs it detached in its own process group; `codexd
update` in the foreground."""

from __future__ import annotations

import os
from pathlib import Path

from supervisor import config
from supervisor.paths import HomePaths
from supervisor.standalone import ReleaseSource, read_source
from supervisor.worker_process import child_environment


def installer_command(source: ReleaseSource) -> list[str]:
    """The installer for a source, always run by `sh` with the script on stdin, as
    `curl ... | sh` would. From a checkout, the committed HEAD's install.sh (it then
    builds from HEAD too), so that an edit in progress is never rolled out; a checkout
    that is not a git one, its install.sh as it is. The script is read in full before
    `sh` starts, so that a failed download or `git show` fails the pass instead of
    running half a script."""
    if source.kind == "checkout":
        script = (
            'if git -C "$1" rev-parse -q --verify HEAD >/dev/null 2>&1; then '
            'script=$(git -C "$1" show HEAD:./install.sh) && printf "%s\\n" "$script" | sh; '
            'else sh "$1/install.sh"; fi'
        )
        return ["sh", "-c", script, "sh", source.location]
    if source.location.startswith("https://"):
        fetch = (
            'script=$(curl -fsSL --proto "=https" "$1/install.sh") && printf "%s\\n" "$script" | sh'
        )
        return ["sh", "-c", fetch, "sh", source.location]
    return ["sh", "-c", 'sh < "$1/install.sh"', "sh", source.location]


NEW_SOURCE_REMEDY = (
    "run `sh install.sh` once from a codexd checkout (or with CODEXD_CHANNEL=<channel>) "
    "to record a new source"
)


def source_problem(
    source: ReleaseSource, directory_exists: bool, script_exists: bool
) -> str | None:
    """Why the installer of a local channel or checkout cannot run (pure); None: it can."""
    if not directory_exists:
        return f"the {source.kind} {source.location} is gone"
    if not script_exists:
        return f"the {source.kind} {source.location} has no install.sh"
    return None


def local_source_problem(source: ReleaseSource) -> str | None:
    """`source_problem` of a directory source; an https:// channel is not fetched."""
    if source.location.startswith("https://"):
        return None
    directory = Path(source.location)
    return source_problem(source, directory.is_dir(), (directory / "install.sh").is_file())


def resolve_source(paths: HomePaths, environ: dict[str, str]) -> ReleaseSource | None:
    """codexd's source: CODEXD_CHANNEL, else what the last install recorded. (codex's
    source, CODEXD_CODEX_SOURCE, is install.sh's to read: the installer inherits it.)"""
    channel = environ.get(config.CHANNEL_ENV)
    if channel:
        return ReleaseSource("channel", channel)
    return read_source(paths)


# Set for the installer `codexd update` and the updater run, which restart the
# app-server themselves: install.py then leaves out its "the running app-server stays
# on release ..." notice. Internal (not in the README's table): not for users to set.
UNDER_UPDATE_ENV = "CODEXD_INSTALL_UNDER_UPDATE"


def installer_environment(paths: HomePaths, source: ReleaseSource) -> dict[str, str]:
    """This process's environment (CODEXD_CODEX_SOURCE and the rest pass through),
    pinned to the home and the channel."""
    env = {
        **child_environment(),
        config.CODEX_HOME_ENV: str(paths.home),
        UNDER_UPDATE_ENV: "1",
    }
    if source.kind == "channel":
        env[config.CHANNEL_ENV] = source.location
    return env


def current_source(paths: HomePaths) -> ReleaseSource | None:
    return resolve_source(paths, dict(os.environ))
