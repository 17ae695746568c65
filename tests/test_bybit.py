"""Tests for adapters.bybit: recorded v5 linear and spot sessions, update-id gaps, bad frames."""

from __future__ import annotations

import functools
import gzip
import json
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.bybit import BybitParser, Category
from adapters.feed import FeedParser, Resync
from bot.book import OrderBook
from bot.errors import ConfigError
from bot.events import BookDelta, BookInvalid, BookSnapshot, MarketEvent, Side, Trade

RECORDING = "cryptofeed/BYBIT.jsonl.gz"
LINEAR = "BYBIT.ws.2"
SPOT = "BYBIT.ws.3"
HISTORICAL_OB500 = "nautilus_trader/bybit/xrpusdt-ob500.data.zip"
SESSIONS: list[tuple[Category, str, str]] = [
    ("linear", LINEAR, "BTCUSDT"),
    ("linear", LINEAR, "ETHUSDT"),
    ("linear", LINEAR, "SOLUSDT"),
    ("linear", LINEAR, "DOGEUSDT"),
    ("spot", SPOT, "BTCUSDT"),
    ("spot", SPOT, "ETHUSDT"),
]

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
def recording(shared_data: Path) -> Path:
    return shared_data / RECORDING


def replay(parser: BybitParser, frames: Iterable[Frame]) -> list[list[MarketEvent]]:
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


def book_frame(
    kind: str,
    u: Any,
    bids: Any = None,
    asks: Any = None,
    symbol: str = "BTCUSDT",
    depth: int = 50,
    **extra: Any,
) -> str:
    msg: dict[str, Any] = {
        "topic": f"orderbook.{depth}.{symbol}",
        "type": kind,
        "ts": 1_786_310_818_130,
        "data": {"s": symbol, "b": bids or [], "a": asks or [], "u": u, "seq": 7_000},
        "cts": 1_786_310_818_129,
    }
    msg.update(extra)
    return json.dumps(msg)


def trade_row(side: str = "Buy", price: str = "100.5", **extra: Any) -> dict[str, Any]:
    row = {
        "T": 1_786_310_819_680,
        "s": "BTCUSDT",
        "S": side,
        "v": "0.004",
        "p": price,
        "L": "PlusTick",
        "i": "a9188a0a-82bc-50de-be60-03eedbe3cdd7",
        "BT": False,
        "RPI": False,
        "seq": 753_843_954_913,
    }
    row.update(extra)
    return row


def trade_frame(*rows: dict[str, Any]) -> str:
    return json.dumps(
        {"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": 1, "data": list(rows)}
    )


SNAPSHOT_100 = book_frame("snapshot", 100, [["100.0", "1"], ["99.5", "2"]], [["100.5", "3"]])


def synced_parser() -> BybitParser:
    parser = BybitParser("BTCUSDT")
    parser.on_message(SNAPSHOT_100, 1)
    return parser


# --------------------------------------------------------------------------------------------
# The recorded sessions
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("category", "conn", "symbol"), SESSIONS)
def test_recorded_session_parses_without_gaps_and_the_book_never_crosses(
    recording: Path, category: Category, conn: str, symbol: str
) -> None:
    frames = _recv_frames(recording, conn)
    parser = BybitParser(symbol, category, depth=200)

    events = flat(replay(parser, frames))

    snapshots = [e for e in events if isinstance(e, BookSnapshot)]
    deltas = [e for e in events if isinstance(e, BookDelta)]
    assert len(snapshots) == 1
    assert len(snapshots[0].bids) == len(snapshots[0].asks) == 200
    assert len(deltas) > 100
    assert [d.sequence for d in deltas] == list(
        range(snapshots[0].sequence + 1, snapshots[0].sequence + 1 + len(deltas))
    )
    assert not any(isinstance(e, BookInvalid) for e in events)
    stats = parser.stats
    assert (stats.gaps, stats.malformed, stats.resyncs, stats.stale_dropped) == (0, 0, 0, 0)
    assert stats.messages == len(frames)
    assert parser.resync is Resync.NONE
    book = build_book(symbol, events)  # raises DataError if the book ever crosses
    assert book.valid


def test_recorded_totals_match_the_data_readme(recording: Path) -> None:
    # README: 2,142 deltas over the six books, u contiguous.
    deltas = 0
    trades = 0
    for category, conn, symbol in SESSIONS:
        parser = BybitParser(symbol, category, depth=200)
        events = flat(replay(parser, _recv_frames(recording, conn)))
        deltas += sum(isinstance(e, BookDelta) for e in events)
        trades += sum(isinstance(e, Trade) for e in events)
        assert parser.stats.trades == sum(isinstance(e, Trade) for e in events)

    assert deltas == 2_142
    assert trades == 347


