"""The live feed shell against a loopback OKX: real WebSocketFeed, real OkxParser, fake venue.

Same harness as ``test_feed_faults.py`` (whose helpers are reused): ``FakeOkx`` replays the
recorded 2022 ``books`` + ``trades`` frames of BTC-USDT (``cryptofeed/OKX.jsonl.gz``) from a shared
cursor and keeps its own book; every subscription gets a snapshot the venue builds from that book
with a checksum it computes itself, then the recorded updates with their recorded checksums. One
fault is injected per connection attempt and every event goes through an ``Engine``.

The 2022 frames have no ``seqId``/``prevSeqId``: the checksum is the only integrity check, so a
lost update shows up as a checksum mismatch on the *next* update, and the parser's answer to any
mismatch (resubscribe) is carried out by the shell as a reconnect. Each scenario ends when the
venue has sent every frame and the engine has applied the last one; then the client's book
equals the venue's (top 20 a side), the book is valid, quotes were pulled while it was not, and
the counters say exactly what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fakes.venues import (
    FakeOkx,
    Fault,
    OkxCapture,
    StringBook,
    load_okx_books,
    okx_book_checksum,
)
from test_feed_faults import (
    POLICY,
    TEST_TIMEOUT_S,
    TOP_LEVELS,
    Tape,
    assert_book_matches_venue,
    assert_quotes_pulled_while_invalid,
    consume,
    make_engine,
)

from adapters.okx import OkxParser
from adapters.ws import WebSocketFeed
from bot.engine import Engine
from bot.events import BookDelta, BookInvalid, BookSnapshot, MarketEvent

OKX_CAPTURE = Path("cryptofeed") / "OKX.jsonl.gz"
INST_ID = "BTC-USDT"
RECORDED_UPDATES = 97
RECORDED_TRADES = 68
NS_PER_MS = 1_000_000


# --------------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------------


@pytest.fixture
def okx_capture(shared_data: Path) -> OkxCapture:
    """Return the recorded OKX BTC-USDT books (snapshot + 97 updates) and trades."""
    return load_okx_books(shared_data / OKX_CAPTURE, INST_ID)


def okx_parser(venue: FakeOkx) -> OkxParser:
    """Return the ``books`` parser pointed at the fake, with a fast heartbeat."""
    parser = OkxParser(INST_ID, "books", ws_url=venue.ws_url)
    # OKX wants a ping within 30 s; every 20 ms here, so the fake answers some.
    parser.heartbeat_interval_s = 0.02
    return parser


class TrackedFeed(WebSocketFeed):
    """The real shell, noting what the engine has applied (OKX 2022 frames carry no sequence).

    Attributes:
        last_book_ts_ns: Exchange time of the last book event the consumer has processed (the
            recorded ``ts`` values are all distinct, so it identifies the frame).
        invalid: (reason, parser book events so far) for every ``BookInvalid`` yielded.
    """

    last_book_ts_ns = 0

    def __init__(self, parser: OkxParser, seed: int) -> None:
        super().__init__(parser, POLICY, seed=seed)
        self.okx = parser
        self.invalid: list[tuple[str, int]] = []

    async def events(self) -> AsyncIterator[MarketEvent]:
        async for event in super().events():
            if isinstance(event, BookInvalid):
                self.invalid.append((event.reason, self.okx.stats.book_events))
            yield event
            # Resumed: the consumer has stepped the engine with ``event``.
            if isinstance(event, BookSnapshot | BookDelta):
                self.last_book_ts_ns = event.ts_exchange_ns


async def run_until_caught_up(feed: TrackedFeed, engine: Engine, venue: FakeOkx) -> Tape:
    """Run the feed until the venue has sent everything and the engine applied the last frame."""
    tape = Tape()
    consumer = asyncio.create_task(consume(feed, engine, tape), name="test-consumer")
    try:
        while not (venue.done.is_set() and engine.book.valid
                   and feed.last_book_ts_ns == venue.last.ts_ms * NS_PER_MS):
            assert not venue.errors, venue.errors
            if consumer.done():
                consumer.result()  # raises what escaped the feed
                pytest.fail("the feed ended on its own")
            await asyncio.sleep(0.002)
    finally:
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
    assert not venue.errors, venue.errors
    return tape


def assert_every_book_message_was_checked(parser: OkxParser) -> None:
    """Every snapshot and update carried a non-zero checksum and the parser compared it."""
    assert parser.checksums_skipped == 0
    assert parser.checksums_verified == parser.stats.book_events + parser.stats.checksum_errors


def recorded_checksum(capture: OkxCapture, update: int) -> int:
    """Return the recorded checksum of the ``update``-th update (from 1)."""
    book = [frame.book for frame in capture.frames if frame.book is not None][update - 1]
    assert book.update_id == update and book.checksum is not None
    return book.checksum


# --------------------------------------------------------------------------------------------
# The fake itself
# --------------------------------------------------------------------------------------------


def test_fake_checksum_reproduces_okx_and_its_snapshots_pass_the_parser(
    okx_capture: OkxCapture,
) -> None:
    # The fake's CRC32 (written from OKX's docs, not the parser's) gives every recorded checksum.
    book = StringBook(okx_capture.initial.bids, okx_capture.initial.asks)
    assert okx_book_checksum(book) == okx_capture.initial.checksum
    updates = [frame.book for frame in okx_capture.frames if frame.book is not None]
    for update in updates:
        book.apply(update.bids, update.asks)
        assert okx_book_checksum(book) == update.checksum
    assert (len(updates), len(okx_capture.frames) - len(updates)) == (
        RECORDED_UPDATES, RECORDED_TRADES)

    # A snapshot of the moved-on venue is the recorded book at that point: 400 levels a side,
    # the recorded checksum, and the real parser accepts it.
    venue = FakeOkx(okx_capture)
    while venue.last.update_id < 50:
        venue._take()
    frame = json.loads(venue.snapshot_frame())
    data = frame["data"][0]
    assert (frame["arg"], frame["action"]) == ({"channel": "books", "instId": INST_ID},
                                               "snapshot")
    assert (len(data["bids"]), len(data["asks"])) == (400, 400)
    assert data["checksum"] == recorded_checksum(okx_capture, 50)
    assert all(len(level) == 4 for level in data["bids"] + data["asks"])
    parser = OkxParser(INST_ID)
    [event] = parser.on_message(venue.snapshot_frame(), 0)
    assert isinstance(event, BookSnapshot)
    assert (parser.checksums_verified, parser.stats.checksum_errors) == (1, 0)
    assert list(event.bids[:TOP_LEVELS]) == venue.book.levels(True, TOP_LEVELS)
    assert list(event.asks[:TOP_LEVELS]) == venue.book.levels(False, TOP_LEVELS)


# --------------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------------


async def test_okx_healthy_session_checks_every_checksum_and_matches_the_venue(
    okx_capture: OkxCapture,
) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S), FakeOkx(okx_capture) as venue:
        parser = okx_parser(venue)
        feed = TrackedFeed(parser, seed=11)
        engine = make_engine(INST_ID)

        tape = await run_until_caught_up(feed, engine, venue)

    assert_book_matches_venue(engine, venue)
    assert_quotes_pulled_while_invalid(tape, engine)
    assert_every_book_message_was_checked(parser)
    # One snapshot and every recorded update and trade, each checksum verified.
    assert (venue.subscriptions, venue.snapshots_sent) == (1, 1)
    assert venue.book_frames_sent == RECORDED_UPDATES
    assert parser.checksums_verified == 1 + RECORDED_UPDATES
    assert parser.stats.trades == RECORDED_TRADES
    assert (parser.stats.checksum_errors, parser.stats.gaps, parser.stats.malformed) == (0, 0, 0)
    assert (feed.connects, feed.disconnects, feed.silences) == (1, 0, 0)
    assert (tape.invalidations, engine.stats.book_invalidations) == (0, 0)
    assert venue.pings > 0


async def test_okx_wrong_checksum_resubscribes_on_a_new_connection_and_rebuilds(
    okx_capture: OkxCapture,
) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S), \
            FakeOkx(okx_capture, [Fault(corrupt_checksum_at=30)]) as venue:
        parser = okx_parser(venue)
        feed = TrackedFeed(parser, seed=12)
        engine = make_engine(INST_ID)

        tape = await run_until_caught_up(feed, engine, venue)

    assert_book_matches_venue(engine, venue)
    assert_quotes_pulled_while_invalid(tape, engine)
    assert_every_book_message_was_checked(parser)
    assert venue.checksums_corrupted == 1
    # Only the checksum was wrong: the book the client computed is the recorded one.
    [bad] = venue.corrupted_checksums
    reason = f"checksum mismatch: venue {bad}, book {recorded_checksum(okx_capture, 30)}"
    assert feed.invalid[0] == (reason, 1 + 29)
    assert (parser.stats.checksum_errors, parser.stats.resyncs) == (1, 1)
    assert (parser.stats.gaps, parser.stats.malformed) == (0, 0)
    # RESUBSCRIBE is a reconnect; the fresh subscription gets a fresh snapshot.
    assert (feed.connects, feed.disconnects, feed.silences) == (2, 1, 0)
    assert (venue.handshakes, venue.subscriptions, venue.snapshots_sent) == (2, 2, 2)
    assert venue.frames_missed > 0  # the market moved on while we were away
    # The mismatch's BookInvalid, then the shell's "reconnecting".
    assert [reason for reason, _ in feed.invalid][1:] == ["feed reconnecting"]
    assert (tape.invalidations, tape.pulled, engine.stats.book_invalidations) == (2, 1, 1)


async def test_okx_lost_update_without_seq_ids_is_caught_by_the_next_updates_checksum(
    okx_capture: OkxCapture,
) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S), \
            FakeOkx(okx_capture, [Fault(skip_frame_at=40)]) as venue:
        parser = okx_parser(venue)
        feed = TrackedFeed(parser, seed=13)
        engine = make_engine(INST_ID)

        tape = await run_until_caught_up(feed, engine, venue)

    assert_book_matches_venue(engine, venue)
    assert_quotes_pulled_while_invalid(tape, engine)
    assert_every_book_message_was_checked(parser)
    assert venue.book_frames_skipped == 1
    # No seqId/prevSeqId in the 2022 frames, so no gap is seen: update 41 arrives on a book
    # that lacks update 40, and its checksum is what catches it, right away (snapshot + 39
    # updates applied, not one more).
    reason, applied = feed.invalid[0]
    assert reason.startswith(f"checksum mismatch: venue {recorded_checksum(okx_capture, 41)}, ")
    assert applied == 1 + 39
    assert (parser.stats.gaps, parser.stats.checksum_errors, parser.stats.resyncs) == (0, 1, 1)
    assert parser.stats.malformed == 0
    assert (feed.connects, feed.disconnects, feed.silences) == (2, 1, 0)
    assert (venue.subscriptions, venue.snapshots_sent) == (2, 2)
    assert (tape.invalidations, tape.pulled, engine.stats.book_invalidations) == (2, 1, 1)


async def test_okx_drop_mid_stream_then_503_handshake_reconnects_and_resyncs(
    okx_capture: OkxCapture,
) -> None:
    faults = [Fault(drop_after=60), Fault(reject_status=503)]
    async with asyncio.timeout(TEST_TIMEOUT_S), FakeOkx(okx_capture, faults) as venue:
        parser = okx_parser(venue)
        feed = TrackedFeed(parser, seed=14)
        engine = make_engine(INST_ID)

        tape = await run_until_caught_up(feed, engine, venue)

    assert_book_matches_venue(engine, venue)
    assert_quotes_pulled_while_invalid(tape, engine)
    assert_every_book_message_was_checked(parser)
    assert (venue.handshakes, venue.connections, venue.drops) == (3, 2, 1)
    assert venue.frames_missed > 0
    assert (feed.connects, feed.disconnects, feed.silences) == (2, 2, 0)
    # One subscription and one snapshot per connection, none for the refused handshake.
    assert (venue.subscriptions, venue.snapshots_sent) == (2, 2)
    assert (parser.stats.checksum_errors, parser.stats.gaps, parser.stats.malformed) == (0, 0, 0)
    assert (tape.invalidations, tape.pulled, engine.stats.book_invalidations) == (2, 1, 1)


async def test_okx_garbage_frames_are_counted_and_a_corrupt_book_update_forces_a_resync(
    okx_capture: OkxCapture,
) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S), \
            FakeOkx(okx_capture, [Fault(garbage_at=30)]) as venue:
        parser = okx_parser(venue)
        feed = TrackedFeed(parser, seed=15)
        engine = make_engine(INST_ID)

        tape = await run_until_caught_up(feed, engine, venue)

    assert_book_matches_venue(engine, venue)
    assert_quotes_pulled_while_invalid(tape, engine)
    assert_every_book_message_was_checked(parser)
    # The junk that is not a book update is counted and skipped. The first corrupt copy of
    # update 30 (NaN price) cannot be read, so the parser treats it as a lost update: the book
    # is invalidated at once and the feed resubscribes (a new connection, a fresh snapshot).
    assert parser.stats.malformed >= 1
    assert (parser.stats.checksum_errors, parser.stats.gaps) == (0, 0)
    assert parser.stats.resyncs == 1
    assert (venue.subscriptions, venue.snapshots_sent) == (2, 2)
    assert (feed.connects, feed.disconnects) == (2, 1)
    assert engine.stats.book_invalidations >= 1


async def test_okx_silent_and_half_open_connections_are_dropped_by_the_watchdog(
    okx_capture: OkxCapture,
) -> None:
    faults = [Fault(silent_after=40), Fault(silent_after=40, half_open=True)]
    async with asyncio.timeout(TEST_TIMEOUT_S), FakeOkx(okx_capture, faults) as venue:
        parser = okx_parser(venue)
        feed = TrackedFeed(parser, seed=16)
        engine = make_engine(INST_ID)

        tape = await run_until_caught_up(feed, engine, venue)

    assert_book_matches_venue(engine, venue)
    assert_quotes_pulled_while_invalid(tape, engine)
    assert_every_book_message_was_checked(parser)
    # The client's pings got no pong while silent, so the watchdog saw true silence.
    assert (feed.silences, feed.disconnects, feed.connects) == (2, 2, 3)
    assert (venue.subscriptions, venue.snapshots_sent) == (3, 3)
    assert (parser.stats.checksum_errors, parser.stats.gaps, parser.stats.malformed) == (0, 0, 0)
    assert (tape.invalidations, tape.pulled) == (2, 2)
    for went_silent, reconnected in zip(venue.silent_at, venue.connected_at[1:], strict=True):
        assert POLICY.silence_s <= reconnected - went_silent < POLICY.silence_s + 0.5


async def test_okx_bad_checksum_right_after_a_snapshot_then_a_lost_update_both_recover(
    okx_capture: OkxCapture,
) -> None:
    faults = [Fault(corrupt_checksum_at=1), Fault(skip_frame_at=5)]
    async with asyncio.timeout(TEST_TIMEOUT_S), FakeOkx(okx_capture, faults) as venue:
        parser = okx_parser(venue)
        feed = TrackedFeed(parser, seed=17)
        engine = make_engine(INST_ID)

        tape = await run_until_caught_up(feed, engine, venue)

    assert_book_matches_venue(engine, venue)
    assert_quotes_pulled_while_invalid(tape, engine)
    assert_every_book_message_was_checked(parser)
    assert (venue.checksums_corrupted, venue.book_frames_skipped) == (1, 1)
    assert (parser.stats.checksum_errors, parser.stats.resyncs, parser.stats.gaps) == (2, 2, 0)
    assert parser.stats.malformed == 0
    # Each mismatch is caught on the frame it happens on: connection 1 after its snapshot,
    # connection 2 after its snapshot and 4 updates (update 5 lost, the next one mismatches).
    reasons = [reason.split(":")[0] for reason, _ in feed.invalid]
    assert reasons == ["checksum mismatch", "feed reconnecting"] * 2
    assert [applied for _, applied in feed.invalid] == [1, 1, 1 + 1 + 4, 1 + 1 + 4]
    assert (feed.connects, feed.disconnects) == (3, 2)
    assert (venue.subscriptions, venue.snapshots_sent) == (3, 3)
    assert (tape.invalidations, engine.stats.book_invalidations) == (4, 2)
