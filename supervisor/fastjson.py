"""JSON for the commands remote clients run many times a day, without `import json`.

`import json` imports `re` (and through it `enum`): 7 ms on this machine's 2 cores,
half of codex's whole `version`. CPython's own C scanner and encoder, which `json`
uses under the hood, need neither: this module drives them the way `json.loads` and
`json.dumps(obj)` do, and gives the same results (the same exceptions, the same
bytes), and writes indented JSON as `json.dumps(value, indent=2)` does, for the state
files people read (the resident keeper writes its record with it).
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_WHITESPACE = " \t\n\r"


def _constant(name: str) -> float:
    return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[name]


class _Context:
    """What `_json.make_scanner` reads off a JSONDecoder."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_constant)
    memo: dict[str, str] = {}  # noqa: RUF012 - the scanner's own string cache


def _unserializable(value: object) -> object:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# typeshed types the scanner's context as a scanner ("ducktype" is its own TODO).
_scan = _json.make_scanner(_Context())  # type: ignore[arg-type]
_encode = _json.make_encoder(
    None, _unserializable, _json.encode_basestring_ascii, None, ": ", ", ", False, False, True
)


def _as_json_says(text: str) -> Any:
    """The error path: `json` itself says what is wrong (the C scanner's own error
    reporting imports `json.decoder`, and fails when that import happens inside it)."""
    import json

    return json.loads(text)


def loads(text: str) -> Any:
    """As `json.loads(text)`: ValueError (JSONDecodeError) for what is not JSON,
    RecursionError for what is nested past the interpreter's limit."""
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan(text, start)
    except (StopIteration, ValueError, SystemError):
        return _as_json_says(text)
    finally:
        _Context.memo.clear()
    if text[end:].strip(_WHITESPACE):
        return _as_json_says(text)  # "Extra data"
    return value


def dumps(value: Any) -> str:
    """As `json.dumps(value)`: one line, ASCII, `", "` and `": "` between items."""
    return "".join(_encode(value, 0))


class _OtherKeys(Exception):
    """An object with a key that is not a string: `json` writes those its own way."""


def dumps_indented(value: Any) -> str:
    """As `json.dumps(value, indent=2)`."""
    try:
        return _indented(value, "\n")
    except _OtherKeys:
        import json

        return json.dumps(value, indent=2)


def _indented(value: Any, newline: str) -> str:
    inner = newline + "  "
    if isinstance(value, dict):
        if not value:
            return "{}"
        if not all(isinstance(key, str) for key in value):
            raise _OtherKeys
        items = [f"{dumps(key)}: {_indented(item, inner)}" for key, item in value.items()]
    elif isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        items = [_indented(item, inner) for item in value]
    else:
        return dumps(value)
    opening, closing = ("{", "}") if isinstance(value, dict) else ("[", "]")
    return opening + inner + ("," + inner).join(items) + newline + closing
