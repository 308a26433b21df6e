"""The real codex the benchmark compares codexd with: `tests/real_codex.py`'s, the one
module that fetches it (with install.sh's own code) into
`${CODEXD_TEST_CACHE:-~/.cache/codexd-test}/codex/<version>/`.

Standard library only.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.real_codex import CODEX_VERSION, RealCodexUnavailable, real_codex_binary

__all__ = ["CODEX_VERSION", "RealCodexUnavailable", "ensure_real_codex"]


def ensure_real_codex() -> Path:
    """The real codex binary, fetched into the cache when missing."""
    return real_codex_binary()


if __name__ == "__main__":
    print(ensure_real_codex())