def test_recorded_frames_carry_match_engine_time(recording: Path) -> None:
    parser = BybitParser("BTCUSDT", depth=200)

    events = flat(replay(parser, _recv_frames(recording, LINEAR)))

    snapshot = next(e for e in events if isinstance(e, BookSnapshot))
    # The frame says "ts":1786310818129 ... "u":15076952 ... "cts":1786310818027.
    assert snapshot.ts_exchange_ns == 1_786_310_818_027_000_000
    assert snapshot.sequence == 15_076_952
    assert snapshot.bids[0] == (65114.2, 6.054)
    first_trade = next(e for e in events if isinstance(e, Trade))
    assert first_trade == Trade(
        1_786_310_819_680_000_000,
        first_trade.ts_local_ns,
        "BTCUSDT",
        65114.2,
        0.004,
        Side.SELL,
        "a9188a0a-82bc-50de-be60-03eedbe3cdd7",
    )


@pytest.mark.parametrize(("category", "conn", "symbol"), SESSIONS)
def test_recorded_taker_buys_print_at_the_ask(
    recording: Path, category: Category, conn: str, symbol: str
) -> None:
    parser = BybitParser(symbol, category, depth=200)
    book = OrderBook(symbol)
    checked = at_touch = 0

    for event in flat(replay(parser, _recv_frames(recording, conn))):
        if isinstance(event, BookSnapshot | BookDelta):
            book.apply(event)
        elif isinstance(event, Trade) and book.valid:
            checked += 1
            if event.aggressor is Side.BUY:
                at_touch += event.price >= book.best_ask
            else:
                at_touch += event.price <= book.best_bid

    assert checked >= 5
    assert at_touch >= 0.9 * checked


def test_historical_ob500_download_parses_with_contiguous_update_ids(shared_data: Path) -> None:
    with zipfile.ZipFile(shared_data / HISTORICAL_OB500) as archive:
        lines = archive.read(archive.namelist()[0]).decode().splitlines()
    parser = BybitParser("XRPUSDT", "linear", depth=500)

    events = flat([parser.on_message(line, i) for i, line in enumerate(lines)])

    assert [type(e) for e in events] == [BookSnapshot] + [BookDelta] * 49
    assert parser.stats.gaps == 0
    assert build_book("XRPUSDT", events).valid


def test_recording_at_another_depth_replays_through_a_parser_subscribing_to_50(
    recording: Path,
) -> None:
    frames = _recv_frames(recording, LINEAR)

    default = flat(replay(BybitParser("BTCUSDT"), frames))
    exact = flat(replay(BybitParser("BTCUSDT", depth=200), frames))

    assert default == exact


# --------------------------------------------------------------------------------------------
# Fault injection on the recording
# --------------------------------------------------------------------------------------------


def _delta_indexes(frames: Iterable[Frame], topic: str) -> list[int]:
    return [
        i
        for i, (_, raw) in enumerate(frames)
        if f'"topic":"{topic}"' in raw and '"type":"delta"' in raw
    ]


def test_lost_delta_invalidates_until_a_new_snapshot_then_book_matches_venue(
    recording: Path,
) -> None:
    symbol = "BTCUSDT"
    frames = list(_recv_frames(recording, LINEAR))
    deltas = _delta_indexes(frames, f"orderbook.200.{symbol}")
    lost, resnap = deltas[100], deltas[120]
    truth_then = build_book(symbol, flat(replay(BybitParser(symbol, depth=200), frames[:resnap])))
    truth_end = build_book(symbol, flat(replay(BybitParser(symbol, depth=200), frames)))
    next_u = json.loads(frames[resnap][1])["data"]["u"]
    bids, asks = levels(truth_then)
    injected = book_frame(
        "snapshot",
        next_u - 1,
        [[repr(p), repr(q)] for p, q in bids],
        [[repr(p), repr(q)] for p, q in asks],
        depth=200,
    )
    damaged = [*frames[:lost], *frames[lost + 1 : resnap], (frames[resnap][0], injected)]
    damaged += frames[resnap:]
    parser = BybitParser(symbol, depth=200)

    per_frame = []
    resync_states = []
    for ts, raw in damaged:
        per_frame.append(parser.on_message(raw, ts))
        resync_states.append(parser.resync)

    invalid_at = next(
        i for i, evs in enumerate(per_frame) if any(isinstance(e, BookInvalid) for e in evs)
    )
    resnap_at = resnap - 1  # one frame was removed before the injected snapshot
    # The next delta of this book (not just the next frame) reveals the gap.
    assert invalid_at == deltas[101] - 1
    invalid = per_frame[invalid_at][0]
    assert isinstance(invalid, BookInvalid)
    assert invalid.reason.startswith("update id gap")
    assert parser.stats.gaps == 1
    assert parser.stats.resyncs == 1
    assert all(s is Resync.RESUBSCRIBE for s in resync_states[invalid_at:resnap_at])
    suppressed = flat(per_frame[invalid_at:resnap_at])
    assert not any(isinstance(e, BookDelta | BookSnapshot) for e in suppressed)
    assert parser.stats.stale_dropped == 120 - 101 - 1
    assert isinstance(per_frame[resnap_at][0], BookSnapshot)
    assert all(s is Resync.NONE for s in resync_states[resnap_at:])
    assert any(isinstance(e, BookDelta) for e in flat(per_frame[resnap_at + 1 :]))
    book = build_book(symbol, flat(per_frame))
    assert book.valid
    assert levels(book) == levels(truth_end)


