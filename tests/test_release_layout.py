"""The pure parts of releases: codex sources, the front's text and name, what stays on
disk, the interpreter check, the updater's installer command; and the disk usage
`status` shows."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.codex_source import (
    CodexSource,
    SourceError,
    SourceKind,
    check_integrity,
    extract_payload,
    integrity_hex,
    integrity_of,
    parse_source,
)
from supervisor.front import (
    CodexdPart,
    CodexPart,
    Release,
    check_relative,
    release_name,
    render_bin_command,
    render_codexd_launcher,
    render_front,
    sh_quote,
)
from supervisor.installer import installer_command
from supervisor.paths import HomePaths
from supervisor.release_dir import interpreter_mismatch
from supervisor.standalone import (
    ReleaseSource,
    release_disk_usage,
    releases_to_keep,
    stores_to_keep,
)
from tests.releases import fake_payload, npm_tarball

NPM, PATH, REFERENCE = SourceKind.NPM, SourceKind.PATH, SourceKind.REFERENCE


@pytest.mark.parametrize(
    ("text", "kind", "value", "pinned"),
    [
        ("npm:latest", NPM, "latest", False),
        ("npm:next", NPM, "next", False),
        ("npm:0.169.0", NPM, "0.169.0", True),
        ("npm:0.170.0-alpha.2", NPM, "0.170.0-alpha.2", True),
        (" npm:0.166.0\n", NPM, "0.166.0", True),
        ("path:/opt/codex", PATH, "/opt/codex", True),
        ("path:bin/codex", PATH, "/work/bin/codex", True),
        ("reference", REFERENCE, "", True),
    ],
)
def test_codex_sources_parse(text: str, kind: SourceKind, value: str, pinned: bool) -> None:
    source = parse_source(text, cwd=Path("/work"))
    assert (source.kind, source.value, source.pinned) == (kind, value, pinned)
    assert parse_source(str(source), cwd=Path("/work")) == source


@pytest.mark.parametrize(
    "text",
    ["", "npm:", "npm:1.2", "npm:-rf", "npm:a b", "path:", "reference:x", "git:main", "latest"],
)
def test_bad_codex_sources_are_refused_naming_the_forms(text: str) -> None:
    with pytest.raises(SourceError, match=r"npm:<version or dist-tag>.*path:.*reference"):
        parse_source(text)


def test_integrity_is_npms_sha512_and_a_mismatch_names_both(tmp_path: Path) -> None:
    tarball = tmp_path / "package.tgz"
    tarball.write_bytes(b"payload")
    integrity = integrity_of(tarball)
    assert integrity.startswith("sha512-") and len(integrity_hex(integrity)) == 128
    check_integrity(tarball, integrity, "pkg")
    tarball.write_bytes(b"payload, tampered")
    with pytest.raises(SourceError, match="does not match") as error:
        check_integrity(tarball, integrity, "pkg")
    assert integrity in str(error.value) and integrity_of(tarball) in str(error.value)
    with pytest.raises(SourceError, match="no sha512"):
        check_integrity(tarball, "sha1-AAAA", "pkg")


def test_a_payload_is_what_the_package_ships_for_this_platform(tmp_path: Path) -> None:
    tarball = tmp_path / "codex.tgz"
    tarball.write_bytes(npm_tarball(fake_payload(tmp_path / "src", "1.0.0"), "1.0.0"))
    extract_payload(tarball, "x86_64-unknown-linux-musl", tmp_path / "out")
    found = sorted(
        p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*")
    )
    assert found == [
        "bin", "bin/codex", "codex-package.json", "codex-resources",
        "codex-resources/notice.txt",
    ]  # fmt: skip
    assert os.access(tmp_path / "out" / "bin" / "codex", os.X_OK)
    with pytest.raises(SourceError, match="nothing under package/vendor/aarch64"):
        extract_payload(tarball, "aarch64-unknown-linux-musl", tmp_path / "other")


CODEXD = CodexdPart(store="0.1.0-aaaaaaaaaaaa", sha256="a" * 64, version="0.1.0")
CODEX = CodexPart(
    store="0.169.0-bbbbbbbbbbbb",
    entrypoint="bin/codex",
    integrity="sha512-bbbb",
    version="0.169.0",
    source="@openai/codex@0.169.0-linux-x64",
)
RELEASE = Release("/usr/bin/python3.11", Path("/home/u/.codex/packages"), CODEXD, CODEX)


@pytest.mark.parametrize(
    ("change", "what"),
    [
        ({"codex": CODEX.__class__(**{**CODEX.__dict__, "integrity": "sha512-cccc"})}, "codex"),
        ({"codexd": CODEXD.__class__(**{**CODEXD.__dict__, "sha256": "c" * 64})}, "codexd"),
        ({"python": "/usr/bin/python3.12"}, "interpreter"),
        ({"codex": None}, "reference"),
    ],
)
def test_the_front_changes_whenever_a_part_does(change: dict[str, object], what: str) -> None:
    other = Release(**{**RELEASE.__dict__, **change})
    assert render_front(other) != render_front(RELEASE), what
    assert release_name(other, render_front(other)) != release_name(RELEASE, render_front(RELEASE))


def test_the_release_name_shows_the_codex_version_and_the_fronts_digest() -> None:
    front = render_front(RELEASE)
    assert release_name(RELEASE, front).startswith("0.169.0-")
    reference = Release(**{**RELEASE.__dict__, "codex": None})
    assert release_name(reference, render_front(reference)).startswith("0.1.0-")


def test_the_scripts_quote_what_they_embed(tmp_path: Path) -> None:
    odd = Path(tmp_path / 'it\'s $HOME `x` "q"')
    odd.mkdir()
    (odd / "codexd" / "0.1.0-aaaaaaaaaaaa").mkdir(parents=True)
    (odd / "codexd" / "0.1.0-aaaaaaaaaaaa" / "__main__.py").touch()
    release = Release(**{**RELEASE.__dict__, "packages": odd, "codex": None})
    launcher = tmp_path / "launcher"
    # A launcher out of place falls back to the packages it was installed into.
    launcher.write_text(render_codexd_launcher(release).replace("exec ", "echo ", 1))
    out = subprocess.run(["sh", str(launcher), "a b"], capture_output=True, text=True, check=True)
    assert (
        out.stdout == f"/usr/bin/python3.11 -I -S {odd}/codexd/0.1.0-aaaaaaaaaaaa/__main__.py a b\n"
    )
    assert sh_quote("it's") == "'it'\\''s'"
    assert f"CODEX_HOME={sh_quote(str(odd))}" in render_bin_command(odd)


def test_the_codexd_command_finds_a_release_built_for_another_place(tmp_path: Path) -> None:
    """A home moved (or moved back) keeps releases installed at the old place; the
    `codexd` command sources their launcher, whose $0 is then the command: it must
    find the release through the launcher's path, not fall back to the old place."""
    home = tmp_path / "home"
    release_dir = home / "packages" / "standalone" / "releases" / "r"
    release_dir.mkdir(parents=True)
    (home / "packages" / "standalone" / "current").symlink_to("releases/r")
    main = home / "packages" / "codexd" / "0.1.0-aaaaaaaaaaaa" / "__main__.py"
    main.parent.mkdir(parents=True)
    main.write_text("")
    built_for = Release(**{**RELEASE.__dict__, "packages": tmp_path / "gone", "codex": None})
    launcher = render_codexd_launcher(built_for).replace("exec ", "echo ", 1)
    (release_dir / "codexd").write_text(launcher)
    command = tmp_path / "bin" / "codexd"
    command.parent.mkdir()
    command.write_text(render_bin_command(home))

    ran = subprocess.run(["sh", str(command), "status"], capture_output=True, text=True)

    assert ran.returncode == 0, ran.stderr
    [_, _, _, found, arg] = ran.stdout.split()
    assert Path(found).resolve() == main.resolve() and arg == "status"


