"""The engine end to end on virtual time: kill-switch drill, bad data, determinism."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from adapters.sim_venue import SimVenue
from bot.app import MarketRules, build_engine
from bot.clock import VirtualClock
from bot.engine import Engine
from bot.events import (
    BookDelta,
    BookInvalid,
    BookSnapshot,
    Command,
    MarketEvent,
    MarketState,
    PlaceOrder,
    QuoteSet,
    RiskState,
    Side,
    Trade,
)
from bot.journal import Journal, read_table
from bot.paper import run_sim_virtual, sim_venue_config
from bot.settings import Settings, load_settings

S = 1_000_000_000


def settings_for(**sections: dict[str, Any]) -> Settings:
    base: dict[str, Any] = {
        "market": {"symbol": "T-USD", "tick_size": 0.01, "lot_size": 0.001},
        "model": {"estimate_sigma": False, "sigma": 0.05, "intensity_a": 5.0,
                  "intensity_k": 50.0},
        "sim_venue": {"fill_model": "touch", "entry_latency_ms": 0.0,
                      "cancel_latency_ms": 0.0},
        "strategy": {"kind": "avellaneda_stoikov", "gamma": 0.1, "horizon": "rolling",
                     "rolling_horizon_s": 10.0},
        "run": {"status_interval_s": 1.0},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return load_settings(None, base, environ={})


class RecordingVenue:
    """Wrap a venue and keep every command it was sent, with the virtual time."""

    def __init__(self, inner: SimVenue, clock: VirtualClock) -> None:
        self.inner = inner
        self.clock = clock
        self.sent: list[tuple[int, Command]] = []

    def submit(self, command: Command) -> None:
        self.sent.append((self.clock.now_ns(), command))
        self.inner.submit(command)

    def on_market(self, event: MarketEvent) -> None:
        self.inner.on_market(event)

    def after_book(self, ts_ns: int) -> None:
        self.inner.after_book(ts_ns)

    @property
    def enters_immediately(self) -> bool:
        return self.inner.enters_immediately


class SpyStrategy:
    """Record every state a strategy is asked to quote."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.states: list[MarketState] = []

    @property
    def name(self) -> str:
        return "spy"

    def quote(self, state: MarketState) -> QuoteSet:
        self.states.append(state)
        result: QuoteSet = self.inner.quote(state)
        return result


def make_engine(settings: Settings, journal: Journal | None = None
                ) -> tuple[Engine, RecordingVenue, VirtualClock]:
    clock = VirtualClock()
    engine = build_engine(settings, MarketRules(0.01, 0.001), clock, journal, log=None)
    venue = RecordingVenue(
        SimVenue(sim_venue_config(settings), clock, engine.on_order_event, engine.book), clock
    )
    engine.attach_venue(venue, simulated=True)
    return engine, venue, clock


def book(ts_s: float, bid: float, ask: float, qty: float = 5.0, seq: int = 0) -> BookSnapshot:
    ts = round(ts_s * S)
    return BookSnapshot(ts, ts, "T-USD", ((bid, qty),), ((ask, qty),), seq)


def trade(ts_s: float, price: float, aggressor: Side, qty: float = 10.0) -> Trade:
    ts = round(ts_s * S)
    return Trade(ts, ts, "T-USD", price, qty, aggressor, f"t{ts}")


def crash_then_recover() -> list[MarketEvent]:
    """Sellers hit us all the way down, then the market comes back and trades both ways."""
    events: list[MarketEvent] = [book(1.0, 99.99, 100.01)]
    price = 100.0
    t = 1.0
    for _ in range(12):
        t += 0.5
        events.append(trade(t, price - 0.2, Side.SELL))
        price -= 1.0
        t += 0.5
        events.append(book(t, round(price - 0.01, 2), round(price + 0.01, 2)))
    for _ in range(20):
        t += 0.5
        price += 1.0
        events.append(book(t, round(price - 0.01, 2), round(price + 0.01, 2)))
        events.append(trade(t + 0.1, price + 0.5, Side.BUY))
        events.append(trade(t + 0.2, price - 0.5, Side.SELL))
    return events


