"""The live feed shell under fault injection: real WebSocketFeed, real parsers, fake venues.

Each scenario runs ``adapters.ws.WebSocketFeed`` with the real venue parser against a loopback
fake venue (``tests/fakes/venues.py``) that replays recorded real frames and keeps its own book,
with one fault injected per connection attempt and backoff shrunk to milliseconds. Every event
goes through an ``Engine`` quoting on a simulated venue (zero latency), and after each event the
test records whether orders were live while the book was invalid. Each scenario ends when the
venue has sent every frame and the client has caught up; then:

* the client's book equals the venue's book (best bid/ask and the top 20 levels a side);
* the book is valid, nothing escaped the feed, quotes were pulled on every invalidation and no
  order was live while the book was invalid;
* the counters (gaps, malformed, silences, disconnects, connects, snapshot requests) say the
  fault happened exactly as injected and was handled the intended way.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import urllib.error
from collections import Counter
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path

import pytest
from fakes.venues import (
    Capture,
    FakeBinance,
    FakeBybit,
    FakeOkx,
    Fault,
    load_binance_usdm,
    load_bybit_linear,
)
from hypothesis import given
from hypothesis import strategies as st
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosedError, InvalidStatus, InvalidURI
from websockets.http11 import Response

from adapters.binance import BinanceParser
from adapters.bybit import BybitParser
from adapters.sim_venue import SimVenue
from adapters.venues import TOUCH_LEVELS
from adapters.ws import FeedStopped, ReconnectPolicy, ResyncNeeded, WebSocketFeed, is_retryable
from bot.app import MarketRules, build_engine
from bot.clock import VirtualClock
from bot.engine import Engine
from bot.events import BookInvalid, MarketEvent, Side
from bot.paper import sim_venue_config
from bot.settings import load_settings

POLICY = ReconnectPolicy(initial_s=0.01, max_s=0.05, silence_s=0.3, open_timeout_s=2,
                         snapshot_timeout_s=2)
TEST_TIMEOUT_S = 20.0
TOP_LEVELS = 20
BINANCE_CAPTURE = Path("hftbacktest") / "usdm" / "btcusdt_20240808.gz"
BYBIT_CAPTURE = Path("cryptofeed") / "BYBIT.jsonl.gz"


# --------------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------------


@pytest.fixture
def binance_capture(shared_data: Path) -> Capture:
    """Return the first 4000 lines of the recorded Binance USD-M BTCUSDT session."""
    return load_binance_usdm(shared_data / BINANCE_CAPTURE, 4000)


@pytest.fixture
def bybit_capture(shared_data: Path) -> Capture:
    """Return the recorded Bybit linear BTCUSDT book and trades."""
    return load_bybit_linear(shared_data / BYBIT_CAPTURE, "BTCUSDT")


def make_engine(symbol: str = "BTCUSDT") -> Engine:
    """Return an engine quoting a fixed spread on a zero-latency simulated venue."""
    settings = load_settings(None, {
        "market": {"symbol": symbol, "tick_size": 0.1, "lot_size": 0.001},
        "strategy": {"kind": "fixed_spread", "half_spread_ticks": 2.0,
                     "ladder": {"order_qty": 0.01}},
        "model": {"estimate_sigma": False},
        "risk": {"max_inventory": 1.0},
        "sim_venue": {"fill_model": "touch", "entry_latency_ms": 0.0,
                      "cancel_latency_ms": 0.0},
    }, environ={})
    clock = VirtualClock()
    engine = build_engine(settings, MarketRules(0.1, 0.001), clock, None, log=None)
    venue = SimVenue(sim_venue_config(settings), clock, engine.on_order_event, engine.book)
    engine.attach_venue(venue, simulated=True)
    return engine


def binance_parser(venue: FakeBinance) -> BinanceParser:
    """Return the USD-M parser pointed at the fake (the recording is the unthrottled stream),
    splitting large diffs touch first as the engine's feeds do."""
    return BinanceParser("BTCUSDT", "usdm", depth_speed_ms=0, ws_base=venue.ws_base,
                         rest_base=venue.rest_base, touch_levels=TOUCH_LEVELS)


def bybit_parser(venue: FakeBybit) -> BybitParser:
    """Return the linear parser pointed at the fake, with a fast heartbeat."""
    parser = BybitParser("BTCUSDT", "linear", depth=200, ws_url=venue.ws_url)
    # Bybit wants a ping every 20 s; every 20 ms here, so the fake answers some.
    parser.heartbeat_interval_s = 0.02
    return parser


