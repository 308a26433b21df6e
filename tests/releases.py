"""Building, varying and installing releases for the tests, and stand-ins for codex
and npm that cost nothing to fetch.

- `publish` builds a release artifact from a checkout (or publishes a given one) into a
  channel directory; `artifact_variant` derives another codexd release from a built one
  in a fraction of a second (another version, another file).
- `fake_codex` writes a codex binary that answers `--version`, serves the control socket
  through this checkout's reference app-server, and otherwise prints its arguments,
  stdin and environment: what the front must pass through untouched.
- `FakeNpm` is an `npm` for PATH backed by a directory: dist-tags, platform-package
  tarballs made from fake payloads, and their integrity (tamper with it or truncate the
  tarball to test the checks). It logs every call.

Every install in the tests sets CODEXD_BIN_DIR and CODEXD_CODEX_SOURCE, so nothing is
written to the real ~/.local/bin and nothing is fetched unless a test asks for it.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from supervisor.codex_npm import platform_target

CHECKOUT = Path(__file__).resolve().parent.parent
INSTALL_SH = CHECKOUT / "install.sh"
PUBLISH_PY = CHECKOUT / "release" / "publish.py"
# Where the test environment's codexd lives: fake codex binaries serve with it.
CODEXD = Path(sys.executable).with_name("codexd")
# What publish.py needs from a checkout to build a release.
CHECKOUT_PARTS = ("supervisor", "workers", "commands", "release", "install.sh")
RELEASE_MARKER = ".codexd-release"
ARTIFACT_METADATA = "codexd-release.json"
# A cold build cache needs a venv and a wheelhouse from the registry.
BUILD_TIMEOUT_SECONDS = 300.0
INSTALL_TIMEOUT_SECONDS = 300.0
_VERSION_LINE = re.compile(rb'^CODEXD_VERSION = "[^"]*"$', re.MULTILINE)


@dataclass(frozen=True)
class Published:
    channel: Path
    release: str
    sha256: str

    @property
    def artifact(self) -> Path:
        return self.channel / "artifacts" / self.release


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def publish(channel: Path, checkout: Path = CHECKOUT, *args: str) -> Published:
    completed = subprocess.run(
        [
            sys.executable,
            str(checkout / "release" / "publish.py"),
            "--channel",
            str(channel),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_SECONDS,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    release = completed.stdout.strip()
    assert release and "\n" not in release, completed.stdout
    return Published(channel, release, sha256_of(channel / "artifacts" / release))


def publish_artifact(channel: Path, artifact: Path, *args: str) -> Published:
    return publish(channel, CHECKOUT, "--artifact", str(artifact), *args)


def copy_checkout(destination: Path) -> Path:
    """The parts of this checkout a release is built from, without caches."""
    destination.mkdir(parents=True)
    for part in CHECKOUT_PARTS:
        source = CHECKOUT / part
        if source.is_dir():
            shutil.copytree(
                source, destination / part, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(source, destination / part)
    return destination


def artifact_variant(
    artifact: Path, destination: Path, version: str, files: dict[str, bytes] | None = None
) -> Path:
    """Another codexd release: `artifact` with its version set to `version` and `files`
    replaced or added, written as publish.py writes artifacts."""
    with zipfile.ZipFile(artifact) as source:
        entries = {info.filename: (info, source.read(info)) for info in source.infolist()}
    metadata = json.loads(entries[ARTIFACT_METADATA][1])
    metadata["version"] = version
    changed = {
        ARTIFACT_METADATA: (json.dumps(metadata, indent=2) + "\n").encode(),
        "supervisor/version.py": _VERSION_LINE.sub(
            f'CODEXD_VERSION = "{version}"'.encode(), entries["supervisor/version.py"][1]
        ),
        **(files or {}),
    }
    with destination.open("wb") as out:
        out.write(artifact.read_bytes()[: artifact.read_bytes().index(b"\n") + 1])
        with zipfile.ZipFile(out, "w") as target:
            for name in sorted({*entries, *changed}):
                info = entries[name][0] if name in entries else zipfile.ZipInfo(name)
                data = changed.get(name, entries[name][1] if name in entries else b"")
                target.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    destination.chmod(0o755)
    return destination


def clean_env(home: Path, bin_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of an install into `home`: no CODEXD_ setting of the caller's,
    the codexd command into `bin_dir`, codex from the reference unless `extra` says."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("CODEXD_") and key != "CODEX_HOME"
    }
    # The build cache is shared with developers' own builds, so a warm one is reused.
    if "CODEXD_BUILD_CACHE" in os.environ:
        env["CODEXD_BUILD_CACHE"] = os.environ["CODEXD_BUILD_CACHE"]
    env.update(CODEX_HOME=str(home), CODEXD_BIN_DIR=str(bin_dir), CODEXD_CODEX_SOURCE="reference")
    env.update(extra)
    return env


def standalone(home: Path) -> Path:
    return home / "packages" / "standalone"


def current_release(home: Path) -> str:
    target = os.readlink(standalone(home) / "current")
    assert target.startswith("releases/"), target
    return target.removeprefix("releases/")


def run_version(binary: Path, env: dict[str, str] | None = None) -> str:
    completed = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.strip()


# -- running install.sh ------------------------------------------------------------


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def install_sh(
    home: Path,
    *args: str,
    channel: Path | str | None = None,
    script: Path = INSTALL_SH,
    piped: bool = False,
    cwd: Path | None = None,
    **extra: str,
) -> Ran:
    """Run install.sh as a file (`sh install.sh`) or piped (`sh < install.sh`)."""
    if channel is not None:
        extra["CODEXD_CHANNEL"] = str(channel)
    env = clean_env(home, home.parent / "bin", **extra)
    command = ["sh", "-s", "--", *args] if piped else ["sh", str(script), *args]
    with script.open("rb") if piped else open(os.devnull, "rb") as stdin:
        completed = subprocess.run(
            command,
            stdin=stdin,
            capture_output=True,
            env=env,
            cwd=cwd or home.parent,
            timeout=INSTALL_TIMEOUT_SECONDS,
            check=False,
        )
    return Ran(completed.returncode, completed.stdout.decode(), completed.stderr.decode())


def copy_channel(published: Published, destination: Path) -> Published:
    shutil.copytree(published.channel, destination)
    return Published(destination, published.release, published.sha256)


def release_dirs(home: Path) -> list[str]:
    return sorted(path.name for path in (standalone(home) / "releases").iterdir())


def store(home: Path, kind: str) -> list[str]:
    directory = home / "packages" / kind
    return sorted(path.name for path in directory.iterdir()) if directory.exists() else []


def snapshot(root: Path, dir_mtimes: bool = True) -> dict[str, tuple[object, ...]]:
    """Every entry under `root`: kind, and link target or inode, mtime, size and mode.

    Without `dir_mtimes`, a directory's mtime is left out: a failed install may have
    staged (and removed) an entry in it."""
    entries: dict[str, tuple[object, ...]] = {}
    if not root.exists():
        return entries
    for directory, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(directory) / name
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                entries[str(path.relative_to(root))] = ("link", os.readlink(path))
            else:
                keep_mtime = dir_mtimes or not stat.S_ISDIR(info.st_mode)
                entries[str(path.relative_to(root))] = (
                    stat.S_IFMT(info.st_mode),
                    info.st_ino,
                    info.st_mtime_ns if keep_mtime else None,
                    info.st_size,
                    stat.S_IMODE(info.st_mode),
                )
    return entries


# -- codex and npm stand-ins --------------------------------------------------------


def fake_codex(path: Path, version: str, serve: bool = True, version_delay: str = "") -> Path:
    """A codex binary: `--version` says `codex-cli <version>`; `app-server --listen`
    serves with codexd's reference app-server (or, `serve=False`, exits 1 at once);
    anything else prints its arguments, then stdin, then its environment, and exits 7."""
    serving = f'exec "{CODEXD}" "$@"' if serve else 'echo "this codex does not serve" >&2; exit 1'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = --version ]; then {version_delay}echo "codex-cli {version}"; exit 0; fi\n'
        f'if [ "$1" = app-server ] && [ "$2" = --listen ]; then {serving}; fi\n'
        'for arg in "$@"; do printf "arg:%s\\n" "$arg"; done\n'
        'printf "stdin:%s\\n" "$(cat)"\n'
        "env\n"
        "exit 7\n"
    )
    path.chmod(0o755)
    return path


def fake_payload(directory: Path, version: str, serve: bool = True) -> Path:
    """A payload laid out like codex's platform package: bin/codex beside
    codex-resources/ and codex-package.json."""
    fake_codex(directory / "bin" / "codex", version, serve)
    (directory / "codex-resources").mkdir(parents=True, exist_ok=True)
    (directory / "codex-resources" / "notice.txt").write_text(f"resources of {version}\n")
    (directory / "codex-package.json").write_text(
        json.dumps({"layoutVersion": 1, "version": version, "entrypoint": "bin/codex"}) + "\n"
    )
    return directory


def npm_tarball(payload: Path, version: str) -> bytes:
    """The platform package's tarball around a payload, as npm packs it."""
    suffix, triple = platform_target()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        manifest = json.dumps({"name": "@openai/codex", "version": f"{version}-{suffix}"}).encode()
        info = tarfile.TarInfo("package/package.json")
        info.size = len(manifest)
        archive.addfile(info, io.BytesIO(manifest))
        for path in sorted(payload.rglob("*")):
            if path.is_file():
                name = f"package/vendor/{triple}/{path.relative_to(payload).as_posix()}"
                archive.add(path, arcname=name, recursive=False)
    return buffer.getvalue()


