"""Kraken parsers: v2 against the docs' worked checksum example and hand-made frames, v1 against
the real 2021 recording (``cryptofeed/KRAKEN.jsonl.gz``).

No real v2 recording exists in the shared data, so v2 frames are written the way v2 sends them:
prices and quantities as JSON *numbers* at full precision (``45281.0``, ``0.10000000``).
"""

from __future__ import annotations

import calendar
import gzip
import json
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.feed import FeedParser, Resync
from adapters.kraken import KrakenParser, KrakenV1Parser, normalize_symbol, v1_pair_name
from bot.book import OrderBook
from bot.events import BookDelta, BookInvalid, BookSnapshot, MarketEvent, Side, Trade

KRAKEN_RECORDING = "cryptofeed/KRAKEN.jsonl.gz"

# The worked example of Kraken's "Book checksum (WebSocket v2)" guide, re-typed by hand:
# BTC/USD, top 10 each side, checksum 3310070434.
DOC_BIDS = [
    ("45283.5", "0.10000000"),
    ("45283.4", "1.54582015"),
    ("45282.1", "0.10000000"),
    ("45281.0", "0.10000000"),
    ("45280.3", "1.54592586"),
    ("45279.0", "0.07990000"),
    ("45277.6", "0.03310103"),
    ("45277.5", "0.30000000"),
    ("45277.3", "1.54602737"),
    ("45276.6", "0.15445238"),
]
DOC_ASKS = [
    ("45285.2", "0.00100000"),
    ("45286.4", "1.54571953"),
    ("45286.6", "1.54571109"),
    ("45289.6", "1.54560911"),
    ("45290.2", "0.15890660"),
    ("45291.8", "1.54553491"),
    ("45294.7", "0.04454749"),
    ("45296.1", "0.35380000"),
    ("45297.5", "0.09945542"),
    ("45299.5", "0.18772827"),
]
DOC_CHECKSUM = 3310070434

Levels = list[tuple[str, str]]


def levels_json(levels: Levels) -> str:
    """Write levels as v2 does: numbers, not strings, with every digit of the wire text."""
    return "[" + ",".join(f'{{"price":{p},"qty":{q}}}' for p, q in levels) + "]"


def v2_book_frame(
    kind: str,
    bids: Levels,
    asks: Levels,
    checksum: int,
    *,
    symbol: str = "BTC/USD",
    timestamp: str | None = "2023-10-06T17:35:55.440295Z",
) -> str:
    stamp = f',"timestamp":"{timestamp}"' if timestamp else ""
    return (
        f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"{symbol}",'
        f'"bids":{levels_json(bids)},"asks":{levels_json(asks)},'
        f'"checksum":{checksum}{stamp}}}]}}'
    )


def reference_checksum(bids: Levels, asks: Levels) -> int:
    """The documented algorithm, written out independently of the parser (best first)."""

    def digits(text: str) -> str:
        return text.replace(".", "").lstrip("0")

    text = "".join(digits(p) + digits(q) for p, q in asks[:10])
    text += "".join(digits(p) + digits(q) for p, q in bids[:10])
    return zlib.crc32(text.encode())


class VenueBook:
    """What Kraken's side of a depth-limited book looks like: the oracle for hand-made frames."""

    def __init__(self, bids: Levels, asks: Levels, depth: int = 10) -> None:
        self.bids = dict(bids)
        self.asks = dict(asks)
        self.depth = depth

    def apply(self, bids: Levels, asks: Levels) -> None:
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for price, qty in levels:
                if float(qty) == 0.0:
                    side.pop(price, None)
                else:
                    side[price] = qty

    def best_first(self) -> tuple[Levels, Levels]:
        bids = sorted(self.bids.items(), key=lambda level: -float(level[0]))[: self.depth]
        asks = sorted(self.asks.items(), key=lambda level: float(level[0]))[: self.depth]
        self.bids, self.asks = dict(bids), dict(asks)
        return bids, asks

    def checksum(self) -> int:
        bids, asks = self.best_first()
        return reference_checksum(bids, asks)


