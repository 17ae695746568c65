"""OKX v5 parser: the 2022 ``books`` recording through the real parser, and hand-made frames.

The recording (``cryptofeed/OKX.jsonl.gz``) has real checksums and no sequence ids; the
sequence tests build frames in the documented shape (snapshot ``prevSeqId -1``, no-change push,
maintenance reset) by hand, with the ``checksum: 0`` that OKX sends since it deprecated it.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.feed import FeedParser, Resync
from adapters.okx import OkxParser, normalize_symbol
from bot.book import OrderBook
from bot.events import BookDelta, BookInvalid, BookSnapshot, MarketEvent, Side, Trade

OKX_RECORDING = "cryptofeed/OKX.jsonl.gz"
RECORDED_INSTRUMENTS = ("BTC-USDT", "UNI-USD-SWAP", "BTC-USD-220527")


def cryptofeed_frames(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(ts_local_ns, raw frame)`` of the received websocket frames, in file order."""
    with gzip.open(path, "rt") as lines:
        for line in lines:
            entry = json.loads(line)
            if entry["t"] == "recv" and "data" in entry:
                yield round(entry["ts"] * 1e9), entry["data"]


@pytest.fixture
def okx_frames(shared_data: Path) -> list[tuple[int, str]]:
    return list(cryptofeed_frames(shared_data / OKX_RECORDING))


def feed(parser: OkxParser, frames: list[tuple[int, str]]) -> list[MarketEvent]:
    events: list[MarketEvent] = []
    for ts, raw in frames:
        events.extend(parser.on_message(raw, ts))
    return events


def book_frames(frames: list[tuple[int, str]], inst_id: str) -> list[tuple[int, str]]:
    """Return the recorded ``books`` frames of one instrument."""
    out = []
    for ts, raw in frames:
        msg = json.loads(raw)
        arg = msg.get("arg", {})
        if "action" in msg and arg.get("channel") == "books" and arg.get("instId") == inst_id:
            out.append((ts, raw))
    return out


def reference_checksum(bids: list[list[str]], asks: list[list[str]]) -> int:
    """The documented OKX checksum, written out independently of the parser (best first)."""
    parts: list[str] = []
    for i in range(25):
        if i < len(bids):
            parts.append(f"{bids[i][0]}:{bids[i][1]}")
        if i < len(asks):
            parts.append(f"{asks[i][0]}:{asks[i][1]}")
    value = zlib.crc32(":".join(parts).encode())
    return value - 2**32 if value >= 2**31 else value


def resync_of(parser: FeedParser) -> Resync:
    """Read ``resync`` through a call, so mypy does not keep an earlier narrowing."""
    return parser.resync


def book_frame(
    action: str,
    bids: list[list[str]],
    asks: list[list[str]],
    *,
    seq: int | None = None,
    prev_seq: int | None = None,
    checksum: int = 0,
    inst_id: str = "BTC-USDT",
    ts_ms: int = 1597026383085,
) -> str:
    item: dict[str, Any] = {"asks": asks, "bids": bids, "ts": str(ts_ms), "checksum": checksum}
    if seq is not None:
        item["seqId"] = seq
    if prev_seq is not None:
        item["prevSeqId"] = prev_seq
    return json.dumps(
        {"arg": {"channel": "books", "instId": inst_id}, "action": action, "data": [item]}
    )


# The levels of the docs' push example, as [price, size, "0", orders].
DOC_ASKS = [
    ["8476.98", "415", "0", "13"],
    ["8477", "7", "0", "2"],
    ["8477.34", "85", "0", "1"],
    ["8477.56", "1", "0", "1"],
]
DOC_BIDS = [
    ["8476.97", "256", "0", "12"],
    ["8475.55", "101", "0", "1"],
    ["8475.54", "100", "0", "1"],
    ["8475.3", "1", "0", "1"],
]


def test_parser_satisfies_feed_protocol_and_subscribes_to_books_and_trades() -> None:
    parser: FeedParser = OkxParser("btc/usdt")

    assert parser.venue == "okx"
    assert parser.symbol == "BTC-USDT"
    assert parser.ws_url() == "wss://ws.okx.com:8443/ws/v5/public"
    assert parser.snapshot_url() is None
    assert resync_of(parser) is Resync.NONE
    assert [json.loads(frame) for frame in parser.subscribe_frames()] == [
        {
            "op": "subscribe",
            "args": [
                {"channel": "books", "instId": "BTC-USDT"},
                {"channel": "trades", "instId": "BTC-USDT"},
            ],
        }
    ]


