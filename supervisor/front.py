"""The small sh scripts install.sh writes: a release's front (`releases/<r>/codex`, the
managed binary), its `codexd` launcher, and the `codexd` command on PATH.

The front execs codexd for `app-server daemon ...` and the real codex for anything
else, so each call costs one sh start-up (under a millisecond) and one exec; the
exec keeps the pid, argv after argv[0], stdio, environment and exit status. It finds the
packages directory from its own path (`$0` is the path it was run by, through `current`
or not, and `..` resolves physically), so a moved home keeps working; the directory it
was installed into is the fallback for a front reached through some other symlink. The
interpreter's path is absolute and fixed at install: a PATH lookup may hit a version
manager's shim that costs more than the command.

Its bytes name the codex payload (with its integrity) and the codexd release (with its
digest), so they change whenever either does: the updater compares the managed
binary's content digest with what the app-server runs. Pure text, no I/O.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

BIN_COMMAND_MARK = "# The codexd command, written by install.sh"
_SAFE_RELATIVE = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")


@dataclass(frozen=True)
class CodexPart:
    """A codex payload under packages/codex/."""

    store: str  # `<version>-<12 hex>`
    entrypoint: str  # the binary inside it, `bin/codex`
    integrity: str
    version: str
    source: str  # as recorded: `npm:latest`, `path:/opt/codex`


@dataclass(frozen=True)
class CodexdPart:
    """A codexd release under packages/codexd/."""

    store: str  # the release's name, `<version>-<12 hex>`
    sha256: str
    version: str


@dataclass(frozen=True)
class Release:
    """What a release is made of; the front follows from it."""

    python: str  # absolute
    packages: Path  # absolute: the fallback when $0 does not lead to the packages
    codexd: CodexdPart
    codex: CodexPart | None  # None: the reference app-server

    @property
    def codex_version(self) -> str:
        return self.codexd.version if self.codex is None else self.codex.version


def sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def check_relative(path: str) -> str:
    """A relative path the scripts may put inside double quotes as it is."""
    if not _SAFE_RELATIVE.fullmatch(path) or ".." in path.split("/"):
        raise ValueError(f"unsafe path {path!r} for a script")
    return path


def _locate(release: Release, self_path: str = "$0") -> str:
    """Sets `p`, the packages directory: relative to `self_path` (the script's own
    path), else the one it was installed into."""
    codexd_dir = check_relative(f"codexd/{release.codexd.store}")
    return (
        f'case {self_path} in */*) p="{self_path}"; p=${{p%/*}}/../../.. ;; *) p=../../.. ;; esac\n'
        f'[ -d "$p/{codexd_dir}" ] || p={sh_quote(str(release.packages))}\n'
    )


# Set (not exported) by the `codexd` command to the launcher's path before it sources
# the launcher: sourced, the launcher's $0 is the command's own path, which says
# nothing about where the release is.
LAUNCHER_VARIABLE = "codexd_launcher"


def _missing(path: str, what: str) -> str:
    """A one-line error, not the interpreter's or sh's, for a part someone removed."""
    # printf, not echo: dash's echo would read backslashes in the home's path.
    return (
        f'[ -e "{path}" ] || {{ printf \'codexd: %s is missing (%s): reinstall with install.sh'
        f' (sh install.sh from a codexd checkout)\\n\' "{path}" {sh_quote(what)} >&2; exit 1; }}\n'
    )


def _run_codexd(release: Release) -> str:
    codexd_dir = check_relative(f"codexd/{release.codexd.store}")
    main = f"$p/{codexd_dir}/__main__.py"
    # Its __main__.py as a file: a directory would go through runpy (see artifact.py).
    return (
        _missing(main, f"codexd {release.codexd.store}")
        + f'exec {sh_quote(release.python)} -I -S "{main}" "$@"\n'
    )


def _parts_comment(release: Release) -> str:
    codexd = release.codexd
    lines = [f"# codexd {codexd.version}: packages/codexd/{codexd.store} (sha256:{codexd.sha256})"]
    if release.codex is None:
        lines.append("# codex: none, codexd's reference app-server (source: reference)")
    else:
        codex = release.codex
        lines.append(
            f"# codex {codex.version}: packages/codex/{codex.store}/{codex.entrypoint} "
            f"({codex.integrity}; source: {codex.source})"
        )
    return "".join(line.replace("\n", " ") + "\n" for line in lines)


def render_front(release: Release) -> str:
    header = (
        "#!/bin/sh\n"
        "# The managed binary, written by install.sh: `codex app-server daemon ...` runs\n"
        "# codexd, anything else the real codex, with arguments, stdio, environment and\n"
        "# exit status untouched.\n"
    )
    body = _locate(release)
    if release.codex is None:
        return header + _parts_comment(release) + body + _run_codexd(release)
    binary = check_relative(f"codex/{release.codex.store}/{release.codex.entrypoint}")
    return (
        header
        + _parts_comment(release)
        + body
        + 'if [ "$1" = app-server ] && [ "$2" = daemon ]; then\n'
        + "\t"
        + _run_codexd(release)
        + "fi\n"
        + _missing(f"$p/{binary}", f"codex {release.codex.version}")
        + f'exec "$p/{binary}" "$@"\n'
    )


def render_codexd_launcher(release: Release) -> str:
    return (
        "#!/bin/sh\n# codexd of this release, written by install.sh.\n"
        + _parts_comment(release)
        + _locate(release, f"${{{LAUNCHER_VARIABLE}:-$0}}")
        + _run_codexd(release)
    )


def render_bin_command(home: Path) -> str:
    launcher = home / "packages" / "standalone" / "current" / "codexd"
    quoted_home = sh_quote(str(home))
    return (
        "#!/bin/sh\n"
        f"{BIN_COMMAND_MARK}: the current release of {quoted_home},\n"
        "# which is also the home it manages unless CODEX_HOME names another.\n"
        f'if [ -z "${{CODEX_HOME:-}}" ]; then CODEX_HOME={quoted_home}; export CODEX_HOME; fi\n'
        # Sourced, not executed: one `sh` start fewer. Its `exec` replaces this shell;
        # it finds its release from the path in the variable (its $0 is this script).
        f"{LAUNCHER_VARIABLE}={sh_quote(str(launcher))}\n"
        f'. "${LAUNCHER_VARIABLE}"\n'
    )


def release_name(release: Release, front: str) -> str:
    """`<codex version>-<first 12 hex digits of the front's sha256>`: `status` shows
    the codex version from it, and the digest makes it the front's identity."""
    return f"{release.codex_version}-{hashlib.sha256(front.encode()).hexdigest()[:12]}"
