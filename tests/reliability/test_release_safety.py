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
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.https_server import serve_https

CHECKOUT = Path(__file__).resolve().parents[2]
PUBLISH_PY = CHECKOUT / "release" / "publish.py"
MARKER_NAME = ".codexd-release"


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("CODEXD_") and key != "CODEX_HOME"
    }
    env.update(CODEX_HOME=str(home), **extra)
    return env


def script_release(path: Path, version: str, delay: str = "0") -> Path:
    """A release that is a shell script: install.sh only runs its --version."""
    path.write_text(f"#!/bin/sh\nsleep {delay}\necho 'codexd {version}'\n")
    path.chmod(0o755)
    return path


def publish(channel: Path, artifact: Path) -> str:
    completed = subprocess.run(
        [sys.executable, str(PUBLISH_PY), "--channel", str(channel), "--artifact", str(artifact)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.strip()


def install(home: Path, channel: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(CHECKOUT / "install.sh")],
        env=clean_env(home, CODEXD_CHANNEL=channel, **extra),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def standalone(home: Path) -> Path:
    return home / "packages" / "standalone"


def assert_intact(home: Path, releases: set[str]) -> str:
    """`current` names a complete release among `releases`, which runs; its name."""
    target = os.readlink(standalone(home) / "current")
    release = target.removeprefix("releases/")
    assert release in releases, f"current -> {target}"
    directory = standalone(home) / "releases" / release
    digest = hashlib.sha256((directory / "codex").read_bytes()).hexdigest()
    assert (directory / MARKER_NAME).read_text() == f"release={release}\nsha256={digest}\n"
    ran = subprocess.run([str(directory / "codex"), "--version"], capture_output=True, text=True)
    assert ran.returncode == 0 and ran.stdout.startswith("codexd "), ran
    return release


@pytest.fixture
def installed(tmp_path: Path) -> tuple[Path, Path, str]:
    """A home with release v1 installed from a channel directory."""
    home, channel = tmp_path / "home", tmp_path / "channel"
    v1 = publish(channel, script_release(tmp_path / "v1", "0.1.0"))
    ran = install(home, str(channel))
    assert ran.returncode == 0, ran.stderr
    return home, channel, v1


@pytest.mark.parametrize("damage", ["tampered", "truncated"])
def test_a_damaged_artifact_is_refused_and_the_install_kept(
    tmp_path: Path, installed: tuple[Path, Path, str], damage: str
) -> None:
    home, channel, v1 = installed
    v2 = publish(channel, script_release(tmp_path / "v2", "0.2.0"))
    artifact = channel / "artifacts" / v2
    data = artifact.read_bytes()
    artifact.write_bytes(data + b"# evil\n" if damage == "tampered" else data[: len(data) // 2])

    ran = install(home, str(channel))

    assert ran.returncode != 0
    assert "checksum mismatch" in ran.stderr and v2 in ran.stderr, ran.stderr
    assert assert_intact(home, {v1}) == v1
    assert not (standalone(home) / "releases" / v2).exists()


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
def https_channel(tmp_path: Path, installed: tuple[Path, Path, str]) -> Iterator[tuple[str, Path]]:
    _, channel, _ = installed
    publish(channel, script_release(tmp_path / "v2", "0.2.0"))
    with serve_https(channel, tmp_path, TruncatingHandler) as served:
        yield served


def test_a_truncated_download_is_refused_and_the_install_kept(
    installed: tuple[Path, Path, str], https_channel: tuple[str, Path]
) -> None:
    home, _, v1 = installed
    url, cert = https_channel
    ran = install(home, url, CURL_CA_BUNDLE=str(cert))
    assert ran.returncode != 0
    assert "cannot download" in ran.stderr and "/artifacts/" in ran.stderr, ran.stderr
    assert assert_intact(home, {v1}) == v1


def test_a_redirect_to_plain_http_is_refused_and_the_install_kept(
    installed: tuple[Path, Path, str], https_channel: tuple[str, Path]
) -> None:
    home, _, v1 = installed
    url, cert = https_channel
    ran = install(home, url + "/redirect", CURL_CA_BUNDLE=str(cert))
    assert ran.returncode != 0
    assert "cannot download" in ran.stderr, ran.stderr
    assert assert_intact(home, {v1}) == v1


def test_a_plain_http_channel_is_refused_and_the_install_kept(
    installed: tuple[Path, Path, str],
) -> None:
    home, _, v1 = installed
    ran = install(home, "http://127.0.0.1:9/codexd")
    assert ran.returncode != 0
    assert "refusing the plain http channel" in ran.stderr, ran.stderr
    assert assert_intact(home, {v1}) == v1
    assert (standalone(home) / "source").read_text().startswith("channel ")
    assert "http://" not in (standalone(home) / "source").read_text()


def test_an_install_killed_at_random_moments_leaves_a_working_install(
    tmp_path: Path, installed: tuple[Path, Path, str], rng: random.Random, full: bool
) -> None:
    home, channel, v1 = installed
    temp_root = tmp_path / "tmp"
    temp_root.mkdir()
    known = {v1}
    for round_number in range(10 if full else 3):
        # A release whose --version takes a moment widens the window being hit.
        artifact = script_release(tmp_path / f"r{round_number}", f"0.2.{round_number}", "0.3")
        known.add(publish(channel, artifact))
        installer = subprocess.Popen(
            ["sh", str(CHECKOUT / "install.sh")],
            env=clean_env(home, CODEXD_CHANNEL=str(channel), TMPDIR=str(temp_root)),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        delay = rng.uniform(0.0, 0.8)
        try:
            installer.wait(timeout=delay)  # the random moment, unless it finished first
        except subprocess.TimeoutExpired:
            os.killpg(installer.pid, signal.SIGKILL)
            installer.wait()
        where = f"round {round_number}, killed after {delay:.3f} s"
        current = assert_intact(home, known)
        previous = standalone(home) / "previous"
        if previous.exists():
            assert previous.read_text().strip() in known, where

    # The next install completes and sweeps up what the killed ones left.
    ran = install(home, str(channel), TMPDIR=str(temp_root))
    assert ran.returncode == 0, ran.stderr
    current = assert_intact(home, known)
    assert current == (channel / "latest").read_text().strip()
    leftovers = [p.name for p in (standalone(home) / "releases").iterdir() if p.name[0] == "."]
    assert leftovers == []
    assert list(temp_root.iterdir()) == []
