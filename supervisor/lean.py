"""Value and enum semantics for the small records on the command fast path and in the
keeper.

`dataclasses` imports `inspect`, `re` and `ast`: 7 ms before a command does anything,
and a megabyte in a resident process. The records that `version`, `start` and the
keeper use are plain classes instead: each lists its fields in `__slots__` and
writes its `__init__` out, and this mixin gives them what `@dataclass(frozen=True)`
would: equality and hashing by value, a repr, and `replace`. (They are not frozen by
force; nothing assigns to one after it is made.)

`enum` costs 3.6 ms more (it imports `functools`, `collections` and `operator`), a
fifth of `version`. The outcomes on the fast path are `Choice` classes: to mypy they
are `Enum`s, checked as such; at run time a small metaclass gives each listed member
what the code and the tests use of an Enum member (identity, `name`, `value`, lookup by
value, iteration, a repr, copies that stay the same member).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Self


__all__ = ["Choice", "Value"]


class Value:
    __slots__: tuple[str, ...] = ()

    def _fields(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Value)
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"

    def replace(self, **changes: Any) -> Self:
        """A copy with `changes` made (as dataclasses.replace)."""
        unknown = set(changes) - set(self.__slots__)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {sorted(unknown)[0]!r}")
        copy = object.__new__(type(self))
        for name in self.__slots__:
            object.__setattr__(copy, name, changes.get(name, getattr(self, name)))
        return copy


class _ChoiceType(type):
    """Turns each public, non-callable attribute of a class body into a member."""

    def __new__(mcs, name: str, bases: tuple[type, ...], body: dict[str, Any]) -> _ChoiceType:
        values = {
            key: value
            for key, value in body.items()
            if not key.startswith("_") and not callable(value) and not isinstance(value, property)
        }
        cls = super().__new__(mcs, name, bases, {k: v for k, v in body.items() if k not in values})
        by_value: dict[object, Any] = {}
        for key, value in values.items():
            member: Any = object.__new__(cls)  # type: ignore[arg-type]
            object.__setattr__(member, "_name_", key)
            object.__setattr__(member, "_value_", value)
            type.__setattr__(cls, key, by_value.setdefault(value, member))
        type.__setattr__(cls, "_by_value_", by_value)
        return cls

    def __call__(cls, value: object) -> Any:
        """The member whose value is `value`, as `SomeEnum(value)`."""
        try:
            return cls._by_value_[value]  # type: ignore[attr-defined]
        except (KeyError, TypeError):
            raise ValueError(f"{value!r} is not a valid {cls.__name__}") from None

    def __iter__(cls) -> Any:
        return iter(dict.fromkeys(cls._by_value_.values()))  # type: ignore[attr-defined]

    def __len__(cls) -> int:
        return len(cls._by_value_)  # type: ignore[attr-defined]

    def __setattr__(cls, name: str, value: object) -> None:
        raise AttributeError(f"cannot reassign members of {cls.__name__}")


class _Choice(metaclass=_ChoiceType):
    __slots__ = ("_name_", "_value_")
    _name_: str
    _value_: Any

    @property
    def name(self) -> str:
        return self._name_

    @property
    def value(self) -> Any:
        return self._value_

    def __repr__(self) -> str:
        return f"<{type(self).__name__}.{self._name_}: {self._value_!r}>"

    def __str__(self) -> str:
        return f"{type(self).__name__}.{self._name_}"

    def __reduce__(self) -> tuple[Any, tuple[Any]]:
        return type(self), (self._value_,)

    def __copy__(self) -> Self:
        return self

    def __deepcopy__(self, memo: object) -> Self:
        return self


if TYPE_CHECKING:
    from enum import Enum as Choice
else:
    Choice = _Choice
