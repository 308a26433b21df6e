"""Where the real codex comes from (`CODEXD_CODEX_SOURCE`), and its payload.

    npm:<version or dist-tag>   @openai/codex's platform package, fetched with the npm
                                client as the user configured it (`codex_npm.py`)
    path:<file>                 a codex binary on this machine, copied in
    reference                   no codex: codexd's reference app-server stands in

A payload is what the platform package `@openai/codex@<version>-linux-<arch>` ships
under `vendor/<target triple>/`: `bin/codex` beside `codex-resources/`, `codex-path/`
and `codex-package.json`, the layout codex's own standalone install uses, so the binary
finds its helpers. Here: parsing a source, the integrity of a download or a copied
payload, unpacking and copying payloads, and asking a binary its codex version.

Standard library only: install.sh runs its parser from the checkout it builds, the
installer runs it from the release artifact, and the tests and the benchmark fetch
their real codex with it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from enum import Enum
from pathlib import Path, PurePosixPath

VERSION_TIMEOUT_SECONDS = 30.0
PAYLOAD_MANIFEST = "codex-package.json"
DEFAULT_ENTRYPOINT = "bin/codex"
CHUNK_BYTES = 1 << 20
# A version as npm publishes codex's (`0.169.0`, `0.170.0-alpha.2`); anything else
# after `npm:` is a dist-tag.
_VERSION = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+(?:-[0-9A-Za-z.]+)?")
_DIST_TAG = re.compile(r"[A-Za-z][A-Za-z0-9._-]*")
# What `codex --version` prints: `codex-cli 0.169.0`, a name that starts with codex and
# a version of digits and dots with an optional pre-release suffix.
_VERSION_WORD = re.compile(r"[0-9]+(?:\.[0-9]+)+(?:-[0-9A-Za-z.]+)?")


class SourceError(Exception):
    """A source that cannot be used or fetched; the message names it and why."""


class SourceKind(Enum):
    NPM = "npm"
    PATH = "path"
    REFERENCE = "reference"


@dataclass(frozen=True)
class CodexSource:
    kind: SourceKind
    value: str = ""  # the version or dist-tag; the absolute file

    def __str__(self) -> str:
        return (
            self.kind.value
            if self.kind is SourceKind.REFERENCE
            else f"{self.kind.value}:{self.value}"
        )

    @property
    def pinned(self) -> bool:
        """A source that never moves: an npm version, a file, the reference."""
        return self.kind is not SourceKind.NPM or is_version(self.value)


def is_version(spec: str) -> bool:
    return _VERSION.fullmatch(spec) is not None


def parse_source(text: str, cwd: Path | None = None) -> CodexSource:
    """`npm:<version or tag>`, `path:<file>` (made absolute) or `reference`."""
    kind, colon, value = text.strip().partition(":")
    if kind == "reference" and not colon:
        return CodexSource(SourceKind.REFERENCE)
    if kind == "npm" and (is_version(value) or _DIST_TAG.fullmatch(value)):
        return CodexSource(SourceKind.NPM, value)
    if kind == "path" and value and "\n" not in value:
        file = Path(os.path.expanduser(value))
        return CodexSource(SourceKind.PATH, str((cwd or Path.cwd()) / file))
    raise SourceError(
        f"codex source {text.strip()!r} is not npm:<version or dist-tag> (e.g. npm:latest, "
        "npm:0.169.0), path:<codex binary> or reference"
    )


# -- integrity ----------------------------------------------------------------------


def integrity_of(path: Path) -> str:
    """The file's `sha512-<base64>`, as npm writes integrity."""
    digest = hashlib.sha512()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
    return "sha512-" + base64.b64encode(digest.digest()).decode()


def integrity_hex(integrity: str) -> str:
    """The hex digest inside an `<algorithm>-<base64>` integrity string."""
    _, _, encoded = integrity.partition("-")
    try:
        return base64.b64decode(encoded, validate=True).hex()
    except ValueError as error:
        raise SourceError(f"malformed integrity {integrity!r}") from error


def check_integrity(path: Path, expected: str, what: str) -> None:
    if not expected.startswith("sha512-"):
        raise SourceError(f"{what}: the registry lists no sha512 integrity ({expected!r})")
    actual = integrity_of(path)
    if actual != expected:
        raise SourceError(
            f"{what}: the download does not match the registry's integrity (expected "
            f"{expected}, got {actual}): tampered or truncated; nothing was installed"
        )


def tree_integrity(root: Path) -> str:
    """One `sha512-<base64>` for a payload copied from a directory: each file's path,
    executable bit and content, in path order."""
    digest = hashlib.sha512()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        digest.update(f"{relative}\0{os.access(path, os.X_OK):d}\0".encode())
        with path.open("rb") as file:
            while chunk := file.read(CHUNK_BYTES):
                digest.update(chunk)
    return "sha512-" + base64.b64encode(digest.digest()).decode()


