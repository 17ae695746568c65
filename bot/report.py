"""``mmbot report``: the figures and a self-contained HTML page of one run.

``write_report`` reads a run directory through ``bot.metrics``, draws the figures into
``RUN_DIR/report/*.png`` and writes ``RUN_DIR/report/report.html`` with every PNG embedded as
a base64 data URI (the page can be mailed or archived on its own), the metrics table with the
definition of each metric, and, given a benchmark run (the fixed-spread model on the same
data), every metric side by side. ``metrics.json`` next to it holds the same numbers.

Figures use matplotlib's object API with the Agg canvas (no pyplot, no global backend).
Series longer than a few thousand points are reduced by min/max bucketing (lines) or a stride
(scatters) before plotting: every part of the run stays visible, extremes included.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from bot.errors import ConfigError
from bot.metrics import (
    METRICS,
    NS,
    FloatArray,
    IntArray,
    RunData,
    attribution,
    compute_metrics,
    load_run,
    markout,
    max_inventory,
    mid_path,
    spread_capture,
    time_span,
)

MAX_LINE_POINTS = 4_000
MAX_SCATTER_POINTS = 5_000
MARKOUT_CURVE_S = (0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0)
"""Horizons of the markout curve, s: about log-spaced, through 1, 10 and 60 s."""

FIGURES: dict[str, tuple[str, ...]] = {
    "overview.png": ("Quotes and reservation price vs mid", "Quoted spread", "Inventory",
                     "Inventory vs spread", "Cumulative PnL", "Reservation price vs inventory"),
    "attribution.png": ("PnL attribution over time", "PnL attribution at the end"),
    "markouts.png": ("Markout curve",),
    "inventory_hist.png": ("Inventory distribution",),
    "comparison.png": ("Cumulative PnL: strategy vs benchmark",
                       "Inventory: strategy vs benchmark"),
    "calibration.png": ("Calibration fit: arrival intensity vs depth",),
}
"""Every figure file and the titles of its panels, in order."""

SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("What produced these numbers", (
        "strategy", "fill_model", "entry_latency_ms", "cancel_latency_ms", "venue", "symbol",
        "start_utc", "duration_s", "mark_interval_s", "marks")),
    ("PnL", (
        "pnl", "realised", "unrealised", "fees", "spread_capture_pnl", "inventory_pnl",
        "volume", "pnl_per_volume_bps")),
    ("Risk-adjusted", (
        "sharpe", "sharpe_per_interval", "sharpe_annualisation", "sharpe_annualisation_text",
        "max_drawdown")),
    ("Fills and orders", (
        "fills", "buy_fills", "sell_fills", "maker_share", "fills_per_hour", "orders_placed",
        "cancels_sent", "rejects", "cancel_rejects", "fill_ratio", "filled_order_ratio",
        "order_to_trade")),
    ("Spread capture and markouts", (
        "spread_capture_per_fill", "spread_capture_per_fill_bps", "fills_without_mid",
        *(k for k in METRICS if k.startswith("markout_")))),
    ("Inventory", (
        "inventory_mean", "inventory_std", "inventory_max_abs", "final_inventory",
        "max_inventory", "time_at_cap")),
    ("Quoting", (
        "quote_uptime", "quote_uptime_bid", "quote_uptime_ask", "marks_two_sided",
        "quoted_spread_mean", "quoted_spread_mean_bps", "market_spread_mean_bps",
        "risk_denials", "risk_state_changes", "marks_not_active", "final_risk_state")),
)

_SHARES = frozenset({"maker_share", "time_at_cap", "quote_uptime", "quote_uptime_bid",
                     "quote_uptime_ask", "marks_two_sided", "marks_not_active"})
# Keyed by plain str; matplotlib's stubs type rc keys as a Literal union.
_STYLE: dict[Any, Any] = {
    "font.size": 11, "axes.titlesize": 13, "axes.titleweight": "bold", "axes.labelsize": 11,
    "xtick.labelsize": 10, "ytick.labelsize": 10, "legend.fontsize": 9,
    "legend.framealpha": 0.85, "axes.grid": True, "grid.alpha": 0.3,
    "axes.formatter.useoffset": False,
}
_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "USD", "EUR", "BTC", "ETH", "BNB")
STRATEGY_COLOUR = "tab:blue"
BENCHMARK_COLOUR = "tab:orange"


# ---------------------------------------------------------------- entry points


def report_command(run_dir: Path) -> Path:
    """The ``mmbot report RUN_DIR`` verb: write the report, return the HTML path.

    A ``benchmark/`` run directory inside ``run_dir`` (the fixed-spread run on the same data)
    is compared against automatically.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "journal.sqlite").is_file():
        raise ConfigError("RUN_DIR", f"{run_dir} is not a run directory (no journal.sqlite)")
    bench = run_dir / "benchmark"
    return write_report(run_dir, bench if (bench / "journal.sqlite").is_file() else None)


