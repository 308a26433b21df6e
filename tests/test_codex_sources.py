"""Where codex comes from (CODEXD_CODEX_SOURCE), and the front that runs it: install.sh
with `path:` and `reference` sources and with `npm:` sources served by a fake npm first
on PATH (the real npm is in test_real_codex_release.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.releases import (
    INSTALL_SH,
    INSTALL_TIMEOUT_SECONDS,
    FakeNpm,
    Published,
    artifact_variant,
    clean_env,
    copy_checkout,
    current_release,
    fake_codex,
    fake_payload,
    publish,
    publish_artifact,
    run_version,
    snapshot,
    standalone,
)


@pytest.fixture(scope="session")
def channel(tmp_path_factory: pytest.TempPathFactory) -> Published:
    root = tmp_path_factory.mktemp("sources")
    return publish(root / "channel", copy_checkout(root / "codexd"))


def install(
    home: Path, channel: Published, source: str | None, **extra: str
) -> subprocess.CompletedProcess[str]:
    env = clean_env(home, home.parent / "bin", CODEXD_CHANNEL=str(channel.channel), **extra)
    if source is None:
        del env["CODEXD_CODEX_SOURCE"]
    else:
        env["CODEXD_CODEX_SOURCE"] = source
    return subprocess.run(
        ["sh", str(INSTALL_SH)],
        env=env,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_SECONDS,
        stdin=subprocess.DEVNULL,
        cwd=home.parent,
        check=False,
    )


def managed(home: Path) -> Path:
    return standalone(home) / "current" / "codex"


def codex_store(home: Path) -> list[str]:
    directory = home / "packages" / "codex"
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_a_path_source_is_copied_in_and_answers_through_the_front(
    tmp_path: Path, channel: Published
) -> None:
    home = tmp_path / "home"
    codex = fake_codex(tmp_path / "codex", "1.2.3")

    ran = install(home, channel, f"path:{codex}")

    assert ran.returncode == 0, ran.stderr
    assert run_version(managed(home)) == "codex-cli 1.2.3"
    assert current_release(home).startswith("1.2.3-")
    [stored] = codex_store(home)
    assert stored.startswith("1.2.3-")
    copied = home / "packages" / "codex" / stored / "bin" / "codex"
    assert copied.read_bytes() == codex.read_bytes()
    assert (standalone(home) / "codex-source").read_text() == f"path:{codex}\n"
    # Copied, never updated: a changed file at the path changes nothing.
    fake_codex(codex, "9.9.9")
    before = snapshot(home)
    again = install(home, channel, None)
    assert again.returncode == 0, again.stderr
    assert "is already installed" in again.stderr
    assert snapshot(home) == before
    # `app-server daemon ...` is codexd, whatever codex is.
    daemon = subprocess.run(
        [str(managed(home)), "app-server", "daemon", "--help"],
        env=clean_env(home, tmp_path / "bin"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert daemon.returncode == 0, daemon.stderr
    assert "bootstrap" in daemon.stdout


def test_a_path_source_inside_a_codex_package_brings_what_it_ships(
    tmp_path: Path, channel: Published
) -> None:
    home = tmp_path / "home"
    payload = fake_payload(tmp_path / "vendor" / "x86_64-unknown-linux-musl", "1.4.0")

    ran = install(home, channel, f"path:{payload / 'bin' / 'codex'}")

    assert ran.returncode == 0, ran.stderr
    [stored] = codex_store(home)
    copied = home / "packages" / "codex" / stored
    assert (copied / "codex-resources" / "notice.txt").read_text() == "resources of 1.4.0\n"
    assert (copied / "codex-package.json").is_file()
    assert run_version(managed(home)) == "codex-cli 1.4.0"


def test_the_front_passes_argv_stdio_environment_and_exit_status_through(
    tmp_path: Path, channel: Published
) -> None:
    home = tmp_path / "home"
    assert install(home, channel, f"path:{fake_codex(tmp_path / 'codex', '1.2.3')}").returncode == 0
    args = ["exec", "--help", "", "two words", "-", "--", "$HOME", "*", "app-server"]
    # /bin/sh sets PWD when it is missing or wrong, so the caller's is right: as a
    # shell's always is.
    env = {
        "PATH": os.environ["PATH"],
        "MULTI_LINE": "a\nb",
        "EMPTY": "",
        "CODEX_HOME": str(home),
        "PWD": str(tmp_path),
    }

    ran = subprocess.run(
        [str(managed(home)), *args],
        input="from stdin",
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )

    assert ran.returncode == 7
    lines = ran.stdout.split("\n")
    assert lines[: len(args)] == [f"arg:{arg}" for arg in args]
    assert lines[len(args)] == "stdin:from stdin"
    printed = sorted(lines[len(args) + 1 :])
    expected = "\n".join(f"{key}={value}" for key, value in env.items()) + "\n"
    assert printed == sorted(expected.split("\n"))


def test_a_moved_home_keeps_working_and_a_symlink_elsewhere_falls_back(
    tmp_path: Path, channel: Published
) -> None:
    home = tmp_path / "home"
    assert install(home, channel, f"path:{fake_codex(tmp_path / 'codex', '1.2.3')}").returncode == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "codex").symlink_to(managed(home))
    assert run_version(elsewhere / "codex") == "codex-cli 1.2.3"

    moved = tmp_path / "moved"
    home.rename(moved)

    assert run_version(managed(moved)) == "codex-cli 1.2.3"
    in_release = subprocess.run(
        ["sh", "codex", "--version"],
        cwd=managed(moved).resolve().parent,
        capture_output=True,
        text=True,
        check=True,
    )
    assert in_release.stdout == "codex-cli 1.2.3\n"


def test_reference_runs_codexd_for_every_call(tmp_path: Path, channel: Published) -> None:
    home = tmp_path / "home"
    ran = install(home, channel, "reference")
    assert ran.returncode == 0, ran.stderr
    assert run_version(managed(home)) == "codexd 0.1.0"
    assert codex_store(home) == []


def test_without_npm_or_a_source_reference_is_installed_and_not_recorded(
    tmp_path: Path, channel: Published
) -> None:
    home = tmp_path / "home"
    no_npm = tmp_path / "no-npm"
    no_npm.mkdir()
    (no_npm / "python3").symlink_to(os.path.realpath(sys.executable))
    for tool in ("sh", "sha256sum", "cp", "mktemp", "rm", "id", "find", "awk", "tr", "grep",
                 "sed", "dirname", "cat", "env"):  # fmt: skip
        found = shutil.which(tool)
        if found:
            (no_npm / tool).symlink_to(found)

    ran = install(home, channel, None, PATH=str(no_npm))

    assert ran.returncode == 0, ran.stderr
    assert "npm is not on PATH" in ran.stderr and "CODEXD_CODEX_SOURCE=path:" in ran.stderr
    assert run_version(managed(home)) == "codexd 0.1.0"
    assert not (standalone(home) / "codex-source").exists()


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("npm:", "is not npm:<version or dist-tag>"),
        ("git:main", "is not npm:<version or dist-tag>"),
        ("path:/nonexistent/codex", "is not an executable file"),
    ],
)
def test_a_bad_source_fails_clearly_and_changes_nothing(
    tmp_path: Path, channel: Published, source: str, message: str
) -> None:
    home = tmp_path / "home"
    assert install(home, channel, "reference").returncode == 0
    before = snapshot(home)
    ran = install(home, channel, source)
    assert ran.returncode != 0
    assert message in ran.stderr and source.partition(":")[2] in ran.stderr
    assert snapshot(home) == before


@pytest.fixture
def npm(tmp_path: Path) -> FakeNpm:
    return FakeNpm.create(tmp_path / "npm")


def test_npm_latest_is_followed_and_a_codexd_update_reuses_the_codex(
    tmp_path: Path, channel: Published, npm: FakeNpm
) -> None:
    home = tmp_path / "home"
    npm.publish("1.0.0")
    path = npm.path_with_npm()

    first = install(home, channel, None, PATH=path)

    assert first.returncode == 0, first.stderr
    assert (standalone(home) / "codex-source").read_text() == "npm:latest\n"
    assert run_version(managed(home)) == "codex-cli 1.0.0"
    r1 = current_release(home)

    # The tag moves: the next install brings the new codex, keeps the previous release.
    npm.publish("1.1.0")
    second = install(home, channel, None, PATH=path)
    assert second.returncode == 0, second.stderr
    assert run_version(managed(home)) == "codex-cli 1.1.0"
    assert (standalone(home) / "previous").read_text() == f"{r1}\n"
    assert [name.split("-")[0] for name in codex_store(home)] == ["1.0.0", "1.1.0"]

    # A codexd-only update: a new release, and no second copy of codex.
    calls = len(npm.calls())
    variant = artifact_variant(channel.artifact, tmp_path / "codexd-0.2.0", "0.2.0")
    newer = publish_artifact(tmp_path / "channel2", variant)
    third = install(home, newer, None, PATH=path)
    assert third.returncode == 0, third.stderr
    assert [call.split()[0] for call in npm.calls()[calls:]] == ["view"]  # the tag only
    assert [name.split("-")[0] for name in codex_store(home)] == ["1.1.0"]
    assert run_version(managed(home)) == "codex-cli 1.1.0"
    assert current_release(home) != r1


def test_a_pinned_npm_version_already_here_asks_npm_nothing(
    tmp_path: Path, channel: Published, npm: FakeNpm
) -> None:
    home = tmp_path / "home"
    npm.publish("1.0.0")
    assert install(home, channel, "npm:1.0.0", PATH=npm.path_with_npm()).returncode == 0
    npm.publish("1.1.0")
    calls = len(npm.calls())

    again = install(home, channel, None, PATH=npm.path_with_npm())

    assert again.returncode == 0, again.stderr
    assert "is already installed" in again.stderr
    assert npm.calls()[calls:] == []
    assert run_version(managed(home)) == "codex-cli 1.0.0"


@pytest.mark.parametrize("damage", ["tampered", "truncated", "wrong integrity"])
def test_a_damaged_npm_download_is_refused_and_the_install_kept(
    tmp_path: Path, channel: Published, npm: FakeNpm, damage: str
) -> None:
    home = tmp_path / "home"
    npm.publish("1.0.0")
    assert install(home, channel, "npm:latest", PATH=npm.path_with_npm()).returncode == 0
    integrity = npm.publish("1.1.0")
    tarball = npm.tarball("1.1.0")
    data = tarball.read_bytes()
    if damage == "tampered":
        tarball.write_bytes(data[:-200] + bytes(200))
    elif damage == "truncated":
        tarball.write_bytes(data[: len(data) // 2])
    else:
        integrity_file = tarball.with_suffix(".integrity")
        integrity_file.write_text(integrity.replace(integrity[8:12], "AAAA") + "\n")
    before = snapshot(home, dir_mtimes=False)

    ran = install(home, channel, None, PATH=npm.path_with_npm())

    assert ran.returncode != 0
    assert "does not match the registry's integrity" in ran.stderr, ran.stderr
    assert "nothing was installed" in ran.stderr
    assert snapshot(home, dir_mtimes=False) == before
    assert run_version(managed(home)) == "codex-cli 1.0.0"


def test_an_unknown_dist_tag_fails_clearly(
    tmp_path: Path, channel: Published, npm: FakeNpm
) -> None:
    ran = install(tmp_path / "home", channel, "npm:nightly", PATH=npm.path_with_npm())
    assert ran.returncode != 0
    assert "npm lists no dist-tag 'nightly' for @openai/codex" in ran.stderr
    assert not (standalone(tmp_path / "home") / "current").exists()


def test_the_codexd_command_is_never_written_over_a_file_of_someone_else(
    tmp_path: Path, channel: Published
) -> None:
    home = tmp_path / "home"
    theirs = tmp_path / "bin" / "codexd"
    theirs.parent.mkdir()
    theirs.write_text("#!/bin/sh\necho theirs\n")

    ran = install(home, channel, "reference", PATH=f"{theirs.parent}:{os.environ['PATH']}")

    assert ran.returncode == 0, ran.stderr
    assert f"left {theirs} alone" in ran.stderr
    assert theirs.read_text() == "#!/bin/sh\necho theirs\n"
