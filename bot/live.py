"""Live trading: the public feed drives the engine, orders go to the venue through ccxt.

Money safety, in order:

1. ``mmbot live`` refuses to start without ``--confirm-live`` (``--dry-run`` runs everything
   but sends nothing and logs the orders it would send, so it needs no confirmation);
2. API keys come from the environment only (``MMBOT_API_KEY``, ``MMBOT_API_SECRET``) as
   secrets: never logged, never written to the run directory or reports;
3. a start-up summary of the limits is shown before the first order;
4. at start, open orders of ours (the client order id prefix) left by an earlier run are
   cancelled and the venue is asked to confirm none remain;
5. on stop, SIGINT/SIGTERM, kill-switch or a fatal error: cancel everything, then confirm with
   the venue that nothing of ours is still open.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

from adapters.ccxt_exec import CcxtExecution
from bot.app import (
    MarketRules,
    RunDir,
    build_engine,
    format_status,
    make_run_dir,
    run_summary,
    run_tag_now,
)
from bot.clock import WallClock
from bot.engine import Engine, Status
from bot.errors import ConfigError, MmbotError, SafetyError, VenueError
from bot.events import Liquidity, OrderEvent, OrderFilled, Side
from bot.journal import Journal, read_table
from bot.logs import close_logging, configure_logging, get_logger
from bot.settings import Settings, snapshot

NS = 1_000_000_000

# Our venue names -> ccxt exchange ids.
CCXT_IDS = {
    "binance": "binance",
    "binance-usdm": "binanceusdm",
    "binance-coinm": "binancecoinm",
    "coinbase": "coinbase",
    "bybit": "bybit",
    "bybit-spot": "bybit",
    "okx": "okx",
    "kraken": "kraken",
}


def ccxt_id(venue: str) -> str:
    """Return the ccxt exchange id for one of our venue names (or ``ccxt:<id>``)."""
    if venue.startswith("ccxt:"):
        return venue.removeprefix("ccxt:")
    try:
        return CCXT_IDS[venue]
    except KeyError as exc:
        raise ConfigError("market.venue", f"no live execution for venue {venue!r}") from exc


def check_safety(settings: Settings, confirm_live: bool, dry_run: bool) -> None:
    """Refuse to trade real money unless the user said so and the keys are in place.

    Raises:
        SafetyError: ``--confirm-live`` missing, or the keys are not in the environment.
    """
    if dry_run:
        return
    if not confirm_live:
        raise SafetyError("live trading moves real money: add --confirm-live (or --dry-run "
                          "to run everything without sending orders)")
    if settings.api_key is None or settings.api_secret is None:
        raise SafetyError("API keys are read from the environment only: set MMBOT_API_KEY and "
                          "MMBOT_API_SECRET")


def limits_summary(settings: Settings, rules: MarketRules, dry_run: bool) -> str:
    """Return the start-up summary of what the bot may do, shown before the first order."""
    r, lad = settings.risk, settings.strategy.ladder
    mode = "DRY RUN (nothing is sent)" if dry_run else "LIVE: real orders"
    return (
        f"{mode} on {settings.market.venue} {settings.market.symbol}\n"
        f"  strategy {settings.strategy.kind}, {lad.levels} level(s) of {lad.order_qty} per side\n"
        f"  inventory cap {r.max_inventory}, max order size {r.max_order_qty}, "
        f"max notional {r.max_order_notional}\n"
        f"  loss limit {r.max_loss}, max drawdown {r.max_drawdown}, "
        f"order rate {r.max_orders_per_s}/s\n"
        f"  tick {rules.tick_size}, lot {rules.lot_size}, min order {rules.min_qty} "
        f"(notional {rules.min_notional})\n"
    )


def make_exchange(settings: Settings, exchange_id: str) -> Any:
    """Return a ccxt pro exchange with the keys from the environment (never logged)."""
    import ccxt.pro

    try:
        cls = getattr(ccxt.pro, exchange_id)
    except AttributeError as exc:
        raise ConfigError("market.venue", f"ccxt has no exchange {exchange_id!r}") from exc
    config: dict[str, Any] = {"enableRateLimit": True}
    if settings.api_key is not None and settings.api_secret is not None:
        config["apiKey"] = settings.api_key.get_secret_value()
        config["secret"] = settings.api_secret.get_secret_value()
    return cls(config)


def scrubbed(text: str, settings: Settings) -> str:
    """``text`` with the API key and secret blanked out: a venue's error may echo a request."""
    for secret in (settings.api_key, settings.api_secret):
        value = secret.get_secret_value() if secret is not None else ""
        if value:
            text = text.replace(value, "***")
    return text


