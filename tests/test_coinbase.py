"""Tests for adapters.coinbase: the recorded Advanced Trade session, sequence gaps, bad frames."""

from __future__ import annotations

import calendar
import functools
import gzip
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.coinbase import COINBASE_WS_URL, CoinbaseParser, parse_rfc3339_ns
from adapters.feed import FeedParser, Resync
from bot.book import OrderBook
from bot.events import BookDelta, BookInvalid, BookSnapshot, MarketEvent, Side, Trade

RECORDING = "cryptofeed/COINBASE.jsonl.gz"
CONN = "COINBASE.ws.2"
STAMP = "2026-08-09T21:05:48.506659391Z"

Frame = tuple[int, str]


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


@functools.cache
def _recv_frames(path: Path, conn: str) -> tuple[Frame, ...]:
    """Return the ``recv`` frames of one connection of a cryptofeed session, in file order."""
    frames: list[Frame] = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            entry = json.loads(line)
            if entry.get("t") == "recv" and entry.get("conn") == conn and "data" in entry:
                frames.append((round(entry["ts"] * 1e9), entry["data"]))
    return tuple(frames)


@pytest.fixture
def frames(shared_data: Path) -> list[Frame]:
    """The recorded frames of the one Coinbase connection (BTC-USD and ETH-USD share it)."""
    return list(_recv_frames(shared_data / RECORDING, CONN))


def replay(parser: CoinbaseParser, frames: Iterable[Frame]) -> list[list[MarketEvent]]:
    """Feed every frame; return the events of each frame."""
    return [parser.on_message(raw, ts) for ts, raw in frames]


def flat(per_frame: list[list[MarketEvent]]) -> list[MarketEvent]:
    return [event for events in per_frame for event in events]


def build_book(symbol: str, events: Iterable[MarketEvent]) -> OrderBook:
    """Apply events to a fresh book as the engine would; a crossed book raises DataError."""
    book = OrderBook(symbol)
    for event in events:
        if isinstance(event, BookSnapshot | BookDelta):
            book.apply(event)
        elif isinstance(event, BookInvalid):
            book.invalidate(event.reason)
    return book


def levels(book: OrderBook) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    return (
        book.depth(Side.BUY, book.levels(Side.BUY)),
        book.depth(Side.SELL, book.levels(Side.SELL)),
    )


def frame(channel: str, seq: int, events: list[Any], stamp: str = STAMP) -> str:
    return json.dumps(
        {"channel": channel, "timestamp": stamp, "sequence_num": seq, "events": events}
    )


def l2(seq: int, kind: str, updates: list[tuple[str, str, str]], product: str = "BTC-USD") -> str:
    rows = [
        {"side": side, "event_time": STAMP, "price_level": price, "new_quantity": qty}
        for side, price, qty in updates
    ]
    return frame("l2_data", seq, [{"type": kind, "product_id": product, "updates": rows}])


def trades_frame(seq: int, kind: str, trades: list[tuple[str, str, str, str]]) -> str:
    """``trades`` rows are (product, trade_id, price, maker side), newest first as sent."""
    rows = [
        {
            "product_id": product,
            "trade_id": trade_id,
            "price": price,
            "size": "0.5",
            "time": "2026-08-09T21:05:51.426861Z",
            "side": side,
        }
        for product, trade_id, price, side in trades
    ]
    return frame("market_trades", seq, [{"type": kind, "trades": rows}])


def heartbeat(seq: int) -> str:
    return frame("heartbeats", seq, [{"current_time": "x", "heartbeat_counter": seq}])


SNAPSHOT_0 = l2(0, "snapshot", [("bid", "100", "1"), ("offer", "101", "2"), ("bid", "99", "3")])


def synced_parser() -> CoinbaseParser:
    parser = CoinbaseParser("BTC-USD")
    parser.on_message(SNAPSHOT_0, 1)
    return parser


