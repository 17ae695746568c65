"""Tests for the pre-trade risk gate (``risk.gate``)."""

from __future__ import annotations

import ast
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.events import (
    NS_PER_SECOND,
    CancelOrder,
    Command,
    DenyReason,
    HaltReason,
    PlaceOrder,
    Quote,
    QuoteSet,
    RiskDenied,
    RiskState,
    Side,
)
from risk import RiskContext, RiskGate, RiskLimits

T0 = 1_700_000_000 * NS_PER_SECOND


def make_ctx(
    *,
    ts_ns: int = T0,
    mid: float = 100.0,
    best_bid: float = 99.95,
    best_ask: float = 100.05,
    tick_size: float = 0.01,
    book_valid: bool = True,
    last_book_ts_ns: int | None = None,
    position: float = 0.0,
    live_buy_qty: float = 0.0,
    live_sell_qty: float = 0.0,
) -> RiskContext:
    return RiskContext(
        ts_ns=ts_ns,
        mid=mid,
        best_bid=best_bid,
        best_ask=best_ask,
        tick_size=tick_size,
        book_valid=book_valid,
        last_book_ts_ns=ts_ns if last_book_ts_ns is None else last_book_ts_ns,
        position=position,
        live_buy_qty=live_buy_qty,
        live_sell_qty=live_sell_qty,
    )


def quote_set(
    bids: Sequence[tuple[float, float]] = (),
    asks: Sequence[tuple[float, float]] = (),
) -> QuoteSet:
    return QuoteSet(
        bids=tuple(Quote(Side.BUY, p, q, i) for i, (p, q) in enumerate(bids)),
        asks=tuple(Quote(Side.SELL, p, q, i) for i, (p, q) in enumerate(asks)),
        reservation_price=100.0,
        half_spread=0.5,
    )


def place(side: Side, qty: float, price: float = 100.0, cid: str = "c1") -> PlaceOrder:
    return PlaceOrder(T0, cid, "BTCUSDT", side, price, qty)


def cancel(cid: str = "old") -> CancelOrder:
    return CancelOrder(T0, cid, "BTCUSDT")


def reasons(denials: Sequence[RiskDenied]) -> list[DenyReason]:
    return [d.reason for d in denials]


# --------------------------------------------------------------------------------------------
# Limits
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_inventory", 0.0),
        ("max_inventory", -1.0),
        ("max_inventory", math.inf),
        ("max_inventory", math.nan),
        ("min_half_spread_ticks", -1.0),
        ("min_half_spread_ticks", math.nan),
        ("min_half_spread_bps", math.inf),
        ("max_drawdown", 0.0),
        ("max_drawdown", math.nan),
        ("max_loss", -1.0),
        ("max_order_qty", 0.0),
        ("max_order_notional", math.nan),
        ("price_band_bps", 0.0),
        ("max_book_age_ns", -1),
        ("max_orders_per_s", 0.0),
        ("max_orders_per_s", 2.5),
        ("max_orders_per_s", math.nan),
    ],
)
def test_limits_when_field_out_of_range_then_value_error_names_field(
    field: str, value: float
) -> None:
    kwargs: dict[str, float] = {"max_inventory": 1.0, field: value}

    with pytest.raises(ValueError, match=f"^{field}:"):
        RiskLimits(**kwargs)  # type: ignore[arg-type]


def test_limits_when_spread_floor_reaches_price_band_then_value_error_names_floor() -> None:
    with pytest.raises(ValueError, match=r"^min_half_spread_bps:"):
        RiskLimits(max_inventory=1.0, min_half_spread_bps=50.0, price_band_bps=50.0)


def test_limits_when_only_inventory_given_then_every_other_limit_is_disabled() -> None:
    limits = RiskLimits(max_inventory=1.0)

    assert limits.max_drawdown == math.inf
    assert limits.max_orders_per_s == math.inf
    assert limits.max_book_age_ns == 0
    assert limits.enforce_touch is True


# --------------------------------------------------------------------------------------------
# Stage 1: check
# --------------------------------------------------------------------------------------------


