"""Paper trading: a live-like feed drives the strategy, fills come from the simulated venue.

``--venue sim`` uses the built-in synthetic L2 market paced to the wall clock, so the whole
pipeline (book, strategy, risk gate, order manager, simulated venue with latency and queue
position, journal) runs offline. The same market can also run on virtual time
(``run_sim_virtual``), which is deterministic: same seed and config, same record.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

from adapters.ccxt_feed import CcxtFeed
from adapters.sim_market import SyntheticL2Config, SyntheticL2Market
from adapters.sim_venue import FillModel, SimVenue, SimVenueConfig
from adapters.venues import make_parser
from adapters.ws import Tap, WebSocketFeed
from bot.app import (
    MarketRules,
    RunDir,
    build_engine,
    format_status,
    infer_rules,
    make_run_dir,
    run_summary,
    run_tag_now,
)
from bot.clock import Scheduler, VirtualClock, WallClock
from bot.engine import Engine, Status
from bot.errors import ConfigError, DataError, MmbotError
from bot.events import BookSnapshot, MarketEvent
from bot.journal import Journal
from bot.logs import close_logging, configure_logging, get_logger
from bot.settings import Settings

NS = 1_000_000_000
SNAPSHOT_WAIT_S = 60.0


def sim_venue_config(settings: Settings, lot_size: float = 0.0) -> SimVenueConfig:
    """Return the simulated venue's configuration (fills in whole ``lot_size`` lots)."""
    v = settings.sim_venue
    return SimVenueConfig(
        fill_model=FillModel(v.fill_model),
        entry_latency_ns=round(v.entry_latency_ms * 1_000_000),
        cancel_latency_ns=round(v.cancel_latency_ms * 1_000_000),
        maker_fee_bps=v.maker_fee_bps,
        taker_fee_bps=v.taker_fee_bps,
        queue_power=v.queue_power,
        post_only_reject=v.post_only_reject,
        lot_size=lot_size,
    )


def sim_market(settings: Settings, duration_s: float | None) -> SyntheticL2Market:
    """Return the synthetic L2 market configured by ``[sim_market]`` and ``[market]``."""
    m = settings.sim_market
    try:
        return SyntheticL2Market(SyntheticL2Config(
            s0=m.s0, sigma=m.sigma, tick=sim_rules(settings).tick_size,
            intensity_a=m.intensity_a, intensity_k=m.intensity_k,
            lot=sim_rules(settings).lot_size, symbol=settings.market.symbol,
            duration_s=duration_s, seed=m.seed,
        ))
    except ValueError as exc:
        raise ConfigError("sim_market", str(exc)) from exc


def sim_rules(settings: Settings) -> MarketRules:
    """Return the simulated market's tick and lot (settings win over 0.01 and 0.001)."""
    m = settings.market
    return MarketRules(m.tick_size or 0.01, m.lot_size or 0.001)


def _attach_sim_venue(engine: Engine, settings: Settings, clock: Scheduler) -> SimVenue:
    venue = SimVenue(sim_venue_config(settings, engine.orders.config.lot_size), clock,
                     engine.on_order_event, engine.book)
    engine.attach_venue(venue, simulated=True)
    return venue


def run_sim_virtual(settings: Settings, duration_s: float, run: RunDir | None = None,
                    on_status: Any = None) -> tuple[Engine, dict[str, Any]]:
    """Run the simulated market on virtual time (deterministic) and return engine and summary."""
    clock = VirtualClock()
    journal = Journal(run.journal) if run is not None else None
    log = get_logger(venue=settings.market.venue, symbol=settings.market.symbol, mode="sim")
    engine = build_engine(settings, sim_rules(settings), clock, journal, log,
                          on_status=on_status)
    _attach_sim_venue(engine, settings, clock)
    start = time.perf_counter()
    try:
        engine.run_virtual(sim_market(settings, duration_s).events(start_ns=0))
        engine.finish_virtual()
    finally:
        if journal is not None:
            journal.close()
    summary = {**run_summary(engine, settings, "sim-virtual"), "market_time_s": clock.now_ns() / NS,
               "elapsed_s": time.perf_counter() - start,
               "run_dir": str(run.path) if run is not None else None}
    if run is not None:
        run.write_json("summary.json", summary)
    return engine, summary


def check_market(settings: Settings) -> None:
    """Raise ConfigError now for a market ``open_source`` could not open (an unknown venue,
    a symbol the venue's parser refuses), so a bad command line writes nothing."""
    m = settings.market
    if m.venue == "sim":
        return
    if m.venue.startswith("ccxt:"):
        import ccxt.pro

        exchange_id = m.venue.removeprefix("ccxt:")
        if exchange_id not in ccxt.pro.exchanges:
            raise ConfigError("market.venue", f"ccxt pro has no exchange {exchange_id!r}")
        return
    try:
        make_parser(m.venue, m.symbol)
    except ValueError as exc:
        raise ConfigError("market.symbol", str(exc)) from exc


