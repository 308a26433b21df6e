"""Setup: the temporary homes and what is installed in them.

- `h-rel`: codexd's release, installed by install.sh as a user installs it, serving
  its own app-server;
- `h-real`: the same release with the real codex binary as its managed binary, so
  `restart` compares the daemons on the same app-server;
- `h-codex`: the real codex daemon, from the managed install it makes for itself.

Standard library only.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from common import CHECKOUT, BenchError, progress
from real_codex import CODEX_VERSION, RealCodexUnavailable, ensure_real_codex
from subjects import Installed, InstalledRelease, Subject, ensure_nothing_runs, run_command


def install_codexd_release(source: Path, home: Path, scratch: Path) -> InstalledRelease:
    """Build the source tree's release and install it into `home` the way a user does:
    `release/publish.py` into a channel, then `sh install.sh` with CODEX_HOME set."""
    channel = scratch / "channel"
    progress(f"building the codexd release from {source} (release/publish.py)")
    name = subprocess.run(
        [sys.executable, str(source / "release" / "publish.py"), "--channel", str(channel)],
        capture_output=True,
        text=True,
        check=True,
        stdin=subprocess.DEVNULL,
    ).stdout.strip()
    env = {key: value for key, value in os.environ.items() if not key.startswith("CODEXD_")}
    env.update(CODEXD_CHANNEL=str(channel), CODEX_HOME=str(home))
    completed = subprocess.run(
        ["sh", str(source / "install.sh")],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if completed.returncode != 0:
        raise BenchError(f"install.sh into {home} failed: {completed.stderr.strip()[-1500:]}")
    front = home / "packages" / "standalone" / "current" / "codex"
    # A pex: PEX_INTERPRETER=1 makes it a Python interpreter with the release inside,
    # whose sys.executable is the venv python that the pex's sh boot execs.
    python_env = {key: value for key, value in os.environ.items() if not key.startswith("PEX_")}
    python_env["PEX_INTERPRETER"] = "1"
    python = subprocess.run(
        [str(front), "-c", "import sys; print(sys.executable)"],
        env=python_env,
        capture_output=True,
        text=True,
        check=True,
        stdin=subprocess.DEVNULL,
    ).stdout.strip()
    return InstalledRelease(name, front, front, Path(python), (str(front),), python_env)


def install_real_codex_for_codexd(home: Path, real_codex: Path) -> None:
    """codexd's managed layout with the real codex binary as the managed binary."""
    release = home / "packages" / "standalone" / "releases" / f"real-codex-{CODEX_VERSION}"
    release.mkdir(parents=True)
    (release / "codex").symlink_to(real_codex)
    (home / "packages" / "standalone" / "current").symlink_to(f"releases/{release.name}")


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
    """What codexd is built from: the committed HEAD, exported (the default, so that
    edits in progress in the checkout do not leak in), or the work tree as it is."""
    if worktree:
        return CHECKOUT
    source = scratch / "src"
    source.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(CHECKOUT), "archive", "--format=tar", "HEAD"],
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive.stdout, check=True)
    return source


def set_up(scratch: Path, worktree: bool, homes: list[Path]) -> Installed:
    """Install everything into homes under `scratch`; each home is added to `homes`
    before anything starts in it, so the caller can end its processes."""
    try:
        real_codex = ensure_real_codex()
    except RealCodexUnavailable as error:
        raise BenchError(str(error)) from error
    release_home, real_home, codex_home = (
        scratch / name for name in ("h-rel", "h-real", "h-codex")
    )
    homes.extend([release_home, real_home, codex_home])
    source = source_tree(scratch, worktree)
    release = install_codexd_release(source, release_home, scratch)
    install_real_codex_for_codexd(real_home, real_codex)
    codex_managed = install_codex_home(codex_home, real_codex)
    return Installed(
        source=source,
        release=release,
        release_home=release_home,
        real_home=real_home,
        codex_home=codex_home,
        codex_managed=codex_managed,
        real_codex=real_codex,
        codex_version=CODEX_VERSION,
    )