def test_check_when_all_within_limits_then_approves_quotes_unchanged_without_denials() -> None:
    gate = RiskGate(RiskLimits(max_inventory=10.0, min_half_spread_ticks=1.0))
    desired = quote_set(bids=[(99.9, 1.0), (99.8, 1.0)], asks=[(100.1, 1.0), (100.2, 1.0)])

    decision = gate.check(desired, make_ctx())

    assert decision.approved == desired
    assert decision.state is RiskState.ACTIVE
    assert decision.denials == ()
    assert decision.changes == ()
    assert decision.cancel_all is False


def test_check_when_book_invalid_then_approves_nothing_and_denies_each_quote() -> None:
    gate = RiskGate(RiskLimits(max_inventory=10.0))
    desired = quote_set(bids=[(99.9, 1.0)], asks=[(100.1, 1.0)])

    decision = gate.check(desired, make_ctx(book_valid=False))

    assert decision.approved.bids == () and decision.approved.asks == ()
    assert decision.approved.reservation_price == desired.reservation_price
    assert reasons(decision.denials) == [DenyReason.INVALID_BOOK, DenyReason.INVALID_BOOK]


def test_check_when_book_older_than_max_age_then_approves_nothing_as_stale_book() -> None:
    gate = RiskGate(RiskLimits(max_inventory=10.0, max_book_age_ns=NS_PER_SECOND))
    desired = quote_set(bids=[(99.9, 1.0)])

    at_limit = gate.check(desired, make_ctx(last_book_ts_ns=T0 - NS_PER_SECOND))
    stale = gate.check(desired, make_ctx(last_book_ts_ns=T0 - NS_PER_SECOND - 1))

    assert at_limit.approved.bids == desired.bids
    assert stale.approved.bids == ()
    assert reasons(stale.denials) == [DenyReason.STALE_BOOK]
    assert str(NS_PER_SECOND + 1) in stale.denials[0].detail


def test_check_when_max_book_age_zero_then_old_book_is_not_stale() -> None:
    gate = RiskGate(RiskLimits(max_inventory=10.0))
    desired = quote_set(bids=[(99.9, 1.0)])

    decision = gate.check(desired, make_ctx(last_book_ts_ns=0))

    assert decision.approved.bids == desired.bids


@pytest.mark.parametrize(
    ("price", "qty"),
    [(math.nan, 1.0), (math.inf, 1.0), (-1.0, 1.0), (99.9, 0.0), (99.9, -1.0), (99.9, math.nan)],
)
def test_check_when_quote_price_or_qty_invalid_then_drops_only_that_quote(
    price: float, qty: float
) -> None:
    gate = RiskGate(RiskLimits(max_inventory=10.0))
    desired = quote_set(bids=[(price, qty), (99.8, 1.0)])

    decision = gate.check(desired, make_ctx())

    assert [q.price for q in decision.approved.bids] == [99.8]
    assert reasons(decision.denials) == [DenyReason.INVALID_QUOTE]


@pytest.mark.parametrize("field", ["mid", "best_bid", "best_ask", "tick_size", "position"])
def test_check_when_context_not_finite_then_drops_every_quote_as_invalid_quote(
    field: str,
) -> None:
    gate = RiskGate(RiskLimits(max_inventory=10.0))
    desired = quote_set(bids=[(99.9, 1.0)], asks=[(100.1, 1.0)])

    decision = gate.check(desired, make_ctx(**{field: math.nan}))  # type: ignore[arg-type]

    assert decision.approved.bids == () and decision.approved.asks == ()
    assert reasons(decision.denials) == [DenyReason.INVALID_QUOTE] * 2
    assert f"{field}=nan" in decision.denials[0].detail


def test_check_when_sell_quote_in_bid_ladder_then_drops_it_as_invalid_quote() -> None:
    gate = RiskGate(RiskLimits(max_inventory=10.0))
    desired = QuoteSet((Quote(Side.SELL, 99.9, 1.0),), (), 100.0, 0.5)

    decision = gate.check(desired, make_ctx())

    assert decision.approved.bids == ()
    assert reasons(decision.denials) == [DenyReason.INVALID_QUOTE]


