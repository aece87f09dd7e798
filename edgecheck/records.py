"""`record`: a dataclass that compiles only its __init__ when the class is defined.

`dataclasses.dataclass` writes the source of every method it adds and compiles it with exec():
__init__, __repr__ and __eq__, plus __setattr__, __delattr__ and __hash__ when frozen. A run
defines about 130 value types at start-up, and that compiling was about 100 ms of a 300 ms healthy
run (issue 17: `python -m bench.healthy`; per class 0.95 ms frozen, 0.27 ms with __init__ alone,
measured on the 2-core CI machine). A run calls __init__ all the time and the others rarely, so
`record` lets dataclasses generate __init__ alone; the other methods are plain functions shared by
every class, which read the class's fields when called.

Everything else is dataclasses itself: fields(), replace(), asdict() and the generated __init__
(defaults, default_factory, __post_init__) are unchanged, as are equality (same class, equal
compared fields), hashing (frozen only, over the compared fields), repr (the repr fields) and
FrozenInstanceError. One difference: a frozen record's fields are set through __setattr__ once,
by __init__, rather than with object.__setattr__; a second assignment raises as before.
Type checkers see dataclasses.dataclass itself.
"""

from __future__ import annotations

import dataclasses
import operator
import reprlib
from typing import TYPE_CHECKING, Any, Callable


def _key(cls: type, hashed: bool = False) -> Callable[[Any], Any]:
    """The compared (or hashed) fields of an instance as one value, read in C by attrgetter."""
    names = [f.name for f in dataclasses.fields(cls)
             if (f.compare if f.hash is None or not hashed else f.hash)]
    if not names:
        return lambda _obj: ()
    return operator.attrgetter(*names)


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is self.__class__:
        key = self.__class__.__record_key__
        return key(self) == key(other)
    return NotImplemented


def _hash(self: Any) -> int:
    return hash(self.__class__.__record_hash__(self))


@reprlib.recursive_repr()
def _repr(self: Any) -> str:
    shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self) if f.repr)
    return f"{type(self).__qualname__}({shown})"


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    if name in self.__dict__ or name not in self.__dataclass_fields__:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
    object.__setattr__(self, name, value)


def _frozen_delattr(self: Any, name: str) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")


def _finish(cls: type, frozen: bool) -> type:
    body = cls.__dict__
    explicit_hash = "__hash__" in body and not (body["__hash__"] is None and "__eq__" in body)
    cls.__record_key__ = _key(cls)  # type: ignore[attr-defined]
    for name, function in (("__eq__", _eq), ("__repr__", _repr)):
        if name not in body:
            setattr(cls, name, function)
    if frozen:
        if "__setattr__" in body or "__delattr__" in body:
            raise TypeError(f"frozen record {cls.__name__} cannot define __setattr__ or __delattr__")
        cls.__setattr__ = _frozen_setattr  # type: ignore[assignment]
        cls.__delattr__ = _frozen_delattr  # type: ignore[assignment]
        if not explicit_hash:
            cls.__record_hash__ = _key(cls, hashed=True)  # type: ignore[attr-defined]
            cls.__hash__ = _hash  # type: ignore[assignment]
    elif not explicit_hash:
        cls.__hash__ = None  # type: ignore[assignment]  # mutable and compared by value, as dataclasses does
    return cls


if TYPE_CHECKING:
    from dataclasses import dataclass as record
else:
    def record(cls: Any = None, /, *, frozen: bool = False) -> Any:
        """@record or @record(frozen=True), as @dataclass or @dataclass(frozen=True)."""

        def wrap(cls: type) -> type:
            return _finish(dataclasses.dataclass(cls, repr=False, eq=False), frozen)

        return wrap if cls is None else wrap(cls)
