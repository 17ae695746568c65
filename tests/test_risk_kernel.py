"""The compiled plain cases of ``RiskGate.check`` and ``admit`` (bot/_cdecide.c) against the rules.

Whenever the kernel says a check has nothing to do, the Python rules must agree: no denial,
no change of state, the desired quotes approved as they are. Two gates, one with the kernel and
one without, go through the same random checks and must give equal decisions throughout.
"""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Any

import pytest

from bot.events import CancelOrder, Command, PlaceOrder, Quote, QuoteSet, RiskState, Side
from bot.native import cbook
from risk import RiskContext, RiskGate, RiskLimits
from tests.differential import odd


def _odd(rng: random.Random, value: float) -> Any:
    return odd(rng, value, rate=0.01)

pytestmark = pytest.mark.skipif(cbook is None, reason="C extension not built")


def _limits(rng: random.Random) -> RiskLimits:
    return RiskLimits(
        max_inventory=rng.choice((1.0, 5.0, 0.3)),
        min_half_spread_ticks=rng.choice((0.0, 1.0, 3.0)),
        min_half_spread_bps=rng.choice((0.0, 0.0, 1.0)),
        enforce_touch=rng.random() < 0.8,
        price_band_bps=rng.choice((math.inf, 50.0, 200.0)),
        max_order_qty=rng.choice((math.inf, 1.0, 2.0)),
        max_order_notional=rng.choice((math.inf, 150.0, 1000.0)),
        max_book_age_ns=rng.choice((0, 0, 5_000)),
    )


def _ladder(rng: random.Random, side: Side, touch: float, tick: float) -> tuple[Quote, ...]:
    sign = -1.0 if side is Side.BUY else 1.0
    quotes = []
    for level in range(rng.choice((0, 1, 1, 2, 3))):
        price = touch + sign * rng.uniform(-1.5, 6) * tick + sign * level * tick
        qty = rng.choice((0.1, 0.2, 0.5, 1.0, 1.5))
        wrong = rng.random() < 0.01
        quotes.append(Quote(side.opposite if wrong else side, _odd(rng, price),
                            _odd(rng, qty), level))
    return tuple(quotes)


def _context(rng: random.Random, ts: int, last: int, position: float) -> RiskContext:
    tick = rng.choice((0.01, 0.1))
    mid = 100.0 + rng.uniform(-1, 1)
    spread = rng.choice((1, 1, 2, 5)) * tick
    return RiskContext(ts, _odd(rng, mid), mid - spread / 2, mid + spread / 2, tick,
                       rng.random() > 0.02, last, _odd(rng, position),
                       rng.choice((0.0, 1.0)), rng.choice((0.0, 1.0)))


@pytest.mark.parametrize("seed", range(30))
def test_gates_with_and_without_the_kernel_decide_alike(seed: int) -> None:
    rng = random.Random(seed)
    limits = _limits(rng)
    fast, slow = RiskGate(limits), RiskGate(limits)
    kernel = fast._kernel
    assert kernel is not None
    slow._kernel = None
    passed = plain = 0
    ts = last = 1_000_000
    position = 0.0
    for _ in range(400):
        ts += rng.choice((10, 1_000, 6_000))
        if rng.random() < 0.7:
            last = ts
        if rng.random() < 0.2:
            position = rng.choice((-1.0, 0.0, 0.5, 1.0, 4.9, 5.0, -5.0, 0.3, -0.3))
        ctx = _context(rng, ts, last, position)
        centre = ctx.mid if ctx.mid == ctx.mid and ctx.mid != math.inf else 100.0
        desired = QuoteSet(_ladder(rng, Side.BUY, centre - ctx.tick_size, ctx.tick_size),
                           _ladder(rng, Side.SELL, centre + ctx.tick_size, ctx.tick_size),
                           centre, ctx.tick_size)
        reducing = fast.state is RiskState.REDUCING
        # The gate asks the kernel only when it is not HALTED.
        says_plain = fast.state is not RiskState.HALTED and kernel(
            desired.bids, desired.asks, ctx, reducing)
        expected = slow.check(desired, ctx)
        got = fast.check(desired, ctx)
        assert got == expected
        assert fast.state is slow.state
        untouched = (expected.state is not RiskState.HALTED and not expected.denials
                     and not expected.changes and not expected.cancel_all
                     and expected.approved == desired)
        if says_plain:
            passed += 1
            assert untouched
        floats = [ctx.position, ctx.mid] + [v for q in desired.bids + desired.asks
                                            for v in (q.price, q.qty)]
        # (An empty set on a stale book is also untouched: the kernel leaves that to Python.)
        plain += untouched and len(floats) > 2 and all(type(v) is float for v in floats)
        if rng.random() < 0.01:
            fast.halt(ts, "test")
            slow.halt(ts, "test")
        if rng.random() < 0.05:
            fast.reset(ts)
            slow.reset(ts)
    # Not vacuous, and the kernel misses few of the plain checks it could have taken.
    assert passed >= 5
    assert passed >= 0.9 * plain