def write_report(run_dir: Path, benchmark_dir: Path | None = None,
                 calibration: Mapping[str, Any] | None = None) -> Path:
    """Write ``run_dir/report/``: the PNG figures, ``metrics.json`` and ``report.html``.

    Args:
        run_dir: the run directory (``journal.sqlite``, ``config.json``, ``summary.json``).
        benchmark_dir: a run directory of the fixed-spread benchmark on the same data; every
            metric is then shown side by side and the figures overlay it.
        calibration: A/k fits to plot, as ``bot.calibrate`` produces them: per side
            (``"bid"``, ``"ask"``, optionally ``"both"``) a mapping or ``IntensityFit`` with
            ``depths``, ``rates``, ``A``, ``k`` (and ``r2``); missing pieces are skipped.

    Returns:
        The path of ``report.html``.
    """
    run = load_run(Path(run_dir))
    bench = load_run(Path(benchmark_dir)) if benchmark_dir is not None else None
    metrics = compute_metrics(run)
    bench_metrics = compute_metrics(bench) if bench is not None else None
    out = run.path / "report"
    out.mkdir(parents=True, exist_ok=True)
    for name in FIGURES:  # a figure from an earlier report must not pass for this one's
        (out / name).unlink(missing_ok=True)
    units = Units.of(metrics.get("symbol"))

    drawn: list[str] = []
    with mpl.rc_context(_STYLE):
        _save(_overview(run, metrics, units), out / "overview.png", drawn)
        _save(_attribution(run, metrics, bench, bench_metrics, units),
              out / "attribution.png", drawn)
        _save(_markouts(run, bench), out / "markouts.png", drawn)
        _save(_inventory_hist(run, bench, units), out / "inventory_hist.png", drawn)
        if bench is not None:
            _save(_comparison(run, bench, units), out / "comparison.png", drawn)
        if calibration is not None:
            fig = _calibration(calibration)
            if fig is not None:
                _save(fig, out / "calibration.png", drawn)
    (out / "metrics.json").write_text(json.dumps(
        {"strategy": metrics, "benchmark": bench_metrics}, indent=2, allow_nan=False) + "\n")
    page = out / "report.html"
    page.write_text(_html(run, metrics, bench, bench_metrics, out, drawn,
                          calibration_given=calibration is not None))
    return page


def _save(fig: Figure, path: Path, drawn: list[str]) -> None:
    fig.savefig(path, dpi=100)
    drawn.append(path.name)


# ---------------------------------------------------------------- helpers


@dataclass(frozen=True, slots=True)
class Units:
    """Names of the base and quote units of a symbol, for axis labels."""

    base: str
    quote: str

    @classmethod
    def of(cls, symbol: Any) -> Units:
        """Split ``BTC/USDT:USDT``, ``BTC-USD-SWAP``, ``BTCUSDT``, ``PF_XBTUSD`` or
        ``BTCUSD_PERP``; fall back to generic names."""
        text = str(symbol or "").upper()
        for sep in ("/", "-"):
            if sep in text:
                base, quote = text.split(sep)[:2]
                return cls(base or "base units", quote.split(":")[0] or "quote ccy")
        for part in text.split("_"):
            for quote in _QUOTES:
                if part.endswith(quote) and len(part) > len(quote):
                    return cls(part[: -len(quote)], quote)
        return cls("base units", "quote ccy")


@dataclass(frozen=True, slots=True)
class TimeAxis:
    """Elapsed time since the run's start, in a unit that suits its length."""

    start_ns: int
    scale_ns: float
    label: str

    @classmethod
    def of(cls, run: RunData) -> TimeAxis:
        """Return seconds, minutes or hours since the first mark."""
        t0, t1 = time_span(run)
        span = (t1 - t0) / NS
        unit, scale = ("s", 1.0) if span <= 180 else ("min", 60.0) if span <= 3 * 3600 \
            else ("h", 3600.0)
        start = datetime.fromtimestamp(t0 / NS, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return cls(t0, scale * NS, f"time since {start} ({unit})")

    def __call__(self, ts_ns: IntArray) -> FloatArray:
        return (ts_ns - self.start_ns) / self.scale_ns


def minmax_index(y: FloatArray, max_points: int = MAX_LINE_POINTS) -> IntArray:
    """Return the indices of at most ``max_points`` points of a line: min and max per bucket.

    The series is cut into equal buckets and each keeps its lowest and highest point in time
    order, so spikes survive and every part of the run stays drawn; an all-NaN bucket keeps
    NaNs (a gap). Short series keep every index.
    """
    n = len(y)
    if n <= max_points:
        return np.arange(n, dtype=np.int64)
    buckets = max_points // 2
    size = math.ceil(n / buckets)
    padded = np.concatenate([y, np.full(buckets * size - n, np.nan)]).reshape(buckets, size)
    missing = np.isnan(padded)
    lo = np.argmin(np.where(missing, np.inf, padded), axis=1)
    hi = np.argmax(np.where(missing, -np.inf, padded), axis=1)
    base = np.arange(buckets) * size
    pairs = np.stack([base + np.minimum(lo, hi), base + np.maximum(lo, hi)], axis=1)
    index: IntArray = np.clip(pairs.reshape(-1), 0, n - 1).astype(np.int64)
    return index


def downsample(x: FloatArray, y: FloatArray, max_points: int = MAX_LINE_POINTS
               ) -> tuple[FloatArray, FloatArray]:
    """Return at most ``max_points`` points of the line (x, y) by min/max bucketing."""
    idx = minmax_index(y, max_points)
    return x[idx], y[idx]


def stride(*arrays: FloatArray, max_points: int = MAX_SCATTER_POINTS) -> list[FloatArray]:
    """Return every k-th element of each array so at most ``max_points`` remain."""
    n = len(arrays[0]) if arrays else 0
    step = max(1, math.ceil(n / max_points))
    return [a[::step] for a in arrays]


def _no_data(ax: Axes, text: str = "no data in this run") -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center",
            fontsize=12, color="grey")


