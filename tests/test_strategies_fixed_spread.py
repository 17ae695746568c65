"""The fixed-spread benchmark."""

from __future__ import annotations

import math

import pytest

from bot.events import MarketState
from strategies.base import Strategy
from strategies.fixed_spread import FixedSpread, FixedSpreadParams
from strategies.ladder import LadderParams

LADDER = LadderParams(order_qty=1.0)


def make_state(mid: float = 200.0, inventory: float = 0.0, tick_size: float = 0.05) -> MarketState:
    return MarketState(
        ts_ns=0,
        mid=mid,
        best_bid=mid - 1.0,
        best_ask=mid + 1.0,
        tick_size=tick_size,
        inventory=inventory,
        sigma=math.nan,
        intensity_a=math.nan,
        intensity_k=math.nan,
    )


@pytest.mark.parametrize(
    ("params", "half_spread"),
    [
        (FixedSpreadParams(ladder=LADDER, half_spread=0.3), 0.3),
        (FixedSpreadParams(ladder=LADDER, half_spread_bps=10.0), 0.2),
        (FixedSpreadParams(ladder=LADDER, half_spread_ticks=4.0), 0.2),
    ],
)
def test_quotes_are_symmetric_around_mid_in_each_unit(
    params: FixedSpreadParams, half_spread: float
) -> None:
    quotes = FixedSpread(params).quote(make_state())

    assert quotes.bids[0].price == pytest.approx(200.0 - half_spread)
    assert quotes.asks[0].price == pytest.approx(200.0 + half_spread)
    assert quotes.reservation_price == 200.0
    assert quotes.half_spread == pytest.approx(half_spread)


def test_inventory_does_not_skew_the_quotes() -> None:
    strategy = FixedSpread(FixedSpreadParams(ladder=LADDER, half_spread=0.3))

    flat = strategy.quote(make_state(inventory=0.0))
    long = strategy.quote(make_state(inventory=25.0))

    assert long.bids[0].price == flat.bids[0].price
    assert long.asks[0].price == flat.asks[0].price


@pytest.mark.parametrize(
    "state", [make_state(mid=math.nan), make_state(mid=0.0), make_state(tick_size=0.0)]
)
def test_quote_is_empty_when_mid_or_tick_is_unusable(state: MarketState) -> None:
    strategy = FixedSpread(FixedSpreadParams(ladder=LADDER, half_spread_ticks=2.0))

    assert strategy.quote(state).bids == ()


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"half_spread": 0.1, "half_spread_bps": 1.0},
        {"half_spread": 0.1, "half_spread_bps": 1.0, "half_spread_ticks": 1.0},
    ],
)
def test_params_need_exactly_one_half_spread(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        FixedSpreadParams(ladder=LADDER, **kwargs)


def test_params_reject_a_non_positive_half_spread() -> None:
    with pytest.raises(ValueError, match="half_spread_bps"):
        FixedSpreadParams(ladder=LADDER, half_spread_bps=0.0)


def test_strategy_satisfies_the_protocol() -> None:
    strategy: Strategy = FixedSpread(FixedSpreadParams(ladder=LADDER, half_spread=0.3))

    assert strategy.name == "fixed_spread"
