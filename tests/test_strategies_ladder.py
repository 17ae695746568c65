"""Ladder layout: levels, spacing, size decay and size shaping by inventory."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.events import Side
from strategies.ladder import LadderParams, build_ladder


def test_single_level_quotes_the_given_prices_unrounded() -> None:
    params = LadderParams(order_qty=0.25)

    bids, asks = build_ladder(99.123456, 100.987654, 0.0, 0.01, params)

    assert [(q.side, q.price, q.qty, q.level) for q in bids] == [(Side.BUY, 99.123456, 0.25, 0)]
    assert [(q.side, q.price, q.qty, q.level) for q in asks] == [(Side.SELL, 100.987654, 0.25, 0)]


def test_levels_step_outwards_by_the_spacing() -> None:
    params = LadderParams(order_qty=1.0, levels=3, spacing=0.5)

    bids, asks = build_ladder(99.0, 101.0, 0.0, 0.01, params)

    assert [q.price for q in bids] == [99.0, 98.5, 98.0]
    assert [q.price for q in asks] == [101.0, 101.5, 102.0]
    assert [q.level for q in bids] == [0, 1, 2]


def test_spacing_in_ticks_uses_the_venue_tick_size() -> None:
    params = LadderParams(order_qty=1.0, levels=2, spacing_ticks=5)

    bids, asks = build_ladder(99.0, 101.0, 0.0, 0.1, params)

    assert [q.price for q in bids] == [99.0, pytest.approx(98.5)]
    assert [q.price for q in asks] == [101.0, pytest.approx(101.5)]


def test_size_decay_shrinks_each_level() -> None:
    params = LadderParams(order_qty=2.0, levels=3, spacing=1.0, size_decay=0.5)

    bids, _ = build_ladder(99.0, 101.0, 0.0, 0.01, params)

    assert [q.qty for q in bids] == [2.0, 1.0, 0.5]


def test_shaping_when_long_shrinks_bids_and_keeps_asks_full() -> None:
    params = LadderParams(order_qty=1.0, inventory_shaping=True, max_inventory=4.0)

    bids, asks = build_ladder(99.0, 101.0, 1.0, 0.01, params)

    assert [q.qty for q in bids] == [0.75]
    assert [q.qty for q in asks] == [1.0]


def test_shaping_when_short_shrinks_asks_and_keeps_bids_full() -> None:
    params = LadderParams(order_qty=1.0, inventory_shaping=True, max_inventory=4.0)

    bids, asks = build_ladder(99.0, 101.0, -3.0, 0.01, params)

    assert [q.qty for q in bids] == [1.0]
    assert [q.qty for q in asks] == [0.25]


@pytest.mark.parametrize("inventory", [4.0, 10.0])
def test_shaping_at_or_beyond_max_inventory_drops_the_increasing_side(inventory: float) -> None:
    params = LadderParams(
        order_qty=1.0, levels=2, spacing=1.0, inventory_shaping=True, max_inventory=4.0
    )

    bids, asks = build_ladder(99.0, 101.0, inventory, 0.01, params)

    assert bids == ()
    assert len(asks) == 2


def test_missing_side_gives_no_quotes_on_it() -> None:
    bids, asks = build_ladder(None, 101.0, 0.0, 0.01, LadderParams(order_qty=1.0))

    assert bids == ()
    assert len(asks) == 1


def test_bids_at_non_positive_prices_are_dropped_keeping_level_indices() -> None:
    params = LadderParams(order_qty=1.0, levels=4, spacing=1.0)

    bids, _ = build_ladder(1.5, 3.0, 0.0, 0.01, params)

    assert [(q.price, q.level) for q in bids] == [(1.5, 0), (0.5, 1)]


@given(
    bid=st.floats(50.0, 100.0),
    width=st.floats(0.01, 10.0),
    levels=st.integers(1, 10),
    spacing=st.floats(0.0, 3.0),
    inventory=st.floats(-20.0, 20.0),
)
def test_ladders_are_ordered_from_the_touch_outwards(
    bid: float, width: float, levels: int, spacing: float, inventory: float
) -> None:
    params = LadderParams(
        order_qty=1.0,
        levels=levels,
        spacing=spacing,
        inventory_shaping=True,
        max_inventory=10.0,
    )

    bids, asks = build_ladder(bid, bid + width, inventory, 0.01, params)

    assert len(bids) <= levels and len(asks) <= levels
    assert all(a.price >= b.price for a, b in pairwise(bids))
    assert all(a.price <= b.price for a, b in pairwise(asks))
    assert all(q.qty > 0 for q in bids + asks)
    assert all(q.side is Side.BUY for q in bids) and all(q.side is Side.SELL for q in asks)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"order_qty": 0.0}, "order_qty"),
        ({"levels": 0}, "levels"),
        ({"levels": 2}, "spacing"),
        ({"spacing": 1.0, "spacing_ticks": 2.0}, "spacing_ticks"),
        ({"spacing": -1.0}, "spacing"),
        ({"size_decay": 0.0}, "size_decay"),
        ({"inventory_shaping": True}, "max_inventory"),
        ({"inventory_shaping": True, "max_inventory": 0.0}, "max_inventory"),
    ],
)
def test_params_reject_invalid_fields(kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"order_qty": 1.0} | kwargs

    with pytest.raises(ValueError, match=field):
        LadderParams(**args)  # type: ignore[arg-type]


def test_spacing_in_ticks_needs_a_valid_tick_size() -> None:
    params = LadderParams(order_qty=1.0, levels=2, spacing_ticks=1.0)

    with pytest.raises(ValueError, match="tick_size"):
        build_ladder(99.0, 101.0, 0.0, 0.0, params)