def test_heartbeat_is_text_ping_within_okx_30_second_limit_and_pong_is_ignored() -> None:
    parser = OkxParser("BTC-USDT", ws_url="ws://127.0.0.1:1/ws")

    assert parser.ws_url() == "ws://127.0.0.1:1/ws"
    assert parser.heartbeat_frame() == "ping"
    assert parser.heartbeat_interval_s is not None and parser.heartbeat_interval_s < 30.0
    assert parser.on_message("pong", 1) == []
    assert parser.stats.ignored == 1
    assert parser.stats.malformed == 0


def test_symbol_normalization_keeps_swap_and_futures_ids() -> None:
    assert normalize_symbol("BTC/USDT") == "BTC-USDT"
    assert normalize_symbol("btc-usdt-swap") == "BTC-USDT-SWAP"
    assert normalize_symbol("BTC-USD-220527") == "BTC-USD-220527"
    with pytest.raises(ValueError):
        normalize_symbol("  ")
    with pytest.raises(ValueError):
        OkxParser("BTC-USDT", channel="books5")


def test_recording_checksums_verify_on_all_290_book_messages_and_books_never_cross(
    okx_frames: list[tuple[int, str]],
) -> None:
    verified = 0
    for inst_id in RECORDED_INSTRUMENTS:
        parser = OkxParser(inst_id)
        book = OrderBook(inst_id)
        kinds: Counter[str] = Counter()
        for ts, raw in okx_frames:
            for event in parser.on_message(raw, ts):
                kinds[type(event).__name__] += 1
                if isinstance(event, BookSnapshot | BookDelta):
                    book.apply(event)  # raises DataError if the book ever crosses
                    assert book.best_bid < book.best_ask
        n_books = len(book_frames(okx_frames, inst_id))

        assert parser.checksums_verified == n_books
        assert parser.checksums_skipped == 0
        assert parser.stats.checksum_errors == 0
        assert parser.stats.gaps == 0
        assert parser.stats.malformed == 0
        assert kinds["BookSnapshot"] == 1
        assert kinds["BookDelta"] == n_books - 1
        assert kinds["BookInvalid"] == 0
        assert book.valid
        verified += parser.checksums_verified
    assert verified == 290


def test_recording_snapshot_is_sorted_best_first_and_matches_wire_levels(
    okx_frames: list[tuple[int, str]],
) -> None:
    parser = OkxParser("BTC-USDT")
    ts, raw = book_frames(okx_frames, "BTC-USDT")[0]
    wire = json.loads(raw)["data"][0]

    (snapshot,) = parser.on_message(raw, ts)

    assert isinstance(snapshot, BookSnapshot)
    assert snapshot.bids == tuple((float(p), float(q)) for p, q, *_ in wire["bids"])
    assert snapshot.asks == tuple((float(p), float(q)) for p, q, *_ in wire["asks"])
    assert snapshot.ts_exchange_ns == int(wire["ts"]) * 1_000_000
    assert snapshot.ts_local_ns == ts
    assert wire["checksum"] == reference_checksum(wire["bids"], wire["asks"])


def test_recording_trades_parse_with_taker_side(okx_frames: list[tuple[int, str]]) -> None:
    parser = OkxParser("BTC-USDT")

    trades = [event for event in feed(parser, okx_frames) if isinstance(event, Trade)]

    assert len(trades) == parser.stats.trades == 69
    assert {trade.aggressor for trade in trades} == {Side.BUY, Side.SELL}
    assert all(trade.price > 0 and trade.qty > 0 and trade.trade_id for trade in trades)
    messages = [json.loads(raw) for _, raw in okx_frames]
    first = next(
        msg["data"][0]
        for msg in messages
        if "data" in msg and msg["arg"] == {"channel": "trades", "instId": "BTC-USDT"}
    )
    assert trades[0].price == float(first["px"])
    assert trades[0].qty == float(first["sz"])
    assert trades[0].aggressor is (Side.BUY if first["side"] == "buy" else Side.SELL)
    assert trades[0].trade_id == first["tradeId"]
    assert trades[0].ts_exchange_ns == int(first["ts"]) * 1_000_000