# --------------------------------------------------------------------------------------------
# Update-id rules
# --------------------------------------------------------------------------------------------


def test_contiguous_deltas_are_emitted_with_cts_time_and_update_id() -> None:
    parser = synced_parser()

    out = parser.on_message(book_frame("delta", 101, [["100.0", "0"]], [["100.5", "4"]]), 2)

    assert out == [
        BookDelta(1_786_310_818_129_000_000, 2, "BTCUSDT", ((100.0, 0.0),), ((100.5, 4.0),), 101)
    ]


def test_snapshot_is_sorted_best_first() -> None:
    parser = BybitParser("BTCUSDT")

    out = parser.on_message(
        book_frame("snapshot", 5, [["99", "1"], ["100", "1"]], [["102", "1"], ["101", "1"]]), 1
    )

    assert out == [
        BookSnapshot(
            1_786_310_818_129_000_000,
            1,
            "BTCUSDT",
            ((100.0, 1.0), (99.0, 1.0)),
            ((101.0, 1.0), (102.0, 1.0)),
            5,
        )
    ]


def test_frame_without_cts_falls_back_to_ts() -> None:
    parser = synced_parser()
    msg = json.loads(book_frame("delta", 101))
    del msg["cts"]

    out = parser.on_message(json.dumps(msg), 2)

    assert out[0].ts_exchange_ns == 1_786_310_818_130_000_000


def test_gap_invalidates_then_deltas_are_dropped_until_a_snapshot() -> None:
    parser = synced_parser()

    gap = parser.on_message(book_frame("delta", 102), 2)
    dropped = parser.on_message(book_frame("delta", 103), 3)
    trades = parser.on_message(trade_frame(trade_row()), 4)
    snapshot = parser.on_message(book_frame("snapshot", 500, [["99", "1"]], [["101", "1"]]), 5)
    delta = parser.on_message(book_frame("delta", 501, [["99", "2"]]), 6)

    assert len(gap) == 1
    assert isinstance(gap[0], BookInvalid)
    assert gap[0].reason == "update id gap: 100 -> 102"
    assert dropped == []
    assert [type(e) for e in trades] == [Trade]
    assert [type(e) for e in snapshot] == [BookSnapshot]
    assert [type(e) for e in delta] == [BookDelta]
    assert parser.resync is Resync.NONE
    stats = parser.stats
    assert (stats.gaps, stats.resyncs, stats.stale_dropped) == (1, 1, 1)


@pytest.mark.parametrize("u", [100, 99, 1, 1_000])
def test_repeated_stale_or_jumping_update_id_is_a_gap(u: int) -> None:
    parser = synced_parser()

    out = parser.on_message(book_frame("delta", u), 2)

    assert [type(e) for e in out] == [BookInvalid]
    assert parser.resync is Resync.RESUBSCRIBE


def test_snapshot_with_u_1_after_a_service_restart_replaces_the_book() -> None:
    parser = synced_parser()
    parser.on_message(book_frame("delta", 101), 2)

    restart = parser.on_message(book_frame("snapshot", 1, [["90", "1"]], [["91", "1"]]), 3)
    delta = parser.on_message(book_frame("delta", 2, [["90", "3"]]), 4)

    assert [(type(e), getattr(e, "sequence", None)) for e in restart + delta] == [
        (BookSnapshot, 1),
        (BookDelta, 2),
    ]
    assert parser.stats.gaps == 0
    assert build_book("BTCUSDT", restart + delta).depth(Side.BUY, 5) == [(90.0, 3.0)]


