"""`codexd unpersist`: undo `bootstrap --persist`."""

from __future__ import annotations

import click

from commands.common import home_paths, run_and_print


class UnpersistOutput:
    def __init__(self, removed: list[str]) -> None:
        self.removed = removed

    def to_json(self) -> dict[str, object]:
        return {
            "status": "unpersisted" if self.removed else "notPersisted",
            "removed": self.removed,
        }


@click.command("unpersist")
def unpersist() -> None:
    """Stop this home from coming back after a reboot: remove its systemd user unit
    and its crontab line. Running processes are left alone (`stop` stops them).

    Prints {"status": "unpersisted"|"notPersisted", "removed": ["systemd"|"cron", ...]};
    exits 0, or 1 when systemctl or crontab fails."""
    from supervisor.lifecycle import Daemon
    from supervisor.persistence import PersistenceTools
    from supervisor.persistence import unpersist as remove_persistence

    def operation() -> UnpersistOutput:
        paths = home_paths()
        with Daemon(paths).operation_lock():
            removed = remove_persistence(paths, PersistenceTools.from_environment())
        return UnpersistOutput([kind.value for kind in removed])

    run_and_print(operation)
