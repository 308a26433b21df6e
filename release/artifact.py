"""A codexd release artifact: one reproducible zip of codexd's packages and the pinned
dependencies unpacked from their wheels.

Unpacked into `CODEX_HOME/packages/codexd/<release>/` and byte-compiled by install.sh,
it runs as `<python> -I -S <dir> <args>`: `<dir>/__main__.py` is codexd's entry point
and `<dir>` is the only entry on sys.path besides the standard library. The zip itself
runs too (`python3 <artifact> --version`, or `python3 -I -S <artifact>` for the
commands that need no compiled extension), which is how install.sh runs the installer
it carries (`supervisor/install.py`) before anything is unpacked.

The same sources and wheels give the same bytes: entries sorted, one fixed date, modes
reduced to 0644/0755, one compression level. Wheels with compiled extensions are built
for one Python (`codexd-release.json` names it), so the artifact is too.

Standard library only.
"""

from __future__ import annotations

import json
import platform
import sys
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

SHEBANG = b"#!/usr/bin/env python3\n"
# Read by supervisor/install.py: keep the two in step.
METADATA_NAME = "codexd-release.json"
# Run as a file (`python -I -S <dir>/__main__.py`), not as a directory: a directory goes
# through runpy, a millisecond on every command. -I leaves the script's own directory
# off sys.path, so it puts it there.
MAIN_SOURCE = (
    b"import sys\n\n"
    b"sys.path.insert(0, __file__.rpartition('/')[0])\n"
    b"from commands.main import main  # noqa: E402\n\n"
    b"main()\n"
)
SOURCE_PACKAGES = ("supervisor", "workers", "commands")
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
COMPRESS_LEVEL = 9


class ArtifactError(Exception):
    """The sources or wheels cannot make an artifact; the message names what."""


@dataclass(frozen=True)
class Entry:
    data: bytes
    executable: bool = False


def python_tag() -> str:
    """The Python a build's wheels are for, as install.sh compares it: `3.11`."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def metadata(version: str) -> dict[str, str]:
    return {
        "name": "codexd",
        "version": version,
        "implementation": sys.implementation.name,
        "python": python_tag(),
        "machine": platform.machine(),
    }


def source_entries(checkout: Path) -> Iterator[tuple[str, Entry]]:
    """The packages' .py files, content only: modes, times and stray caches in the
    checkout do not change the artifact."""
    for package in SOURCE_PACKAGES:
        root = checkout / package
        if not (root / "__init__.py").is_file():
            raise ArtifactError(
                f"{root} is not a package (no __init__.py): is {checkout} a checkout?"
            )
        for source in sorted(root.rglob("*.py")):
            relative = source.relative_to(checkout)
            if "__pycache__" not in relative.parts:
                yield relative.as_posix(), Entry(source.read_bytes())


def wheel_entries(wheel: Path) -> Iterator[tuple[str, Entry]]:
    """A wheel's files as they would be installed into site-packages: the root, plus
    `<name>.data/purelib` and `platlib`; scripts, headers and data are left out."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                name = info.filename
                top, _, rest = name.partition("/")
                if top.endswith(".data"):
                    kind, _, rest = rest.partition("/")
                    if kind not in ("purelib", "platlib") or not rest:
                        continue
                    name = rest
                executable = bool((info.external_attr >> 16) & 0o111)
                yield name, Entry(archive.read(info), executable)
    except (OSError, zipfile.BadZipFile) as error:
        raise ArtifactError(f"cannot read the wheel {wheel}: {error}") from error


def collect(groups: Iterable[tuple[str, Iterable[tuple[str, Entry]]]]) -> dict[str, Entry]:
    """All entries by path; two sources of one path is an error naming both."""
    entries: dict[str, Entry] = {}
    origin: dict[str, str] = {}
    for source, items in groups:
        for name, entry in items:
            if name.startswith("/") or ".." in name.split("/"):
                raise ArtifactError(f"{source} holds the unsafe path {name!r}")
            if name in entries:
                raise ArtifactError(f"{name} comes from both {origin[name]} and {source}")
            entries[name] = entry
            origin[name] = source
    return entries


def write_artifact(out: Path, entries: dict[str, Entry]) -> None:
    """The zip, with the shebang in front so that it runs as a file."""
    with out.open("wb") as file:
        file.write(SHEBANG)
        with zipfile.ZipFile(file, "w") as archive:
            for name in sorted(entries):
                entry = entries[name]
                info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
                info.create_system = 3  # unix, so the modes below are read back
                info.external_attr = (0o100755 if entry.executable else 0o100644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, entry.data, compresslevel=COMPRESS_LEVEL)
    out.chmod(0o755)


def build_artifact(out: Path, checkout: Path, wheels: list[Path], version: str) -> None:
    groups: list[tuple[str, Iterable[tuple[str, Entry]]]] = [
        (
            "the artifact's own files",
            [
                ("__main__.py", Entry(MAIN_SOURCE)),
                (METADATA_NAME, Entry((json.dumps(metadata(version), indent=2) + "\n").encode())),
            ],
        ),
        (str(checkout), source_entries(checkout)),
    ]
    groups += [(wheel.name, wheel_entries(wheel)) for wheel in sorted(wheels)]
    write_artifact(out, collect(groups))


def read_metadata(artifact: Path) -> dict[str, str]:
    """The artifact's `codexd-release.json`."""
    try:
        with zipfile.ZipFile(artifact) as archive:
            value = json.loads(archive.read(METADATA_NAME))
    except (OSError, KeyError, zipfile.BadZipFile, ValueError) as error:
        raise ArtifactError(
            f"{artifact} is not a codexd release artifact (no readable {METADATA_NAME}: {error})"
        ) from error
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ArtifactError(f"{artifact}: {METADATA_NAME} is not an object of strings")
    return value