def _line(ax: Axes, x: FloatArray, y: FloatArray, **kwargs: Any) -> None:
    """Plot a line, downsampled; nothing (and no legend entry) when it has no finite point."""
    if not np.isfinite(y).any():
        return
    xs, ys = downsample(x, y)
    ax.plot(xs, ys, **kwargs)


def _legend(ax: Axes, **kwargs: Any) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)


def _legend_on_top(ax: Axes, ncols: int, room: float = 0.2) -> None:
    """Put the legend in a strip above the data: raise the top of the y axis by ``room``."""
    if not ax.get_legend_handles_labels()[0]:
        return
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi + room * (hi - lo))
    ax.legend(loc="upper center", ncols=ncols)


def _log_y(ax: Axes) -> None:
    """Log y axis with plain numbers (0.5, 1, 2) instead of powers of ten."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(_two_and_five))


def _two_and_five(value: float, _: Any) -> str:
    """Label the 2s and 5s of a decade only: every minor tick would overlap."""
    if value <= 0:
        return ""
    lead = round(value / 10 ** math.floor(math.log10(value)))
    return f"{value:g}" if lead in (2, 5) else ""


def lot_step(values: FloatArray) -> float | None:
    """Return the inventory step (the lot) when positions sit on a grid, else None.

    The median gap between distinct levels, so a stray partial fill off the grid does not
    shrink the step; None when the positions look continuous (more than 200 steps).
    """
    levels = np.unique(np.round(values[np.isfinite(values)], 9))
    if len(levels) < 2:
        return None
    step = float(np.median(np.diff(levels)))
    if step <= 0 or (levels[-1] - levels[0]) / step > 200:
        return None
    return step


def _level_means(q: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray] | None:
    """Return the mean of ``y`` at each inventory level, positions snapped to the lot.

    None when the positions do not sit on a grid or there is only one level.
    """
    ok = np.isfinite(q) & np.isfinite(y)
    step = lot_step(q[ok])
    if step is None:
        return None
    snapped = np.round(q[ok] / step) * step  # a run starts flat: the grid goes through 0
    levels, inverse = np.unique(np.round(snapped, 9), return_inverse=True)
    sums = np.bincount(inverse, weights=y[ok])
    return levels, sums / np.bincount(inverse)


def _inventory_steps(run: RunData, axis: TimeAxis) -> tuple[FloatArray, FloatArray]:
    """Return the position as a step line from the fills (exact), start to end of the run."""
    t0, t1 = time_span(run)
    f = run.fills
    ts = np.concatenate([[t0], f.ts_ns, [max(t1, int(f.ts_ns[-1]) if len(f.ts_ns) else t1)]])
    q = np.concatenate([[0.0], f.position_after,
                        [f.position_after[-1] if len(f.ts_ns) else 0.0]])
    return axis(ts.astype(np.int64)), q


# ---------------------------------------------------------------- figures


def _overview(run: RunData, metrics: Mapping[str, Any], units: Units) -> Figure:
    fig = Figure(figsize=(18, 10.5), layout="constrained")
    axes = fig.subplots(2, 3)
    titles = FIGURES["overview.png"]
    for ax, title in zip(axes.flat, titles, strict=True):
        ax.set_title(title)
    fig.suptitle(_headline(metrics), fontsize=14)
    m, f = run.marks, run.fills
    axis = TimeAxis.of(run)
    t = axis(m.ts_ns)
    spread_bps = 1e4 * (m.ask - m.bid) / m.mid
    market_bps = 1e4 * (m.best_ask - m.best_bid) / m.mid

    ax = axes[0, 0]
    if np.isfinite(m.mid).any():
        _line(ax, t, m.mid, color="black", linewidth=1.3, label="mid")
        _line(ax, t, m.bid, color="tab:blue", linewidth=0.8, label="our bid")
        _line(ax, t, m.ask, color="tab:red", linewidth=0.8, label="our ask")
        _line(ax, t, m.reservation, color="tab:purple", linewidth=1.0, linestyle="--",
              label="reservation price")
        for side, marker, colour, name in ((1, "^", "tab:green", "buy fill"),
                                           (-1, "v", "tab:orange", "sell fill")):
            sel = f.side == side
            if sel.any():
                xs, ys = stride(axis(f.ts_ns[sel]), f.price[sel], max_points=2_000)
                ax.scatter(xs, ys, marker=marker, s=16, color=colour, label=name, zorder=3,
                           linewidths=0)
        _legend_on_top(ax, ncols=3)
    else:
        _no_data(ax)
    ax.set_xlabel(axis.label)
    ax.set_ylabel(f"price ({units.quote})")

    ax = axes[0, 1]
    if np.isfinite(spread_bps).any():
        _line(ax, t, spread_bps, color="tab:blue", linewidth=1.0, label="our quoted spread")
        if np.isfinite(market_bps).any():
            _line(ax, t, market_bps, color="grey", linewidth=0.8, label="market spread")
            ours, market = np.nanmedian(spread_bps), np.nanmedian(market_bps)
            if market > 0 and ours / market > 20:
                _log_y(ax)
        _legend(ax, loc="best")
    else:
        _no_data(ax, "never quoted both sides")
    ax.set_xlabel(axis.label)
    ax.set_ylabel("spread (bps of mid)")

    ax = axes[0, 2]
    cap = max_inventory(run)
    tq, q = _inventory_steps(run, axis)
    _line(ax, tq, q, color=STRATEGY_COLOUR, linewidth=1.1, drawstyle="steps-post",
          label="position")
    ax.axhline(0.0, color="grey", linewidth=0.8)
    if cap is not None:
        ax.axhline(cap, color="tab:red", linestyle="--", linewidth=1.0, label="± max inventory")
        ax.axhline(-cap, color="tab:red", linestyle="--", linewidth=1.0)
        ax.set_ylim(-1.15 * cap, 1.15 * cap)
    _legend_on_top(ax, ncols=2)
    ax.set_xlabel(axis.label)
    ax.set_ylabel(f"inventory ({units.base})")

    ax = axes[1, 0]
    ok = np.isfinite(spread_bps) & np.isfinite(m.position)
    if ok.any():
        xs, ys = stride(m.position[ok], spread_bps[ok])
        ax.scatter(xs, ys, s=10, alpha=0.35, color=STRATEGY_COLOUR, linewidths=0,
                   label="marks")
        means = _level_means(m.position[ok], spread_bps[ok])
        if means is not None:
            ax.plot(*means, color="black", marker="o", markersize=4, linewidth=1.2,
                    label="mean per level")
        _legend(ax, loc="best")
    else:
        _no_data(ax, "never quoted both sides")
    ax.set_xlabel(f"inventory ({units.base})")
    ax.set_ylabel("quoted spread (bps of mid)")

    ax = axes[1, 1]
    ok = np.isfinite(m.pnl)
    if ok.any():
        pnl = m.pnl[ok]
        peak = np.maximum.accumulate(np.maximum(pnl, 0.0))
        # Both series at the same times: the PnL's extremes and the drawdown's.
        idx = np.union1d(minmax_index(pnl), minmax_index(pnl - peak))
        xs, ys, ps = t[ok][idx], pnl[idx], peak[idx]
        ax.plot(xs, ys, color=STRATEGY_COLOUR, linewidth=1.3,
                label="PnL marked to mid, after fees")
        ax.fill_between(xs, ys, ps, where=ps > ys, interpolate=True, color="tab:red",
                        alpha=0.2, label=f"drawdown (max {_fmt(metrics.get('max_drawdown'))})")
        ax.axhline(0.0, color="grey", linewidth=0.8)
        _legend(ax, loc="best")
    else:
        _no_data(ax)
    ax.set_xlabel(axis.label)
    ax.set_ylabel(f"PnL ({units.quote})")

    ax = axes[1, 2]
    skew = m.reservation - m.mid
    ok = np.isfinite(skew) & np.isfinite(m.position)
    if ok.any():
        xs, ys = stride(m.position[ok], skew[ok])
        ax.scatter(xs, ys, s=10, alpha=0.35, color="tab:purple", linewidths=0,
                   label="reservation − mid at marks")
        means = _level_means(m.position[ok], skew[ok])
        if means is not None:
            ax.plot(*means, color="black", marker="o", markersize=4, linewidth=1.2,
                    label="mean per level")
        ax.axhline(0.0, color="grey", linewidth=0.8, label="mid")
        _legend(ax, loc="best")
    else:
        _no_data(ax)
    ax.set_xlabel(f"inventory ({units.base})")
    ax.set_ylabel(f"reservation price − mid ({units.quote})")
    return fig


def _attribution(run: RunData, metrics: Mapping[str, Any], bench: RunData | None,
                 bench_metrics: Mapping[str, Any] | None, units: Units) -> Figure:
    fig = Figure(figsize=(16, 6), layout="constrained")
    ax, bars = fig.subplots(1, 2, width_ratios=(2.2, 1))
    over_time, at_end = FIGURES["attribution.png"]
    ax.set_title(over_time)
    bars.set_title(at_end)
    axis = TimeAxis.of(run)
    a = attribution(run)
    if len(a.ts_ns):
        t = axis(a.ts_ns)
        _line(ax, t, a.pnl, color="black", linewidth=1.6, label="total PnL (after fees)")
        _line(ax, t, a.spread_capture, color="tab:green", linewidth=1.2,
              label="spread capture (price vs mid at fill)")
        _line(ax, t, a.inventory, color="tab:red", linewidth=1.2,
              label="inventory (mark-to-market of the position)")
        _line(ax, t, -a.fees, color="tab:grey", linewidth=1.2, linestyle="--",
              label="fees (paid, negative)")
        ax.axhline(0.0, color="grey", linewidth=0.8)
        _legend(ax, loc="best")
    else:
        _no_data(ax)
    ax.set_xlabel(axis.label)
    ax.set_ylabel(f"cumulative PnL ({units.quote})")

    names = ("spread capture", "inventory", "fees (−)", "total PnL")
    runs: list[tuple[str, Mapping[str, Any], str]] = [("strategy", metrics, STRATEGY_COLOUR)]
    if bench_metrics is not None:
        runs.append(("benchmark", bench_metrics, BENCHMARK_COLOUR))
    width = 0.8 / len(runs)
    x = np.arange(len(names))
    for i, (label, mm, colour) in enumerate(runs):
        values = [_float(mm.get("spread_capture_pnl")), _float(mm.get("inventory_pnl")),
                  -_float(mm.get("fees")), _float(mm.get("pnl"))]
        rects = bars.bar(x + (i - (len(runs) - 1) / 2) * width, values, width, color=colour,
                         label=f"{label}: {mm.get('strategy')}")
        bars.bar_label(rects, labels=[_fmt(v, 4) for v in values], fontsize=8, padding=2)
    bars.set_xticks(x, names)
    bars.axhline(0.0, color="grey", linewidth=0.8)
    bars.set_ylabel(f"PnL at the end ({units.quote})")
    lo, hi = bars.get_ylim()
    pad = 0.12 * max(hi - lo, 1e-9)
    bars.set_ylim(min(lo, 0.0) - pad, max(hi, 0.0) + pad)  # room for the labels on both sides
    _legend_on_top(bars, ncols=1, room=0.25)
    return fig


def _markouts(run: RunData, bench: RunData | None) -> Figure:
    fig = Figure(figsize=(11, 6.5), layout="constrained")
    ax = fig.subplots()
    ax.set_title(FIGURES["markouts.png"][0])
    drew = False
    runs: list[tuple[str, RunData, str]] = [("strategy", run, "-")]
    if bench is not None:
        runs.append(("benchmark", bench, "--"))
    for label, data, style in runs:
        path = mid_path(data)
        n = len(data.fills.ts_ns)
        curves: dict[str, list[float]] = {"all": [], "buys": [], "sells": []}
        for h in MARKOUT_CURVE_S:
            mk = markout(data, h, path)
            sides = data.fills.side[mk.mask]
            for name, sel in (("all", sides != 0), ("buys", sides > 0), ("sells", sides < 0)):
                curves[name].append(float(np.mean(mk.bps[sel])) if sel.any() else math.nan)
        colours = {"all": "black", "buys": "tab:green", "sells": "tab:red"}
        if label == "benchmark":
            colours["all"] = BENCHMARK_COLOUR
        for name, values in curves.items():
            if label == "benchmark" and name != "all":
                continue  # three more lines would bury the strategy's
            if np.isfinite(values).any():
                drew = True
                ax.plot(MARKOUT_CURVE_S, values, linestyle=style, marker="o", markersize=3,
                        color=colours[name], linewidth=1.8 if name == "all" else 1.0,
                        label=f"{label}: {name} ({n} fills)" if name == "all"
                        else f"{label}: {name}")
    if drew:
        ax.axhline(0.0, color="grey", linewidth=0.8)
        _, capture = spread_capture(run)
        if len(capture):
            at_fill = float(np.mean(1e4 * capture / run.fills.mid[np.isfinite(run.fills.mid)]))
            ax.axhline(at_fill, color="black", linestyle="-.", linewidth=1.0,
                       label=f"strategy at the fill: spread capture {at_fill:.3g} bps")
        interval = run.config.get("run", {}).get("status_interval_s")
        if run.mid_changes is None and isinstance(interval, int | float) and interval > 0:
            # Without the journaled mid changes, horizons under the mark clock are coarse.
            ax.axvline(float(interval), color="grey", linestyle=":", linewidth=1.0,
                       label=f"mark interval ({interval:g} s): shorter horizons are coarse")
        _legend(ax, loc="best")
    else:
        _no_data(ax, "no fills")
    ax.set_xscale("log")
    ax.set_xticks(MARKOUT_CURVE_S, [f"{h:g}" for h in MARKOUT_CURVE_S])
    ax.minorticks_off()
    ax.set_xlabel("horizon after the fill (s, log scale)")
    ax.set_ylabel("mean markout (bps of fill price; > 0 good, < 0 adverse)")
    return fig


def _inventory_hist(run: RunData, bench: RunData | None, units: Units) -> Figure:
    fig = Figure(figsize=(10, 6), layout="constrained")
    ax = fig.subplots()
    ax.set_title(FIGURES["inventory_hist.png"][0])
    series = [("strategy", run, STRATEGY_COLOUR)]
    if bench is not None:
        series.append(("benchmark", bench, BENCHMARK_COLOUR))
    values = [d.marks.position[np.isfinite(d.marks.position)] for _, d, _ in series]
    every = np.concatenate(values)
    if len(every) == 0:
        _no_data(ax)
    else:
        edges = _bin_edges(every)
        for (label, _, colour), q in zip(series, values, strict=True):
            if len(q) == 0:
                continue
            weights = np.full(len(q), 100.0 / len(q))
            if label == "strategy":
                ax.hist(q, bins=edges.tolist(), weights=weights, color=colour, alpha=0.6,
                        rwidth=0.85, label=f"{label} ({len(q)} marks)")
            else:
                ax.hist(q, bins=edges.tolist(), weights=weights, color=colour, histtype="step",
                        linewidth=2.0, label=f"{label} ({len(q)} marks)")
        cap = max_inventory(run)
        if cap is not None:
            ax.axvline(cap, color="tab:red", linestyle="--", linewidth=1.0,
                       label="± max inventory")
            ax.axvline(-cap, color="tab:red", linestyle="--", linewidth=1.0)
        _legend_on_top(ax, ncols=3, room=0.15)
    ax.set_xlabel(f"inventory ({units.base})")
    ax.set_ylabel("share of time (% of marks)")
    return fig


def _bin_edges(values: FloatArray) -> FloatArray:
    """One bin centred on each inventory level when positions sit on a lot grid; else 40."""
    lo, hi = float(np.min(values)), float(np.max(values))
    if hi - lo < 1e-12:
        half = max(abs(lo) * 0.05, 0.5)
        return np.array([lo - half, lo + half])
    step = lot_step(values)
    if step is not None:  # a run starts flat: the levels are multiples of the lot
        first, last = round(lo / step), round(hi / step)
        return ((np.arange(first, last + 2) - 0.5) * step).astype(np.float64)
    edges: FloatArray = np.histogram_bin_edges(values, bins=40)
    return edges


def _comparison(run: RunData, bench: RunData, units: Units) -> Figure:
    fig = Figure(figsize=(16, 6), layout="constrained")
    pnl_ax, inv_ax = fig.subplots(1, 2)
    pnl_title, inv_title = FIGURES["comparison.png"]
    pnl_ax.set_title(pnl_title)
    inv_ax.set_title(inv_title)
    axis = TimeAxis.of(run)
    for label, data, colour in (("strategy", run, STRATEGY_COLOUR),
                                ("benchmark", bench, BENCHMARK_COLOUR)):
        name = f"{label}: {data.summary.get('strategy', '?')}"
        ok = np.isfinite(data.marks.pnl)
        _line(pnl_ax, axis(data.marks.ts_ns[ok]), data.marks.pnl[ok], color=colour,
              linewidth=1.3, label=name)
        tq, q = _inventory_steps(data, axis)
        _line(inv_ax, tq, q, color=colour, linewidth=1.0, drawstyle="steps-post", label=name,
              alpha=0.85)
    pnl_ax.axhline(0.0, color="grey", linewidth=0.8)
    inv_ax.axhline(0.0, color="grey", linewidth=0.8)
    for ax in (pnl_ax, inv_ax):
        ax.set_xlabel(axis.label)
        _legend_on_top(ax, ncols=2, room=0.15)
    pnl_ax.set_ylabel(f"PnL marked to mid, after fees ({units.quote})")
    inv_ax.set_ylabel(f"inventory ({units.base})")
    return fig


def _get(obj: Any, name: str) -> Any:
    """Read ``name`` from a mapping or an object (an ``IntensityFit``); None when absent."""
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _numbers(value: Any) -> FloatArray | None:
    """Return a sequence of numbers as a float array; None unless it holds a finite one."""
    if value is None or isinstance(value, str | bytes) or np.ndim(value) != 1:
        return None
    try:
        arr = np.asarray([np.nan if v is None else v for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return arr if np.isfinite(arr).any() else None


def _calibration(calibration: Mapping[str, Any]) -> Figure | None:
    """Plot measured λ(δ) and the fitted A·exp(−k·δ) per side; None if nothing to plot."""
    units = _get(calibration, "units")
    in_ticks = isinstance(units, Mapping) and units.get("price") == "tick"
    unit = "ticks" if in_ticks else Units.of(_get(calibration, "symbol")).quote
    shared_depths = _numbers(_get(calibration, "depths"))
    fig = Figure(figsize=(10, 6.5), layout="constrained")
    ax = fig.subplots()
    ax.set_title(FIGURES["calibration.png"][0])
    drew = False
    colours = {"bid": "tab:blue", "ask": "tab:red", "both": "black"}
    for side, colour in colours.items():
        fit = _get(calibration, side)
        if fit is None and side == "both" and _finite(_get(calibration, "A")):
            fit = calibration  # calibrate's JSON: the pooled fit is at the top level
        if fit is None:
            continue
        depths = _numbers(_get(fit, "depths"))
        depths = shared_depths if depths is None else depths
        rates = _numbers(_get(fit, "rates"))
        if depths is not None and rates is not None and len(rates) == len(depths):
            ok = np.isfinite(rates) & (rates > 0)
            if ok.any():
                ax.scatter(depths[ok], rates[ok], s=22, color=colour, zorder=3,
                           label=f"{side}: measured rate")
                drew = True
        a, k, r2 = _get(fit, "A"), _get(fit, "k"), _get(fit, "r2")
        if depths is not None and _finite(a) and _finite(k) and float(a) > 0:
            grid = np.linspace(float(np.nanmin(depths)), float(np.nanmax(depths)), 100)
            r2_text = f", R² = {float(r2):.3f}" if _finite(r2) else ""
            ax.plot(grid, float(a) * np.exp(-float(k) * grid), color=colour,
                    linewidth=1.6, linestyle="--" if side == "both" else "-",
                    label=f"{side}: A = {float(a):.3g} /s, k = {float(k):.3g} per {unit}"
                          f"{r2_text}")
            drew = True
    if not drew:
        return None
    _log_y(ax)
    ax.set_xlabel(f"depth from mid δ ({unit})")
    ax.set_ylabel("arrival intensity λ(δ) (1/s, log scale)")
    ax.grid(alpha=0.3, which="both")
    _legend(ax, loc="best")
    return fig


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _float(value: Any) -> float:
    return float(value) if _finite(value) else math.nan


# ---------------------------------------------------------------- HTML


def _fmt(value: Any, digits: int = 6, key: str = "") -> str:
    """Render a metric for a human: None as a dash, shares in %, floats to ``digits``."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if key in _SHARES:
            return f"{100.0 * value:.2f}%"
        if value == 0.0:
            return "0"
        size = abs(value)
        if size >= 1e12 or size < 1.0:
            return f"{value:.{digits}g}"
        decimals = max(0, digits - int(math.log10(size)) - 1)
        text = f"{value:,.{decimals}f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    return str(value)