@dataclass
class Tape:
    """What the engine went through, checked after every event."""

    kinds: Counter[str] = field(default_factory=Counter)
    invalidations: int = 0
    """BookInvalid events processed."""
    pulled: int = 0
    """BookInvalid events that found live orders (which must be gone right after)."""
    quoting: int = 0
    """Events after which orders rested on a valid book (so the pull checks are not vacuous)."""
    violations: list[str] = field(default_factory=list)
    """Events after which orders were live while the book was invalid."""


async def consume(feed: WebSocketFeed, engine: Engine, tape: Tape) -> None:
    """Feed every event into the engine, recording whether quotes were pulled while invalid."""
    async for event in feed.events():
        had_orders = bool(engine.orders.orders)
        engine.step(event)
        live = len(engine.orders.orders)
        tape.kinds[type(event).__name__] += 1
        if isinstance(event, BookInvalid):
            tape.invalidations += 1
            tape.pulled += had_orders
            if engine.book.valid or live:
                tape.violations.append(f"after {event.reason!r}: valid={engine.book.valid} "
                                       f"live={live}")
        elif not engine.book.valid and live:
            tape.violations.append(f"{live} live orders on an invalid book after {event!r:.120}")
        elif live:
            tape.quoting += 1


async def run_until_caught_up(feed: WebSocketFeed, engine: Engine,
                              venue: FakeBinance | FakeBybit) -> Tape:
    """Run the feed until the venue has sent everything and the engine's book is current."""
    tape = Tape()
    consumer = asyncio.create_task(consume(feed, engine, tape), name="test-consumer")
    try:
        while not (venue.done.is_set() and engine.book.valid
                   and engine.book.sequence == venue.last_update_id):
            assert not venue.errors, venue.errors
            if consumer.done():
                consumer.result()  # raises what escaped the feed
                pytest.fail("the feed ended on its own")
            await asyncio.sleep(0.002)
    finally:
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
    return tape


def base_delay(policy: ReconnectPolicy, attempt: int) -> float:
    """Return the policy's delay before jitter (the test's own statement of the rule)."""
    return min(policy.max_s, policy.initial_s * policy.factor**attempt)


def assert_book_matches_venue(
    engine: Engine, venue: FakeBinance | FakeBybit | FakeOkx
) -> None:
    """The client's book is the venue's book: best bid/ask and the top levels of each side."""
    book = engine.book
    assert book.valid, book.invalid_reason
    venue_bids = venue.book.levels(True, TOP_LEVELS)
    venue_asks = venue.book.levels(False, TOP_LEVELS)
    assert (book.best_bid, book.best_ask) == (venue_bids[0][0], venue_asks[0][0])
    assert book.depth(Side.BUY, TOP_LEVELS) == venue_bids
    assert book.depth(Side.SELL, TOP_LEVELS) == venue_asks


def assert_quotes_pulled_while_invalid(tape: Tape, engine: Engine) -> None:
    """No order was ever live on an invalid book, and the engine did quote otherwise."""
    assert tape.violations == []
    assert tape.quoting > 0
    assert engine.stats.orders_sent > 0
    assert engine.stats.bad_events == 0


# --------------------------------------------------------------------------------------------
# Binance USD-M: REST snapshot + diff stream
# --------------------------------------------------------------------------------------------


async def test_binance_drop_mid_stream_then_503_handshake_reconnects_and_resyncs(
    binance_capture: Capture,
) -> None:
    faults = [Fault(drop_after=900), Fault(reject_status=503)]
    async with asyncio.timeout(TEST_TIMEOUT_S), FakeBinance(binance_capture, faults) as venue:
        parser = binance_parser(venue)
        feed = WebSocketFeed(parser, POLICY, seed=1)
        engine = make_engine()

        tape = await run_until_caught_up(feed, engine, venue)

    assert_book_matches_venue(engine, venue)
    assert_quotes_pulled_while_invalid(tape, engine)
    assert (venue.handshakes, venue.connections, venue.drops) == (3, 2, 1)
    assert venue.frames_missed > 0  # the market moved on while we were away
    assert (feed.connects, feed.disconnects, feed.silences) == (2, 2, 0)
    # One snapshot per connection: the parser starts over on every connection.
    assert venue.snapshot_requests == 2
    assert feed.snapshot_failures == 0
    assert (parser.stats.gaps, parser.stats.malformed) == (0, 0)
    # Each failed connection says "reconnecting"; the book was lost once.
    assert tape.invalidations == 2
    assert tape.pulled == 1
    assert engine.stats.book_invalidations == 1