def feed(parser: KrakenParser | KrakenV1Parser, frames: list[str]) -> list[MarketEvent]:
    events: list[MarketEvent] = []
    for i, raw in enumerate(frames):
        events.extend(parser.on_message(raw, 1_000 + i))
    return events


def resync_of(parser: FeedParser) -> Resync:
    """Read ``resync`` through a call, so mypy does not keep an earlier narrowing."""
    return parser.resync


def apply_all(book: OrderBook, events: list[MarketEvent]) -> None:
    for event in events:
        if isinstance(event, BookSnapshot | BookDelta):
            book.apply(event)  # raises DataError if the book ever crosses


def doc_snapshot(checksum: int = DOC_CHECKSUM) -> str:
    return v2_book_frame("snapshot", DOC_BIDS, DOC_ASKS, checksum)


# --------------------------------------------------------------------------------------------
# v2
# --------------------------------------------------------------------------------------------


def test_parser_satisfies_feed_protocol_and_subscribes_to_book_and_trades() -> None:
    parser: FeedParser = KrakenParser("BTC-USD")

    assert parser.venue == "kraken"
    assert parser.symbol == "BTC/USD"
    assert parser.ws_url() == "wss://ws.kraken.com/v2"
    assert parser.snapshot_url() is None
    assert resync_of(parser) is Resync.NONE
    assert [json.loads(frame) for frame in parser.subscribe_frames()] == [
        {
            "method": "subscribe",
            "params": {"channel": "book", "symbol": ["BTC/USD"], "depth": 10, "snapshot": True},
        },
        {
            "method": "subscribe",
            "params": {"channel": "trade", "symbol": ["BTC/USD"], "snapshot": False},
        },
    ]


def test_kraken_sends_heartbeats_so_the_parser_asks_for_no_ping() -> None:
    parser = KrakenParser("BTC/USD", depth=25, ws_url="ws://127.0.0.1:1")

    assert parser.heartbeat_frame() is None
    assert parser.heartbeat_interval_s is None
    assert parser.ws_url() == "ws://127.0.0.1:1"
    assert json.loads(parser.subscribe_frames()[0])["params"]["depth"] == 25


def test_symbols_map_to_v2_names_and_v1_wsnames() -> None:
    assert normalize_symbol("XBT/USD") == "BTC/USD"
    assert normalize_symbol("btc-usd") == "BTC/USD"
    assert normalize_symbol("XDG/EUR") == "DOGE/EUR"
    assert v1_pair_name("BTC/CHF") == "XBT/CHF"
    assert v1_pair_name("KSM-BTC") == "KSM/XBT"
    for bad in ("BTCUSD", "BTC/", "/USD", "A/B/C"):
        with pytest.raises(ValueError):
            normalize_symbol(bad)
    with pytest.raises(ValueError):
        KrakenParser("BTC/USD", depth=20)


def test_reference_helper_reproduces_the_documented_checksum() -> None:
    assert reference_checksum(DOC_BIDS, DOC_ASKS) == DOC_CHECKSUM


def test_documented_snapshot_passes_checksum_3310070434() -> None:
    parser = KrakenParser("BTC/USD")

    events = parser.on_message(doc_snapshot(), 7)

    assert len(events) == 1
    snapshot = events[0]
    assert isinstance(snapshot, BookSnapshot)
    assert parser.checksums_verified == 1
    assert parser.stats.checksum_errors == 0
    assert snapshot.bids == tuple((float(p), float(q)) for p, q in DOC_BIDS)
    assert snapshot.asks == tuple((float(p), float(q)) for p, q in DOC_ASKS)
    assert snapshot.ts_local_ns == 7
    expected_s = calendar.timegm((2023, 10, 6, 17, 35, 55, 0, 0, 0))
    assert snapshot.ts_exchange_ns == expected_s * 1_000_000_000 + 440_295_000