def _headline(m: Mapping[str, Any]) -> str:
    return (f"{m.get('venue')} {m.get('symbol')} · {m.get('strategy')} · fill model "
            f"{m.get('fill_model')}, latency {_fmt(m.get('entry_latency_ms'))} ms entry / "
            f"{_fmt(m.get('cancel_latency_ms'))} ms cancel · PnL {_fmt(m.get('pnl'), 5)}")


def _assumptions(run: RunData, m: Mapping[str, Any]) -> str:
    """Return, as HTML, the model and simulation settings that produced a run's numbers."""
    sim = run.config.get("sim_venue", {})
    strat = run.config.get("strategy", {})
    keys = _STRATEGY_KEYS.get(str(strat.get("kind")), ())
    if strat.get("horizon") == "rolling":
        keys = tuple(k for k in keys if k != "session_s")
    elif strat.get("horizon") == "session":
        keys = tuple(k for k in keys if k != "rolling_horizon_s")
    shown = {k: strat[k] for k in keys if strat.get(k) is not None}
    order_qty = strat.get("ladder", {}).get("order_qty")
    if order_qty is not None:
        shown["order_qty"] = order_qty
    params = ", ".join(f"{k}={_fmt(v, 4) if isinstance(v, float) else v}"
                       for k, v in shown.items())
    fees = ""
    if "maker_fee_bps" in sim or "taker_fee_bps" in sim:
        fees = (f"; fees maker {_fmt(sim.get('maker_fee_bps'))} bps, "
                f"taker {_fmt(sim.get('taker_fee_bps'))} bps")
    return (f"<b>{html.escape(str(m.get('strategy')))}</b>"
            f"{' (' + html.escape(params) + ')' if params else ''}: fill model "
            f"<b>{html.escape(str(m.get('fill_model')))}</b>, entry latency "
            f"{_fmt(m.get('entry_latency_ms'))} ms, cancel latency "
            f"{_fmt(m.get('cancel_latency_ms'))} ms{html.escape(fees)}; run directory "
            f"<code>{html.escape(run.path.name)}</code>")