async def unified_symbol(exchange: Any, native: str) -> tuple[str, MarketRules]:
    """Return ccxt's unified symbol for a venue-native one and the market's tick and lot."""
    from adapters.ccxt_feed import market_rules

    markets = await exchange.load_markets()
    market = markets.get(native)
    if market is None:
        candidates = exchange.markets_by_id.get(native.replace("/", "").replace("-", "")) or []
        market = candidates[0] if candidates else None
    if market is None:
        raise ConfigError("market.symbol", f"{exchange.id} has no market {native!r}")
    tick, lot = market_rules(market, exchange.precisionMode)
    limits = market.get("limits") or {}
    min_qty = (limits.get("amount") or {}).get("min") or 0.0
    min_notional = (limits.get("cost") or {}).get("min") or 0.0
    return str(market["symbol"]), MarketRules(tick, lot, float(min_qty), float(min_notional))


class LiveSession:
    """One live (or dry-run) session: recover, trade, and leave nothing behind.

    With a journal from an earlier run of this market (``--resume``), the portfolio is rebuilt
    from its fills and the fills the venue made since the last one journaled (while the bot
    was down) are applied and journaled, so inventory and PnL equal the venue's ledger.
    """

    def __init__(self, settings: Settings, exchange: Any, journal: Journal | None, log: Any,
                 *, dry_run: bool, on_status: Any = None, run_tag: str = "") -> None:
        self.settings = settings
        self.exchange = exchange
        self.journal = journal
        self.log = log
        self.dry_run = dry_run
        self.on_status = on_status
        self.run_tag = run_tag
        self.engine: Engine | None = None
        self.execution: CcxtExecution | None = None
        self.left_open = 0

    async def recover(self, engine: Engine, execution: CcxtExecution) -> int:
        """Rebuild the portfolio from the journal and the venue; return fills recovered.

        Call it before this session is recorded (``Journal.session``): the sessions already
        in the journal are earlier runs, which may have traded.
        """
        if self.journal is None:
            return 0
        past = journaled_fills(self.journal)
        placed = read_table(self.journal.path, "orders")
        earlier = [row for row in read_table(self.journal.path, "sessions") if row[2] == "live"]
        if not placed and not earlier:
            return 0  # a fresh journal: nothing of ours can have traded yet
        engine.recover_fills(past, journal_them=False)
        known = {(f.client_order_id, f.trade_id) for f in past}
        execution.seen_trades |= known
        # From a second before the last fill we know of, else our first order, else the
        # first session (killed before its orders reached the journal): trades with ids we
        # have are skipped, so the overlap costs nothing and loses nothing.
        if past:
            start_ns = max(f.ts_ns for f in past)
        else:
            start_ns = int(placed[0][1]) if placed else min(int(row[1]) for row in earlier)
        since = start_ns // 1_000_000 - 1000
        missed = await venue_fills_since(execution, since, known)
        execution.seen_trades |= {(f.client_order_id, f.trade_id) for f in missed}
        applied = engine.recover_fills(missed, journal_them=True)
        if self.log is not None and (past or missed):
            self.log.warning("recovered", journaled_fills=len(past), missed_fills=applied,
                             position=engine.portfolio.position, pnl=engine.portfolio.pnl)
        return applied

    async def adopt(self, engine: Engine, execution: CcxtExecution) -> int:
        """Manage the open orders of ours found at the venue instead of cancelling them."""
        from adapters.ccxt_exec import LiveOrder

        found = await execution.our_open_orders()
        now = time.time_ns()
        # Best price first on each side, so the touch-most order takes level 0.
        found.sort(key=lambda o: (o.get("side") != "buy",
                                  -float(o["price"]) if o.get("side") == "buy"
                                  else float(o["price"])))
        for order in found:
            coid = str(order["clientOrderId"])
            side = Side.BUY if order.get("side") == "buy" else Side.SELL
            qty, filled = float(order["amount"]), float(order.get("filled") or 0.0)
            engine.orders.adopt(coid, side, float(order["price"]), qty, filled, now)
            execution.orders[coid] = LiveOrder(coid, side, float(order["price"]), qty, filled,
                                               str(order.get("id") or ""))
        if found and self.log is not None:
            self.log.warning("orders_adopted", count=len(found),
                             client_order_ids=[str(o["clientOrderId"]) for o in found])
        return len(found)

    async def run(self, source: Any, rules: MarketRules, ccxt_symbol: str,
                  duration_s: float | None) -> None:
        """Trade ``source`` (market events) until it ends, ``duration_s`` or cancellation."""
        settings, log = self.settings, self.log
        clock = WallClock()
        engine = build_engine(settings, rules, clock, self.journal, log,
                              on_status=self.on_status, run_tag=self.run_tag)
        self.engine = engine

        def deliver(event: OrderEvent) -> None:
            # Order events join the engine's queue: applied in order, on its consumer.
            clock.call_at(clock.now_ns(), partial(engine.on_order_event, event))

        prefix = settings.orders.client_id_prefix
        execution = CcxtExecution(self.exchange, ccxt_symbol, deliver, prefix=prefix,
                                  dry_run=self.dry_run, log=log)
        self.execution = execution
        engine.attach_venue(execution, simulated=False)
        if not self.dry_run:
            if settings.live.on_start == "adopt":
                await self.adopt(engine, execution)
            else:
                left = await execution.cancel_all_and_confirm()
                if left:
                    raise MmbotError(f"{left} orders of an earlier run are still open at the "
                                     "venue after cancelling: not starting")
            await self.recover(engine, execution)
        if self.journal is not None:
            self.journal.session(clock.now_ns(), "dry_run" if self.dry_run else "live")
        fills = None if self.dry_run else asyncio.create_task(
            execution.watch_fills(), name=f"fills:{ccxt_symbol}")
        try:
            await engine.run_wall(source, duration_s)
        finally:
            if fills is not None:
                fills.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await fills
            if not self.dry_run:
                with contextlib.suppress(Exception):
                    await execution.poll_fills()
                self.left_open = await execution.cancel_all_and_confirm()
                if self.left_open and log is not None:
                    log.error("orders_left_open", count=self.left_open)


