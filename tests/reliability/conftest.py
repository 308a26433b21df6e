"""The reliability suite's knobs: bounded by default, full with `--full` (when this
directory is on the command line) or `CODEXD_FULL_TESTS=1` (anywhere, e.g.
`CODEXD_FULL_TESTS=1 tests/run`), and a seeded random source whose seed is printed.
"""

from __future__ import annotations

import os
import random

import pytest

FULL_ENV = "CODEXD_FULL_TESTS"
SEED_ENV = "CODEXD_TEST_SEED"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--full",
        action="store_true",
        default=False,
        help=f"run the reliability suite at full size (same as {FULL_ENV}=1)",
    )


def is_full(config: pytest.Config) -> bool:
    return bool(config.getoption("--full", default=False)) or os.environ.get(FULL_ENV) == "1"


@pytest.fixture
def full(request: pytest.FixtureRequest) -> bool:
    """True for the full run; tests scale their iteration counts with it."""
    return is_full(request.config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if is_full(config):
        return
    skip = pytest.mark.skip(reason=f"long: run with --full or {FULL_ENV}=1")
    for item in items:
        if "long" in item.keywords and "reliability" in item.nodeid:
            item.add_marker(skip)


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """A seeded random source. The seed is printed (pytest shows it with the failure);
    rerun with CODEXD_TEST_SEED=<seed> to replay."""
    seed = int(os.environ.get(SEED_ENV) or random.SystemRandom().randrange(2**32))
    print(f"{request.node.nodeid}: {SEED_ENV}={seed}")
    request.node.user_properties.append(("seed", seed))
    return random.Random(seed)
