"""Order-arrival intensity estimators: recovery on synthetic feeds, thin data, windows, units.

Geometry of the synthetic feed (adapters.sim_market.SyntheticL2Market), which is what makes the
recovery tests exact rather than approximate:

* Every ``mid_interval_s`` (100 ms) the book re-centres on ``m = round(S / tick)`` and refills
  every level: bids at ``m - h - j``, asks at ``m + h + j`` ticks (h = half_spread_ticks). Right
  after that the book is full and symmetric, so the observed mid is exactly ``m·tick``, the
  centre the market measures its market orders' depths from.
* A market order reaches a depth drawn Exp(k) from ``m·tick`` and prints at every level up to
  it, so the first market order of a clock step that reaches the level at depth
  ``δ = (h + j)·tick`` prints at that level, and that happens at rate ``A·exp(-k·δ)``: a level
  emptied earlier in the step was emptied by a print at that very level.
* So on the lattice ``δ = (h + j)·tick``, measured from the mid at a clock step, the hazard is
  exactly ``A·exp(-k·δ)`` until the next clock step, when the centre may move. The estimators'
  clocks are aligned to the market's (100 ms): the time-to-fill starts are on the clock with a
  100 ms horizon, the hit-counting intervals are the clock steps. Off the lattice, or with a
  horizon over which the mid moves by about 1/k, λ̂ would be flatter than A·exp(-kδ) (the
  order drifts towards and away from the mid), which is the model's geometry, not estimator
  error. A long horizon is checked separately on a market whose mid does not move.
* The grid stays inside the book (``config.max_depth``): nothing prints deeper.

Hit counting records at most one hit per depth per interval, so its raw rate is
``(1 - exp(-λΔt))/Δt``; the default estimator inverts that, and the raw one is compared with
that expectation (like with like).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.sim_market import SyntheticL2Config, SyntheticL2Market
from bot.book import OrderBook
from bot.errors import ConfigError
from bot.events import NS_PER_SECOND, BookDelta, BookSnapshot, MarketEvent, Side, Trade
from strategies.intensity import (
    HitCountEstimator,
    IntensityEstimator,
    IntensityFit,
    IntensitySide,
    TimeToFillEstimator,
    _assemble,
    fit_log_linear,
)
from strategies.volatility import VolatilityEstimator

S = NS_PER_SECOND
CLOCK_NS = 100_000_000  # the synthetic market's mid clock (mid_interval_s = 0.1)

Estimator = TimeToFillEstimator | HitCountEstimator
SIDES: tuple[IntensitySide, ...] = ("bid", "ask", "both")


def lattice(config: SyntheticL2Config, n: int) -> list[float]:
    """The first ``n`` level depths from the book centre, price: ``(h + j)·tick``."""
    depths = [(config.half_spread_ticks + j) * config.tick for j in range(n)]
    assert depths[-1] <= config.max_depth + 1e-12, "grid deeper than the synthetic book"
    return depths


def drive(
    events: Iterable[MarketEvent],
    estimators: Sequence[Estimator],
    sigma: VolatilityEstimator | None = None,
) -> int:
    """Feed a stream the way the engine does: a real book, its mid after every book event."""
    book: OrderBook | None = None
    ts = 0
    for event in events:
        ts = event.ts_local_ns
        if isinstance(event, Trade):
            for estimator in estimators:
                estimator.update_trade(event)
            continue
        assert isinstance(event, BookSnapshot | BookDelta)
        if book is None:
            book = OrderBook(event.symbol)
        book.apply(event)
        mid = book.mid
        for estimator in estimators:
            estimator.update_mid(ts, mid)
        if sigma is not None:
            sigma.update(ts, mid)
    return ts


def truth(config: SyntheticL2Config, side: IntensitySide) -> tuple[float, float]:
    return config.bid_intensity if side == "bid" else config.ask_intensity


def assert_recovered(fit: IntensityFit, a: float, k: float) -> None:
    assert fit.ok, fit.reason
    got_a, got_k, r2 = fit.A, fit.k, fit.r2
    assert got_a is not None and got_k is not None and r2 is not None
    assert got_a == pytest.approx(a, rel=0.10), (fit.side, got_a, a)
    assert got_k == pytest.approx(k, rel=0.05), (fit.side, got_k, k)
    assert r2 > 0.99


# ------------------------------------------------------------------------------------------
# Recovery on synthetic feeds
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    config: SyntheticL2Config
    n_depths: int  # lattice depths fitted: down to a rate of a few hundredths per second


CASES = [
    Case("a5_k50_tick0.01", SyntheticL2Config(duration_s=7200.0, sigma=0.05, seed=21), 12),
    # A slow decay needs a deep grid and a deep book; a two-tick half-spread moves the lattice.
    Case(
        "a2_k20_halfspread2",
        SyntheticL2Config(
            duration_s=7200.0,
            intensity_a=2.0,
            intensity_k=20.0,
            sigma=0.1,
            levels=30,
            half_spread_ticks=2,
            seed=22,
        ),
        20,
    ),
    Case(
        "asymmetric_bid_a3_k40_ask_a6_k60",
        SyntheticL2Config(
            duration_s=7200.0,
            sigma=0.03,
            bid_intensity_a=3.0,
            bid_intensity_k=40.0,
            ask_intensity_a=6.0,
            ask_intensity_k=60.0,
            seed=23,
        ),
        12,
    ),
]


@dataclass
class Calibrated:
    case: Case
    time_to_fill: TimeToFillEstimator
    hits: HitCountEstimator
    raw_hits: HitCountEstimator
    sigma: VolatilityEstimator
    end_ns: int
    cpu_s: float


@pytest.fixture(scope="module", params=CASES, ids=[c.name for c in CASES])
def calibrated(request: pytest.FixtureRequest) -> Calibrated:
    """One pass over two simulated hours per case, all estimators fed together."""
    case: Case = request.param
    depths = lattice(case.config, case.n_depths)
    time_to_fill = TimeToFillEstimator(depths, start_interval_ns=CLOCK_NS, horizon_ns=CLOCK_NS)
    hits = HitCountEstimator(depths, interval_ns=CLOCK_NS)
    raw_hits = HitCountEstimator(depths, interval_ns=CLOCK_NS, correct_saturation=False)
    sigma = VolatilityEstimator(interval_ns=S, window=100_000)
    started = time.process_time()
    end_ns = drive(SyntheticL2Market(case.config).events(), [time_to_fill, hits, raw_hits], sigma)
    cpu_s = time.process_time() - started
    return Calibrated(case, time_to_fill, hits, raw_hits, sigma, end_ns, cpu_s)


@pytest.mark.parametrize("side", ["bid", "ask"])
def test_time_to_fill_recovers_each_sides_a_within_10pct_and_k_within_5pct(
    calibrated: Calibrated, side: IntensitySide
) -> None:
    fit = calibrated.time_to_fill.fit(calibrated.end_ns + 1, side)

    assert_recovered(fit, *truth(calibrated.case.config, side))
    assert fit.points == calibrated.case.n_depths
    assert fit.window_s == pytest.approx(7200.0, abs=0.2)


@pytest.mark.parametrize("side", ["bid", "ask"])
def test_hit_counting_recovers_each_sides_a_within_10pct_and_k_within_5pct(
    calibrated: Calibrated, side: IntensitySide
) -> None:
    fit = calibrated.hits.fit(calibrated.end_ns + 1, side)

    assert_recovered(fit, *truth(calibrated.case.config, side))
    assert fit.points == calibrated.case.n_depths


def test_pooled_sides_recover_a_and_k_or_lie_between_the_sides(calibrated: Calibrated) -> None:
    config = calibrated.case.config
    now = calibrated.end_ns + 1

    for estimator in (calibrated.time_to_fill, calibrated.hits):
        both = estimator.fit(now, "both")
        if config.bid_intensity == config.ask_intensity:
            assert_recovered(both, *config.bid_intensity)
            continue
        # Two different exponentials pooled are not one: each pooled rate is between the sides'.
        bid, ask = estimator.fit(now, "bid"), estimator.fit(now, "ask")
        for pooled, b, a in zip(both.rates, bid.rates, ask.rates, strict=True):
            assert min(a, b) <= pooled <= max(a, b)


def test_raw_hit_counting_measures_the_saturated_rate_one_hit_per_interval(
    calibrated: Calibrated,
) -> None:
    # Like with like: an interval records a hit at δ with probability 1 - exp(-λ(δ)·Δt).
    dt = CLOCK_NS / S
    for side in SIDES[:2]:
        fit = calibrated.raw_hits.fit(calibrated.end_ns + 1, side)
        a, k = truth(calibrated.case.config, side)
        expected = [(1.0 - math.exp(-a * math.exp(-k * d) * dt)) / dt for d in fit.depths]
        want_a, want_k, _ = fit_log_linear(fit.depths, expected, fit.weights)

        assert_recovered(fit, want_a, want_k)
        # Near the touch the raw rate is 6% (λΔt = 0.13) to 16% (0.36) short of λ.
        assert fit.rates[0] == pytest.approx(expected[0], rel=0.03)


def test_sigma_on_a_one_second_clock_is_within_5pct(calibrated: Calibrated) -> None:
    # The book mid is S rounded to the tick: that adds tick²/6 to the variance of a change,
    # under 1% of σ for these σ (3 to 10 ticks per √s), well inside the tolerance.
    assert calibrated.sigma.ready
    assert calibrated.sigma.value == pytest.approx(calibrated.case.config.sigma, rel=0.05)


def test_two_simulated_hours_calibrate_in_a_few_cpu_seconds(calibrated: Calibrated) -> None:
    assert calibrated.cpu_s < 10.0


def test_time_to_fill_with_overlapping_starts_and_long_horizon_recovers_a_and_k() -> None:
    # A mid that never moves keeps each virtual order at its depth for its whole life, so a
    # 30 s horizon with a start every second (30 starts open at once, per side) is exact.
    config = SyntheticL2Config(duration_s=7200.0, sigma=0.0, seed=31)
    estimator = TimeToFillEstimator(
        lattice(config, 8),
        start_interval_ns=S,
        horizon_ns=30 * S,
        require_mid_change=False,
    )

    end_ns = drive(SyntheticL2Market(config).events(), [estimator])

    for side in SIDES:
        fit = estimator.fit(end_ns + 1, side)
        assert_recovered(fit, config.intensity_a, config.intensity_k)


# ------------------------------------------------------------------------------------------
# Exact bookkeeping on hand-made feeds
# ------------------------------------------------------------------------------------------


def trade(ts_ns: int, price: float, aggressor: Side) -> Trade:
    return Trade(ts_ns, ts_ns, "X", price, 1.0, aggressor)


def test_time_to_fill_counts_hits_exposure_and_censoring_per_start() -> None:
    estimator = TimeToFillEstimator(
        [1.0, 2.0, 3.0], start_interval_ns=S, horizon_ns=10 * S, min_hits=1, min_points=2
    )
    estimator.update_mid(0, 100.0)
    # Executes the virtual ask at depth 1 of the start at 0 s only (101.5 < 100 + 2).
    estimator.update_trade(trade(S // 2, 101.5, Side.BUY))
    # Executes every virtual bid of the starts at 0, 1 and 2 s (97 <= 100 - 3).
    estimator.update_trade(trade(5 * S // 2, 97.0, Side.SELL))

    ask = estimator.fit(3 * S, "ask")
    bid = estimator.fit(3 * S, "bid")

    # Ask: start 0 waited 0.5 s at depth 1 and is open 3 s deeper; starts 1 and 2 open 2 s, 1 s.
    assert ask.exposure_s == pytest.approx((3.5, 6.0, 6.0))
    assert ask.rates == pytest.approx((1 / 3.5, 0.0, 0.0))
    assert ask.hits == 1
    assert bid.exposure_s == pytest.approx((4.5, 4.5, 4.5))
    assert bid.hits == 9
    assert bid.rates == pytest.approx((3 / 4.5, 3 / 4.5, 3 / 4.5))

    later = estimator.fit(12 * S, "ask")

    # Starts 0 .. 11 (the mid carried forward); each censored at 10 s or open until 12 s.
    open_or_censored = sum(min(12 - s, 10) for s in range(1, 12))
    assert later.exposure_s == pytest.approx(
        (0.5 + open_or_censored, 10.0 + open_or_censored, 10.0 + open_or_censored)
    )


def test_time_to_fill_ignores_trades_before_the_start_and_at_its_timestamp() -> None:
    estimator = TimeToFillEstimator([1.0, 2.0], start_interval_ns=S, horizon_ns=S, min_hits=1)
    estimator.update_mid(0, 100.0)
    estimator.update_trade(trade(0, 110.0, Side.BUY))  # at the start: not after it

    fit = estimator.fit(S // 2, "ask")

    assert fit.hits == 0
    assert fit.exposure_s == pytest.approx((0.5, 0.5))


def test_hit_counting_measures_each_interval_from_the_mid_at_its_start() -> None:
    estimator = HitCountEstimator(
        [1.0, 2.0, 3.0], interval_ns=S, correct_saturation=False, min_hits=1, min_points=2
    )
    estimator.update_mid(0, 100.0)
    estimator.update_trade(trade(S // 4, 101.0, Side.BUY))
    estimator.update_trade(trade(S // 2, 102.5, Side.BUY))  # deepest of (0, 1 s]: 2.5
    estimator.update_trade(trade(S // 2, 99.0, Side.SELL))
    estimator.update_mid(3 * S // 2, 101.0)
    estimator.update_trade(trade(17 * S // 10, 101.2, Side.BUY))  # from 100, not 101: 1.2
    estimator.update_trade(trade(5 * S // 2, 102.0, Side.BUY))  # (2, 3 s] from 101: 1.0

    ask = estimator.fit(7 * S // 2, "ask")
    bid = estimator.fit(7 * S // 2, "bid")
    both = estimator.fit(7 * S // 2, "both")

    assert ask.window_s == 3.0
    assert ask.rates == pytest.approx((1.0, 1 / 3, 0.0))
    assert bid.rates == pytest.approx((1 / 3, 0.0, 0.0))
    assert both.rates == pytest.approx((4 / 6, 1 / 6, 0.0))
    assert both.exposure_s == pytest.approx((6.0, 6.0, 6.0))


def test_hit_counting_leaves_out_a_depth_hit_in_every_interval_and_says_so() -> None:
    estimator = HitCountEstimator([1.0, 2.0, 3.0], interval_ns=S, min_hits=1, min_points=3)
    for i in range(10):
        estimator.update_mid(i * S, 100.0 + (i % 2))
        estimator.update_trade(
            trade(i * S + 1, 100.0 + (i % 2) + (2.0 if i < 5 else 1.0), Side.BUY)
        )

    fit = estimator.fit(10 * S + 1, "ask")

    assert fit.weights[0] == 0.0
    assert fit.rates[0] == pytest.approx(1.0)  # the hits/seconds floor, for the plot
    assert fit.status == "not_enough_data"
    assert "hit in every interval" in fit.reason


# ------------------------------------------------------------------------------------------
# Trailing windows
# ------------------------------------------------------------------------------------------


def replay_after(
    fresh: Estimator, events: list[MarketEvent], cutoff_ns: int, prime_ns: int
) -> None:
    """Feed ``fresh`` only the events after ``cutoff_ns``, and at ``prime_ns`` the mid then."""
    book: OrderBook | None = None
    primed = False
    for event in events:
        ts = event.ts_local_ns
        if ts > cutoff_ns and not primed:
            assert book is not None
            fresh.update_mid(prime_ns, book.mid)  # the mid standing at the window's start
            primed = True
        if isinstance(event, Trade):
            if ts > cutoff_ns:
                fresh.update_trade(event)
            continue
        assert isinstance(event, BookSnapshot | BookDelta)
        if book is None:
            book = OrderBook(event.symbol)
        book.apply(event)
        if ts > cutoff_ns:
            fresh.update_mid(ts, book.mid)


MakeEstimator = Callable[[Sequence[float], int | None], Estimator]


def time_to_fill_1s_5s(depths: Sequence[float], window_ns: int | None) -> Estimator:
    return TimeToFillEstimator(depths, start_interval_ns=S, horizon_ns=5 * S, window_ns=window_ns)


def time_to_fill_on_the_clock(depths: Sequence[float], window_ns: int | None) -> Estimator:
    return TimeToFillEstimator(
        depths, start_interval_ns=CLOCK_NS, horizon_ns=CLOCK_NS, window_ns=window_ns
    )


def hit_count_on_the_clock(depths: Sequence[float], window_ns: int | None) -> Estimator:
    return HitCountEstimator(depths, interval_ns=CLOCK_NS, window_ns=window_ns)


@pytest.mark.parametrize(
    ("make", "cutoff_ns", "prime_ns"),
    [
        # Starts after 480 s are in the window; the fresh one's first start is at 481 s.
        (time_to_fill_1s_5s, 480 * S, 480 * S + 1),
        # The window is the 1200 closed intervals before the open one, (599.9 s, 600 s].
        (hit_count_on_the_clock, 4799 * CLOCK_NS, 4799 * CLOCK_NS),
    ],
)
def test_a_trailing_window_holds_exactly_what_a_fresh_estimator_sees(
    make: MakeEstimator, cutoff_ns: int, prime_ns: int
) -> None:
    config = SyntheticL2Config(duration_s=600.0, seed=41)
    events = list(SyntheticL2Market(config).events())
    depths = lattice(config, 10)
    windowed = make(depths, 120 * S)
    fresh = make(depths, None)
    drive(events, [windowed])
    replay_after(fresh, events, cutoff_ns, prime_ns)
    now = 600 * S

    fit = windowed.fit(now, "both")
    expected = fresh.fit(now, "both")

    assert fit.ok
    assert fit.window_s == pytest.approx(120.0)
    assert fit.hits == expected.hits
    assert fit.rates == pytest.approx(expected.rates, rel=1e-12)
    assert fit.exposure_s == pytest.approx(expected.exposure_s, rel=1e-12)
    assert (fit.A, fit.k) == pytest.approx((expected.A, expected.k), rel=1e-9)


# ------------------------------------------------------------------------------------------
# Thin data: a clear reason, never NaN, never k <= 0, never an exception
# ------------------------------------------------------------------------------------------


def make_both(min_hits: int = 20, min_points: int = 3) -> list[Estimator]:
    depths = [0.01, 0.02, 0.03, 0.04]
    return [
        TimeToFillEstimator(
            depths,
            start_interval_ns=S,
            horizon_ns=10 * S,
            min_hits=min_hits,
            min_points=min_points,
        ),
        HitCountEstimator(depths, interval_ns=S, min_hits=min_hits, min_points=min_points),
    ]


def play(estimator: Estimator, seconds: int, trades: Sequence[Trade] = ()) -> None:
    """Feed a mid moving by a tick every half second from 100, and ``trades``, in time order."""
    pending = sorted(trades, key=lambda t: t.ts_local_ns)
    j = 0
    for i in range(seconds * 2):
        ts = i * S // 2
        while j < len(pending) and pending[j].ts_local_ns < ts:
            estimator.update_trade(pending[j])
            j += 1
        estimator.update_mid(ts, 100.0 + 0.01 * (i % 3))
    for t in pending[j:]:
        estimator.update_trade(t)


def assert_refused(fit: IntensityFit, words: str) -> None:
    assert fit.status == "not_enough_data"
    assert fit.reason.startswith("not enough data: ")
    assert words in fit.reason, fit.reason
    assert fit.A is None and fit.k is None and fit.r2 is None
    numbers = (fit.window_s, *fit.rates, *fit.weights, *fit.exposure_s)
    assert all(math.isfinite(x) and x >= 0.0 for x in numbers)


@pytest.mark.parametrize("side", SIDES)
def test_no_event_at_all_means_no_mid(side: IntensitySide) -> None:
    for estimator in make_both():
        assert_refused(estimator.fit(10 * S, side), "no mid")


def test_trades_without_a_mid_are_refused_as_no_mid() -> None:
    for estimator in make_both():
        for i in range(100):
            estimator.update_trade(trade(i * S // 10, 100.0 + 0.01 * (i % 4), Side.BUY))
        assert_refused(estimator.fit(10 * S, "ask"), "no mid")


def test_a_moving_mid_without_trades_means_no_trades() -> None:
    for estimator in make_both():
        play(estimator, 60)
        for side in SIDES:
            assert_refused(estimator.fit(60 * S, side), "no trades")


def test_a_single_trade_is_refused_even_with_no_hit_threshold() -> None:
    for estimator in make_both(min_hits=1, min_points=2):
        play(estimator, 60, [trade(30 * S + 1, 99.96, Side.SELL)])
        assert_refused(estimator.fit(60 * S, "bid"), "only one trade")


def test_a_frozen_mid_is_refused_as_a_stale_book() -> None:
    for estimator in make_both(min_hits=1, min_points=2):
        estimator.update_mid(0, 100.0)
        for i in range(1, 600):
            estimator.update_mid(i * S // 10, 100.0)
            estimator.update_trade(trade(i * S // 10 + 1, 100.01 + 0.01 * (i % 3), Side.BUY))
        assert_refused(estimator.fit(60 * S, "ask"), "mid did not change")


def test_trades_only_at_the_touch_give_too_few_depths() -> None:
    for estimator in make_both():
        # 0.025 from the mid at most: only the depths 0.01 and 0.02 are ever reached.
        play(estimator, 60, [trade(i * S // 4 + 1, 100.025, Side.BUY) for i in range(200)])
        fit = estimator.fit(60 * S, "ask")
        assert_refused(fit, "depths with hits, need 3")
        assert fit.points < 3


def test_too_few_hits_are_refused_with_the_threshold() -> None:
    for estimator in make_both(min_hits=1000):
        trades = [trade(i * S + 1, 100.0 + 0.01 * (1 + i % 4), Side.BUY) for i in range(50)]
        play(estimator, 60, trades)
        assert_refused(estimator.fit(60 * S, "ask"), "need 1000")


def test_trades_that_sweep_the_whole_grid_give_flat_rates_and_no_fit() -> None:
    for estimator in make_both(min_hits=1):
        # One interval in two is hit, at every depth alike.
        play(estimator, 60, [trade(2 * i * S + 1, 101.0, Side.BUY) for i in range(30)])
        assert_refused(estimator.fit(60 * S, "ask"), "rates do not decrease with depth")


def test_rates_rising_with_depth_are_refused_with_k_not_positive() -> None:
    # The estimators' rates never rise with depth (a hit at δ is a hit at every shallower
    # depth, over the same or less exposure): only rates from elsewhere reach this guard.
    depths = (0.01, 0.02, 0.03)

    fit = _assemble(
        "ask", depths, [10, 9, 50], [1.0, 0.9, 5.0], [True] * 3, [1.0] * 3, 1.0, 69, None, 1, 2
    )

    assert_refused(fit, "fitted k <= 0 (rates do not decay with depth)")


def test_constructors_reject_bad_arguments() -> None:
    with pytest.raises(ValueError, match="exactly one of depths and max_depth"):
        TimeToFillEstimator()
    with pytest.raises(ValueError, match="distinct"):
        HitCountEstimator([0.01, 0.01])
    with pytest.raises(ValueError, match="horizon_ns"):
        TimeToFillEstimator([0.01, 0.02], horizon_ns=0)
    with pytest.raises(ValueError, match="window_ns"):
        HitCountEstimator([0.01, 0.02], interval_ns=S, window_ns=S // 2)
    with pytest.raises(ValueError, match="min_points"):
        HitCountEstimator([0.01, 0.02], min_points=1)
    with pytest.raises(ValueError, match="side"):
        HitCountEstimator([0.01, 0.02]).fit(0, "mid")  # type: ignore[arg-type]


def test_max_depth_builds_an_even_grid_without_zero() -> None:
    estimator = TimeToFillEstimator(max_depth=0.2, n_depths=4)

    assert estimator.depths == pytest.approx((0.05, 0.1, 0.15, 0.2))


# ------------------------------------------------------------------------------------------
# The log-linear fit
# ------------------------------------------------------------------------------------------


def test_fit_log_linear_returns_the_parameters_of_exact_rates_with_r2_one() -> None:
    depths = [0.01 * j for j in range(1, 11)]
    rates = [5.0 * math.exp(-50.0 * d) for d in depths]

    a, k, r2 = fit_log_linear(depths, rates, [1000.0 / (j + 1) for j in range(10)])

    assert a == pytest.approx(5.0, rel=1e-12)
    assert k == pytest.approx(50.0, rel=1e-12)
    assert r2 == pytest.approx(1.0, abs=1e-12)


@given(
    a=st.floats(0.01, 1000.0),
    k=st.floats(0.1, 5000.0),
    step=st.floats(1e-4, 0.1),
    n=st.integers(2, 30),
)
def test_fit_log_linear_recovers_any_exponential(a: float, k: float, step: float, n: int) -> None:
    depths = [step * (j + 1) for j in range(n)]
    rates = [a * math.exp(-k * d) for d in depths]
    if min(rates) < 1e-300:
        return  # underflow: not a rate a market shows

    got_a, got_k, r2 = fit_log_linear(depths, rates, [1.0] * n)

    assert got_a == pytest.approx(a, rel=1e-6)
    assert got_k == pytest.approx(k, rel=1e-6)
    assert r2 == pytest.approx(1.0, abs=1e-9)


def test_fit_log_linear_skips_zero_rates_and_weights_by_hits() -> None:
    depths = [1.0, 2.0, 3.0, 4.0]
    # The last point is off the line; with almost no weight it barely moves the fit.
    rates = [math.exp(-1.0), math.exp(-2.0), math.exp(-2.0), 0.0]

    _, k_light, _ = fit_log_linear(depths, rates, [1e6, 1e6, 1e-6, 5.0])
    _, k_even, r2_even = fit_log_linear(depths, rates, [1.0, 1.0, 1.0, 5.0])

    assert k_light == pytest.approx(1.0, rel=1e-6)
    assert k_even == pytest.approx(0.5)
    assert 0.0 < r2_even < 1.0


def test_fit_log_linear_needs_two_usable_depths() -> None:
    with pytest.raises(ValueError, match="two depths"):
        fit_log_linear([1.0, 2.0], [1.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="same length"):
        fit_log_linear([1.0, 2.0], [1.0], [1.0])


# ------------------------------------------------------------------------------------------
# Units: the same feed in ticks
# ------------------------------------------------------------------------------------------


def in_ticks(events: Iterable[MarketEvent], tick: float) -> Iterable[tuple[int, float | Trade]]:
    """Yield (ts, mid in ticks) for book events and trades with prices in ticks."""
    book: OrderBook | None = None
    for event in events:
        if isinstance(event, Trade):
            yield event.ts_local_ns, dataclasses.replace(event, price=event.price / tick)
            continue
        assert isinstance(event, BookSnapshot | BookDelta)
        if book is None:
            book = OrderBook(event.symbol)
        book.apply(event)
        yield event.ts_local_ns, book.mid / tick


@pytest.mark.parametrize("make", [time_to_fill_on_the_clock, hit_count_on_the_clock])
def test_a_feed_in_ticks_gives_k_per_tick_and_the_same_a(make: MakeEstimator) -> None:
    config = SyntheticL2Config(duration_s=900.0, tick=0.05, intensity_k=12.0, seed=51)
    tick = config.tick
    depths = lattice(config, 8)
    price_units = make(depths, None)
    tick_units = make([round(d / tick) for d in depths], None)
    events = list(SyntheticL2Market(config).events())

    end_ns = drive(events, [price_units])
    for ts, item in in_ticks(events, tick):
        if isinstance(item, Trade):
            tick_units.update_trade(item)
        else:
            tick_units.update_mid(ts, item)

    for side in SIDES:
        per_price = price_units.fit(end_ns + 1, side)
        per_tick = tick_units.fit(end_ns + 1, side)
        assert per_price.A is not None and per_price.k is not None
        a_per_tick, k_per_tick = per_tick.A, per_tick.k
        assert a_per_tick is not None and k_per_tick is not None
        assert per_tick.hits == per_price.hits
        assert a_per_tick == pytest.approx(per_price.A, rel=1e-9)
        assert k_per_tick == pytest.approx(per_price.k * tick, rel=1e-9)
        assert k_per_tick == pytest.approx(config.intensity_k * tick, rel=0.1)


# ------------------------------------------------------------------------------------------
# The synthetic market's per-side intensities
# ------------------------------------------------------------------------------------------


def test_per_side_overrides_equal_to_the_defaults_replay_the_same_stream() -> None:
    plain = SyntheticL2Config(duration_s=30.0, seed=7)
    explicit = dataclasses.replace(
        plain,
        bid_intensity_a=plain.intensity_a,
        bid_intensity_k=plain.intensity_k,
        ask_intensity_a=plain.intensity_a,
        ask_intensity_k=plain.intensity_k,
    )

    assert list(SyntheticL2Market(plain).events()) == list(SyntheticL2Market(explicit).events())


def test_one_sided_market_only_prints_on_that_side() -> None:
    config = SyntheticL2Config(duration_s=60.0, bid_intensity_a=0.0, seed=8)

    trades = [e for e in SyntheticL2Market(config).events() if isinstance(e, Trade)]

    assert trades
    assert {t.aggressor for t in trades} == {Side.BUY}
    assert config.bid_intensity == (0.0, config.intensity_k)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("bid_intensity_a", -1.0),
        ("ask_intensity_a", math.nan),
        ("bid_intensity_k", 0.0),
        ("ask_intensity_k", -5.0),
    ],
)
def test_per_side_overrides_reject_bad_values_naming_the_field(field: str, value: float) -> None:
    overrides: dict[str, Any] = {field: value}
    with pytest.raises(ConfigError) as info:
        SyntheticL2Config(**overrides)
    assert info.value.field == field


def test_both_estimators_satisfy_the_estimator_protocol() -> None:
    estimators: list[IntensityEstimator] = [
        TimeToFillEstimator([0.01, 0.02]),
        HitCountEstimator([0.01, 0.02]),
    ]

    assert all(e.fit(0).status == "not_enough_data" for e in estimators)