class GlobalLossGuard:
    """A loss limit over several markets in one process: trips every market's kill-switch.

    Each market keeps its own limits; this one watches the sum of their marked PnL and, when
    it falls to ``-max_loss``, halts them all (each then cancels everything and sends nothing
    until restarted).
    """

    def __init__(self, sessions: list[LiveSession], max_loss: float, log: Any = None) -> None:
        self.sessions = sessions
        self.max_loss = max_loss
        self.log = log
        self.tripped = False

    def total_pnl(self) -> float:
        """Return the sum of the markets' PnL marked to mid (markets not started count 0)."""
        total = 0.0
        for session in self.sessions:
            engine = session.engine
            if engine is not None and engine.portfolio.pnl == engine.portfolio.pnl:
                total += engine.portfolio.pnl
        return total

    def check(self) -> bool:
        """Halt every market if the total loss reached the limit; return whether it tripped."""
        if self.tripped:
            return False
        total = self.total_pnl()
        if total > -self.max_loss:
            return False
        self.tripped = True
        reason = f"global loss limit: total pnl {total:.6g} <= -{self.max_loss}"
        if self.log is not None:
            self.log.error("global_halt", total_pnl=total, max_loss=self.max_loss)
        for session in self.sessions:
            engine = session.engine
            if engine is not None:
                clock = engine.clock
                now = clock.now_ns()
                clock.call_at(now, partial(engine.halt, now, reason))
        return True

    async def watch(self, interval_s: float = 0.25) -> None:
        """Check every ``interval_s`` until cancelled."""
        while True:
            self.check()
            await asyncio.sleep(interval_s)


def journaled_fills(journal: Journal) -> list[OrderFilled]:
    """Return the fills recorded in a journal (a restart rebuilds the portfolio from them)."""
    journal.flush()
    fills = []
    for row in read_table(journal.path, "fills"):
        _, ts, coid, side, price, qty, remaining, fee, liquidity, trade_id, *_ = row
        fills.append(OrderFilled(int(ts), str(coid), Side[side], float(price), float(qty),
                                 float(remaining), float(fee), Liquidity(liquidity),
                                 str(trade_id or "")))
    return fills


async def venue_fills_since(execution: CcxtExecution, since_ms: int | None,
                            known: set[tuple[str, str]]) -> list[OrderFilled]:
    """Return our fills at the venue since ``since_ms`` that are not in ``known``.

    A trade is ours when its order's client id carries our prefix (asked of the venue per
    unknown order: trades do not always carry the client id).
    """
    exchange = execution.exchange
    trades = await exchange.fetch_my_trades(execution.symbol, since_ms)
    owners: dict[str, str] = {}
    out: list[OrderFilled] = []
    for trade in trades:
        order_id = str(trade.get("order") or "")
        if order_id and order_id not in owners:
            order = await exchange.fetch_order(order_id, execution.symbol)
            owners[order_id] = str(order.get("clientOrderId") or "")
        coid = owners.get(order_id, "")
        tid = str(trade.get("id") or "")
        if not coid.startswith(execution.prefix) or (coid, tid) in known:
            continue
        fee = trade.get("fee") or {}
        ts_ms = trade.get("timestamp") or 0
        out.append(OrderFilled(int(ts_ms) * 1_000_000, coid,
                               Side.BUY if trade.get("side") == "buy" else Side.SELL,
                               float(trade["price"]), float(trade["amount"]), 0.0,
                               float(fee.get("cost") or 0.0),
                               Liquidity.TAKER if trade.get("takerOrMaker") == "taker"
                               else Liquidity.MAKER, tid))
    return out


