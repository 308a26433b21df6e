"""The real codex for the interoperability tests and the benchmark (bench/real_codex.py
imports this): one module that fetches `@openai/codex@<version>` once into a cache
shared by runs, under a file lock so that parallel runs do not race, with the code
install.sh uses (supervisor/codex_npm.py): `npm pack` of the platform package through
the npm client as configured, checked against the registry's integrity, unpacked to the
payload codex's own install lays out.

The cache is `${CODEXD_TEST_CACHE:-~/.cache/codexd-test}/codex/<version>/`, holding
`bin/codex` beside `codex-resources/`, `codex-path/` and `codex-package.json`.
Standard library only, so that the benchmark runs it with any python3.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
from pathlib import Path

from supervisor.codex_npm import Npm, fetch_npm_payload, platform_target
from supervisor.codex_source import SourceError

CODEX_VERSION = "0.169.0"


class RealCodexUnavailable(Exception):
    """npm is missing, or codex has no package for this machine (a reason to skip)."""


def cache_root() -> Path:
    base = os.environ.get("CODEXD_TEST_CACHE") or str(Path.home() / ".cache" / "codexd-test")
    return Path(base).expanduser().absolute() / "codex"


def real_codex_binary(version: str = CODEX_VERSION) -> Path:
    """The real codex binary of `version`, fetching it into the cache the first time."""
    try:
        platform_target()
    except SourceError as error:
        raise RealCodexUnavailable(str(error)) from error
    payload = cache_root() / version
    binary = payload / "bin" / "codex"
    if _usable(binary):
        return binary
    payload.parent.mkdir(parents=True, exist_ok=True)
    npm = Npm.find(payload.parent)
    if npm is None:
        raise RealCodexUnavailable(f"npm is not on PATH: cannot fetch @openai/codex@{version}")
    with open(payload.with_name(f"{version}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be fetching it right now
        if _usable(binary):
            return binary
        print(f"fetching @openai/codex@{version} into {payload}", file=sys.stderr, flush=True)
        staged = payload.with_name(f".{version}.tmp.{os.getpid()}")
        shutil.rmtree(staged, ignore_errors=True)
        try:
            fetch_npm_payload(npm, version, staged / "payload", staged)
            shutil.rmtree(payload, ignore_errors=True)
            os.rename(staged / "payload", payload)
        except SourceError as error:
            raise RuntimeError(f"fetching the real codex {version} failed: {error}") from error
        finally:
            shutil.rmtree(staged, ignore_errors=True)
    if not _usable(binary):
        raise RuntimeError(f"{binary} is missing after fetching @openai/codex@{version}")
    return binary


def _usable(binary: Path) -> bool:
    return binary.is_file() and os.access(binary, os.X_OK)