def test_float_decoding_would_lose_the_trailing_zeros_the_checksum_needs() -> None:
    # The reason for parse_float=str: float() keeps "45281.0" but turns "0.10000000" into
    # 0.1, whose checksum digits are "1", not "10000000".
    lossy = [(repr(float(p)), repr(float(q))) for p, q in DOC_BIDS]

    assert reference_checksum(lossy, DOC_ASKS) != DOC_CHECKSUM


def test_hand_made_update_sequence_keeps_checksums_and_applies_in_order() -> None:
    venue = VenueBook(DOC_BIDS, DOC_ASKS)
    updates: list[tuple[Levels, Levels]] = [
        ([("45283.4", "2.00000000")], []),  # size change
        ([], [("45285.2", "0"), ("45299.9", "0.50000000")]),  # best ask gone, level refilled
        ([("45283.5", "0.20000000"), ("45283.5", "0.30000000")], []),  # same price twice
        ([("45284.0", "0.01000000")], [("45284.1", "0.02000000")]),  # both sides improve
    ]
    frames = [doc_snapshot()]
    for bids, asks in updates:
        venue.apply(bids, asks)
        frames.append(v2_book_frame("update", bids, asks, venue.checksum()))
    parser = KrakenParser("BTC/USD")
    book = OrderBook("BTC/USD")

    events = feed(parser, frames)
    apply_all(book, events)

    assert [type(event) for event in events] == [BookSnapshot] + [BookDelta] * 4
    assert parser.checksums_verified == 5
    assert parser.stats.checksum_errors == 0
    assert book.valid
    assert book.qty_at(Side.BUY, 45283.5) == 0.3
    assert book.best_bid == 45284.0
    assert book.best_ask == 45284.1
    assert book.levels(Side.BUY) == book.levels(Side.SELL) == 10


def test_book_is_truncated_to_depth_and_the_delta_removes_the_dropped_levels() -> None:
    venue = VenueBook(DOC_BIDS, DOC_ASKS)
    better_bid = [("45284.0", "1.00000000")]  # an 11th bid: the worst (45276.6) drops out
    venue.apply(better_bid, [])
    insert = v2_book_frame("update", better_bid, [], venue.checksum())
    too_deep = [("45200.0", "1.00000000")]  # below the worst bid: out of scope at once
    venue.apply(too_deep, [])
    deep = v2_book_frame("update", too_deep, [], venue.checksum())
    parser = KrakenParser("BTC/USD")
    book = OrderBook("BTC/USD")

    events = feed(parser, [doc_snapshot(), insert, deep])
    apply_all(book, events)

    assert [type(event) for event in events] == [BookSnapshot, BookDelta, BookDelta]
    _, inserted, too_deep_delta = events
    assert isinstance(inserted, BookDelta) and isinstance(too_deep_delta, BookDelta)
    assert inserted.bids == ((45284.0, 1.0), (45276.6, 0.0))
    assert too_deep_delta.bids == ((45200.0, 1.0), (45200.0, 0.0))
    assert parser.stats.checksum_errors == 0
    assert book.levels(Side.BUY) == 10
    assert book.qty_at(Side.BUY, 45276.6) == 0.0
    assert book.qty_at(Side.BUY, 45200.0) == 0.0
    assert book.depth(Side.BUY, 10)[-1] == (45277.3, 1.54602737)


def test_wrong_checksum_invalidates_resubscribes_and_drops_updates_until_snapshot() -> None:
    parser = KrakenParser("BTC/USD")

    (invalid,) = parser.on_message(doc_snapshot(DOC_CHECKSUM + 1), 1)

    assert isinstance(invalid, BookInvalid)
    assert str(DOC_CHECKSUM) in invalid.reason
    assert parser.stats.checksum_errors == 1
    assert parser.stats.resyncs == 1
    assert resync_of(parser) is Resync.RESUBSCRIBE
    assert [json.loads(f)["method"] for f in parser.resubscribe_frames()] == [
        "unsubscribe",
        "subscribe",
    ]

    update = v2_book_frame("update", [("45283.4", "2.00000000")], [], 123)

    assert parser.on_message(update, 2) == []
    assert parser.stats.stale_dropped == 1

    (snapshot,) = parser.on_message(doc_snapshot(), 3)

    assert isinstance(snapshot, BookSnapshot)
    assert resync_of(parser) is Resync.NONE