# -- payloads -------------------------------------------------------------------------


def extract_payload(tarball: Path, triple: str, destination: Path) -> None:
    """`package/vendor/<triple>/` of an npm tarball into `destination`. Only regular
    files and directories are taken, each inside that directory."""
    prefix = PurePosixPath("package", "vendor", triple)
    destination.mkdir(parents=True, exist_ok=True)
    found = False
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            for member in archive:
                path = PurePosixPath(member.name)
                if path.is_absolute() or ".." in path.parts:
                    raise SourceError(f"{tarball} holds the unsafe path {member.name!r}")
                if prefix not in path.parents:
                    continue
                if not (member.isfile() or member.isdir()):
                    raise SourceError(f"{tarball}: {member.name} is not a regular file")
                target = destination.joinpath(*path.relative_to(prefix).parts)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                source = archive.extractfile(member)
                assert source is not None  # a regular file
                with source, target.open("wb") as out:
                    shutil.copyfileobj(source, out, CHUNK_BYTES)
                target.chmod(0o755 if member.mode & 0o111 else 0o644)
                found = True
    except (OSError, tarfile.TarError, EOFError) as error:
        raise SourceError(f"cannot unpack {tarball}: {error}") from error
    if not found:
        raise SourceError(f"{tarball} has nothing under {prefix}: not codex's platform package")


def payload_entrypoint(payload: Path) -> str:
    """The codex binary inside a payload, relative to it (`bin/codex`)."""
    try:
        manifest = json.loads((payload / PAYLOAD_MANIFEST).read_text())
        entrypoint = str(manifest["entrypoint"])
    except (OSError, ValueError, KeyError, TypeError):
        entrypoint = DEFAULT_ENTRYPOINT
    parts = PurePosixPath(entrypoint).parts
    if PurePosixPath(entrypoint).is_absolute() or ".." in parts or not parts:
        raise SourceError(f"{payload / PAYLOAD_MANIFEST} names an unsafe entrypoint {entrypoint!r}")
    return entrypoint


def payload_root_of(binary: Path) -> Path | None:
    """The payload directory a codex binary is the entrypoint of, if it is one."""
    for root in (binary.parent.parent, binary.parent):
        manifest = root / PAYLOAD_MANIFEST
        if manifest.is_file():
            try:
                entry = payload_entrypoint(root)
            except SourceError:
                return None
            if (root / entry).resolve() == binary:
                return root
    return None


def copy_payload(binary: Path, destination: Path) -> str:
    """A codex binary on this machine into `destination`, with the payload it is the
    entrypoint of when it is one (`.../vendor/<triple>/bin/codex`); its integrity."""
    resolved = binary.resolve()
    if not (resolved.is_file() and os.access(resolved, os.X_OK)):
        raise SourceError(f"path:{binary} is not an executable file")
    root = payload_root_of(resolved)
    try:
        if root is None:
            target = destination / DEFAULT_ENTRYPOINT
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(resolved, target)
            target.chmod(0o755)
        else:
            shutil.copytree(root, destination, symlinks=False, dirs_exist_ok=True)
    except OSError as error:
        raise SourceError(f"cannot copy path:{binary} into {destination}: {error}") from error
    return tree_integrity(destination)


def codex_version_of(output: str) -> str | None:
    """The version in what `codex --version` printed (`codex-cli 0.169.0`); None when
    the first line is not `codex<...> <version>`, as `true (GNU coreutils) 9.1` is not."""
    lines = output.strip().splitlines()
    words = lines[0].split() if lines else []
    if len(words) != 2 or not words[0].startswith("codex"):
        return None
    return words[1] if _VERSION_WORD.fullmatch(words[1]) else None


def binary_version(binary: Path) -> str:
    """The codex version `<binary> --version` reports; SourceError when it does not say
    one, so that no other program is ever installed as codex."""
    try:
        completed = subprocess.run(
            [str(binary), "--version"],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=VERSION_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as error:
        raise SourceError(f"{binary} --version: {error}") from error
    version = codex_version_of(completed.stdout)
    if completed.returncode != 0 or version is None:
        said = first_line(completed.stdout) or first_line(completed.stderr)
        status = "" if completed.returncode == 0 else f" (exit {completed.returncode})"
        raise SourceError(
            f"{binary} is not codex: `{binary} --version` says {said!r}{status}, "
            "not `codex-cli <version>`"
        )
    return version


def first_line(text: str, limit: int = 200) -> str:
    lines = text.strip().splitlines()
    return lines[0].strip()[:limit] if lines else ""