def test_corrupted_checksum_invalidates_resubscribes_and_drops_updates_until_snapshot(
    okx_frames: list[tuple[int, str]],
) -> None:
    frames = book_frames(okx_frames, "BTC-USDT")
    parser = OkxParser("BTC-USDT")
    feed(parser, frames[:10])
    ts, raw = frames[10]
    corrupted = json.loads(raw)
    level = corrupted["data"][0]["bids"][0]
    level[1] = str(float(level[1]) + 1.0)  # one size edited, the checksum left as recorded

    events = parser.on_message(json.dumps(corrupted), ts)

    assert len(events) == 1 and isinstance(events[0], BookInvalid)
    assert "checksum" in events[0].reason
    assert parser.stats.checksum_errors == 1
    assert parser.stats.resyncs == 1
    assert resync_of(parser) is Resync.RESUBSCRIBE
    assert [json.loads(f)["op"] for f in parser.resubscribe_frames()] == [
        "unsubscribe",
        "subscribe",
    ]

    later = feed(parser, frames[11:20])

    assert later == []
    assert parser.stats.stale_dropped == 9

    snap_ts, snap_raw = frames[0]
    (snapshot,) = parser.on_message(snap_raw, snap_ts)

    assert isinstance(snapshot, BookSnapshot)
    assert resync_of(parser) is Resync.NONE
    assert parser.stats.checksum_errors == 1


def test_gap_in_seq_ids_invalidates_book_and_requests_resubscribe() -> None:
    frames = [
        book_frame("snapshot", DOC_BIDS, DOC_ASKS, seq=10, prev_seq=-1),
        book_frame("update", [["8476.97", "200", "0", "11"]], [], seq=15, prev_seq=10),
        book_frame("update", [], [["8477", "0", "0", "0"]], seq=18, prev_seq=15),
        book_frame("update", [["8475.3", "5", "0", "2"]], [], seq=21, prev_seq=18),
    ]
    del frames[2]  # the update 15 -> 18 is lost
    parser = OkxParser("BTC-USDT")
    book = OrderBook("BTC-USDT")

    events = feed(parser, [(i, raw) for i, raw in enumerate(frames)])
    for event in events:
        if isinstance(event, BookSnapshot | BookDelta):
            book.apply(event)
        elif isinstance(event, BookInvalid):
            book.invalidate(event.reason)

    assert [type(event) for event in events] == [BookSnapshot, BookDelta, BookInvalid]
    assert isinstance(events[2], BookInvalid)
    assert "prevSeqId 18 != last seqId 15" in events[2].reason
    assert parser.stats.gaps == 1
    assert parser.stats.resyncs == 1
    assert parser.stats.checksum_errors == 0
    assert resync_of(parser) is Resync.RESUBSCRIBE
    assert not book.valid


def test_documented_no_change_push_and_sequence_reset_keep_the_book_in_sync() -> None:
    # The docs' example: snapshot -1 -> 10, update 10 -> 15, no change 15 -> 15,
    # maintenance reset 15 -> 3, update 3 -> 5.
    frames = [
        book_frame("snapshot", DOC_BIDS, DOC_ASKS, seq=10, prev_seq=-1),
        book_frame("update", [["8476.97", "200", "0", "11"]], [], seq=15, prev_seq=10),
        book_frame("update", [], [], seq=15, prev_seq=15),
        book_frame("update", [], [["8477.34", "0", "0", "0"]], seq=3, prev_seq=15),
        book_frame("update", [["8475.3", "5", "0", "2"]], [], seq=5, prev_seq=3),
    ]
    parser = OkxParser("BTC-USDT")
    book = OrderBook("BTC-USDT")

    events = feed(parser, [(i, raw) for i, raw in enumerate(frames)])
    book_events = [event for event in events if isinstance(event, BookSnapshot | BookDelta)]
    for event in book_events:
        book.apply(event)

    assert len(book_events) == len(events)
    assert [event.sequence for event in book_events] == [10, 15, 15, 3, 5]
    assert isinstance(events[2], BookDelta) and events[2].bids == events[2].asks == ()
    assert parser.stats.gaps == 0 and resync_of(parser) is Resync.NONE
    assert parser.checksums_skipped == 5  # checksum 0: deprecated by OKX, not verified
    assert book.valid
    assert book.qty_at(Side.BUY, 8476.97) == 200.0
    assert book.qty_at(Side.SELL, 8477.34) == 0.0
    assert book.qty_at(Side.BUY, 8475.3) == 5.0