def test_check_when_long_reaches_cap_then_reducing_keeps_only_asks_and_reports_once() -> None:
    gate = RiskGate(RiskLimits(max_inventory=1.0))
    desired = quote_set(bids=[(99.9, 0.5), (99.8, 0.5)], asks=[(100.1, 0.5)])

    first = gate.check(desired, make_ctx(position=1.0))
    second = gate.check(desired, make_ctx(position=1.2))

    assert first.state is RiskState.REDUCING
    assert [(c.old, c.new) for c in first.changes] == [(RiskState.ACTIVE, RiskState.REDUCING)]
    assert "asks only" in first.changes[0].reason
    assert first.approved.bids == ()
    assert first.approved.asks == desired.asks
    assert reasons(first.denials) == [DenyReason.INVENTORY_CAP] * 2
    assert second.state is RiskState.REDUCING
    assert second.changes == ()


def test_check_when_position_back_under_cap_then_returns_to_active_quoting_both_sides() -> None:
    gate = RiskGate(RiskLimits(max_inventory=1.0))
    desired = quote_set(bids=[(99.9, 0.1)], asks=[(100.1, 0.1)])
    gate.check(desired, make_ctx(position=-1.0))

    decision = gate.check(desired, make_ctx(position=-0.9))

    assert decision.state is RiskState.ACTIVE
    assert [(c.old, c.new) for c in decision.changes] == [(RiskState.REDUCING, RiskState.ACTIVE)]
    assert decision.approved.bids == desired.bids
    assert decision.approved.asks == desired.asks


def test_check_when_short_beyond_cap_then_reducing_keeps_only_bids() -> None:
    gate = RiskGate(RiskLimits(max_inventory=1.0))
    desired = quote_set(bids=[(99.9, 0.5)], asks=[(100.1, 0.5)])

    decision = gate.check(desired, make_ctx(position=-1.5))

    assert decision.state is RiskState.REDUCING
    assert decision.approved.bids == desired.bids
    assert decision.approved.asks == ()


def test_check_when_reducing_side_would_flip_beyond_cap_then_trims_it() -> None:
    gate = RiskGate(RiskLimits(max_inventory=1.0))
    desired = quote_set(asks=[(100.1, 2.0), (100.2, 2.0), (100.3, 2.0)])

    decision = gate.check(desired, make_ctx(position=1.5))

    # Selling 2.5 takes the position from +1.5 to -1.0: exactly the cap on the other side.
    assert [q.qty for q in decision.approved.asks] == [2.0, 0.5]
    assert -1.5 + sum(q.qty for q in decision.approved.asks) <= 1.0
    assert reasons(decision.denials) == [DenyReason.INVENTORY_CAP] * 2


def test_check_when_bids_exceed_room_then_drops_outer_levels_and_trims_last_kept() -> None:
    gate = RiskGate(RiskLimits(max_inventory=1.0))
    desired = quote_set(bids=[(99.9, 0.25), (99.8, 0.25), (99.7, 0.25), (99.6, 0.25)])

    decision = gate.check(desired, make_ctx(position=0.4))

    bids = decision.approved.bids
    assert [q.price for q in bids] == [99.9, 99.8, 99.7]
    assert [q.level for q in bids] == [0, 1, 2]
    assert bids[2].qty == pytest.approx(0.1)
    assert 0.4 + sum(q.qty for q in bids) <= 1.0
    assert [(d.price, d.qty) for d in decision.denials] == [(99.7, 0.25), (99.6, 0.25)]
    assert reasons(decision.denials) == [DenyReason.INVENTORY_CAP] * 2
    assert decision.state is RiskState.ACTIVE


def test_check_when_asks_exceed_room_while_short_then_trims_asks_symmetrically() -> None:
    gate = RiskGate(RiskLimits(max_inventory=1.0))
    desired = quote_set(bids=[(99.9, 1.0)], asks=[(100.1, 0.5), (100.2, 0.5)])

    decision = gate.check(desired, make_ctx(position=-0.75))

    assert [q.qty for q in decision.approved.asks] == [0.25]
    assert decision.approved.bids == desired.bids


def test_check_when_quote_inside_spread_floor_then_moves_price_to_larger_of_ticks_and_bps() -> None:
    # 10 ticks of 0.01 = 0.10 beats 5 bps of 100 = 0.05.
    limits = RiskLimits(max_inventory=10.0, min_half_spread_ticks=10.0, min_half_spread_bps=5.0)
    gate = RiskGate(limits)
    desired = quote_set(bids=[(99.99, 1.0), (99.5, 1.0)], asks=[(100.01, 1.0)])

    decision = gate.check(desired, make_ctx())

    assert [q.price for q in decision.approved.bids] == [100.0 - 0.1, 99.5]
    assert [q.price for q in decision.approved.asks] == [100.0 + 0.1]
    assert reasons(decision.denials) == [DenyReason.SPREAD_FLOOR] * 2
    assert [d.price for d in decision.denials] == [99.99, 100.01]


