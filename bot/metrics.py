"""Backtest metrics of one run directory: PnL and its attribution, risk, fills, markouts, uptime.

Pure computation over what a run left on disk (``journal.sqlite``, ``config.json``,
``summary.json``); no plotting (that is ``bot.report``). Units: prices and PnL in the quote
currency, sizes in base units, time in seconds unless a name says otherwise.

Conventions used throughout:

* ``sign`` is +1 for a buy fill and -1 for a sell fill (``bot.events.Side``).
* The mid at time ``t`` is the last observation at or before ``t`` of the mid path: every
  journaled change of the mid (exact), plus the periodic marks and the mid journaled with
  every fill; journals without mid changes fall back on the marks and fills, so horizons
  shorter than ``run.status_interval_s`` are then only as fine as the fills around them.
* The marks are the fixed clock for Sharpe, drawdown and the inventory statistics; each mark is
  written at the first event on or after its scheduled tick, hence a little late (see
  ``on_clock``).
* Every metric that cannot be computed (no fills, one mark, zero variance) is None, never NaN,
  so the result is valid JSON. ``METRICS`` defines each key.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bot.errors import DataError
from bot.events import Liquidity, OrderFilled, Side
from bot.portfolio import Portfolio

NS = 1_000_000_000
SECONDS_PER_YEAR = 365.0 * 86_400.0
"""Crypto venues trade around the clock: a year is 365 days of 86,400 s."""
MARKOUT_HORIZONS_S = (1.0, 10.0, 60.0)
CAP_TOLERANCE = 1e-9
"""|q| >= max_inventory·(1 - CAP_TOLERANCE) counts as at the cap (float sums of lots)."""

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
StrArray = npt.NDArray[np.str_]

METRICS: dict[str, str] = {
    "strategy": "Quoting model of the run (summary.json).",
    "fill_model": "Simulated venue's fill model: part of the result, it can flip the PnL sign.",
    "entry_latency_ms": "Simulated order entry latency, ms.",
    "cancel_latency_ms": "Simulated cancel latency, ms.",
    "venue": "Venue of the market.",
    "symbol": "Symbol of the market.",
    "start_utc": "Time of the first mark, UTC.",
    "duration_s": "Last mark minus first mark, s.",
    "mark_interval_s": "Clock of the marks (run.status_interval_s), s.",
    "marks": "Number of periodic marks.",
    "pnl": "Final PnL marked to the mid, after fees, quote currency "
           "(= realised + unrealised - fees).",
    "realised": "Realised PnL, average-cost method, before fees.",
    "unrealised": "Open position against its average cost at the final mid.",
    "fees": "Fees paid (negative = rebates earned), quote currency.",
    "spread_capture_pnl": "Σ over fills of qty·sign·(mid at fill - price): what the fills "
                          "earned against the mid when they happened, before fees.",
    "inventory_pnl": "pnl + fees - spread_capture_pnl: mark-to-market of the inventory held "
                     "after each fill, before fees.",
    "volume": "Σ qty·price over fills, quote currency.",
    "pnl_per_volume_bps": "pnl / volume, bps.",
    "sharpe": "Annualised Sharpe of the PnL increments on the mark clock: "
              "mean/std(ddof=1) · sqrt(seconds per year / interval).",
    "sharpe_per_interval": "Mean/std(ddof=1) of the PnL increments per mark interval "
                           "(not annualised).",
    "sharpe_annualisation": "The factor sqrt(365·86400 / mark_interval_s) applied.",
    "sharpe_annualisation_text": "How the Sharpe is annualised.",
    "max_drawdown": "Largest fall of the marked PnL below its running peak (the peak starts "
                    "at 0, the flat start), quote currency.",
    "fills": "Fill events (partial fills count each).",
    "buy_fills": "Buy fill events.",
    "sell_fills": "Sell fill events.",
    "maker_share": "Share of fills that added liquidity.",
    "fills_per_hour": "fills / duration in hours.",
    "orders_placed": "Place commands sent.",
    "cancels_sent": "Cancel commands sent.",
    "rejects": "Orders rejected by the venue.",
    "cancel_rejects": "Cancels rejected by the venue (order already gone).",
    "fill_ratio": "fills / orders_placed.",
    "filled_order_ratio": "Orders with at least one fill / orders_placed.",
    "order_to_trade": "(orders_placed + cancels_sent) / fills: messages per fill.",
    "spread_capture_per_fill": "Mean over fills of sign·(mid at fill - price), price units "
                               "per unit of size.",
    "spread_capture_per_fill_bps": "Mean over fills of sign·(mid at fill - price) / mid, bps.",
    "fills_without_mid": "Fills journaled without a mid (left out of spread capture).",
    "inventory_mean": "Mean position over the marks (equal-spaced: time-weighted), base units.",
    "inventory_std": "Standard deviation (ddof=0) of the position over the marks.",
    "inventory_max_abs": "Largest |position| at a mark.",
    "final_inventory": "Position after the last fill.",
    "max_inventory": "risk.max_inventory of the run's config.",
    "time_at_cap": "Share of marks with |q| >= max_inventory·(1 - 1e-9).",
    "quote_uptime": "Share of the marks' time span with at least one live bid and one live "
                    "ask order (live: accepted until canceled, rejected or fully filled).",
    "quote_uptime_bid": "Share of the time span with a live bid order.",
    "quote_uptime_ask": "Share of the time span with a live ask order.",
    "marks_two_sided": "Share of marks where the strategy wanted both sides quoted.",
    "quoted_spread_mean": "Mean of our ask - bid over two-sided marks, price units.",
    "quoted_spread_mean_bps": "Mean of (ask - bid)/mid over two-sided marks, bps.",
    "market_spread_mean_bps": "Mean market spread (best ask - best bid)/mid over marks, bps.",
    "risk_denials": "Orders denied by the risk gate.",
    "risk_state_changes": "Risk state transitions (ACTIVE / REDUCING / HALTED).",
    "marks_not_active": "Share of marks with the risk gate not ACTIVE.",
    "final_risk_state": "Risk state at the end of the run (HALTED: it stopped quoting).",
}
for _h in MARKOUT_HORIZONS_S:
    _k = f"markout_{_h:g}s"
    METRICS[_k] = (f"Mean over fills of sign·(mid {_h:g} s after the fill - price), price "
                   "units per unit of size; > 0 the fills were good, < 0 adverse selection. "
                   "Fills less than the horizon before the end are left out.")
    METRICS[f"{_k}_bps"] = f"As {_k}, divided by the fill price, bps."
    METRICS[f"{_k}_pnl"] = (f"Σ over the counted fills of qty·sign·(mid {_h:g} s later - "
                            "price), quote currency.")
    METRICS[f"{_k}_fills"] = f"Fills counted in {_k}."


@dataclass(frozen=True, slots=True)
class Marks:
    """The periodic marks, one element per mark, NaN where the journal has NULL."""

    seq: IntArray
    ts_ns: IntArray
    mid: FloatArray
    reservation: FloatArray
    bid: FloatArray
    ask: FloatArray
    position: FloatArray
    pnl: FloatArray
    best_bid: FloatArray
    best_ask: FloatArray
    fees: FloatArray
    sigma: FloatArray
    intensity_a: FloatArray
    intensity_k: FloatArray
    state: StrArray


@dataclass(frozen=True, slots=True)
class Fills:
    """Our fills in journal order; ``side`` is +1 (buy) or -1 (sell)."""

    seq: IntArray
    ts_ns: IntArray
    side: IntArray
    price: FloatArray
    qty: FloatArray
    remaining_qty: FloatArray
    fee: FloatArray
    mid: FloatArray
    position_after: FloatArray
    pnl_after: FloatArray
    liquidity: StrArray
    client_order_id: StrArray
    trade_id: StrArray


@dataclass(frozen=True, slots=True)
class Orders:
    """Commands sent: ``kind`` is "place" or "cancel"; side 0 and NaN price for cancels."""

    ts_ns: IntArray
    kind: StrArray
    side: IntArray
    price: FloatArray
    qty: FloatArray
    client_order_id: StrArray


@dataclass(frozen=True, slots=True)
class OrderEvents:
    """Venue answers other than fills: accepted, rejected, canceled, cancel_rejected."""

    ts_ns: IntArray
    kind: StrArray
    client_order_id: StrArray


@dataclass(frozen=True, slots=True)
class RiskEvents:
    """Risk gate records: ``kind`` is "denied" or "state_changed"."""

    ts_ns: IntArray
    kind: StrArray
    state: StrArray
    reason: StrArray


@dataclass(frozen=True, slots=True)
class RunData:
    """Everything a report needs from one run directory, loaded into numpy arrays."""

    path: Path
    marks: Marks
    fills: Fills
    orders: Orders
    events: OrderEvents
    risk: RiskEvents
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    duplicate_fills: int = 0
    mid_changes: tuple[IntArray, IntArray, FloatArray] | None = None
    """(seq, ts_ns, mid) of every change of the mid, when the journal has them."""


_MARK_COLUMNS = ("seq", "ts_ns", "mid", "reservation", "bid", "ask", "position", "pnl",
                 "best_bid", "best_ask", "fees", "sigma", "intensity_a", "intensity_k", "state")
_FILL_COLUMNS = ("seq", "ts_ns", "side", "price", "qty", "remaining_qty", "fee", "mid",
                 "position_after", "pnl_after", "liquidity", "client_order_id", "trade_id")


def load_run(run_dir: Path) -> RunData:
    """Load a run directory: the journal's tables and the config and summary snapshots.

    Fills repeated with the same (client order id, trade id) are dropped, as the portfolio
    drops them. A journal from before a column existed reads that column as NaN.

    Raises:
        FileNotFoundError: there is no ``journal.sqlite`` in ``run_dir``.
        DataError: the journal is not a readable SQLite database, or a snapshot is not JSON.
    """
    run_dir = Path(run_dir)
    journal = run_dir / "journal.sqlite"
    if not journal.is_file():
        raise FileNotFoundError(f"no journal.sqlite in {run_dir}")
    config = _read_json(run_dir / "config.json")
    summary = _read_json(run_dir / "summary.json")
    try:
        with closing(sqlite3.connect(f"{journal.resolve().as_uri()}?mode=ro",
                                     uri=True)) as db:
            m = _select(db, "marks", _MARK_COLUMNS)
            f = _select(db, "fills", _FILL_COLUMNS)
            o = _select(db, "orders", ("ts_ns", "kind", "side", "price", "qty",
                                       "client_order_id"))
            e = _select(db, "order_events", ("ts_ns", "kind", "client_order_id"))
            r = _select(db, "risk_events", ("ts_ns", "kind", "state", "reason"))
            mc = _select(db, "mids", ("seq", "ts_ns", "mid"))
    except sqlite3.DatabaseError as exc:
        raise DataError(f"{journal}: cannot read the journal: {exc}") from exc
    f, duplicates = _dedupe_fills(f)
    marks = Marks(
        seq=_ints(m["seq"]), ts_ns=_ints(m["ts_ns"]), mid=_floats(m["mid"]),
        reservation=_floats(m["reservation"]), bid=_floats(m["bid"]), ask=_floats(m["ask"]),
        position=_floats(m["position"]), pnl=_floats(m["pnl"]),
        best_bid=_floats(m["best_bid"]), best_ask=_floats(m["best_ask"]),
        fees=_floats(m["fees"]), sigma=_floats(m["sigma"]),
        intensity_a=_floats(m["intensity_a"]), intensity_k=_floats(m["intensity_k"]),
        state=_strs(m["state"]),
    )
    fills = Fills(
        seq=_ints(f["seq"]), ts_ns=_ints(f["ts_ns"]), side=_sides(f["side"]),
        price=_floats(f["price"]), qty=_floats(f["qty"]),
        remaining_qty=_floats(f["remaining_qty"]), fee=_floats(f["fee"]),
        mid=_floats(f["mid"]), position_after=_floats(f["position_after"]),
        pnl_after=_floats(f["pnl_after"]), liquidity=_strs(f["liquidity"]),
        client_order_id=_strs(f["client_order_id"]), trade_id=_strs(f["trade_id"]),
    )
    orders = Orders(ts_ns=_ints(o["ts_ns"]), kind=_strs(o["kind"]), side=_sides(o["side"]),
                    price=_floats(o["price"]), qty=_floats(o["qty"]),
                    client_order_id=_strs(o["client_order_id"]))
    events = OrderEvents(ts_ns=_ints(e["ts_ns"]), kind=_strs(e["kind"]),
                         client_order_id=_strs(e["client_order_id"]))
    risk = RiskEvents(ts_ns=_ints(r["ts_ns"]), kind=_strs(r["kind"]), state=_strs(r["state"]),
                      reason=_strs(r["reason"]))
    changes = ((_ints(mc["seq"]), _ints(mc["ts_ns"]), _floats(mc["mid"]))
               if mc["seq"] else None)
    return RunData(path=run_dir, marks=marks, fills=fills, orders=orders, events=events,
                   risk=risk, config=config, summary=summary, duplicate_fills=duplicates,
                   mid_changes=changes)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise DataError(f"{path}: not a JSON snapshot: {exc}") from exc
    return data if isinstance(data, dict) else {}


def _select(db: sqlite3.Connection, table: str, columns: Sequence[str]
            ) -> dict[str, list[Any]]:
    present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
    if not present:
        return {c: [] for c in columns}
    exprs = ", ".join(c if c in present else f"NULL AS {c}" for c in columns)
    rows = db.execute(f"SELECT {exprs} FROM {table} ORDER BY seq").fetchall()
    return {c: [row[i] for row in rows] for i, c in enumerate(columns)}


def _dedupe_fills(f: dict[str, list[Any]]) -> tuple[dict[str, list[Any]], int]:
    seen: set[tuple[str, str]] = set()
    keep: list[int] = []
    for i, (coid, trade) in enumerate(zip(f["client_order_id"], f["trade_id"], strict=True)):
        if trade:
            if (coid, trade) in seen:
                continue
            seen.add((coid, trade))
        keep.append(i)
    if len(keep) == len(f["ts_ns"]):
        return f, 0
    return {c: [v[i] for i in keep] for c, v in f.items()}, len(f["ts_ns"]) - len(keep)


def _floats(values: list[Any]) -> FloatArray:
    return np.array(values, dtype=np.float64).reshape(-1)


def _ints(values: list[Any]) -> IntArray:
    return np.array(values, dtype=np.int64).reshape(-1)


def _strs(values: list[Any]) -> StrArray:
    return np.array(["" if v is None else str(v) for v in values], dtype=np.str_).reshape(-1)


def _sides(values: list[Any]) -> IntArray:
    return np.array([1 if v == "BUY" else -1 if v == "SELL" else 0 for v in values],
                    dtype=np.int64).reshape(-1)


# ---------------------------------------------------------------- building blocks


def mark_interval_s(run: RunData) -> float | None:
    """Return the marks' clock: ``run.status_interval_s`` of the config, else the median gap."""
    configured = run.config.get("run", {}).get("status_interval_s")
    if isinstance(configured, int | float) and configured > 0:
        return float(configured)
    ts = run.marks.ts_ns
    if len(ts) < 2:
        return None
    gap = float(np.median(np.diff(ts))) / NS
    return gap if gap > 0 else None