async def test_binance_missing_diff_is_a_gap_that_pulls_quotes_and_resyncs_from_rest(
    binance_capture: Capture,
) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S), \
            FakeBinance(binance_capture, [Fault(skip_frame_at=60)]) as venue:
        parser = binance_parser(venue)
        feed = WebSocketFeed(parser, POLICY, seed=2)
        engine = make_engine()

        tape = await run_until_caught_up(feed, engine, venue)

    assert_book_matches_venue(engine, venue)
    assert_quotes_pulled_while_invalid(tape, engine)
    assert venue.book_frames_skipped == 1
    assert (parser.stats.gaps, parser.stats.resyncs, parser.stats.malformed) == (1, 1, 0)
    # Resynced on the same connection: a second snapshot, no reconnect.
    assert venue.snapshot_requests == 2
    assert (feed.connects, feed.disconnects, venue.handshakes) == (1, 0, 1)
    assert (tape.invalidations, tape.pulled, engine.stats.book_invalidations) == (1, 1, 1)


async def test_binance_garbage_frames_are_counted_malformed_and_the_book_stays_valid(
    binance_capture: Capture,
) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S), \
            FakeBinance(binance_capture, [Fault(garbage_at=60)]) as venue:
        parser = binance_parser(venue)
        feed = WebSocketFeed(parser, POLICY, seed=3)
        engine = make_engine()

        tape = await run_until_caught_up(feed, engine, venue)

    assert_book_matches_venue(engine, venue)
    assert_quotes_pulled_while_invalid(tape, engine)
    assert venue.garbage_sent == 8
    assert parser.stats.malformed == venue.garbage_sent
    # The corrupt diffs were extra copies: the real diff after them keeps the sequence whole.
    assert (parser.stats.gaps, parser.stats.resyncs) == (0, 0)
    assert venue.snapshot_requests == 1
    assert (feed.connects, feed.disconnects) == (1, 0)
    assert tape.invalidations == 0
    assert engine.stats.book_invalidations == 0


async def test_binance_silent_and_half_open_connections_are_dropped_by_the_watchdog(
    binance_capture: Capture,
) -> None:
    faults = [Fault(silent_after=500), Fault(silent_after=500, half_open=True)]
    async with asyncio.timeout(TEST_TIMEOUT_S), FakeBinance(binance_capture, faults) as venue:
        parser = binance_parser(venue)
        feed = WebSocketFeed(parser, POLICY, seed=4)
        engine = make_engine()

        tape = await run_until_caught_up(feed, engine, venue)

    assert_book_matches_venue(engine, venue)
    assert_quotes_pulled_while_invalid(tape, engine)
    assert (feed.silences, feed.disconnects, feed.connects) == (2, 2, 3)
    assert venue.snapshot_requests == 3
    assert (parser.stats.gaps, parser.stats.malformed) == (0, 0)
    assert (tape.invalidations, tape.pulled) == (2, 2)
    # Reconnected once the silence lasted silence_s, even when the peer never answers the close
    # frame (a half-open connection must not cost a close handshake timeout on top).
    for went_silent, reconnected in zip(venue.silent_at, venue.connected_at[1:], strict=True):
        assert POLICY.silence_s <= reconnected - went_silent < POLICY.silence_s + 0.5


async def test_binance_snapshot_http_503_is_retried_with_backoff_then_syncs(
    binance_capture: Capture,
) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S), \
            FakeBinance(binance_capture, http_503_on_snapshot=2) as venue:
        parser = binance_parser(venue)
        feed = WebSocketFeed(parser, POLICY, seed=5)
        engine = make_engine()

        tape = await run_until_caught_up(feed, engine, venue)

    assert_book_matches_venue(engine, venue)
    assert_quotes_pulled_while_invalid(tape, engine)
    assert (venue.snapshot_requests, venue.snapshots_served, feed.snapshot_failures) == (3, 1, 2)
    assert (feed.connects, feed.disconnects) == (1, 0)
    assert (parser.stats.gaps, parser.stats.malformed) == (0, 0)
    # Retries back off like reconnects (not one request per incoming frame).
    first, second, third = venue.snapshot_request_at
    low = 1.0 - POLICY.jitter
    assert second - first >= base_delay(POLICY, 0) * low
    assert third - second >= base_delay(POLICY, 1) * low


