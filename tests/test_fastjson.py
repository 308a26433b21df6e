"""fastjson gives what json gives, without importing it."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from supervisor import fastjson

VALUES: list[Any] = [
    {},
    [],
    {"status": "running", "pid": 42, "ok": True, "none": None, "ratio": 0.25},
    {"nested": {"list": [1, -2, 3.5e10, "x", {"y": [False]}]}, "u": 'é ∑ \u0000 "q" \\'},
    "plain",
    12345678901234567890,
    -0.0,
]


@pytest.mark.parametrize("value", VALUES)
def test_dumps_is_json_dumps(value: Any) -> None:
    assert fastjson.dumps(value) == json.dumps(value)


@pytest.mark.parametrize(
    "value",
    [
        *VALUES,
        {"empty": {}, "none": [], "deep": {"a": [{"b": [[], {}]}, (1, 2)]}},
        [[1, [2, [3]]], {"k": "v"}],
        {"nan": float("nan"), "inf": float("-inf")},
        {"an int key": {1: "json writes it as a string"}},
    ],
)
def test_dumps_indented_is_json_dumps_with_indent_2(value: Any) -> None:
    assert fastjson.dumps_indented(value) == json.dumps(value, indent=2)


@pytest.mark.parametrize("value", VALUES)
def test_loads_reads_what_json_writes(value: Any) -> None:
    for text in (json.dumps(value), json.dumps(value, indent=2), f" \n{json.dumps(value)}\n\t"):
        assert fastjson.loads(text) == json.loads(text)


@pytest.mark.parametrize(
    "text", ["", "   ", "{", '{"a": }', "[1, 2", "nul", '{"a": 1} x', "1 2", "{'a': 1}"]
)
def test_loads_refuses_what_json_refuses(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    with pytest.raises(json.JSONDecodeError):
        fastjson.loads(text)


def test_loads_raises_recursion_error_on_deep_nesting() -> None:
    with pytest.raises(RecursionError):
        fastjson.loads("[" * 100_000 + "]" * 100_000)


def test_nan_and_infinity_read_as_json_reads_them() -> None:
    value = fastjson.loads("[NaN, Infinity, -Infinity]")
    assert value[0] != value[0] and value[1:] == [float("inf"), float("-inf")]


def test_it_imports_neither_json_nor_re() -> None:
    code = (
        "import sys; from supervisor import fastjson; "
        'fastjson.dumps(fastjson.loads(\'{"a": [1, 2.5, "x"]}\')); '
        "print(sorted(m for m in ('json', 're', 'enum') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", f"import sys; sys.path[:0] = {sys.path!r}; {code}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "[]"


def test_the_first_error_in_a_fresh_process_is_a_json_decode_error() -> None:
    """CPython's scanner reports errors by importing json.decoder, which fails from
    inside it: fastjson lets json say it instead."""
    code = (
        "from supervisor import fastjson\n"
        "try:\n    fastjson.loads('{this is not json')\n"
        "except ValueError as error:\n    print(type(error).__name__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", f"import sys; sys.path[:0] = {sys.path!r}\n{code}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "JSONDecodeError"