def test_check_when_bps_floor_larger_than_ticks_then_bps_floor_applies() -> None:
    limits = RiskLimits(max_inventory=10.0, min_half_spread_ticks=1.0, min_half_spread_bps=20.0)
    gate = RiskGate(limits)

    decision = gate.check(quote_set(bids=[(99.9, 1.0)]), make_ctx())

    assert decision.approved.bids[0].price == 100.0 - 100.0 * 20.0 / 1e4


def test_check_when_spread_floor_disabled_then_skewed_bid_above_mid_is_kept() -> None:
    gate = RiskGate(RiskLimits(max_inventory=10.0))
    desired = quote_set(bids=[(100.02, 1.0)])

    decision = gate.check(desired, make_ctx(position=-5.0))

    assert decision.approved.bids == desired.bids


def test_check_when_quotes_cross_touch_then_pulls_them_one_tick_off_the_opposite_touch() -> None:
    gate = RiskGate(RiskLimits(max_inventory=10.0))
    desired = quote_set(bids=[(100.05, 1.0), (100.2, 1.0)], asks=[(99.9, 1.0)])

    decision = gate.check(desired, make_ctx())

    assert [q.price for q in decision.approved.bids] == [100.05 - 0.01, 100.05 - 0.01]
    assert [q.price for q in decision.approved.asks] == [99.95 + 0.01]
    assert reasons(decision.denials) == [DenyReason.CROSSES_TOUCH] * 3


def test_check_when_enforce_touch_off_then_crossing_quote_passes() -> None:
    gate = RiskGate(RiskLimits(max_inventory=10.0, enforce_touch=False))
    desired = quote_set(bids=[(100.1, 1.0)])

    decision = gate.check(desired, make_ctx())

    assert decision.approved.bids == desired.bids


def test_check_when_quote_outside_price_band_then_drops_it() -> None:
    gate = RiskGate(RiskLimits(max_inventory=10.0, price_band_bps=50.0))
    desired = quote_set(bids=[(99.6, 1.0), (99.0, 1.0)], asks=[(101.0, 1.0)])

    decision = gate.check(desired, make_ctx())

    assert [q.price for q in decision.approved.bids] == [99.6]
    assert decision.approved.asks == ()
    assert reasons(decision.denials) == [DenyReason.PRICE_BAND] * 2


def test_check_when_quote_larger_than_max_order_qty_then_trims_qty() -> None:
    gate = RiskGate(RiskLimits(max_inventory=10.0, max_order_qty=2.0))

    decision = gate.check(quote_set(bids=[(99.9, 5.0)]), make_ctx())

    assert decision.approved.bids == (Quote(Side.BUY, 99.9, 2.0, 0),)
    assert reasons(decision.denials) == [DenyReason.MAX_ORDER_SIZE]
    assert decision.denials[0].qty == 5.0


def test_check_when_quote_notional_above_limit_then_trims_qty_to_fit() -> None:
    gate = RiskGate(RiskLimits(max_inventory=10.0, max_order_notional=250.0))

    decision = gate.check(quote_set(asks=[(100.1, 3.0)]), make_ctx())

    ask = decision.approved.asks[0]
    assert ask.qty == pytest.approx(250.0 / 100.1)
    assert ask.price * ask.qty <= 250.0
    assert reasons(decision.denials) == [DenyReason.MAX_NOTIONAL]


def test_check_when_halted_then_approves_nothing_asks_cancel_all_without_denial_spam() -> None:
    gate = RiskGate(RiskLimits(max_inventory=10.0))
    gate.halt(T0, "operator")
    desired = quote_set(bids=[(99.9, 1.0)], asks=[(100.1, 1.0)])

    decision = gate.check(desired, make_ctx())

    assert decision.state is RiskState.HALTED
    assert decision.approved.bids == () and decision.approved.asks == ()
    assert decision.approved.reservation_price == 100.0
    assert decision.approved.half_spread == 0.5
    assert decision.cancel_all is True
    assert decision.denials == ()


