"""What a release's front runs, read back from its text, and which of those parts are
missing: the one judgement of "this release is incomplete" that doctor reports and
install.sh's installer repairs. Standard library and `lean` only (the installer imports it).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from supervisor.lean import Value


class FrontParts(Value):
    """What a release's front runs, as its text says (paths relative to packages/).
    A lean Value, not a dataclass: every start and restart reads it, and `dataclasses`
    costs 8 ms to import (with `inspect`)."""

    __slots__ = ("codex", "codexd", "python")

    def __init__(self, python: str, codexd: str, codex: str | None) -> None:
        self.python = python
        self.codexd = codexd  # codexd/<release>
        self.codex = codex  # codex/<version>-<12 hex>/bin/codex; None: the reference app-server


_FRONT_HEADER = "# The managed binary, written by install.sh"
_RUN_CODEXD = re.compile(
    r"exec '(?P<python>(?:[^']|'\\'')*)' -I -S "
    r'"\$p/(?P<codexd>codexd/[A-Za-z0-9._-]+)(?:/__main__\.py)?" "\$@"'
)
_RUN_CODEX = re.compile(r'^exec "\$p/(?P<codex>codex/[A-Za-z0-9._/-]+)" "\$@"$', re.MULTILINE)


def front_parts(text: str) -> FrontParts | None:
    """The parts a front names; None when `text` is not a front install.sh wrote."""
    if _FRONT_HEADER not in text:
        return None
    run_codexd = _RUN_CODEXD.search(text)
    if run_codexd is None:
        return None
    run_codex = _RUN_CODEX.search(text)
    return FrontParts(
        python=run_codexd["python"].replace("'\\''", "'"),
        codexd=run_codexd["codexd"],
        codex=None if run_codex is None else run_codex["codex"],
    )


def missing_parts(packages: Path, front: FrontParts) -> tuple[str, ...]:
    """The paths the front runs that are not there (a directory, or an executable
    file), in the order the front names them."""
    wanted = [(packages / front.codexd, False), (Path(front.python), True)]
    if front.codex is not None:
        wanted.append((packages / front.codex, True))
    missing = []
    for path, executable in wanted:
        present = path.is_file() and os.access(path, os.X_OK) if executable else path.is_dir()
        if not present:
            missing.append(str(path))
    return tuple(missing)