# --------------------------------------------------------------------------------------------
# The recorded session
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("symbol", "snapshot_bids", "snapshot_asks", "deltas", "trades"),
    [("BTC-USD", 18_764, 27_236, 399, 47), ("ETH-USD", 6_935, 16_399, 374, 32)],
)
def test_recorded_session_parses_without_gaps_and_the_book_never_crosses(
    frames: list[Frame],
    symbol: str,
    snapshot_bids: int,
    snapshot_asks: int,
    deltas: int,
    trades: int,
) -> None:
    parser = CoinbaseParser(symbol)

    events = flat(replay(parser, frames))

    snapshots = [e for e in events if isinstance(e, BookSnapshot)]
    assert len(snapshots) == 1
    assert (len(snapshots[0].bids), len(snapshots[0].asks)) == (snapshot_bids, snapshot_asks)
    assert sum(isinstance(e, BookDelta) for e in events) == deltas
    assert sum(isinstance(e, Trade) for e in events) == trades
    assert not any(isinstance(e, BookInvalid) for e in events)
    assert {e.symbol for e in events} == {symbol}
    stats = parser.stats
    assert (stats.gaps, stats.malformed, stats.resyncs, stats.stale_dropped) == (0, 0, 0, 0)
    assert stats.messages == len(frames)
    assert stats.book_events == 1 + deltas
    assert stats.trades == trades
    assert parser.resync is Resync.NONE
    book = build_book(symbol, events)  # raises DataError if the book ever crosses
    assert book.valid
    assert book.best_bid < book.best_ask


def test_recorded_totals_match_the_data_readme(frames: list[Frame]) -> None:
    # README: 773 level2 update events and 79 trades (+200 in the subscribe snapshot), both
    # products together; the snapshot's 18.7k / 27.2k BTC levels are bids / offers.
    parsers = [CoinbaseParser("BTC-USD"), CoinbaseParser("ETH-USD")]

    events = [e for parser in parsers for e in flat(replay(parser, frames))]

    assert sum(isinstance(e, BookDelta) for e in events) == 773
    assert sum(isinstance(e, Trade) for e in events) == 79
    assert len({e.trade_id for e in events if isinstance(e, Trade)}) == 79


def test_recorded_snapshot_is_sorted_best_first_and_keeps_nanosecond_time(
    frames: list[Frame],
) -> None:
    parser = CoinbaseParser("BTC-USD")

    snapshot = next(e for e in flat(replay(parser, frames)) if isinstance(e, BookSnapshot))

    bid_prices = [price for price, _ in snapshot.bids]
    ask_prices = [price for price, _ in snapshot.asks]
    assert bid_prices == sorted(bid_prices, reverse=True)
    assert ask_prices == sorted(ask_prices)
    assert snapshot.bids[0] == (65083.66, 0.20371215)
    assert snapshot.sequence == 13
    # The frame says "timestamp":"2026-08-09T21:05:48.483587501Z".
    second = calendar.timegm((2026, 8, 9, 21, 5, 48))
    assert snapshot.ts_exchange_ns == second * 1_000_000_000 + 483_587_501


def test_recorded_trades_come_in_time_order_with_their_match_time(frames: list[Frame]) -> None:
    parser = CoinbaseParser("ETH-USD")

    trades = [e for e in flat(replay(parser, frames)) if isinstance(e, Trade)]

    times = [t.ts_exchange_ns for t in trades]
    assert times == sorted(times)
    ids = [int(t.trade_id) for t in trades]
    assert ids == sorted(ids)
    assert all(t.ts_exchange_ns < t.ts_local_ns + 5_000_000_000 for t in trades)


@pytest.mark.parametrize("symbol", ["BTC-USD", "ETH-USD"])
def test_recorded_taker_buys_print_at_the_ask_so_side_is_the_makers(
    frames: list[Frame], symbol: str
) -> None:
    # market_trades reports the maker's side; the parser turns it into the aggressor's.
    parser = CoinbaseParser(symbol)
    book = OrderBook(symbol)
    checked = at_touch = wrong_side = 0

    for event in flat(replay(parser, frames)):
        if isinstance(event, BookSnapshot | BookDelta):
            book.apply(event)
        elif isinstance(event, Trade) and book.valid:
            checked += 1
            if event.aggressor is Side.BUY:
                at_touch += event.price >= book.best_ask
                wrong_side += event.price <= book.best_bid
            else:
                at_touch += event.price <= book.best_bid
                wrong_side += event.price >= book.best_ask

    # Book and trades are separate channels, and the book often arrives first: after a sweep
    # the swept levels are already gone, so the older prints sit inside the new spread.
    # Tolerate that; what must not happen is a taker buy printing at the bid or below.
    assert checked >= 30
    assert at_touch >= 0.75 * checked
    assert wrong_side <= 0.05 * checked


# --------------------------------------------------------------------------------------------
# Fault injection on the recording
# --------------------------------------------------------------------------------------------


