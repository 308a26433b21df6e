"""install.sh when something is wrong: a damaged or non-running release, a killed
install, a broken or unreachable channel, a managed install that is not codexd's, a
release rolled back here; and the piped and https ways of running it. The existing
install is left as it was each time."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.https_server import serve_https
from tests.releases import (
    CHECKOUT,
    INSTALL_SH,
    INSTALL_TIMEOUT_SECONDS,
    Published,
    artifact_variant,
    clean_env,
    copy_channel,
    copy_checkout,
    current_release,
    fake_codex,
    install_sh,
    publish,
    publish_artifact,
    run_version,
    sha256_of,
    snapshot,
    standalone,
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


def test_checksum_mismatch_fails_and_leaves_the_install_alone(
    tmp_path: Path, base: Published
) -> None:
    home = tmp_path / "home"
    channel = copy_channel(base, tmp_path / "channel").channel
    assert install_sh(home, channel=channel).returncode == 0
    newer = publish_variant(channel, base, "0.2.0")
    newer.artifact.write_bytes(newer.artifact.read_bytes() + b"# tampered\n")
    actual = sha256_of(newer.artifact)
    before = snapshot(home)

    ran = install_sh(home, channel=channel)

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
    assert install_sh(home, channel=channel).returncode == 0
    broken_main = b"import sys\nsys.exit('this codexd does not start')\n"
    broken = artifact_variant(
        base.artifact, tmp_path / "broken", "0.2.0", {"__main__.py": broken_main}
    )
    publish_artifact(channel, broken, "--version", "0.2.0")
    before = snapshot(home, dir_mtimes=False)

    ran = install_sh(home, channel=channel)

    assert ran.returncode != 0
    assert "does not run" in ran.stderr and "this codexd does not start" in ran.stderr
    assert snapshot(home, dir_mtimes=False) == before


def test_a_killed_install_leaves_the_install_and_no_temp_files(
    tmp_path: Path, base: Published
) -> None:
    home = tmp_path / "home"
    channel = copy_channel(base, tmp_path / "channel").channel
    assert install_sh(home, channel=channel).returncode == 0
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
    ran = install_sh(home, channel=channel)
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

    ran = install_sh(home, channel=channel)

    assert ran.returncode != 0
    assert message in ran.stderr
    assert str(channel) in ran.stderr
    assert not standalone(home).exists()


def test_a_missing_channel_directory_fails_clearly(tmp_path: Path) -> None:
    ran = install_sh(tmp_path / "home", channel=tmp_path / "nowhere")
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

    refused = install_sh(home, channel=base.channel)

    assert refused.returncode != 0
    assert str(standalone(home) / "current") in refused.stderr
    assert "--force" in refused.stderr
    assert snapshot(home) == before

    forced = install_sh(home, "--force", channel=base.channel)

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

    refused = install_sh(home, channel=base.channel)

    assert refused.returncode != 0
    assert "--force" in refused.stderr
    assert snapshot(home) == before

    forced = install_sh(home, "--force", channel=base.channel)

    assert forced.returncode == 0, forced.stderr
    assert current_release(home) != "0.169.0-x86_64"
    # Only codexd's own releases are ever pruned.
    assert (theirs / "codex").is_file()
    assert not (standalone(home) / "previous").exists()


def test_a_rejected_release_is_not_installed_again(tmp_path: Path, base: Published) -> None:
    home = tmp_path / "home"
    assert install_sh(home, channel=base.channel).returncode == 0
    reference_release = current_release(home)
    codex = fake_codex(tmp_path / "codex", "1.0.0")
    assert (
        install_sh(home, channel=base.channel, CODEXD_CODEX_SOURCE=f"path:{codex}").returncode == 0
    )
    (standalone(home) / "rejected").write_text(f"0.0.1-aaaaaaaaaaaa\n{reference_release}\n")
    before = snapshot(home)

    ran = install_sh(home, channel=base.channel, CODEXD_CODEX_SOURCE="reference")

    assert ran.returncode == 0, ran.stderr
    assert f"release {reference_release} was rolled back on this machine" in ran.stderr
    assert snapshot(home) == before


def test_piped_install_uses_the_channel_then_the_recorded_source(
    tmp_path: Path, base: Published
) -> None:
    home = tmp_path / "home"
    channel = copy_channel(base, tmp_path / "channel").channel

    first = install_sh(home, channel=channel, script=channel / "install.sh", piped=True)

    assert first.returncode == 0, first.stderr
    assert (standalone(home) / "source").read_text() == f"channel {channel}\n"
    first_release = current_release(home)

    publish_variant(channel, base, "0.2.0")
    # No CODEXD_CHANNEL, and run from inside the checkout: piped, it has no file to
    # find the checkout by, so the recorded source is used.
    second = install_sh(home, script=channel / "install.sh", piped=True, cwd=CHECKOUT)

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
    ran = install_sh(tmp_path / "home", script=INSTALL_SH, piped=True)
    assert ran.returncode != 0
    assert "set CODEXD_CHANNEL" in ran.stderr
    assert "checkout" in ran.stderr
