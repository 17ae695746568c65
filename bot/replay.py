"""Replay recorded feeds through the venue parsers, the engine and the simulated venue.

Raw frames go through the same parsers as live; the engine runs on virtual time driven by the
frames' local receive times, so a replay is reproducible bit for bit from the same files and
config. ``--speed 1`` paces the frames to the recorded wall time instead of running flat out.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters.feed import FeedParser, FeedStats, Resync
from adapters.recording import PROGRESS, Frame, iter_frames, read_info
from adapters.sim_venue import SimVenue
from adapters.venues import (
    accepts_connection,
    binance_market_from_frame,
    make_parser,
    native_symbol,
    venue_from_cryptofeed,
)
from bot.app import (
    MarketRules,
    RunDir,
    build_engine,
    finite_or_none,
    infer_rules,
    make_run_dir,
    run_summary,
)
from bot.clock import VirtualClock
from bot.engine import Engine
from bot.errors import ConfigError, DataError
from bot.events import BookDelta, BookSnapshot, DeferredBookDelta, MarketEvent
from bot.journal import Journal, read_table
from bot.logs import configure_logging, get_logger
from bot.paper import sim_venue_config
from bot.settings import Settings, load_settings, snapshot

NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Source:
    """Which market a set of recordings holds."""

    venue: str
    symbol: str
    paths: tuple[Path, ...]


def resolve_source(paths: Sequence[Path], venue: str | None, symbol: str | None) -> Source:
    """Work out venue and symbol from the recordings (command-line values win).

    Raises:
        ConfigError: the recordings disagree, are out of time order, or name no market and
            none was given.
        DataError: a file is unreadable or in no format we read.
    """
    if not paths:
        raise ConfigError("PATH", "give at least one recording")
    for path in paths:
        if not path.is_file():
            what = "not a file" if path.exists() else "no such file"
            raise ConfigError("PATH", f"{what}: {path}")
    found: set[tuple[str, str]] = set()
    for path in paths:
        info = read_info(path)
        if info.format == "mmbot" and info.venue and info.symbol:
            found.add((info.venue, info.symbol))
        elif info.format == "cryptofeed" and info.exchange:
            sym = symbol or (info.l2_symbols[0] if info.l2_symbols else "")
            if not sym:
                raise ConfigError("--symbol", f"{path} names no order book; give --symbol")
            cf_venue = venue_from_cryptofeed(info.exchange, sym)
            native = sym if symbol else native_symbol(cf_venue, sym)
            found.add((venue or cf_venue, native))
        elif info.format == "hftbacktest":
            guess = _guess_hftbacktest(path)
            if guess is not None:
                found.add(guess)
    if len(paths) > 1:
        _check_order(paths)
    if venue and symbol:
        return _checked(Source(venue, symbol, tuple(paths)))
    if len(found) > 1 and not (venue and symbol):
        raise ConfigError("PATH", f"the recordings hold different markets: {sorted(found)}")
    if not found:
        raise ConfigError("--venue", "cannot tell the market from the recordings; give "
                                     "--venue and --symbol")
    rec_venue, rec_symbol = found.pop()
    return _checked(Source(venue or rec_venue, symbol or rec_symbol, tuple(paths)))


def _checked(source: Source) -> Source:
    """``source``, once its venue's parser takes its symbol (ConfigError otherwise): checked
    before a run directory is made, not at the first frame."""
    try:
        make_parser(source.venue, source.symbol)
    except ValueError as exc:
        raise ConfigError("--symbol", str(exc)) from exc
    return source


def _first_ts(path: Path) -> int | None:
    """The receive time of the first timed frame of ``path`` (None if it has none early on)."""
    for n, frame in enumerate(iter_frames([path])):
        if frame.ts_local_ns > 0:
            return frame.ts_local_ns
        if n > 1000:
            break
    return None


def _check_order(paths: Sequence[Path]) -> None:
    """Recordings are replayed one after another as given: each must start after the one
    before it started (ConfigError otherwise). Replayed the wrong way round, a later file's
    diffs would meet an older snapshot, and ``part10`` sorts before ``part2`` in a glob."""
    previous: tuple[Path, int] | None = None
    for path in paths:
        ts = _first_ts(path)
        if ts is None:
            continue
        if previous is not None and ts <= previous[1]:
            raise ConfigError("PATH", f"the recordings are out of order: {path} does not start "
                                      f"after {previous[0]}; give them oldest first")
        previous = (path, ts)


def _guess_hftbacktest(path: Path) -> tuple[str, str] | None:
    for n, frame in enumerate(iter_frames([path])):
        if frame.kind == "ws":
            guess = binance_market_from_frame(frame.data)
            if guess is not None:
                return guess
        if n > 1000:
            break
    return None


class FrameRouter:
    """Hand recorded frames to parsers: one parser per websocket connection of the market."""

    def __init__(self, source: Source, *, touch_first: bool = False) -> None:
        self.source = source
        self.touch_first = touch_first
        self.parsers: dict[str, FeedParser] = {}
        self._addresses: dict[str, str] = {}
        self._pending_snapshots: list[Frame] = []
        self.messages = 0
        self.bad_frames = 0

    def _parser(self, conn: str) -> FeedParser | None:
        parser = self.parsers.get(conn)
        if parser is None:
            if not accepts_connection(self.source.venue, self._addresses.get(conn, "")):
                return None
            parser = make_parser(self.source.venue, self.source.symbol,
                                 touch_first=self.touch_first)
            self.parsers[conn] = parser
        return parser

    def _wants_snapshot(self, url: str) -> bool:
        if not url:
            return True  # hftbacktest: the bare snapshot line of the one connection
        if "depth" not in url:
            return False
        compact = self.source.symbol.replace("/", "").replace("-", "").upper()
        query = url.replace("-", "").upper()
        return f"SYMBOL={compact}&" in f"{query}&" or "SYMBOL=" not in query

    def events(self, frame: Frame) -> list[MarketEvent]:
        """Return the events of one frame (usually 0 or 1; a snapshot may release several)."""
        kind = frame.kind
        if kind == "ws":
            parser = self.parsers.get(frame.conn) or self._parser(frame.conn)
            if parser is None:
                return []
            self.messages += 1
            out = parser.on_message(frame.data, frame.ts_local_ns)
            if self._pending_snapshots and parser.resync is Resync.REST_SNAPSHOT:
                for snap in self._pending_snapshots:
                    out.extend(parser.on_snapshot(snap.data, snap.ts_local_ns))
                self._pending_snapshots.clear()
            return out
        if kind == "rest":
            if not self._wants_snapshot(frame.conn):
                return []
            self.messages += 1
            waiting = [p for p in self.parsers.values() if p.resync is Resync.REST_SNAPSHOT]
            if not waiting:
                # The snapshot came before any diff (or nobody lost sync): keep the latest.
                self._pending_snapshots = [frame]
                return []
            released: list[MarketEvent] = []
            for parser in waiting:
                released.extend(parser.on_snapshot(frame.data, frame.ts_local_ns))
            return released
        if kind == "connect":
            self._addresses[frame.conn] = frame.data
            parser = self.parsers.get(frame.conn)
            if parser is not None:
                parser.reset()
            return []
        self.bad_frames += 1
        return []

    def stats(self) -> FeedStats:
        """Return the parsers' counters added up."""
        total = FeedStats()
        for parser in self.parsers.values():
            for name in total.__slots__:
                setattr(total, name, getattr(total, name) + getattr(parser.stats, name))
        return total


