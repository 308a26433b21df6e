"""Build a codexd release and publish it into a channel directory.

    python3 release/publish.py --channel DIR [--artifact FILE] [--version VERSION]

A release artifact (see `release/artifact.py`) is one reproducible zip of codexd's
packages and the pinned dependencies of `release/requirements.txt`, unpacked from
their wheels. Its name is `<version>-<first 12 hex digits of its sha256>`.

Without --artifact the release is built from the checkout this file lives in (install.sh
runs the copy exported from a checkout's committed HEAD), with wheels built by a
private build venv's pip into a wheelhouse, both cached under
`${CODEXD_BUILD_CACHE:-${XDG_CACHE_HOME:-~/.cache}/codexd-build}`. The wheels are for
the Python that runs this script, so the release is too. The same sources and lock
give the same bytes, so the same release.

The channel gets `artifacts/<release>`, a line in `SHA256SUMS`, a copy of the
checkout's `install.sh` and, last, `latest`. Every file is replaced atomically.
Prints the release name on stdout; progress goes to stderr.

Runs with the machine's python3 and needs only the standard library.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from artifact import ArtifactError, build_artifact, python_tag, read_metadata

BUILD_VENV_MARKER = ".codexd-build-venv"
CHECKOUT = Path(__file__).resolve().parent.parent
REQUIREMENTS = CHECKOUT / "release" / "requirements.txt"
INSTALL_SH = CHECKOUT / "install.sh"
VERSION_FILE = CHECKOUT / "supervisor" / "version.py"
# What install.sh accepts in `latest`: a file name that cannot escape artifacts/.
RELEASE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
SOURCE_VERSION = re.compile(r'^CODEXD_VERSION = "(?P<version>[^"]+)"$', re.MULTILINE)
DIGEST_PREFIX_LENGTH = 12
VERSION_TIMEOUT_SECONDS = 60.0
# The tail of a failed tool's output quoted in the error.
OUTPUT_TAIL_CHARS = 3000


class PublishError(Exception):
    """A step failed; the message names what and where."""


def progress(message: str) -> None:
    print(f"publish.py: {message}", file=sys.stderr, flush=True)


def run(command: Sequence[str | Path], what: str, timeout: float | None = None) -> str:
    """Run a tool, return its stdout; on failure raise with its output's tail."""
    argv = [str(part) for part in command]
    try:
        completed = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            check=False,
            timeout=timeout,
        )
    except (OSError, subprocess.SubprocessError) as error:
        raise PublishError(f"{what} failed: {' '.join(argv)}: {error}") from error
    if completed.returncode != 0:
        output = (completed.stdout + completed.stderr).strip()[-OUTPUT_TAIL_CHARS:]
        raise PublishError(
            f"{what} failed (exit {completed.returncode}): {' '.join(argv)}\n{output}"
        )
    return completed.stdout


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_cache_dir() -> Path:
    configured = os.environ.get("CODEXD_BUILD_CACHE")
    if configured:
        return Path(configured).expanduser().absolute()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base.absolute() / "codexd-build"


@contextlib.contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """Serialize builds sharing one cache: venv and wheelhouse are created in place."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        yield


def ensure_build_venv(cache: Path) -> Path:
    """The build venv's python (its pip builds the wheels); rebuilt if half-made."""
    venv = cache / f"venv-py{python_tag()}"
    python = venv / "bin" / "python"
    if (venv / BUILD_VENV_MARKER).is_file() and python.exists():
        return python
    progress(f"creating the build venv {venv}")
    shutil.rmtree(venv, ignore_errors=True)
    run([sys.executable, "-m", "venv", venv], f"creating the build venv {venv}")
    (venv / BUILD_VENV_MARKER).write_text("pip\n")
    return python


def ensure_wheelhouse(cache: Path, python: Path) -> Path:
    """Wheels for exactly the lock, rebuilt only when the requirements file changes.

    `--no-deps`: every dependency, transitive ones too, must be pinned in the lock; a
    missing one fails at import in the release's check instead of a newer one slipping in.
    """
    wheelhouse = cache / f"wheelhouse-py{python_tag()}"
    stamp = wheelhouse / ".requirements-sha256"
    wanted = sha256_of(REQUIREMENTS)
    if stamp.is_file() and stamp.read_text().strip() == wanted:
        return wheelhouse
    progress(f"building the wheelhouse {wheelhouse} from {REQUIREMENTS}")
    fresh = Path(tempfile.mkdtemp(prefix=f".{wheelhouse.name}.", dir=cache))
    try:
        run(
            [
                python,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "-r",
                REQUIREMENTS,
                "-w",
                fresh,
            ],
            f"building wheels for {REQUIREMENTS}",
        )
        (fresh / stamp.name).write_text(wanted + "\n")
        shutil.rmtree(wheelhouse, ignore_errors=True)
        fresh.rename(wheelhouse)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
    return wheelhouse