_FAKE_NPM = '''#!{python}
"""A fake npm: `view` and `pack` of @openai/codex from the directory beside it."""
import json, os, shutil, sys
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
registry = os.path.join(root, "registry")
with open(os.path.join(root, "calls.log"), "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
args = [a for a in sys.argv[1:] if a != "--json"]
def fail(message):
    print(message, file=sys.stderr)
    sys.exit(1)
if args[:1] == ["view"] and len(args) == 3:
    spec, field = args[1], args[2]
    if spec == "@openai/codex" and field.startswith("dist-tags."):
        tags = json.load(open(os.path.join(registry, "dist-tags.json")))
        tag = tags.get(field.split(".", 1)[1])
        if tag:
            print(json.dumps(tag))
        sys.exit(0)
    name = spec.split("@")[-1]
    path = os.path.join(registry, name + ".integrity")
    if field == "dist.integrity" and os.path.exists(path):
        print(json.dumps(open(path).read().strip()))
        sys.exit(0)
    fail("npm error code E404 " + spec)
if args[:1] == ["pack"]:
    name = args[1].split("@")[-1]
    destination = args[args.index("--pack-destination") + 1]
    tarball = os.path.join(registry, name + ".tgz")
    if not os.path.exists(tarball):
        fail("npm error code E404 " + args[1])
    filename = "openai-codex-" + name + ".tgz"
    shutil.copyfile(tarball, os.path.join(destination, filename))
    print(json.dumps([{{"filename": filename}}]))
    sys.exit(0)
fail("fake npm: unsupported " + " ".join(sys.argv[1:]))
'''


