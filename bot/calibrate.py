"""``mmbot calibrate``: σ, A and k from recorded feeds, with the fit quality and a plot.

Reads anything replay reads, through the same parsers, and drives the same estimator classes
the engine uses online (``strategies.volatility``, ``strategies.intensity``). Units: price in
the feed's quote currency (or in ticks with ``--ticks``), time in seconds; so σ is price/√s,
A is 1/s and k is 1/price (1/tick with ``--ticks``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.recording import iter_frames
from bot.app import calibration_depths, infer_rules
from bot.book import OrderBook
from bot.errors import ConfigError, DataError
from bot.events import BookDelta, BookInvalid, BookSnapshot, Trade
from bot.replay import FrameRouter, Source, resolve_source
from strategies.intensity import (
    HitCountEstimator,
    IntensityFit,
    TimeToFillEstimator,
)
from strategies.volatility import VolatilityEstimator

NS = 1_000_000_000
METHODS = ("time-to-fill", "hits")


@dataclass(frozen=True, slots=True)
class CalibrationSetup:
    """How to calibrate: method, depth grid in ticks, clocks and windows."""

    method: str = "time-to-fill"
    depth_points: int = 21
    max_depth_ticks: float = 50.0
    sigma_interval_ms: int = 1000
    start_interval_ms: int = 1000
    horizon_s: float = 1.0
    hits_interval_ms: int = 100


def depth_grid(tick: float, points: int, max_depth_ticks: float,
               half_spread: float) -> list[float]:
    """Return the depth grid (``bot.app.calibration_depths``), checking the point count."""
    if points < 2:
        raise ConfigError("--depth-points", "need at least 2 depths to fit a slope")
    return calibration_depths(tick, points, max_depth_ticks, half_spread)


def make_estimator(setup: CalibrationSetup, depths: Sequence[float],
                   window_ns: int | None) -> TimeToFillEstimator | HitCountEstimator:
    """Return the intensity estimator for ``setup.method``."""
    if setup.method == "time-to-fill":
        return TimeToFillEstimator(
            depths=depths,
            start_interval_ns=setup.start_interval_ms * 1_000_000,
            horizon_ns=round(setup.horizon_s * NS),
            window_ns=window_ns,
        )
    if setup.method == "hits":
        return HitCountEstimator(
            depths=depths,
            interval_ns=setup.hits_interval_ms * 1_000_000,
            window_ns=window_ns,
        )
    raise ConfigError("--method", f"unknown method {setup.method!r}; one of {METHODS}")


def _fit_json(fit: IntensityFit, scale: float) -> dict[str, Any]:
    """Per-side result; ``scale`` converts k to the output units (1 or tick)."""
    out: dict[str, Any] = {
        "A": fit.A,
        "k": None if fit.k is None else fit.k * scale,
        "r2": fit.r2,
        "points": fit.points,
        "hits": fit.hits,
        "status": fit.status,
    }
    if fit.status != "ok":
        out["reason"] = fit.reason
    return out


def calibrate(paths: Sequence[Path], setup: CalibrationSetup, venue: str | None = None,
              symbol: str | None = None, ticks: bool = False, tick_size: float | None = None,
              start_s: float = 0.0, end_s: float = math.inf,
              ) -> tuple[dict[str, Any], dict[str, IntensityFit]]:
    """Calibrate on ``paths``; return the JSON result and the per-side fits (for the plot).

    ``start_s``/``end_s`` restrict the estimation to a window, in seconds from the first
    event; the book is still built from the start, so any window has a valid mid.
    """
    source = resolve_source(paths, venue, symbol)
    first = _first_snapshot(source)
    tick = tick_size or infer_rules(first).tick_size
    half_spread = (first.asks[0][0] - first.bids[0][0]) / 2.0
    depths = depth_grid(tick, setup.depth_points, setup.max_depth_ticks, half_spread)
    estimator = make_estimator(setup, depths, None)
    sigma = VolatilityEstimator(interval_ns=setup.sigma_interval_ms * 1_000_000,
                                window=10**9, min_samples=20)
    book = OrderBook(source.symbol)
    router = FrameRouter(source)
    trades = 0
    origin = 0
    window_start = window_end = 0
    for frame in iter_frames(source.paths):
        for event in router.events(frame):
            ts = event.ts_local_ns
            if not origin:
                origin = ts
            inside = start_s <= (ts - origin) / NS < end_s
            if inside:
                window_start = window_start or ts
                window_end = ts
            if isinstance(event, BookSnapshot | BookDelta):
                try:
                    book.apply(event)
                except DataError:
                    continue
                mid = book.mid
                if inside and book.valid and mid == mid:
                    sigma.update(ts, mid)
                    estimator.update_mid(ts, mid)
            elif isinstance(event, Trade) and inside:
                trades += 1
                estimator.update_trade(event)
            elif isinstance(event, BookInvalid):
                book.invalidate(event.reason)
    fits = {side: estimator.fit(window_end, side) for side in ("bid", "ask", "both")}
    scale = tick if ticks else 1.0
    sigma_value = sigma.value if sigma.ready else None
    if sigma_value is not None and ticks:
        sigma_value /= tick
    both = fits["both"]
    result: dict[str, Any] = {
        "sigma": sigma_value,
        "A": both.A,
        "k": None if both.k is None else both.k * scale,
        "r2": both.r2,
        "bid": _fit_json(fits["bid"], scale),
        "ask": _fit_json(fits["ask"], scale),
        "units": {"price": "tick" if ticks else "quote currency", "time": "second",
                  "sigma": "price/sqrt(s)", "A": "1/s", "k": "1/price"},
        "samples": sigma.samples,
        "trades": trades,
        "window_s": (window_end - window_start) / NS,
        "method": setup.method,
        "venue": source.venue,
        "symbol": source.symbol,
        "tick_size": tick,
        "depths": [d / scale for d in depths],
        "status": both.status if sigma_value is not None else "not_enough_data",
    }
    reasons = [f"{side}: {fit.reason}" for side, fit in fits.items() if fit.status != "ok"]
    if sigma_value is None:
        reasons.append(f"sigma: only {sigma.samples} samples on the "
                       f"{setup.sigma_interval_ms} ms clock")
    if reasons:
        result["reasons"] = reasons
    return result, fits


def _first_snapshot(source: Source) -> BookSnapshot:
    router = FrameRouter(source)
    for n, frame in enumerate(iter_frames(source.paths)):
        for event in router.events(frame):
            if isinstance(event, BookSnapshot) and event.bids and event.asks:
                return event
        if n > 200_000:
            break
    raise DataError("no order book snapshot in the recording: cannot calibrate without a book")


def plot_fits(fits: dict[str, IntensityFit], result: dict[str, Any], path: Path) -> None:
    """Plot λ̂(δ) per side on a log scale, the points used and the fitted lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale = result["tick_size"] if result["units"]["price"] == "tick" else 1.0
    unit = "ticks" if scale != 1.0 else "price"
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    colours = {"bid": "tab:blue", "ask": "tab:red"}
    for side in ("bid", "ask"):
        fit = fits[side]
        xs = [d / scale for d in fit.depths]
        pts = [(x, r) for x, r in zip(xs, fit.rates, strict=True) if r > 0]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], color=colours[side], s=18,
                       label=f"{side}: measured rate")
        if fit.A is not None and fit.k is not None and xs:
            line = [fit.A * math.exp(-fit.k * d) for d in fit.depths]
            ax.plot(xs, line, color=colours[side], linewidth=1.5,
                    label=f"{side}: A={fit.A:.3g}/s, k={fit.k * scale:.3g}/{unit}, "
                          f"R²={fit.r2:.3f}")
    ax.set_yscale("log")
    ax.set_xlabel(f"depth from mid δ ({unit})")
    ax.set_ylabel("arrival intensity λ(δ) (1/s)")
    ax.set_title(f"Order-arrival intensity, {result['venue']} {result['symbol']} "
                 f"({result['method']}, {result['window_s']:.0f} s)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
