"""The compiled Avellaneda-Stoikov quote (bot/_cdecide.c) against the Python strategy.

For random parameters and market states, a strategy with the kernel and one without must give
equal quote sets (or raise alike); the kernel must do the work on usable inputs.
"""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from bot.events import MarketState, QuoteSet
from bot.native import cbook
from strategies.avellaneda_stoikov import ASParams, AvellanedaStoikov
from strategies.ladder import LadderParams
from tests.differential import odd, outcome

pytestmark = pytest.mark.skipif(cbook is None, reason="C extension not built")


def _params(rng: random.Random) -> ASParams:
    levels = rng.choice((1, 1, 2, 3, 5))
    spacing: dict[str, Any] = {}
    if levels > 1 or rng.random() < 0.3:
        spacing = rng.choice(({"spacing": rng.choice((0.0, 0.5, 2.0))},
                              {"spacing_ticks": rng.choice((0.0, 1.0, 2.5))}))
    shaping = rng.random() < 0.4
    ladder = LadderParams(
        order_qty=rng.choice((1.0, 0.01, 0.3, 2.0)), levels=levels,
        size_decay=rng.choice((1.0, 0.5, 1.5)), inventory_shaping=shaping,
        max_inventory=rng.choice((1.0, 5.0)) if shaping else None, **spacing)
    return ASParams(
        gamma=rng.choice((0.0, 1e-13, 0.01, 0.1, 1.0, 5.0)), ladder=ladder,
        centre=rng.choice(("reservation", "mid")), horizon=rng.choice(("session", "rolling")),
        session_s=rng.choice((86_400.0, 60.0, 0.5, 3_600.25)),
        session_origin_ns=rng.choice((0, 1_700_000_000_123_456_789, -5)),
        rolling_horizon_s=rng.choice((3_600.0, 1.0)))


def _state(rng: random.Random) -> MarketState:
    mid = rng.choice((100.0, 61_000.0, 0.05)) * (1 + rng.uniform(-0.01, 0.01))
    ts = rng.choice((rng.randrange(0, 2**62), 1_723_075_200_000_000_000 + rng.randrange(10**12),
                     -rng.randrange(10**12)))
    return MarketState(ts, odd(rng, mid), mid * 0.9999, mid * 1.0001,
                       odd(rng, rng.choice((0.01, 0.1, 1e-8))),
                       odd(rng, rng.choice((0.0, 1.0, -2.5, 0.3, 7.0))),
                       odd(rng, rng.choice((0.0, 0.05, 2.0, 30.0))), 5.0,
                       odd(rng, rng.choice((50.0, 0.5, 1e-3, 1e6))))


@pytest.mark.parametrize("seed", range(60))
def test_kernel_quotes_equal_the_python_strategy(seed: int) -> None:
    rng = random.Random(seed)
    params = _params(rng)
    fast, slow = AvellanedaStoikov(params), AvellanedaStoikov(params)
    kernel = fast._kernel
    assert kernel is not None
    slow._kernel = None
    used = 0
    for _ in range(200):
        state = _state(rng)
        used += kernel(state) is not None
        expected, got = outcome(slow.quote, state), outcome(fast.quote, state)
        if isinstance(expected, QuoteSet):
            assert isinstance(got, QuoteSet)
            assert got == expected or (math.isnan(expected.reservation_price)
                                       and repr(got) == repr(expected))
            assert [type(q.level) for q in got.bids + got.asks] == [
                type(q.level) for q in expected.bids + expected.asks]
        else:
            assert got is expected
    assert used > 150


def test_kernel_declines_inputs_the_python_method_handles() -> None:
    strategy = AvellanedaStoikov(ASParams(0.1, LadderParams(1.0)))
    kernel = strategy._kernel
    assert kernel is not None
    good = MarketState(10**18, 100.0, 99.9, 100.1, 0.1, 0.0, 0.05, 5.0, 50.0)
    reference = AvellanedaStoikov(strategy.params)
    reference._kernel = None
    quotes = kernel(good)
    assert quotes is not None and quotes == reference.quote(good)
    for bad in (MarketState(10**18, math.nan, 99.9, 100.1, 0.1, 0.0, 0.05, 5.0, 50.0),
                MarketState(10**18, 100.0, 99.9, 100.1, 0.1, 0.0, 0.05, 5.0, 0.0),
                MarketState(10**18, 100.0, 99.9, 100.1, 0.1, 0, 0.05, 5.0, 50.0),
                MarketState(2**64, 100.0, 99.9, 100.1, 0.1, 0.0, 0.05, 5.0, 50.0)):
        assert kernel(bad) is None
    assert kernel(object()) is None