def _l2_update_indexes(frames: list[Frame], product: str) -> list[int]:
    found = []
    for i, (_, raw) in enumerate(frames):
        msg = json.loads(raw)
        if msg["channel"] == "l2_data" and any(
            e["type"] == "update" and e["product_id"] == product for e in msg["events"]
        ):
            found.append(i)
    return found


def _snapshot_frame(book: OrderBook, seq: int, stamp: str) -> str:
    bids, asks = levels(book)
    rows = [("bid", p, q) for p, q in bids] + [("offer", p, q) for p, q in asks]
    updates = [
        {"side": side, "event_time": stamp, "price_level": repr(p), "new_quantity": repr(q)}
        for side, p, q in rows
    ]
    event = {"type": "snapshot", "product_id": book.symbol, "updates": updates}
    return frame("l2_data", seq, [event], stamp)


def _shift_sequence(raw: str, by: int) -> str:
    msg = json.loads(raw)
    msg["sequence_num"] += by
    return json.dumps(msg)


def test_lost_level2_frame_invalidates_until_a_new_snapshot_then_book_matches_venue(
    frames: list[Frame],
) -> None:
    symbol = "BTC-USD"
    updates = _l2_update_indexes(frames, symbol)
    lost, resnap = updates[100], updates[120]
    # What the venue's book looks like just before ``resnap``, and at the end.
    truth_then = build_book(symbol, flat(replay(CoinbaseParser(symbol), frames[:resnap])))
    truth_end = build_book(symbol, flat(replay(CoinbaseParser(symbol), frames)))
    last_seq = json.loads(frames[resnap - 1][1])["sequence_num"]
    last_stamp = json.loads(frames[resnap - 1][1])["timestamp"]
    injected = (frames[resnap - 1][0], _snapshot_frame(truth_then, last_seq + 1, last_stamp))
    shifted = [(ts, _shift_sequence(raw, 1)) for ts, raw in frames[resnap:]]
    damaged = [*frames[:lost], *frames[lost + 1 : resnap], injected, *shifted]
    parser = CoinbaseParser(symbol)

    per_frame = []
    resync_states = []
    for ts, raw in damaged:
        per_frame.append(parser.on_message(raw, ts))
        resync_states.append(parser.resync)

    invalid_at = next(
        i for i, evs in enumerate(per_frame) if any(isinstance(e, BookInvalid) for e in evs)
    )
    resnap_at = resnap - 1  # one frame was removed before the injected snapshot
    assert invalid_at == lost  # the frame after the lost one reveals the gap
    invalid = per_frame[invalid_at][0]
    assert isinstance(invalid, BookInvalid)
    assert "sequence gap" in invalid.reason
    assert parser.stats.gaps == 1
    assert parser.stats.resyncs == 1
    assert all(s is Resync.RESUBSCRIBE for s in resync_states[invalid_at:resnap_at])
    suppressed = flat(per_frame[invalid_at:resnap_at])
    assert not any(isinstance(e, BookDelta | BookSnapshot) for e in suppressed)
    assert parser.stats.stale_dropped == 120 - 100 - 1
    assert isinstance(per_frame[resnap_at][0], BookSnapshot)
    assert resync_states[resnap_at] is Resync.NONE
    assert all(s is Resync.NONE for s in resync_states[resnap_at:])
    assert any(isinstance(e, BookDelta) for e in flat(per_frame[resnap_at + 1 :]))
    book = build_book(symbol, flat(per_frame))
    assert book.valid
    assert levels(book) == levels(truth_end)


# --------------------------------------------------------------------------------------------
# Sequence rules
# --------------------------------------------------------------------------------------------


def test_other_products_and_channels_advance_the_connection_sequence() -> None:
    parser = synced_parser()

    out = [
        parser.on_message(l2(1, "update", [("bid", "1919", "1")], product="ETH-USD"), 2),
        parser.on_message(heartbeat(2), 3),
        parser.on_message(trades_frame(3, "update", [("ETH-USD", "7", "1919", "BUY")]), 4),
        parser.on_message(l2(4, "update", [("bid", "100", "5")]), 5),
    ]

    assert out[:3] == [[], [], []]
    assert out[3] == [BookDelta(parse_rfc3339_ns(STAMP), 5, "BTC-USD", ((100.0, 5.0),), (), 4)]
    assert parser.stats.gaps == 0
    assert parser.stats.ignored == 3