def test_kill_switch_when_loss_exceeds_limit_then_cancels_all_halts_and_sends_nothing(
    tmp_path: Path,
) -> None:
    settings = settings_for(risk={"max_inventory": 50.0, "max_loss": 5.0})
    journal = Journal(tmp_path / "journal.sqlite")
    engine, venue, _ = make_engine(settings, journal)

    engine.run_virtual(crash_then_recover())
    journal.close()

    assert engine.gate.state is RiskState.HALTED
    halts = [r for r in read_table(journal.path, "risk_events") if r[3] == "HALTED"]
    assert len(halts) == 1
    halt_ts = halts[0][1]
    assert engine.portfolio.fills > 0
    places_after = [c for ts, c in venue.sent if ts >= halt_ts and isinstance(c, PlaceOrder)]
    assert places_after == []
    assert not engine.orders.orders
    assert not venue.inner.open_orders
    journal_places_after = [r for r in read_table(journal.path, "orders")
                            if r[2] == "place" and r[1] >= halt_ts]
    assert journal_places_after == []


def test_kill_switch_on_drawdown_from_the_peak(tmp_path: Path) -> None:
    settings = settings_for(risk={"max_inventory": 50.0, "max_drawdown": 3.0})
    engine, _, _ = make_engine(settings)

    engine.run_virtual(crash_then_recover())

    assert engine.gate.state is RiskState.HALTED
    assert engine.gate.halt_reason is not None
    assert engine.gate.halt_reason.value == "drawdown"
    assert not engine.orders.orders


def test_without_limits_the_same_scenario_keeps_quoting() -> None:
    # The drill above must be able to fail: with the limits off, orders keep going out.
    settings = settings_for(risk={"max_inventory": 50.0})
    engine, venue, _ = make_engine(settings)

    engine.run_virtual(crash_then_recover())

    assert engine.gate.state is not RiskState.HALTED
    late = [c for ts, c in venue.sent if ts > 20 * S and isinstance(c, PlaceOrder)]
    assert late


BAD_EVENTS: list[tuple[str, MarketEvent]] = [
    ("nan price", BookDelta(3 * S, 3 * S, "T-USD", ((math.nan, 1.0),), (), 0)),
    ("nan qty", BookDelta(3 * S, 3 * S, "T-USD", ((99.98, math.nan),), (), 0)),
    ("negative qty", BookDelta(3 * S, 3 * S, "T-USD", (), ((100.02, -1.0),), 0)),
    ("infinite price", BookDelta(3 * S, 3 * S, "T-USD", (), ((math.inf, 1.0),), 0)),
    ("zero price", BookSnapshot(3 * S, 3 * S, "T-USD", ((0.0, 1.0),), ((100.01, 1.0),), 0)),
    ("crossed snapshot", BookSnapshot(3 * S, 3 * S, "T-USD", ((100.05, 1.0),),
                                      ((100.01, 1.0),), 0)),
    ("crossing delta", BookDelta(3 * S, 3 * S, "T-USD", ((100.02, 1.0),), (), 0)),
    ("feed says invalid", BookInvalid(3 * S, 3 * S, "T-USD", "sequence gap")),
]


@pytest.mark.parametrize(("label", "bad"), BAD_EVENTS, ids=[b[0] for b in BAD_EVENTS])
def test_bad_market_data_never_reaches_the_strategy_and_pulls_quotes(
    label: str, bad: MarketEvent
) -> None:
    settings = settings_for()
    engine, _, _ = make_engine(settings)
    spy = SpyStrategy(engine.strategy)
    engine.strategy = spy

    engine.run_virtual([book(1.0, 99.99, 100.01), book(2.0, 99.99, 100.01)])
    assert engine.orders.orders, "quotes rest before the bad event"
    seen_before = len(spy.states)
    engine.run_virtual([bad, BookDelta(4 * S, 4 * S, "T-USD", ((99.97, 2.0),), (), 0)])

    assert not engine.book.valid
    assert len(spy.states) == seen_before, f"{label}: strategy was asked to quote"
    assert not engine.orders.orders, f"{label}: quotes were not pulled"
    for state in spy.states:
        assert math.isfinite(state.mid)
        assert state.best_bid < state.best_ask

    engine.run_virtual([book(5.0, 99.99, 100.01)])
    assert engine.book.valid
    assert engine.orders.orders, "a fresh snapshot brings quoting back"


