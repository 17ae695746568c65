"""The compiled ``OrderManager.diff`` (bot/_cdecide.c) against its Python reference.

Two managers with the same configuration go through the same random sequence of diffs and
venue events, one with the compiled kernel and one without: every command list, every live
order and every counter must be equal after every step.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace
from typing import Any

import pytest

from bot.events import (
    CancelOrder,
    Liquidity,
    OrderAccepted,
    OrderCanceled,
    OrderCancelRejected,
    OrderEvent,
    OrderFilled,
    OrderRejected,
    PlaceOrder,
    Quote,
    QuoteSet,
    Side,
)
from bot.native import cbook
from bot.orders import ManagedOrder, OrderManager, OrderManagerConfig, OrderState
from tests.differential import outcome

pytestmark = pytest.mark.skipif(cbook is None, reason="C extension not built")

TICKS = (0.01, 0.1, 0.5, 1.0, 0.25, 1e-8, 5.0, 0.001)
LOTS = (0.001, 0.01, 1.0, 0.1, 1e-5)


def _config(rng: random.Random) -> OrderManagerConfig:
    return OrderManagerConfig(
        symbol=rng.choice(("BTCUSDT", "ETH-USD")),
        tick_size=rng.choice(TICKS),
        lot_size=rng.choice(LOTS),
        min_qty=rng.choice((0.0, 0.0, 0.002, 0.5)),
        min_notional=rng.choice((0.0, 0.0, 5.0, 100.0)),
        requote_ticks=rng.choice((0.0, 1.0, 2.5)),
        max_order_age_ns=rng.choice((0, 0, 3_000, 10**18)),
        post_only=rng.random() < 0.7,
        client_id_prefix=rng.choice(("mm-", "x", "", "mm-é-")),  # ASCII or not: two paths
    )


def _value(rng: random.Random, centre: float, spread: float) -> float:
    roll = rng.random()
    if roll < 0.02:
        return rng.choice((math.nan, math.inf, -math.inf, -1.0, 0.0))
    if roll < 0.04:
        return centre * 1e12  # beyond the exact one-division range: the kernel falls back
    return centre + rng.uniform(-spread, spread)


def _ladder(rng: random.Random, side: Side, centre: float, tick: float) -> tuple[Quote, ...]:
    quotes = []
    for level in range(rng.choice((0, 1, 1, 2, 3))):
        price = _value(rng, centre, 6 * tick)
        qty = _value(rng, 1.0, 0.9)
        if rng.random() < 0.02:
            quotes.append(Quote(side, price, 1, level))  # type: ignore[arg-type]  # an int
        else:
            quotes.append(Quote(side, price, qty, rng.choice((level, level, 0))))
    return tuple(quotes)


def _event(rng: random.Random, om: OrderManager, ts: int) -> OrderEvent | None:
    if not om.orders:
        return None
    order = rng.choice(list(om.orders.values()))
    cid = order.client_order_id
    roll = rng.random()
    if roll < 0.4:
        return OrderAccepted(ts, cid)
    if roll < 0.65:
        qty = rng.choice((order.remaining, order.remaining / 2))
        return OrderFilled(ts, cid, order.side, order.price, qty,
                           max(0.0, order.remaining - qty), 0.0, Liquidity.MAKER)
    if roll < 0.8:
        return OrderCanceled(ts, cid)
    if roll < 0.9:
        return OrderCancelRejected(ts, cid, "unknown order")
    return OrderRejected(ts, cid, "post only")


def _state(om: OrderManager) -> tuple[object, ...]:
    return (list(om.orders.items()), om.placed, om.cancels_sent, om._next_id)


@pytest.mark.parametrize("seed", range(40))
def test_kernel_equals_reference_on_random_sequences(seed: int) -> None:
    rng = random.Random(seed)
    config = _config(rng)
    fast, slow = OrderManager(config), OrderManager(config)
    # Ids across decimal lengths (the kernel writes the digits itself).
    fast._next_id = slow._next_id = rng.choice((1, 1, 9, 99_999, 10**15, 10**17))
    assert fast._kernel is not None
    slow._kernel = None
    tick = config.tick_size
    centre = rng.choice((100.0, 61_000.0, 0.05, 3.0)) // tick * tick or tick * 100
    kernel = fast._kernel
    used = 0

    def counting(*args: Any) -> Any:
        nonlocal used
        done = kernel(*args)
        used += done is not None
        return done

    fast._kernel = counting
    ts = 1_000
    for _ in range(300):
        ts += rng.choice((1, 1_000, 5_000))
        if rng.random() < 0.6:
            mid = centre + rng.uniform(-5, 5) * tick
            bid = rng.choice((mid - tick, math.nan)) if rng.random() < 0.1 else mid - tick
            ask = rng.choice((mid + tick, math.inf)) if rng.random() < 0.1 else mid + tick
            desired = QuoteSet(_ladder(rng, Side.BUY, mid - 2 * tick, tick),
                               _ladder(rng, Side.SELL, mid + 2 * tick, tick), mid, tick)
            expected = outcome(slow.diff, desired, bid, ask, ts)
            got = outcome(fast.diff, desired, bid, ask, ts)
            assert got == expected
            if isinstance(expected, list):
                assert isinstance(got, list)
                assert [type(c) for c in got] == [type(c) for c in expected]
        else:
            event = _event(rng, slow, ts)
            if event is not None:
                assert fast.on_event(event) == slow.on_event(event)
        assert _state(fast) == _state(slow)
    assert used > 100  # the kernel did the work, not the fallback


def test_kernel_builds_the_same_objects() -> None:
    config = OrderManagerConfig("BTCUSDT", 0.1, 0.001, requote_ticks=1.0)
    fast, slow = OrderManager(config), OrderManager(config)
    slow._kernel = None
    desired = QuoteSet((Quote(Side.BUY, 100.04, 0.5, 0),), (Quote(Side.SELL, 100.26, 0.5, 0),),
                       100.15, 0.11)
    got, expected = fast.diff(desired, 100.1, 100.2, 7), slow.diff(desired, 100.1, 100.2, 7)
    assert got == expected == [
        PlaceOrder(7, "mm-1", "BTCUSDT", Side.BUY, 100.0, 0.5, True, 0),
        PlaceOrder(7, "mm-2", "BTCUSDT", Side.SELL, 100.3, 0.5, True, 0),
    ]
    for made, ref in zip(got, expected, strict=True):
        assert type(made) is type(ref) and hash(made) == hash(ref) and repr(made) == repr(ref)
        with pytest.raises(AttributeError):
            made.price = 1.0  # type: ignore[misc]  # still frozen
    assert list(fast.orders.values()) == list(slow.orders.values())
    assert all(type(o) is ManagedOrder and o.state is OrderState.PENDING_NEW
               for o in fast.orders.values())
    # Requote: the bid moves two ticks, the ask stays.
    moved = replace(desired, bids=(Quote(Side.BUY, 100.24, 0.5, 0),))
    got, expected = fast.diff(moved, 100.3, 100.4, 9), slow.diff(moved, 100.3, 100.4, 9)
    assert got == expected
    assert [type(c) for c in got] == [CancelOrder, PlaceOrder]
    assert fast.orders["mm-1"].state is OrderState.PENDING_CANCEL
    assert (fast.placed, fast.cancels_sent) == (slow.placed, slow.cancels_sent) == (3, 1)


def test_kernel_declines_what_it_was_not_written_for() -> None:
    config = OrderManagerConfig("BTCUSDT", 0.1, 0.001)
    om = OrderManager(config)
    kernel = om._kernel
    assert kernel is not None
    bids = (Quote(Side.BUY, 100.0, 1.0, 0),)
    assert kernel({}, bids, (), 100.0, 100.1, 1, 1) is not None
    assert kernel({}, [*bids], (), 100.0, 100.1, 1, 1) is None  # not a tuple
    assert kernel({}, bids, (), 100, 100.1, 1, 1) is None  # an int touch
    assert kernel({}, (Quote(Side.BUY, 1e300, 1.0, 0),), (), math.nan, math.nan, 1, 1) is None
    assert kernel({"x": object()}, bids, (), 100.0, 100.1, 1, 1) is None  # type: ignore[dict-item]
    assert kernel({}, bids * 40, (), 100.0, 100.1, 1, 1) is None  # more than it holds
    with pytest.raises(TypeError):
        kernel({}, bids, (), 100.0, 100.1, 1)  # type: ignore[call-arg]


def test_maker_equals_the_class() -> None:
    assert cbook is not None
    make = cbook.Maker(PlaceOrder, ("ts_ns", "client_order_id", "symbol", "side", "price", "qty",
                                    "post_only", "level"))
    values = (5, "a", "BTC", Side.SELL, 1.5, 2.0, False, 3)
    made = make(*values)
    assert made == PlaceOrder(*values) and type(made) is PlaceOrder and make.cls is PlaceOrder
    with pytest.raises(TypeError):
        make(*values[:-1])
    with pytest.raises(TypeError):
        make(*values[:-1], level=3)
    with pytest.raises(AttributeError):
        cbook.Maker(PlaceOrder, ("nope",))
    with pytest.raises(TypeError):
        cbook.Maker(PlaceOrder, ("__init__",))  # not a slot
    with pytest.raises(TypeError):
        cbook.Maker(dict, ())  # its own allocator and __new__