@dataclass(frozen=True)
class FakeNpm:
    """`bin/npm` first on PATH, serving the packages published into `registry/`."""

    root: Path

    @classmethod
    def create(cls, root: Path) -> FakeNpm:
        (root / "bin").mkdir(parents=True)
        (root / "registry").mkdir()
        npm = root / "bin" / "npm"
        npm.write_text(_FAKE_NPM.format(python=sys.executable))
        npm.chmod(0o755)
        (root / "registry" / "dist-tags.json").write_text("{}")
        return cls(root)

    def path_with_npm(self) -> str:
        return f"{self.root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"

    def publish(self, version: str, serve: bool = True, tag: str | None = "latest") -> str:
        """A fake codex `version`; its integrity."""
        suffix, _ = platform_target()
        payload = fake_payload(self.root / "payloads" / version, version, serve)
        data = npm_tarball(payload, version)
        (self.root / "registry" / f"{version}-{suffix}.tgz").write_bytes(data)
        integrity = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
        (self.root / "registry" / f"{version}-{suffix}.integrity").write_text(integrity + "\n")
        if tag is not None:
            self.tag(tag, version)
        return integrity

    def tag(self, tag: str, version: str) -> None:
        path = self.root / "registry" / "dist-tags.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), tag: version}))

    def tarball(self, version: str) -> Path:
        suffix, _ = platform_target()
        return self.root / "registry" / f"{version}-{suffix}.tgz"

    def calls(self) -> list[str]:
        log = self.root / "calls.log"
        return log.read_text().splitlines() if log.exists() else []
