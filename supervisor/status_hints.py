"""What `codexd status` tells a user to do next, as a pure function of its facts.

A hint names the command that fixes what status shows, and only a command that
can succeed now: nothing is suggested that the install, an unreadable settings
file or an unmanaged app-server would refuse. Its section is the one of the
status screen it is printed under.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.decisions import WorkerState

STOPPED_STATES = (WorkerState.NOT_RUNNING, WorkerState.STALE)
INSTALL_COMMAND = "sh install.sh"


@dataclass(frozen=True)
class Hint:
    section: str  # "app-server", "updater" or "release"
    text: str  # for people; ends with the command, if any
    command: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"section": self.section, "text": self.text, "command": self.command}


@dataclass(frozen=True)
class HintFacts:
    installed: bool  # a managed release is installed
    settings_file: Path
    settings_readable: bool
    remote_control: bool  # the saved setting
    auto_update: bool  # the saved setting
    app_server: WorkerState
    unmanaged: bool  # something codexd did not start answers on the socket
    socket_path: Path
    updater: WorkerState
    last_pass_failed: bool  # the pass raised, or its installer failed
    last_pass_rolled_back: bool
    persisted: bool
    update_deferred: bool = False  # a new release waits for a busy app-server
    # Not persisted, and `bootstrap --persist` would fail here: why, and what to install.
    persistence_blocker: str | None = None


def bootstrap_command(
    remote_control: bool, persist: bool = False, auto_update: bool = False
) -> str:
    """A bare bootstrap turns remote control off: keep the saved setting on."""
    words = ["codexd", "bootstrap"]
    if remote_control:
        words.append("--remote-control")
    if auto_update:
        words.append("--auto-update")
    if persist:
        words.append("--persist")
    return " ".join(words)


def _with_command(section: str, text: str, command: str) -> Hint:
    return Hint(section, f"{text}: {command}", command)


def status_hints(facts: HintFacts) -> list[Hint]:
    hints: list[Hint] = []
    if not facts.installed:
        hints.append(
            _with_command(
                "release",
                "install a managed release (in a codexd checkout, or with "
                "CODEXD_CHANNEL=<channel>)",
                INSTALL_COMMAND,
            )
        )
    if not facts.settings_readable:
        hints.append(
            Hint(
                "app-server",
                f"fix or remove {facts.settings_file}: start, restart, bootstrap and the "
                "remote-control commands refuse until then",
            )
        )
    if facts.unmanaged:
        hints.append(
            _with_command(
                "app-server",
                f"an app-server codexd did not start serves {facts.socket_path}; to stop it "
                "and start the managed one",
                "codexd start --takeover",
            )
        )
    if facts.installed and facts.settings_readable and not facts.unmanaged:
        if facts.app_server in STOPPED_STATES:
            hints.append(_with_command("app-server", "start it", "codexd start"))
        if facts.updater in STOPPED_STATES and facts.auto_update:
            hints.append(
                _with_command(
                    "updater",
                    "start it (restarts the app-server too)",
                    bootstrap_command(facts.remote_control),
                )
            )
        if facts.updater in STOPPED_STATES and not facts.auto_update:
            hints.append(
                _with_command(
                    "updater",
                    "automatic updates are off (bootstrap --no-auto-update); to turn them on",
                    bootstrap_command(facts.remote_control, auto_update=True),
                )
            )
        if not facts.persisted and facts.persistence_blocker is not None:
            hints.append(
                Hint("release", f"to come back after a reboot: {facts.persistence_blocker}")
            )
        elif not facts.persisted:
            hints.append(
                _with_command(
                    "release",
                    "to come back after a reboot",
                    bootstrap_command(facts.remote_control, persist=True),
                )
            )
    if facts.last_pass_failed:
        hints.append(
            _with_command("updater", "see why the last pass failed", "codexd logs updater")
        )
    if facts.update_deferred:
        hints.append(
            _with_command(
                "updater",
                "a new release waits for the app-server to be idle; to restart it now "
                "(ending what runs below it)",
                "codexd update --yes",
            )
        )
    if facts.last_pass_rolled_back:
        hints.append(
            _with_command(
                "updater",
                "the new release did not start, the previous one runs; see why",
                "codexd logs app-server",
            )
        )
    return hints
