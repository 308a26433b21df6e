"""What a detached worker (the keeper, the updater) does for itself as it starts: its
title in `ps`, and the lock fd the launcher passed it through the exec."""

from __future__ import annotations

import os

from supervisor.procfs import open_fds_of

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    StrPath = str | os.PathLike[str]

TITLE_ENV = "SPT_NOENV"
_set_title: Callable[[str], None] | None = None  # loaded on first use


def set_title(title: str) -> None:
    """What `ps` shows for this process. Within the original command line's room
    (SPT_NOENV): growing into the environment's would hide CODEX_HOME from
    /proc/<pid>/environ, where sysadmins and tests look for a home's processes."""
    global _set_title
    os.environ[TITLE_ENV] = "1"
    if _set_title is None:
        _set_title = _title_setter() or (lambda title: None)
    _set_title(title)


def _title_setter() -> Callable[[str], None] | None:
    """setproctitle's C function. Loaded straight from its extension module when it is
    there: the package's `__init__` imports `logging` (2.5 MB of a resident worker's
    memory, with `threading` and `re`) for a fallback without the extension. None in a
    development checkout without setproctitle: the title stays."""
    import importlib.machinery
    import sys

    for entry in sys.path:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(entry, "setproctitle", f"_setproctitle{suffix}")
            if not os.path.isfile(path):
                continue
            loader = importlib.machinery.ExtensionFileLoader("setproctitle._setproctitle", path)
            spec = importlib.machinery.ModuleSpec(loader.name, loader, origin=path)
            module = loader.create_module(spec)
            loader.exec_module(module)
            setter: Callable[[str], None] = module.setproctitle
            return setter
    try:
        from setproctitle import setproctitle
    except ImportError:
        return None
    return setproctitle


def child_environment() -> dict[str, str]:
    """This worker's environment minus its own settings: what its children get."""
    return {key: value for key, value in os.environ.items() if key != TITLE_ENV}


def keep_lock_across_exec(lock_path: StrPath, keep: bool) -> None:
    """The launcher passes the worker its lock's fd through the exec. A worker keeps it
    from its children (a child outliving it would hold the lock), and passes it on only
    to its own re-exec (the updater's)."""
    for fd in open_fds_of(lock_path):
        os.set_inheritable(fd, keep)
