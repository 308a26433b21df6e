"""A release that arrives broken, over the wrong protocol, or an install killed
halfway: the existing install stays intact, and the next good install succeeds and
leaves nothing behind."""

from __future__ import annotations

import hashlib
import http.server
import os
import random
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.https_server import serve_https
from tests.releases import (
    INSTALL_SH,
    RELEASE_MARKER,
    Published,
    artifact_variant,
    clean_env,
    copy_checkout,
    publish,
    publish_artifact,
    standalone,
)


def install(home: Path, channel: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(INSTALL_SH)],
        env=clean_env(home, home.parent / "bin", CODEXD_CHANNEL=channel, **extra),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def assert_intact(home: Path, versions: set[str]) -> str:
    """`current` names a complete release, made of a complete codexd store, that runs
    and reports one of `versions`; its codexd version."""
    target = os.readlink(standalone(home) / "current")
    directory = standalone(home) / target
    front = directory / "codex"
    marker = dict(line.split("=", 1) for line in (directory / RELEASE_MARKER).read_text().split())
    assert marker["sha256"] == hashlib.sha256(front.read_bytes()).hexdigest(), target
    assert marker["release"] == directory.name
    codexd = home / "packages" / "codexd" / marker["codexd"] / ".codexd-artifact"
    assert f"release={marker['codexd']}" in codexd.read_text()
    ran = subprocess.run([str(front), "--version"], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0 and ran.stdout.startswith("codexd "), ran
    version = ran.stdout.split()[1]
    assert version in versions, f"current -> {target}: {version}"
    return version


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Published:
    root = tmp_path_factory.mktemp("release-safety")
    return publish(root / "channel", copy_checkout(root / "codexd"))


def publish_version(channel: Path, base: Published, version: str) -> Published:
    variant = artifact_variant(base.artifact, channel.parent / f"codexd-{version}", version)
    return publish_artifact(channel, variant)


@pytest.fixture
def installed(tmp_path: Path, base: Published) -> tuple[Path, Path]:
    """A home with release 0.1.0 installed from a channel directory."""
    home, channel = tmp_path / "home", tmp_path / "channel"
    publish_artifact(channel, base.artifact)
    ran = install(home, str(channel))
    assert ran.returncode == 0, ran.stderr
    return home, channel


@pytest.mark.parametrize("damage", ["tampered", "truncated"])
def test_a_damaged_artifact_is_refused_and_the_install_kept(
    base: Published, installed: tuple[Path, Path], damage: str
) -> None:
    home, channel = installed
    v2 = publish_version(channel, base, "0.2.0")
    data = v2.artifact.read_bytes()
    v2.artifact.write_bytes(data + b"# evil\n" if damage == "tampered" else data[: len(data) // 2])

    ran = install(home, str(channel))

    assert ran.returncode != 0
    assert "checksum mismatch" in ran.stderr and v2.release in ran.stderr, ran.stderr
    assert assert_intact(home, {"0.1.0"}) == "0.1.0"
    assert not (home / "packages" / "codexd" / v2.release).exists()


class TruncatingHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the channel, but cuts every artifact off halfway through its body, and
    redirects /redirect/* to plain http."""

    def do_GET(self) -> None:
        if self.path.startswith("/redirect/"):
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:9" + self.path.removeprefix("/redirect"))
            self.end_headers()
            return
        if not self.path.startswith("/artifacts/"):
            super().do_GET()
            return
        data = Path(self.translate_path(self.path)).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def https_channel(
    tmp_path: Path, base: Published, installed: tuple[Path, Path]
) -> Iterator[tuple[str, Path]]:
    _, channel = installed
    publish_version(channel, base, "0.2.0")
    with serve_https(channel, tmp_path, TruncatingHandler) as served:
        yield served


def test_a_truncated_download_is_refused_and_the_install_kept(
    installed: tuple[Path, Path], https_channel: tuple[str, Path]
) -> None:
    home, _ = installed
    url, cert = https_channel
    ran = install(home, url, CURL_CA_BUNDLE=str(cert))
    assert ran.returncode != 0
    assert "cannot download" in ran.stderr and "/artifacts/" in ran.stderr, ran.stderr
    assert assert_intact(home, {"0.1.0"}) == "0.1.0"


def test_a_redirect_to_plain_http_is_refused_and_the_install_kept(
    installed: tuple[Path, Path], https_channel: tuple[str, Path]
) -> None:
    home, _ = installed
    url, cert = https_channel
    ran = install(home, url + "/redirect", CURL_CA_BUNDLE=str(cert))
    assert ran.returncode != 0
    assert "cannot download" in ran.stderr, ran.stderr
    assert assert_intact(home, {"0.1.0"}) == "0.1.0"


def test_a_plain_http_channel_is_refused_and_the_install_kept(
    installed: tuple[Path, Path],
) -> None:
    home, _ = installed
    ran = install(home, "http://127.0.0.1:9/codexd")
    assert ran.returncode != 0
    assert "refusing the plain http channel" in ran.stderr, ran.stderr
    assert assert_intact(home, {"0.1.0"}) == "0.1.0"
    assert (standalone(home) / "source").read_text().startswith("channel ")
    assert "http://" not in (standalone(home) / "source").read_text()


def test_an_install_killed_at_random_moments_leaves_a_working_install(
    tmp_path: Path, base: Published, installed: tuple[Path, Path], rng: random.Random, full: bool
) -> None:
    home, channel = installed
    temp_root = tmp_path / "tmp"
    temp_root.mkdir()
    versions = {"0.1.0"}
    for round_number in range(10 if full else 3):
        version = f"0.2.{round_number}"
        versions.add(version)
        publish_version(channel, base, version)
        installer = subprocess.Popen(
            ["sh", str(INSTALL_SH)],
            env=clean_env(
                home, tmp_path / "bin", CODEXD_CHANNEL=str(channel), TMPDIR=str(temp_root)
            ),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        # An install takes about 2 s (unpack, byte-compile, checks): kill anywhere in it.
        delay = rng.uniform(0.0, 2.5)
        try:
            installer.wait(timeout=delay)  # the random moment, unless it finished first
        except subprocess.TimeoutExpired:
            os.killpg(installer.pid, signal.SIGKILL)
            installer.wait()
        where = f"round {round_number}, killed after {delay:.3f} s"
        assert assert_intact(home, versions), where
        previous = standalone(home) / "previous"
        if previous.exists():
            assert (standalone(home) / "releases" / previous.read_text().strip()).is_dir(), where

    # The next install completes and sweeps up what the killed ones left.
    ran = install(home, str(channel), TMPDIR=str(temp_root))
    assert ran.returncode == 0, ran.stderr
    assert assert_intact(home, versions) == f"0.2.{round_number}"
    for directory in (standalone(home), standalone(home) / "releases", home / "packages" / "codex",
                      home / "packages" / "codexd"):  # fmt: skip
        if directory.exists():
            leftovers = [p.name for p in directory.iterdir() if p.name.startswith(".")]
            assert leftovers == [], directory
    assert list(temp_root.iterdir()) == []
    assert len(list((home / "packages" / "codexd").iterdir())) <= 2