def on_clock(ts_ns: IntArray, values: FloatArray, interval_ns: int) -> FloatArray:
    """Sample ``values`` on the fixed clock ``ts_ns[0] + j·interval_ns``.

    Each tick takes the last value written at or before tick + interval/2: a mark is written at
    the first event on or after its scheduled tick, so it is late by a little and belongs to
    that tick. A tick with no new mark repeats the previous value (a zero increment).
    """
    if len(ts_ns) == 0 or interval_ns <= 0:
        return np.empty(0, dtype=np.float64)
    ticks = np.arange(ts_ns[0], ts_ns[-1] + interval_ns // 2 + 1, interval_ns, dtype=np.int64)
    idx = np.searchsorted(ts_ns, ticks + interval_ns // 2, side="right") - 1
    return values[np.clip(idx, 0, len(values) - 1)]


def max_drawdown(pnl: FloatArray) -> float | None:
    """Return the largest fall of ``pnl`` below its running peak, the peak starting at 0."""
    pnl = pnl[np.isfinite(pnl)]
    if len(pnl) == 0:
        return None
    peak = np.maximum.accumulate(np.maximum(pnl, 0.0))
    return float(np.max(peak - pnl))


def sharpe(increments: FloatArray, interval_s: float) -> tuple[float | None, float | None]:
    """Return (per-interval, annualised) Sharpe of PnL increments on a clock of ``interval_s``."""
    inc = increments[np.isfinite(increments)]
    if len(inc) < 2:
        return None, None
    std = float(np.std(inc, ddof=1))
    if not std > 1e-12 * max(1.0, float(np.max(np.abs(inc)))):
        return None, None
    per = float(np.mean(inc)) / std
    return per, per * math.sqrt(SECONDS_PER_YEAR / interval_s)


@dataclass(frozen=True, slots=True)
class MidPath:
    """The mid over time: marks and fills merged in journal order, NaNs left out."""

    ts_ns: IntArray
    mid: FloatArray

    def at(self, ts_ns: IntArray) -> FloatArray:
        """Return the last mid at or before each time (NaN before the first observation)."""
        idx = np.searchsorted(self.ts_ns, ts_ns, side="right") - 1
        out = np.full(len(ts_ns), np.nan)
        ok = idx >= 0
        out[ok] = self.mid[idx[ok]]
        return out

    @property
    def end_ns(self) -> int:
        """Time of the last observation (0 when empty)."""
        return int(self.ts_ns[-1]) if len(self.ts_ns) else 0


def mid_path(run: RunData) -> MidPath:
    """Return the mid path of a run: every journaled change of the mid when there are any,
    plus the marks and the mid journaled at each fill."""
    m, f = run.marks, run.fills
    parts_ts, parts_seq, parts_mid = [m.ts_ns, f.ts_ns], [m.seq, f.seq], [m.mid, f.mid]
    if run.mid_changes is not None:
        seq_c, ts_c, mid_c = run.mid_changes
        parts_ts.append(ts_c)
        parts_seq.append(seq_c)
        parts_mid.append(mid_c)
    ts = np.concatenate(parts_ts)
    seq = np.concatenate(parts_seq)
    mid = np.concatenate(parts_mid)
    order = np.lexsort((seq, ts))
    ts, mid = ts[order], mid[order]
    ok = np.isfinite(mid)
    return MidPath(ts[ok], mid[ok])


@dataclass(frozen=True, slots=True)
class Markout:
    """Per-fill markouts at one horizon, for the fills that have one (``mask``)."""

    horizon_s: float
    mask: npt.NDArray[np.bool_]
    unit: FloatArray
    """sign·(mid(t+h) - price) of the counted fills, price units per unit of size."""
    bps: FloatArray
    pnl: FloatArray
    """qty·unit of the counted fills, quote currency."""


def markout(run: RunData, horizon_s: float, path: MidPath | None = None) -> Markout:
    """Return the markouts of every fill at ``horizon_s`` (fills past the end left out)."""
    path = mid_path(run) if path is None else path
    f = run.fills
    target = f.ts_ns + round(horizon_s * NS)
    later = path.at(target)
    mask = (target <= path.end_ns) & np.isfinite(later)
    unit = f.side[mask] * (later[mask] - f.price[mask])
    return Markout(horizon_s, mask, unit, 1e4 * unit / f.price[mask], f.qty[mask] * unit)


def spread_capture(run: RunData) -> tuple[npt.NDArray[np.bool_], FloatArray]:
    """Return (fills with a mid, sign·(mid at fill - price) of those fills)."""
    f = run.fills
    ok = np.isfinite(f.mid)
    return ok, f.side[ok] * (f.mid[ok] - f.price[ok])


@dataclass(frozen=True, slots=True)
class Attribution:
    """PnL split at each mark: ``pnl = spread_capture + inventory - fees``."""

    ts_ns: IntArray
    pnl: FloatArray
    spread_capture: FloatArray
    inventory: FloatArray
    fees: FloatArray


def attribution(run: RunData) -> Attribution:
    """Return the cumulative PnL attribution at each mark with a finite PnL.

    Spread capture and fees add up the fills journaled before the mark (by ``seq``); the
    inventory part is the rest of the marked PnL.
    """
    m, f = run.marks, run.fills
    ok = np.isfinite(m.pnl)
    capture = np.where(np.isfinite(f.mid), f.qty * f.side * (f.mid - f.price), 0.0)
    before = np.searchsorted(f.seq, m.seq[ok], side="left")
    cum_capture = np.concatenate([[0.0], np.cumsum(capture)])[before]
    cum_fees = np.concatenate([[0.0], np.cumsum(f.fee)])[before]
    pnl = m.pnl[ok]
    return Attribution(m.ts_ns[ok], pnl, cum_capture, pnl + cum_fees - cum_capture, cum_fees)


def replay_portfolio(run: RunData, mark_price: float) -> Portfolio:
    """Return the portfolio after every fill of the run, marked at ``mark_price``."""
    pf = Portfolio()
    f = run.fills
    for i in range(len(f.ts_ns)):
        liq = Liquidity.TAKER if f.liquidity[i] == "taker" else Liquidity.MAKER
        pf.apply_fill(OrderFilled(
            ts_ns=int(f.ts_ns[i]), client_order_id=str(f.client_order_id[i]),
            side=Side(int(f.side[i])), price=float(f.price[i]), qty=float(f.qty[i]),
            remaining_qty=float(f.remaining_qty[i]), fee=float(f.fee[i]), liquidity=liq,
            trade_id=str(f.trade_id[i]),
        ))
    pf.mark(mark_price)
    return pf


def final_mid(run: RunData) -> float:
    """Return the mid the run ended on: the summary's, else the last mid seen, else NaN."""
    value = run.summary.get("final_mid")
    if isinstance(value, int | float) and math.isfinite(value) and value > 0:
        return float(value)
    path = mid_path(run)
    if len(path.mid):
        return float(path.mid[-1])
    prices = run.fills.price
    return float(prices[-1]) if len(prices) else math.nan


def live_intervals(run: RunData, side: int) -> list[tuple[int, int]]:
    """Return the merged intervals [start, end) during which an order of ``side`` was live.

    Live from its accepted event until it is canceled, rejected or fully filled; an order
    still live when the journal ends stays live to the last mark.
    """
    end_of_run = time_span(run)[1]
    sides = {str(c): int(s) for c, s, k in zip(run.orders.client_order_id, run.orders.side,
                                               run.orders.kind, strict=True) if k == "place"}
    start: dict[str, int] = {}
    stop: dict[str, int] = {}
    e = run.events
    for ts, kind, coid in zip(e.ts_ns.tolist(), e.kind.tolist(), e.client_order_id.tolist(),
                              strict=True):
        if kind == "accepted":
            start.setdefault(coid, ts)
        elif kind in ("canceled", "rejected"):
            stop.setdefault(coid, ts)
    f = run.fills
    for ts, coid, remaining in zip(f.ts_ns.tolist(), f.client_order_id.tolist(),
                                   f.remaining_qty.tolist(), strict=True):
        if remaining <= 1e-12:
            stop.setdefault(coid, ts)
    spans = sorted((t0, max(t0, stop.get(coid, end_of_run)))
                   for coid, t0 in start.items() if sides.get(coid) == side)
    merged: list[tuple[int, int]] = []
    for t0, t1 in spans:
        if merged and t0 <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], t1))
        else:
            merged.append((t0, t1))
    return merged


