"""Table tests for the pure part of bench/cases.py: medians, ratios, whether a target is
met, the rows of a case's results, and the declared cases themselves."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

# The bench's modules import each other by bare name, as `python3 bench/run.py` runs them.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from cases import (
    FULL,
    MEMORY_CASES,
    NO_TARGET,
    QUICK,
    TIMED_CASES,
    CaseResult,
    MemoryCase,
    Sizes,
    Target,
    TimedCase,
    case_rows,
    median,
    minimum,
    ratio,
)

NAN = math.nan


def same(value: float | bool | None, expected: float | bool | None) -> bool:
    """Equal, NaN equal to NaN."""
    if isinstance(value, float) and isinstance(expected, float) and math.isnan(expected):
        return math.isnan(value)
    return value == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], NAN),  # no sample: no median, rather than an error mid-report
        ([5.0], 5.0),
        ([3.0, 1.0, 2.0], 2.0),
        ([4.0, 1.0, 3.0, 2.0], 2.5),
        ([0.1, 0.1, 9.0], 0.1),  # one slow trial does not move it
    ],
)
def test_median(values: list[float], expected: float) -> None:
    assert same(median(values), expected)


@pytest.mark.parametrize(
    ("values", "expected"),
    [([], NAN), ([5.0], 5.0), ([3.0, 1.0, 2.0], 1.0)],
)
def test_minimum(values: list[float], expected: float) -> None:
    assert same(minimum(values), expected)


@pytest.mark.parametrize(
    ("numerator", "denominator", "expected"),
    [
        (2.0, 4.0, 0.5),
        (6.0, 2.0, 3.0),
        (0.0, 2.0, 0.0),
        (1.0, 0.0, NAN),  # a zero reference has no ratio
        (NAN, 2.0, NAN),
    ],
)
def test_ratio(numerator: float, denominator: float, expected: float) -> None:
    assert same(ratio(numerator, denominator), expected)


RATIO_1_5 = Target("<= 1.5x", ratio=1.5)
AT_MOST_HALF = Target("<= 0.5 s", at_most=0.5)
BOTH = Target("both", ratio=1.0, at_most=0.5)


@pytest.mark.parametrize(
    ("target", "codexd", "codex", "expected"),
    [
        (RATIO_1_5, 1.0, 1.0, True),
        (RATIO_1_5, 15.0, 10.0, True),  # exactly at the target
        (RATIO_1_5, 16.0, 10.0, False),
        (RATIO_1_5, 0.1, 100.0, True),
        (RATIO_1_5, 1.0, 0.0, False),  # no ratio: not met
        (RATIO_1_5, NAN, 1.0, False),  # no samples: not met
        (AT_MOST_HALF, 0.4, 0.0, True),  # the reference plays no part
        (AT_MOST_HALF, 0.5, 9.0, True),
        (AT_MOST_HALF, 0.6, 9.0, False),
        (AT_MOST_HALF, NAN, 9.0, False),
        (BOTH, 0.4, 0.1, True),  # the absolute bound decides when both are given
        (BOTH, 0.6, 9.0, False),
        (NO_TARGET, 1.0, 1.0, None),
        (NO_TARGET, 100.0, 1.0, None),
    ],
)
def test_target_met(target: Target, codexd: float, codex: float, expected: bool | None) -> None:
    assert target.met(codexd, codex) is expected


@pytest.mark.parametrize(
    ("target", "judged"),
    [(RATIO_1_5, True), (AT_MOST_HALF, True), (BOTH, True), (NO_TARGET, False)],
)
def test_target_judged(target: Target, judged: bool) -> None:
    assert target.judged is judged


def result(samples: dict[str, list[float]], information: tuple[str, ...] = ()) -> CaseResult:
    return CaseResult(
        "version",
        "version (running)",
        "s",
        RATIO_1_5,
        samples,
        {key: f"label {key}" for key in samples},
        "release",
        reference="codex",
        information=information,
    )


def test_case_rows_one_per_subject_but_the_reference_bold_first() -> None:
    rows = case_rows(
        result(
            {
                "venv": [3.0, 4.0, 5.0],
                "floor": [0.5, 1.0],
                "release": [1.0, 2.0, 9.0],
                "codex": [2.0, 1.0, 3.0],
            },
            information=("floor",),
        )
    )
    assert [row["subject"] for row in rows] == ["release", "venv", "floor"]
    assert [row["primary"] for row in rows] == [True, False, False]
    assert [row["information"] for row in rows] == [False, False, True]


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        (
            "release",
            {
                "codexd_median": 2.0,
                "codex_median": 2.0,
                "ratio": 1.0,
                "codexd_min": 1.0,
                "codex_min": 1.0,
                "ratio_of_minimums": 1.0,
                "target": "<= 1.5x",
                "target_ratio": 1.5,
                "target_absolute": None,
                "met": True,
                "n": 3,
                "codex_n": 3,
                "label": "label release",
                "codex_label": "label codex",
                "unit": "s",
            },
        ),
        (
            "venv",
            {
                "codexd_median": 4.0,
                "ratio": 2.0,
                "codexd_min": 3.0,
                "ratio_of_minimums": 3.0,
                "met": False,
                "n": 3,
            },
        ),
        (  # shown beside the bold row without a target
            "floor",
            {
                "codexd_median": 0.75,
                "ratio": 0.375,
                "ratio_of_minimums": 0.5,
                "target": NO_TARGET.text,
                "target_ratio": None,
                "target_absolute": None,
                "met": None,
                "n": 2,
            },
        ),
    ],
)
def test_case_rows_values(subject: str, expected: dict[str, object]) -> None:
    rows = case_rows(
        result(
            {
                "release": [1.0, 2.0, 9.0],
                "venv": [3.0, 4.0, 5.0],
                "floor": [0.5, 1.0],
                "codex": [2.0, 1.0, 3.0],
            },
            information=("floor",),
        )
    )
    row = next(row for row in rows if row["subject"] == subject)
    assert {key: row[key] for key in expected} == expected


def test_case_rows_an_empty_reference_gives_no_ratio_and_an_unmet_target() -> None:
    (row,) = case_rows(result({"release": [1.0], "codex": []}))
    assert math.isnan(row["codex_median"]) and math.isnan(row["ratio"])
    assert math.isnan(row["codex_min"]) and math.isnan(row["ratio_of_minimums"])
    assert row["met"] is False


@pytest.mark.parametrize("sizes", [FULL, QUICK], ids=["full", "quick"])
def test_every_timed_case_has_trials(sizes: Sizes) -> None:
    assert {case.key for case in TIMED_CASES} <= set(sizes.trials)


@pytest.mark.parametrize("case", TIMED_CASES, ids=[case.key for case in TIMED_CASES])
def test_timed_cases_are_judged_on_codexd_against_codex(case: TimedCase) -> None:
    measured = case.subjects[:-1]
    assert case.subjects[-1] == "codex"
    assert case.bold in measured and case.bold not in case.information
    assert set(case.information) <= set(measured)
    assert len(set(case.subjects)) == len(case.subjects)


@pytest.mark.parametrize("case", MEMORY_CASES, ids=[case.key for case in MEMORY_CASES])
def test_memory_cases_name_measured_roles(case: MemoryCase) -> None:
    assert set(case.roles) <= {"keeper", "app_server", "updater"}
    assert set(case.codex_roles) <= {"app_server", "updater"}
