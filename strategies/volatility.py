"""Online volatility of the mid, sampled on a fixed clock.

The mid is sampled at every multiple of ``interval_ns``, not at every event: volatility
measured per event scales with the message rate, the quantity the models need (sigma in price per
sqrt(second)) does not.
"""

from __future__ import annotations

import math
from collections import deque

from bot.events import NS_PER_SECOND

_INF = math.inf


class VolatilityEstimator:
    """Standard deviation of fixed-clock mid changes, scaled to price per sqrt(second).

    The sample at boundary ``b`` (a multiple of ``interval_ns``) is the last mid seen at or
    before ``b``; a boundary is recorded when the first event after it arrives, and boundaries
    with no events carry the last mid forward (zero changes). Two estimators:

    * rolling (default): the sample standard deviation of the last ``window`` changes;
    * EWMA (``ewma_halflife`` set, in samples): ``sqrt(Σ w·d² / Σ w)`` with weights halving
      every ``ewma_halflife`` samples. As in RiskMetrics the changes are taken as zero-mean,
      which at these intervals loses nothing and needs no mean estimate.

    Both cost O(1) per sample, and a gap of any number of intervals is recorded in O(1).

    Attributes:
        current: sigma (as ``value``) once ``ready``, else None; kept up to date as changes
            are recorded, so reading it costs no computation.
    """

    __slots__ = (
        "_changes",
        "_count",
        "_decay",
        "_evicted",
        "_ewma_halflife",
        "_ewma_sum_sq",
        "_ewma_weight",
        "_interval_ns",
        "_last_mid",
        "_min_samples",
        "_next_boundary_ns",
        "_sample_mid",
        "_sum",
        "_sum_sq",
        "_window",
        "current",
    )

    def __init__(
        self,
        interval_ns: int = 1_000_000_000,
        window: int = 300,
        min_samples: int = 20,
        ewma_halflife: int | None = None,
    ) -> None:
        """Configure the sampling clock and the estimator.

        Args:
            interval_ns: Sampling interval, integer nanoseconds, > 0.
            window: Number of changes in the rolling window, >= 2 (unused with EWMA).
            min_samples: Changes needed before ``value`` is reported, >= 2 (and <= window
                for the rolling estimator).
            ewma_halflife: Half-life of the EWMA weights in samples (> 0), or None for the
                rolling window.

        Raises:
            ValueError: Naming the offending argument.
        """
        if interval_ns <= 0:
            raise ValueError(f"interval_ns must be positive, got {interval_ns!r}")
        if window < 2:
            raise ValueError(f"window must be >= 2, got {window!r}")
        if min_samples < 2:
            raise ValueError(f"min_samples must be >= 2, got {min_samples!r}")
        if ewma_halflife is None and min_samples > window:
            raise ValueError(f"min_samples ({min_samples}) must not exceed window ({window})")
        if ewma_halflife is not None and ewma_halflife <= 0:
            raise ValueError(f"ewma_halflife must be positive, got {ewma_halflife!r}")
        self._interval_ns = interval_ns
        self._window = window
        self._min_samples = min_samples
        self._ewma_halflife = ewma_halflife
        self._decay = 0.5 ** (1.0 / ewma_halflife) if ewma_halflife is not None else 0.0
        self._last_mid = math.nan
        self._sample_mid = math.nan
        self._next_boundary_ns = 0
        self._count = 0
        # Rolling window as runs (change, repeat count): a gap adds one run of zeros.
        self._changes: deque[tuple[float, int]] = deque()
        self._sum = 0.0
        self._sum_sq = 0.0
        self._evicted = 0
        self._ewma_sum_sq = 0.0
        self._ewma_weight = 0.0
        # ``value`` once ready, else None: computed when a change is recorded (about once per
        # interval), read on every quote.
        self.current: float | None = None

    @property
    def samples(self) -> int:
        """Return the number of changes recorded (rolling: those in the window)."""
        return self._count

    @property
    def ready(self) -> bool:
        """Return whether at least ``min_samples`` changes have been recorded."""
        return self._count >= self._min_samples

    @property
    def value(self) -> float:
        """Return sigma in price per sqrt(second), or NaN until ``ready``."""
        current = self.current
        return math.nan if current is None else current

    def _estimate(self) -> float | None:
        """Compute ``current`` from the sums (None until ``ready``)."""
        if self._count < self._min_samples:  # not ready
            return None
        if self._ewma_halflife is not None:
            variance = self._ewma_sum_sq / self._ewma_weight
        else:
            n = self._count
            # Running sums can round slightly below zero when the window is all zeros.
            variance = max(0.0, (self._sum_sq - self._sum * self._sum / n) / (n - 1))
        return math.sqrt(variance * NS_PER_SECOND / self._interval_ns)

    def update(self, ts_ns: int, mid: float) -> None:
        """Take the mid observed at ``ts_ns``; ignored unless finite and positive.

        Args:
            ts_ns: Event time, integer nanoseconds.
            mid: Mid price.
        """
        if not 0 < mid < _INF:
            return
        interval_ns = self._interval_ns
        if self._last_mid != self._last_mid:  # nan: the first mid
            self._last_mid = mid
            # The first boundary at or after the first event: it is the first to see a mid.
            self._next_boundary_ns = -(-ts_ns // interval_ns) * interval_ns
            return
        if ts_ns > self._next_boundary_ns:
            # Every boundary b < ts_ns saw the previous mid: the first records the move since
            # the last sample (or only anchors the series), the others record no move.
            crossed = (ts_ns - 1 - self._next_boundary_ns) // interval_ns + 1
            if not math.isnan(self._sample_mid):
                self._record(self._last_mid - self._sample_mid, 1)
            if crossed > 1:
                self._record(0.0, crossed - 1)
            self._sample_mid = self._last_mid
            self._next_boundary_ns += crossed * interval_ns
        self._last_mid = mid

    def _record(self, change: float, repeat: int) -> None:
        """Add ``repeat`` identical changes to the estimator."""
        if self._ewma_halflife is not None:
            self._record_ewma(change, repeat)
        else:
            self._record_rolling(change, repeat)
        self.current = self._estimate()

    def _record_ewma(self, change: float, repeat: int) -> None:
        """Decay the weighted sums ``repeat`` times, adding ``change`` each time."""
        decay_n = self._decay**repeat
        # Σ_{i<repeat} decay^i, the weight the repeated samples add.
        added_weight = (1.0 - decay_n) / (1.0 - self._decay)
        self._ewma_sum_sq = decay_n * self._ewma_sum_sq + added_weight * change * change
        self._ewma_weight = decay_n * self._ewma_weight + added_weight
        self._count += repeat

    def _record_rolling(self, change: float, repeat: int) -> None:
        """Append ``repeat`` copies of ``change`` and evict what falls out of the window."""
        window = self._window
        repeat = min(repeat, window)
        self._changes.append((change, repeat))
        self._sum += repeat * change
        self._sum_sq += repeat * change * change
        self._count += repeat
        while self._count > window:
            old, old_repeat = self._changes.popleft()
            dropped = min(old_repeat, self._count - window)
            if dropped < old_repeat:
                self._changes.appendleft((old, old_repeat - dropped))
            self._sum -= dropped * old
            self._sum_sq -= dropped * old * old
            self._count -= dropped
            self._evicted += dropped
        if self._evicted >= window:
            # Subtracting evicted values accumulates rounding error: re-add from scratch once
            # per window's worth of evictions, O(1) amortised.
            self._sum = math.fsum(c * r for c, r in self._changes)
            self._sum_sq = math.fsum(c * c * r for c, r in self._changes)
            self._evicted = 0