def test_kernel_declines_each_rule() -> None:
    limits = RiskLimits(max_inventory=2.0, min_half_spread_ticks=1.0, price_band_bps=100.0,
                        max_order_qty=1.0, max_order_notional=150.0, max_book_age_ns=1_000)
    kernel = RiskGate(limits)._kernel
    assert kernel is not None
    ctx = RiskContext(10_000, 100.0, 99.95, 100.05, 0.01, True, 9_500, 0.0, 0.0, 0.0)
    bid, ask = Quote(Side.BUY, 99.9, 1.0, 0), Quote(Side.SELL, 100.1, 1.0, 0)
    assert kernel((bid,), (ask,), ctx, False)
    assert kernel((), (), ctx, False)
    cases = {
        "spread floor": ((Quote(Side.BUY, 99.995, 1.0, 0),), (ask,)),
        "touch": ((bid,), (Quote(Side.SELL, 99.95, 1.0, 0),)),
        "band": ((Quote(Side.BUY, 98.0, 1.0, 0),), (ask,)),
        "order size": ((Quote(Side.BUY, 99.9, 1.5, 0),), (ask,)),
        "notional": ((bid,), (Quote(Side.SELL, 100.1, 1.0, 0), Quote(Side.SELL, 200.0, 0.9, 1))),
        "inventory cap": ((bid, Quote(Side.BUY, 99.8, 1.0, 1), Quote(Side.BUY, 99.7, 0.5, 2)),
                          (ask,)),
        "wrong side": ((ask,), ()),
        "not a tuple": ([bid], (ask,)),
    }
    for name, (bids, asks) in cases.items():
        assert not kernel(bids, asks, ctx, False), name
    assert not kernel((bid,), (ask,), ctx, True)  # the state would change to ACTIVE
    stale = RiskContext(10_000, 100.0, 99.95, 100.05, 0.01, True, 8_000, 0.0, 0.0, 0.0)
    invalid = RiskContext(10_000, 100.0, 99.95, 100.05, 0.01, False, 9_500, 0.0, 0.0, 0.0)
    at_cap = RiskContext(10_000, 100.0, 99.95, 100.05, 0.01, True, 9_500, 2.0, 0.0, 0.0)
    for other in (stale, invalid):
        assert not kernel((bid,), (ask,), other, False)
    assert not kernel((bid,), (ask,), at_cap, True)  # bids closed at the cap
    assert kernel((), (ask,), at_cap, True)  # REDUCING: the asks alone are plain


def _commands(rng: random.Random, ts: int) -> list[Command]:
    commands: list[Command] = []
    for n in range(rng.choice((0, 1, 2, 4, 4, 6))):
        if rng.random() < 0.4:
            commands.append(CancelOrder(ts, f"c{n}", "X"))
        else:
            side = rng.choice((Side.BUY, Side.SELL))
            commands.append(PlaceOrder(ts, f"p{n}", "X", side, _odd(rng, 100.0),
                                       _odd(rng, rng.choice((0.1, 0.5, 0.5005, 1.0, 2.0)))))
    return commands


@pytest.mark.parametrize("seed", range(20))
def test_admit_with_and_without_the_kernel_alike(seed: int) -> None:
    rng = random.Random(seed)
    limits = dataclasses.replace(_limits(rng),
                                 max_orders_per_s=rng.choice((math.inf, math.inf, 3.0)))
    fast, slow = RiskGate(limits), RiskGate(limits)
    kernel = fast._kernel
    assert kernel is not None
    slow._kernel = slow._admit_kernel = None
    all_pass = 0
    ts = 1_000_000
    for _ in range(300):
        ts += rng.choice((10, 100_000_000, 600_000_000))
        position = rng.choice((0.0, 0.5, -0.5, 1.0, 4.5, -4.9))
        ctx = RiskContext(ts, 100.0, 99.9, 100.1, 0.1, True, ts, _odd(rng, position),
                          rng.choice((0.0, 0.5, 1.0)), rng.choice((0.0, 0.5, 1.0)))
        commands = _commands(rng, ts)
        if rng.random() < 0.05:
            fast.halt(ts, "test")
            slow.halt(ts, "test")
        if rng.random() < 0.1:
            fast.reset(ts)
            slow.reset(ts)
        says_all = kernel.admits(commands, ctx, fast.state is RiskState.HALTED)
        expected = slow.admit(commands, ctx)
        assert fast.admit(commands, ctx) == expected
        if says_all and limits.max_orders_per_s == math.inf:  # (the gate asks only then)
            assert expected == (commands, [])
            all_pass += any(type(c) is PlaceOrder for c in commands)
    assert all_pass >= 10 or limits.max_orders_per_s != math.inf
