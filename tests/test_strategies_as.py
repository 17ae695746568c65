"""Avellaneda-Stoikov maths, the strategy class and the horizon convention."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from bot.events import NS_PER_SECOND, MarketState, Side
from strategies.avellaneda_stoikov import (
    ASParams,
    AvellanedaStoikov,
    as_reservation_price,
    as_total_spread,
)
from strategies.base import Strategy, time_to_horizon_s
from strategies.ladder import LadderParams

gammas = st.floats(min_value=1e-6, max_value=10.0)
sigmas = st.floats(min_value=1e-3, max_value=100.0)
taus = st.floats(min_value=1e-3, max_value=1e5)
ks = st.floats(min_value=1e-3, max_value=1e3)
inventories = st.floats(min_value=1e-3, max_value=1e3)


def make_state(
    ts_ns: int = 0,
    mid: float = 100.0,
    inventory: float = 0.0,
    sigma: float = 2.0,
    k: float = 1.5,
) -> MarketState:
    return MarketState(
        ts_ns=ts_ns,
        mid=mid,
        best_bid=mid - 0.5,
        best_ask=mid + 0.5,
        tick_size=0.01,
        inventory=inventory,
        sigma=sigma,
        intensity_a=140.0,
        intensity_k=k,
    )


def paper_params(**overrides: object) -> ASParams:
    """The AS 2008 experiment: gamma 0.1, sessions of T = 1 s from t = 0, unit orders."""
    fields: dict[str, object] = {
        "gamma": 0.1,
        "ladder": LadderParams(order_qty=1.0),
        "horizon": "session",
        "session_s": 1.0,
    }
    fields.update(overrides)
    return ASParams(**fields)  # type: ignore[arg-type]


def test_spread_at_horizon_matches_table_1_of_the_paper() -> None:
    # Arrange: gamma = 0.1, k = 1.5; at t = T only (2/gamma)·ln(1 + gamma/k) is left.
    # Act
    spread = as_total_spread(gamma=0.1, sigma=2.0, tau_s=0.0, k=1.5)

    # Assert
    assert round(spread, 2) == 1.29
    assert spread == pytest.approx(20.0 * math.log(16.0 / 15.0))


@given(mid=st.floats(1.0, 1e5), q=inventories, gamma=gammas, sigma=sigmas, tau_s=taus)
def test_reservation_price_below_mid_when_long(
    mid: float, q: float, gamma: float, sigma: float, tau_s: float
) -> None:
    assume(q * gamma * sigma**2 * tau_s > 1e-9 * mid)  # a skew below the float resolution

    assert as_reservation_price(mid, q, gamma, sigma, tau_s) < mid


@given(mid=st.floats(1.0, 1e5), q=inventories, gamma=gammas, sigma=sigmas, tau_s=taus)
def test_reservation_price_above_mid_when_short(
    mid: float, q: float, gamma: float, sigma: float, tau_s: float
) -> None:
    assume(q * gamma * sigma**2 * tau_s > 1e-9 * mid)

    assert as_reservation_price(mid, -q, gamma, sigma, tau_s) > mid


@given(gamma=st.floats(0.0, 10.0), sigma=st.floats(0.0, 100.0), tau_s=taus, k=ks)
def test_total_spread_is_positive(gamma: float, sigma: float, tau_s: float, k: float) -> None:
    assert as_total_spread(gamma, sigma, tau_s, k) > 0.0


@given(k=ks, sigma=sigmas, tau_s=taus)
def test_gamma_to_zero_gives_spread_two_over_k_and_no_skew(
    k: float, sigma: float, tau_s: float
) -> None:
    assert as_total_spread(0.0, sigma, tau_s, k) == 2.0 / k
    assert as_reservation_price(100.0, 5.0, 0.0, sigma, tau_s) == 100.0
    # The limit is approached continuously, not switched to.
    assert as_total_spread(1e-9, 0.0, tau_s, k) == pytest.approx(2.0 / k, rel=1e-6)


def test_spread_shrinks_towards_the_horizon() -> None:
    spreads = [as_total_spread(0.1, 2.0, tau_s, 1.5) for tau_s in (1.0, 0.5, 0.1, 0.0)]

    assert spreads == sorted(spreads, reverse=True)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"k": 0.0}, "k"),
        ({"k": -1.0}, "k"),
        ({"sigma": -0.1}, "sigma"),
        ({"gamma": -0.1}, "gamma"),
        ({"tau_s": -1.0}, "tau_s"),
        ({"sigma": math.nan}, "sigma"),
    ],
)
def test_total_spread_rejects_invalid_inputs(kwargs: dict[str, float], field: str) -> None:
    args = {"gamma": 0.1, "sigma": 2.0, "tau_s": 1.0, "k": 1.5} | kwargs

    with pytest.raises(ValueError, match=field):
        as_total_spread(**args)


def test_quote_at_mid_session_matches_the_formulas_by_hand() -> None:
    # Arrange: t = 0.5 of T = 1, q = 2: r = 100 - 2·0.1·4·0.5 = 99.6,
    # spread = 0.1·4·0.5 + 20·ln(16/15) = 0.2 + 1.29077 = 1.49077.
    strategy = AvellanedaStoikov(paper_params())
    state = make_state(ts_ns=NS_PER_SECOND // 2, inventory=2.0)

    # Act
    quotes = strategy.quote(state)

    # Assert
    half_spread = 0.5 * (0.2 + 20.0 * math.log(16.0 / 15.0))
    assert quotes.reservation_price == pytest.approx(99.6)
    assert quotes.half_spread == pytest.approx(half_spread)
    (bid,) = quotes.bids
    (ask,) = quotes.asks
    assert (bid.side, bid.qty, ask.side, ask.qty) == (Side.BUY, 1.0, Side.SELL, 1.0)
    assert bid.price == pytest.approx(99.6 - half_spread)
    assert ask.price == pytest.approx(99.6 + half_spread)


@given(q=st.floats(-50.0, 50.0), ts_ns=st.integers(0, 10 * NS_PER_SECOND))
def test_quote_depths_mirror_when_inventory_is_negated(q: float, ts_ns: int) -> None:
    strategy = AvellanedaStoikov(paper_params())

    long = strategy.quote(make_state(ts_ns=ts_ns, inventory=q))
    short = strategy.quote(make_state(ts_ns=ts_ns, inventory=-q))

    assert 100.0 - long.bids[0].price == pytest.approx(short.asks[0].price - 100.0)
    assert long.asks[0].price - 100.0 == pytest.approx(100.0 - short.bids[0].price)


def test_quote_centred_on_mid_keeps_the_spread_and_drops_the_skew() -> None:
    state = make_state(ts_ns=0, inventory=3.0)
    inventory_quotes = AvellanedaStoikov(paper_params()).quote(state)

    symmetric_quotes = AvellanedaStoikov(paper_params(centre="mid")).quote(state)

    assert symmetric_quotes.reservation_price == 100.0
    assert symmetric_quotes.half_spread == inventory_quotes.half_spread
    assert symmetric_quotes.bids[0].price == pytest.approx(100.0 - inventory_quotes.half_spread)
    assert symmetric_quotes.asks[0].price == pytest.approx(100.0 + inventory_quotes.half_spread)


def test_quote_counts_inventory_in_fills_of_the_order_size() -> None:
    # Arrange: 0.5-unit orders. The skew q·gamma·sigma²·tau does not depend on the unit; the
    # log term is taken per fill: (2/(gamma·0.5))·ln(1 + gamma·0.5/k).
    strategy = AvellanedaStoikov(paper_params(ladder=LadderParams(order_qty=0.5)))
    state = make_state(ts_ns=0, inventory=3.0)

    # Act
    quotes = strategy.quote(state)

    # Assert
    assert quotes.reservation_price == pytest.approx(100.0 - 3.0 * 0.1 * 4.0 * 1.0)
    assert quotes.half_spread == pytest.approx(0.5 * as_total_spread(0.05, 2.0, 1.0, 1.5))


@pytest.mark.parametrize(
    "state",
    [
        make_state(sigma=math.nan),
        make_state(k=math.inf),
        make_state(k=0.0),
        make_state(mid=math.nan),
        make_state(inventory=math.nan),
    ],
)
def test_quote_is_empty_when_an_input_is_unusable(state: MarketState) -> None:
    quotes = AvellanedaStoikov(paper_params()).quote(state)

    assert quotes.bids == () and quotes.asks == ()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"gamma": -1.0}, "gamma"),
        ({"centre": "reservation_price"}, "centre"),
        ({"horizon": "daily"}, "horizon"),
        ({"session_s": 0.0}, "session_s"),
        ({"rolling_horizon_s": -5.0}, "rolling_horizon_s"),
    ],
)
def test_params_reject_invalid_fields(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        paper_params(**overrides)


def test_strategy_satisfies_the_protocol() -> None:
    strategy: Strategy = AvellanedaStoikov(paper_params())

    assert strategy.name == "avellaneda_stoikov"


def test_session_tau_runs_from_the_session_length_down_to_one_step() -> None:
    # The AS experiment: T = 1 s, dt = 0.005 s, origin 0.
    def tau(ts_ns: int) -> float:
        return time_to_horizon_s(ts_ns, "session", 1.0, 0, 60.0)

    assert tau(0) == 1.0
    assert tau(995_000_000) == pytest.approx(0.005)
    assert tau(NS_PER_SECOND) == 1.0  # the next session starts
    assert tau(-250_000_000) == pytest.approx(0.25)  # before the origin: same grid


def test_daily_session_ends_at_utc_midnight() -> None:
    one_hour_before_midnight_ns = (19_000 * 86_400 - 3_600) * NS_PER_SECOND

    tau_s = time_to_horizon_s(one_hour_before_midnight_ns, "session", 86_400.0, 0, 60.0)

    assert tau_s == 3_600.0


@given(ts_ns=st.integers(-(10**18), 10**18))
def test_session_tau_lies_in_zero_to_session_length(ts_ns: int) -> None:
    tau_s = time_to_horizon_s(ts_ns, "session", 3.7, 123_456_789, 60.0)

    assert 0.0 < tau_s <= 3.7


def test_rolling_tau_is_constant() -> None:
    assert time_to_horizon_s(123 * NS_PER_SECOND, "rolling", 1.0, 0, 60.0) == 60.0
