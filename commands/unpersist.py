"""`codexd unpersist`: undo `bootstrap --persist`."""

from __future__ import annotations

import click

from commands.common import home_paths, run_and_print


@click.command("unpersist")
def unpersist() -> None:
    """Stop this home from coming back after a reboot: remove its systemd user unit
    and its crontab line. Running processes are left alone (`stop` stops them).

    Prints {"status": "unpersisted"|"notPersisted", "removed": ["systemd"|"cron", ...]};
    exits 0, or 1 when systemctl or crontab fails."""
    from supervisor.lifecycle import Daemon
    from supervisor.persistence import PersistenceTools

    run_and_print(lambda: Daemon(home_paths()).unpersist(PersistenceTools.from_environment()))