@pytest.mark.parametrize(
    ("remove", "named"),
    [
        ("codexd/0.1.0-aaaaaaaaaaaa", "codexd/0.1.0-aaaaaaaaaaaa/__main__.py is missing (codexd"),
        ("codex/0.169.0-bbbbbbbbbbbb/bin/codex", "bin/codex is missing (codex 0.169.0)"),
    ],
)
def test_a_front_missing_a_part_says_so_in_one_line(
    tmp_path: Path, remove: str, named: str
) -> None:
    packages = tmp_path / "a\\nb" / "packages"  # a backslash: printed as it is
    main = packages / "codexd" / "0.1.0-aaaaaaaaaaaa" / "__main__.py"
    codex = packages / "codex" / "0.169.0-bbbbbbbbbbbb" / "bin" / "codex"
    for part in (main, codex):
        part.parent.mkdir(parents=True)
        part.write_text("")
    front = packages / "standalone" / "releases" / "r" / "codex"
    front.parent.mkdir(parents=True)
    front.write_text(render_front(Release(**{**RELEASE.__dict__, "packages": packages})))
    target = packages / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()

    args = ["app-server", "daemon", "status"] if "codexd" in remove else ["--version"]
    ran = subprocess.run(["sh", str(front), *args], capture_output=True, text=True)

    assert ran.returncode == 1
    assert ran.stdout == ""
    [line] = ran.stderr.splitlines()
    assert line.startswith("codexd: ") and named in line and "install.sh" in line, line
    assert str(packages) in line  # the backslash kept, not read as an escape


