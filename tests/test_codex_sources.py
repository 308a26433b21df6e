"""Where codex comes from (CODEXD_CODEX_SOURCE), and the front that runs it: install.sh
with `path:` and `reference` sources and with `npm:` sources served by a fake npm first
on PATH (the real npm is in test_real_codex_release.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from supervisor.codex_npm import npm_failure
from supervisor.codex_source import (
    CodexSource,
    SourceError,
    SourceKind,
    codex_version_of,
    parse_source,
)
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
    home: Path, channel: Published, source: str | None, *args: str, **extra: str
) -> subprocess.CompletedProcess[str]:
    env = clean_env(home, home.parent / "bin", CODEXD_CHANNEL=str(channel.channel), **extra)
    if source is None:
        del env["CODEXD_CODEX_SOURCE"]
    else:
        env["CODEXD_CODEX_SOURCE"] = source
    return subprocess.run(
        ["sh", str(INSTALL_SH), *args],
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
    [line] = [line for line in ran.stderr.splitlines() if "error" in line]
    assert line == "install.sh: error: npm lists no dist-tag 'nightly' for @openai/codex"
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


# -- what codex is, what a source says, what npm said ------------------------------------


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("codex-cli 0.169.0\n", "0.169.0"),
        ("codex-cli 0.170.0-alpha.2\n", "0.170.0-alpha.2"),
        ("codex 1.0\n", "1.0"),
        ("codex-cli 0.169.0\nsomething else\n", "0.169.0"),
        ("true (GNU coreutils) 9.1\nCopyright ...\n", None),
        ("echo (GNU coreutils) 9.1\n", None),
        ("--version\n", None),  # /bin/echo of another coreutils
        ("Python 3.11.2\n", None),
        ("codex-cli\n", None),
        ("codex-cli latest\n", None),
        ("codex-cli 0.169\u00a0x\n", None),
        ("codex-cli 0.169.0 extra\n", None),
        ("", None),
    ],
)
def test_codex_version_of_takes_only_a_codex_version(output: str, expected: str | None) -> None:
    assert codex_version_of(output) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("npm:latest", CodexSource(SourceKind.NPM, "latest")),
        ("npm:lates", CodexSource(SourceKind.NPM, "lates")),  # a tag npm is asked about
        ("npm:0.169.0", CodexSource(SourceKind.NPM, "0.169.0")),
        (" reference\n", CodexSource(SourceKind.REFERENCE)),
        ("path:codex", CodexSource(SourceKind.PATH, "/cwd/codex")),
        ("path:/bin/codex", CodexSource(SourceKind.PATH, "/bin/codex")),
        ("npn:latest", None),
        ("npm:", None),
        ("npm:-x", None),
        ("path:", None),
        ("reference:x", None),
        ("Reference", None),
        ("git:main", None),
        ("", None),
    ],
)
def test_parse_source_reads_the_three_kinds_and_refuses_the_rest(
    text: str, expected: CodexSource | None
) -> None:
    if expected is None:
        with pytest.raises(SourceError, match="is not npm:<version or dist-tag>"):
            parse_source(text, Path("/cwd"))
    else:
        assert parse_source(text, Path("/cwd")) == expected


NPM_404_JSON = (
    '{"error": {"code": "E404", "summary": "No match found for version 0.999.0",'
    ' "detail": "The requested resource could not be found."}}'
)


@pytest.mark.parametrize(
    ("stdout", "stderr", "expected"),
    [
        (
            NPM_404_JSON,
            "npm error code E404\nnpm error 404 No match found for version 0.999.0\n",
            ("E404", "No match found for version 0.999.0"),
        ),
        (
            "",
            "npm error code E404\nnpm error 404 No match found for version 0.999.0\n",
            ("E404", "404 No match found for version 0.999.0"),
        ),
        (
            "",
            "npm ERR! code ENOTFOUND\nnpm ERR! getaddrinfo failed\n",
            ("ENOTFOUND", "getaddrinfo failed"),
        ),
        ("[]", "something broke\nmore\n", (None, "something broke")),
        ("", "", (None, "no output")),
    ],
)
def test_npm_failure_is_one_line(
    stdout: str, stderr: str, expected: tuple[str | None, str]
) -> None:
    assert npm_failure(stdout, stderr) == expected


# -- bad sources fail in one line, before anything changes -------------------------------


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "error" in line]


@pytest.mark.parametrize("program", ["/bin/true", "/bin/echo"])
def test_a_path_source_that_is_not_codex_is_refused_and_nothing_recorded(
    tmp_path: Path, channel: Published, program: str
) -> None:
    home = tmp_path / "home"
    assert install(home, channel, "reference").returncode == 0
    before = snapshot(home, dir_mtimes=False)

    ran = install(home, channel, f"path:{program}")

    assert ran.returncode == 1
    [line] = error_lines(ran.stderr)
    assert line.startswith(f"install.sh: error: {program} is not codex: `{program} --version` says")
    assert "installed release" not in ran.stderr
    assert snapshot(home, dir_mtimes=False) == before
    assert run_version(managed(home)) == "codexd 0.1.0"


def test_an_npm_version_npm_does_not_have_fails_in_one_line(
    tmp_path: Path, channel: Published, npm: FakeNpm
) -> None:
    npm.publish("1.0.0")
    ran = install(tmp_path / "home", channel, "npm:0.999.0", PATH=npm.path_with_npm())
    assert ran.returncode == 1
    assert ran.stderr.count("\n") <= 2, ran.stderr  # at most a progress line, then the error
    [line] = error_lines(ran.stderr)
    assert line.startswith("install.sh: error: npm has no @openai/codex@0.999.0-linux-"), line
    assert "(E404: " in line


def test_a_typo_in_the_source_fails_before_codexd_is_built(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = clean_env(home, tmp_path / "bin", CODEXD_CODEX_SOURCE="npn:latest")
    checkout = copy_checkout(tmp_path / "codexd")
    started = time.monotonic()
    ran = subprocess.run(
        ["sh", str(checkout / "install.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_SECONDS,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert ran.returncode == 1
    [line] = error_lines(ran.stderr)
    assert "CODEXD_CODEX_SOURCE: codex source 'npn:latest' is not npm:" in line
    assert not home.exists()
    assert elapsed < 3.0, f"took {elapsed:.1f} s: was codexd built first?"


# -- an incomplete codex payload is fetched again -----------------------------------------


@pytest.mark.parametrize("how", ["again", "--force", "npm"])
def test_an_incomplete_codex_payload_is_reinstalled(
    tmp_path: Path, channel: Published, npm: FakeNpm, how: str
) -> None:
    home = tmp_path / "home"
    if how == "npm":
        npm.publish("1.0.0")
        source, extra = "npm:1.0.0", {"PATH": npm.path_with_npm()}
    else:
        source, extra = f"path:{fake_codex(tmp_path / 'codex', '1.0.0')}", {}
    assert install(home, channel, source, **extra).returncode == 0
    release = current_release(home)
    [entry] = codex_store(home)
    binary = home / "packages" / "codex" / entry / "bin" / "codex"
    binary.unlink()

    ran = install(home, channel, source, *(["--force"] if how == "--force" else []), **extra)

    assert ran.returncode == 0, ran.stderr
    assert "is already installed" not in ran.stderr
    assert f"is incomplete (missing {binary})" in ran.stderr
    assert f"repaired release {release}" in ran.stderr
    assert current_release(home) == release and codex_store(home) == [entry]
    assert run_version(managed(home)) == "codex-cli 1.0.0"
    again = install(home, channel, source, **extra)
    assert f"release {release} is already installed" in again.stderr