def test_reset_waits_for_a_snapshot_without_asking_to_resubscribe() -> None:
    parser = synced_parser()
    parser.on_message(book_frame("delta", 300), 2)
    before = parser.resync

    parser.reset()
    early = parser.on_message(book_frame("delta", 7), 3)
    snapshot = parser.on_message(book_frame("snapshot", 8, [["99", "1"]]), 4)

    assert before is Resync.RESUBSCRIBE
    assert early == []
    assert [type(e) for e in snapshot] == [BookSnapshot]
    assert parser.resync is Resync.NONE
    assert parser.stats.stale_dropped == 1


def test_book_is_read_from_the_first_depth_seen_and_other_depths_are_ignored() -> None:
    parser = synced_parser()  # locked on orderbook.50.BTCUSDT

    other_depth = parser.on_message(book_frame("snapshot", 9, [["1", "1"]], depth=200), 2)
    parser.reset()
    relocked = parser.on_message(book_frame("snapshot", 9, [["1", "1"]], depth=200), 3)
    old_depth = parser.on_message(book_frame("delta", 101, depth=50), 4)

    assert other_depth == []
    assert [type(e) for e in relocked] == [BookSnapshot]
    assert old_depth == []
    assert parser.stats.ignored == 2
    assert parser.subscribe_frames() == [
        '{"op":"subscribe","args":["orderbook.50.BTCUSDT","publicTrade.BTCUSDT"]}'
    ]


def test_other_topics_acks_and_pongs_are_ignored() -> None:
    parser = synced_parser()
    frames = [
        book_frame("delta", 101, symbol="ETHUSDT"),
        book_frame("delta", 101, depth=200),
        '{"topic":"tickers.BTCUSDT","type":"delta","data":{"symbol":"BTCUSDT"},"ts":1}',
        '{"success":true,"ret_msg":"","conn_id":"d8bu1olkndm7crnfs1e0-j6akw","req_id":"",'
        '"op":"subscribe"}',
        '{"success":true,"ret_msg":"pong","conn_id":"x","req_id":"","op":"ping"}',
        '{"op":"pong","args":["1675418560633"],"conn_id":"x"}',
        '{"success":false,"ret_msg":"error:handler not found","op":"subscribe"}',
    ]

    out = [parser.on_message(raw, 2) for raw in frames]

    assert out == [[]] * len(frames)
    assert (parser.stats.ignored, parser.stats.malformed) == (len(frames), 0)
    assert parser.on_message(book_frame("delta", 101), 3) != []


# --------------------------------------------------------------------------------------------
# Trades
# --------------------------------------------------------------------------------------------


def test_trades_keep_order_and_s_is_the_taker_side() -> None:
    parser = BybitParser("BTCUSDT")

    out = parser.on_message(
        trade_frame(trade_row("Buy", "101", i="1"), trade_row("Sell", "100", i="2", T=5)), 9
    )

    assert out == [
        Trade(1_786_310_819_680_000_000, 9, "BTCUSDT", 101.0, 0.004, Side.BUY, "1"),
        Trade(5_000_000, 9, "BTCUSDT", 100.0, 0.004, Side.SELL, "2"),
    ]
    assert parser.stats.trades == 2


def test_block_trades_are_skipped() -> None:
    parser = BybitParser("BTCUSDT")

    mixed = parser.on_message(trade_frame(trade_row(BT=True), trade_row(i="2")), 1)
    only_block = parser.on_message(trade_frame(trade_row(BT=True)), 2)

    assert [t.trade_id for t in mixed if isinstance(t, Trade)] == ["2"]
    assert only_block == []
    assert (parser.stats.trades, parser.stats.ignored) == (1, 1)


