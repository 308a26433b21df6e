"""Waiting for a process that is not our child to exit.

A pidfd becomes readable when its process exits, so the wait is a kernel
notification rather than a poll, and signals sent through it cannot reach a
process that reused the pid.
"""

from __future__ import annotations

import os
import select
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
else:
    import _signal as signal  # as supervisor/signals.py explains: the updater is resident

POLL_FALLBACK_SECONDS = 0.02


class ProcessHandle:
    """A process we may signal and wait for. Open it, then check its identity: a pid
    reused before the open fails that check, one reused after cannot be signalled."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._pidfd: int | None = None
        if pid <= 0:  # kill(0) and kill(-1) reach whole groups: never a process of ours
            self._gone = True
            return
        try:
            self._pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            self._pidfd = None
            self._gone = True
            return
        except (AttributeError, OSError):
            self._pidfd = None  # no pidfd here: fall back to psutil polling
        self._gone = False

    def close(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def __enter__(self) -> ProcessHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, signum: int) -> None:
        try:
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, signum)
            elif not self._gone:
                os.kill(self.pid, signum)
        except ProcessLookupError:
            self._gone = True

    def fds(self) -> tuple[int, ...]:
        """Readable once the process exits (empty without pidfd: poll `has_exited`)."""
        return () if self._pidfd is None else (self._pidfd,)

    def has_exited(self) -> bool:
        return self.wait(0)

    def wait(self, timeout: float) -> bool:
        """True once the process has exited (a zombie counts), False at the deadline."""
        if self._gone:
            return True
        if self._pidfd is not None:
            ready, _, _ = select.select([self._pidfd], [], [], max(timeout, 0))
            return bool(ready)
        import psutil  # only where there is no pidfd

        deadline = time.monotonic() + timeout
        while True:
            try:
                if psutil.Process(self.pid).status() == psutil.STATUS_ZOMBIE:
                    return True
            except psutil.NoSuchProcess:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_FALLBACK_SECONDS)
