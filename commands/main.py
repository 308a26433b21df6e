"""codexd's entry point.

Remote clients run the lifecycle commands over SSH many times a day, so those take
a fast path: when the arguments are exactly one of `LIFECYCLE_OPERATIONS` (flat or
in codex's grammar), only the supervisor is imported, not click and the other
commands' needs. Everything else (options, help, errors in the arguments) goes
through click.
"""

from __future__ import annotations

import errno
import sys

from supervisor.version import CODEXD_VERSION

# What writing the answer can meet: a full disk (`>/dev/full`), a reader gone (EPIPE), a
# bad descriptor. A command's own files report their errors as DaemonError long before.
_OUTPUT_ERRORS = (errno.ENOSPC, errno.EPIPE, errno.EBADF, errno.EIO, errno.EDQUOT)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def lifecycle_command(argv: list[str]) -> str | None:
    """The lifecycle command `argv` is exactly, in either grammar; None otherwise."""
    from commands.common import LIFECYCLE_OPERATIONS

    if len(argv) == 1 and argv[0] in LIFECYCLE_OPERATIONS:
        return argv[0]
    if argv[:2] == ["app-server", "daemon"] and len(argv) == 3 and argv[2] in LIFECYCLE_OPERATIONS:
        return argv[2]
    return None


def fast_answer(command: str) -> dict[str, Any] | None:
    """`version` and an already-running `start`, answered by supervisor/fast_path.py
    when all is ordinary; None for the lifecycle to answer."""
    if command not in ("version", "start"):
        return None
    from supervisor import fast_path
    from supervisor.paths import home_from_environment

    home = home_from_environment()
    return fast_path.version(home) if command == "version" else fast_path.start(home)


# The long-lived workers, started detached by the launcher; never through click, whose
# import would stay in their memory for their whole life.
WORKER_COMMANDS = ("keeper", "pid-update-loop")


def run_worker(command: str) -> int:
    from supervisor.errors import DaemonError
    from supervisor.private_dir import checked_home

    try:
        # A string: `pathlib` would stay in a resident worker's memory (2 MB).
        home = checked_home()
    except DaemonError as error:  # into the worker's log, and the launch fails
        print(f"codexd: {error}", file=sys.stderr, flush=True)
        return 1
    if command == "keeper":
        from workers.keeper import run_keeper

        return run_keeper(home)
    from workers.updater import run_update_loop

    return run_update_loop(home)


def main() -> None:
    argv = sys.argv[1:]
    if len(argv) == 3 and argv[:2] == ["app-server", "daemon"] and argv[2] in WORKER_COMMANDS:
        sys.exit(run_worker(argv[2]))
    if sys.stdout is None:  # started with stdout closed (`>&-`)
        sys.exit(_fail("stdout is closed: there is nowhere to write the answer"))
    try:
        try:
            run_command(argv)
        finally:  # here, not at exit: a full stdout is reported, click's exits too
            sys.stdout.flush()
    except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback
        sys.exit(_fail(interrupted_message(argv), status=130))
    except OSError as error:
        # A write to stdout fails with no file name; a file of ours would name it (and
        # reaches here only through a bug, to be seen as the traceback it is).
        if error.errno not in _OUTPUT_ERRORS or error.filename is not None:
            raise
        # Nothing more can reach stdout; keep the interpreter's exit from retrying.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        if error.errno == errno.EPIPE:  # the reader left (`| head`): nothing to say
            sys.exit(1)
        sys.exit(_fail(f"cannot write the answer to stdout: {error.strerror}"))


# Besides the lifecycle table's (`version` aside), the commands with options that may
# stop or start the app-server.
_CHANGING_WITH_OPTIONS = ("bootstrap", "update", "rollback")


def interrupted_message(argv: list[str]) -> str:
    """Ctrl-C may land between a restart's stop and its start: a command that changes
    the app-server says where it left it."""
    from commands.common import LIFECYCLE_OPERATIONS  # on Ctrl-C only

    words = argv[2:] if argv[:2] == ["app-server", "daemon"] else argv
    changing = {*LIFECYCLE_OPERATIONS, *_CHANGING_WITH_OPTIONS} - {"version"}
    if not words or words[0] not in changing:
        return "interrupted"
    try:
        answers = fast_answer("version") is not None
    except BaseException:  # a second Ctrl-C, or anything else: say no more
        return "interrupted"
    if answers:
        return "interrupted; the app-server is running"
    return "interrupted; the app-server is not running: `codexd start` starts it"


def _fail(message: str, status: int = 1) -> int:
    print(f"codexd: {message}", file=sys.stderr, flush=True)
    return status


def run_command(argv: list[str]) -> None:
    if argv == ["--version"]:
        print(f"codexd {CODEXD_VERSION}")
        return
    command = lifecycle_command(argv)
    if command is not None:
        answer = fast_answer(command)
        if answer is not None:
            from commands.common import print_json

            print_json(answer)
            return
        from commands.common import run_lifecycle

        run_lifecycle(command)
        return
    from commands.cli import main as click_main

    click_main()