def test_gap_in_another_products_frames_still_invalidates_our_book() -> None:
    parser = synced_parser()
    parser.on_message(heartbeat(1), 2)

    # Frame 2 (any channel, any product) was lost.
    out = parser.on_message(l2(3, "update", [("offer", "101", "0")]), 3)

    assert len(out) == 1
    assert isinstance(out[0], BookInvalid)
    assert out[0].reason == "sequence gap: 1 -> 3"
    assert (out[0].ts_local_ns, out[0].symbol) == (3, "BTC-USD")
    assert parser.resync is Resync.RESUBSCRIBE
    assert (parser.stats.gaps, parser.stats.stale_dropped) == (1, 1)


def test_after_a_gap_deltas_are_dropped_and_trades_flow_until_the_next_snapshot() -> None:
    parser = synced_parser()
    parser.on_message(heartbeat(2), 2)

    dropped = parser.on_message(l2(3, "update", [("bid", "100", "2")]), 3)
    trades = parser.on_message(trades_frame(4, "update", [("BTC-USD", "9", "101", "SELL")]), 4)
    snapshot = parser.on_message(l2(5, "snapshot", [("bid", "98", "1"), ("offer", "99", "1")]), 5)
    delta = parser.on_message(l2(6, "update", [("offer", "99", "0.5")]), 6)

    assert dropped == []
    assert [type(e) for e in trades] == [Trade]
    assert snapshot == [
        BookSnapshot(parse_rfc3339_ns(STAMP), 5, "BTC-USD", ((98.0, 1.0),), ((99.0, 1.0),), 5)
    ]
    assert [type(e) for e in delta] == [BookDelta]
    assert parser.resync is Resync.NONE
    assert (parser.stats.gaps, parser.stats.resyncs, parser.stats.stale_dropped) == (1, 1, 1)


def test_reset_accepts_any_first_sequence_and_waits_for_a_snapshot_without_resubscribing() -> None:
    parser = synced_parser()
    parser.on_message(heartbeat(1), 2)

    parser.reset()
    before = parser.on_message(l2(0, "update", [("bid", "100", "2")]), 3)
    snapshot = parser.on_message(l2(1, "snapshot", [("bid", "100", "2")]), 4)

    assert parser.resync is Resync.NONE
    assert before == []
    assert [type(e) for e in snapshot] == [BookSnapshot]
    assert parser.stats.gaps == 0
    assert parser.stats.stale_dropped == 1


def test_first_frame_after_connect_may_carry_any_sequence_number() -> None:
    parser = CoinbaseParser("BTC-USD")

    out = parser.on_message(heartbeat(41), 1) + parser.on_message(heartbeat(42), 2)

    assert out == []
    assert parser.stats.gaps == 0


# --------------------------------------------------------------------------------------------
# Level2 and trades
# --------------------------------------------------------------------------------------------


def test_snapshot_sorts_levels_and_delta_keeps_both_sides_with_zero_removing() -> None:
    parser = CoinbaseParser("BTC-USD")

    snapshot = parser.on_message(SNAPSHOT_0, 1)
    delta = parser.on_message(
        l2(1, "update", [("offer", "101", "0"), ("bid", "100.5", "0.25"), ("offer", "102", "1")]),
        2,
    )

    assert snapshot == [
        BookSnapshot(
            parse_rfc3339_ns(STAMP), 1, "BTC-USD", ((100.0, 1.0), (99.0, 3.0)), ((101.0, 2.0),), 0
        )
    ]
    assert delta == [
        BookDelta(
            parse_rfc3339_ns(STAMP), 2, "BTC-USD", ((100.5, 0.25),), ((101.0, 0.0), (102.0, 1.0)), 1
        )
    ]


def test_trade_snapshot_is_history_and_is_not_emitted() -> None:
    parser = synced_parser()

    out = parser.on_message(trades_frame(1, "snapshot", [("BTC-USD", "5", "100", "BUY")]), 2)

    assert out == []
    assert parser.stats.trades == 0
    assert parser.stats.ignored == 1


def test_trade_update_is_emitted_oldest_first_with_the_aggressor_opposite_the_maker_side() -> None:
    parser = synced_parser()
    rows = [
        ("BTC-USD", "12", "101", "SELL"),  # newest: a maker sold, so a taker bought
        ("ETH-USD", "900", "1919", "SELL"),
        ("BTC-USD", "11", "100", "BUY"),  # oldest: a maker bought, so a taker sold
    ]

    out = parser.on_message(trades_frame(1, "update", rows), 7)

    match_ns = parse_rfc3339_ns("2026-08-09T21:05:51.426861Z")
    assert out == [
        Trade(match_ns, 7, "BTC-USD", 100.0, 0.5, Side.SELL, "11"),
        Trade(match_ns, 7, "BTC-USD", 101.0, 0.5, Side.BUY, "12"),
    ]
    assert parser.stats.trades == 2