@dataclass(slots=True)
class ReplayResult:
    """Engine, counters and, when measured, the tick-to-quote latencies in ns.

    ``latencies_ns``: every frame that updated the book, raw frame in -> quoting decision
    made (commands sent, or none needed). ``command_latencies_ns``: the frames whose decision
    sent commands, raw frame in -> commands out of the order manager.
    """

    engine: Engine
    router: FrameRouter
    messages: int
    elapsed_s: float
    latencies_ns: list[int] = field(default_factory=list)
    command_latencies_ns: list[int] = field(default_factory=list)
    interrupted: bool = False  # stopped by ``stop`` before the recordings' end


def recorded_events(source: Source) -> Iterator[MarketEvent]:
    """Yield the market events of a recording, through the venue's parsers."""
    router = FrameRouter(source)
    for frame in iter_frames(source.paths):
        yield from router.events(frame)


def last_timestamp(source: Source) -> int:
    """Return the local receive time of the last frame of a recording."""
    last = 0
    for frame in iter_frames(source.paths):
        last = frame.ts_local_ns or last
    return last


def warm_up(engine: Engine, paths: Sequence[Path], end_ns: int) -> int:
    """Warm the engine's estimators on recordings, shifted to end just before ``end_ns``.

    The recordings' own market is used; one of another symbol is allowed (a user may warm a
    new market on a similar one) and logged.
    """
    source = resolve_source(paths, None, None)
    if source.symbol != engine.symbol and engine.log is not None:
        engine.log.warning("warm_up_other_market", recording=source.symbol,
                           trading=engine.symbol)
    shift = end_ns - 1 - last_timestamp(source)
    return engine.warm_up(recorded_events(source), shift_ns=shift)