def test_hand_made_frames_with_real_checksums_verify_after_every_update() -> None:
    bids = [row[:] for row in DOC_BIDS]
    asks = [row[:] for row in DOC_ASKS]
    parser = OkxParser("BTC-USDT")
    snapshot = book_frame(
        "snapshot", bids, asks, seq=1, prev_seq=-1, checksum=reference_checksum(bids, asks)
    )
    events = parser.on_message(snapshot, 1)
    # Update: a new best bid, one ask removed; the venue's book after it:
    bids.insert(0, ["8476.975", "3", "0", "1"])
    del asks[1]
    update = book_frame(
        "update",
        [["8476.975", "3", "0", "1"]],
        [["8477", "0", "0", "0"]],
        seq=2,
        prev_seq=1,
        checksum=reference_checksum(bids, asks),
    )
    events += parser.on_message(update, 2)

    assert [type(event) for event in events] == [BookSnapshot, BookDelta]
    assert parser.checksums_verified == 2
    assert parser.stats.checksum_errors == 0


def test_updates_before_the_first_snapshot_are_dropped() -> None:
    parser = OkxParser("BTC-USDT")

    events = parser.on_message(book_frame("update", DOC_BIDS, [], seq=5, prev_seq=4), 1)

    assert events == []
    assert parser.stats.stale_dropped == 1
    assert resync_of(parser) is Resync.NONE


def test_reset_forgets_the_book_so_updates_wait_for_a_new_snapshot() -> None:
    parser = OkxParser("BTC-USDT")
    parser.on_message(book_frame("snapshot", DOC_BIDS, DOC_ASKS, seq=10, prev_seq=-1), 1)

    parser.reset()
    events = parser.on_message(book_frame("update", [], [], seq=10, prev_seq=10), 2)

    assert events == []
    assert parser.stats.stale_dropped == 1


def test_other_instruments_channels_and_acks_are_ignored(
    okx_frames: list[tuple[int, str]],
) -> None:
    parser = OkxParser("BTC-USDT")
    ack = '{"event":"subscribe","arg":{"channel":"books","instId":"BTC-USDT"}}'
    error = '{"event":"error","code":"60012","msg":"Invalid request"}'
    other = book_frame("snapshot", DOC_BIDS, DOC_ASKS, inst_id="ETH-USDT")
    ticker = next(raw for _, raw in okx_frames if '"tickers","instId":"BTC-USDT"},"data"' in raw)

    events = feed(parser, [(1, ack), (2, error), (3, other), (4, ticker)])

    assert events == []
    assert parser.stats.ignored == 4
    assert parser.stats.malformed == 0


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "not json",
        b"\xff\xfe",
        "[1, 2, 3]",
        '{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot","data":"x"}',
        '{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot","data":[{}]}',
        '{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot",'
        '"data":[{"bids":[["abc","1"]],"asks":[],"ts":"1"}]}',
        '{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot",'
        '"data":[{"bids":[["100","-1"]],"asks":[],"ts":"1"}]}',
        '{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot",'
        '"data":[{"bids":[["NaN","1"]],"asks":[],"ts":"1"}]}',
        '{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"explode",'
        '"data":[{"bids":[],"asks":[],"ts":"1"}]}',
        '{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot",'
        '"data":[{"bids":[],"asks":[],"ts":"1","checksum":"12"}]}',
        '{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"px":"1"}]}',
        '{"arg":{"channel":"trades","instId":"BTC-USDT"},'
        '"data":[{"px":"1","sz":"1","side":"up","ts":"1"}]}',
    ],
)
def test_garbage_frames_are_counted_as_malformed_and_never_raise(raw: str | bytes) -> None:
    parser = OkxParser("BTC-USDT")

    events = parser.on_message(raw, 1)

    assert events == []
    assert parser.stats.malformed == 1
    assert parser.stats.messages == 1


def test_malformed_update_of_our_book_invalidates_it_and_asks_to_resubscribe() -> None:
    parser = OkxParser("BTC-USDT")
    bids = [row[:] for row in DOC_BIDS]
    asks = [row[:] for row in DOC_ASKS]
    parser.on_message(
        book_frame("snapshot", bids, asks, checksum=reference_checksum(bids, asks)), 1
    )
    bad = book_frame("update", [["8476.97", "9", "0", "1"], ["x", "1", "0", "1"]], [])
    good = book_frame("update", [], [], checksum=reference_checksum(bids, asks))

    # An update we cannot read is an update lost: quotes must come off at once.
    events = parser.on_message(bad, 2)
    assert [type(event) for event in events] == [BookInvalid]
    assert parser.resync is Resync.RESUBSCRIBE
    assert parser.on_message(good, 3) == []  # nothing is applied until a new snapshot

    assert parser.stats.malformed == 1
    assert parser.stats.checksum_errors == 0
    assert parser.stats.resyncs == 1
