"""Tests for bot.orders: snapping, diffing desired quotes against live orders, order events."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.errors import ConfigError
from bot.events import (
    CancelOrder,
    Command,
    Liquidity,
    OrderAccepted,
    OrderCanceled,
    OrderCancelRejected,
    OrderFilled,
    OrderRejected,
    PlaceOrder,
    Quote,
    QuoteSet,
    Side,
)
from bot.orders import (
    ManagedOrder,
    OrderManager,
    OrderManagerConfig,
    OrderState,
    snap_price,
    snap_qty,
)

BUY = Side.BUY
SELL = Side.SELL
NAN = float("nan")

CONFIG = OrderManagerConfig(
    symbol="BTCUSDT",
    tick_size=0.1,
    lot_size=0.001,
    min_qty=0.002,
    min_notional=0.5,
    requote_ticks=2,
    max_order_age_ns=0,
    post_only=True,
    client_id_prefix="t-",
)

TICKS = [0.01, 0.1, 0.25, 0.5, 1.0, 5.0, 0.00025, 0.0001]


def quotes(bids: list[tuple[float, float]], asks: list[tuple[float, float]]) -> QuoteSet:
    """Build a quote set whose levels count from 0 on each side."""
    return QuoteSet(
        tuple(Quote(BUY, p, q, i) for i, (p, q) in enumerate(bids)),
        tuple(Quote(SELL, p, q, i) for i, (p, q) in enumerate(asks)),
        reservation_price=100.0,
        half_spread=0.5,
    )


def fill(client_order_id: str, side: Side, qty: float, remaining: float) -> OrderFilled:
    return OrderFilled(10, client_order_id, side, 100.0, qty, remaining, 0.0, Liquidity.MAKER)


def live(manager: OrderManager, client_order_id: str) -> ManagedOrder:
    order = manager.order(client_order_id)
    assert order is not None, f"{client_order_id} is not live"
    return order


def places(commands: list[Command]) -> list[PlaceOrder]:
    return [c for c in commands if isinstance(c, PlaceOrder)]


def cancels(commands: list[Command]) -> list[CancelOrder]:
    return [c for c in commands if isinstance(c, CancelOrder)]


@pytest.fixture
def manager() -> OrderManager:
    """A manager with one acknowledged bid (t-1 at 99.5) and ask (t-2 at 100.5), 0.01 each."""
    manager = OrderManager(CONFIG)
    manager.diff(quotes([(99.5, 0.01)], [(100.5, 0.01)]), 99.9, 100.1, ts_ns=1)
    manager.on_event(OrderAccepted(2, "t-1"))
    manager.on_event(OrderAccepted(2, "t-2"))
    return manager


# --------------------------------------------------------------------------------------------
# Snapping
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "tick", "side", "expected"),
    [
        (100.30000000000001, 0.1, BUY, 100.3),
        (100.29999999999998, 0.1, SELL, 100.3),
        (100.29999999999998, 0.1, BUY, 100.3),
        (100.30000000000001, 0.1, SELL, 100.3),
        (100.35, 0.1, BUY, 100.3),
        (100.35, 0.1, SELL, 100.4),
        (64123.456, 0.01, BUY, 64123.45),
        (64123.456, 0.01, SELL, 64123.46),
        (0.1 + 0.2, 0.1, BUY, 0.3),
        (1.2346, 0.00025, BUY, 1.2345),
        (1.2346, 0.00025, SELL, 1.23475),
        (101.7, 0.5, BUY, 101.5),
        (101.2, 5.0, SELL, 105.0),
    ],
)
def test_snap_price_rounds_bids_down_asks_up_and_ignores_float_noise(
    price: float, tick: float, side: Side, expected: float
) -> None:
    assert snap_price(price, tick, side) == expected


def test_snapped_price_equals_the_float_parsed_from_the_venue_string() -> None:
    assert snap_price(64123.456, 0.01, BUY) == float("64123.45")
    assert snap_price(0.07 * 3, 0.01, SELL) == float("0.21")


@pytest.mark.parametrize(
    ("qty", "lot", "expected"),
    [
        (0.30000000000000004, 0.1, 0.3),
        (0.29999999999999993, 0.1, 0.3),
        (0.0999, 0.1, 0.0),
        (1.23456789, 0.001, 1.234),
        (7.0, 2.0, 6.0),
    ],
)
def test_snap_qty_rounds_down_to_the_lot(qty: float, lot: float, expected: float) -> None:
    assert snap_qty(qty, lot) == expected


def assert_clean_multiple(value: float, tick: float) -> None:
    """Assert ``value`` is n * tick and the float nearest to that decimal number."""
    n = round(value / tick)
    assert value == float(Decimal(n) * Decimal(repr(tick)))


@given(st.floats(min_value=1e-3, max_value=1e5), st.sampled_from(TICKS))
def test_snap_price_brackets_the_price_with_clean_multiples(price: float, tick: float) -> None:
    # Within 1e-9 ticks a price counts as on the grid, plus the float error of price / tick.
    tolerance = tick * 1e-6

    bid = snap_price(price, tick, BUY)
    ask = snap_price(price, tick, SELL)

    assert bid <= price + tolerance
    assert price < bid + tick + tolerance
    assert ask >= price - tolerance
    assert price > ask - tick - tolerance
    assert_clean_multiple(bid, tick)
    assert_clean_multiple(ask, tick)


@given(st.floats(min_value=0.0, max_value=1e4), st.sampled_from([0.001, 0.01, 0.1, 1.0, 0.5]))
def test_snap_qty_never_rounds_up_beyond_noise(qty: float, lot: float) -> None:
    snapped = snap_qty(qty, lot)

    assert snapped <= qty + lot * 1e-6
    assert qty < snapped + lot + lot * 1e-6
    assert_clean_multiple(snapped, lot)


@given(st.integers(min_value=1, max_value=10**7), st.sampled_from(TICKS))
def test_snap_price_keeps_prices_already_on_the_grid(n: int, tick: float) -> None:
    price = float(Decimal(n) * Decimal(repr(tick)))

    assert snap_price(price, tick, BUY) == price
    assert snap_price(price, tick, SELL) == price


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tick_size", 0.0),
        ("tick_size", NAN),
        ("lot_size", -0.1),
        ("min_qty", -1.0),
        ("min_notional", float("inf")),
        ("requote_ticks", -1.0),
        ("max_order_age_ns", -1),
    ],
)
def test_config_rejects_out_of_range_values_naming_the_field(field: str, value: float) -> None:
    changes: dict[str, Any] = {field: value}

    with pytest.raises(ConfigError) as info:
        replace(CONFIG, **changes)

    assert info.value.field == field


# --------------------------------------------------------------------------------------------
# Diff
# --------------------------------------------------------------------------------------------


def test_initial_diff_places_snapped_quotes_as_pending_new() -> None:
    manager = OrderManager(CONFIG)

    commands = manager.diff(
        quotes([(99.97, 0.01234), (99.45, 0.02)], [(100.52, 0.015)]), 99.9, 100.1, ts_ns=7
    )

    assert commands == [
        PlaceOrder(7, "t-1", "BTCUSDT", BUY, 99.9, 0.012, True, 0),
        PlaceOrder(7, "t-2", "BTCUSDT", BUY, 99.4, 0.02, True, 1),
        PlaceOrder(7, "t-3", "BTCUSDT", SELL, 100.6, 0.015, True, 0),
    ]
    assert [o.state for o in manager.orders.values()] == [OrderState.PENDING_NEW] * 3
    assert manager.order("t-1") == ManagedOrder(
        "t-1", BUY, 99.9, 0.012, 0.0, OrderState.PENDING_NEW, 0, 7
    )
    assert manager.placed == 3
    assert manager.working_count == 0


def test_unchanged_desired_quotes_send_nothing(manager: OrderManager) -> None:
    assert manager.diff(quotes([(99.5, 0.01)], [(100.5, 0.01)]), 99.9, 100.1, ts_ns=3) == []


def test_unchanged_desired_quotes_send_nothing_while_still_pending_new() -> None:
    manager = OrderManager(CONFIG)
    desired = quotes([(99.5, 0.01)], [(100.5, 0.01)])
    manager.diff(desired, 99.9, 100.1, ts_ns=1)

    assert manager.diff(desired, 99.9, 100.1, ts_ns=2) == []


def test_price_move_within_requote_ticks_sends_nothing(manager: OrderManager) -> None:
    commands = manager.diff(quotes([(99.7, 0.01)], [(100.3, 0.01)]), 99.9, 100.1, ts_ns=3)

    assert commands == []


def test_price_move_beyond_requote_ticks_cancels_then_places(manager: OrderManager) -> None:
    commands = manager.diff(quotes([(99.8, 0.01)], [(100.5, 0.01)]), 99.9, 100.1, ts_ns=3)

    assert commands == [
        CancelOrder(3, "t-1", "BTCUSDT"),
        PlaceOrder(3, "t-3", "BTCUSDT", BUY, 99.8, 0.01, True, 0),
    ]
    assert live(manager, "t-1").state is OrderState.PENDING_CANCEL
    assert manager.cancels_sent == 1


def test_zero_requote_ticks_replaces_on_any_price_change() -> None:
    strict = OrderManager(replace(CONFIG, requote_ticks=0))
    desired = quotes([(99.5, 0.01)], [])
    strict.diff(desired, 99.9, 100.1, ts_ns=1)

    assert strict.diff(desired, 99.9, 100.1, ts_ns=2) == []
    assert len(cancels(strict.diff(quotes([(99.4, 0.01)], []), 99.9, 100.1, ts_ns=3))) == 1


def test_quantity_change_replaces_the_order(manager: OrderManager) -> None:
    commands = manager.diff(quotes([(99.5, 0.02)], [(100.5, 0.01)]), 99.9, 100.1, ts_ns=3)

    assert [type(c) for c in commands] == [CancelOrder, PlaceOrder]
    assert places(commands)[0].qty == 0.02


def test_partially_filled_order_is_kept_for_its_original_or_remaining_qty(
    manager: OrderManager,
) -> None:
    manager.on_event(fill("t-1", BUY, 0.004, 0.006))

    original = manager.diff(quotes([(99.5, 0.01)], [(100.5, 0.01)]), 99.9, 100.1, ts_ns=3)
    remaining = manager.diff(quotes([(99.5, 0.006)], [(100.5, 0.01)]), 99.9, 100.1, ts_ns=4)

    assert original == []
    assert remaining == []


def test_order_older_than_max_age_is_replaced() -> None:
    manager = OrderManager(replace(CONFIG, max_order_age_ns=1_000))
    desired = quotes([(99.5, 0.01)], [])
    manager.diff(desired, 99.9, 100.1, ts_ns=0)

    assert manager.diff(desired, 99.9, 100.1, ts_ns=1_000) == []
    assert manager.diff(desired, 99.9, 100.1, ts_ns=1_001) == [
        CancelOrder(1_001, "t-1", "BTCUSDT"),
        PlaceOrder(1_001, "t-2", "BTCUSDT", BUY, 99.5, 0.01, True, 0),
    ]


def test_fewer_levels_cancel_the_extra_orders() -> None:
    manager = OrderManager(CONFIG)
    manager.diff(quotes([(99.5, 0.01), (99.0, 0.01), (98.5, 0.01)], []), 99.9, 100.1, ts_ns=1)

    commands = manager.diff(quotes([(99.5, 0.01)], []), 99.9, 100.1, ts_ns=2)

    assert commands == [CancelOrder(2, "t-2", "BTCUSDT"), CancelOrder(2, "t-3", "BTCUSDT")]


def test_empty_quote_set_cancels_everything(manager: OrderManager) -> None:
    commands = manager.diff(QuoteSet.empty(), 99.9, 100.1, ts_ns=3)

    assert commands == [CancelOrder(3, "t-1", "BTCUSDT"), CancelOrder(3, "t-2", "BTCUSDT")]


def test_cancels_come_before_places_on_both_sides(manager: OrderManager) -> None:
    commands = manager.diff(quotes([(98.0, 0.01)], [(102.0, 0.01)]), 99.9, 100.1, ts_ns=3)

    assert [type(c) for c in commands] == [CancelOrder, CancelOrder, PlaceOrder, PlaceOrder]
    assert [c.client_order_id for c in commands] == ["t-1", "t-2", "t-3", "t-4"]


@pytest.mark.parametrize(
    ("price", "qty", "min_notional"),
    [
        (99.5, 0.0009, 0.0),  # below one lot
        (99.5, 0.0019, 0.0),  # below min_qty once snapped
        (99.5, 0.05, 5.0),  # notional 4.975 below min_notional
        (0.05, 0.01, 0.0),  # price below one tick: a bid snaps to 0
        (NAN, 0.01, 0.0),
        (99.5, NAN, 0.0),
        (float("inf"), 0.01, 0.0),
        (-5.0, 0.01, 0.0),
        (99.5, -0.01, 0.0),
    ],
)
def test_quotes_that_cannot_be_placed_are_dropped(
    price: float, qty: float, min_notional: float
) -> None:
    manager = OrderManager(replace(CONFIG, min_notional=min_notional))

    assert manager.diff(quotes([(price, qty)], []), 99.9, 100.1, ts_ns=1) == []


def test_minimum_notional_met_in_decimal_is_not_lost_to_float_noise() -> None:
    manager = OrderManager(replace(CONFIG, min_notional=2.1, min_qty=0.0, lot_size=1.0))
    assert 0.7 * 3.0 < 2.1  # the float product falls just short of the decimal one

    commands = manager.diff(quotes([(0.7, 3.0)], []), NAN, NAN, ts_ns=1)

    assert places(commands) == [PlaceOrder(1, "t-1", "BTCUSDT", BUY, 0.7, 3.0, True, 0)]


def test_post_only_clamps_quotes_one_tick_inside_the_opposite_touch() -> None:
    manager = OrderManager(CONFIG)

    commands = manager.diff(quotes([(100.57, 0.1)], [(99.03, 0.1)]), 99.5, 100.2, ts_ns=1)

    assert [(c.side, c.price) for c in places(commands)] == [(BUY, 100.1), (SELL, 99.6)]


def test_post_only_clamp_is_skipped_when_the_opposite_touch_is_unknown() -> None:
    manager = OrderManager(CONFIG)

    commands = manager.diff(quotes([(100.57, 0.1)], [(99.03, 0.1)]), NAN, NAN, ts_ns=1)

    assert [(c.side, c.price) for c in places(commands)] == [(BUY, 100.5), (SELL, 99.1)]


def test_without_post_only_quotes_are_not_clamped_and_not_flagged() -> None:
    manager = OrderManager(replace(CONFIG, post_only=False))

    commands = manager.diff(quotes([(100.57, 0.1)], []), 99.5, 100.2, ts_ns=1)

    assert places(commands) == [PlaceOrder(1, "t-1", "BTCUSDT", BUY, 100.5, 0.1, False, 0)]


@given(
    # At least 100 ticks from zero, so no desired price (mid +- 60 ticks) is dropped as <= 0.
    best_bid_ticks=st.integers(min_value=100, max_value=100_000),
    spread_ticks=st.integers(min_value=1, max_value=50),
    tick=st.sampled_from(TICKS),
    bid_offsets=st.lists(st.floats(min_value=-60, max_value=60), max_size=4),
    ask_offsets=st.lists(st.floats(min_value=-60, max_value=60), max_size=4),
)
def test_post_only_quotes_never_cross_the_touch(
    best_bid_ticks: int,
    spread_ticks: int,
    tick: float,
    bid_offsets: list[float],
    ask_offsets: list[float],
) -> None:
    config = OrderManagerConfig("X", tick_size=tick, lot_size=1.0, post_only=True)
    manager = OrderManager(config)
    best_bid = float(Decimal(best_bid_ticks) * Decimal(repr(tick)))
    best_ask = float(Decimal(best_bid_ticks + spread_ticks) * Decimal(repr(tick)))
    mid = (best_bid + best_ask) / 2
    desired = quotes(
        [(mid + offset * tick, 1.0) for offset in bid_offsets],
        [(mid + offset * tick, 1.0) for offset in ask_offsets],
    )

    commands = manager.diff(desired, best_bid, best_ask, ts_ns=1)

    for command in places(commands):
        assert command.post_only
        assert_clean_multiple(command.price, tick)
        if command.side is BUY:
            assert command.price < best_ask
        else:
            assert command.price > best_bid
    assert len(places(commands)) == len(bid_offsets) + len(ask_offsets)


# --------------------------------------------------------------------------------------------
# In-flight accounting and cancels
# --------------------------------------------------------------------------------------------


def test_live_qty_counts_pending_new_working_and_pending_cancel_orders() -> None:
    manager = OrderManager(CONFIG)
    manager.diff(quotes([(99.5, 0.01), (99.0, 0.02)], [(100.5, 0.03)]), 99.9, 100.1, ts_ns=1)
    manager.on_event(OrderAccepted(2, "t-1"))

    assert manager.live_qty(BUY) == pytest.approx(0.03)
    assert manager.live_qty(SELL) == pytest.approx(0.03)

    manager.cancel_all(ts_ns=3)

    assert manager.live_qty(BUY) == pytest.approx(0.03)

    manager.on_event(fill("t-2", BUY, 0.005, 0.015))
    manager.on_event(OrderCanceled(4, "t-1"))

    assert manager.live_qty(BUY) == pytest.approx(0.015)
    assert manager.live_qtys() == (manager.live_qty(BUY), manager.live_qty(SELL))
    assert manager.live_qtys() == pytest.approx((0.015, 0.03))


def test_pending_cancel_order_is_not_cancelled_twice(manager: OrderManager) -> None:
    first = manager.diff(QuoteSet.empty(), 99.9, 100.1, ts_ns=3)
    second = manager.diff(QuoteSet.empty(), 99.9, 100.1, ts_ns=4)

    assert len(first) == 2
    assert second == []
    assert manager.cancel_all(ts_ns=5) == []
    assert manager.cancels_sent == 2


def test_pending_cancel_order_does_not_hold_its_level(manager: OrderManager) -> None:
    manager.diff(quotes([(98.0, 0.01)], [(100.5, 0.01)]), 99.9, 100.1, ts_ns=3)

    # t-1 is pending cancel and t-3 replaced it at level 0; back to 99.5 replaces t-3, not t-1.
    commands = manager.diff(quotes([(99.5, 0.01)], [(100.5, 0.01)]), 99.9, 100.1, ts_ns=4)

    assert commands == [
        CancelOrder(4, "t-3", "BTCUSDT"),
        PlaceOrder(4, "t-4", "BTCUSDT", BUY, 99.5, 0.01, True, 0),
    ]


def test_cancel_all_cancels_every_live_order_once(manager: OrderManager) -> None:
    manager.diff(quotes([(99.5, 0.01), (99.0, 0.01)], [(100.5, 0.01)]), 99.9, 100.1, ts_ns=3)

    commands = manager.cancel_all(ts_ns=4)

    assert commands == [
        CancelOrder(4, "t-1", "BTCUSDT"),
        CancelOrder(4, "t-2", "BTCUSDT"),
        CancelOrder(4, "t-3", "BTCUSDT"),
    ]
    assert all(o.state is OrderState.PENDING_CANCEL for o in manager.orders.values())
    assert manager.cancel_all(ts_ns=5) == []


def test_client_order_ids_are_deterministic_per_instance() -> None:
    desired = quotes([(99.5, 0.01)], [(100.5, 0.01)])
    moved = quotes([(99.0, 0.01)], [(101.0, 0.01)])
    runs = []
    for _ in range(2):
        manager = OrderManager(CONFIG)
        runs.append(
            manager.diff(desired, 99.9, 100.1, ts_ns=1) + manager.diff(moved, 99.9, 100.1, ts_ns=2)
        )

    assert runs[0] == runs[1]
    assert [c.client_order_id for c in places(runs[0])] == ["t-1", "t-2", "t-3", "t-4"]


# --------------------------------------------------------------------------------------------
# Order events
# --------------------------------------------------------------------------------------------


def test_accept_makes_pending_new_order_working() -> None:
    manager = OrderManager(CONFIG)
    manager.diff(quotes([(99.5, 0.01)], []), 99.9, 100.1, ts_ns=1)

    touched = manager.on_event(OrderAccepted(2, "t-1", "venue-9"))

    assert touched is manager.order("t-1")
    assert touched is not None
    assert touched.state is OrderState.WORKING
    assert manager.working_count == 1


def test_accept_after_cancel_keeps_pending_cancel() -> None:
    manager = OrderManager(CONFIG)
    manager.diff(quotes([(99.5, 0.01)], []), 99.9, 100.1, ts_ns=1)
    manager.cancel_all(ts_ns=2)

    manager.on_event(OrderAccepted(3, "t-1"))

    assert live(manager, "t-1").state is OrderState.PENDING_CANCEL


def test_reject_removes_the_order() -> None:
    manager = OrderManager(CONFIG)
    manager.diff(quotes([(99.5, 0.01)], []), 99.9, 100.1, ts_ns=1)

    touched = manager.on_event(OrderRejected(2, "t-1", "post-only would cross"))

    assert touched is not None
    assert touched.client_order_id == "t-1"
    assert manager.order("t-1") is None
    assert manager.live_qty(BUY) == 0.0


def test_partial_fill_keeps_the_order_and_full_fill_removes_it(manager: OrderManager) -> None:
    partial = manager.on_event(fill("t-1", BUY, 0.004, 0.006))

    assert partial is manager.order("t-1")
    assert partial is not None
    assert partial.filled_qty == pytest.approx(0.004)
    assert partial.remaining == pytest.approx(0.006)
    assert partial.state is OrderState.WORKING

    final = manager.on_event(fill("t-1", BUY, 0.006, 0.0))

    assert final is partial
    assert manager.order("t-1") is None
    assert manager.live_qty(BUY) == 0.0


def test_fills_that_add_up_with_float_noise_still_end_the_order() -> None:
    manager = OrderManager(replace(CONFIG, lot_size=0.1, min_qty=0.0, min_notional=0.0))
    manager.diff(quotes([(99.5, 0.3)], []), 99.9, 100.1, ts_ns=1)

    manager.on_event(fill("t-1", BUY, 0.1, 0.2))
    manager.on_event(fill("t-1", BUY, 0.1, 0.1))
    assert manager.order("t-1") is not None
    manager.on_event(fill("t-1", BUY, 0.1 - 1e-12, 1e-12))

    assert manager.order("t-1") is None


def test_fill_reported_complete_by_the_venue_ends_the_order(manager: OrderManager) -> None:
    manager.on_event(fill("t-1", BUY, 0.004, 0.0))

    assert manager.order("t-1") is None


def test_fill_before_accept_makes_the_order_working() -> None:
    manager = OrderManager(CONFIG)
    manager.diff(quotes([(99.5, 0.01)], []), 99.9, 100.1, ts_ns=1)

    manager.on_event(fill("t-1", BUY, 0.004, 0.006))

    assert live(manager, "t-1").state is OrderState.WORKING


def test_fill_of_pending_cancel_order_keeps_it_pending_cancel(manager: OrderManager) -> None:
    manager.cancel_all(ts_ns=3)

    manager.on_event(fill("t-1", BUY, 0.004, 0.006))

    assert live(manager, "t-1").state is OrderState.PENDING_CANCEL
    assert manager.live_qty(BUY) == pytest.approx(0.006)


def test_cancel_confirmation_removes_the_order(manager: OrderManager) -> None:
    manager.cancel_all(ts_ns=3)

    touched = manager.on_event(OrderCanceled(4, "t-2"))

    assert touched is not None
    assert manager.order("t-2") is None
    assert manager.live_qty(SELL) == 0.0
    assert list(manager.orders) == ["t-1"]


def test_cancel_reject_restores_the_order_to_working(manager: OrderManager) -> None:
    manager.cancel_all(ts_ns=3)

    touched = manager.on_event(OrderCancelRejected(4, "t-1", "order already filled"))

    assert touched is manager.order("t-1")
    assert touched is not None
    assert touched.state is OrderState.WORKING
    # Working again, so a later diff may cancel it again.
    assert manager.cancel_all(ts_ns=5) == [CancelOrder(5, "t-1", "BTCUSDT")]


def test_unknown_order_ids_are_ignored(manager: OrderManager) -> None:
    before = dict(manager.orders)

    assert manager.on_event(OrderAccepted(3, "nope")) is None
    assert manager.on_event(fill("nope", BUY, 1.0, 0.0)) is None
    assert manager.on_event(OrderCanceled(3, "nope")) is None
    assert dict(manager.orders) == before


def test_orders_view_is_read_only(manager: OrderManager) -> None:
    with pytest.raises(TypeError):
        manager.orders["x"] = manager.orders["t-1"]  # type: ignore[index]


# ------------------------------------------------------------------ one-division snapping

SNAP_STEPS = [0.1, 0.01, 0.5, 0.25, 0.001, 1e-8, 5.0, 1.0, 0.05, 1e-4, 1e-12, 2.5e-5, 0.2,
              0.3, 0.7, 1 / 3, 0.123456789, 1e-13, 1e6, 0.015]


@settings(max_examples=3000, deadline=None)
@given(step=st.sampled_from(SNAP_STEPS),
       units=st.one_of(st.integers(-10**9, 10**9), st.integers(-2**60, 2**60)),
       nudge=st.sampled_from([0.0, 0.0, 1e-12, -1e-12, 1e-10, -1e-10, 0.3, 0.5, -0.5, 0.999,
                              2e-9, -2e-9]),
       scale=st.sampled_from([1.0, 1.0, 1.0000000000000002, 0.9999999999999998]))
def test_one_division_snapping_is_exactly_the_rounding_form(
    step: float, units: int, nudge: float, scale: float
) -> None:
    # Values on, just beside and between grid points, at every magnitude: the fast form must
    # give the very same double as round(n * step, decimals), or fall back to it.
    from bot.orders import _ceil_on, _ceil_to, _decimals, _floor_on, _floor_to, _grid

    value = (units + nudge) * step * scale
    grid, decimals = _grid(step), _decimals(step)
    assert _floor_on(value, grid) == _floor_to(value, step, decimals)
    assert _ceil_on(value, grid) == _ceil_to(value, step, decimals)


def test_one_division_snapping_refuses_what_rounding_refuses() -> None:
    from bot.orders import _ceil_on, _floor_on, _grid

    with pytest.raises(ValueError):
        _floor_on(float("nan"), _grid(0.1))
    with pytest.raises(OverflowError):
        _ceil_on(float("inf"), _grid(0.1))
    assert _grid(1 / 3)[4] == 0  # no decimal m / 10**d is 1/3: always rounds
    assert _grid(0.1)[2:] == (1, 10.0, 2**50)
