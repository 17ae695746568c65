"""``bot.frozen.fast_init`` and ``maker``: the same dataclass, built faster.

Every event class gets it, so each is built from its fields here and must hold exactly what it
was given, keep its defaults, stay frozen, and compare, hash, copy and pickle like before.
"""

from __future__ import annotations

import dataclasses
import inspect
import pickle
from typing import Any

import pytest

import bot.events
from bot.frozen import fast_init, maker
from bot.native import cbook
from risk.gate import RiskContext


def event_classes() -> list[type[Any]]:
    classes = [obj for obj in vars(bot.events).values()
               if isinstance(obj, type) and dataclasses.is_dataclass(obj)
               and obj.__module__ == "bot.events"]
    return [*classes, RiskContext]


def sample(index: int, f: dataclasses.Field[Any]) -> Any:
    """A distinct value per field (types are not checked at run time)."""
    return f"value-{index}-{f.name}"


def test_every_event_class_has_the_fast_init() -> None:
    classes = event_classes()
    assert len(classes) >= 20
    for cls in classes:
        # The generated code writes slots through their descriptors (_set0, _set1, ...).
        assert "_set0" in cls.__init__.__code__.co_names, cls.__name__


@pytest.mark.parametrize("cls", event_classes(), ids=lambda cls: cls.__name__)
def test_built_like_the_dataclass(cls: type[Any]) -> None:
    fields = dataclasses.fields(cls)
    values = {f.name: sample(i, f) for i, f in enumerate(fields)}
    by_position = cls(*values.values())
    by_name = cls(**values)
    for obj in (by_position, by_name):
        assert {f.name: getattr(obj, f.name) for f in fields} == values
    assert by_position == by_name and hash(by_position) == hash(by_name)
    assert pickle.loads(pickle.dumps(by_name)) == by_name
    assert dataclasses.replace(by_name) == by_name
    first = fields[0].name
    changed = dataclasses.replace(by_name, **{first: "other"})
    assert getattr(changed, first) == "other" and getattr(by_name, first) == values[first]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(by_name, first, "x")
    required = [f.name for f in fields if f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING]
    minimal = cls(**{name: values[name] for name in required})
    for f in fields:
        if f.default is not dataclasses.MISSING:
            assert getattr(minimal, f.name) == f.default
        elif f.default_factory is not dataclasses.MISSING:
            assert getattr(minimal, f.name) == f.default_factory()
    with pytest.raises(TypeError):
        cls(*values.values(), "one too many")
    if required:
        with pytest.raises(TypeError):
            cls()


def test_defaults_factories_and_post_init() -> None:
    seen: list[int] = []

    @fast_init
    @dataclasses.dataclass(frozen=True, slots=True)
    class Thing:
        x: int
        y: float = 2.0
        z: list[int] = dataclasses.field(default_factory=list)

        def __post_init__(self) -> None:
            seen.append(self.x)
            if self.x < 0:
                raise ValueError("x must be >= 0")

    a, b = Thing(1), Thing(2)
    assert (a.y, a.z) == (2.0, [])
    assert a.z is not b.z  # a new list per instance, as the factory promises
    assert Thing(3, 4.0, [5]) == Thing(x=3, z=[5], y=4.0)
    assert seen == [1, 2, 3, 3]
    with pytest.raises(ValueError, match="x must be"):
        Thing(-1)
    assert (str(inspect.signature(Thing))
            == "(x: 'int', y: 'float' = 2.0, z: 'list[int]' = <factory>) -> None")


def test_refuses_what_it_cannot_build() -> None:
    @dataclasses.dataclass(frozen=True)
    class NoSlots:
        x: int

    @dataclasses.dataclass(slots=True)
    class NotFrozen:
        x: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class Hidden:
        x: int
        y: int = dataclasses.field(default=0, init=False)

    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class KeywordOnly:
        x: int

    for cls in (NoSlots, NotFrozen, Hidden, KeywordOnly, int):
        with pytest.raises(TypeError, match="fast_init"):
            fast_init(cls)


@pytest.mark.parametrize("cls", event_classes(), ids=lambda cls: cls.__name__)
def test_maker_builds_what_the_class_builds(cls: type[Any]) -> None:
    make = maker(cls)
    fields = dataclasses.fields(cls)
    values = [sample(i, f) for i, f in enumerate(fields)]
    if hasattr(cls, "__post_init__"):
        assert make is cls  # its __init__ does more than fill the slots
    elif cbook is not None:
        assert make is not cls
    made, built = make(*values), cls(*values)
    assert type(made) is cls
    assert made == built and hash(made) == hash(built) and repr(made) == repr(built)
    assert [getattr(made, f.name) for f in fields] == values
    assert pickle.loads(pickle.dumps(made)) == built
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(made, fields[0].name, "other")


@pytest.mark.skipif(cbook is None, reason="C extension not built")
def test_compiled_maker_takes_every_field_and_only_them() -> None:
    make = maker(RiskContext)
    with pytest.raises(TypeError, match="takes 10 arguments"):
        make(1, 2.0)
    with pytest.raises(TypeError, match="keyword"):
        make(*range(9), live_sell_qty=1.0)


def test_maker_refuses_other_classes() -> None:
    @dataclasses.dataclass
    class Plain:
        x: int

    with pytest.raises(TypeError, match="not a frozen, slotted dataclass"):
        maker(Plain)
