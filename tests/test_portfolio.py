from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.events import Liquidity, OrderFilled, Side
from bot.portfolio import Portfolio


def fill(side: Side, price: float, qty: float, fee: float = 0.0, trade_id: str = "",
         coid: str = "o1") -> OrderFilled:
    return OrderFilled(0, coid, side, price, qty, 0.0, fee, Liquidity.MAKER, trade_id)


def test_round_trip_bought_at_bid_sold_at_ask_earns_the_spread_less_fees() -> None:
    p = Portfolio()
    p.apply_fill(fill(Side.BUY, 99.0, 2.0, fee=0.1))
    p.apply_fill(fill(Side.SELL, 101.0, 2.0, fee=0.1))

    assert p.position == 0.0
    assert p.realised == pytest.approx(4.0)
    assert p.fees == pytest.approx(0.2)
    assert p.mark(100.0) == pytest.approx(3.8)


def test_open_position_is_marked_to_mid() -> None:
    p = Portfolio()
    p.apply_fill(fill(Side.SELL, 100.0, 1.5))

    assert p.mark(98.0) == pytest.approx(3.0)
    assert p.unrealised == pytest.approx(3.0)
    assert p.realised == 0.0


def test_flip_through_zero_realises_the_closed_part_and_reopens_at_the_fill() -> None:
    p = Portfolio()
    p.apply_fill(fill(Side.BUY, 100.0, 1.0))
    p.apply_fill(fill(Side.SELL, 102.0, 3.0))

    assert p.position == pytest.approx(-2.0)
    assert p.realised == pytest.approx(2.0)
    assert p.avg_price == pytest.approx(102.0)


def test_a_fill_seen_twice_is_applied_once() -> None:
    p = Portfolio()
    assert p.apply_fill(fill(Side.BUY, 100.0, 1.0, trade_id="t1"))
    assert not p.apply_fill(fill(Side.BUY, 100.0, 1.0, trade_id="t1"))
    assert p.position == 1.0
    assert p.fills == 1


def test_non_finite_mark_is_ignored() -> None:
    p = Portfolio()
    p.apply_fill(fill(Side.BUY, 100.0, 1.0))
    p.mark(101.0)
    assert p.mark(float("nan")) == pytest.approx(1.0)


@given(st.lists(st.tuples(st.sampled_from([Side.BUY, Side.SELL]),
                          st.floats(50, 150), st.floats(0.001, 5), st.floats(0, 0.5)),
                min_size=1, max_size=30),
       st.floats(50, 150))
def test_pnl_equals_realised_plus_unrealised_minus_fees(
    fills: list[tuple[Side, float, float, float]], mid: float
) -> None:
    p = Portfolio()
    for side, price, qty, fee in fills:
        p.apply_fill(fill(side, price, qty, fee))
    pnl = p.mark(mid)
    assert pnl == pytest.approx(p.realised + p.unrealised - p.fees, abs=1e-6)
