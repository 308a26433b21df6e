"""Running out of file descriptors without drowning in it.

A server with many clients runs into RLIMIT_NOFILE. Its soft limit is often far
below the hard one (1024 against 524288 on common distributions), and nothing but
habit keeps it there: a worker raises it at start. Past that limit every accept()
fails; asyncio reports each failure with a traceback, which filled 172 MB of log
in 24 s. `AcceptErrorLog` turns them into one line per interval with a count.
"""

from __future__ import annotations

import errno
import resource

NR_OPEN = "/proc/sys/fs/nr_open"
# The most a soft limit may be on Linux when the hard limit is unlimited.
DEFAULT_NR_OPEN = 1024 * 1024
ACCEPT_ERROR_LOG_INTERVAL_SECONDS = 10.0
OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def raised_soft_limit(soft: int, hard: int, nr_open: int) -> int:
    """The soft RLIMIT_NOFILE to set: the hard limit, or the kernel's per-process
    ceiling when the hard limit is unlimited; never lower than `soft`."""
    ceiling = nr_open if hard == resource.RLIM_INFINITY else min(hard, nr_open)
    if soft == resource.RLIM_INFINITY or soft >= ceiling:
        return soft
    return ceiling


def raise_open_file_limit() -> tuple[int, int]:
    """Raise this process's soft limit on open files as far as it may go; (before,
    after). The new limit is inherited by whatever the process execs or forks."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        with open(NR_OPEN) as limit:
            nr_open = int(limit.read())
    except (OSError, ValueError):
        nr_open = DEFAULT_NR_OPEN
    wanted = raised_soft_limit(soft, hard, nr_open)
    if wanted != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (OSError, ValueError):
            return soft, soft
    return soft, wanted


class AcceptErrorLog:
    """Counts failed accept() calls and says so once per interval."""

    def __init__(self, interval: float = ACCEPT_ERROR_LOG_INTERVAL_SECONDS) -> None:
        self.interval = interval
        self.unreported = 0
        self.last_line_at: float | None = None

    def note(self, error: BaseException, now: float) -> str | None:
        """The line to log for this failure, or None while an interval is running."""
        self.unreported += 1
        last = self.last_line_at
        if last is not None and now - last < self.interval:
            return None
        count, self.unreported, self.last_line_at = self.unreported, 0, now
        if last is None:
            return (
                f"cannot accept connections: {error}; new clients wait in the backlog, "
                f"accept is retried every second, further failures are counted and "
                f"reported every {self.interval:g} s"
            )
        return f"accept failed {count} times in the last {self.interval:g} s: {error}"


def is_accept_exhaustion(context: dict[str, object]) -> bool:
    """Whether an asyncio exception-handler context reports a failed accept() for want
    of descriptors or memory (asyncio's "socket.accept() out of system resource")."""
    error = context.get("exception")
    return (
        "socket" in context
        and isinstance(error, OSError)
        and error.errno in OUT_OF_RESOURCES
        and "accept" in str(context.get("message", ""))
    )
