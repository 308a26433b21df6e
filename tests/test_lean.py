"""`supervisor.lean`: the fast path's Value and Choice behave as the dataclass and the
Enum they stand in for, for everything the code does with them."""

from __future__ import annotations

import copy
import pickle
from enum import Enum

import pytest

from supervisor.lean import Choice, Value


class Colour(Choice):
    """A docstring is not a member."""

    RED = "red"
    GREEN = "green"
    CRIMSON = "red"  # an alias, as in Enum

    def describe(self) -> str:  # a method is not a member
        return f"colour {self.value}"


class Reference(Enum):
    RED = "red"
    GREEN = "green"
    CRIMSON = "red"

    def describe(self) -> str:
        return f"colour {self.value}"


class Point(Value):
    __slots__ = ("x", "y")

    def __init__(self, x: int, y: int) -> None:
        self.x = x
        self.y = y


@pytest.mark.parametrize(
    "operation",
    [
        lambda kind: kind.RED.name,
        lambda kind: kind.RED.value,
        lambda kind: kind("green").name,
        lambda kind: kind.CRIMSON is kind.RED,
        lambda kind: [member.name for member in kind],
        lambda kind: len(kind),
        lambda kind: kind.RED == "red",
        lambda kind: kind.RED == kind.GREEN,
        lambda kind: kind.RED in {kind.RED: 1},
        lambda kind: copy.copy(kind.RED) is kind.RED,
        lambda kind: copy.deepcopy([kind.RED])[0] is kind.RED,
        lambda kind: pickle.loads(pickle.dumps(kind.GREEN)) is kind.GREEN,
        lambda kind: kind.GREEN.describe(),
        lambda kind: repr(kind.RED).replace(kind.__name__, "X"),
        lambda kind: str(kind.GREEN).replace(kind.__name__, "X"),
        lambda kind: isinstance(kind.RED, kind),
    ],
)
def test_a_choice_does_what_an_enum_does(operation: object) -> None:
    assert callable(operation)
    assert operation(Colour) == operation(Reference)


def test_a_choice_refuses_what_an_enum_refuses() -> None:
    with pytest.raises(ValueError, match="'blue' is not a valid Colour"):
        Colour("blue")
    with pytest.raises(ValueError, match="is not a valid Colour"):
        Colour(["unhashable"])
    with pytest.raises(AttributeError, match="cannot reassign"):
        Colour.RED = Colour.GREEN  # type: ignore[misc, assignment]


def test_a_value_compares_hashes_and_replaces_by_value() -> None:
    assert Point(1, 2) == Point(1, 2)
    assert Point(1, 2) != Point(2, 1)
    assert len({Point(1, 2), Point(1, 2)}) == 1
    assert repr(Point(1, 2)) == "Point(x=1, y=2)"
    assert Point(1, 2).replace(y=5) == Point(1, 5)
    with pytest.raises(TypeError, match="Point has no field 'z'"):
        Point(1, 2).replace(z=3)