def _intersect(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def _covered(spans: list[tuple[int, int]], lo: int, hi: int) -> int:
    return sum(max(0, min(t1, hi) - max(t0, lo)) for t0, t1 in spans)


def time_span(run: RunData) -> tuple[int, int]:
    """Return the run's time span in ns: first to last mark, else everything journaled."""
    ts = run.marks.ts_ns
    if len(ts) >= 2:
        return int(ts[0]), int(ts[-1])
    every = np.concatenate([ts, run.fills.ts_ns, run.orders.ts_ns, run.events.ts_ns])
    if len(every) == 0:
        return 0, 0
    return int(every.min()), int(every.max())


# ---------------------------------------------------------------- the metrics


def compute_metrics(run: RunData) -> dict[str, Any]:
    """Return the run's metrics: a flat JSON-able dict, None where a value is undefined.

    ``METRICS`` documents every key; the module docstring states the conventions.
    """
    out: dict[str, Any] = {}
    _provenance(run, out)
    _money(run, out)
    _risk(run, out)
    _activity(run, out)
    _markouts(run, out)
    _inventory(run, out)
    _quoting(run, out)
    return {k: _clean(v) for k, v in out.items()}


def _provenance(run: RunData, out: dict[str, Any]) -> None:
    s, c = run.summary, run.config
    sim = c.get("sim_venue", {})
    out["strategy"] = s.get("strategy", c.get("strategy", {}).get("kind"))
    out["fill_model"] = s.get("fill_model", sim.get("fill_model"))
    out["entry_latency_ms"] = s.get("entry_latency_ms", sim.get("entry_latency_ms"))
    out["cancel_latency_ms"] = s.get("cancel_latency_ms", sim.get("cancel_latency_ms"))
    out["venue"] = s.get("venue", c.get("market", {}).get("venue"))
    out["symbol"] = s.get("symbol", c.get("market", {}).get("symbol"))
    t0, t1 = time_span(run)
    out["start_utc"] = (datetime.fromtimestamp(t0 / NS, UTC).isoformat(timespec="seconds")
                        if t0 else None)
    out["duration_s"] = (t1 - t0) / NS
    out["mark_interval_s"] = mark_interval_s(run)
    out["marks"] = len(run.marks.ts_ns)


def _money(run: RunData, out: dict[str, Any]) -> None:
    f = run.fills
    pf = replay_portfolio(run, final_mid(run))
    out["pnl"] = pf.pnl
    out["realised"] = pf.realised
    out["unrealised"] = pf.unrealised
    out["fees"] = pf.fees
    ok, capture = spread_capture(run)
    capture_pnl = float(np.sum(f.qty[ok] * capture))
    out["spread_capture_pnl"] = capture_pnl
    out["inventory_pnl"] = out["pnl"] + pf.fees - capture_pnl
    out["volume"] = pf.volume
    out["pnl_per_volume_bps"] = 1e4 * out["pnl"] / pf.volume if pf.volume > 0 else None
    out["spread_capture_per_fill"] = _mean(capture)
    out["spread_capture_per_fill_bps"] = _mean(1e4 * capture / f.mid[ok])
    out["fills_without_mid"] = int(np.count_nonzero(~ok))
    out["final_inventory"] = pf.position


def _risk(run: RunData, out: dict[str, Any]) -> None:
    m = run.marks
    interval = mark_interval_s(run)
    ok = np.isfinite(m.pnl)
    out["sharpe"] = out["sharpe_per_interval"] = out["sharpe_annualisation"] = None
    out["sharpe_annualisation_text"] = None
    if interval is not None:
        grid = on_clock(m.ts_ns[ok], m.pnl[ok], round(interval * NS))
        per, annual = sharpe(np.diff(grid), interval)
        out["sharpe_per_interval"] = per
        out["sharpe"] = annual
        out["sharpe_annualisation"] = math.sqrt(SECONDS_PER_YEAR / interval)
        out["sharpe_annualisation_text"] = (
            f"mean/std of {interval:g} s PnL increments x sqrt(365*86400 s / {interval:g} s)")
    out["max_drawdown"] = max_drawdown(m.pnl)


def _activity(run: RunData, out: dict[str, Any]) -> None:
    f, o, e = run.fills, run.orders, run.events
    n = len(f.ts_ns)
    placed = int(np.count_nonzero(o.kind == "place"))
    cancels = int(np.count_nonzero(o.kind == "cancel"))
    hours = out["duration_s"] / 3600.0
    out["fills"] = n
    out["buy_fills"] = int(np.count_nonzero(f.side > 0))
    out["sell_fills"] = int(np.count_nonzero(f.side < 0))
    out["maker_share"] = float(np.mean(f.liquidity == "maker")) if n else None
    out["fills_per_hour"] = n / hours if hours > 0 else None
    out["orders_placed"] = placed
    out["cancels_sent"] = cancels
    out["rejects"] = int(np.count_nonzero(e.kind == "rejected"))
    out["cancel_rejects"] = int(np.count_nonzero(e.kind == "cancel_rejected"))
    out["fill_ratio"] = n / placed if placed else None
    filled = len(set(f.client_order_id.tolist()))
    out["filled_order_ratio"] = filled / placed if placed else None
    out["order_to_trade"] = (placed + cancels) / n if n else None


def _markouts(run: RunData, out: dict[str, Any]) -> None:
    path = mid_path(run)
    for h in MARKOUT_HORIZONS_S:
        mk = markout(run, h, path)
        key = f"markout_{h:g}s"
        out[key] = _mean(mk.unit)
        out[f"{key}_bps"] = _mean(mk.bps)
        out[f"{key}_pnl"] = float(np.sum(mk.pnl))
        out[f"{key}_fills"] = len(mk.unit)


def _inventory(run: RunData, out: dict[str, Any]) -> None:
    m = run.marks
    q = m.position[np.isfinite(m.position)]
    out["inventory_mean"] = _mean(q)
    out["inventory_std"] = float(np.std(q)) if len(q) else None
    out["inventory_max_abs"] = float(np.max(np.abs(q))) if len(q) else None
    cap = max_inventory(run)
    out["max_inventory"] = cap
    out["time_at_cap"] = (float(np.mean(np.abs(q) >= cap * (1.0 - CAP_TOLERANCE)))
                          if cap is not None and len(q) else None)


def max_inventory(run: RunData) -> float | None:
    """Return ``risk.max_inventory`` of the run's config (None when absent or infinite)."""
    value = run.config.get("risk", {}).get("max_inventory")
    if isinstance(value, int | float) and math.isfinite(value) and value > 0:
        return float(value)
    return None


def _quoting(run: RunData, out: dict[str, Any]) -> None:
    m = run.marks
    lo, hi = time_span(run)
    bids = live_intervals(run, 1)
    asks = live_intervals(run, -1)
    span = hi - lo
    out["quote_uptime"] = _covered(_intersect(bids, asks), lo, hi) / span if span > 0 else None
    out["quote_uptime_bid"] = _covered(bids, lo, hi) / span if span > 0 else None
    out["quote_uptime_ask"] = _covered(asks, lo, hi) / span if span > 0 else None
    two = np.isfinite(m.bid) & np.isfinite(m.ask)
    out["marks_two_sided"] = float(np.mean(two)) if len(two) else None
    spread = (m.ask - m.bid)[two]
    out["quoted_spread_mean"] = _mean(spread)
    out["quoted_spread_mean_bps"] = _mean(1e4 * spread / m.mid[two])
    market = 1e4 * (m.best_ask - m.best_bid) / m.mid
    out["market_spread_mean_bps"] = _mean(market[np.isfinite(market)])
    r = run.risk
    out["risk_denials"] = int(np.count_nonzero(r.kind == "denied"))
    out["risk_state_changes"] = int(np.count_nonzero(r.kind == "state_changed"))
    states = m.state[m.state != ""]
    out["marks_not_active"] = float(np.mean(states != "ACTIVE")) if len(states) else None
    out["final_risk_state"] = run.summary.get("risk_state", str(states[-1]) if len(states)
                                              else None)


def _mean(x: FloatArray) -> float | None:
    x = x[np.isfinite(x)]
    return float(np.mean(x)) if len(x) else None


def _clean(value: Any) -> Any:
    """Return plain JSON types: numpy scalars unwrapped, NaN and infinities as None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
