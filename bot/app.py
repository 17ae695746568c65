"""Build the engine's components from settings, and the run directory around a run.

Every mode (paper, replay, live) goes through these builders, so a setting means the same
thing everywhere.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.clock import Scheduler
from bot.engine import Engine, ModelInputs, Status
from bot.errors import ConfigError
from bot.events import BookSnapshot
from bot.journal import Journal
from bot.orders import OrderManager, OrderManagerConfig
from bot.settings import Settings, snapshot
from risk.gate import RiskGate, RiskLimits
from strategies.avellaneda_stoikov import ASParams, AvellanedaStoikov
from strategies.base import Strategy
from strategies.fixed_spread import FixedSpread, FixedSpreadParams
from strategies.glft import GLFTAsymptotic, GLFTExact, GLFTExactParams, GLFTParams
from strategies.health import HealthLimits, ModelHealth
from strategies.intensity import HitCountEstimator, IntensityEstimator, TimeToFillEstimator
from strategies.ladder import LadderParams
from strategies.volatility import VolatilityEstimator

NS = 1_000_000_000


def build_ladder(settings: Settings) -> LadderParams:
    """Return the ladder parameters of the configured strategy."""
    lad = settings.strategy.ladder
    return LadderParams(
        order_qty=lad.order_qty,
        levels=lad.levels,
        spacing_ticks=lad.spacing_ticks if lad.levels > 1 else None,
        size_decay=lad.size_decay,
        inventory_shaping=lad.inventory_shaping,
        max_inventory=settings.risk.max_inventory if lad.inventory_shaping else None,
    )


def build_strategy(settings: Settings) -> Strategy:
    """Return the configured quoting model."""
    s = settings.strategy
    ladder = build_ladder(settings)
    try:
        if s.kind == "avellaneda_stoikov":
            return AvellanedaStoikov(ASParams(
                gamma=s.gamma, ladder=ladder, centre=s.centre, horizon=s.horizon,
                session_s=s.session_s, rolling_horizon_s=s.rolling_horizon_s,
            ))
        if s.kind == "glft":
            return GLFTAsymptotic(GLFTParams(
                gamma=s.gamma, ladder=ladder, drift=s.drift, skew_scale=s.skew_scale,
            ))
        if s.kind == "glft_exact":
            return GLFTExact(GLFTExactParams(
                gamma=s.gamma, ladder=ladder, q_max=s.q_max, horizon=s.horizon,
                session_s=s.session_s, rolling_horizon_s=s.rolling_horizon_s,
            ))
        return FixedSpread(FixedSpreadParams(
            ladder=ladder, half_spread_bps=s.half_spread_bps,
            half_spread_ticks=s.half_spread_ticks,
        ))
    except ValueError as exc:
        raise ConfigError("strategy", str(exc)) from exc


def build_gate(settings: Settings) -> RiskGate:
    """Return the risk gate with the configured limits."""
    r = settings.risk
    try:
        return RiskGate(RiskLimits(
            max_inventory=r.max_inventory,
            min_half_spread_ticks=r.min_half_spread_ticks,
            min_half_spread_bps=r.min_half_spread_bps,
            enforce_touch=r.enforce_touch,
            max_drawdown=r.max_drawdown,
            max_loss=r.max_loss,
            max_order_qty=r.max_order_qty,
            max_order_notional=r.max_order_notional,
            price_band_bps=r.price_band_bps,
            max_book_age_ns=r.max_book_age_ms * 1_000_000,
            max_orders_per_s=r.max_orders_per_s,
        ))
    except ValueError as exc:
        raise ConfigError("risk", str(exc)) from exc


@dataclass(frozen=True, slots=True)
class MarketRules:
    """Tick, lot and minimum order of the market, resolved from settings or the venue."""

    tick_size: float
    lot_size: float
    min_qty: float = 0.0
    min_notional: float = 0.0


def infer_rules(snapshot: BookSnapshot) -> MarketRules:
    """Infer tick and lot from a depth snapshot: the finest price step and quantity decimals."""
    prices = sorted({p for p, _ in snapshot.bids[:500]} | {p for p, _ in snapshot.asks[:500]})
    steps = [round(b - a, 10) for a, b in itertools.pairwise(prices) if b > a]
    tick = min(steps) if steps else 0.01
    decimals = 0
    for _, qty in (*snapshot.bids[:500], *snapshot.asks[:500]):
        while decimals < 8 and abs(qty * 10**decimals - round(qty * 10**decimals)) > 1e-6:
            decimals += 1
    return MarketRules(tick_size=tick, lot_size=10.0**-decimals)


def build_order_manager(settings: Settings, rules: MarketRules, run_tag: str = ""
                        ) -> OrderManager:
    """Return the order manager; ``run_tag`` makes client order ids unique per run."""
    m, o = settings.market, settings.orders
    return OrderManager(OrderManagerConfig(
        symbol=m.symbol, tick_size=rules.tick_size, lot_size=rules.lot_size,
        min_qty=max(m.min_qty, rules.min_qty), min_notional=max(m.min_notional,
                                                                 rules.min_notional),
        requote_ticks=o.requote_ticks,
        max_order_age_ns=round(o.max_order_age_s * NS), post_only=o.post_only,
        client_id_prefix=f"{o.client_id_prefix}{run_tag}",
    ))


def build_engine(settings: Settings, rules: MarketRules, clock: Scheduler,
                 journal: Journal | None, log: Any, on_status: Any = None,
                 run_tag: str = "") -> Engine:
    """Return an engine wired from settings (the venue is attached by the caller)."""
    model = settings.model
    estimator = None
    if model.estimate_sigma:
        estimator = VolatilityEstimator(
            interval_ns=model.sigma_interval_ms * 1_000_000,
            window=model.sigma_window,
            min_samples=model.sigma_min_samples,
        )
    return Engine(
        symbol=settings.market.symbol,
        tick_size=rules.tick_size,
        clock=clock,
        strategy=build_strategy(settings),
        gate=build_gate(settings),
        orders=build_order_manager(settings, rules, run_tag),
        model=ModelInputs(model.sigma, model.intensity_a, model.intensity_k),
        sigma_estimator=estimator,
        journal=journal,
        log=log,
        status_interval_ns=round(settings.run.status_interval_s * NS),
        on_status=on_status,
        decision_cache=time_invariant(settings),
        health=build_health(settings),
        calibrator_factory=build_calibrator(settings, rules),
        refit_ns=round(settings.model.refit_s * NS),
        min_r2=settings.model.min_r2,
        a_bounds=settings.model.a_bounds,
        k_bounds=settings.model.k_bounds,
        health_action=settings.health.action,
        widen_factor=settings.health.widen_factor,
        pause_ns=round(settings.health.pause_s * NS),
    )


def calibration_depths(tick: float, points: int, max_depth_ticks: float,
                       half_spread: float) -> list[float]:
    """Return virtual-order depths from the mid, in price, on the lattice where trades print.

    With a spread of ``2·half_spread`` the touch is ``half_spread`` from the mid and deeper
    levels follow every tick, so the grid is ``half_spread + j·step``. A grid off that lattice
    would read the step function λ(δ) between levels and bias A by ``exp(k·offset)``.
    """
    step = max(1, round(max_depth_ticks / (points - 1)))
    touch = max(round(2.0 * half_spread / tick), 1) * tick / 2.0
    return [touch + tick * step * j for j in range(points)]


CalibratorFactory = Callable[[float], IntensityEstimator]
"""Build the online A/k estimator once the first book gives the spread (its depth grid)."""


def build_calibrator(settings: Settings, rules: MarketRules) -> CalibratorFactory | None:
    """Return a factory of the online A/k estimator, or None when calibration is off."""
    m = settings.model
    if m.calibrate == "off":
        return None
    window_ns = round(m.calibration_window_s * NS)
    tick = rules.tick_size

    def factory(half_spread: float) -> IntensityEstimator:
        depths = calibration_depths(tick, m.depth_points, m.max_depth_ticks, half_spread)
        if m.calibration_method == "hits":
            return HitCountEstimator(depths=depths, interval_ns=100_000_000,
                                     window_ns=window_ns)
        return TimeToFillEstimator(depths=depths, start_interval_ns=1_000_000_000,
                                   horizon_ns=1_000_000_000, window_ns=window_ns)

    return factory


def build_health(settings: Settings) -> ModelHealth | None:
    """Return the model-health monitor, or None when disabled."""
    h = settings.health
    if not h.enabled:
        return None
    return ModelHealth(HealthLimits(
        interval_ns=round(h.interval_s * NS),
        fill_rate_tolerance=h.fill_rate_tolerance,
        min_expected_fills=h.min_expected_fills,
        inventory_drift=h.inventory_drift,
        spread_ratio=h.spread_ratio,
        max_inventory=settings.risk.max_inventory,
    ))


def time_invariant(settings: Settings) -> bool:
    """Return whether the same market inputs always give the same quoting decision.

    True unless the strategy's horizon runs on the clock (a session end) or orders are
    replaced by age; then the engine may reuse a decision when nothing it reads has changed.
    """
    s = settings.strategy
    clocked = s.kind in ("avellaneda_stoikov", "glft_exact") and s.horizon == "session"
    return not clocked and settings.orders.max_order_age_s == 0


def run_summary(engine: Engine, settings: Settings, mode: str) -> dict[str, Any]:
    """Return what every run reports: counters, money, end state, and what produced them.

    The fill model and latencies are part of the result: they can flip the sign of a market
    maker's PnL.
    """
    p = engine.portfolio
    stats = engine.stats
    return {
        "mode": mode,
        "venue": settings.market.venue,
        "symbol": settings.market.symbol,
        "strategy": settings.strategy.kind,
        "fill_model": settings.sim_venue.fill_model,
        "entry_latency_ms": settings.sim_venue.entry_latency_ms,
        "cancel_latency_ms": settings.sim_venue.cancel_latency_ms,
        "tick_size": engine.tick_size,
        "events": stats.events,
        "book_updates": stats.book_updates,
        "trades": stats.trades,
        "bad_events": stats.bad_events,
        "book_invalidations": stats.book_invalidations,
        "orders_sent": stats.orders_sent,
        "cancels_sent": stats.cancels_sent,
        "fills": stats.fills,
        "rejects": stats.rejects,
        "denials": dict(stats.denials),
        "health_warnings": dict(stats.health_warnings),
        "pnl": p.pnl,
        "realised": p.realised,
        "unrealised": p.unrealised,
        "fees": p.fees,
        "volume": p.volume,
        "final_inventory": p.position,
        "final_mid": finite_or_none(engine.book.mid),
        "final_best_bid": finite_or_none(engine.book.best_bid),
        "final_best_ask": finite_or_none(engine.book.best_ask),
        "risk_state": engine.gate.state.value,
        "open_orders_at_end": len(engine.orders.orders),
    }


def finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


@dataclass(frozen=True, slots=True)
class RunDir:
    """The folder of one run: config snapshot, journal, logs, summary."""

    path: Path

    @property
    def journal(self) -> Path:
        """SQLite journal of orders, fills and risk events."""
        return self.path / "journal.sqlite"

    @property
    def log(self) -> Path:
        """JSON-lines log."""
        return self.path / "log.jsonl"

    @property
    def summary(self) -> Path:
        """Summary JSON written at the end of the run."""
        return self.path / "summary.json"

    def write_json(self, name: str, obj: dict[str, Any]) -> Path:
        """Write ``obj`` as pretty JSON into the run directory.

        Written whole or not at all (a temporary file renamed over the target): a process
        killed while writing leaves the previous file, never half of one.
        """
        target = self.path / name
        partial = target.with_name(f".{name}.partial")
        partial.write_text(json.dumps(_jsonable(obj), indent=2, sort_keys=False) + "\n")
        os.replace(partial, target)
        return target


def make_run_dir(settings: Settings, mode: str) -> RunDir:
    """Create a fresh run directory under ``run.out_dir`` and snapshot the config into it."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    safe_symbol = "".join(c if c.isalnum() or c in "-_" else "_" for c in settings.market.symbol)
    base = settings.run.out_dir / f"{stamp}-{mode}-{settings.market.venue}-{safe_symbol}"
    path = base
    n = 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    run = RunDir(path)
    run.write_json("config.json", snapshot(settings))
    return run


def run_tag_now() -> str:
    """Return a short per-run tag for client order ids (base-36 seconds)."""
    n = int(time.time()) % (36**5)
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    for _ in range(5):
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out


def format_status(status: Status) -> str:
    """Render the compact one-line status printed every second."""
    t = datetime.fromtimestamp(status.ts_ns / NS, UTC).strftime("%H:%M:%S")
    sigma_flag = "" if status.sigma_estimated else "(cfg)"
    ak_flag = "" if status.intensity_fitted else "(cfg)"
    book = "" if status.book_valid else " BOOK-INVALID"
    return (
        f"{t} mid {_f(status.mid)} r {_f(status.reservation)} "
        f"bid {_f(status.bid)} ask {_f(status.ask)} spr {_f(status.spread)} "
        f"q {status.position:+.4g} pnl {round(status.pnl, 4) + 0.0:+.4f} "
        f"sigma {status.sigma:.4g}{sigma_flag} A {status.intensity_a:.3g} "
        f"k {status.intensity_k:.3g}{ak_flag} {status.state.value}{book} "
        f"fills {status.fills}"
    )


def _f(x: float) -> str:
    return f"{x:.4f}" if math.isfinite(x) else "-"


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj
