"""The real codex binary the benchmark compares codexd with: `@openai/codex@0.169.0`.

Installed once with npm into
`${CODEXD_TEST_CACHE:-~/.cache/codexd-test}/codex-0.169.0` and reused. This is the
same logic as `tests/real_codex.py` (kept separate: bench/ imports nothing from
tests/); keep the version and the cache layout in step with it.

Standard library only.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

CODEX_VERSION = "0.169.0"
NPM_PACKAGE = f"@openai/codex@{CODEX_VERSION}"
NPM_TIMEOUT_SECONDS = 900.0
_TARGETS = {
    "x86_64": ("linux-x64", "x86_64-unknown-linux-musl"),
    "aarch64": ("linux-arm64", "aarch64-unknown-linux-musl"),
}


class RealCodexUnavailable(Exception):
    """npm is missing or the install failed; the message says which."""


def cache_dir() -> Path:
    base = os.environ.get("CODEXD_TEST_CACHE") or str(Path.home() / ".cache" / "codexd-test")
    return Path(base).expanduser().absolute() / f"codex-{CODEX_VERSION}"


def binary_path(cache: Path | None = None) -> Path:
    """Where npm puts the native binary for this machine."""
    machine = platform.machine()
    if machine not in _TARGETS:
        raise RealCodexUnavailable(f"no real codex build for machine {machine!r}")
    package, target = _TARGETS[machine]
    return (
        (cache or cache_dir())
        / "node_modules"
        / "@openai"
        / f"codex-{package}"
        / "vendor"
        / target
        / "bin"
        / "codex"
    )


def ensure_real_codex() -> Path:
    """The real codex binary, installed with npm into the cache when missing."""
    cache = cache_dir()
    binary = binary_path(cache)
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    npm = shutil.which("npm")
    if npm is None:
        raise RealCodexUnavailable(f"npm is not on PATH; cannot install {NPM_PACKAGE}")
    cache.mkdir(parents=True, exist_ok=True)
    print(f"bench: installing {NPM_PACKAGE} into {cache}", file=sys.stderr, flush=True)
    completed = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--prefix", str(cache), NPM_PACKAGE],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=NPM_TIMEOUT_SECONDS,
        check=False,
    )
    if completed.returncode != 0 or not binary.is_file():
        tail = (completed.stdout + completed.stderr).strip()[-2000:]
        raise RealCodexUnavailable(
            f"npm install {NPM_PACKAGE} into {cache} failed (exit {completed.returncode}), "
            f"or {binary} is missing:\n{tail}"
        )
    return binary


if __name__ == "__main__":
    print(ensure_real_codex())
