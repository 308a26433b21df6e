"""Signals for a long-lived worker, the gunicorn way: the handler only takes note and
wakes the main loop through a pipe; the loop does the work. Every wait of the worker
is a wait on that pipe, so SIGTERM ends even an hour's sleep at once.

The workers use `_signal`, not `signal`: the same calls and numbers, without the enum
conversions `signal` makes as it is imported (`enum` and what it brings are 0.8 MB of
a resident worker's memory). To mypy it is `signal`; `signal_name` stands in for
`signal.Signals(signum).name`.
"""

from __future__ import annotations

import os
import select

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from types import FrameType
else:
    import _signal as signal


def _signal_names() -> dict[int, str]:
    """Each signal number's name as `signal.Signals` has it: of aliases (SIGABRT and
    SIGIOT) the first by name, as `enum` converts them."""
    numbered = sorted(
        (number, name)
        for name, number in vars(signal).items()
        if name.isupper() and name.startswith("SIG") and not name.startswith("SIG_")
    )
    names: dict[int, str] = {}
    for number, name in numbered:
        names.setdefault(number, name)
    return names


_NAMES = _signal_names()


def signal_name(signum: int) -> str:
    """`SIGTERM` for 15; `signal 99` for a number no signal has."""
    return _NAMES.get(signum, f"signal {signum}")


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