@pytest.mark.parametrize("path", ["../x", "a/../b", "/abs", "a b", "a$b", "", "a\nb"])
def test_unsafe_paths_never_reach_a_script(path: str) -> None:
    with pytest.raises(ValueError, match="unsafe path"):
        check_relative(path)


@pytest.mark.parametrize(
    ("built_for", "mismatch"),
    [
        ({"implementation": "cpython", "python": "3.11", "machine": "x86_64"}, None),
        ({"implementation": "cpython", "python": "3.12", "machine": "x86_64"}, "cpython 3.12"),
        ({"implementation": "pypy", "python": "3.11", "machine": "x86_64"}, "pypy 3.11"),
        ({"implementation": "cpython", "python": "3.11", "machine": "aarch64"}, "aarch64"),
        ({}, "? ? ?"),
    ],
)
def test_a_release_runs_only_with_the_python_it_is_built_for(
    built_for: dict[str, str], mismatch: str | None
) -> None:
    running = {"implementation": "cpython", "python": "3.11", "machine": "x86_64"}
    found = interpreter_mismatch(built_for, running)
    assert (found is None) == (mismatch is None)
    assert mismatch is None or (found is not None and mismatch in found)


@pytest.mark.parametrize(
    ("current", "previous", "in_use", "kept"),
    [
        ("b", "a", set(), {"a", "b"}),
        ("b", None, set(), {"b"}),
        ("b", "a", {"old"}, {"a", "b", "old"}),
        (None, None, set(), set()),
        ("b", "b", {"b"}, {"b"}),
    ],
)
def test_current_previous_and_releases_in_use_stay(
    current: str | None, previous: str | None, in_use: set[str], kept: set[str]
) -> None:
    assert releases_to_keep(current, previous, in_use) == kept


def test_the_stores_kept_are_those_the_kept_releases_name() -> None:
    markers = [
        {"codex": "0.169.0-aaaa", "codexd": "0.1.0-cccc"},
        {"codex": "reference", "codexd": "0.2.0-dddd"},
        {},  # a release of before the stores: names none
    ]
    assert stores_to_keep(markers) == ({"0.169.0-aaaa"}, {"0.1.0-cccc", "0.2.0-dddd"})


@pytest.mark.parametrize(
    ("source", "fragments"),
    [
        (
            ReleaseSource("checkout", "/src/codexd"),
            ['git -C "$1" show HEAD:./install.sh', "/src/codexd"],
        ),
        (
            ReleaseSource("channel", "https://h/c"),
            ['script=$(curl -fsSL --proto "=https"', "https://h/c"],
        ),
        (ReleaseSource("channel", "/srv/channel"), ['sh < "$1/install.sh"', "/srv/channel"]),
    ],
)
def test_the_updaters_installer_per_source(source: ReleaseSource, fragments: list[str]) -> None:
    command = installer_command(source)
    assert command[:2] == ["sh", "-c"]
    assert fragments[0] in command[2] and command[-1] == fragments[1]


def test_a_failed_download_fails_the_installer_instead_of_running_nothing(tmp_path: Path) -> None:
    command = installer_command(ReleaseSource("channel", "https://127.0.0.1:9/none"))
    assert subprocess.run(command, capture_output=True, timeout=60).returncode != 0


