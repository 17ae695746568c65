"""Online estimators of the order-arrival intensity ``λ(δ) = A·exp(-k·δ)``.

A resting order at distance δ from the mid is executed by market orders arriving as a Poisson
process of rate ``λ(δ)`` (REFERENCE.md, sections 1 and 3). Two established ways to measure
``λ̂(δ)`` on a grid of depths, both followed by the weighted log-linear fit
``ln λ̂ = ln A - k·δ`` of ``fit_log_linear``:

* ``TimeToFillEstimator``: virtual orders posted at ``mid ± δ`` on a fixed clock, each
  executed by the first trade at or through its price or censored at a horizon;
  ``λ̂(δ) = hits(δ) / exposure(δ)``, the censored-exponential maximum likelihood.
* ``HitCountEstimator`` (hftbacktest's GLFT example): on a fixed clock, the deepest trade of
  each interval relative to the mid at the interval's start; a trade reaching depth d is a hit
  at every grid depth <= d.

Units: depths, prices and mids in the feed's price units (or all in ticks: then k comes out
in 1/tick and A is unchanged); time in integer nanoseconds in, seconds out, so A is 1/second
and k is 1/price. Sides: "bid" is the rate at which resting bids are hit (SELL aggressors),
"ask" the rate at which resting asks are lifted (BUY aggressors); "both" pools them into one
per-side rate.

A fit never reports NaN or a non-positive k: without enough data, ``A`` and ``k`` are None,
``status`` is "not_enough_data" and ``reason`` says why, so the caller falls back to configured
values and says so.
"""

from __future__ import annotations

import itertools
import math
from bisect import bisect_right
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from bot.events import BUY, NS_PER_SECOND, Trade

IntensitySide = Literal["bid", "ask", "both"]
FitStatus = Literal["ok", "not_enough_data"]

_BID = 0
_ASK = 1

# Prices are decimal strings parsed to floats, so a trade exactly at a grid price can come out
# a few ulps short of it (100.03 - 100.0 = 0.0299999...); depths are compared with this much
# slack, relative to the mid. It is far below any real tick/price ratio.
_REL_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class IntensityFit:
    """The result of fitting ``λ(δ) = A·exp(-k·δ)`` on one side, with its diagnostics.

    Attributes:
        side: "bid", "ask" or "both" (the two sides pooled into one per-side rate).
        status: "ok", or "not_enough_data" when ``A`` and ``k`` are None.
        reason: Why the status is not "ok", for a human; "" when it is.
        A: Arrival rate at the mid, 1/second; None unless ``status`` is "ok".
        k: Decay of the rate with depth, 1/price (1/tick for a feed in ticks), > 0; None
            unless ``status`` is "ok".
        r2: Weighted coefficient of determination of the log-linear fit, in [0, 1]; None
            unless ``status`` is "ok".
        points: Number of depths the fit used.
        hits: Total hits (executions of virtual orders or hit-counting hits) over the grid.
        trades: Trades seen on the side(s) in the window.
        window_s: Seconds of data the fit covers.
        depths: The depth grid, price.
        rates: Measured rate ``λ̂`` at each depth, 1/second (0.0 where nothing was measured),
            for plotting.
        weights: Weight of each depth in the fit (its hits; 0.0 where it was left out).
        exposure_s: Seconds each depth was observed (time-to-fill: total exposure of its
            virtual orders; hit counting: the window, twice it for "both").
    """

    side: IntensitySide
    status: FitStatus
    reason: str
    A: float | None
    k: float | None
    r2: float | None
    points: int
    hits: int
    trades: int
    window_s: float
    depths: tuple[float, ...]
    rates: tuple[float, ...]
    weights: tuple[float, ...]
    exposure_s: tuple[float, ...]

    @property
    def ok(self) -> bool:
        """Return whether ``A``, ``k`` and ``r2`` are set."""
        return self.status == "ok"


class IntensityEstimator(Protocol):
    """What a consumer (engine, calibration) needs of an estimator; both classes here fit."""

    def update_mid(self, ts_ns: int, mid: float) -> None:
        """Take the mid observed at ``ts_ns`` (ns)."""
        ...

    def update_trade(self, trade: Trade) -> None:
        """Take a public trade."""
        ...

    def fit(self, now_ns: int, side: IntensitySide = "both") -> IntensityFit:
        """Fit ``A·exp(-k·δ)`` on the data up to ``now_ns`` (ns)."""
        ...