# --------------------------------------------------------------------------------------------
# Bybit v5: snapshot on subscribe, resubscribe to resync
# --------------------------------------------------------------------------------------------


async def test_bybit_gap_resubscribes_on_a_new_connection_and_rebuilds_from_its_snapshot(
    bybit_capture: Capture,
) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S), \
            FakeBybit(bybit_capture, [Fault(skip_frame_at=100)]) as venue:
        parser = bybit_parser(venue)
        feed = WebSocketFeed(parser, POLICY, seed=6)
        engine = make_engine()

        tape = await run_until_caught_up(feed, engine, venue)

    assert_book_matches_venue(engine, venue)
    assert_quotes_pulled_while_invalid(tape, engine)
    assert venue.book_frames_skipped == 1
    assert (parser.stats.gaps, parser.stats.resyncs, parser.stats.malformed) == (1, 1, 0)
    # The resubscribe is a new connection, and the venue sends a fresh snapshot on it.
    assert (feed.connects, feed.disconnects, feed.silences) == (2, 1, 0)
    assert (venue.subscriptions, venue.snapshots_sent) == (2, 2)
    # The gap's BookInvalid, then the shell's "reconnecting".
    assert (tape.invalidations, tape.pulled, engine.stats.book_invalidations) == (2, 1, 1)
    assert venue.pings > 0


async def test_bybit_corrupt_delta_resubscribes_and_a_dropped_connection_reconnects(
    bybit_capture: Capture,
) -> None:
    faults = [Fault(garbage_at=60), Fault(drop_after=120)]
    async with asyncio.timeout(TEST_TIMEOUT_S), FakeBybit(bybit_capture, faults) as venue:
        parser = bybit_parser(venue)
        feed = WebSocketFeed(parser, POLICY, seed=7)
        engine = make_engine()

        tape = await run_until_caught_up(feed, engine, venue)

    assert_book_matches_venue(engine, venue)
    assert_quotes_pulled_while_invalid(tape, engine)
    # Not JSON, {}, a NaN trade: skipped. A NaN book delta: the book is lost, resubscribe.
    assert venue.garbage_sent == 4
    assert parser.stats.malformed == 4
    assert (parser.stats.gaps, parser.stats.resyncs) == (0, 1)
    assert (feed.connects, feed.disconnects, venue.drops) == (3, 2, 1)
    assert (venue.subscriptions, venue.snapshots_sent) == (3, 3)
    assert engine.stats.book_invalidations == 2


async def test_cancelling_the_feed_on_a_half_open_connection_waits_only_close_timeout(
    binance_capture: Capture,
) -> None:
    # A long watchdog, so the feed is still on the dead connection when it is cancelled.
    policy = ReconnectPolicy(initial_s=0.01, max_s=0.05, silence_s=10.0, close_timeout_s=0.2)
    faults = [Fault(silent_after=300, half_open=True)]
    async with asyncio.timeout(TEST_TIMEOUT_S), FakeBinance(binance_capture, faults) as venue:
        feed = WebSocketFeed(binance_parser(venue), policy, seed=9)
        engine = make_engine()
        consumer = asyncio.create_task(consume(feed, engine, Tape()), name="test-consumer")
        await venue.went_silent.wait()
        loop = asyncio.get_running_loop()
        started = loop.time()

        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
        took = loop.time() - started

    # The venue never answers the close frame: shutdown waits close_timeout_s, not 10 s.
    assert policy.close_timeout_s <= took < policy.close_timeout_s + 0.5
    assert (feed.connects, feed.silences) == (1, 0)


# --------------------------------------------------------------------------------------------
# Giving up, fatal errors
# --------------------------------------------------------------------------------------------


