"""Directories codexd trusts: the home, the state dir, the socket directories.

Whoever can write in one of them can plant a pid record, a lock or a socket, so
each must be a directory owned by the effective user that nobody else may write
to. `ensure_private_dir` is for the processes that create and own them (a
lifecycle command, the app-server): it creates a missing one and tightens a loose
mode on one of ours. `check_private_dir` is for those that must create nothing (a
client following a socket symlink, a command that only reads): it only judges.
Both refuse a directory owned by someone else, with one line that names it and says
what to do.
"""

from __future__ import annotations

import os
import stat

from supervisor.errors import DaemonError
from supervisor.lean import Choice, Value
from supervisor.paths import (
    SOCKET_DIR_NAME,
    STATE_DIR_NAME,
    HomePaths,
    home_from_environment,
    resolve_home,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    pass

PRIVATE_DIR_MODE = 0o700


class PrivateDirError(DaemonError):
    """A directory codexd must not use; the message names it and says what to do."""


class DirRule(Value):
    """What one kind of directory must be."""

    __slots__ = (
        "create_parents",
        "follow_symlink",
        "forbidden_bits",
        "foreign_fix",
        "not_a_directory_fix",
        "shared_ok",
        "what",
    )

    def __init__(
        self,
        what: str,
        *,
        forbidden_bits: int,
        follow_symlink: bool,
        foreign_fix: str,
        not_a_directory_fix: str = "move it out of the way",
        create_parents: bool = True,
        shared_ok: bool = False,
    ) -> None:
        self.what = what  # how messages name it: "state directory"
        # Mode bits nobody but the owner may have: 0o077 for a private directory, 0o022
        # for one others may read but never write.
        self.forbidden_bits = forbidden_bits
        # The home may be a symlink to a directory of ours (dotfile managers do that);
        # a socket directory under /tmp may not: its owner could repoint it after our
        # check.
        self.follow_symlink = follow_symlink
        # What to do about a directory owned by someone else.
        self.foreign_fix = foreign_fix
        self.not_a_directory_fix = not_a_directory_fix
        # Whether `ensure_private_dir` makes missing parents: not for a socket directory,
        # whose parent ($XDG_RUNTIME_DIR, /tmp) is the system's to make.
        self.create_parents = create_parents
        # For a directory we only need nobody to rename things in: root may own it, and
        # others may write to it when the sticky bit keeps them to their own entries
        # (/tmp).
        self.shared_ok = shared_ok


HOME = DirRule(
    "codex home",
    forbidden_bits=0o022,
    follow_symlink=True,
    foreign_fix="run codexd as its owner, or point CODEX_HOME at a directory of yours",
    not_a_directory_fix="point CODEX_HOME at a directory",
)
STATE_DIR = DirRule(
    "state directory",
    forbidden_bits=0o077,
    follow_symlink=True,
    foreign_fix="run codexd as its owner, or have its owner remove it",
)
SOCKET_DIR = DirRule(
    "control socket directory",
    forbidden_bits=0o022,
    follow_symlink=True,
    foreign_fix="run codexd as its owner, or have its owner remove it",
)
# The short directory (and its per-user parent) a too-long socket path is bound in.
PRIVATE_SOCKET_DIR = DirRule(
    "private socket directory",
    forbidden_bits=0o077,
    follow_symlink=False,
    foreign_fix="have root remove it, or set XDG_RUNTIME_DIR to a private directory of yours",
    create_parents=False,
)


# The directory that holds a private socket directory (or, for codex's own layout, the
# socket itself): /tmp, /tmp/codexd-<uid>, $XDG_RUNTIME_DIR/codexd. Whoever may rename
# entries in it could put a directory of theirs where ours was.
SOCKET_DIR_PARENT = DirRule(
    "socket directory parent",
    forbidden_bits=0o022,
    follow_symlink=True,
    foreign_fix="have root remove it, or set XDG_RUNTIME_DIR to a private directory of yours",
    create_parents=False,
    shared_ok=True,
)


class DirVerdict(Choice):
    PRIVATE = "private"  # a directory of ours with no forbidden bits
    MISSING = "missing"
    LOOSE = "loose"  # ours, with forbidden bits: tightened (ensure) or refused (check)
    NOT_A_DIRECTORY = "notADirectory"
    SYMLINK = "symlink"  # one the rule does not follow, or another user's
    FOREIGN = "foreign"  # owned by another user


class DirFacts(Value):
    __slots__ = ("is_directory", "is_symlink", "mode", "owner_uid")

    def __init__(self, is_directory: bool, is_symlink: bool, owner_uid: int, mode: int) -> None:
        self.is_directory = is_directory
        self.is_symlink = is_symlink
        self.owner_uid = owner_uid
        self.mode = mode  # permission bits only


def judge_dir(facts: DirFacts | None, euid: int, rule: DirRule) -> DirVerdict:
    """What a directory is worth to a process running as `euid`."""
    if facts is None:
        return DirVerdict.MISSING
    if facts.is_symlink:
        return DirVerdict.SYMLINK
    if not facts.is_directory:
        return DirVerdict.NOT_A_DIRECTORY
    if facts.owner_uid != euid and not (rule.shared_ok and facts.owner_uid == 0):
        return DirVerdict.FOREIGN
    if facts.mode & rule.forbidden_bits and not (rule.shared_ok and facts.mode & stat.S_ISVTX):
        return DirVerdict.LOOSE
    return DirVerdict.PRIVATE


def describe_uid(uid: int) -> str:
    """`uid 1000 (alice)`, or `uid 1000` for a uid with no name."""
    import pwd  # a C module: costs nothing, but only messages need it

    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def describe_owner(path: str | os.PathLike[str]) -> str:
    """`owned by uid 0 (root), mode 0600`, for a message about a file we cannot use."""
    try:
        st = os.lstat(path)
    except OSError:
        return "owner unknown"
    return f"owned by {describe_uid(st.st_uid)}, mode {stat.S_IMODE(st.st_mode):04o}"


def refusal(
    path: str | os.PathLike[str], verdict: DirVerdict, facts: DirFacts | None, rule: DirRule
) -> str:
    """The one-line message for a directory that may not be used."""
    where = f"{rule.what} {path}"
    if verdict is DirVerdict.NOT_A_DIRECTORY:
        return f"{where} is not a directory: {rule.not_a_directory_fix}"
    if verdict is DirVerdict.SYMLINK:
        return f"{where} is a symlink; refusing to use it: remove it"
    if verdict is DirVerdict.FOREIGN and facts is not None:
        return (
            f"{where} is owned by {describe_uid(facts.owner_uid)}, not by you "
            f"({describe_uid(os.geteuid())}); refusing to use it: {rule.foreign_fix}"
        )
    if verdict is DirVerdict.LOOSE and facts is not None:
        fix = "chmod 700" if rule.forbidden_bits & 0o044 else "chmod go-w"
        return (
            f"{where} has mode {facts.mode:04o}, open to other users; refusing to use it: "
            f"{fix} {path}"
        )
    return f"{where} is missing"


def _facts(path: str | os.PathLike[str], rule: DirRule) -> DirFacts | None:
    """The directory's facts; None when it does not exist. PrivateDirError naming it
    when it cannot be looked at."""
    try:
        st = os.lstat(path)
        # A symlink is followed only where the rule allows and only when we or root made
        # it: another user's link could be repointed after our check.
        if rule.follow_symlink and stat.S_ISLNK(st.st_mode) and st.st_uid in (os.geteuid(), 0):
            st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise PrivateDirError(f"cannot use {rule.what} {path}: {error.strerror}") from error
    return DirFacts(
        is_directory=stat.S_ISDIR(st.st_mode),
        is_symlink=stat.S_ISLNK(st.st_mode),
        owner_uid=st.st_uid,
        mode=stat.S_IMODE(st.st_mode),
    )


def check_private_dir(
    path: str | os.PathLike[str], rule: DirRule, *, loose_ok: bool = False
) -> bool:
    """Whether `path` exists, after making sure it may be trusted; creates and changes
    nothing. `loose_ok` lets a loose directory of ours pass, for a caller whose next
    step (a lifecycle command's `ensure_private_dir`) tightens it."""
    facts = _facts(path, rule)
    verdict = judge_dir(facts, os.geteuid(), rule)
    if verdict is DirVerdict.MISSING:
        return False
    if verdict is DirVerdict.PRIVATE or (verdict is DirVerdict.LOOSE and loose_ok):
        return True
    raise PrivateDirError(refusal(path, verdict, facts, rule))


def ensure_private_dir(path: str | os.PathLike[str], rule: DirRule, *, create: bool = True) -> None:
    """Make `path` a directory we may trust: create it 0700 when missing (and
    `create`), take the forbidden bits off one of ours, refuse anything else."""
    facts = _facts(path, rule)
    verdict = judge_dir(facts, os.geteuid(), rule)
    if verdict is DirVerdict.MISSING:
        if not create:
            return
        try:
            if rule.create_parents:
                os.makedirs(os.path.dirname(path), exist_ok=True)  # as `mkdir -p` makes them
            os.mkdir(path, mode=PRIVATE_DIR_MODE)
        except FileExistsError:
            pass  # made meanwhile: judged below like any other
        except OSError as error:
            raise PrivateDirError(f"cannot create {rule.what} {path}: {error.strerror}") from error
        facts = _facts(path, rule)
        verdict = judge_dir(facts, os.geteuid(), rule)
    if verdict is DirVerdict.LOOSE and facts is not None:
        try:
            # Only our own directory gets here, so nobody else can have loosened it:
            # a umask or a chmod of ours did.
            os.chmod(path, facts.mode & ~rule.forbidden_bits | PRIVATE_DIR_MODE)
        except OSError as error:
            raise PrivateDirError(
                f"cannot make {rule.what} {path} private: {error.strerror}"
            ) from error
        return
    if verdict is not DirVerdict.PRIVATE:
        raise PrivateDirError(refusal(path, verdict, facts, rule))


def check_home(paths: HomePaths, *, loose_ok: bool = True) -> None:
    """What every command checks before it reads anything under the home: the home,
    the state dir and the socket dir are, where they exist, directories of ours. A
    loose mode passes here (unless not `loose_ok`); the next lifecycle command
    tightens it."""
    check_home_dirs(os.fspath(paths.home), loose_ok=loose_ok)


def check_home_dirs(home: str, *, loose_ok: bool = True) -> None:
    """`check_home` for a home given as a string (the command fast path's)."""
    if not check_private_dir(home, HOME, loose_ok=loose_ok):
        return  # nothing below a missing home exists either
    check_private_dir(os.path.join(home, STATE_DIR_NAME), STATE_DIR, loose_ok=loose_ok)
    check_private_dir(os.path.join(home, SOCKET_DIR_NAME), SOCKET_DIR, loose_ok=loose_ok)


def checked_home() -> str:
    """The home of `checked_home_paths`, as a string: the resident workers take it so,
    without `pathlib`."""
    home = home_from_environment()
    check_home_dirs(home)
    return home


def checked_home_paths() -> HomePaths:
    """The paths of `$CODEX_HOME` (or ~/.codex), once `check_home` passed."""
    paths = HomePaths(resolve_home())
    check_home(paths)
    return paths


def ensure_home(paths: HomePaths) -> None:
    """What a lifecycle command does before it takes daemon.lock: the home and the
    state dir exist and are private, a socket dir of ours is tightened, anything
    owned by someone else is refused."""
    ensure_private_dir(paths.home, HOME)
    ensure_private_dir(paths.socket_path.parent, SOCKET_DIR, create=False)
    ensure_private_dir(paths.state_dir, STATE_DIR)
