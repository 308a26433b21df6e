"""The managed binary's version, and its cache keyed by file identity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from supervisor.digest import file_digest
from supervisor.errors import DaemonError
from supervisor.managed import managed_digest, managed_version, require_managed_binary


def fake_binary(path: Path, version: str, counter: Path) -> Path:
    path.write_text(f'#!/bin/sh\necho run >> "{counter}"\necho "codexd {version}"\n')
    path.chmod(0o755)
    return path


def runs(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def test_version_is_the_second_word_of_version_output(tmp_path: Path) -> None:
    binary = fake_binary(tmp_path / "codex", "1.2.3", tmp_path / "runs")
    assert managed_version(binary) == "1.2.3"


def test_cached_version_is_reused_until_the_file_changes(tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    cache = tmp_path / "managed-binary.json"
    binary = fake_binary(tmp_path / "codex", "1.2.3", counter)
    assert managed_version(binary, cache) == "1.2.3"
    assert managed_version(binary, cache) == "1.2.3"
    assert runs(counter) == 1

    replacement = fake_binary(tmp_path / "codex.new", "2.0.0", counter)
    replacement.replace(binary)
    assert managed_version(binary, cache) == "2.0.0"
    assert runs(counter) == 2


def test_corrupt_cache_is_ignored_and_rewritten(tmp_path: Path) -> None:
    cache = tmp_path / "managed-binary.json"
    cache.write_text("{not json")
    binary = fake_binary(tmp_path / "codex", "1.2.3", tmp_path / "runs")
    assert managed_version(binary, cache) == "1.2.3"
    assert '"version": "1.2.3"' in cache.read_text()


def test_failing_or_missing_binary_has_no_version(tmp_path: Path) -> None:
    failing = tmp_path / "failing"
    failing.write_text("#!/bin/sh\nexit 3\n")
    failing.chmod(0o755)
    assert managed_version(failing) is None
    assert managed_version(tmp_path / "missing") is None


def test_missing_managed_binary_error_names_path_and_install_sh(tmp_path: Path) -> None:
    missing = tmp_path / "current" / "codex"
    with pytest.raises(DaemonError, match=r"install\.sh") as error:
        require_managed_binary(missing)
    assert str(missing) in str(error.value)


def test_the_version_and_digest_are_the_resolved_fronts_and_follow_current(
    tmp_path: Path,
) -> None:
    """`current` switching to another release is another file: asked again."""
    cache = tmp_path / "managed-binary.json"
    counter = tmp_path / "runs"
    releases = tmp_path / "releases"
    for name, version in (("r1", "0.166.0"), ("r2", "0.169.0")):
        (releases / name).mkdir(parents=True)
        fake_binary(releases / name / "codex", version, counter)
    current = tmp_path / "current"
    current.symlink_to("releases/r1")
    managed = current / "codex"
    assert managed_version(managed, cache) == "0.166.0"
    assert managed_digest(managed, cache) == file_digest(releases / "r1" / "codex")

    (tmp_path / "current.new").symlink_to("releases/r2")
    (tmp_path / "current.new").replace(current)

    assert managed_version(managed, cache) == "0.169.0"
    assert managed_digest(managed, cache) == file_digest(releases / "r2" / "codex")
    assert managed_version(managed, cache) == "0.169.0"
    assert runs(counter) == 2


def test_digest_is_cached_by_file_identity_and_recomputed_after_a_write(tmp_path: Path) -> None:
    cache = tmp_path / "managed-binary.json"
    binary = tmp_path / "codex"
    binary.write_bytes(b"release one")
    assert managed_digest(binary, cache) == file_digest(binary)

    # A cached answer is used as long as the file is the same file...
    entry = json.loads(cache.read_text())
    cache.write_text(json.dumps({**entry, "digest": "sha256:cached"}))
    assert managed_digest(binary, cache) == "sha256:cached"

    # ...and any write to it (same size, even) asks again.
    binary.write_bytes(b"release two")
    assert managed_digest(binary, cache) == file_digest(binary)


def test_version_and_digest_share_one_cache_entry(tmp_path: Path) -> None:
    cache = tmp_path / "managed-binary.json"
    binary = fake_binary(tmp_path / "codex", "1.2.3", tmp_path / "runs")
    assert managed_version(binary, cache) == "1.2.3"
    assert managed_digest(binary, cache) == file_digest(binary)
    entry = json.loads(cache.read_text())
    assert entry["version"] == "1.2.3"
    assert entry["digest"] == file_digest(binary)
