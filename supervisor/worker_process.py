"""What a detached worker (the keeper, the updater) does for itself as it starts: its
title in `ps`, and the lock fd the launcher passed it through the exec."""

from __future__ import annotations

import os

from supervisor.procfs import open_fds_of

TYPE_CHECKING = False
if TYPE_CHECKING:
    StrPath = str | os.PathLike[str]

TITLE_ENV = "SPT_NOENV"


def set_title(title: str) -> None:
    """What `ps` shows for this process. Within the original command line's room
    (SPT_NOENV): growing into the environment's would hide CODEX_HOME from
    /proc/<pid>/environ, where sysadmins and tests look for a home's processes."""
    os.environ[TITLE_ENV] = "1"
    try:
        from setproctitle import setproctitle
    except ImportError:  # a development checkout without it: the title stays
        return
    setproctitle(title)


def child_environment() -> dict[str, str]:
    """This worker's environment minus its own settings: what its children get."""
    return {key: value for key, value in os.environ.items() if key != TITLE_ENV}


def keep_lock_across_exec(lock_path: StrPath, keep: bool) -> None:
    """The launcher passes the worker its lock's fd through the exec. A worker keeps it
    from its children (a child outliving it would hold the lock), and passes it on only
    to its own re-exec (the updater's)."""
    for fd in open_fds_of(lock_path):
        os.set_inheritable(fd, keep)
