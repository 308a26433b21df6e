"""The layout the README describes: imports run one way, commands -> workers ->
supervisor, so `supervisor/` is the logic and `workers/` only process entry points."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parent.parent
# Each package may import only the packages after it.
LAYERS = ("commands", "workers", "supervisor")


def imported_packages(source: Path) -> set[str]:
    """The top-level names `source` imports, wherever the import statement is."""
    found = set()
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("layer", LAYERS)
def test_imports_run_one_way(layer: str) -> None:
    above = set(LAYERS[: LAYERS.index(layer)])
    wrong = {
        f"{source.relative_to(CHECKOUT)} imports {', '.join(sorted(imported & above))}"
        for source in (CHECKOUT / layer).glob("*.py")
        if (imported := imported_packages(source)) & above
    }
    assert not wrong, sorted(wrong)


def test_the_layers_are_found() -> None:
    # The check above means something only if it reads real modules.
    assert "supervisor" in imported_packages(CHECKOUT / "workers" / "keeper.py")
    assert "workers" not in imported_packages(CHECKOUT / "supervisor" / "lifecycle.py")