# --------------------------------------------------------------------------------------------
# Malformed input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    ["", "garbage", b"\xff\xfe", "[]", "7", "null", "{}", '{"data":[]}', "[" * 100_000],
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
        book_frame("delta", 101, [["nan", "1"]]),
        book_frame("delta", 101, [["100", "inf"]]),
        book_frame("delta", 101, [["100", "-1"]]),
        book_frame("delta", 101, [["-100", "1"]]),
        book_frame("delta", 101, [["100"]]),
        book_frame("delta", 101, [["100", "1", "2"]]),
        book_frame("delta", 101, [["abc", "1"]]),
        book_frame("delta", 101, [[None, "1"]]),
        book_frame("delta", 101, {"100": "1"}),
        book_frame("delta", "101"),
        book_frame("delta", 101.0),
        book_frame("delta", True),
        book_frame("update", 101),
        book_frame("delta", 101, cts="soon"),
        book_frame("delta", 101, cts=-5),
        json.dumps({"topic": "orderbook.50.BTCUSDT", "type": "delta", "ts": 1, "data": []}),
        json.dumps({"topic": "orderbook.50.BTCUSDT", "type": "delta", "ts": 1}),
        json.dumps(
            {
                "topic": "orderbook.50.BTCUSDT",
                "type": "delta",
                "ts": 1,
                "data": {"s": "ETHUSDT", "b": [], "a": [], "u": 101},
            }
        ),
    ],
)
def test_corrupt_book_frame_is_malformed_and_invalidates_the_book(raw: str) -> None:
    parser = synced_parser()

    out = parser.on_message(raw, 2)

    assert [type(e) for e in out] == [BookInvalid]
    assert parser.stats.malformed == 1
    assert parser.stats.gaps == 0
    assert parser.resync is Resync.RESUBSCRIBE
    assert parser.on_message(book_frame("delta", 101), 3) == []


@pytest.mark.parametrize(
    "row",
    [
        trade_row(p="nan"),
        trade_row(v="-0.1"),
        trade_row(S="Both"),
        trade_row(T="1786310819680"),
        trade_row(s="ETHUSDT"),
        {"p": "1"},
        "trade",
    ],
)
def test_corrupt_trade_is_malformed_and_leaves_the_book_alone(row: Any) -> None:
    parser = synced_parser()

    out = parser.on_message(trade_frame(trade_row(i="ok"), row), 2)

    assert out == []
    assert parser.stats.malformed == 1
    assert parser.resync is Resync.NONE


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
        st.sampled_from(["topic", "type", "ts", "cts", "data", "op"]),
        json_values
        | st.sampled_from(["orderbook.50.BTCUSDT", "publicTrade.BTCUSDT", "delta", "snapshot"]),
    ),
    noise=st.text(max_size=40) | st.binary(max_size=40),
)
def test_fuzzed_frames_never_raise(body: dict[str, Any], noise: str | bytes) -> None:
    parser = synced_parser()

    out = parser.on_message(json.dumps(body), 2) + parser.on_message(noise, 3)

    assert all(isinstance(e, BookSnapshot | BookDelta | Trade | BookInvalid) for e in out)
    assert parser.stats.messages == 3


# --------------------------------------------------------------------------------------------
# What the shell asks
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("category", "venue", "url"),
    [
        ("linear", "bybit", "wss://stream.bybit.com/v5/public/linear"),
        ("spot", "bybit-spot", "wss://stream.bybit.com/v5/public/spot"),
        ("inverse", "bybit-inverse", "wss://stream.bybit.com/v5/public/inverse"),
    ],
)
def test_venue_and_url_follow_the_category(category: Category, venue: str, url: str) -> None:
    parser = BybitParser("BTCUSDT", category)

    assert (parser.venue, parser.ws_url(), parser.category) == (venue, url, category)


def test_connection_settings_subscribe_and_heartbeat_frames() -> None:
    parser = BybitParser("btc/usdt:usdt")

    typed: FeedParser = parser
    assert typed.symbol == "BTCUSDT"
    assert parser.subscribe_frames() == [
        '{"op":"subscribe","args":["orderbook.50.BTCUSDT","publicTrade.BTCUSDT"]}'
    ]
    assert parser.snapshot_url() is None
    assert parser.resync is Resync.NONE
    assert parser.heartbeat_frame() == '{"op":"ping"}'
    assert parser.heartbeat_interval_s == 20.0
    assert BybitParser("BTCUSDT", ws_url="ws://127.0.0.1:9").ws_url() == "ws://127.0.0.1:9"
    assert json.loads(BybitParser("ETHUSDT", "spot", 200).subscribe_frames()[0])["args"] == [
        "orderbook.200.ETHUSDT",
        "publicTrade.ETHUSDT",
    ]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"depth": 25}, "depth"),
        ({"category": "spot", "depth": 500}, "depth"),
        ({"category": "option"}, "category"),
        ({"symbol": " "}, "symbol"),
    ],
)
def test_bad_settings_raise_config_error_naming_the_field(
    kwargs: dict[str, Any], field: str
) -> None:
    args: dict[str, Any] = {"symbol": "BTCUSDT", **kwargs}

    with pytest.raises(ConfigError) as excinfo:
        BybitParser(**args)

    assert excinfo.value.field == field


def test_rest_snapshot_body_is_ignored() -> None:
    parser = BybitParser("BTCUSDT")

    assert parser.on_snapshot("{}", 1) == []
    assert parser.stats.ignored == 1