def test_bad_trade_is_dropped_and_never_fills() -> None:
    settings = settings_for()
    engine, _, _ = make_engine(settings)
    engine.run_virtual([book(1.0, 99.99, 100.01)])

    engine.run_virtual([trade(2.0, math.nan, Side.SELL), trade(2.1, 1.0, Side.SELL, qty=-5.0)])

    assert engine.stats.bad_events == 2
    assert engine.portfolio.fills == 0


def record(run_dir: Path) -> tuple[list[Any], list[Any]]:
    journal = run_dir / "journal.sqlite"
    return read_table(journal, "orders"), read_table(journal, "fills")


def test_same_seed_and_config_give_the_identical_orders_and_fills_record(tmp_path: Path) -> None:
    from bot.app import RunDir

    settings = load_settings(Path(__file__).parents[1] / "config" / "paper-sim.toml",
                             environ={})
    runs = []
    for name in ("a", "b"):
        run = RunDir(tmp_path / name)
        run.path.mkdir()
        run_sim_virtual(settings, 120.0, run)
        runs.append(record(run.path))

    orders_a, fills_a = runs[0]
    assert len(orders_a) > 50 and len(fills_a) > 5, "the run must trade to prove anything"
    assert runs[0] == runs[1]


def test_a_different_seed_gives_a_different_record(tmp_path: Path) -> None:
    from bot.app import RunDir

    path = Path(__file__).parents[1] / "config" / "paper-sim.toml"
    records = []
    for name, seed in (("a", 1), ("b", 2)):
        settings = load_settings(path, {"sim_market": {"seed": seed}}, environ={})
        run = RunDir(tmp_path / name)
        run.path.mkdir()
        run_sim_virtual(settings, 60.0, run)
        records.append(record(run.path))
    assert records[0] != records[1]


def test_inventory_never_exceeds_the_cap_on_the_simulated_market() -> None:
    path = Path(__file__).parents[1] / "config" / "paper-sim.toml"
    settings = load_settings(path, {"risk": {"max_inventory": 2.0, "max_loss": 1e9,
                                             "max_drawdown": 1e9},
                                    "strategy": {"gamma": 0.001}}, environ={})
    positions: list[float] = []
    engine, _ = run_sim_virtual(settings, 300.0, None,
                                on_status=lambda s: positions.append(s.position))
    assert max(abs(p) for p in positions) <= 2.0 + 1e-9
    assert engine.stats.fills > 10


@pytest.mark.parametrize(
    "strategy",
    [
        {"kind": "avellaneda_stoikov", "gamma": 0.2, "horizon": "session", "session_s": 30.0},
        {"kind": "glft", "gamma": 0.2},
        {"kind": "glft_exact", "gamma": 0.2, "q_max": 4, "horizon": "rolling"},
        {"kind": "fixed_spread", "half_spread_ticks": 2.0},
    ],
    ids=lambda s: s["kind"],
)
def test_every_strategy_trades_a_three_level_ladder_within_the_cap(
    strategy: dict[str, Any],
) -> None:
    path = Path(__file__).parents[1] / "config" / "paper-sim.toml"
    settings = load_settings(path, {
        "strategy": {**strategy, "ladder": {"levels": 3, "spacing_ticks": 2.0,
                                            "order_qty": 0.5}},
        "risk": {"max_inventory": 3.0, "max_loss": 1e9, "max_drawdown": 1e9},
    }, environ={})
    positions: list[float] = []
    engine, summary = run_sim_virtual(settings, 120.0, None,
                                      on_status=lambda s: positions.append(s.position))

    assert summary["fills"] > 5
    assert max(abs(p) for p in positions) <= 3.0 + 1e-9
    assert summary["open_orders_at_end"] == 0
    assert engine.stats.bad_events == 0


