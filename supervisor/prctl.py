"""The two prctl(2) calls the keeper needs, which Python's `os` does not offer.

Through ctypes: no maintained library wraps them (python-prctl is unmaintained and
needs libcap headers to build), and each is one call.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

_libc = ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, value: int) -> None:
    if _libc.prctl(option, value, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def set_child_subreaper(enabled: bool) -> None:
    """Orphans below this process are re-parented to it (instead of to init), so it can
    reap them and end them."""
    _prctl(PR_SET_CHILD_SUBREAPER, int(enabled))


@contextlib.contextmanager
def subreaper_suspended() -> Iterator[None]:
    """Not a subreaper for a moment: a process detached meanwhile (double fork) goes to
    init, not to us."""
    set_child_subreaper(False)
    try:
        yield
    finally:
        set_child_subreaper(True)


def set_parent_death_signal(signum: int) -> None:
    """The kernel sends `signum` to this process when its parent dies (kept across
    exec; cleared by fork)."""
    _prctl(PR_SET_PDEATHSIG, signum)
