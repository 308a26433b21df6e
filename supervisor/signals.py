"""Signals for a long-lived worker, the gunicorn way: the handler only takes note and
wakes the main loop through a pipe; the loop does the work. Every wait of the worker
is a wait on that pipe, so SIGTERM ends even an hour's sleep at once."""

from __future__ import annotations

import os
import select
import signal
from types import FrameType


class SignalInbox:
    def __init__(self, signums: tuple[int, ...]) -> None:
        self.signums = signums
        self.pending: list[int] = []
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        signal.set_wakeup_fd(self._write_fd)
        for signum in signums:
            signal.signal(signum, self._note)

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.pending.append(signum)

    @property
    def fileno(self) -> int:
        """Readable when a signal has arrived: select on it beside other fds."""
        return self._read_fd

    def wait(self, timeout: float, also: tuple[int, ...] = ()) -> list[int]:
        """Wait up to `timeout` for a signal (or for one of `also` to be readable);
        return the signals received, oldest first."""
        if not self.pending:
            select.select([self._read_fd, *also], [], [], max(timeout, 0))
        return self.take()

    def take(self) -> list[int]:
        try:
            while os.read(self._read_fd, 512):
                pass
        except BlockingIOError:
            pass
        received, self.pending = self.pending, []
        return received

    def close(self) -> None:
        """Back to default dispositions (before an exec: SIG_IGN would survive it)."""
        signal.set_wakeup_fd(-1)
        for signum in self.signums:
            signal.signal(signum, signal.SIG_DFL)
        os.close(self._read_fd)
        os.close(self._write_fd)