# --------------------------------------------------------------------------------------------
# Stage 2: admit
# --------------------------------------------------------------------------------------------


def test_admit_when_halted_then_cancels_pass_and_places_are_denied() -> None:
    gate = RiskGate(RiskLimits(max_inventory=10.0))
    gate.halt(T0, "operator")
    commands: list[Command] = [cancel("a"), place(Side.BUY, 1.0), cancel("b")]

    admitted, denials = gate.admit(commands, make_ctx())

    assert admitted == [cancel("a"), cancel("b")]
    assert reasons(denials) == [DenyReason.HALTED]


def test_admit_when_buy_would_break_cap_counting_live_orders_then_denies_it() -> None:
    gate = RiskGate(RiskLimits(max_inventory=1.0))
    # live_buy_qty covers orders in flight, working and pending cancel alike.
    ctx = make_ctx(position=0.25, live_buy_qty=0.5)

    admitted, denials = gate.admit([place(Side.BUY, 0.5, cid="big")], ctx)
    admitted_small, _ = gate.admit([place(Side.BUY, 0.25, cid="small")], ctx)

    assert admitted == []
    assert reasons(denials) == [DenyReason.INVENTORY_CAP]
    assert "big" in denials[0].detail
    assert [c.client_order_id for c in admitted_small] == ["small"]


def test_admit_when_replacing_an_order_near_cap_then_replacement_waits_for_cancel_ack() -> None:
    gate = RiskGate(RiskLimits(max_inventory=1.0))
    # The order being cancelled is still live (0.5) until the venue confirms the cancel.
    ctx = make_ctx(position=0.5, live_buy_qty=0.5)
    commands: list[Command] = [cancel("old"), place(Side.BUY, 0.5, cid="new")]

    admitted, denials = gate.admit(commands, ctx)
    after_ack, _ = gate.admit([place(Side.BUY, 0.5, cid="new")], make_ctx(position=0.5))

    assert admitted == [cancel("old")]
    assert reasons(denials) == [DenyReason.INVENTORY_CAP]
    assert [c.client_order_id for c in after_ack] == ["new"]


def test_admit_when_batch_holds_several_buys_then_counts_those_already_admitted() -> None:
    gate = RiskGate(RiskLimits(max_inventory=1.0))
    commands: list[Command] = [
        place(Side.BUY, 0.5, cid="b1"),
        place(Side.BUY, 0.5, cid="b2"),
        place(Side.BUY, 0.25, cid="b3"),
    ]

    admitted, denials = gate.admit(commands, make_ctx(position=0.25))

    assert [c.client_order_id for c in admitted] == ["b1", "b3"]
    assert reasons(denials) == [DenyReason.INVENTORY_CAP]


def test_admit_when_sells_would_flip_long_beyond_short_cap_then_denies_them() -> None:
    gate = RiskGate(RiskLimits(max_inventory=1.0))
    ctx = make_ctx(position=0.5, live_sell_qty=0.5)

    admitted, denials = gate.admit([place(Side.SELL, 1.25), place(Side.SELL, 1.0)], ctx)

    assert [c.qty for c in admitted] == [1.0]  # type: ignore[union-attr]
    assert reasons(denials) == [DenyReason.INVENTORY_CAP]


def test_admit_when_position_unknown_then_denies_places_and_passes_cancels() -> None:
    gate = RiskGate(RiskLimits(max_inventory=1.0))

    admitted, denials = gate.admit([cancel(), place(Side.BUY, 0.1)], make_ctx(position=math.nan))

    assert admitted == [cancel()]
    assert reasons(denials) == [DenyReason.INVENTORY_CAP]


def test_admit_when_place_qty_not_positive_then_denies_it_as_invalid_quote() -> None:
    gate = RiskGate(RiskLimits(max_inventory=1.0))

    admitted, denials = gate.admit([place(Side.BUY, -0.5)], make_ctx())

    assert admitted == []
    assert reasons(denials) == [DenyReason.INVALID_QUOTE]