def test_parse_rfc3339_keeps_nanoseconds_and_accepts_short_fractions() -> None:
    base = calendar.timegm((2026, 8, 9, 21, 5, 38)) * 1_000_000_000

    assert parse_rfc3339_ns("2026-08-09T21:05:38.483587501Z") == base + 483_587_501
    assert parse_rfc3339_ns("2026-08-09T21:05:38.50436Z") == base + 504_360_000
    assert parse_rfc3339_ns("2026-08-09T21:05:38Z") == base
    assert parse_rfc3339_ns("1970-01-01T00:00:00.000000001Z") == 1


@pytest.mark.parametrize(
    "stamp",
    [
        "",
        "2026-08-09 21:05:38Z",
        "2026-08-09T21:05:38",
        "2026-08-09T21:05:38+00:00",
        "2026-02-30T21:05:38Z",
        "2026-08-09T24:05:38Z",
        "2026-08-09T21:05:38.Z",
        "2026-08-09T21:05:38.1234567891Z",
        "2026-08-09T21:05:38,5Z",
        "2026-W32-1T21:05:38Z",
        "2026-08-09T2a:05:38Z",
        "2026-08-09T21:05:38.1 3Z",
        "2026-13-01T21:05:38Z",
        "2026-08-09T21:05:38.123Zx",
        "\uff12026-08-09T21:05:38Z",
    ],
)
def test_parse_rfc3339_rejects_other_forms(stamp: str) -> None:
    with pytest.raises(ValueError):
        parse_rfc3339_ns(stamp)


# --------------------------------------------------------------------------------------------
# Malformed input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "not json",
        b"\xff\xfe\x00",
        "[]",
        "42",
        "null",
        "{}",
        '{"channel":"l2_data","timestamp":"' + STAMP + '","events":[]}',
        '{"channel":"l2_data","timestamp":"' + STAMP + '","sequence_num":"1","events":[]}',
        '{"channel":"l2_data","timestamp":"' + STAMP + '","sequence_num":true,"events":[]}',
        '{"channel":"l2_data","timestamp":"yesterday","sequence_num":1,"events":[]}',
        '{"channel":"l2_data","sequence_num":1,"events":[]}',
        "[" * 100_000,
    ],
)
def test_garbage_frames_are_counted_as_malformed_and_never_raise(raw: str | bytes) -> None:
    parser = synced_parser()

    out = parser.on_message(raw, 2)

    assert out == []
    assert parser.stats.malformed == 1
    assert parser.resync is Resync.NONE


@pytest.mark.parametrize(
    "raw",
    [
        l2(1, "update", [("bid", "nan", "1")]),
        l2(1, "update", [("bid", "100", "inf")]),
        l2(1, "update", [("bid", "100", "-1")]),
        l2(1, "update", [("bid", "-100", "1")]),
        l2(1, "update", [("bid", "0", "1")]),
        l2(1, "update", [("middle", "100", "1")]),
        l2(1, "update", [("bid", "1e999", "1")]),
        l2(1, "update", [("bid", "abc", "1")]),
        l2(1, "retract", [("bid", "100", "1")]),
        frame("l2_data", 1, [{"type": "update", "product_id": "BTC-USD"}]),
        frame("l2_data", 1, [{"type": "update", "product_id": "BTC-USD", "updates": [{}]}]),
        frame("l2_data", 1, ["BTC-USD"]),
        frame("l2_data", 1, [{"product_id": "BTC-USD", "updates": []}]),
        '{"channel":"l2_data","timestamp":"' + STAMP + '","sequence_num":1,"events":7}',
    ],
)
def test_corrupt_level2_for_our_product_counts_malformed_and_invalidates_the_book(
    raw: str,
) -> None:
    parser = synced_parser()

    out = parser.on_message(raw, 2)

    assert len(out) == 1
    assert isinstance(out[0], BookInvalid)
    assert out[0].reason == "malformed level2 frame"
    assert parser.stats.malformed == 1
    assert parser.stats.gaps == 0
    assert parser.resync is Resync.RESUBSCRIBE
    # The sequence still advanced: the next frame is not a gap.
    assert parser.on_message(heartbeat(2), 3) == []
    assert parser.stats.gaps == 0


