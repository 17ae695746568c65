"""Live execution against a fake Binance spot venue, through ccxt's real exchange classes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import ccxt
import ccxt.async_support
import ccxt.pro
import pytest
from fakes.exchange import FakeBinanceSpot, FaultKind

from adapters.ccxt_exec import CcxtExecution
from bot.app import MarketRules
from bot.errors import ConfigError, VenueError
from bot.events import (
    BookSnapshot,
    CancelOrder,
    MarketEvent,
    OrderAccepted,
    OrderCanceled,
    OrderEvent,
    OrderFilled,
    OrderRejected,
    PlaceOrder,
    RiskState,
    Side,
)
from bot.journal import Journal, read_table
from bot.live import LiveSession
from bot.logs import configure_logging, get_logger
from bot.settings import load_settings

SYMBOL = "BTC/USDT"
TIMEOUT_S = 20.0


@pytest.fixture(autouse=True)
def _quiet_logs_after() -> Any:
    """Tests here log to files: put the quiet default back afterwards."""
    yield
    configure_logging("error", None)


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinanceSpot]:
    async with FakeBinanceSpot() as venue:
        venue.set_book("BTCUSDT", "60000.00", "60000.01")
        yield venue


@pytest.fixture
async def rest(fake: FakeBinanceSpot) -> AsyncIterator[Any]:
    exchange = fake.make_exchange(ccxt.async_support.binance, timeout_ms=500)
    try:
        await exchange.load_markets()
        yield exchange
    finally:
        await exchange.close()


class Collector:
    """The engine side of ``deliver``: keep every event, in order."""

    def __init__(self) -> None:
        self.events: list[OrderEvent] = []

    def __call__(self, event: OrderEvent) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


async def settle(execution: CcxtExecution) -> None:
    """Wait until every command task has finished."""
    while execution.tasks:
        await asyncio.gather(*execution.tasks, return_exceptions=True)


def place(coid: str, side: Side = Side.BUY, price: float = 59000.0,
          qty: float = 0.001) -> PlaceOrder:
    return PlaceOrder(time.time_ns(), coid, SYMBOL, side, price, qty, True)


async def test_place_cancel_and_partial_then_full_fills_are_delivered_once(
    fake: FakeBinanceSpot, rest: Any
) -> None:
    got = Collector()
    execution = CcxtExecution(rest, SYMBOL, got, prefix="mmt")
    async with asyncio.timeout(TIMEOUT_S):
        execution.submit(place("mmt1"))
        execution.submit(place("mmt2", price=58990.0))
        await settle(execution)
        assert [e.client_order_id for e in got.of(OrderAccepted)] == ["mmt1", "mmt2"]
        assert fake.order("mmt1").type == "LIMIT_MAKER"

        await fake.fill("mmt1", qty="0.0004")
        assert await execution.poll_fills() == 1
        await fake.fill("mmt1")
        assert await execution.poll_fills() == 1
        assert await execution.poll_fills() == 0  # the same trades again: nothing new

        execution.submit(CancelOrder(time.time_ns(), "mmt2", SYMBOL))
        await settle(execution)

    fills = got.of(OrderFilled)
    assert [(f.qty, f.remaining_qty) for f in fills] == [
        pytest.approx((0.0004, 0.0006)), pytest.approx((0.0006, 0.0))]
    assert sum(f.qty for f in fills) == pytest.approx(float(fake.order("mmt1").executed_qty))
    assert [e.client_order_id for e in got.of(OrderCanceled)] == ["mmt2"]
    assert fake.open_orders("BTCUSDT") == []


async def test_venue_refusals_become_rejections_with_reasons(
    fake: FakeBinanceSpot, rest: Any
) -> None:
    got = Collector()
    execution = CcxtExecution(rest, SYMBOL, got, prefix="mmt")
    async with asyncio.timeout(TIMEOUT_S):
        execution.submit(place("mmt1", price=60000.01))  # post-only at the ask: would take
        await settle(execution)
        execution.submit(place("mmt2", qty=0.5))  # 30,000 USDT: more than the account has
        await settle(execution)
        fake.fail_next("POST /api/v3/order", FaultKind.RATE_LIMIT)
        execution.submit(place("mmt3"))
        await settle(execution)

    reasons = {e.client_order_id: e.reason for e in got.of(OrderRejected)}
    assert reasons == {"mmt1": "post_only_would_cross", "mmt2": "insufficient_funds",
                       "mmt3": "rate_limited"}
    assert got.of(OrderAccepted) == []
    assert fake.open_orders("BTCUSDT") == []


async def test_timeout_on_create_is_reconciled_and_leaves_exactly_one_order(
    fake: FakeBinanceSpot, rest: Any
) -> None:
    got = Collector()
    execution = CcxtExecution(rest, SYMBOL, got, prefix="mmt", reconcile_delay_s=0.05)
    fake.fail_next("POST /api/v3/order", FaultKind.TIMEOUT)  # the order reaches the venue
    async with asyncio.timeout(TIMEOUT_S):
        execution.submit(place("mmt1"))
        await settle(execution)

    assert execution.unknown_fate == 1
    assert [e.client_order_id for e in got.of(OrderAccepted)] == ["mmt1"]
    assert [o.client_order_id for o in fake.open_orders("BTCUSDT")] == ["mmt1"]
    assert len(fake.requests_to("POST", "/api/v3/order")) == 1  # never re-sent blindly


async def test_fills_survive_a_dropped_private_stream_without_double_counting(
    fake: FakeBinanceSpot,
) -> None:
    pro = fake.make_exchange(ccxt.pro.binance, timeout_ms=500, keep_alive_ms=200)
    got = Collector()
    try:
        await pro.load_markets()
        execution = CcxtExecution(pro, SYMBOL, got, prefix="mmt")
        async with asyncio.timeout(TIMEOUT_S):
            execution.submit(place("mmt1", qty=0.003))
            await settle(execution)
            watcher = asyncio.create_task(execution.watch_fills(poll_interval_s=0.2))
            await fake.wait_subscribed()
            await asyncio.sleep(0.05)
            await fake.fill("mmt1", qty="0.001")
            await fake.drop_streams()
            await fake.fill("mmt1", qty="0.001")  # sent while the stream is down
            await fake.fill("mmt1")
            for _ in range(100):
                if sum(f.qty for f in got.of(OrderFilled)) >= 0.003 - 1e-12:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # give a duplicate every chance to show up
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    finally:
        await pro.close()

    fills = got.of(OrderFilled)
    assert len(fills) == 3
    assert len({f.trade_id for f in fills}) == 3
    assert sum(f.qty for f in fills) == pytest.approx(0.003)
    assert fills[-1].remaining_qty == pytest.approx(0.0)


async def until(condition: Any, interval_s: float = 0.05) -> None:
    """Poll ``condition`` (the fake venue has no event to wait on for this)."""
    while not condition():  # noqa: ASYNC110 - polling another component's state
        await asyncio.sleep(interval_s)


async def scripted_market(fake: FakeBinanceSpot, stop: asyncio.Event,
                          prices: list[tuple[float, float]]) -> AsyncIterator[MarketEvent]:
    """Book snapshots of BTCUSDT; the fake venue's touch follows them."""
    for bid, ask in prices:
        fake.set_book("BTCUSDT", f"{bid:.2f}", f"{ask:.2f}")
        now = time.time_ns()
        yield BookSnapshot(now, now, "BTCUSDT", ((bid, 2.0),), ((ask, 2.0),), 0, True)
        await asyncio.sleep(0.15)
    await stop.wait()


