"""`record`: a dataclass that compiles fewer methods when the class is defined.

`dataclasses.dataclass` writes the source of every method it adds and compiles it with exec():
__init__, __repr__ and __eq__, plus __setattr__, __delattr__ and __hash__ when frozen. A run
defines about 130 value types at start-up, and that compiling was about 100 ms of a 300 ms healthy
run (issue 17: `python -m bench.healthy`). `record` lets dataclasses generate __init__ and, when
frozen, the __setattr__/__delattr__ guard (0.30 ms per frozen class, 0.13 ms per other class,
against 0.56 ms for @dataclass(frozen=True); 2-core CI machine, CPython 3.11). __eq__, __hash__
and __repr__, which a run calls rarely, are built from the class's fields without compiling:
attrgetter reads the compared fields in C.

Everything else is dataclasses itself: fields(), replace(), asdict(), the generated __init__
(defaults, default_factory, __post_init__) and FrozenInstanceError. Equality (same class, equal
compared fields), hashing (frozen only, over the hashed fields) and repr (the repr fields) mean
what they mean for a dataclass. Type checkers see dataclasses.dataclass itself.
"""

from __future__ import annotations

import dataclasses
import operator
import reprlib
from typing import TYPE_CHECKING, Any, Callable


def _getter(cls: type, hashed: bool = False) -> Callable[[Any], Any]:
    """The compared (or hashed) fields of an instance as one value."""
    names = [f.name for f in dataclasses.fields(cls) if (f.hash if hashed and f.hash is not None else f.compare)]
    return operator.attrgetter(*names) if names else (lambda _obj: ())


def _eq_for(cls: type) -> Callable[[Any, Any], Any]:
    key = _getter(cls)

    def __eq__(self: Any, other: Any) -> Any:
        if other.__class__ is self.__class__:
            return key(self) == key(other)
        return NotImplemented

    return __eq__


def _hash_for(cls: type) -> Callable[[Any], int]:
    key = _getter(cls, hashed=True)

    def __hash__(self: Any) -> int:
        return hash(key(self))

    return __hash__


@reprlib.recursive_repr()
def _repr(self: Any) -> str:
    shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self) if f.repr)
    return f"{type(self).__qualname__}({shown})"


def _finish(cls: type, frozen: bool) -> type:
    body = cls.__dict__
    # As dataclasses decides: a class that writes __eq__ without __hash__ gets __hash__ = None.
    explicit_hash = "__hash__" in body and not (body["__hash__"] is None and "__eq__" in body)
    if "__eq__" not in body:
        setattr(cls, "__eq__", _eq_for(cls))
    if "__repr__" not in body:
        setattr(cls, "__repr__", _repr)
    if not explicit_hash:  # frozen: hashed by value; mutable and compared by value: unhashable
        setattr(cls, "__hash__", _hash_for(cls) if frozen else None)
    return cls


if TYPE_CHECKING:
    from dataclasses import dataclass as record
else:
    def record(cls: Any = None, /, *, frozen: bool = False) -> Any:
        """@record or @record(frozen=True), as @dataclass or @dataclass(frozen=True)."""

        def wrap(cls: type) -> type:
            return _finish(dataclasses.dataclass(cls, repr=False, eq=False, frozen=frozen), frozen)

        return wrap if cls is None else wrap(cls)
