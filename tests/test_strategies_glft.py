"""GLFT: asymptotic coefficients and depths, the exact finite-inventory solution, both classes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.events import MarketState
from strategies import glft
from strategies.base import Strategy
from strategies.glft import (
    GLFTAsymptotic,
    GLFTExact,
    GLFTExactParams,
    GLFTParams,
    glft_asymptotic_depths,
    glft_coefficients,
    glft_exact_depths,
    glft_exact_solution,
    glft_exact_value,
)
from strategies.ladder import LadderParams

# The AS 2008 world: gamma 0.1, k 1.5, A 140, sigma 2.
GAMMA, K, A, SIGMA = 0.1, 1.5, 140.0, 2.0

gammas = st.floats(min_value=1e-4, max_value=5.0)
ks = st.floats(min_value=0.05, max_value=50.0)
intensities = st.floats(min_value=0.01, max_value=500.0)
sigmas = st.floats(min_value=0.0, max_value=20.0)


def make_state(
    inventory: float = 0.0, sigma: float = SIGMA, a: float = A, ts_ns: int = 0
) -> MarketState:
    return MarketState(
        ts_ns=ts_ns,
        mid=100.0,
        best_bid=99.5,
        best_ask=100.5,
        tick_size=0.01,
        inventory=inventory,
        sigma=sigma,
        intensity_a=a,
        intensity_k=K,
    )


def reference_value(tau_s: float, q_max: int, gamma: float, sigma: float) -> np.ndarray:
    """exp(-M·tau)·1 on the full (2Q+1)-square M by a Taylor series: independent of eigh."""
    alpha = 0.5 * K * gamma * sigma**2
    eta = A * (1.0 + gamma / K) ** (-(1.0 + K / gamma))
    q = np.arange(-q_max, q_max + 1, dtype=float)
    m = np.diag(alpha * q**2) - eta * (np.eye(2 * q_max + 1, k=1) + np.eye(2 * q_max + 1, k=-1))
    term = np.ones(2 * q_max + 1)
    total = term.copy()
    for n in range(1, 200):
        term = -(m @ term) * tau_s / n
        total += term
    return total


def test_coefficients_match_a_hand_computation() -> None:
    # c1 = (1/0.1)·ln(1 + 0.1/1.5) = 10·ln(16/15) = 0.645385
    # (1 + 0.1/1.5)^(1 + 1.5/0.1) = (16/15)^16 = 2.808404
    # c2 = sqrt(0.1/(2·1.5·140) · 2.808404) = sqrt(6.68668e-4) = 0.0258586
    c1, c2 = glft_coefficients(GAMMA, K, A)

    assert c1 == pytest.approx(0.645385, abs=1e-6)
    assert c2 == pytest.approx(0.0258586, abs=1e-7)
    assert c2 == pytest.approx(math.sqrt(0.1 / 420.0 * (16.0 / 15.0) ** 16), rel=1e-12)


def test_coefficients_at_gamma_zero_are_the_limits() -> None:
    assert glft_coefficients(0.0, K, A) == (1.0 / K, 0.0)
    c1, c2 = glft_coefficients(1e-10, K, A)
    assert c1 == pytest.approx(1.0 / K, rel=1e-9)
    assert c2 == pytest.approx(math.sqrt(1e-10 * math.e / (2.0 * K * A)), rel=1e-6)


def test_coefficients_do_not_overflow_for_large_k_over_gamma() -> None:
    c1, c2 = glft_coefficients(1e-9, 1e6, 1.0)

    assert math.isfinite(c1) and math.isfinite(c2)


@given(q=st.floats(-50.0, 50.0), sigma=sigmas, gamma=gammas, k=ks, a=intensities)
def test_asymptotic_depths_mirror_when_inventory_is_negated(
    q: float, sigma: float, gamma: float, k: float, a: float
) -> None:
    bid_long, ask_long = glft_asymptotic_depths(q, sigma, gamma, k, a)
    bid_short, ask_short = glft_asymptotic_depths(-q, sigma, gamma, k, a)

    assert bid_long == pytest.approx(ask_short)
    assert ask_long == pytest.approx(bid_short)


@given(q=st.floats(-50.0, 50.0), sigma=sigmas, gamma=gammas, k=ks, a=intensities)
def test_asymptotic_spread_is_positive_and_skew_is_linear_in_inventory(
    q: float, sigma: float, gamma: float, k: float, a: float
) -> None:
    c1, c2 = glft_coefficients(gamma, k, a)

    bid_depth, ask_depth = glft_asymptotic_depths(q, sigma, gamma, k, a, skew_scale=0.5)

    assert bid_depth + ask_depth == pytest.approx(2.0 * c1 + sigma * c2)
    assert bid_depth - ask_depth == pytest.approx(2.0 * 0.5 * q * sigma * c2, abs=1e-9)
    assert bid_depth + ask_depth > 0.0


def test_asymptotic_depths_at_gamma_zero_are_one_over_k_without_skew() -> None:
    assert glft_asymptotic_depths(7.0, SIGMA, 0.0, K, A) == (1.0 / K, 1.0 / K)


def test_positive_drift_moves_the_bid_closer_and_the_ask_away() -> None:
    bid_flat, ask_flat = glft_asymptotic_depths(0.0, SIGMA, GAMMA, K, A)

    bid_up, ask_up = glft_asymptotic_depths(0.0, SIGMA, GAMMA, K, A, drift=0.5)

    shift = 0.5 / (GAMMA * SIGMA**2) * SIGMA * glft_coefficients(GAMMA, K, A)[1]
    assert bid_up == pytest.approx(bid_flat - shift)
    assert ask_up == pytest.approx(ask_flat + shift)


def test_drift_without_volatility_is_rejected() -> None:
    with pytest.raises(ValueError, match="drift"):
        glft_asymptotic_depths(0.0, 0.0, GAMMA, K, A, drift=0.1)


@pytest.mark.parametrize("q", [0, 1, -1])
def test_exact_depths_converge_to_asymptotic_for_a_long_horizon(q: int) -> None:
    exact_bid, exact_ask = glft_exact_depths(1e4, q, 20, GAMMA, SIGMA, A, K)

    asymptotic_bid, asymptotic_ask = glft_asymptotic_depths(q, SIGMA, GAMMA, K, A)

    assert exact_bid == pytest.approx(asymptotic_bid, rel=0.02)
    assert exact_ask == pytest.approx(asymptotic_ask, rel=0.02)


@given(
    q=st.integers(-12, 12),
    tau_s=st.floats(0.0, 1e6),
    gamma=gammas,
    sigma=sigmas,
    a=intensities,
    k=ks,
)
def test_exact_depths_mirror_when_inventory_is_negated(
    q: int, tau_s: float, gamma: float, sigma: float, a: float, k: float
) -> None:
    solution = glft_exact_solution(10, gamma, sigma, a, k)

    bid_long, ask_long = solution.depths(tau_s, q)
    bid_short, ask_short = solution.depths(tau_s, -q)

    assert bid_long == ask_short
    assert ask_long == bid_short


@given(tau_s=st.floats(0.0, 1e9), gamma=gammas, sigma=sigmas, a=intensities, k=ks)
def test_exact_value_is_finite_and_positive_for_any_horizon(
    tau_s: float, gamma: float, sigma: float, a: float, k: float
) -> None:
    v = glft_exact_value(tau_s, 10, gamma, sigma, a, k)

    assert v.shape == (21,)
    assert np.all(np.isfinite(v)) and np.all(v > 0.0)


@pytest.mark.parametrize("tau_s", [0.001, 0.01, 0.05])
def test_exact_value_matches_a_taylor_series_of_the_full_matrix(tau_s: float) -> None:
    v = glft_exact_value(tau_s, 5, GAMMA, SIGMA, A, K)

    expected = reference_value(tau_s, 5, GAMMA, SIGMA)

    # v is defined up to a positive factor.
    np.testing.assert_allclose(v / v[5], expected / expected[5], rtol=1e-10)


def test_exact_depths_at_the_horizon_are_c1_on_both_sides() -> None:
    bid_depth, ask_depth = glft_exact_depths(0.0, 3, 10, GAMMA, SIGMA, A, K)

    c1 = glft_coefficients(GAMMA, K, A)[0]
    assert bid_depth == pytest.approx(c1)
    assert ask_depth == pytest.approx(c1)


def test_exact_depths_drop_the_side_that_would_breach_the_bound() -> None:
    solution = glft_exact_solution(5, GAMMA, SIGMA, A, K)

    at_long_bound = solution.depths(100.0, 5)
    at_short_bound = solution.depths(100.0, -5)
    beyond_long_bound = solution.depths(100.0, 9)
    beyond_short_bound = solution.depths(100.0, -9)

    assert at_long_bound[0] is None and at_long_bound[1] is not None
    assert at_short_bound[1] is None and at_short_bound[0] is not None
    assert beyond_long_bound == (None, at_long_bound[1])
    assert beyond_short_bound == (at_short_bound[0], None)


def test_exact_depths_put_the_reservation_below_mid_when_long() -> None:
    bid_depth, ask_depth = glft_exact_depths(60.0, 2, 10, GAMMA, SIGMA, A, K)

    assert bid_depth is not None and ask_depth is not None
    assert bid_depth > ask_depth


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"q_max": 0}, "q_max"), ({"k": 0.0}, "k"), ({"A": -1.0}, "A"), ({"sigma": -1.0}, "sigma")],
)
def test_exact_solution_rejects_invalid_inputs(kwargs: dict[str, float], field: str) -> None:
    args: dict[str, float] = {"q_max": 5, "gamma": GAMMA, "sigma": SIGMA, "A": A, "k": K}

    with pytest.raises(ValueError, match=field):
        glft_exact_solution(**(args | kwargs))  # type: ignore[arg-type]


def test_asymptotic_strategy_quotes_around_mid_and_reports_the_skew() -> None:
    strategy = GLFTAsymptotic(GLFTParams(gamma=GAMMA, ladder=LadderParams(order_qty=1.0)))

    quotes = strategy.quote(make_state(inventory=2.0))

    bid_depth, ask_depth = glft_asymptotic_depths(2.0, SIGMA, GAMMA, K, A)
    assert quotes.bids[0].price == pytest.approx(100.0 - bid_depth)
    assert quotes.asks[0].price == pytest.approx(100.0 + ask_depth)
    assert quotes.reservation_price == pytest.approx(100.0 - 0.5 * (bid_depth - ask_depth))
    assert quotes.reservation_price < 100.0
    assert quotes.half_spread == pytest.approx(0.5 * (bid_depth + ask_depth))


def test_asymptotic_strategy_counts_inventory_in_fills_of_the_order_size() -> None:
    strategy = GLFTAsymptotic(GLFTParams(gamma=GAMMA, ladder=LadderParams(order_qty=0.5)))

    quotes = strategy.quote(make_state(inventory=1.5))

    bid_depth, _ = glft_asymptotic_depths(3.0, SIGMA, GAMMA * 0.5, K, A)
    assert quotes.bids[0].price == pytest.approx(100.0 - bid_depth)


@pytest.mark.parametrize("state", [make_state(a=math.nan), make_state(sigma=-1.0)])
def test_asymptotic_strategy_is_empty_when_an_input_is_unusable(state: MarketState) -> None:
    strategy = GLFTAsymptotic(GLFTParams(gamma=GAMMA, ladder=LadderParams(order_qty=1.0)))

    assert strategy.quote(state).bids == ()


def test_exact_strategy_rounds_inventory_to_whole_fills() -> None:
    params = GLFTExactParams(
        gamma=GAMMA, q_max=10, ladder=LadderParams(order_qty=0.5), horizon="rolling"
    )

    quotes = GLFTExact(params).quote(make_state(inventory=1.1))

    bid_depth, ask_depth = glft_exact_depths(3_600.0, 2, 10, GAMMA * 0.5, SIGMA, A, K)
    assert bid_depth is not None and ask_depth is not None
    assert quotes.bids[0].price == pytest.approx(100.0 - bid_depth)
    assert quotes.asks[0].price == pytest.approx(100.0 + ask_depth)


def test_exact_strategy_at_the_bound_quotes_only_the_reducing_side() -> None:
    params = GLFTExactParams(gamma=GAMMA, q_max=3, ladder=LadderParams(order_qty=1.0))

    quotes = GLFTExact(params).quote(make_state(inventory=3.0))

    assert quotes.bids == ()
    assert len(quotes.asks) == 1
    assert math.isnan(quotes.half_spread)


def test_exact_strategy_diagonalises_only_when_the_estimates_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[float] = []
    original = glft.glft_exact_solution

    def counting(
        q_max: int, gamma: float, sigma: float, A: float, k: float
    ) -> glft.GLFTExactSolution:
        calls.append(sigma)
        return original(q_max, gamma, sigma, A, k)

    monkeypatch.setattr(glft, "glft_exact_solution", counting)
    strategy = GLFTExact(GLFTExactParams(gamma=GAMMA, q_max=5, ladder=LadderParams(1.0)))

    first = strategy.quote(make_state(inventory=1.0, ts_ns=0))
    strategy.quote(make_state(inventory=-2.0, ts_ns=10**9))
    again = strategy.quote(make_state(inventory=1.0, ts_ns=0))
    strategy.quote(make_state(inventory=1.0, sigma=3.0))

    assert calls == [SIGMA, 3.0]
    assert again == first


def test_strategies_satisfy_the_protocol() -> None:
    ladder = LadderParams(order_qty=1.0)
    strategies: list[Strategy] = [
        GLFTAsymptotic(GLFTParams(gamma=GAMMA, ladder=ladder)),
        GLFTExact(GLFTExactParams(gamma=GAMMA, q_max=5, ladder=ladder)),
    ]

    assert [s.name for s in strategies] == ["glft", "glft_exact"]


@pytest.mark.parametrize(
    ("factory", "field"),
    [
        (lambda: GLFTParams(gamma=-1.0, ladder=LadderParams(1.0)), "gamma"),
        (lambda: GLFTParams(gamma=0.0, ladder=LadderParams(1.0), drift=0.1), "drift"),
        (lambda: GLFTParams(gamma=0.1, ladder=LadderParams(1.0), skew_scale=-1), "skew_scale"),
        (lambda: GLFTExactParams(gamma=0.1, q_max=0, ladder=LadderParams(1.0)), "q_max"),
        (
            lambda: GLFTExactParams(gamma=0.1, q_max=3, ladder=LadderParams(1.0), session_s=-1),
            "session_s",
        ),
    ],
)
def test_params_reject_invalid_fields(factory: object, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        factory()  # type: ignore[operator]
