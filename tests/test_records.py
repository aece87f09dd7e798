"""`record` behaves as `dataclass` does, for every feature edgecheck's value types use: each case
builds the same class both ways and compares."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, List, Optional, Tuple

import pytest

from edgecheck.records import record


def both(frozen: bool) -> List[Tuple[str, Callable[[type], type]]]:
    return [("dataclass", dataclass(frozen=frozen)), ("record", record(frozen=frozen))]


def point(decorate: Callable[[type], type]) -> Any:
    @decorate
    class Point:
        x: int
        y: Optional[str] = None
        tags: Tuple[str, ...] = field(default_factory=tuple)
        note: str = field(default="", compare=False, repr=False)

    return Point


@pytest.mark.parametrize("frozen", [True, False])
def test_init_equality_repr_and_helpers_match_dataclass(frozen: bool) -> None:
    seen = []
    for _, decorate in both(frozen):
        P = point(decorate)
        a, b = P(1, "a", ("t",), note="x"), P(1, "a", ("t",), note="other")
        seen.append((
            a == b, a == P(2), a != b, a == (1, "a", ("t",)), repr(a).split("(", 1)[1],
            asdict(a), dataclasses.astuple(a), [f.name for f in dataclasses.fields(a)],
            replace(a, x=5).x, replace(a, x=5).tags is a.tags, P.__match_args__, P(3).tags,
            copy.deepcopy(a) == a,
        ))
    assert seen[0] == seen[1]
    assert seen[0][4] == "x=1, y='a', tags=('t',))"


def test_frozen_hash_and_assignment_match_dataclass() -> None:
    for name, decorate in both(True):
        P = point(decorate)
        a = P(1, "a", note="n")
        assert hash(a) == hash(P(1, "a", note="other")), name  # compare=False fields are not hashed
        assert {a, P(1, "a")} == {a}, name
        for action in (lambda: setattr(a, "x", 2), lambda: setattr(a, "extra", 1), lambda: delattr(a, "x")):
            with pytest.raises(dataclasses.FrozenInstanceError):
                action()
        assert a.x == 1 and not hasattr(a, "extra")
        assert copy.copy(a) == a and copy.deepcopy(a) == a, name  # both set __dict__ without __setattr__


def test_mutable_records_are_unhashable_and_assignable_as_dataclasses_are() -> None:
    for name, decorate in both(False):
        @decorate
        class Bag:
            items: List[str] = field(default_factory=list)

        a = point(decorate)(1)
        a.x = 2
        assert a.x == 2 and Bag().items == [] and Bag().items is not Bag().items, name
        with pytest.raises(TypeError):
            hash(a)


def test_post_init_inheritance_and_explicit_methods_are_kept() -> None:
    @record(frozen=True)
    class Base:
        a: int
        derived: int = field(init=False, default=0)

        def __post_init__(self) -> None:
            object.__setattr__(self, "derived", self.a * 2)

    @record(frozen=True)
    class Child(Base):
        b: str = "b"

    @record
    class Keyed:
        key: str
        payload: int = 0

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Keyed) and other.key == self.key

        def __hash__(self) -> int:
            return hash(self.key)

        def __repr__(self) -> str:
            return f"<{self.key}>"

    child = Child(3)
    assert (child.derived, child.b) == (6, "b")
    assert child == Child(3) and child != Base(3) and Base(3) != child
    assert repr(child) == "test_post_init_inheritance_and_explicit_methods_are_kept.<locals>.Child(a=3, derived=6, b='b')"
    assert Keyed("k", 1) == Keyed("k", 2) and hash(Keyed("k")) == hash("k") and repr(Keyed("k")) == "<k>"


def test_a_record_compiles_only_init_and_the_frozen_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled: List[str] = []
    real = getattr(dataclasses, "_create_fn", None)
    if real is None:  # CPython 3.13 generates a class's methods in one exec(); CI runs 3.11
        pytest.skip("this CPython's dataclasses has no _create_fn")

    def counting(name: str, *args: Any, **kwargs: Any) -> Any:
        compiled.append(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(dataclasses, "_create_fn", counting)
    point(record(frozen=True))
    assert sorted(compiled) == ["__delattr__", "__init__", "__setattr__"]
    compiled.clear()
    point(record)
    assert compiled == ["__init__"]
    compiled.clear()
    point(dataclass(frozen=True))
    assert sorted(compiled) == ["__delattr__", "__eq__", "__hash__", "__init__", "__repr__", "__setattr__"]