def for_source(settings: Settings, source: Source) -> Settings:
    """Return ``settings`` with the market's venue and symbol set to the recording's."""
    market = settings.market.model_copy(update={"venue": source.venue, "symbol": source.symbol})
    return settings.model_copy(update={"market": market})


def find_rules(source: Source, settings: Settings) -> MarketRules:
    """Return tick and lot: from settings when given, else from the first snapshot."""
    m = settings.market
    if m.tick_size is not None and m.lot_size is not None:
        return MarketRules(m.tick_size, m.lot_size)
    router = FrameRouter(source)
    for n, frame in enumerate(iter_frames(source.paths)):
        for event in router.events(frame):
            if isinstance(event, BookSnapshot) and event.bids and event.asks:
                inferred = infer_rules(event)
                return MarketRules(m.tick_size or inferred.tick_size,
                                   m.lot_size or inferred.lot_size)
        if n > 200_000:
            break
    raise DataError("no order book snapshot in the first 200,000 frames: cannot infer the "
                    "tick size; set market.tick_size and market.lot_size")


def run_replay(
    source: Source,
    settings: Settings,
    run: RunDir | None,
    *,
    speed: float | None = None,
    measure_latency: bool = False,
    progress: Callable[[int, float], None] | None = None,
    warmup: Sequence[Path] = (),
    stop: Callable[[], bool] | None = None,
) -> ReplayResult:
    """Replay ``source`` through the engine; return the engine and counters.

    Args:
        source: the recordings and their market.
        settings: the run's settings (market venue and symbol are taken from ``source``).
        run: run directory for the journal, or None.
        speed: None for as fast as possible, 1.0 to pace frames to recorded time.
        measure_latency: record tick-to-quote latency (raw frame in -> commands out) for
            every frame that updated the book.
        progress: called about twice a second with (messages, fraction of bytes read).
        stop: asked before each frame; True ends the replay there, as if the recordings
            ended (orders cancelled, the run finished), with ``interrupted`` set.
    """
    settings = for_source(settings, source)
    rules = find_rules(source, settings)
    clock = VirtualClock()
    journal = Journal(run.journal) if run is not None else None
    log = get_logger(venue=source.venue, symbol=source.symbol, mode="replay")
    engine = build_engine(settings, rules, clock, journal, log)
    venue = SimVenue(sim_venue_config(settings, rules.lot_size), clock, engine.on_order_event,
                     engine.book)
    engine.attach_venue(venue, simulated=True)
    if warmup:
        first = next((f.ts_local_ns for f in iter_frames(source.paths) if f.ts_local_ns), 0)
        warm_up(engine, warmup, first)
    router = FrameRouter(source, touch_first=True)
    route = router.events
    step = engine.step
    latencies: list[int] = []
    command_latencies: list[int] = []
    engine.measure = measure_latency
    perf_ns = time.perf_counter_ns
    started = time.perf_counter()
    next_progress = started + 0.5
    first_ts: int | None = None
    interrupted = False
    try:
        for frame in iter_frames(source.paths):
            if stop is not None and stop():
                interrupted = True
                break
            if speed is not None and frame.ts_local_ns:
                if first_ts is None:
                    first_ts = frame.ts_local_ns
                wait = (frame.ts_local_ns - first_ts) / NS / speed - (time.perf_counter()
                                                                      - started)
                while wait > 0 and not (stop is not None and stop()):
                    time.sleep(min(wait, 0.2))  # a stop is seen within 0.2 s
                    wait = (frame.ts_local_ns - first_ts) / NS / speed - (
                        time.perf_counter() - started)
                if stop is not None and stop():
                    interrupted = True
                    break
            if measure_latency:
                # Venue callbacks due before this frame (acks after latency) are earlier
                # events: run them first so they are not billed to this frame.
                engine.run_due(frame.ts_local_ns)
                engine.first_decision_ns = engine.first_commands_ns = 0
            t0 = perf_ns()
            events = route(frame)
            if not events:
                continue
            book_event = False
            for event in events:
                step(event)
                kind = type(event)
                if kind is BookDelta or kind is DeferredBookDelta or kind is BookSnapshot:
                    book_event = True
            if measure_latency and book_event and engine.first_decision_ns:
                latencies.append(engine.first_decision_ns - t0)
                if engine.first_commands_ns:
                    command_latencies.append(engine.first_commands_ns - t0)
            if progress is not None and router.messages % 4096 == 0:
                now = time.perf_counter()
                if now >= next_progress:
                    next_progress = now + 0.5
                    progress(router.messages, PROGRESS.position() / max(PROGRESS.total, 1))
        engine.finish_virtual()
    finally:
        if journal is not None:
            journal.close()
    return ReplayResult(engine, router, router.messages, time.perf_counter() - started,
                        latencies, command_latencies, interrupted)