def test_wrong_checksum_on_an_update_invalidates_the_book() -> None:
    parser = KrakenParser("BTC/USD")
    book = OrderBook("BTC/USD")
    venue = VenueBook(DOC_BIDS, DOC_ASKS)
    change = [("45283.4", "2.00000000")]
    venue.apply(change, [])
    lost_change = v2_book_frame("update", [], [], venue.checksum())  # the level update is lost

    events = feed(parser, [doc_snapshot(), lost_change])
    for event in events:
        if isinstance(event, BookInvalid):
            book.invalidate(event.reason)
        else:
            assert isinstance(event, BookSnapshot)
            book.apply(event)

    assert [type(event) for event in events] == [BookSnapshot, BookInvalid]
    assert parser.stats.checksum_errors == 1
    assert resync_of(parser) is Resync.RESUBSCRIBE
    assert not book.valid


def test_precision_from_the_instrument_rebuilds_digits_the_wire_left_out() -> None:
    trimmed_bids = [(str(float(p)).removesuffix(".0"), str(float(q))) for p, q in DOC_BIDS]
    trimmed_asks = [(str(float(p)), str(float(q))) for p, q in DOC_ASKS]
    frame = v2_book_frame("snapshot", trimmed_bids, trimmed_asks, DOC_CHECKSUM)
    with_precision = KrakenParser("BTC/USD", price_decimals=1, qty_decimals=8)
    wire_text_only = KrakenParser("BTC/USD")

    assert isinstance(with_precision.on_message(frame, 1)[0], BookSnapshot)
    assert isinstance(wire_text_only.on_message(frame, 1)[0], BookInvalid)


def test_trade_updates_become_trades_with_the_taker_side() -> None:
    parser = KrakenParser("BTC/USD")
    raw = (
        '{"channel":"trade","type":"update","data":['
        '{"symbol":"BTC/USD","side":"sell","price":45283.4,"qty":0.00050000,'
        '"ord_type":"market","trade_id":4665906,"timestamp":"2023-09-25T07:49:37.708706Z"},'
        '{"symbol":"BTC/USD","side":"buy","price":45285.2,"qty":0.1,'
        '"ord_type":"limit","trade_id":4665907,"timestamp":"2023-09-25T07:49:37.708706Z"}]}'
    )

    trades = parser.on_message(raw, 5)

    assert trades == [
        Trade(
            ts_exchange_ns=calendar.timegm((2023, 9, 25, 7, 49, 37, 0, 0, 0)) * 10**9 + 708_706_000,
            ts_local_ns=5,
            symbol="BTC/USD",
            price=45283.4,
            qty=0.0005,
            aggressor=Side.SELL,
            trade_id="4665906",
        ),
        Trade(
            ts_exchange_ns=calendar.timegm((2023, 9, 25, 7, 49, 37, 0, 0, 0)) * 10**9 + 708_706_000,
            ts_local_ns=5,
            symbol="BTC/USD",
            price=45285.2,
            qty=0.1,
            aggressor=Side.BUY,
            trade_id="4665907",
        ),
    ]
    assert parser.stats.trades == 2