def test_level2_of_another_product_is_skipped_without_reading_its_levels() -> None:
    parser = synced_parser()

    out = parser.on_message(l2(1, "update", [("bid", "nan", "1")], product="ETH-USD"), 2)

    assert out == []
    assert (parser.stats.ignored, parser.stats.malformed) == (1, 0)
    assert parser.resync is Resync.NONE


def test_broken_level2_frame_of_another_product_leaves_our_book_alone() -> None:
    parser = synced_parser()
    event = {"type": "update", "product_id": "ETH-USD", "updates": 5}

    out = parser.on_message(frame("l2_data", 1, [event]), 2)

    assert out == []
    assert parser.stats.malformed == 0
    assert parser.resync is Resync.NONE


def test_corrupt_frame_is_rejected_whole_never_half_applied() -> None:
    parser = synced_parser()
    good = {
        "type": "update",
        "product_id": "BTC-USD",
        "updates": [{"side": "bid", "price_level": "100", "new_quantity": "9"}],
    }
    bad = {
        "type": "update",
        "product_id": "BTC-USD",
        "updates": [{"side": "bid", "price_level": "100", "new_quantity": "-9"}],
    }

    out = parser.on_message(frame("l2_data", 1, [good, bad]), 2)

    assert [type(e) for e in out] == [BookInvalid]


@pytest.mark.parametrize(
    "trade",
    [
        {"price": "nan"},
        {"size": "-1"},
        {"side": "UNKNOWN"},
        {"time": "soon"},
        {"time": 1786309548},
        {"price": None},
    ],
)
def test_corrupt_trade_is_malformed_and_does_not_touch_the_book(trade: dict[str, Any]) -> None:
    parser = synced_parser()
    row = {
        "product_id": "BTC-USD",
        "trade_id": "1",
        "price": "100",
        "size": "1",
        "time": STAMP,
        "side": "BUY",
    }
    row.update(trade)

    out = parser.on_message(frame("market_trades", 1, [{"type": "update", "trades": [row]}]), 2)

    assert out == []
    assert parser.stats.malformed == 1
    assert parser.resync is Resync.NONE


def test_error_reply_without_sequence_is_ignored() -> None:
    parser = synced_parser()

    out = parser.on_message('{"type":"error","message":"failure to subscribe"}', 2)

    assert out == []
    assert (parser.stats.ignored, parser.stats.malformed, parser.stats.gaps) == (1, 0, 0)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    body=st.dictionaries(
        st.sampled_from(["channel", "timestamp", "sequence_num", "events", "type"]),
        json_values | st.sampled_from(["l2_data", "market_trades", STAMP, 1]),
    ),
    noise=st.text(max_size=40) | st.binary(max_size=40),
)
def test_fuzzed_frames_never_raise(body: dict[str, Any], noise: str | bytes) -> None:
    parser = synced_parser()

    out = parser.on_message(json.dumps(body), 2) + parser.on_message(noise, 3)

    assert all(isinstance(e, BookSnapshot | BookDelta | Trade | BookInvalid) for e in out)
    stats = parser.stats
    assert stats.messages == 3


# --------------------------------------------------------------------------------------------
# What the shell asks
# --------------------------------------------------------------------------------------------


def test_connection_settings_and_subscribe_frames() -> None:
    parser = CoinbaseParser("btc/usd")

    typed: FeedParser = parser
    assert typed.venue == "coinbase"
    assert parser.symbol == "BTC-USD"
    assert parser.ws_url() == COINBASE_WS_URL == "wss://advanced-trade-ws.coinbase.com"
    assert CoinbaseParser("BTC-USD", ws_url="ws://127.0.0.1:9").ws_url() == "ws://127.0.0.1:9"
    assert parser.snapshot_url() is None
    assert parser.resync is Resync.NONE
    assert parser.heartbeat_frame() is None
    assert parser.heartbeat_interval_s is None
    assert [json.loads(f) for f in parser.subscribe_frames()] == [
        {"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "level2"},
        {"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "market_trades"},
        {"type": "subscribe", "channel": "heartbeats"},
    ]


def test_rest_snapshot_body_is_ignored() -> None:
    parser = CoinbaseParser("BTC-USD")

    assert parser.on_snapshot("{}", 1) == []
    assert parser.stats.ignored == 1
