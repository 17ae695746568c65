from __future__ import annotations

import math

import pytest

from strategies.health import HealthLimits, ModelHealth

S = 1_000_000_000


def monitor(**limits: float) -> ModelHealth:
    return ModelHealth(HealthLimits(interval_ns=60 * S, **limits))  # type: ignore[arg-type]


def test_fill_rate_matching_the_forecast_raises_nothing() -> None:
    health = monitor()
    # Both sides at depth 0.02 with A=5, k=50: λ = 5·e^-1 per side, 60 s -> 220.7 expected.
    health.observe(0, bid_depth=0.02, ask_depth=0.02, inventory=0.0, our_spread=0.04,
                   market_spread=0.02, intensity_a=5.0, intensity_k=50.0)
    for _ in range(220):
        health.on_fill()
    assert health.evaluate(60 * S) == []


def test_far_fewer_fills_than_forecast_is_a_warning_with_the_numbers() -> None:
    health = monitor()
    health.observe(0, bid_depth=0.02, ask_depth=0.02, inventory=0.0, our_spread=0.04,
                   market_spread=0.02, intensity_a=5.0, intensity_k=50.0)
    for _ in range(30):
        health.on_fill()
    warnings = health.evaluate(60 * S)
    assert [w.kind for w in warnings] == ["fill_rate"]
    expected = 2 * 5.0 * math.exp(-1.0) * 60
    assert warnings[0].value == pytest.approx(30 / expected)


def test_no_quotes_means_no_forecast_and_no_fill_judgement() -> None:
    health = monitor()
    health.observe(0, bid_depth=math.nan, ask_depth=math.nan, inventory=0.0,
                   our_spread=math.nan, market_spread=0.02, intensity_a=5.0, intensity_k=50.0)
    assert health.evaluate(60 * S) == []


def test_inventory_drift_near_the_cap_is_reported() -> None:
    health = monitor(max_inventory=10.0)
    health.observe(0, bid_depth=math.nan, ask_depth=0.02, inventory=9.5, our_spread=math.nan,
                   market_spread=0.02, intensity_a=5.0, intensity_k=50.0)
    for _ in range(20):
        health.on_fill()
    kinds = {w.kind for w in health.evaluate(60 * S)}
    assert "inventory_drift" in kinds


def test_spread_many_times_the_market_is_reported_and_periods_reset() -> None:
    health = monitor()
    health.observe(0, bid_depth=0.5, ask_depth=0.5, inventory=0.0, our_spread=1.0,
                   market_spread=0.01, intensity_a=5.0, intensity_k=50.0)
    assert "spread_compression" in {w.kind for w in health.evaluate(60 * S)}
    assert health.evaluations == 1
    health.observe(61 * S, bid_depth=0.01, ask_depth=0.01, inventory=0.0, our_spread=0.02,
                   market_spread=0.01, intensity_a=5.0, intensity_k=50.0)
    assert not health.due(100 * S)
    assert health.due(121 * S)