_STRATEGY_KEYS: dict[str, tuple[str, ...]] = {
    "avellaneda_stoikov": ("gamma", "centre", "horizon", "rolling_horizon_s", "session_s"),
    "glft": ("gamma", "drift", "skew_scale"),
    "glft_exact": ("gamma", "q_max", "horizon", "rolling_horizon_s", "session_s"),
    "fixed_spread": ("half_spread_bps", "half_spread_ticks"),
}

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1400px; color: #222; line-height: 1.4; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.92em; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ddd; padding: 4px 8px; vertical-align: top; }
th { background: #f3f3f3; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.txt { text-align: right; }
td.def { color: #555; font-size: 0.92em; }
tr.section th { background: #e6eef7; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.6em 1em; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #444; font-size: 0.95em; }
"""


def _html(run: RunData, m: Mapping[str, Any], bench: RunData | None,
          bm: Mapping[str, Any] | None, out: Path, drawn: Sequence[str],
          calibration_given: bool) -> str:
    esc = html.escape
    title = f"Backtest report: {m.get('venue')} {m.get('symbol')}, {m.get('strategy')}"
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f"<p>Start {esc(str(m.get('start_utc')))}, duration {_fmt(m.get('duration_s'), 5)} s, "
        f"{_fmt(m.get('marks'))} marks every {_fmt(m.get('mark_interval_s'))} s.</p>",
        "<h2>What produced these numbers</h2>",
        f"<p>Strategy: {_assumptions(run, m)}.</p>",
    ]
    if bench is not None and bm is not None:
        parts.append(f"<p>Benchmark: {_assumptions(bench, bm)}.</p>")
        differs = [k for k in ("fill_model", "entry_latency_ms", "cancel_latency_ms", "symbol")
                   if m.get(k) != bm.get(k)]
        if differs:
            parts.append(f'<p class="note">The benchmark ran under different '
                         f'{esc(", ".join(differs))}: the comparison is not like for '
                         f"like.</p>")
    else:
        parts.append('<p class="note">No benchmark run given: put the fixed-spread run on the '
                     "same data in <code>benchmark/</code> to compare every metric.</p>")
    for label, mm in (("strategy", m), ("benchmark", bm)):
        if mm is not None and mm.get("final_risk_state") == "HALTED":
            parts.append(f'<p class="note">The {label} run ended HALTED by the risk gate: it '
                         "stopped quoting before the end of the data.</p>")
    parts.append(
        "<p>PnL is marked to the mid and after fees. Sharpe: "
        f"{esc(str(m.get('sharpe_annualisation_text')))}. Markouts: sign·(mid h seconds "
        "after the fill − fill price), sign +1 for buys and −1 for sells, so a positive "
        "markout is a good fill and a negative one adverse selection; the mid at t+h is the "
        "last mark or fill mid at or before t+h, and fills closer than h to the end are left "
        "out.</p>")
    parts.append("<h2>Metrics</h2>")
    parts.append(_table(m, bm))
    parts.append("<h2>Figures</h2>")
    for name in drawn:
        data = base64.b64encode((out / name).read_bytes()).decode("ascii")
        titles = FIGURES.get(name, ())
        parts.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{esc("; ".join(titles))}">'
            f"<figcaption><b>{esc(name)}</b>: {esc('; '.join(titles))}</figcaption></figure>")
    if calibration_given and "calibration.png" not in drawn:
        parts.append('<p class="note">Calibration given, but it holds no depths, rates or '
                     "A/k to plot.</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _cell(value: Any, key: str) -> str:
    kind = "txt" if isinstance(value, str) else "num"
    return f'<td class="{kind}">{html.escape(_fmt(value, key=key))}</td>'


def _table(m: Mapping[str, Any], bm: Mapping[str, Any] | None) -> str:
    esc = html.escape
    head = "<tr><th>metric</th><th>strategy</th>"
    head += "<th>benchmark</th>" if bm is not None else ""
    head += "<th>definition</th></tr>"
    cols = 4 if bm is not None else 3
    rows = ['<table id="metrics">', head]
    listed: set[str] = set()
    sections = [*SECTIONS]
    other = tuple(k for k in m if not any(k in keys for _, keys in SECTIONS))
    if other:
        sections.append(("Other", other))
    for section, keys in sections:
        rows.append(f'<tr class="section"><th colspan="{cols}">{esc(section)}</th></tr>')
        for key in keys:
            if key in listed or (key not in m and (bm is None or key not in bm)):
                continue
            listed.add(key)
            cells = [f"<td><code>{esc(key)}</code></td>", _cell(m.get(key), key)]
            if bm is not None:
                cells.append(_cell(bm.get(key), key))
            cells.append(f'<td class="def">{esc(METRICS.get(key, ""))}</td>')
            rows.append(f"<tr>{''.join(cells)}</tr>")
    rows.append("</table>")
    return "\n".join(rows)

