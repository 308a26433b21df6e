"""codex from npm: the npm client as the user configured it (registry, proxy, cache),
and the package it fetches, `@openai/codex@<version>-linux-<arch>`, codex's platform
package without the launcher.

`fetch_npm_payload` checks the download against the integrity the registry lists
(`npm view ... dist.integrity`) besides npm's own check, so a tampered or truncated
tarball is refused before anything is unpacked; the payload itself is
`codex_source.py`'s.

Standard library only, as `codex_source.py` is: the installer runs it from the release
artifact, and the tests and the benchmark fetch their real codex with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from supervisor.codex_source import (
    SourceError,
    check_integrity,
    extract_payload,
    first_line,
    is_version,
)

NPM_PACKAGE = "@openai/codex"
NPM_VIEW_TIMEOUT_SECONDS = 120.0
NPM_PACK_TIMEOUT_SECONDS = 900.0

# platform.machine() -> (npm platform suffix, Rust target triple), as codex's own
# bin/codex.js maps process.arch.
LINUX_TARGETS = {
    "x86_64": ("linux-x64", "x86_64-unknown-linux-musl"),
    "amd64": ("linux-x64", "x86_64-unknown-linux-musl"),
    "aarch64": ("linux-arm64", "aarch64-unknown-linux-musl"),
    "arm64": ("linux-arm64", "aarch64-unknown-linux-musl"),
}


def platform_target(machine: str | None = None) -> tuple[str, str]:
    """This machine's npm platform suffix and target triple."""
    machine = (machine or platform.machine()).lower()
    if platform.system() != "Linux" or machine not in LINUX_TARGETS:
        raise SourceError(f"codex publishes no npm package for {platform.system()} {machine}")
    return LINUX_TARGETS[machine]


def platform_package(version: str, machine: str | None = None) -> str:
    """`@openai/codex@0.169.0-linux-x64`: the platform package, without the launcher."""
    suffix, _ = platform_target(machine)
    return f"{NPM_PACKAGE}@{version}-{suffix}"


class NpmFailure(SourceError):
    """npm exited non-zero; `code` is npm's error code (`E404`) when it printed one."""

    def __init__(self, code: str | None, message: str, summary: str) -> None:
        super().__init__(message)
        self.code = code
        self.summary = summary


_NPM_ERROR_CODE = re.compile(r"^npm (?:error|ERR!) code (\S+)", re.MULTILINE)


def npm_failure(stdout: str, stderr: str) -> tuple[str | None, str]:
    """npm's error code and one-line summary from what a failed `npm ... --json`
    printed: the JSON error object on stdout when there is one, else the `npm error`
    lines on stderr (pure)."""
    code: str | None = None
    summary = ""
    with contextlib.suppress(ValueError, LookupError, TypeError, AttributeError):
        error = json.loads(stdout)["error"]
        code = str(error["code"]) if error.get("code") else None
        summary = first_line(str(error.get("summary") or ""))
    if code is None and (found := _NPM_ERROR_CODE.search(stderr)):
        code = found[1]
    if not summary:
        lines = [line for line in (stderr + "\n" + stdout).splitlines() if line.strip()]
        told = [line for line in lines if not _NPM_ERROR_CODE.match(line)] or lines
        summary = first_line(told[0]) if told else "no output"
    summary = re.sub(r"^npm (?:error|ERR!) ", "", summary)
    return code, summary


@dataclass(frozen=True)
class Npm:
    """The npm client, as the user configured it; run in `workdir` (no project config)."""

    executable: str
    workdir: Path

    @classmethod
    def find(cls, workdir: Path) -> Npm | None:
        found = shutil.which("npm")
        return None if found is None else cls(found, workdir)

    def run(self, args: list[str], what: str, timeout: float) -> str:
        """npm's stdout; NpmFailure, one line, when it fails (its full output is what
        running the same `npm` command by hand shows)."""
        try:
            completed = subprocess.run(
                [self.executable, *args],
                cwd=self.workdir,
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as error:
            raise SourceError(f"{what}: npm {' '.join(args)}: {error}") from error
        if completed.returncode != 0:
            code, summary = npm_failure(completed.stdout, completed.stderr)
            raise NpmFailure(
                code,
                f"{what}: `npm {' '.join(args)}` exited {completed.returncode}"
                + (f" ({code}: {summary})" if code else f": {summary}"),
                summary,
            )
        return completed.stdout

    def view(self, spec: str, field: str) -> str | None:
        """One field of `npm view`; None when the registry has no such field."""
        what = f"asking npm for {spec} {field}"
        try:
            output = self.run(["view", spec, field, "--json"], what, NPM_VIEW_TIMEOUT_SECONDS)
        except NpmFailure as failure:
            if failure.code == "E404":
                raise SourceError(f"npm has no {spec} (E404: {failure.summary})") from failure
            raise
        if not output.strip():
            return None
        try:
            value = json.loads(output)
        except json.JSONDecodeError as error:
            raise SourceError(f"npm view {spec} {field} printed {output[:200]!r}") from error
        return value if isinstance(value, str) else None

    def resolve_version(self, spec: str) -> str:
        """A version as it is; a dist-tag as the registry resolves it now."""
        if is_version(spec):
            return spec
        version = self.view(NPM_PACKAGE, f"dist-tags.{spec}")
        if version is None:
            raise SourceError(f"npm lists no dist-tag {spec!r} for {NPM_PACKAGE}")
        if not is_version(version):
            raise SourceError(
                f"npm's dist-tag {spec!r} for {NPM_PACKAGE} names {version!r}, not a version"
            )
        return version

    def integrity(self, package: str) -> str:
        value = self.view(package, "dist.integrity")
        if value is None:
            raise SourceError(f"npm lists no integrity for {package}: is it published?")
        return value

    def pack(self, package: str, destination: Path) -> Path:
        """The package's tarball, through npm's cache, into `destination`."""
        destination.mkdir(parents=True, exist_ok=True)
        output = self.run(
            ["pack", package, "--pack-destination", str(destination), "--json"],
            f"fetching {package}",
            NPM_PACK_TIMEOUT_SECONDS,
        )
        try:
            filename = json.loads(output)[0]["filename"]
        except (ValueError, LookupError, TypeError):
            found = sorted(destination.glob("*.tgz"))
            if len(found) != 1:
                raise SourceError(f"npm pack {package} left no tarball in {destination}") from None
            return found[0]
        tarball = destination / os.path.basename(str(filename))
        if not tarball.is_file():
            raise SourceError(f"npm pack {package} did not write {tarball}")
        return tarball


def fetch_npm_payload(
    npm: Npm, version: str, destination: Path, download_dir: Path, integrity: str | None = None
) -> str:
    """codex `version`'s payload into `destination`, verified; its integrity. The
    tarball goes through `download_dir` and is removed once unpacked."""
    package = platform_package(version)
    _, triple = platform_target()
    expected = integrity or npm.integrity(package)
    tarball = npm.pack(package, download_dir)
    try:
        check_integrity(tarball, expected, package)
        extract_payload(tarball, triple, destination)
    finally:
        tarball.unlink(missing_ok=True)
    return expected