def replay_summary(result: ReplayResult, source: Source, settings: Settings,
                   run: RunDir | None) -> dict[str, Any]:
    """Return the replay JSON (the documented keys first) and write ``summary.json``."""
    settings = for_source(settings, source)
    engine = result.engine
    feed = result.router.stats()
    stats = engine.stats
    core: dict[str, Any] = {
        "venue": source.venue,
        "symbol": source.symbol,
        "files": [str(p) for p in source.paths],
        "messages": result.messages,
        "book_updates": stats.book_updates,
        "trades": stats.trades,
        "orders_sent": stats.orders_sent,
        "fills": stats.fills,
        "pnl": engine.portfolio.pnl,
        "final_inventory": engine.portfolio.position,
        "final_best_bid": finite_or_none(engine.book.best_bid),
        "final_best_ask": finite_or_none(engine.book.best_ask),
        "sequence_gaps": feed.gaps,
        "checksum_errors": feed.checksum_errors,
        "resyncs": feed.resyncs,
        "malformed": feed.malformed + result.router.bad_frames,
        "elapsed_s": result.elapsed_s,
        "messages_per_s": result.messages / result.elapsed_s if result.elapsed_s > 0 else 0.0,
        "interrupted": result.interrupted,
    }
    rest = run_summary(engine, settings, "replay")
    summary = {**core, **{k: v for k, v in rest.items() if k not in core},
               "run_dir": str(run.path) if run is not None else None}
    if run is not None:
        run.write_json("summary.json", summary)
    return summary


def _progress_bar(messages: int, fraction: float) -> None:
    width = 30
    filled = int(width * min(max(fraction, 0.0), 1.0))
    sys.stderr.write(f"\rreplay [{'#' * filled}{'.' * (width - filled)}] "
                     f"{fraction:6.1%} {messages:,} msgs")
    sys.stderr.flush()


def average_quoted_spread(run: RunDir) -> float | None:
    """Return the mean of our quoted spread (ask − bid) over the marks with both sides live."""
    rows = read_table(run.journal, "marks")
    spreads = [ask - bid for *_, bid, ask in (r[:6] for r in rows)
               if bid is not None and ask is not None and ask == ask and bid == bid]
    return sum(spreads) / len(spreads) if spreads else None