async def test_kill_switch_cancels_everything_at_the_venue_and_sends_nothing_after(
    fake: FakeBinanceSpot, rest: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log_path = tmp_path / "log.jsonl"
    configure_logging("info", log_path)
    settings = load_settings(None, {
        "market": {"venue": "binance", "symbol": "BTCUSDT"},
        "strategy": {"kind": "fixed_spread", "half_spread_ticks": 50.0,
                     "ladder": {"order_qty": 0.001}},
        "model": {"estimate_sigma": False},
        "risk": {"max_inventory": 0.01, "max_loss": 1.0},
        "orders": {"client_id_prefix": "mmk", "requote_ticks": 1000.0},
        "run": {"status_interval_s": 0.2},
    }, environ={})
    journal = Journal(tmp_path / "journal.sqlite")
    session = LiveSession(settings, rest, journal, get_logger(), dry_run=False)
    stop = asyncio.Event()
    prices = [(60000.0, 60000.01)] * 4 + [(59000.0, 59000.01)] * 6 + [(61000.0, 61000.01)] * 4

    async def trade() -> None:
        await session.run(scripted_market(fake, stop, prices), MarketRules(0.01, 0.00001),
                          SYMBOL, duration_s=4.0)

    async with asyncio.timeout(TIMEOUT_S):
        runner = asyncio.create_task(trade())
        await until(lambda: bool(fake.open_orders("BTCUSDT")))
        bid = next(o for o in fake.open_orders("BTCUSDT") if o.side == "BUY")
        await fake.fill(bid.client_order_id)  # long 0.001 at ~59999.5
        assert session.execution is not None
        await session.execution.poll_fills()
        await runner
    journal.close()

    engine = session.engine
    assert engine is not None
    assert engine.gate.state is RiskState.HALTED
    halts = [r for r in read_table(journal.path, "risk_events") if r[3] == "HALTED"]
    assert len(halts) == 1
    places = [r for r in read_table(journal.path, "orders") if r[2] == "place"]
    assert [p for p in places if p[1] >= halts[0][1]] == []
    # Everything the venue received was journaled: nothing left the bot unrecorded.
    assert len(fake.requests_to("POST", "/api/v3/order")) == len(places)
    assert fake.open_orders("BTCUSDT") == []
    assert session.left_open == 0
    # Secrets never reach a log line, a file or the console.
    out = capsys.readouterr()
    written = await asyncio.to_thread(lambda: [p.read_bytes() for p in tmp_path.iterdir()])
    assert log_path.stat().st_size > 0
    for secret in (fake.api_key, fake.secret):
        assert secret not in out.out + out.err
        for content in written:
            assert secret.encode() not in content


def _restart_settings() -> Any:
    """A fixed-spread market with client ids 'mmr...', for the restart tests."""
    return load_settings(None, {
        "market": {"venue": "binance", "symbol": "BTCUSDT"},
        "strategy": {"kind": "fixed_spread", "half_spread_ticks": 50.0,
                     "ladder": {"order_qty": 0.001}},
        "model": {"estimate_sigma": False},
        "risk": {"max_inventory": 0.01},
        "orders": {"client_id_prefix": "mmr", "requote_ticks": 1000.0},
    }, environ={})


async def test_killed_mid_run_and_restarted_on_the_same_journal_matches_the_venue_ledger(
    fake: FakeBinanceSpot, rest: Any, tmp_path: Path
) -> None:
    configure_logging("error", None)
    settings = _restart_settings()
    path = tmp_path / "journal.sqlite"
    stop = asyncio.Event()
    rules = MarketRules(0.01, 0.00001)

    # First run: quotes rest, one fill is seen, then the run stops.
    first = LiveSession(settings, rest, Journal(path), None, dry_run=False)
    crash = asyncio.create_task(first.run(
        scripted_market(fake, stop, [(60000.0, 60000.01)] * 3), rules, SYMBOL, None))
    async with asyncio.timeout(TIMEOUT_S):
        await until(lambda: len(fake.open_orders("BTCUSDT")) == 2)
        bid = next(o for o in fake.open_orders("BTCUSDT") if o.side == "BUY")
        await fake.fill(bid.client_order_id)
        assert first.execution is not None
        await first.execution.poll_fills()
        await until(lambda: first.engine is not None and first.engine.portfolio.fills == 1)
        ask = next(o for o in fake.open_orders("BTCUSDT") if o.side == "SELL")
        crash.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await crash
    assert first.journal is not None
    first.journal.close()
    # What a hard kill leaves behind: an order of ours the journal never saw acknowledged,
    # still resting at the venue, and a fill of it while the bot was down.
    await rest.create_order(SYMBOL, "limit", "buy", 0.001, 59990.0,
                            {"postOnly": True, "clientOrderId": "mmr999"})
    await fake.fill("mmr999", qty="0.0004")
    assert ask.client_order_id not in {o.client_order_id for o in fake.open_orders("BTCUSDT")}
    fake.set_book("BTCUSDT", "60010.00", "60010.01")

    # Second run on the same journal: orphans cancelled, missed fills applied, ledger matched.
    second = LiveSession(settings, rest, Journal(path), None, dry_run=False)
    async with asyncio.timeout(TIMEOUT_S):
        await second.run(scripted_market(fake, stop, [(60010.0, 60010.01)] * 3), rules,
                         SYMBOL, duration_s=1.0)
    assert second.journal is not None
    second.journal.close()

    engine = second.engine
    assert engine is not None
    balances = fake.balances()
    venue_btc = float(balances["BTC"].free + balances["BTC"].locked) - 1.0
    assert engine.portfolio.position == pytest.approx(venue_btc, abs=1e-12)
    venue_usdt = float(balances["USDT"].free + balances["USDT"].locked) - 10_000.0
    assert engine.portfolio.cash == pytest.approx(venue_usdt, abs=1e-6)
    assert fake.open_orders("BTCUSDT") == []
    journal_fills = read_table(path, "fills")
    assert len(journal_fills) == len(fake.trades("BTCUSDT")) == 2
    assert engine.stats.recovered_fills == 2  # one from the journal, one from the venue


async def test_orders_and_fills_reach_the_journal_on_disk_while_the_session_runs(
    fake: FakeBinanceSpot, rest: Any, tmp_path: Path
) -> None:
    # What a hard kill (SIGKILL, power loss) leaves is what is on disk: it must not wait
    # for the session to end, nor for 2,000 rows.
    configure_logging("error", None)
    path = tmp_path / "journal.sqlite"
    stop = asyncio.Event()
    session = LiveSession(_restart_settings(), rest, Journal(path), None, dry_run=False)
    running = asyncio.create_task(session.run(
        scripted_market(fake, stop, [(60000.0, 60000.01)] * 3), MarketRules(0.01, 0.00001),
        SYMBOL, None))
    try:
        async with asyncio.timeout(TIMEOUT_S):
            await until(lambda: len(fake.open_orders("BTCUSDT")) == 2)
            assert [row[2] for row in read_table(path, "sessions")] == ["live"]
            bid = next(o for o in fake.open_orders("BTCUSDT") if o.side == "BUY")
            await fake.fill(bid.client_order_id)
            assert session.execution is not None
            await session.execution.poll_fills()
            await until(lambda: len(read_table(path, "fills")) == 1)
            assert {row[3] for row in read_table(path, "orders")} >= {bid.client_order_id}
        assert not running.done()  # still trading: nothing was closed or flushed on the way out
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await running
        assert session.journal is not None
        session.journal.close()


async def test_a_session_killed_before_its_orders_reached_the_journal_is_recovered(
    fake: FakeBinanceSpot, rest: Any, tmp_path: Path
) -> None:
    configure_logging("error", None)
    path = tmp_path / "journal.sqlite"
    # The first session got as far as recording its start, then was killed before any of its
    # rows reached the disk; its order had filled at the venue.
    first = Journal(path)
    first.session(time.time_ns() - 2_000_000_000, "live")
    first.close()
    await rest.create_order(SYMBOL, "limit", "buy", 0.001, 59990.0,
                            {"postOnly": True, "clientOrderId": "mmr1"})
    await fake.fill("mmr1")
    fake.set_book("BTCUSDT", "60010.00", "60010.01")

    second = LiveSession(_restart_settings(), rest, Journal(path), None, dry_run=False)
    async with asyncio.timeout(TIMEOUT_S):
        await second.run(scripted_market(fake, asyncio.Event(), [(60010.0, 60010.01)] * 3),
                         MarketRules(0.01, 0.00001), SYMBOL, duration_s=1.0)
    assert second.journal is not None
    second.journal.close()

    engine = second.engine
    assert engine is not None
    assert engine.stats.recovered_fills == 1
    balances = fake.balances()
    venue_btc = float(balances["BTC"].free + balances["BTC"].locked) - 1.0
    assert venue_btc == pytest.approx(0.001)
    assert engine.portfolio.position == pytest.approx(venue_btc, abs=1e-12)
    assert [row[2] for row in read_table(path, "sessions")] == ["live", "live"]
    assert len(read_table(path, "fills")) == 1  # the recovered fill, journaled


async def test_keys_from_the_environment_never_reach_logs_journal_or_console(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import copy

    from fakes.exchange import CCXT_OPTIONS

    from bot.live import make_exchange

    key, secret = "k3y-from-env-7f2a", "s3cret-from-env-91bc"
    monkeypatch.setenv("MMBOT_API_KEY", key)
    monkeypatch.setenv("MMBOT_API_SECRET", secret)
    settings = load_settings(None, {
        "market": {"venue": "binance", "symbol": "BTCUSDT"},
        "strategy": {"kind": "fixed_spread", "half_spread_ticks": 50.0,
                     "ladder": {"order_qty": 0.001}},
        "model": {"estimate_sigma": False},
        "orders": {"client_id_prefix": "mms"},
        "run": {"status_interval_s": 0.2},
    })
    log_path = tmp_path / "log.jsonl"
    configure_logging("debug", log_path)
    async with FakeBinanceSpot(api_key=key, secret=secret) as fake:
        fake.set_book("BTCUSDT", "60000.00", "60000.01")
        exchange = make_exchange(settings, "binance")  # keys taken from the settings
        exchange.options = {**exchange.options, **copy.deepcopy(CCXT_OPTIONS)}
        exchange.urls["api"] = fake.urls()
        exchange.timeout_on_exit = 0
        exchange.enableRateLimit = False
        try:
            await exchange.load_markets()
            journal = Journal(tmp_path / "journal.sqlite")
            session = LiveSession(settings, exchange, journal, get_logger(), dry_run=False)
            stop = asyncio.Event()
            async with asyncio.timeout(TIMEOUT_S):
                await session.run(scripted_market(fake, stop, [(60000.0, 60000.01)] * 4),
                                  MarketRules(0.01, 0.00001), SYMBOL, duration_s=1.0)
            journal.close()
        finally:
            await exchange.close()
        assert fake.requests_to("POST", "/api/v3/order"), "the keys were used for real orders"
        assert fake.open_orders("BTCUSDT") == []
    out = capsys.readouterr()
    written = await asyncio.to_thread(lambda: [p.read_bytes() for p in tmp_path.iterdir()])
    assert any(b"order" in content for content in written)
    for value in (key, secret):
        assert value not in out.out + out.err
        for content in written:
            assert value.encode() not in content
    assert key not in repr(settings) and secret not in repr(settings)


async def test_global_loss_limit_over_two_markets_halts_both_and_cancels_everything(
    fake: FakeBinanceSpot, rest: Any
) -> None:
    from bot.live import GlobalLossGuard

    def market(symbol: str, prefix: str, qty: float) -> Any:
        return load_settings(None, {
            "market": {"venue": "binance", "symbol": symbol},
            "strategy": {"kind": "fixed_spread", "half_spread_ticks": 50.0,
                         "ladder": {"order_qty": qty}},
            "model": {"estimate_sigma": False},
            # Each market alone stays inside its own limit ...
            "risk": {"max_inventory": 1.0, "max_loss": 100.0},
            "orders": {"client_id_prefix": prefix, "requote_ticks": 1000.0},
        }, environ={})

    fake.set_book("ETHUSDT", "3000.00", "3000.01")
    btc = LiveSession(market("BTCUSDT", "mmb", 0.001), rest, None, None, dry_run=False)
    eth = LiveSession(market("ETHUSDT", "mme", 0.01), rest, None, None, dry_run=False)
    # ... but together they may lose 1.5 USDT.
    guard = GlobalLossGuard([btc, eth], max_loss=1.5)
    stop = asyncio.Event()

    async def eth_market() -> AsyncIterator[MarketEvent]:
        for bid, ask in [(3000.0, 3000.01)] * 4 + [(2900.0, 2900.01)] * 10:
            fake.set_book("ETHUSDT", f"{bid:.2f}", f"{ask:.2f}")
            now = time.time_ns()
            yield BookSnapshot(now, now, "ETHUSDT", ((bid, 5.0),), ((ask, 5.0),), 0, True)
            await asyncio.sleep(0.15)
        await stop.wait()

    btc_prices = [(60000.0, 60000.01)] * 4 + [(59000.0, 59000.01)] * 10
    async with asyncio.timeout(TIMEOUT_S):
        watcher = asyncio.create_task(guard.watch(0.05))
        runs = [asyncio.create_task(btc.run(scripted_market(fake, stop, btc_prices),
                                            MarketRules(0.01, 0.00001), SYMBOL, 3.0)),
                asyncio.create_task(eth.run(eth_market(), MarketRules(0.01, 0.0001),
                                            "ETH/USDT", 3.0))]
        # (The account holds no ETH, so only the ETH bid can rest: spot sells need the base.)
        await until(lambda: all(any(o.side == "BUY" for o in fake.open_orders(s))
                                for s in ("BTCUSDT", "ETHUSDT")))
        for symbol in ("BTCUSDT", "ETHUSDT"):
            bid = next(o for o in fake.open_orders(symbol) if o.side == "BUY")
            await fake.fill(bid.client_order_id)
        for session in (btc, eth):
            assert session.execution is not None
            await session.execution.poll_fills()
        await asyncio.gather(*runs)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher

    assert guard.tripped
    for session in (btc, eth):
        assert session.engine is not None
        assert session.engine.gate.state is RiskState.HALTED
        assert session.engine.portfolio.pnl > -100.0  # its own limit never tripped
    assert guard.total_pnl() <= -1.5
    assert fake.open_orders() == []


async def test_adopt_on_start_manages_our_resting_orders_instead_of_cancelling_them(
    fake: FakeBinanceSpot, rest: Any
) -> None:
    settings = load_settings(None, {
        "market": {"venue": "binance", "symbol": "BTCUSDT"},
        "strategy": {"kind": "fixed_spread", "half_spread_ticks": 50.0,
                     "ladder": {"order_qty": 0.001}},
        "model": {"estimate_sigma": False},
        "orders": {"client_id_prefix": "mma", "requote_ticks": 1000.0},
        "live": {"on_start": "adopt"},
    }, environ={})
    # Left by an earlier run: a bid of ours, partly filled, and somebody else's order.
    await rest.create_order(SYMBOL, "limit", "buy", 0.001, 59999.50,
                            {"postOnly": True, "clientOrderId": "mma-old-1"})
    await fake.fill("mma-old-1", qty="0.0004")
    await rest.create_order(SYMBOL, "limit", "buy", 0.001, 59000.00,
                            {"postOnly": True, "clientOrderId": "other-bot-1"})
    session = LiveSession(settings, rest, None, None, dry_run=False)
    stop = asyncio.Event()
    seen_at_start: list[str] = []

    async def market() -> AsyncIterator[MarketEvent]:
        assert session.engine is not None
        seen_at_start.extend(session.engine.orders.orders)
        async for event in scripted_market(fake, stop, [(60000.0, 60000.01)] * 3):
            yield event

    async with asyncio.timeout(TIMEOUT_S):
        await session.run(market(), MarketRules(0.01, 0.00001), SYMBOL, duration_s=1.0)

    assert seen_at_start == ["mma-old-1"]  # adopted, not cancelled, before any market data
    engine = session.engine
    assert engine is not None
    adopted_cancels = [r for r in fake.requests_to("DELETE", "/api/v3/order")
                       if r.params.get("origClientOrderId") == "mma-old-1"]
    assert len(adopted_cancels) == 1  # only on the way out
    # Ours are all gone at the end; somebody else's order is untouched.
    assert [o.client_order_id for o in fake.open_orders("BTCUSDT")] == ["other-bot-1"]


async def test_markets_give_tick_lot_and_minimums_and_dry_run_sends_nothing(
    fake: FakeBinanceSpot, rest: Any, tmp_path: Path
) -> None:
    from bot.live import unified_symbol

    symbol, rules = await unified_symbol(rest, "BTCUSDT")
    assert symbol == SYMBOL
    assert (rules.tick_size, rules.lot_size, rules.min_notional) == (0.01, 0.00001, 5.0)

    log_path = tmp_path / "log.jsonl"
    configure_logging("info", log_path)
    settings = load_settings(None, {
        "market": {"venue": "binance", "symbol": "BTCUSDT"},
        "strategy": {"kind": "fixed_spread", "half_spread_ticks": 50.0,
                     "ladder": {"order_qty": 0.001}},
        "model": {"estimate_sigma": False},
    }, environ={})
    session = LiveSession(settings, rest, None, get_logger(), dry_run=True)
    stop = asyncio.Event()
    before = len(fake.requests)
    async with asyncio.timeout(TIMEOUT_S):
        await session.run(scripted_market(fake, stop, [(60000.0, 60000.01)] * 3), rules,
                          SYMBOL, duration_s=0.8)

    assert session.engine is not None and session.engine.stats.orders_sent > 0
    assert fake.requests[before:] == []  # nothing reached the venue, not even a read
    logged = await asyncio.to_thread(log_path.read_text)
    assert "dry_run_place" in logged


async def test_a_moving_market_amends_quotes_by_cancel_and_replace_at_the_venue(
    fake: FakeBinanceSpot, rest: Any
) -> None:
    settings = load_settings(None, {
        "market": {"venue": "binance", "symbol": "BTCUSDT"},
        "strategy": {"kind": "fixed_spread", "half_spread_ticks": 50.0,
                     "ladder": {"order_qty": 0.001}},
        "model": {"estimate_sigma": False},
        "orders": {"client_id_prefix": "mmq", "requote_ticks": 10.0},
    }, environ={})
    session = LiveSession(settings, rest, None, None, dry_run=False)
    stop = asyncio.Event()
    prices = [(60000.0, 60000.01)] * 3 + [(60005.0, 60005.01)] * 3
    async with asyncio.timeout(TIMEOUT_S):
        await session.run(scripted_market(fake, stop, prices), MarketRules(0.01, 0.00001),
                          SYMBOL, duration_s=1.5)

    posts = fake.requests_to("POST", "/api/v3/order")
    prices_sent = sorted({float(r.params["price"]) for r in posts})
    assert prices_sent == [59999.5, 60000.51, 60004.5, 60005.51]  # both sides moved once
    assert len(fake.requests_to("DELETE", "/api/v3/order")) >= 2
    assert fake.open_orders("BTCUSDT") == []


class _Unreachable:
    """A ccxt exchange whose first request fails (no network, or keys it refuses)."""

    id = "binance"

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.closed = False

    async def load_markets(self) -> dict[str, Any]:
        raise self.error

    async def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize(("error", "says"), [
    (ccxt.ExchangeNotAvailable("binance GET https://api.binance.com/api/v3/exchangeInfo"),
     "binance: ExchangeNotAvailable: binance GET https://api.binance.com"),
    (ccxt.AuthenticationError('binance {"code":-2015,"msg":"Invalid API-key"} '
                              "key=k3y-from-env-7f2a secret=s3cret-from-env-91bc"),
     "binance refused the API keys: binance {\"code\":-2015"),
])
def test_live_start_that_cannot_reach_the_venue_is_a_clear_error_without_the_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    error: Exception, says: str,
) -> None:
    import bot.live
    from bot.cli import main

    key, secret = "k3y-from-env-7f2a", "s3cret-from-env-91bc"
    monkeypatch.setenv("MMBOT_API_KEY", key)
    monkeypatch.setenv("MMBOT_API_SECRET", secret)
    exchange = _Unreachable(error)
    monkeypatch.setattr(bot.live, "make_exchange", lambda settings, exchange_id: exchange)
    config = tmp_path / "live.toml"
    config.write_text('[market]\nvenue = "binance"\nsymbol = "BTCUSDT"\n')

    # It used to end in an ExceptionGroup traceback (the error came out of a task group).
    code = main(["live", "--config", str(config), "--confirm-live", "--duration", "1",
                 "--out", str(tmp_path / "runs")])

    out = capsys.readouterr()
    assert code == 1
    assert says in out.err and "Traceback" not in out.err
    assert key not in out.out + out.err and secret not in out.out + out.err
    assert exchange.closed


@pytest.mark.parametrize(("errors", "code"), [
    ([VenueError("a venue failed")], 1),
    ([ConfigError("market.symbol", "no such market")], 2),
    ([VenueError("one failed"), ExceptionGroup("inner", [ConfigError("x", "bad")])], 2),
])
def test_errors_out_of_a_task_group_are_said_like_any_other(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    errors: list[Exception], code: int, tmp_path: Path,
) -> None:
    import bot.live
    from bot.cli import main

    def fail(*_: Any, **__: Any) -> None:
        raise ExceptionGroup("unhandled errors in a TaskGroup", errors)

    monkeypatch.setattr(bot.live, "run_live", fail)
    config = tmp_path / "live.toml"
    config.write_text('[market]\nvenue = "binance"\nsymbol = "BTCUSDT"\n')
    assert main(["live", "--config", str(config), "--dry-run"]) == code
    err = capsys.readouterr().err
    for error in errors:
        for leaf in (error.exceptions if isinstance(error, ExceptionGroup) else [error]):
            assert str(leaf) in err


def test_a_bug_out_of_a_task_group_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    import bot.live
    from bot.cli import main

    def fail(*_: Any, **__: Any) -> None:
        raise ExceptionGroup("unhandled errors in a TaskGroup",
                             [VenueError("fine"), ZeroDivisionError("a bug")])

    monkeypatch.setattr(bot.live, "run_live", fail)
    config = tmp_path / "live.toml"
    config.write_text('[market]\nvenue = "binance"\nsymbol = "BTCUSDT"\n')
    with pytest.raises(ExceptionGroup):
        main(["live", "--config", str(config), "--dry-run"])