def fit_log_linear(
    depths: Sequence[float], rates: Sequence[float], weights: Sequence[float]
) -> tuple[float, float, float]:
    """Fit ``ln λ = ln A - k·δ`` by weighted least squares.

    Points with a rate or weight that is not positive and finite are left out (a depth never
    hit has no logarithm). The fit itself is not judged: k may come out <= 0, and the
    estimators reject that.

    Args:
        depths: Depths δ, price (or ticks).
        rates: Measured rates λ̂(δ), 1/second.
        weights: Weight of each point; the hits behind each rate (REFERENCE.md, section 3).

    Returns:
        ``(A, k, r2)``: A in 1/second (inf if it overflows), k in 1/price (1/tick), and the
        weighted R² of the fit in log space (1.0 for a perfect fit).

    Raises:
        ValueError: The sequences differ in length, or fewer than two usable points at
            different depths remain.
    """
    x = np.asarray(depths, dtype=np.float64)
    y = np.asarray(rates, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if not x.shape == y.shape == w.shape or x.ndim != 1:
        raise ValueError("depths, rates and weights must be sequences of the same length")
    use = np.isfinite(x) & np.isfinite(y) & np.isfinite(w) & (y > 0.0) & (w > 0.0)
    if int(use.sum()) < 2:
        raise ValueError("need at least two depths with a positive rate and weight")
    x, w = x[use], w[use]
    log_y = np.log(y[use])
    total = float(w.sum())
    x_bar = float(w @ x) / total
    y_bar = float(w @ log_y) / total
    dx = x - x_bar
    dy = log_y - y_bar
    sxx = float(w @ (dx * dx))
    if not sxx > 0.0:
        raise ValueError("need at least two different depths")
    slope = float(w @ (dx * dy)) / sxx
    residual = dy - slope * dx
    ss_res = float(w @ (residual * residual))
    ss_tot = float(w @ (dy * dy))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0.0 else 1.0
    try:
        a = math.exp(y_bar - slope * x_bar)
    except OverflowError:
        a = math.inf  # an extrapolation to δ = 0 this steep is no fit; callers reject inf
    return a, -slope, r2


def _depth_grid(
    depths: Sequence[float] | None, max_depth: float | None, n_depths: int
) -> tuple[float, ...]:
    """Return the validated, ascending depth grid from either form of the arguments."""
    if (depths is None) == (max_depth is None):
        raise ValueError("give exactly one of depths and max_depth")
    if max_depth is not None:
        if not 0.0 < max_depth < math.inf:
            raise ValueError(f"max_depth must be positive and finite, got {max_depth!r}")
        if n_depths < 2:
            raise ValueError(f"n_depths must be >= 2, got {n_depths!r}")
        return tuple(max_depth * (i + 1) / n_depths for i in range(n_depths))
    assert depths is not None
    grid = tuple(sorted(float(d) for d in depths))
    if len(grid) < 2:
        raise ValueError(f"need at least 2 depths, got {len(grid)}")
    if not all(0.0 <= d < math.inf for d in grid):
        raise ValueError(f"depths must be finite and >= 0, got {grid!r}")
    if any(a == b for a, b in itertools.pairwise(grid)):
        raise ValueError(f"depths must be distinct, got {grid!r}")
    return grid


def _check_thresholds(min_hits: int, min_points: int) -> None:
    if min_hits < 1:
        raise ValueError(f"min_hits must be >= 1, got {min_hits!r}")
    if min_points < 2:
        raise ValueError(f"min_points must be >= 2, got {min_points!r}")


def _check_window(window_ns: int | None, step_ns: int, step_name: str) -> None:
    if step_ns <= 0:
        raise ValueError(f"{step_name} must be positive, got {step_ns!r}")
    if window_ns is not None and window_ns < step_ns:
        raise ValueError(f"window_ns must be None or >= {step_name} ({step_ns}), got {window_ns}")


def _sides(side: IntensitySide) -> tuple[int, ...]:
    if side == "bid":
        return (_BID,)
    if side == "ask":
        return (_ASK,)
    if side == "both":
        return (_BID, _ASK)
    raise ValueError(f"side must be 'bid', 'ask' or 'both', got {side!r}")


class _TradeCounts:
    """Trades per side in a trailing window, bucketed on the estimator's clock.

    Buckets ``(b·step, (b+1)·step]``; a bucket leaves the window once its end is at or before
    the cutoff, so the count is exact to one bucket.
    """

    __slots__ = ("_buckets", "_step_ns", "_windowed", "counts")

    def __init__(self, step_ns: int, windowed: bool) -> None:
        self._step_ns = step_ns
        self._windowed = windowed
        self._buckets: deque[list[int]] = deque()
        self.counts = [0, 0]

    def add(self, ts_ns: int, side: int) -> None:
        self.counts[side] += 1
        if not self._windowed:
            return
        bucket = (ts_ns - 1) // self._step_ns
        if not self._buckets or self._buckets[-1][0] != bucket:
            self._buckets.append([bucket, 0, 0])
        self._buckets[-1][1 + side] += 1

    def evict(self, cutoff_ns: int) -> None:
        buckets = self._buckets
        while buckets and (buckets[0][0] + 1) * self._step_ns <= cutoff_ns:
            _, bids, asks = buckets.popleft()
            self.counts[_BID] -= bids
            self.counts[_ASK] -= asks


class _MidTracker:
    """The last mid (carried forward), and when it last changed."""

    __slots__ = ("changed_ns", "mid")

    def __init__(self) -> None:
        self.mid = math.nan
        self.changed_ns: int | None = None

    def update(self, ts_ns: int, mid: float) -> bool:
        """Take a mid; return False (and ignore it) unless it is finite and positive."""
        if not 0.0 < mid < math.inf:
            return False
        if mid != self.mid and not math.isnan(self.mid):
            self.changed_ns = ts_ns
        self.mid = mid
        return True

    def frozen(self, cutoff_ns: int | None) -> bool:
        """Return whether the mid has not changed after ``cutoff_ns`` (ever, for None)."""
        if self.changed_ns is None:
            return True
        return cutoff_ns is not None and self.changed_ns <= cutoff_ns


def _assemble(
    side: IntensitySide,
    depths: tuple[float, ...],
    hits: Sequence[int],
    rates: Sequence[float],
    usable: Sequence[bool],
    exposure_s: Sequence[float],
    window_s: float,
    trades: int,
    refusal: str | None,
    min_hits: int,
    min_points: int,
    note: str = "",
) -> IntensityFit:
    """Judge the measured rates, fit them, and build the result.

    Args:
        side: The side the counts belong to.
        depths: The grid, price.
        hits: Hits per depth.
        rates: λ̂ per depth, 1/second (finite, >= 0).
        usable: Whether each depth may enter the fit (besides having hits).
        exposure_s: Seconds observed per depth.
        window_s: Seconds the data covers.
        trades: Trades in the window.
        refusal: A reason found by the estimator before any fitting (no mid, no trades ...),
            or None.
        min_hits: Total hits needed.
        min_points: Depths with hits needed.
        note: Added to a "too few depths" reason (what else was left out).
    """
    weights = tuple(
        float(h) if ok and h > 0 and r > 0.0 else 0.0
        for h, r, ok in zip(hits, rates, usable, strict=True)
    )
    points = sum(1 for w in weights if w > 0.0)
    total_hits = sum(hits)

    def result(reason: str, fit: tuple[float, float, float] | None = None) -> IntensityFit:
        return IntensityFit(
            side=side,
            status="ok" if fit is not None else "not_enough_data",
            reason=reason,
            A=None if fit is None else fit[0],
            k=None if fit is None else fit[1],
            r2=None if fit is None else fit[2],
            points=points,
            hits=total_hits,
            trades=trades,
            window_s=window_s,
            depths=depths,
            rates=tuple(rates),
            weights=weights,
            exposure_s=tuple(exposure_s),
        )

    if refusal is not None:
        return result(f"not enough data: {refusal}")
    if total_hits < min_hits:
        return result(f"not enough data: {total_hits} hits in the window, need {min_hits}")
    if points < min_points:
        return result(f"not enough data: {points} depths with hits, need {min_points}{note}")
    used = [r for r, w in zip(rates, weights, strict=True) if w > 0.0]
    if all(b >= a for a, b in itertools.pairwise(used)):
        return result("not enough data: rates do not decrease with depth")
    a, k, r2 = fit_log_linear(depths, rates, weights)
    if not (math.isfinite(a) and math.isfinite(k) and math.isfinite(r2)):
        return result("not enough data: the fit is not finite")
    if k <= 0.0:
        return result("not enough data: fitted k <= 0 (rates do not decay with depth)")
    return result("", (a, k, r2))


def _common_refusal(
    mids: _MidTracker, trades: int, cutoff_ns: int | None, require_mid_change: bool
) -> str | None:
    """Return the reason a window cannot be fitted whatever its hits, or None."""
    if math.isnan(mids.mid):
        return "no mid price yet (trade depths are measured from the mid)"
    if trades == 0:
        return "no trades in the window"
    if trades == 1:
        return "only one trade in the window"
    if require_mid_change and mids.frozen(cutoff_ns):
        return "the mid did not change in the window (stale book?)"
    return None


# --------------------------------------------------------------------------------------------
# Time to fill
# --------------------------------------------------------------------------------------------


class _VirtualOrders:
    """One start's virtual orders on one side, one per grid depth.

    The same trade executes every depth up to the one it reaches, and deeper orders can only
    execute after shallower ones, so the start's state is one monotone index: ``filled``
    depths are executed, each run of them at the time recorded in ``fills``.
    """

    __slots__ = (
        "censor_ns",
        "closed",
        "eps",
        "evicted",
        "filled",
        "fills",
        "mid",
        "next_depth",
        "start_ns",
    )

    def __init__(self, start_ns: int, mid: float, first_depth: float) -> None:
        self.start_ns = start_ns
        self.mid = mid
        self.eps = _REL_EPS * mid
        self.filled = 0
        # (end index, ts_ns): depths [previous end, end) were executed at ts_ns.
        self.fills: list[tuple[int, int]] = []
        # A trade must reach this depth to execute anything more: one float test per trade.
        self.next_depth = first_depth - self.eps
        self.closed = False
        self.censor_ns = 0  # exposure of the never-executed depths, once closed
        self.evicted = False  # left the window: in no total, open or closed


class TimeToFillEstimator:
    """λ(δ) from the time to fill of virtual orders (REFERENCE.md section 3, seed 004).

    On a fixed clock (every multiple of ``start_interval_ns``) the estimator posts, on each
    side and at each grid depth δ, a virtual order at ``mid - δ`` (bid) and ``mid + δ`` (ask),
    with the mid as last seen at or before the start. A virtual bid is executed by the first
    SELL-aggressor trade after the start at a price <= its price, a virtual ask by the first
    BUY-aggressor trade at a price >= its price. An order's exposure is its time to execution,
    or ``horizon_ns`` when it is censored, or the time so far for an order still open at
    ``fit`` time. Then ``λ̂(δ) = hits(δ) / exposure(δ)``, the maximum-likelihood rate of
    censored exponential waiting times (with no censoring, 1 / mean time to fill).

    Only trades execute a virtual order (not the mid moving through its price): a virtual ask
    the mid has moved above is executed by the next BUY print, as every ask is above it.

    The estimate is A·exp(-k·δ) only while the mid moves little during an order's life
    compared with 1/k: an order posted at δ drifts nearer to and further from the mid, and the
    orders that drift away wait longest, so A and k both come out low. On the synthetic market
    with A = 5/s, k = 50/price and σ = 0.05 price/√s, a 30 s horizon measures A ≈ 0.8 and
    k ≈ 24. Keep the horizon short against ``(1/(k·σ))²`` seconds, the time the mid needs to
    move by 1/k.

    Cost: a trade visits the open starts of its side, O(horizon / start_interval) float
    comparisons, and a bisect for each start it executes something of; each start costs
    O(depths) once when it closes.

    Units: depths, mids and prices in price (or all in ticks); times in ns; the fit reports A
    in 1/second and k in 1/price (1/tick).
    """

    __slots__ = (
        "_depths",
        "_exposure_ns",
        "_first_start_ns",
        "_history",
        "_hits",
        "_horizon_ns",
        "_mids",
        "_min_hits",
        "_min_points",
        "_next_start_ns",
        "_now_ns",
        "_open",
        "_require_mid_change",
        "_start_interval_ns",
        "_trades",
        "_window_ns",
    )

    def __init__(
        self,
        depths: Sequence[float] | None = None,
        *,
        max_depth: float | None = None,
        n_depths: int = 20,
        start_interval_ns: int = NS_PER_SECOND,
        horizon_ns: int = 30 * NS_PER_SECOND,
        window_ns: int | None = None,
        min_hits: int = 20,
        min_points: int = 3,
        require_mid_change: bool = True,
    ) -> None:
        """Configure the grid, the clocks and the acceptance thresholds.

        Args:
            depths: Depth grid, price (or ticks), >= 0 and distinct; or None with
                ``max_depth``.
            max_depth: With ``depths`` None: ``n_depths`` evenly spaced depths from
                ``max_depth / n_depths`` to ``max_depth``, price.
            n_depths: Number of depths with ``max_depth``, >= 2.
            start_interval_ns: New virtual orders start at every multiple of this, ns, > 0.
            horizon_ns: A virtual order not executed after this long is censored, ns, > 0.
            window_ns: Fit only starts in the trailing window of this length, ns (>=
                ``start_interval_ns``); None: everything since the first mid.
            min_hits: Total hits needed for a fit, >= 1.
            min_points: Depths with hits needed for a fit, >= 2.
            require_mid_change: Refuse to fit when the mid has not changed in the window: a
                mid that stands still while trades print is more likely a stale book than a
                still market. Turn off for a feed whose mid really is constant.

        Raises:
            ValueError: Naming the offending argument.
        """
        self._depths = _depth_grid(depths, max_depth, n_depths)
        _check_window(window_ns, start_interval_ns, "start_interval_ns")
        if horizon_ns <= 0:
            raise ValueError(f"horizon_ns must be positive, got {horizon_ns!r}")
        _check_thresholds(min_hits, min_points)
        self._start_interval_ns = start_interval_ns
        self._horizon_ns = horizon_ns
        self._window_ns = window_ns
        self._min_hits = min_hits
        self._min_points = min_points
        self._require_mid_change = require_mid_change
        self._mids = _MidTracker()
        self._trades = _TradeCounts(start_interval_ns, window_ns is not None)
        self._now_ns: int | None = None
        self._next_start_ns: int | None = None
        self._first_start_ns: int | None = None
        n = len(self._depths)
        # Per side (_BID, _ASK): starts still open (in start order) and the closed starts'
        # totals per depth. Exposures are integer ns, so adding and evicting is exact.
        self._open: tuple[list[_VirtualOrders], list[_VirtualOrders]] = ([], [])
        self._hits = ([0] * n, [0] * n)
        self._exposure_ns = ([0] * n, [0] * n)
        # With a window: every start in it, open or closed, in start order, for eviction.
        self._history: tuple[deque[_VirtualOrders], deque[_VirtualOrders]] = (deque(), deque())

    @property
    def depths(self) -> tuple[float, ...]:
        """Return the depth grid, price (or ticks), ascending."""
        return self._depths

    def update_mid(self, ts_ns: int, mid: float) -> None:
        """Take the mid observed at ``ts_ns``; ignored unless finite and positive.

        Args:
            ts_ns: Event time, integer nanoseconds (the same clock as the trades').
            mid: Mid price.
        """
        self._advance(ts_ns)
        if self._mids.update(ts_ns, mid) and self._next_start_ns is None:
            step = self._start_interval_ns
            # The first start at or after the first mid: the first with a mid to post at.
            self._next_start_ns = -(-ts_ns // step) * step

    def update_trade(self, trade: Trade) -> None:
        """Execute the virtual orders ``trade`` reaches (at its ``ts_local_ns``).

        Args:
            trade: A public trade; ``aggressor`` BUY executes virtual asks, SELL virtual bids.
        """
        ts = trade.ts_local_ns
        self._advance(ts)
        price = trade.price
        if math.isnan(self._mids.mid) or not 0.0 < price < math.inf:
            return
        is_ask = trade.aggressor is BUY
        side = _ASK if is_ask else _BID
        self._trades.add(ts, side)
        orders = self._open[side]
        depths = self._depths
        n = len(depths)
        finished = False
        for v in orders:
            if v.start_ns >= ts:
                break  # starts are in time order: the rest began after this trade
            depth = price - v.mid if is_ask else v.mid - price
            if depth < v.next_depth:
                continue
            reached = bisect_right(depths, depth + v.eps)
            v.fills.append((reached, ts))
            v.filled = reached
            if reached == n:
                finished = True
                self._close(side, v, 0)
            else:
                v.next_depth = depths[reached] - v.eps
        if finished:
            orders[:] = [v for v in orders if v.filled < n]

    def fit(self, now_ns: int, side: IntensitySide = "both") -> IntensityFit:
        """Fit ``A·exp(-k·δ)`` to the virtual orders of the window ending at ``now_ns``.

        Advances the estimator's clock to ``now_ns`` first, as an event would: starts due
        before it are posted and expired orders censored. Orders still open count with their
        exposure so far. A ``now_ns`` before the last event is taken as the last event's time.

        Args:
            now_ns: Current time, integer nanoseconds.
            side: "bid", "ask", or "both" (hits and exposures of the two sides pooled).

        Returns:
            The fit; ``status`` "not_enough_data" with a ``reason`` when A and k are None.
        """
        sides = _sides(side)
        self._advance(now_ns)
        now = self._now_ns if self._now_ns is not None else now_ns
        cutoff = None if self._window_ns is None else now - self._window_ns
        n = len(self._depths)
        hits = [0] * n
        exposure_ns = [0] * n
        trades = 0
        for s in sides:
            for j in range(n):
                hits[j] += self._hits[s][j]
                exposure_ns[j] += self._exposure_ns[s][j]
            for v in self._open[s]:
                if not v.evicted:
                    _add_orders(v, hits, exposure_ns, now - v.start_ns, 1)
            trades += self._trades.counts[s]
        rates = [
            h * NS_PER_SECOND / e if e > 0 else 0.0 for h, e in zip(hits, exposure_ns, strict=True)
        ]
        first = self._first_start_ns
        if first is None:
            window_s = 0.0
        else:
            window_s = (now - (first if cutoff is None else max(first, cutoff))) / NS_PER_SECOND
        refusal = _common_refusal(self._mids, trades, cutoff, self._require_mid_change)
        return _assemble(
            side,
            self._depths,
            hits,
            rates,
            [True] * n,
            [e / NS_PER_SECOND for e in exposure_ns],
            max(window_s, 0.0),
            trades,
            refusal,
            self._min_hits,
            self._min_points,
        )

    # ---------------------------------------------------------------- clock

    def _advance(self, ts_ns: int) -> None:
        """Post the starts due before ``ts_ns`` and censor the orders expired by then."""
        if self._now_ns is not None and ts_ns <= self._now_ns:
            return
        self._now_ns = ts_ns
        if self._next_start_ns is not None and self._next_start_ns < ts_ns:
            self._post_starts(ts_ns)
        if self._window_ns is not None:
            # Evicting as time passes keeps memory bounded by the window between fits.
            self._evict(ts_ns - self._window_ns)
        horizon = self._horizon_ns
        for s in (_BID, _ASK):
            orders = self._open[s]
            expired = 0
            for v in orders:
                if v.start_ns + horizon >= ts_ns:
                    break
                self._close(s, v, horizon)
                expired += 1
            if expired:
                del orders[:expired]

    def _post_starts(self, ts_ns: int) -> None:
        """Post every start at or after ``_next_start_ns`` and before ``ts_ns``."""
        assert self._next_start_ns is not None
        step = self._start_interval_ns
        start = self._next_start_ns
        count = (ts_ns - 1 - start) // step + 1
        self._next_start_ns = start + count * step
        mid = self._mids.mid
        if self._first_start_ns is None:
            self._first_start_ns = start
        # Starts in a gap with no events are real observations (no trade reached them), but
        # a long gap must not cost a loop per start: whole-horizon starts outside the window
        # are skipped, and without a window those that already expired are added in bulk.
        if self._window_ns is not None:
            skip = max(0, (ts_ns - self._window_ns - start) // step + 1)
            skip = min(skip, count)
        else:
            skip = max(0, min(count, (ts_ns - 1 - self._horizon_ns - start) // step + 1))
            if skip:
                censored = skip * self._horizon_ns
                for s in (_BID, _ASK):
                    exposure = self._exposure_ns[s]
                    for j in range(len(exposure)):
                        exposure[j] += censored
        first_depth = self._depths[0]
        for i in range(skip, count):
            t = start + i * step
            for s in (_BID, _ASK):
                v = _VirtualOrders(t, mid, first_depth)
                self._open[s].append(v)
                if self._window_ns is not None:
                    self._history[s].append(v)

    def _close(self, side: int, v: _VirtualOrders, censor_ns: int) -> None:
        """Add a finished start's orders to the totals (unless it left the window)."""
        v.closed = True
        v.censor_ns = censor_ns
        if not v.evicted:
            _add_orders(v, self._hits[side], self._exposure_ns[side], censor_ns, 1)

    def _evict(self, cutoff_ns: int) -> None:
        """Drop the starts at or before ``cutoff_ns`` from the totals."""
        self._trades.evict(cutoff_ns)
        for s in (_BID, _ASK):
            history = self._history[s]
            while history and history[0].start_ns <= cutoff_ns:
                v = history.popleft()
                if v.closed:
                    _add_orders(v, self._hits[s], self._exposure_ns[s], v.censor_ns, -1)
                v.evicted = True


def _add_orders(
    v: _VirtualOrders, hits: list[int], exposure_ns: list[int], censor_ns: int, sign: int
) -> None:
    """Add (sign 1) or remove (-1) one start's hits and exposures, depth by depth.

    Executed depths count a hit and their time to fill; the others count ``censor_ns``.
    """
    start = 0
    for end, ts in v.fills:
        waited = sign * (ts - v.start_ns)
        for j in range(start, end):
            hits[j] += sign
            exposure_ns[j] += waited
        start = end
    censored = sign * censor_ns
    for j in range(start, len(exposure_ns)):
        exposure_ns[j] += censored


# --------------------------------------------------------------------------------------------
# Hit counting
# --------------------------------------------------------------------------------------------


class HitCountEstimator:
    """λ(δ) by counting hits per interval, as in hftbacktest's GLFT example.

    Time is cut into intervals ``(n·interval, (n+1)·interval]``. For each interval and side,
    the deepest trade is measured from the mid as last seen at or before the interval's start
    (BUY aggressors: ``price - mid``, the ask side; SELL: ``mid - price``, the bid side); a
    deepest trade at depth d is a hit at every grid depth <= d. Over a trailing window of
    intervals, ``hits(δ)`` counts the intervals in which depth δ was reached.

    An interval records at most one hit per depth, so ``hits / window seconds`` (hftbacktest's
    rate, ``correct_saturation=False``) measures ``(1 - exp(-λ·Δt)) / Δt``, which falls short
    of λ as soon as ``λ·Δt`` is not small: 14% at λ·Δt = 0.3, near the touch of a busy
    market. With ``correct_saturation`` (the default) the rate is the Poisson
    maximum-likelihood one for such yes/no counts, ``λ̂ = -ln(1 - hits/intervals) / Δt``;
    a depth hit in every interval then has no finite estimate and is left out of the fit.

    Cost: O(1) per event; O(depths) per interval with a hit. Units as for
    ``TimeToFillEstimator``: A in 1/second, k in 1/price (1/tick for a feed in ticks).
    """

    __slots__ = (
        "_correct_saturation",
        "_current",
        "_deepest",
        "_depths",
        "_first_interval",
        "_hits",
        "_interval_ns",
        "_mids",
        "_min_hits",
        "_min_points",
        "_ref_mid",
        "_require_mid_change",
        "_trades",
        "_window",
        "_window_hits",
        "_window_ns",
    )

    def __init__(
        self,
        depths: Sequence[float] | None = None,
        *,
        max_depth: float | None = None,
        n_depths: int = 20,
        interval_ns: int = 100_000_000,
        window_ns: int | None = None,
        min_hits: int = 20,
        min_points: int = 3,
        correct_saturation: bool = True,
        require_mid_change: bool = True,
    ) -> None:
        """Configure the grid, the clock, the window and the acceptance thresholds.

        Args:
            depths: Depth grid, price (or ticks), >= 0 and distinct; or None with
                ``max_depth``.
            max_depth: With ``depths`` None: ``n_depths`` evenly spaced depths from
                ``max_depth / n_depths`` to ``max_depth``, price.
            n_depths: Number of depths with ``max_depth``, >= 2.
            interval_ns: Length of an interval, ns, > 0.
            window_ns: Fit the trailing ``window_ns // interval_ns`` intervals, ns (>=
                ``interval_ns``); None: every interval since the first mid.
            min_hits: Total hits needed for a fit, >= 1.
            min_points: Depths with hits needed for a fit, >= 2.
            correct_saturation: Convert the share of intervals with a hit to a Poisson rate
                (see the class docstring); False gives hftbacktest's ``hits / seconds``.
            require_mid_change: Refuse to fit when the mid has not changed in the window (a
                stale book, more likely than a still market).

        Raises:
            ValueError: Naming the offending argument.
        """
        self._depths = _depth_grid(depths, max_depth, n_depths)
        _check_window(window_ns, interval_ns, "interval_ns")
        _check_thresholds(min_hits, min_points)
        self._interval_ns = interval_ns
        self._window_ns = window_ns
        self._window = None if window_ns is None else window_ns // interval_ns
        self._min_hits = min_hits
        self._min_points = min_points
        self._correct_saturation = correct_saturation
        self._require_mid_change = require_mid_change
        self._mids = _MidTracker()
        self._trades = _TradeCounts(interval_ns, window_ns is not None)
        # The open interval: its index, the mid at its start (NaN: none yet) and the deepest
        # trade per side (-inf: none).
        self._current: int | None = None
        self._ref_mid = math.nan
        self._deepest = [-math.inf, -math.inf]
        self._first_interval: int | None = None
        n = len(self._depths)
        self._hits = ([0] * n, [0] * n)
        # With a window: (interval, depths hit on the bid side, on the ask side) per interval
        # with a hit, in time order, to take them out of the totals again.
        self._window_hits: deque[tuple[int, int, int]] = deque()

    @property
    def depths(self) -> tuple[float, ...]:
        """Return the depth grid, price (or ticks), ascending."""
        return self._depths

    def update_mid(self, ts_ns: int, mid: float) -> None:
        """Take the mid observed at ``ts_ns``; ignored unless finite and positive.

        Args:
            ts_ns: Event time, integer nanoseconds (the same clock as the trades').
            mid: Mid price.
        """
        self._advance(ts_ns)
        self._mids.update(ts_ns, mid)

    def update_trade(self, trade: Trade) -> None:
        """Measure ``trade`` against the mid at the start of its interval (``ts_local_ns``).

        Args:
            trade: A public trade; ``aggressor`` BUY reaches into the asks, SELL the bids.
        """
        self._advance(trade.ts_local_ns)
        ref = self._ref_mid
        price = trade.price
        if math.isnan(ref) or not 0.0 < price < math.inf:
            return
        if trade.aggressor is BUY:
            side, depth = _ASK, price - ref
        else:
            side, depth = _BID, ref - price
        self._trades.add(trade.ts_local_ns, side)
        if depth > self._deepest[side]:
            self._deepest[side] = depth

    def fit(self, now_ns: int, side: IntensitySide = "both") -> IntensityFit:
        """Fit ``A·exp(-k·δ)`` to the intervals of the window that ended before ``now_ns``.

        Advances the estimator's clock to ``now_ns`` first, as an event would; the interval
        containing ``now_ns`` is still open and not counted.

        Args:
            now_ns: Current time, integer nanoseconds.
            side: "bid", "ask", or "both" (the two sides pooled into one per-side rate).

        Returns:
            The fit; ``status`` "not_enough_data" with a ``reason`` when A and k are None.
        """
        sides = _sides(side)
        self._advance(now_ns)
        n = len(self._depths)
        intervals = 0
        if self._current is not None and self._first_interval is not None:
            intervals = self._current - self._first_interval
            if self._window is not None:
                intervals = min(intervals, self._window)
        interval_s = self._interval_ns / NS_PER_SECOND
        window_s = intervals * interval_s
        # Each side observes every interval once: pooling is one rate from twice the trials.
        trials = intervals * len(sides)
        hits = [sum(self._hits[s][j] for s in sides) for j in range(n)]
        usable = [True] * n
        saturated = 0
        rates: list[float] = []
        for j, h in enumerate(hits):
            if trials == 0:
                rates.append(0.0)
            elif not self._correct_saturation:
                rates.append(h / (trials * interval_s))
            elif h == 0:
                rates.append(0.0)
            elif h < trials:
                rates.append(-math.log1p(-h / trials) / interval_s)
            else:
                # Hit in every interval: the rate is unbounded above. Plot the hits/seconds
                # floor, keep it out of the fit.
                rates.append(h / (trials * interval_s))
                usable[j] = False
                saturated += 1
        cutoff = None
        if self._window_ns is not None and self._current is not None:
            cutoff = self._current * self._interval_ns - self._window_ns
        trades = sum(self._trades.counts[s] for s in sides)
        refusal = _common_refusal(self._mids, trades, cutoff, self._require_mid_change)
        note = ""
        if saturated:
            note = f" ({saturated} depths hit in every interval left out; shorten interval_ns)"
        return _assemble(
            side,
            self._depths,
            hits,
            rates,
            usable,
            [trials * interval_s] * n,
            window_s,
            trades,
            refusal,
            self._min_hits,
            self._min_points,
            note,
        )

    # ---------------------------------------------------------------- clock

    def _advance(self, ts_ns: int) -> None:
        """Close the open interval once ``ts_ns`` is past its end and open the one of ts_ns."""
        index = (ts_ns - 1) // self._interval_ns
        current = self._current
        if current is not None and index <= current:
            return
        if current is not None and not math.isnan(self._ref_mid):
            self._record(current)
        # Every event so far was at or before this interval's start: the last mid is the
        # mid at its start.
        self._current = index
        self._ref_mid = self._mids.mid
        self._deepest = [-math.inf, -math.inf]
        if self._first_interval is None and not math.isnan(self._ref_mid):
            self._first_interval = index
        if self._window is not None:
            cutoff = index - self._window
            self._trades.evict(cutoff * self._interval_ns)
            window_hits = self._window_hits
            while window_hits and window_hits[0][0] < cutoff:
                _, bid_reached, ask_reached = window_hits.popleft()
                _count(self._hits[_BID], bid_reached, -1)
                _count(self._hits[_ASK], ask_reached, -1)

    def _record(self, index: int) -> None:
        """Count the closed interval's hits: each side's deepest trade and every depth above."""
        eps = _REL_EPS * self._ref_mid
        reached = [
            bisect_right(self._depths, deepest + eps) if deepest > -math.inf else 0
            for deepest in self._deepest
        ]
        if not (reached[_BID] or reached[_ASK]):
            return
        _count(self._hits[_BID], reached[_BID], 1)
        _count(self._hits[_ASK], reached[_ASK], 1)
        if self._window is not None:
            self._window_hits.append((index, reached[_BID], reached[_ASK]))


def _count(hits: list[int], reached: int, sign: int) -> None:
    """Add ``sign`` to the hits of the ``reached`` shallowest depths."""
    for j in range(reached):
        hits[j] += sign