def test_admit_when_rate_budget_spent_then_denies_until_window_slides() -> None:
    gate = RiskGate(RiskLimits(max_inventory=100.0, max_orders_per_s=2.0))
    burst: list[Command] = [place(Side.BUY, 1.0, cid=f"o{i}") for i in range(3)]

    at_0, denied_0 = gate.admit(burst, make_ctx(ts_ns=T0))
    at_half, denied_half = gate.admit(burst[:1], make_ctx(ts_ns=T0 + NS_PER_SECOND // 2))
    at_1s, denied_1s = gate.admit(burst, make_ctx(ts_ns=T0 + NS_PER_SECOND))
    cancels, _ = gate.admit([cancel()], make_ctx(ts_ns=T0 + NS_PER_SECOND))

    assert len(at_0) == 2 and reasons(denied_0) == [DenyReason.ORDER_RATE]
    assert at_half == [] and reasons(denied_half) == [DenyReason.ORDER_RATE]
    assert len(at_1s) == 2 and reasons(denied_1s) == [DenyReason.ORDER_RATE]
    assert cancels == [cancel()]


def test_admit_when_orders_arrive_steadily_then_no_one_second_window_exceeds_the_rate() -> None:
    gate = RiskGate(RiskLimits(max_inventory=1e9, max_orders_per_s=5.0))
    admitted_at: list[int] = []
    step = NS_PER_SECOND // 20

    for i in range(200):  # 10 simulated seconds, 20 attempts per second
        ts = T0 + i * step
        admitted, _ = gate.admit([place(Side.BUY, 1.0, cid=f"o{i}")], make_ctx(ts_ns=ts))
        admitted_at.extend(ts for _ in admitted)

    assert len(admitted_at) == 50
    for start in admitted_at:
        in_window = [t for t in admitted_at if start <= t < start + NS_PER_SECOND]
        assert len(in_window) <= 5


def test_admit_when_place_denied_by_cap_then_it_does_not_consume_rate_budget() -> None:
    gate = RiskGate(RiskLimits(max_inventory=1.0, max_orders_per_s=1.0))

    _, denied = gate.admit([place(Side.BUY, 5.0)], make_ctx())
    admitted, _ = gate.admit([place(Side.BUY, 0.5)], make_ctx())

    assert reasons(denied) == [DenyReason.INVENTORY_CAP]
    assert len(admitted) == 1


# --------------------------------------------------------------------------------------------
# Kill-switch
# --------------------------------------------------------------------------------------------


def test_kill_switch_when_drawdown_exceeds_limit_then_halts_and_denies_all_places() -> None:
    gate = RiskGate(RiskLimits(max_inventory=10.0, max_drawdown=50.0))
    gate.on_pnl(T0, 0.0)
    gate.on_pnl(T0 + 1, 100.0)
    assert gate.on_pnl(T0 + 2, 60.0) is None

    change = gate.on_pnl(T0 + 3, 50.0)
    decision = gate.check(quote_set(bids=[(99.9, 1.0)]), make_ctx())
    admitted, denials = gate.admit([cancel(), place(Side.SELL, 1.0)], make_ctx())

    assert change is not None
    assert (change.old, change.new) == (RiskState.ACTIVE, RiskState.HALTED)
    assert change.reason.startswith("drawdown:")
    assert "100.0" in change.reason and "50.0" in change.reason
    assert gate.halt_reason is HaltReason.DRAWDOWN
    assert decision.cancel_all is True and decision.approved.bids == ()
    assert admitted == [cancel()]
    assert reasons(denials) == [DenyReason.HALTED]


def test_kill_switch_when_pnl_hits_minus_max_loss_then_halts_on_loss_limit() -> None:
    gate = RiskGate(RiskLimits(max_inventory=10.0, max_loss=100.0))

    before = gate.on_pnl(T0, -99.0)
    change = gate.on_pnl(T0 + 1, -100.0)

    assert before is None
    assert change is not None and change.reason.startswith("loss_limit:")
    assert gate.halt_reason is HaltReason.LOSS_LIMIT


def test_kill_switch_when_drawdown_large_but_pnl_above_loss_limit_then_keeps_trading() -> None:
    gate = RiskGate(RiskLimits(max_inventory=10.0, max_loss=100.0))

    gate.on_pnl(T0, 500.0)
    change = gate.on_pnl(T0 + 1, 300.0)

    assert change is None
    assert gate.state is RiskState.ACTIVE
    assert gate.peak_pnl == 500.0


def test_kill_switch_when_both_limits_broken_then_reports_loss_limit() -> None:
    gate = RiskGate(RiskLimits(max_inventory=10.0, max_drawdown=10.0, max_loss=10.0))

    change = gate.on_pnl(T0, -20.0)

    assert change is not None and gate.halt_reason is HaltReason.LOSS_LIMIT


@pytest.mark.parametrize("pnl", [math.nan, math.inf, -math.inf])
def test_kill_switch_when_pnl_not_finite_then_ignores_it(pnl: float) -> None:
    gate = RiskGate(RiskLimits(max_inventory=10.0, max_drawdown=1.0, max_loss=1.0))
    gate.on_pnl(T0, 5.0)

    change = gate.on_pnl(T0 + 1, pnl)

    assert change is None
    assert gate.state is RiskState.ACTIVE
    assert gate.peak_pnl == 5.0


def test_kill_switch_when_halted_then_stays_halted_until_reset_and_peak_restarts() -> None:
    gate = RiskGate(RiskLimits(max_inventory=10.0, max_drawdown=50.0))
    gate.on_pnl(T0, 100.0)
    gate.on_pnl(T0 + 1, 40.0)

    recovered = gate.on_pnl(T0 + 2, 1_000.0)
    state_before_reset = gate.state
    change = gate.reset(T0 + 3)
    peak_after_reset = gate.peak_pnl
    gate.on_pnl(T0 + 4, 900.0)
    no_retrip = gate.on_pnl(T0 + 5, 860.0)
    retrip = gate.on_pnl(T0 + 6, 850.0)

    assert recovered is None
    assert state_before_reset is RiskState.HALTED
    assert change is not None and (change.old, change.new) == (RiskState.HALTED, RiskState.ACTIVE)
    assert peak_after_reset is None
    assert gate.halt_reason is HaltReason.DRAWDOWN
    assert no_retrip is None
    assert retrip is not None and retrip.new is RiskState.HALTED


def test_halt_when_called_by_hand_then_halts_once_and_reset_is_only_way_out() -> None:
    gate = RiskGate(RiskLimits(max_inventory=10.0))

    nothing_to_reset = gate.reset(T0)
    change = gate.halt(T0, "venue disconnected")
    again = gate.halt(T0 + 1, "again")

    assert nothing_to_reset is None
    assert change is not None and change.reason == "manual: venue disconnected"
    assert gate.halt_reason is HaltReason.MANUAL
    assert again is None
    assert gate.reset(T0 + 2) is not None
    assert gate.state is RiskState.ACTIVE and gate.halt_reason is None


def test_kill_switch_when_reducing_then_halt_reports_transition_from_reducing() -> None:
    gate = RiskGate(RiskLimits(max_inventory=1.0, max_loss=10.0))
    gate.check(quote_set(), make_ctx(position=2.0))

    change = gate.on_pnl(T0, -10.0)

    assert change is not None and change.old is RiskState.REDUCING


def test_reset_when_position_still_at_cap_then_next_check_moves_to_reducing() -> None:
    gate = RiskGate(RiskLimits(max_inventory=1.0))
    gate.halt(T0, "test")
    gate.reset(T0 + 1)

    decision = gate.check(quote_set(asks=[(100.1, 0.5)]), make_ctx(position=1.0))

    assert [(c.old, c.new) for c in decision.changes] == [(RiskState.ACTIVE, RiskState.REDUCING)]
    assert decision.approved.asks != ()


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------

sizes = st.floats(min_value=1e-6, max_value=5.0, allow_nan=False)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[RiskLimits, RiskContext, QuoteSet]:
    cap = draw(st.floats(min_value=1e-3, max_value=100.0))
    limits = RiskLimits(
        max_inventory=cap,
        min_half_spread_ticks=draw(st.floats(min_value=0.0, max_value=20.0)),
        min_half_spread_bps=draw(st.floats(min_value=0.0, max_value=50.0)),
        enforce_touch=True,
        max_order_qty=draw(st.one_of(st.just(math.inf), sizes)),
        max_order_notional=draw(st.one_of(st.just(math.inf), st.floats(1.0, 1e6))),
    )
    mid = draw(st.floats(min_value=0.01, max_value=1e5))
    tick = mid * draw(st.floats(min_value=1e-6, max_value=1e-3))
    half_spread = tick * draw(st.integers(min_value=1, max_value=20)) / 2
    ctx = make_ctx(
        mid=mid,
        best_bid=mid - half_spread,
        best_ask=mid + half_spread,
        tick_size=tick,
        position=draw(st.floats(min_value=-2 * cap, max_value=2 * cap)),
    )
    offsets = st.floats(min_value=-0.01, max_value=0.02)
    bids = draw(st.lists(st.tuples(offsets, sizes), max_size=6))
    asks = draw(st.lists(st.tuples(offsets, sizes), max_size=6))
    desired = quote_set(
        bids=[(mid * (1 - off), qty) for off, qty in bids],
        asks=[(mid * (1 + off), qty) for off, qty in asks],
    )
    return limits, ctx, desired


@given(scenarios())
def test_check_property_approved_quotes_respect_cap_touch_floor_and_sizes(
    scenario: tuple[RiskLimits, RiskContext, QuoteSet],
) -> None:
    limits, ctx, desired = scenario
    gate = RiskGate(limits)

    decision = gate.check(desired, ctx)

    bids, asks = decision.approved.bids, decision.approved.asks
    cap = limits.max_inventory
    floor = max(
        limits.min_half_spread_ticks * ctx.tick_size, ctx.mid * limits.min_half_spread_bps / 1e4
    )
    assert decision.state is (RiskState.REDUCING if abs(ctx.position) >= cap else RiskState.ACTIVE)
    assert not bids or ctx.position + sum(q.qty for q in bids) <= cap
    assert not asks or -ctx.position + sum(q.qty for q in asks) <= cap
    for q in bids:
        assert q.side is Side.BUY and 0.0 < q.price < ctx.best_ask
        assert floor == 0.0 or q.price <= ctx.mid - floor
    for q in asks:
        assert q.side is Side.SELL and q.price > ctx.best_bid
        assert floor == 0.0 or q.price >= ctx.mid + floor
    for q in (*bids, *asks):
        assert 0.0 < q.qty <= limits.max_order_qty
        assert q.price * q.qty <= limits.max_order_notional


commands_strategy = st.lists(
    st.one_of(
        st.builds(cancel, st.sampled_from(["a", "b", "c"])),
        st.builds(place, st.sampled_from(list(Side)), sizes),
    ),
    max_size=12,
)


@given(
    cap=st.floats(min_value=1e-3, max_value=100.0),
    position=st.floats(min_value=-200.0, max_value=200.0),
    live_buy=st.floats(min_value=0.0, max_value=50.0),
    live_sell=st.floats(min_value=0.0, max_value=50.0),
    commands=commands_strategy,
)
def test_admit_property_never_lets_position_plus_live_plus_admitted_exceed_cap(
    cap: float, position: float, live_buy: float, live_sell: float, commands: list[Command]
) -> None:
    gate = RiskGate(RiskLimits(max_inventory=cap))
    ctx = make_ctx(position=position, live_buy_qty=live_buy, live_sell_qty=live_sell)

    admitted, denials = gate.admit(commands, ctx)

    buys = [c.qty for c in admitted if isinstance(c, PlaceOrder) and c.side is Side.BUY]
    sells = [c.qty for c in admitted if isinstance(c, PlaceOrder) and c.side is Side.SELL]
    assert not buys or position + live_buy + sum(buys) <= cap
    assert not sells or -position + live_sell + sum(sells) <= cap
    assert [c for c in admitted if isinstance(c, CancelOrder)] == [
        c for c in commands if isinstance(c, CancelOrder)
    ]
    assert len(admitted) + len(denials) == len(commands)


# --------------------------------------------------------------------------------------------
# Purity
# --------------------------------------------------------------------------------------------

FORBIDDEN_MODULES = {"asyncio", "logging", "time", "datetime", "os", "io", "socket", "random"}


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).parents[1] / "risk").glob("*.py")), ids=lambda p: p.name
)
def test_risk_module_imports_only_stdlib_and_bot_events(path: Path) -> None:
    tree = ast.parse(path.read_text())

    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            imported.add(node.module)

    for module in imported:
        top = module.split(".")[0]
        assert module == "bot.events" or top == "risk" or top in sys.stdlib_module_names, module
        assert top not in FORBIDDEN_MODULES, module