async def open_source(settings: Settings, duration_s: float | None, log: Any,
                      tap: Tap | None = None) -> tuple[MarketRules, AsyncIterator[MarketEvent]]:
    """Open the market data of ``settings.market``: the simulated market or a live feed.

    Tick and lot come from settings when both are set; otherwise from the simulated market,
    from ccxt's market description, or from the first book snapshot of a native feed.

    Raises:
        ConfigError: unknown venue or symbol.
        DataError: a native feed sent no book snapshot within ``SNAPSHOT_WAIT_S`` (or
            ``duration_s``, when shorter: the run would be over by then).
    """
    m = settings.market
    if m.venue == "sim":
        market = sim_market(settings, duration_s)
        return sim_rules(settings), _paced(market.events(start_ns=time.time_ns()))
    given = MarketRules(m.tick_size, m.lot_size) if m.tick_size and m.lot_size else None
    if m.venue.startswith("ccxt:"):
        feed = CcxtFeed(m.venue.removeprefix("ccxt:"), m.symbol, log=log)
        if given is None:
            tick, lot = await feed.rules()
            given = MarketRules(m.tick_size or tick, m.lot_size or lot)
        return given, feed.events()
    # The engine consumes the events: large diffs may come split touch first.
    ws_feed = WebSocketFeed(make_parser(m.venue, m.symbol, touch_first=True), tap=tap, log=log)
    stream = aiter(ws_feed.events())
    if given is not None:
        return given, stream
    first: list[MarketEvent] = []

    async def until_snapshot() -> BookSnapshot:
        async for event in stream:
            first.append(event)
            if isinstance(event, BookSnapshot) and event.bids and event.asks:
                return event
        raise DataError(f"{m.venue} feed ended before its first book snapshot")

    wait_s = SNAPSHOT_WAIT_S if duration_s is None else min(SNAPSHOT_WAIT_S, duration_s)
    try:
        snap = await asyncio.wait_for(until_snapshot(), wait_s)
    except TimeoutError as exc:
        raise DataError(f"no book snapshot from {m.venue} {m.symbol} within "
                        f"{wait_s:g} s") from exc
    inferred = infer_rules(snap)
    log.info("market_rules_inferred", tick_size=inferred.tick_size, lot_size=inferred.lot_size)

    async def chained() -> AsyncIterator[MarketEvent]:
        for event in first:
            yield event
        async for event in stream:
            yield event

    return MarketRules(m.tick_size or inferred.tick_size, m.lot_size or inferred.lot_size), \
        chained()


async def _paced(events: Iterator[MarketEvent]) -> AsyncIterator[MarketEvent]:
    """Yield events when the wall clock reaches their timestamps."""
    for event in events:
        delay = (event.ts_local_ns - time.time_ns()) / NS
        if delay > 0:
            await asyncio.sleep(delay)
        yield event


class PaperSession:
    """One paper-trading run on the wall clock: open the feed, build the engine, trade.

    ``engine`` is set once the market data has started (tick and lot known), so a caller can
    summarise whatever happened even if the run was cancelled.
    """

    def __init__(self, settings: Settings, journal: Journal | None, log: Any,
                 on_status: Any = None, run_tag: str = "") -> None:
        self.settings = settings
        self.journal = journal
        self.log = log
        self.on_status = on_status
        self.run_tag = run_tag
        self.engine: Engine | None = None

    async def run(self, duration_s: float | None, warmup: Sequence[Path] = ()) -> None:
        """Trade until ``duration_s`` elapses, the feed ends, or the task is cancelled."""
        settings, log = self.settings, self.log
        clock = WallClock()
        opening = time.monotonic()
        rules, source = await open_source(settings, duration_s, log)
        if duration_s is not None:
            # --duration counts from the start: waiting for the feed's first snapshot is part
            # of it (without a network, a 3 s run used to wait a minute for it).
            duration_s = max(0.0, duration_s - (time.monotonic() - opening))
        engine = build_engine(settings, rules, clock, self.journal, log,
                              on_status=self.on_status, run_tag=self.run_tag)
        _attach_sim_venue(engine, settings, clock)
        if warmup:
            from bot.replay import warm_up

            warm_up(engine, warmup, time.time_ns())
        self.engine = engine
        log.info("paper_started", strategy=settings.strategy.kind, tick_size=rules.tick_size,
                 lot_size=rules.lot_size, max_inventory=settings.risk.max_inventory,
                 max_loss=settings.risk.max_loss, max_drawdown=settings.risk.max_drawdown,
                 order_qty=settings.strategy.ladder.order_qty)
        await engine.run_wall(source, duration_s)


def run_paper(settings: Settings, duration_s: float | None, json_output: bool = False,
              speed: float = 1.0, warmup: Sequence[Path] = ()) -> dict[str, Any]:
    """Paper trade until ``duration_s`` elapses or Ctrl-C; return the summary.

    Prints a status line every ``run.status_interval_s`` seconds on stdout (unless
    ``json_output``), writes the run directory and says where it is on stderr.
    """
    if speed != 1.0:
        raise ConfigError("--speed", "paper trading runs at wall-clock pace (speed 1)")
    check_market(settings)
    if warmup:
        from bot.replay import resolve_source

        resolve_source(warmup, None, None)  # a bad --warmup fails before anything is written
    run = make_run_dir(settings, "paper")
    configure_logging("warning" if json_output else settings.run.log_level, run.log)
    log = get_logger(venue=settings.market.venue, symbol=settings.market.symbol, mode="paper")

    def show(status: Status) -> None:
        if not json_output:
            sys.stdout.write(format_status(status) + "\n")
            sys.stdout.flush()

    journal = Journal(run.journal)
    session = PaperSession(settings, journal, log, on_status=show, run_tag=run_tag_now())
    start_ns = time.time_ns()
    t0 = time.perf_counter()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        if task is not None:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await session.run(duration_s, warmup)

    try:
        asyncio.run(main())
    finally:
        journal.close()
    engine = session.engine
    if engine is None:
        raise MmbotError("paper trading stopped before the market data started")
    summary = {**run_summary(engine, settings, "paper"), "started_ns": start_ns,
               "ended_ns": time.time_ns(), "elapsed_s": time.perf_counter() - t0,
               "run_dir": str(run.path)}
    run.write_json("summary.json", summary)
    log.info("paper_finished", pnl=summary["pnl"], fills=summary["fills"],
             run_dir=str(run.path))
    close_logging()
    sys.stderr.write(f"run directory: {run.path}\n")
    return summary
