"""Out of file descriptors: how far the soft limit is raised, and how failed accepts
are reported (one line per interval with a count)."""

from __future__ import annotations

import errno
import resource

import pytest

from supervisor.descriptors import AcceptErrorLog, is_accept_exhaustion, raised_soft_limit

UNLIMITED = resource.RLIM_INFINITY


@pytest.mark.parametrize(
    ("soft", "hard", "nr_open", "wanted"),
    [
        (1024, 524288, 1048576, 524288),  # a common distribution's default
        (1024, 1024, 1048576, 1024),  # nothing to raise
        (256, 4096, 1048576, 4096),
        (1024, UNLIMITED, 1048576, 1048576),  # the kernel's per-process ceiling
        (1024, 2097152, 1048576, 1048576),
        (4096, 4096, 1024, 4096),  # never lowered
        (UNLIMITED, UNLIMITED, 1048576, UNLIMITED),
    ],
)
def test_raised_soft_limit(soft: int, hard: int, nr_open: int, wanted: int) -> None:
    assert raised_soft_limit(soft, hard, nr_open) == wanted


EMFILE = OSError(errno.EMFILE, "Too many open files")


def test_the_first_failed_accept_is_reported_at_once_and_explained() -> None:
    log = AcceptErrorLog(interval=10.0)
    line = log.note(EMFILE, now=100.0)
    assert line is not None
    assert line.startswith("cannot accept connections: [Errno 24] Too many open files;")
    assert "reported every 10 s" in line


def test_further_failures_are_one_line_per_interval_with_their_count() -> None:
    log = AcceptErrorLog(interval=10.0)
    log.note(EMFILE, now=100.0)
    lines = [log.note(EMFILE, now=100.0 + tick / 10) for tick in range(1, 251)]
    reported = [line for line in lines if line is not None]
    # 25 s of failures ten times a second: a line at 110 s and one at 120 s.
    assert reported == [
        "accept failed 100 times in the last 10 s: [Errno 24] Too many open files",
        "accept failed 100 times in the last 10 s: [Errno 24] Too many open files",
    ]


@pytest.mark.parametrize(
    ("context", "exhaustion"),
    [
        (
            {
                "message": "socket.accept() out of system resource",
                "exception": EMFILE,
                "socket": object(),
            },
            True,
        ),
        (
            {
                "message": "socket.accept() out of system resource",
                "exception": OSError(errno.ENFILE, "Too many open files in system"),
                "socket": object(),
            },
            True,
        ),
        ({"message": "socket.accept() out of system resource", "exception": EMFILE}, False),
        (
            {"message": "Exception in callback", "exception": EMFILE, "socket": object()},
            False,
        ),
        (
            {
                "message": "socket.accept() out of system resource",
                "exception": ValueError("x"),
                "socket": object(),
            },
            False,
        ),
        ({"message": "Task exception was never retrieved"}, False),
    ],
)
def test_is_accept_exhaustion(context: dict[str, object], exhaustion: bool) -> None:
    assert is_accept_exhaustion(context) is exhaustion
