"""The real codex binary, for interoperability tests: installed once from npm into a
cache shared by test runs, under a file lock so parallel runs do not race.

The cache is `${CODEXD_TEST_CACHE:-~/.cache/codexd-test}/codex-<version>`. npm puts
the platform's binary in an optional dependency of `@openai/codex`:
`node_modules/@openai/codex-linux-<arch>/vendor/<target triple>/bin/codex`.
"""

from __future__ import annotations

import fcntl
import os
import platform
import shutil
import subprocess
from pathlib import Path

CODEX_VERSION = "0.169.0"
NPM_INSTALL_TIMEOUT_SECONDS = 600.0

# platform.machine() -> (npm package suffix, Rust target triple), as codex's own
# bin/codex.js maps process.arch.
_LINUX_TARGETS = {
    "x86_64": ("linux-x64", "x86_64-unknown-linux-musl"),
    "amd64": ("linux-x64", "x86_64-unknown-linux-musl"),
    "aarch64": ("linux-arm64", "aarch64-unknown-linux-musl"),
    "arm64": ("linux-arm64", "aarch64-unknown-linux-musl"),
}


class RealCodexUnavailable(Exception):
    """npm is missing, so the real codex cannot be installed (a reason to skip)."""


def cache_dir() -> Path:
    base = os.environ.get("CODEXD_TEST_CACHE") or str(Path.home() / ".cache" / "codexd-test")
    return Path(base) / f"codex-{CODEX_VERSION}"


def binary_in(prefix: Path, machine: str | None = None) -> Path:
    """Where `npm install --prefix <prefix> @openai/codex` puts this machine's binary."""
    machine = (machine or platform.machine()).lower()
    if platform.system() != "Linux" or machine not in _LINUX_TARGETS:
        raise RealCodexUnavailable(f"no codex npm package for {platform.system()} {machine}")
    package, triple = _LINUX_TARGETS[machine]
    return (
        prefix
        / "node_modules"
        / "@openai"
        / f"codex-{package}"
        / "vendor"
        / triple
        / "bin"
        / "codex"
    )


def real_codex_binary() -> Path:
    """The real codex binary, installing it into the cache the first time."""
    prefix = cache_dir()
    binary = binary_in(prefix)
    if _usable(binary):
        return binary
    npm = shutil.which("npm")
    if npm is None:
        raise RealCodexUnavailable("npm is not installed: cannot install @openai/codex")
    prefix.mkdir(parents=True, exist_ok=True)
    with open(prefix.with_name(prefix.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be installing right now
        if not _usable(binary):
            completed = subprocess.run(
                [
                    npm,
                    "install",
                    "--prefix",
                    str(prefix),
                    "--no-audit",
                    "--no-fund",
                    f"@openai/codex@{CODEX_VERSION}",
                ],
                capture_output=True,
                text=True,
                timeout=NPM_INSTALL_TIMEOUT_SECONDS,
                stdin=subprocess.DEVNULL,
                check=False,
            )
            if completed.returncode != 0 or not _usable(binary):
                raise RuntimeError(
                    f"npm install @openai/codex@{CODEX_VERSION} into {prefix} failed "
                    f"(exit {completed.returncode}; {binary} "
                    f"{'exists' if binary.exists() else 'missing'}):\n"
                    f"{completed.stdout[-2000:]}{completed.stderr[-2000:]}"
                )
    return binary


def _usable(binary: Path) -> bool:
    return binary.is_file() and os.access(binary, os.X_OK)