def benchmark_settings(settings: Settings, half_spread_ticks: float) -> Settings:
    """Return ``settings`` with the strategy replaced by the fixed-spread benchmark.

    Everything else (ladder and order size, risk limits, fill model, latency, fees) is the
    strategy's, so the comparison isolates the quoting model.
    """
    strategy = settings.strategy.model_copy(update={
        "kind": "fixed_spread", "half_spread_ticks": half_spread_ticks,
        "half_spread_bps": None})
    health = settings.health.model_copy(update={"action": "warn"})
    return settings.model_copy(update={"strategy": strategy, "health": health})


def run_benchmark(source: Source, settings: Settings, run: RunDir,
                  rules_tick: float) -> dict[str, Any] | None:
    """Replay the fixed-spread benchmark into ``run/benchmark``; return its summary."""
    half_ticks = settings.benchmark.half_spread_ticks
    if half_ticks is None:
        spread = average_quoted_spread(run)
        if spread is None or not spread > 0:
            return None
        half_ticks = max(spread / 2.0 / rules_tick, 0.5)
    bench_settings = benchmark_settings(settings, half_ticks)
    bench_run = RunDir(run.path / "benchmark")
    bench_run.path.mkdir()
    bench_run.write_json("config.json", snapshot(bench_settings))
    result = run_replay(source, bench_settings, bench_run)
    summary = replay_summary(result, source, bench_settings, bench_run)
    summary["half_spread_ticks"] = half_ticks
    return summary


@contextlib.contextmanager
def _ctrl_c_stops() -> Iterator[Callable[[], bool]]:
    """While open, a first Ctrl-C (SIGINT) asks the replay to stop at the next frame (the
    predicate yielded turns True); a second one interrupts at once. Left alone when SIGINT is
    not Python's default (ignored, or handled by the caller) or off the main thread."""
    asked = False

    def on_sigint(_signum: int, _frame: Any) -> None:
        nonlocal asked
        if asked:
            raise KeyboardInterrupt
        asked = True

    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if main else None
    own = previous is signal.default_int_handler
    if own:
        signal.signal(signal.SIGINT, on_sigint)
    try:
        yield lambda: asked
    finally:
        if own:
            signal.signal(signal.SIGINT, previous)


def replay_command(paths: Sequence[Path], config: Path | None, overrides: dict[str, Any],
                   venue: str | None, symbol: str | None, speed: float | None,
                   json_output: bool, warmup: Sequence[Path] = (),
                   report: bool = True) -> dict[str, Any]:
    """The ``mmbot replay`` verb: resolve, run, write the run directory, return the summary."""
    source = resolve_source(paths, venue, symbol)
    market = {**overrides.pop("market", {}), "venue": source.venue, "symbol": source.symbol}
    settings = load_settings(config, {**overrides, "market": market})
    if warmup:
        resolve_source(warmup, None, None)  # a bad --warmup fails before anything is written
    run = make_run_dir(settings, "replay")
    configure_logging("warning" if json_output else settings.run.log_level, run.log)
    show = sys.stderr.isatty() and not (json_output and not sys.stdout.isatty())
    with _ctrl_c_stops() as stopped:
        result = run_replay(source, settings, run, speed=speed,
                            progress=_progress_bar if show else None, warmup=warmup,
                            stop=stopped)
    if show:
        sys.stderr.write("\n")
    summary = replay_summary(result, source, settings, run)
    if result.interrupted:
        # The benchmark would replay the whole recordings: the comparison would be unfair.
        sys.stderr.write(f"replay interrupted after {result.messages:,} messages: the "
                         "results cover those only\n")
    elif settings.benchmark.enabled:
        bench = run_benchmark(source, settings, run, result.engine.tick_size)
        if bench is not None:
            summary["benchmark"] = {k: bench[k] for k in (
                "pnl", "fills", "orders_sent", "final_inventory", "realised", "fees",
                "half_spread_ticks") if k in bench}
            run.write_json("summary.json", summary)
    if report:
        from bot.report import write_report

        bench_dir = run.path / "benchmark"
        path = write_report(run.path, bench_dir if bench_dir.is_dir() else None)
        summary["report"] = str(path)
        run.write_json("summary.json", summary)
        sys.stderr.write(f"report: {path}\n")
    sys.stderr.write(f"run directory: {run.path}\n")
    return summary