def test_heartbeats_status_acks_trade_snapshots_and_other_pairs_are_ignored() -> None:
    parser = KrakenParser("BTC/USD")
    frames = [
        '{"channel":"heartbeat"}',
        '{"channel":"status","type":"update","data":[{"version":"2.0.0","system":"online",'
        '"api_version":"v2","connection_id":12393906104898154338}]}',
        '{"method":"subscribe","result":{"channel":"book","depth":10,"snapshot":true,'
        '"symbol":"BTC/USD"},"success":true,"time_in":"2023-10-06T17:35:55.219022Z",'
        '"time_out":"2023-10-06T17:35:55.219067Z"}',
        '{"method":"pong","req_id":1,"time_in":"2023-10-06T17:35:55.219022Z",'
        '"time_out":"2023-10-06T17:35:55.219067Z"}',
        '{"channel":"trade","type":"snapshot","data":[{"symbol":"BTC/USD","side":"buy",'
        '"price":1.0,"qty":1.0,"ord_type":"limit","trade_id":1,'
        '"timestamp":"2023-09-25T07:49:37.708706Z"}]}',
        '{"channel":"trade","type":"update","data":[{"symbol":"ETH/USD","side":"buy",'
        '"price":1.0,"qty":1.0,"ord_type":"limit","trade_id":1,'
        '"timestamp":"2023-09-25T07:49:37.708706Z"}]}',
        v2_book_frame("snapshot", DOC_BIDS, DOC_ASKS, DOC_CHECKSUM, symbol="ETH/USD"),
    ]

    events = feed(parser, frames)

    assert events == []
    assert parser.stats.ignored == len(frames)
    assert parser.stats.malformed == 0
    assert parser.checksums_verified == 0


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "{not json",
        b"\xff",
        "[]",
        '{"channel":"book","type":"snapshot"}',
        '{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD",'
        '"bids":[{"price":"x","qty":1.0}],"asks":[],"checksum":1}]}',
        '{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD",'
        '"bids":[{"price":100.0,"qty":-1.0}],"asks":[],"checksum":1}]}',
        '{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD",'
        '"bids":[{"price":100.0}],"asks":[],"checksum":1}]}',
        '{"channel":"book","type":"update","data":[{"symbol":"BTC/USD",'
        '"bids":[],"asks":[],"checksum":1,"timestamp":"yesterday"}]}',
        '{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"up",'
        '"price":1.0,"qty":1.0,"timestamp":"2023-09-25T07:49:37.708706Z"}]}',
    ],
)
def test_garbage_frames_are_counted_as_malformed_and_never_raise(raw: str | bytes) -> None:
    parser = KrakenParser("BTC/USD")

    events = parser.on_message(raw, 1)

    assert events == []
    assert parser.stats.malformed == 1


def test_reset_forgets_the_book_so_updates_wait_for_a_new_snapshot() -> None:
    parser = KrakenParser("BTC/USD")
    parser.on_message(doc_snapshot(), 1)

    parser.reset()
    events = parser.on_message(v2_book_frame("update", [], [], DOC_CHECKSUM), 2)

    assert events == []
    assert parser.stats.stale_dropped == 1


# --------------------------------------------------------------------------------------------
# v1: the recording
# --------------------------------------------------------------------------------------------


def cryptofeed_frames(path: Path) -> Iterator[str]:
    """Yield the received websocket frames, in file order (each socket's own order)."""
    with gzip.open(path, "rt") as lines:
        for line in lines:
            entry = json.loads(line)
            if entry["t"] == "recv" and "data" in entry:
                yield entry["data"]


@pytest.fixture
def kraken_frames(shared_data: Path) -> list[str]:
    return list(cryptofeed_frames(shared_data / KRAKEN_RECORDING))


def recorded_book_pairs(frames: list[str]) -> dict[str, int]:
    """Return the number of book messages per v1 pair name."""
    counts: Counter[str] = Counter()
    for raw in frames:
        msg = json.loads(raw)
        if isinstance(msg, list) and msg[-2].startswith("book-"):
            counts[msg[-1]] += 1
    return dict(counts)