def run_live(settings_list: list[Settings], *, confirm_live: bool, dry_run: bool,
             duration_s: float | None, json_output: bool = False,
             resume: Path | None = None,
             global_max_loss: float | None = None) -> dict[str, Any]:
    """The ``mmbot live`` verb: one market per settings, one venue, one process.

    Each market has its own strategy, limits and journal; ``global_max_loss`` halts them all
    when their summed PnL reaches it. ``resume`` (one market only) continues the journal of an
    earlier run.
    """
    if not settings_list:
        raise ConfigError("--config", "give at least one config")
    for settings in settings_list:
        check_safety(settings, confirm_live, dry_run)
    venues = {s.market.venue for s in settings_list}
    if len(venues) > 1:
        raise ConfigError("market.venue", f"one venue per process, got {sorted(venues)}")
    symbols = [s.market.symbol for s in settings_list]
    if len(set(symbols)) != len(symbols):
        raise ConfigError("market.symbol", f"each market once, got {symbols}")
    if resume is not None and len(settings_list) > 1:
        raise ConfigError("--resume", "resume one market at a time")
    first = settings_list[0]
    exchange_id = ccxt_id(first.market.venue)
    mode = "dry-run" if dry_run else "live"
    if resume is not None:
        if not (resume / "journal.sqlite").is_file():
            raise ConfigError("--resume", f"{resume} holds no journal.sqlite")
        run = RunDir(resume)
    else:
        run = make_run_dir(first, "live-dry-run" if dry_run else "live")
    configure_logging("warning" if json_output else first.run.log_level, run.log)

    def show(status: Status) -> None:
        if not json_output:
            sys.stdout.write(format_status(status) + "\n")
            sys.stdout.flush()

    exchange = make_exchange(first, exchange_id)
    tag = run_tag_now()
    sessions: list[LiveSession] = []
    runs: list[RunDir] = []
    for settings in settings_list:
        market_run = run
        if len(settings_list) > 1:
            safe = "".join(c if c.isalnum() else "_" for c in settings.market.symbol)
            market_run = RunDir(run.path / safe)
            market_run.path.mkdir(exist_ok=True)
            market_run.write_json("config.json", snapshot(settings))
        runs.append(market_run)
        log = get_logger(venue=settings.market.venue, symbol=settings.market.symbol, mode=mode)
        sessions.append(LiveSession(settings, exchange, Journal(market_run.journal), log,
                                    dry_run=dry_run, on_status=show, run_tag=tag))
    guard = (GlobalLossGuard(sessions, global_max_loss, get_logger(mode=mode))
             if global_max_loss is not None else None)
    start_ns = time.time_ns()

    async def trade(session: LiveSession) -> None:
        import ccxt

        from bot.paper import open_source

        settings = session.settings
        try:
            symbol, rules = await unified_symbol(exchange, settings.market.symbol)
            sys.stderr.write(limits_summary(settings, rules, dry_run))
            _, source = await open_source(settings, duration_s, session.log)
            # Stopping for any reason, the session cancels and reconciles its orders first.
            await session.run(source, rules, symbol, duration_s)
        except ccxt.AuthenticationError as exc:
            raise VenueError(f"{exchange.id} refused the API keys: "
                             f"{scrubbed(str(exc), settings)}") from None
        except ccxt.BaseError as exc:
            raise VenueError(f"{exchange.id}: {type(exc).__name__}: "
                             f"{scrubbed(str(exc), settings)}") from None

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        if task is not None:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, task.cancel)
        watcher = (loop.create_task(guard.watch(), name="global-loss-guard")
                   if guard is not None else None)
        try:
            with contextlib.suppress(asyncio.CancelledError):
                async with asyncio.TaskGroup() as group:
                    for session in sessions:
                        group.create_task(trade(session),
                                          name=f"live:{session.settings.market.symbol}")
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            await exchange.close()

    try:
        asyncio.run(main())
    finally:
        for session in sessions:
            if session.journal is not None:
                session.journal.close()
    summaries = []
    for session, market_run in zip(sessions, runs, strict=True):
        engine = session.engine
        if engine is None:
            raise MmbotError(f"{session.settings.market.symbol}: stopped before the market "
                             "data started")
        summary = {**run_summary(engine, session.settings, mode), "started_ns": start_ns,
                   "ended_ns": time.time_ns(), "orders_left_open_at_venue": session.left_open,
                   "run_dir": str(market_run.path)}
        market_run.write_json("summary.json", summary)
        summaries.append(summary)
    close_logging()
    sys.stderr.write(f"run directory: {run.path}\n")
    if len(summaries) == 1:
        return summaries[0]
    overall = {"markets": summaries, "pnl": sum(s["pnl"] for s in summaries),
               "global_max_loss": global_max_loss,
               "global_halt": bool(guard and guard.tripped), "run_dir": str(run.path)}
    run.write_json("summary.json", overall)
    return overall