def test_stale_book_pulls_quotes_until_fresh_data_arrives() -> None:
    from bot.events import Timer

    settings = settings_for(risk={"max_book_age_ms": 2000})
    engine, _, _ = make_engine(settings)
    engine.run_virtual([book(1.0, 99.99, 100.01)])
    assert engine.orders.orders

    engine.run_virtual([Timer(2 * S, 2 * S), Timer(4 * S, 4 * S)])
    assert not engine.orders.orders
    assert engine.stats.denials["stale_book"] >= 1

    engine.run_virtual([book(5.0, 99.99, 100.01)])
    assert engine.orders.orders


def test_reducing_state_quotes_only_the_side_that_reduces_inventory() -> None:
    settings = settings_for(risk={"max_inventory": 1.0})
    engine, _, _ = make_engine(settings)
    engine.run_virtual([book(1.0, 99.99, 100.01), trade(1.5, 99.0, Side.SELL),
                        book(2.0, 99.99, 100.01)])

    assert engine.portfolio.position == pytest.approx(1.0)
    assert engine.gate.state is RiskState.REDUCING
    sides = {order.side for order in engine.orders.orders.values()}
    assert sides == {Side.SELL}


@pytest.mark.parametrize("method", ["hits", "time-to-fill"])
def test_online_calibration_finds_the_simulated_market_parameters(method: str) -> None:
    path = Path(__file__).parents[1] / "config" / "paper-sim.toml"
    settings = load_settings(path, {
        # Configured values far from the truth (A=5/s, k=50/price): the fit must replace them.
        "model": {"intensity_a": 1.0, "intensity_k": 10.0, "calibrate": "online",
                  "calibration_method": method, "refit_s": 30.0,
                  "calibration_window_s": 1200.0, "max_depth_ticks": 10.0,
                  "depth_points": 11},
        "risk": {"max_loss": 1e9, "max_drawdown": 1e9},
    }, environ={})
    statuses: list[Any] = []
    engine, _ = run_sim_virtual(settings, 1200.0, None, on_status=statuses.append)

    assert engine.intensity_fitted
    assert engine.stats.refits > 10
    # Time-to-fill with a 1 s horizon sees the mid move (k and A biased low, see
    # strategies.intensity); hit counting on the 100 ms clock is close to exact.
    tolerance = 0.15 if method == "hits" else 0.5
    assert engine.intensity_a == pytest.approx(5.0, rel=tolerance)
    assert engine.intensity_k == pytest.approx(50.0, rel=tolerance)
    assert not statuses[0].intensity_fitted and statuses[-1].intensity_fitted


def test_warm_up_fills_the_estimators_before_trading(shared_data: Path) -> None:
    from bot.replay import warm_up

    settings = load_settings(None, {"market": {"venue": "binance-usdm", "symbol": "BTCUSDT"},
                                    "model": {"calibrate": "online"}}, environ={})
    clock = VirtualClock()
    engine = build_engine(settings, MarketRules(0.1, 0.001), clock, None, log=None)
    assert engine.sigma_estimator is not None and not engine.sigma_estimator.ready

    n = warm_up(engine, [shared_data / "hftbacktest" / "usdm" / "btcusdt_20240808.gz"],
                end_ns=2_000_000_000_000_000_000)

    assert n > 20_000
    assert engine.sigma_estimator.ready and engine.intensity_fitted
    assert engine.stats.orders_sent == 0
    assert engine.market_state(0).intensity_k == engine.intensity_k


def test_health_pause_pulls_quotes_when_the_model_is_off() -> None:
    path = Path(__file__).parents[1] / "config" / "paper-sim.toml"
    # A forecast 100x too high: realised fills fall far short, every period.
    settings = load_settings(path, {
        "model": {"intensity_a": 500.0},
        "health": {"interval_s": 20.0, "action": "pause", "pause_s": 15.0},
        "risk": {"max_loss": 1e9, "max_drawdown": 1e9},
    }, environ={})
    statuses: list[Any] = []
    engine, _ = run_sim_virtual(settings, 120.0, None, on_status=statuses.append)

    assert engine.stats.health_warnings["fill_rate"] >= 2
    paused = [s for s in statuses if s.book_valid and s.bid != s.bid]
    assert paused, "quotes were pulled while paused"
