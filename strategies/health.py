"""Model-health monitor: is the market still the one the quoting model assumes?

The seed's "how to detect model breakdown", made measurable:

* fill rate: our realised fills against the fills the model forecasts for the quotes we
  actually had resting, ``∫ λ(δ(t)) dt`` with ``λ(δ) = A·exp(−k·δ)`` and ``δ`` the distance of
  each live quote from the mid. Far fewer fills than forecast: the market is less liquid than
  A and k say; far more: we are being picked off (adverse selection) or k is too small;
* inventory drift: the mean inventory over the period stays near the cap (one-way flow the
  skew does not balance);
* spread compression: our quoted spread is many times the market's (competition tightened,
  our parameters are stale); the ratio is averaged over the observations (one per requote).

Pure: time comes in with the calls, nothing is logged; the engine reports and acts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HealthWarning:
    """One deviation beyond its bound, with the numbers that show it."""

    kind: str
    message: str
    value: float
    bound: float


@dataclass(frozen=True, slots=True)
class HealthLimits:
    """Bounds of the monitor (see ``bot.settings.HealthSettings``)."""

    interval_ns: int
    fill_rate_tolerance: float = 0.5
    min_expected_fills: float = 5.0
    inventory_drift: float = 0.8
    spread_ratio: float = 25.0
    max_inventory: float = math.inf


class ModelHealth:
    """Accumulate forecast and realised fills, inventory and spreads; judge every interval."""

    __slots__ = (
        "_a",
        "_ask_depth",
        "_bid_depth",
        "_expected",
        "_fills",
        "_k",
        "_last_ns",
        "_limits",
        "_period_start_ns",
        "_q",
        "_q_area",
        "_spread_sum",
        "_spread_time",
        "evaluations",
        "warnings",
    )

    def __init__(self, limits: HealthLimits) -> None:
        self._limits = limits
        self._a = math.nan
        self._k = math.nan
        self._bid_depth = math.nan  # NaN: no live bid
        self._ask_depth = math.nan
        self._q = 0.0
        self._last_ns: int | None = None
        self._period_start_ns = 0
        self._expected = 0.0
        self._fills = 0
        self._q_area = 0.0
        self._spread_sum = 0.0
        self._spread_time = 0.0
        self.evaluations = 0
        self.warnings: list[HealthWarning] = []

    def _advance(self, ts_ns: int) -> None:
        if self._last_ns is None:
            self._last_ns = self._period_start_ns = ts_ns
            return
        dt = (ts_ns - self._last_ns) / 1e9
        if dt <= 0.0:
            return
        a, k = self._a, self._k
        if a == a and k == k:
            for depth in (self._bid_depth, self._ask_depth):
                if depth == depth:
                    self._expected += a * math.exp(-k * max(depth, 0.0)) * dt
        self._q_area += abs(self._q) * dt
        self._last_ns = ts_ns

    def observe(self, ts_ns: int, *, bid_depth: float, ask_depth: float, inventory: float,
                our_spread: float, market_spread: float, intensity_a: float,
                intensity_k: float) -> None:
        """Record the state from ``ts_ns`` on: our quotes' depths from the mid (NaN when a
        side is not quoted), inventory, spreads and the model's A (1/s) and k (1/price)."""
        self._advance(ts_ns)
        self._bid_depth, self._ask_depth = bid_depth, ask_depth
        self._q = inventory
        self._a, self._k = intensity_a, intensity_k
        if our_spread == our_spread and market_spread > 0.0:
            self._spread_sum += our_spread / market_spread
            self._spread_time += 1.0

    def on_fill(self) -> None:
        """Count one of our fills."""
        self._fills += 1

    def due(self, ts_ns: int) -> bool:
        """Return whether a period is complete at ``ts_ns``."""
        return (self._last_ns is not None
                and ts_ns - self._period_start_ns >= self._limits.interval_ns)

    def evaluate(self, ts_ns: int) -> list[HealthWarning]:
        """Close the period ending at ``ts_ns``; return its warnings (also kept in ``warnings``)."""
        self._advance(ts_ns)
        limits = self._limits
        period_s = (ts_ns - self._period_start_ns) / 1e9
        found: list[HealthWarning] = []
        if self._expected >= limits.min_expected_fills:
            ratio = self._fills / self._expected
            if abs(ratio - 1.0) > limits.fill_rate_tolerance:
                found.append(HealthWarning(
                    "fill_rate",
                    f"{self._fills} fills against {self._expected:.1f} forecast by "
                    f"A·exp(−kδ) at our quoted depths over {period_s:.0f} s",
                    ratio, limits.fill_rate_tolerance))
        if period_s > 0 and math.isfinite(limits.max_inventory):
            mean_q = self._q_area / period_s
            share = mean_q / limits.max_inventory
            if share > limits.inventory_drift:
                found.append(HealthWarning(
                    "inventory_drift",
                    f"mean |inventory| {mean_q:.4g} is {share:.0%} of the cap over "
                    f"{period_s:.0f} s", share, limits.inventory_drift))
        if self._spread_time > 0:
            ratio = self._spread_sum / self._spread_time
            if ratio > limits.spread_ratio:
                found.append(HealthWarning(
                    "spread_compression",
                    f"our spread averaged {ratio:.1f}x the market's", ratio,
                    limits.spread_ratio))
        self.evaluations += 1
        self.warnings.extend(found)
        self._period_start_ns = ts_ns
        self._expected = 0.0
        self._fills = 0
        self._q_area = 0.0
        self._spread_sum = 0.0
        self._spread_time = 0.0
        return found
