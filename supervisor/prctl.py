"""The two prctl(2) calls the keeper needs, which Python's `os` does not offer.

Through ctypes: no maintained library wraps them (python-prctl is unmaintained and
needs libcap headers to build), and each is one call. (ctypes is 0.6 MB of the keeper's
memory; the keeper cannot do without the first call.)
"""

from __future__ import annotations

import ctypes
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType

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


class SubreaperSuspended:
    """Not a subreaper for a moment: a process detached meanwhile (double fork) goes to
    init, not to us. A class, not `contextlib.contextmanager`: contextlib is not worth
    its memory in the keeper."""

    def __enter__(self) -> None:
        set_child_subreaper(False)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        set_child_subreaper(True)


def set_parent_death_signal(signum: int) -> None:
    """The kernel sends `signum` to this process when its parent dies (kept across
    exec; cleared by fork)."""
    _prctl(PR_SET_PDEATHSIG, signum)