def test_v1_recording_checksums_verify_on_all_4269_updates_and_books_never_cross(
    kraken_frames: list[str],
) -> None:
    pairs = recorded_book_pairs(kraken_frames)
    verified = 0
    trades = 0
    for pair, n_messages in pairs.items():
        parser = KrakenV1Parser(pair)
        book = OrderBook(parser.symbol)
        kinds: Counter[str] = Counter()
        for i, raw in enumerate(kraken_frames):
            for event in parser.on_message(raw, i):
                kinds[type(event).__name__] += 1
                if isinstance(event, BookSnapshot | BookDelta):
                    book.apply(event)  # raises DataError if the book ever crosses

        assert parser.pair == pair
        assert kinds["BookSnapshot"] == 1
        assert kinds["BookDelta"] == parser.checksums_verified == n_messages - 1
        assert parser.stats.checksum_errors == 0
        assert parser.stats.malformed == 0
        assert book.valid and book.best_bid < book.best_ask
        verified += parser.checksums_verified
        trades += parser.stats.trades
    assert len(pairs) == 10
    assert verified == 4269
    assert trades == 10


def test_v1_update_with_asks_and_bids_in_two_objects_is_one_delta(
    kraken_frames: list[str],
) -> None:
    two_part = next(raw for raw in kraken_frames if len(json.loads(raw)) == 5)
    parser = KrakenV1Parser(json.loads(two_part)[-1])
    events: list[MarketEvent] = []
    for raw in kraken_frames:  # replay up to and including the two-part message
        events = parser.on_message(raw, 1)
        if raw == two_part:
            break

    assert len(events) == 1 and isinstance(events[0], BookDelta)
    assert events[0].asks and events[0].bids
    assert parser.stats.checksum_errors == 0


def test_v1_corrupted_checksum_invalidates_and_requests_resubscribe(
    kraken_frames: list[str],
) -> None:
    parser = KrakenV1Parser("XMR/USD")
    book_frames = [raw for raw in kraken_frames if raw.endswith('"XMR/USD"]') and '"book-' in raw]
    feed(parser, book_frames[:5])
    corrupted = json.loads(book_frames[5])
    last = corrupted[-3]
    last["c"] = str((int(last["c"]) + 1) % 2**32)

    events = parser.on_message(json.dumps(corrupted), 9)

    assert len(events) == 1 and isinstance(events[0], BookInvalid)
    assert parser.stats.checksum_errors == 1
    assert resync_of(parser) is Resync.RESUBSCRIBE
    assert feed(parser, book_frames[6:9]) == []
    assert parser.stats.stale_dropped == 3
    assert isinstance(parser.on_message(book_frames[0], 10)[0], BookSnapshot)
    assert resync_of(parser) is Resync.NONE


def test_v1_trades_parse_with_the_taker_side(kraken_frames: list[str]) -> None:
    parser = KrakenV1Parser("XMR/USD")

    trades = [event for event in feed(parser, kraken_frames) if isinstance(event, Trade)]

    assert len(trades) == 4
    first = next(
        msg
        for msg in map(json.loads, kraken_frames)
        if isinstance(msg, list) and msg[-2] == "trade"
    )
    assert first[-1] == "XMR/USD"
    price, volume, stamp, side = first[1][0][:4]
    assert trades[0].price == float(price)
    assert trades[0].qty == float(volume)
    assert trades[0].aggressor is (Side.BUY if side == "b" else Side.SELL)
    whole, fraction = stamp.split(".")
    assert trades[0].ts_exchange_ns == int(whole) * 10**9 + int(fraction.ljust(9, "0"))
    assert trades[0].symbol == "XMR/USD"


def test_v1_subscribes_with_the_v1_pair_name() -> None:
    parser: FeedParser = KrakenV1Parser("BTC/CHF", depth=100)

    assert parser.venue == "kraken-v1"
    assert parser.symbol == "BTC/CHF"
    assert json.loads(parser.subscribe_frames()[0]) == {
        "event": "subscribe",
        "pair": ["XBT/CHF"],
        "subscription": {"name": "book", "depth": 100},
    }
    assert parser.on_message('{"event":"heartbeat"}', 1) == []
    assert parser.on_message("[1, 2]", 1) == []
    assert parser.stats.ignored == 1
    assert parser.stats.malformed == 1