def test_disk_usage_counts_each_file_once(tmp_path: Path) -> None:
    paths = HomePaths(tmp_path)
    payload = tmp_path / "packages" / "codex" / "1.0.0-aaaa"
    payload.mkdir(parents=True)
    (payload / "codex").write_bytes(os.urandom(100_000))
    release = tmp_path / "packages" / "standalone" / "releases" / "r"
    release.mkdir(parents=True)
    os.link(payload / "codex", release / "codex")
    usage = release_disk_usage(paths)
    assert usage.codex + usage.releases >= 100_000
    assert usage.total < 200_000
    assert usage.codexd == 0
    assert release_disk_usage(HomePaths(tmp_path / "none")).total == 0


def test_sources_print_as_they_are_written() -> None:
    assert str(CodexSource(NPM, "latest")) == "npm:latest"
    assert str(CodexSource(PATH, "/x")) == "path:/x"
    assert str(CodexSource(REFERENCE)) == "reference"


def test_the_installer_and_the_codex_fetcher_need_only_the_standard_library() -> None:
    """install.sh runs the installer from the release zip with `-I -S`, before any
    dependency is unpacked; the benchmark imports the fetcher with any python3."""
    checkout = Path(__file__).resolve().parent.parent
    code = (
        f"import sys; sys.path.insert(0, {str(checkout)!r}); "
        "import supervisor.install, tests.real_codex"
    )
    ran = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr


def test_a_prune_killed_mid_removal_leaves_only_a_leftover_the_next_sweep_takes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An install SIGKILLed while it removes an old store entry must not leave that
    entry half-removed without its marker: no prune would ever touch it again."""
    from supervisor import stores
    from supervisor.standalone import CODEXD_MARKER, Layout, render_marker

    layout = Layout(tmp_path / "home")
    old = layout.codexd_store / "0.1.0-aaaaaaaaaaaa"
    (old / "supervisor").mkdir(parents=True)
    (old / CODEXD_MARKER).write_text(render_marker({"release": old.name}))
    (old / "supervisor" / "x.py").write_text("")

    def killed_midway(path: Path) -> None:
        (path / CODEXD_MARKER).unlink()  # what rmtree may remove first
        raise SystemExit("killed")

    monkeypatch.setattr(stores, "remove", killed_midway)
    with pytest.raises(SystemExit):
        stores.prune(layout, keep=set())
    monkeypatch.undo()

    [left] = list(layout.codexd_store.iterdir())
    assert left.name == f".{old.name}.old.{os.getpid()}"  # a leftover, not the entry
    monkeypatch.setattr(stores, "pid_alive", lambda pid: False)  # its install is gone
    assert stores.sweep_leftovers([layout.codexd_store]) == [left.name]
    assert list(layout.codexd_store.iterdir()) == []


def test_a_release_prune_cannot_move_never_costs_a_kept_release_its_stores(
    tmp_path: Path,
) -> None:
    """Releases are read in name order; one that cannot be moved aside (here the
    aside name is taken) must not end the walk before the kept releases after it
    are read, or their codex and codexd entries would be pruned as unused."""
    from supervisor import stores
    from supervisor.standalone import (
        CODEX_MARKER,
        CODEXD_MARKER,
        RELEASE_MARKER,
        Layout,
        render_marker,
    )

    layout = Layout(tmp_path / "home")
    codex = layout.codex_store / "0.2.0-bbbbbbbbbbbb"
    codexd = layout.codexd_store / "0.2.0-cccccccccccc"
    for entry, marker in ((codex, CODEX_MARKER), (codexd, CODEXD_MARKER)):
        entry.mkdir(parents=True)
        (entry / marker).write_text(render_marker({"release": entry.name}))
    for name in ("a-old", "b-kept"):
        release = layout.releases / name
        release.mkdir(parents=True)
        uses = {"release": name, "codex": codex.name, "codexd": codexd.name}
        (release / RELEASE_MARKER).write_text(render_marker(uses))
    blocked = layout.releases / f".a-old.old.{os.getpid()}"
    (blocked / "x").mkdir(parents=True)  # rename(2) onto a non-empty directory fails

    stores.prune(layout, keep={"b-kept"})

    assert codex.is_dir() and codexd.is_dir()
    assert (layout.releases / "b-kept").is_dir()