async def test_feed_stops_after_max_attempts_of_refused_handshakes_with_growing_backoff(
    binance_capture: Capture,
) -> None:
    policy = ReconnectPolicy(initial_s=0.01, max_s=0.05, jitter=0.2, max_attempts=3)
    faults = [Fault(reject_status=503)] * 3
    events: list[MarketEvent] = []
    async with asyncio.timeout(TEST_TIMEOUT_S), FakeBinance(binance_capture, faults) as venue:
        feed = WebSocketFeed(binance_parser(venue), policy, seed=8)

        with pytest.raises(FeedStopped, match="3 connection attempts failed"):
            async for event in feed.events():
                events.append(event)

    assert (venue.handshakes, venue.connections) == (3, 0)
    assert (feed.connects, feed.disconnects) == (0, 3)
    assert [type(e) for e in events] == [BookInvalid] * 3
    first, second, third = venue.handshake_at
    assert second - first >= base_delay(policy, 1) * (1 - policy.jitter)
    assert third - second >= base_delay(policy, 2) * (1 - policy.jitter)


async def test_invalid_websocket_uri_is_fatal_and_not_retried() -> None:
    parser = BinanceParser("BTCUSDT", "usdm", ws_base="http://127.0.0.1:9")
    feed = WebSocketFeed(parser, POLICY)

    async with asyncio.timeout(TEST_TIMEOUT_S):
        with pytest.raises(InvalidURI):
            await anext(aiter(feed.events()))

    assert (feed.connects, feed.disconnects) == (0, 0)


# --------------------------------------------------------------------------------------------
# ReconnectPolicy.delay and is_retryable
# --------------------------------------------------------------------------------------------


def test_reconnect_delay_grows_by_factor_from_initial_and_stops_at_the_cap() -> None:
    policy = ReconnectPolicy(initial_s=0.5, max_s=30.0, factor=2.0, jitter=0.0)
    rng = random.Random(1)

    delays = [policy.delay(attempt, rng) for attempt in range(9)]

    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_reconnect_delay_after_a_very_long_outage_is_the_cap_not_an_overflow() -> None:
    policy = ReconnectPolicy(initial_s=0.5, max_s=30.0, jitter=0.0)

    # 2.0 ** 1100 overflows a float: a feed retrying every 30 s hits that after ~9 hours.
    assert policy.delay(1100, random.Random(1)) == 30.0
    assert policy.delay(10**9, random.Random(1)) == 30.0


@given(attempt=st.integers(0, 5000), seed=st.integers(0, 2**32),
       jitter=st.floats(0.0, 0.9), initial=st.floats(0.001, 10.0))
def test_reconnect_delay_jitter_stays_within_its_bounds(
    attempt: int, seed: int, jitter: float, initial: float
) -> None:
    policy = ReconnectPolicy(initial_s=initial, max_s=30.0, factor=2.0, jitter=jitter)
    base = min(30.0, initial * 2.0 ** min(attempt, 64))

    delay = policy.delay(attempt, random.Random(seed))

    assert base * (1 - jitter) - 1e-12 <= delay <= base * (1 + jitter) + 1e-12
    assert math.isfinite(delay)


def test_reconnect_delay_jitter_spreads_the_waits() -> None:
    policy = ReconnectPolicy(initial_s=1.0, max_s=30.0, jitter=0.2)
    rng = random.Random(2)

    samples = [policy.delay(3, rng) for _ in range(500)]

    assert min(samples) < 8.0 * 0.9 and max(samples) > 8.0 * 1.1


def _http_error(code: int) -> urllib.error.HTTPError:
    return urllib.error.HTTPError("http://127.0.0.1/fapi/v1/depth", code, "error", Message(), None)


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "Connection refused"),
        ConnectionResetError(104, "Connection reset by peer"),
        OSError(101, "Network is unreachable"),
        TimeoutError("timed out during opening handshake"),
        ConnectionClosedError(None, None),
        InvalidStatus(Response(503, "Service Unavailable", Headers())),
        _http_error(503),
        ResyncNeeded("gap"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_failures_a_reconnect_can_cure_are_retryable(exc: BaseException) -> None:
    assert is_retryable(exc)


@pytest.mark.parametrize(
    "exc",
    [
        InvalidURI("http://127.0.0.1:9/stream", "scheme isn't ws or wss"),
        ValueError("bug"),
        KeyError("bug"),
        RuntimeError("bug"),
        FeedStopped("gave up"),
        asyncio.CancelledError(),
        KeyboardInterrupt(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_bugs_cancellation_and_bad_configuration_are_not_retryable(exc: BaseException) -> None:
    assert not is_retryable(exc)
