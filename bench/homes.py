"""Setup: the temporary homes and what is installed in them.

- `h-rel`: codexd as a user installs it: `sh install.sh` from the source tree with
  `CODEXD_CODEX_SOURCE=path:<the real codex>`, so the front
  (`packages/standalone/current/codex`) runs codexd for `app-server daemon ...` and the
  real codex for everything else, the app-server included;
- `h-codex`: the real codex daemon, from the managed install it makes for itself.

Both homes' app-servers are the same real codex binary (the same bytes: checked here),
so only the daemons differ. Standard library only.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
from pathlib import Path

from common import CHECKOUT, BenchError, progress
from real_codex import CODEX_VERSION, RealCodexUnavailable, ensure_real_codex
from subjects import Installed, InstalledRelease, Subject, ensure_nothing_runs, run_command


def install_env(home: Path, bin_dir: Path, real_codex: Path, scratch: Path) -> dict[str, str]:
    """install.sh's environment: this home, the `codexd` command in `bin_dir` (never
    ~/.local/bin), the real codex copied in from `real_codex`, temp files in `scratch`
    (removed with it, whatever happens to install.sh); no CODEXD_* setting of ours."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("CODEXD_") and key != "CODEX_HOME"
    }
    env.update(
        CODEX_HOME=str(home),
        CODEXD_BIN_DIR=str(bin_dir),
        CODEXD_CODEX_SOURCE=f"path:{real_codex}",
        TMPDIR=str(scratch),
    )
    return env


def read_marker(path: Path) -> dict[str, str]:
    """A release's `.codexd-release`: `key=value` lines."""
    try:
        text = path.read_text()
    except OSError as error:
        raise BenchError(f"cannot read the release marker {path}: {error.strerror}") from error
    pairs = (line.partition("=") for line in text.splitlines())
    return {key: value for key, sep, value in pairs if sep}


def installed_release(home: Path, bin_dir: Path) -> InstalledRelease:
    """What install.sh put in `home`, read from its records: the front, the `codexd`
    command, the interpreter and the codexd release it runs, the codex it execs."""
    packages = home / "packages"
    front = packages / "standalone" / "current" / "codex"
    marker = read_marker(front.parent / ".codexd-release")
    codexd_release, codex_payload = marker.get("codexd", ""), marker.get("codex", "")
    if not codexd_release or not codex_payload:
        raise BenchError(f"{front.parent / '.codexd-release'} names no codexd or codex: {marker}")
    if codex_payload == "reference":
        raise BenchError(f"install.sh into {home} installed the reference app-server, not codex")
    python = Path((packages / "standalone" / "python").read_text().strip())
    release = InstalledRelease(
        name=codexd_release,
        front=front,
        codexd=bin_dir / "codexd",
        python=python,
        library=packages / "codexd" / codexd_release,
        codex_binary=packages / "codex" / codex_payload / "bin" / "codex",
    )
    for path in (release.front, release.codexd, release.python, release.codex_binary):
        if not os.access(path, os.X_OK):
            raise BenchError(f"install.sh into {home} left no executable {path}")
    if not (release.library / "__main__.py").is_file():
        raise BenchError(f"{release.library} is not a codexd release (no __main__.py)")
    return release


def install_codexd(source: Path, home: Path, real_codex: Path, scratch: Path) -> InstalledRelease:
    """Install codexd from `source` into `home` the way a user does (`sh install.sh`,
    which builds the release from the tree), with the real codex behind its front."""
    bin_dir = scratch / "bin"
    progress(f"installing codexd from {source} into {home} (sh install.sh, codex path:)")
    completed = subprocess.run(
        ["sh", str(source / "install.sh")],
        env=install_env(home, bin_dir, real_codex, scratch),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if completed.returncode != 0:
        raise BenchError(f"install.sh into {home} failed: {completed.stderr.strip()[-1500:]}")
    return installed_release(home, bin_dir)


def install_codex_home(home: Path, real_codex: Path) -> Path:
    """Let the real codex make its own managed install in `home` (its first `start`
    copies itself to `packages/app-server-daemon/current/bin/codex`); return that path."""
    progress("letting the real codex install its managed layout (first start)")
    home.mkdir(parents=True, exist_ok=True)  # codex refuses a CODEX_HOME that does not exist
    installer = Subject(
        "codex-setup", "codex (npm binary)", home, (str(real_codex),), (), is_codex=True
    )
    _, output = run_command(installer, "start", "started")
    managed = Path(output["managedCodexPath"])
    ensure_nothing_runs(installer)
    if not managed.is_file():
        raise BenchError(f"codex reported managedCodexPath {managed}, which is not a file")
    return managed


def source_tree(scratch: Path, worktree: bool) -> Path:
    """What codexd is built from, a plain directory install.sh builds as it is: the
    committed HEAD, exported (the default, so that edits in progress in the checkout do
    not leak in), or the work tree's files (tracked and untracked, not ignored)."""
    source = scratch / "src"
    source.mkdir()
    if not worktree:
        archive = subprocess.run(
            ["git", "-C", str(CHECKOUT), "archive", "--format=tar", "HEAD"],
            capture_output=True,
            check=True,
        )
        subprocess.run(["tar", "-x", "-C", str(source)], input=archive.stdout, check=True)
        return source
    tracked_and_untracked = ("--cached", "--others", "--exclude-standard")
    listed = subprocess.run(
        ["git", "-C", str(CHECKOUT), "ls-files", "-z", *tracked_and_untracked],
        capture_output=True,
        check=True,
    ).stdout
    for name in filter(None, listed.decode().split("\0")):
        original = CHECKOUT / name
        if original.is_file() or original.is_symlink():  # a deleted file is still listed
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(original, source / name, follow_symlinks=False)
    return source


def check_same_codex(release: InstalledRelease, codex_managed: Path) -> None:
    """Both daemons must serve the same app-server binary, or they are not compared."""
    if not filecmp.cmp(release.codex_binary, codex_managed, shallow=False):
        raise BenchError(
            f"codexd's codex {release.codex_binary} and codex's own {codex_managed} differ"
        )


def set_up(scratch: Path, worktree: bool, homes: list[Path]) -> Installed:
    """Install everything into homes under `scratch`; each home is added to `homes`
    before anything starts in it, so the caller can end its processes."""
    try:
        real_codex = ensure_real_codex()
    except RealCodexUnavailable as error:
        raise BenchError(str(error)) from error
    release_home, codex_home = scratch / "h-rel", scratch / "h-codex"
    homes.extend([release_home, codex_home])
    source = source_tree(scratch, worktree)
    release = install_codexd(source, release_home, real_codex, scratch)
    codex_managed = install_codex_home(codex_home, real_codex)
    check_same_codex(release, codex_managed)
    return Installed(
        source=source,
        release=release,
        release_home=release_home,
        codex_home=codex_home,
        codex_managed=codex_managed,
        real_codex=real_codex,
        codex_version=CODEX_VERSION,
    )