def source_version() -> str:
    match = SOURCE_VERSION.search(VERSION_FILE.read_text())
    if match is None:
        raise PublishError(f'{VERSION_FILE} has no line CODEXD_VERSION = "<version>"')
    return match["version"]


def build_release(out: Path) -> None:
    """Build the checkout's release artifact at `out`."""
    cache = build_cache_dir()
    with locked(cache / ".lock"):
        wheelhouse = ensure_wheelhouse(cache, ensure_build_venv(cache))
        progress(f"building the release artifact from {CHECKOUT}")
        try:
            build_artifact(out, CHECKOUT, sorted(wheelhouse.glob("*.whl")), source_version())
        except (ArtifactError, OSError) as error:
            raise PublishError(f"building the release artifact: {error}") from error


def artifact_version(artifact: Path) -> str:
    """The version the artifact's metadata names, once `<python> -I -S <artifact>
    --version` (what install.sh runs too) has said the same."""
    try:
        declared = read_metadata(artifact).get("version", "")
    except ArtifactError as error:
        raise PublishError(str(error)) from error
    output = run(
        [sys.executable, "-I", "-S", artifact, "--version"],
        f"asking {artifact} for its version",
        timeout=VERSION_TIMEOUT_SECONDS,
    )
    words = output.split()
    if len(words) < 2 or words[1] != declared:
        raise PublishError(
            f"{artifact} --version printed {output.strip()!r}, not 'codexd {declared}'"
        )
    return declared


def release_name(version: str, hex_digest: str) -> str:
    name = f"{version}-{hex_digest[:DIGEST_PREFIX_LENGTH]}"
    if not RELEASE_NAME.fullmatch(name):
        raise PublishError(
            f"release name {name!r} (from version {version!r}) is not a plain file name "
            "of letters, digits, '.', '_' and '-'"
        )
    return name


def write_atomically(target: Path, data: bytes, mode: int) -> None:
    """Temp file in the same directory, fsync, rename: readers see old or new, never half."""
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fchmod(file.fileno(), mode)
            os.fsync(file.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def updated_checksums(existing: str, entry_path: str, hex_digest: str) -> str:
    """SHA256SUMS with the line for `entry_path` added or replaced, the others kept."""
    kept = [
        line
        for line in existing.splitlines()
        if line.strip() and line.split()[-1].lstrip("*") != entry_path
    ]
    kept.append(f"{hex_digest}  {entry_path}")
    return "\n".join(kept) + "\n"


def publish(channel: Path, artifact: Path, version: str | None) -> str:
    if not artifact.is_file():
        raise PublishError(f"artifact {artifact} is not a file")
    hex_digest = sha256_of(artifact)
    if version is None:
        version = artifact_version(artifact)
    name = release_name(version, hex_digest)
    progress(f"publishing release {name} (sha256:{hex_digest}) into {channel}")
    artifacts = channel / "artifacts"
    try:
        artifacts.mkdir(parents=True, exist_ok=True)
        write_atomically(artifacts / name, artifact.read_bytes(), 0o755)
        sums = channel / "SHA256SUMS"
        existing = sums.read_text() if sums.exists() else ""
        write_atomically(
            sums, updated_checksums(existing, f"artifacts/{name}", hex_digest).encode(), 0o644
        )
        write_atomically(channel / "install.sh", INSTALL_SH.read_bytes(), 0o755)
        # Last: a reader that sees the new name finds its artifact and checksum.
        write_atomically(channel / "latest", f"{name}\n".encode(), 0o644)
    except OSError as error:
        raise PublishError(f"writing the channel {channel}: {error}") from error
    return name


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="publish.py", description="Build a codexd release and publish it into a channel."
    )
    parser.add_argument("--channel", required=True, type=Path, help="channel directory (created)")
    parser.add_argument(
        "--artifact", type=Path, help="publish this prebuilt file instead of building one"
    )
    parser.add_argument(
        "--version",
        help="the release's version, instead of the one the artifact names and reports "
        "(for test releases whose --version does not work)",
    )
    args = parser.parse_args(argv)
    channel = Path(os.path.abspath(args.channel))
    try:
        if args.artifact is not None:
            name = publish(channel, Path(os.path.abspath(args.artifact)), args.version)
        else:
            with tempfile.TemporaryDirectory(prefix="codexd-build.") as build_dir:
                built = Path(build_dir) / "codex"
                build_release(built)
                name = publish(channel, built, args.version)
    except PublishError as error:
        print(f"publish.py: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C of install.sh or `codexd update`: one line
        print("publish.py: interrupted; nothing was published", file=sys.stderr)
        return 130
    print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
