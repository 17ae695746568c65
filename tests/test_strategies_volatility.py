"""Fixed-clock volatility estimation of the mid."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.events import NS_PER_SECOND
from strategies.volatility import VolatilityEstimator

FINE_STEP_NS = 10_000_000  # the simulated path moves every 10 ms


def brownian_mids(sigma: float, seconds: int, seed: int) -> np.ndarray:
    """A Brownian mid around 1000 on a 10 ms grid; sigma in price per sqrt(second)."""
    rng = np.random.default_rng(seed)
    steps = seconds * NS_PER_SECOND // FINE_STEP_NS
    increments = rng.normal(0.0, sigma * math.sqrt(FINE_STEP_NS / NS_PER_SECOND), steps)
    return 1000.0 + np.cumsum(increments)


def feed(estimator: VolatilityEstimator, mids: np.ndarray, every: int) -> None:
    """Show the estimator every ``every``-th point of the path (a message rate)."""
    for i in range(0, len(mids), every):
        estimator.update(i * FINE_STEP_NS, float(mids[i]))


def naive_changes(events: list[tuple[int, float]], interval_ns: int) -> np.ndarray:
    """Resample by brute force: the mid at each boundary before the last event, differenced."""
    first_ts = events[0][0]
    last_ts = events[-1][0]
    boundary = -(-first_ts // interval_ns) * interval_ns
    samples: list[float] = []
    while boundary < last_ts:
        samples.append([mid for ts, mid in events if ts <= boundary][-1])
        boundary += interval_ns
    return np.diff(samples)


def random_walk_events(steps: list[tuple[int, float]]) -> list[tuple[int, float]]:
    events: list[tuple[int, float]] = []
    ts_ns, mid = 123, 100.0
    for gap_ns, move in steps:
        ts_ns += gap_ns
        mid += move
        events.append((ts_ns, mid))
    return events


event_steps = st.lists(
    st.tuples(st.integers(0, 5 * NS_PER_SECOND), st.floats(-3.0, 3.0, allow_subnormal=False)),
    min_size=2,
    max_size=60,
)


def test_recovers_sigma_of_a_brownian_mid_sampled_with_many_events_per_interval() -> None:
    mids = brownian_mids(sigma=2.0, seconds=4_000, seed=7)
    estimator = VolatilityEstimator(window=4_000)

    feed(estimator, mids, every=1)

    assert estimator.ready
    assert estimator.value == pytest.approx(2.0, rel=0.05)


def test_estimate_does_not_depend_on_the_message_rate() -> None:
    mids = brownian_mids(sigma=2.0, seconds=4_000, seed=11)
    busy = VolatilityEstimator(window=4_000)
    quiet = VolatilityEstimator(window=4_000)

    feed(busy, mids, every=1)  # 100 messages per second
    feed(quiet, mids, every=37)  # under 3 messages per second

    assert quiet.value == pytest.approx(busy.value, rel=0.05)
    assert quiet.value == pytest.approx(2.0, rel=0.05)


def test_ewma_recovers_sigma_of_a_brownian_mid() -> None:
    mids = brownian_mids(sigma=0.5, seconds=4_000, seed=3)
    estimator = VolatilityEstimator(ewma_halflife=1_000)

    feed(estimator, mids, every=3)

    assert estimator.value == pytest.approx(0.5, rel=0.05)


def test_value_by_hand_from_three_boundaries() -> None:
    # Boundaries at 1 s, 2 s, 3 s see mids 100, 101, 103: changes 1 and 2, std 0.7071.
    estimator = VolatilityEstimator(window=10, min_samples=2)

    for ts_s, mid in [(0.5, 100.0), (1.5, 101.0), (2.5, 103.0), (3.5, 103.0)]:
        estimator.update(int(ts_s * NS_PER_SECOND), mid)

    assert estimator.samples == 2
    assert estimator.value == pytest.approx(math.sqrt(0.5))


def test_value_is_scaled_to_per_sqrt_second() -> None:
    # The same changes every 0.25 s mean four times the variance per second.
    estimator = VolatilityEstimator(interval_ns=NS_PER_SECOND // 4, window=10, min_samples=2)

    for ts_s, mid in [(0.1, 100.0), (0.3, 101.0), (0.6, 103.0), (0.8, 103.0)]:
        estimator.update(int(ts_s * NS_PER_SECOND), mid)

    assert estimator.value == pytest.approx(2.0 * math.sqrt(0.5))


def test_not_ready_until_min_samples() -> None:
    estimator = VolatilityEstimator(min_samples=5)

    for second in range(5):
        estimator.update(second * NS_PER_SECOND + 1, 100.0 + second)

    assert estimator.samples == 3
    assert not estimator.ready
    assert math.isnan(estimator.value)
    assert estimator.current is None


@given(steps=event_steps, halflife=st.one_of(st.none(), st.integers(1, 20)))
def test_current_is_value_once_ready_after_every_update(
    steps: list[tuple[int, float]], halflife: int | None
) -> None:
    # current is kept by the updates; a fresh computation from the sums must agree with it at
    # every point, including the updates that record several changes at once (gaps).
    estimator = VolatilityEstimator(window=5, min_samples=3, ewma_halflife=halflife)

    for ts_ns, mid in random_walk_events(steps):
        estimator.update(ts_ns, mid)
        if estimator.ready:
            assert estimator.current is not None
            assert estimator.current == estimator._estimate()
        else:
            assert estimator.current is None


def test_a_long_gap_carries_the_mid_forward_in_constant_time() -> None:
    estimator = VolatilityEstimator(window=300)
    estimator.update(0, 100.0)
    estimator.update(NS_PER_SECOND // 2, 101.0)
    started = time.perf_counter()

    estimator.update(10**12 * NS_PER_SECOND, 105.0)  # 30 000 years later

    assert time.perf_counter() - started < 0.1
    assert estimator.samples == 300
    assert estimator.value == 0.0  # the only move fell out of the window


def test_ewma_decays_over_a_gap_in_constant_time() -> None:
    estimator = VolatilityEstimator(ewma_halflife=10, min_samples=2)
    for second in range(50):
        estimator.update(second * NS_PER_SECOND + 1, 100.0 + (second % 2))
    before = estimator.value

    estimator.update(10**15 * NS_PER_SECOND, 100.0)

    assert before > 0.5
    assert estimator.value < 1e-6


@pytest.mark.parametrize("mid", [math.nan, math.inf, 0.0, -5.0])
def test_ignores_unusable_mids(mid: float) -> None:
    clean = VolatilityEstimator(window=10, min_samples=2)
    dirty = VolatilityEstimator(window=10, min_samples=2)
    events = [(0, 100.0), (NS_PER_SECOND + 1, 101.0), (3 * NS_PER_SECOND + 1, 103.0)]
    for ts_ns, good_mid in events:
        clean.update(ts_ns, good_mid)
        dirty.update(ts_ns, good_mid)

    dirty.update(4 * NS_PER_SECOND + 1, mid)
    clean.update(5 * NS_PER_SECOND + 1, 102.0)
    dirty.update(5 * NS_PER_SECOND + 1, 102.0)

    assert dirty.samples == clean.samples == 5
    assert dirty.value == clean.value


@given(steps=event_steps, window=st.integers(2, 12))
def test_rolling_estimate_matches_brute_force_resampling(
    steps: list[tuple[int, float]], window: int
) -> None:
    events = random_walk_events(steps)
    estimator = VolatilityEstimator(window=window, min_samples=2)

    for ts_ns, mid in events:
        estimator.update(ts_ns, mid)

    changes = naive_changes(events, NS_PER_SECOND)[-window:]
    assert estimator.samples == len(changes)
    if len(changes) < 2:
        assert math.isnan(estimator.value)
    else:
        expected = float(np.std(changes, ddof=1))
        assert estimator.value == pytest.approx(expected, rel=1e-6, abs=1e-9)


@given(steps=event_steps, halflife=st.integers(1, 20))
def test_ewma_estimate_matches_brute_force_weights(
    steps: list[tuple[int, float]], halflife: int
) -> None:
    events = random_walk_events(steps)
    estimator = VolatilityEstimator(min_samples=2, ewma_halflife=halflife)

    for ts_ns, mid in events:
        estimator.update(ts_ns, mid)

    changes = naive_changes(events, NS_PER_SECOND)
    assert estimator.samples == len(changes)
    if len(changes) < 2:
        assert math.isnan(estimator.value)
    else:
        weights = 0.5 ** (np.arange(len(changes))[::-1] / halflife)
        expected = math.sqrt(float(np.sum(weights * changes**2) / np.sum(weights)))
        assert estimator.value == pytest.approx(expected, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"interval_ns": 0}, "interval_ns"),
        ({"window": 1}, "window"),
        ({"min_samples": 1}, "min_samples"),
        ({"window": 10, "min_samples": 11}, "min_samples"),
        ({"ewma_halflife": 0}, "ewma_halflife"),
    ],
)
def test_rejects_invalid_settings(kwargs: dict[str, int], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        VolatilityEstimator(**kwargs)
