"""Tests for adapters.binance: real recorded Binance frames through the real parser.

The acceptance oracle replays the hftbacktest captures (spot, USD-M, COIN-M) into ``OrderBook``
and checks the rebuilt best bid/ask against every ``bookTicker`` with the same update id ``u``.
Faults (a lost diff, garbage, a duplicate) are injected into in-memory copies of the captures.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from adapters.binance import BinanceParser, Market, is_rest_snapshot, parse_book_ticker
from adapters.feed import FeedParser, Resync
from bot.book import OrderBook
from bot.errors import DataError
from bot.events import BookDelta, BookInvalid, BookSnapshot, MarketEvent, Side, Trade

Line = tuple[int, str]

SPOT_BTC = ("hftbacktest/spot/btcusdt_20240808.gz", "hftbacktest/spot/btcusdt_20240809.gz")
USDM_BTC = ("hftbacktest/usdm/btcusdt_20240808.gz",)
CM_BTC = ("hftbacktest/cm/btcusd_perp_20240808.gz", "hftbacktest/cm/btcusd_perp_20240809.gz")

# The first lines of spot/btcusdt_20240808.gz, in file order (real frames).
SPOT_DEPTH_1 = (50093239189, 50093239202)  # line 1: buffered, then covered by the snapshot
SPOT_DEPTH_2 = (50093239203, 50093239207)  # line 2: likewise
SPOT_DEPTH_3 = (50093239208, 50093239224)  # line 6: brackets the snapshot (U <= 219 <= u)
SPOT_SNAPSHOT_ID = 50093239218  # line 8


# --------------------------------------------------------------------------------------------
# Reading the recordings
# --------------------------------------------------------------------------------------------


@cache
def _read_lines(path: Path) -> tuple[Line, ...]:
    """Return ``(local_ns, raw)`` for every line of an hftbacktest capture (cached)."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        out = []
        for line in fh:
            ts, _, raw = line.rstrip("\n").partition(" ")
            out.append((int(ts), raw))
    return tuple(out)


def hft_lines(shared_data: Path, files: Sequence[str]) -> list[Line]:
    """Return the lines of ``files`` concatenated in order (one connection across files)."""
    return [line for name in files for line in _read_lines(shared_data / name)]


def stream_of(raw: str) -> str:
    """Return the combined-stream name of a frame ("" for a REST snapshot line)."""
    if not raw.startswith('{"stream":"'):
        return ""
    return raw[11 : raw.index('"', 11)]


def is_depth(raw: str) -> bool:
    return "@depth" in stream_of(raw)


def depth_data(raw: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(raw)["data"]
    return data


def compact(obj: object) -> str:
    """Serialise like Binance does (no spaces), so the envelope fast path applies."""
    return json.dumps(obj, separators=(",", ":"))


@dataclass
class Replay:
    """What one replay through the parser into an ``OrderBook`` produced."""

    parser: BinanceParser
    book: OrderBook
    bbo_after: dict[int, tuple[float, float]] = field(default_factory=dict)
    tickers: list[tuple[int, float, float]] = field(default_factory=list)
    snapshots: int = 0
    deltas: int = 0
    trades: int = 0
    crossed: int = 0
    invalids: list[BookInvalid] = field(default_factory=list)

    def feed(self, lines: Iterable[Line]) -> None:
        """Route each line to the parser (snapshot or frame) and apply what comes out."""
        parser = self.parser
        for ts, raw in lines:
            if is_rest_snapshot(raw):
                events = parser.on_snapshot(raw, ts)
            else:
                events = parser.on_message(raw, ts)
                if "@bookTicker" in raw[:64]:
                    ticker = parse_book_ticker(raw)
                    assert ticker is not None
                    self.tickers.append(ticker)
            self.apply(events)

    def apply(self, events: list[MarketEvent]) -> None:
        book = self.book
        for event in events:
            if isinstance(event, BookSnapshot | BookDelta):
                try:
                    book.apply(event)
                except DataError:
                    self.crossed += 1
                    raise
                if isinstance(event, BookSnapshot):
                    self.snapshots += 1
                else:
                    self.deltas += 1
                self.bbo_after[event.sequence] = (book.best_bid, book.best_ask)
            elif isinstance(event, BookInvalid):
                book.invalidate(event.reason)
                self.invalids.append(event)
            elif isinstance(event, Trade):
                self.trades += 1

    def oracle(self) -> tuple[int, int]:
        """Return (matches, mismatches) of bookTicker BBO vs the rebuilt BBO at the same ``u``.

        bookTicker is real time while depth diffs are batched, so a ticker can arrive before or
        after the diff that ends with the same update id: compare by ``u``, not by arrival.
        """
        matches = mismatches = 0
        for update_id, bid, ask in self.tickers:
            rebuilt = self.bbo_after.get(update_id)
            if rebuilt is None:
                continue
            if rebuilt == (bid, ask):
                matches += 1
            else:
                mismatches += 1
        return matches, mismatches


def replay(lines: Iterable[Line], symbol: str, market: Market, speed: int, **kwargs: Any) -> Replay:
    parser = BinanceParser(symbol, market, speed, **kwargs)
    result = Replay(parser, OrderBook(parser.symbol))
    result.feed(lines)
    return result


def resync_of(parser: BinanceParser) -> Resync:
    """Read ``resync`` afresh (a plain attribute read would stay narrowed for mypy)."""
    return parser.resync


def book_levels(book: OrderBook) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    return book.depth(Side.BUY, 100_000), book.depth(Side.SELL, 100_000)


def snapshot_body(update_id: int, book: OrderBook) -> str:
    """A REST snapshot body holding ``book`` at ``update_id`` (repr round-trips floats)."""
    bids, asks = book_levels(book)
    return compact(
        {
            "lastUpdateId": update_id,
            "bids": [[repr(p), repr(q)] for p, q in bids],
            "asks": [[repr(p), repr(q)] for p, q in asks],
        }
    )


# --------------------------------------------------------------------------------------------
# Construction: symbols, URLs
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("given", ["BTCUSDT", "btcusdt", "BTC/USDT", "BTC-USDT", " btc/usdt "])
def test_symbol_spellings_normalise_to_binance_symbol(given: str) -> None:
    assert BinanceParser(given).symbol == "BTCUSDT"


def test_coinm_contract_symbol_keeps_its_underscore() -> None:
    parser = BinanceParser("btcusd_perp", "coinm")

    assert parser.symbol == "BTCUSD_PERP"
    assert parser.venue == "binance-coinm"


@pytest.mark.parametrize("bad", ["", "/", "BTC USDT", "BTC:USDT", "BTC/USDT?x=1", "BTCÜSDT"])
def test_bad_symbol_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not a Binance symbol"):
        BinanceParser(bad)


def test_spot_urls_subscribe_depth_trade_and_book_ticker() -> None:
    parser = BinanceParser("BTC/USDT")

    assert parser.venue == "binance"
    assert parser.ws_url() == (
        "wss://stream.binance.com:9443/stream?streams="
        "btcusdt@depth@100ms/btcusdt@trade/btcusdt@bookTicker"
    )
    assert parser.subscribe_frames() == []
    assert parser.snapshot_url() == (
        "https://api.binance.com/api/v3/depth?symbol=BTCUSDT&limit=1000"
    )


def test_usdm_urls_use_fstream_and_fapi_with_configured_speed() -> None:
    parser = BinanceParser("BTCUSDT", "usdm", 0)

    assert parser.venue == "binance-usdm"
    assert parser.ws_url() == (
        "wss://fstream.binance.com/stream?streams="
        "btcusdt@depth@0ms/btcusdt@trade/btcusdt@bookTicker"
    )
    assert parser.snapshot_url() == (
        "https://fapi.binance.com/fapi/v1/depth?symbol=BTCUSDT&limit=1000"
    )


def test_coinm_urls_use_dstream_and_dapi() -> None:
    parser = BinanceParser("BTCUSD_PERP", "coinm", 500, trade_stream="aggTrade")

    assert parser.ws_url() == (
        "wss://dstream.binance.com/stream?streams="
        "btcusd_perp@depth@500ms/btcusd_perp@aggTrade/btcusd_perp@bookTicker"
    )
    assert parser.snapshot_url() == (
        "https://dapi.binance.com/dapi/v1/depth?symbol=BTCUSD_PERP&limit=1000"
    )


@pytest.mark.parametrize(
    ("market", "speed", "stream"),
    [
        ("spot", 1000, "btcusdt@depth"),
        ("usdm", 250, "btcusdt@depth"),
        ("usdm", 100, "btcusdt@depth@100ms"),
    ],
)
def test_default_speed_of_a_market_is_the_plain_depth_stream(
    market: Market, speed: int, stream: str
) -> None:
    parser = BinanceParser("BTCUSDT", market, speed)

    assert f"streams={stream}/" in parser.ws_url()


def test_base_urls_can_point_at_loopback() -> None:
    parser = BinanceParser(
        "BTCUSDT", ws_base="ws://127.0.0.1:8765/", rest_base="http://127.0.0.1:8080"
    )

    assert parser.ws_url().startswith("ws://127.0.0.1:8765/stream?streams=btcusdt@depth@100ms/")
    assert parser.snapshot_url() == "http://127.0.0.1:8080/api/v3/depth?symbol=BTCUSDT&limit=1000"


@pytest.mark.parametrize(
    ("market", "speed"), [("spot", 0), ("spot", 250), ("usdm", 1000), ("coinm", 50)]
)
def test_unsupported_depth_speed_is_refused(market: Market, speed: int) -> None:
    with pytest.raises(ValueError, match="depth_speed_ms"):
        BinanceParser("BTCUSDT", market, speed)


def test_unknown_market_trade_stream_or_buffer_is_refused() -> None:
    with pytest.raises(ValueError, match="market"):
        BinanceParser("BTCUSDT", "options")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="trade_stream"):
        BinanceParser("BTCUSDT", trade_stream="trades")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="buffer_limit"):
        BinanceParser("BTCUSDT", buffer_limit=0)


def test_parser_satisfies_feed_parser_protocol_and_starts_waiting_for_a_snapshot() -> None:
    parser: FeedParser = BinanceParser("BTCUSDT")

    assert parser.resync is Resync.REST_SNAPSHOT
    assert parser.stats.messages == 0


# --------------------------------------------------------------------------------------------
# Real frames, one at a time
# --------------------------------------------------------------------------------------------


@pytest.fixture
def spot_head(shared_data: Path) -> list[Line]:
    """The first 8 lines of the spot BTCUSDT capture: 3 diffs, 3 tickers, a trade, the snapshot."""
    return list(_read_lines(shared_data / SPOT_BTC[0])[:8])


def test_spot_frames_before_snapshot_buffer_diffs_emit_trades_and_skip_tickers(
    spot_head: list[Line],
) -> None:
    parser = BinanceParser("BTCUSDT")

    out = [parser.on_message(raw, ts) for ts, raw in spot_head[:7]]

    assert [stream_of(raw) for _, raw in spot_head[:7]] == [
        "btcusdt@depth@100ms",
        "btcusdt@depth@100ms",
        "btcusdt@bookTicker",
        "btcusdt@trade",
        "btcusdt@bookTicker",
        "btcusdt@depth@100ms",
        "btcusdt@bookTicker",
    ]
    assert out[3] == [
        Trade(
            ts_exchange_ns=1723161255342 * 1_000_000,
            ts_local_ns=spot_head[3][0],
            symbol="BTCUSDT",
            price=61837.63,
            qty=0.02,
            aggressor=Side.SELL,  # "m": true, the buyer was the maker
            trade_id="3735683259",
        )
    ]
    assert [events for i, events in enumerate(out) if i != 3] == [[]] * 6
    assert parser.buffered == 3
    assert parser.resync is Resync.REST_SNAPSHOT
    stats = parser.stats
    assert (stats.messages, stats.trades, stats.ignored, stats.book_events) == (7, 1, 3, 0)
    assert stats.malformed == 0


def test_spot_snapshot_drops_covered_diffs_and_applies_the_bracketing_one(
    spot_head: list[Line],
) -> None:
    parser = BinanceParser("BTCUSDT")
    for ts, raw in spot_head[:7]:
        parser.on_message(raw, ts)
    ts, body = spot_head[7]
    assert is_rest_snapshot(body)

    events = parser.on_snapshot(body, ts)

    assert [type(e) for e in events] == [BookSnapshot, BookDelta]
    snapshot, delta = events
    assert isinstance(snapshot, BookSnapshot) and isinstance(delta, BookDelta)
    assert snapshot.sequence == SPOT_SNAPSHOT_ID
    assert snapshot.ts_exchange_ns == 0  # spot REST snapshots carry no time
    assert snapshot.ts_local_ns == ts
    assert snapshot.bids[0] == (61837.63, 3.78826) and snapshot.asks[0][0] > 61837.63
    assert len(snapshot.bids) == len(snapshot.asks) == 1000
    raw_delta = depth_data(spot_head[5][1])
    assert (raw_delta["U"], raw_delta["u"]) == SPOT_DEPTH_3
    assert delta.sequence == SPOT_DEPTH_3[1]
    assert delta.ts_exchange_ns == raw_delta["E"] * 1_000_000
    assert delta.ts_local_ns == spot_head[5][0]
    assert delta.bids == tuple((float(p), float(q)) for p, q in raw_delta["b"])
    assert delta.asks == tuple((float(p), float(q)) for p, q in raw_delta["a"])
    assert parser.resync is Resync.NONE
    assert parser.last_update_id == SPOT_DEPTH_3[1]
    assert parser.buffered == 0
    assert parser.stats.book_events == 2
    assert parser.stats.stale_dropped == 0  # covered diffs are part of the sync, not stale


def test_usdm_frames_parse_depth_with_pu_trade_and_snapshot_with_time(
    shared_data: Path,
) -> None:
    lines = _read_lines(shared_data / USDM_BTC[0])
    snap_index = next(i for i, (_, raw) in enumerate(lines) if is_rest_snapshot(raw))
    parser = BinanceParser("BTCUSDT", "usdm", 0)
    trades: list[MarketEvent] = []
    for ts, raw in lines[:snap_index]:
        trades.extend(parser.on_message(raw, ts))

    ts, body = lines[snap_index]
    events = parser.on_snapshot(body, ts)

    first_trade = trades[0]
    assert first_trade == Trade(
        1723161256322 * 1_000_000, lines[2][0], "BTCUSDT", 61800.3, 0.006, Side.BUY, "5266583935"
    )
    snapshot = events[0]
    assert isinstance(snapshot, BookSnapshot)
    assert snapshot.sequence == 5123107852948
    assert snapshot.ts_exchange_ns == 1723161256501 * 1_000_000
    depth = [depth_data(raw) for _, raw in lines[:snap_index] if is_depth(raw)]
    kept = [d for d in depth if d["u"] >= snapshot.sequence]  # futures keep u == lastUpdateId
    assert kept and kept[0]["U"] <= snapshot.sequence <= kept[0]["u"]
    assert [e.sequence for e in events[1:] if isinstance(e, BookDelta)] == [d["u"] for d in kept]
    assert parser.resync is Resync.NONE
    assert parser.stats.gaps == 0


def test_coinm_trade_frame_parses_contracts_as_quantity(shared_data: Path) -> None:
    lines = _read_lines(shared_data / CM_BTC[0])
    ts, raw = next(line for line in lines if stream_of(line[1]) == "btcusd_perp@trade")
    parser = BinanceParser("BTCUSD_PERP", "coinm", 0)

    (trade,) = parser.on_message(raw, ts)

    data = json.loads(raw)["data"]
    assert trade == Trade(
        data["T"] * 1_000_000,
        ts,
        "BTCUSD_PERP",
        float(data["p"]),
        float(data["q"]),
        Side.SELL if data["m"] else Side.BUY,
        str(data["t"]),
    )


def test_book_ticker_helper_reads_spot_and_futures_frames(
    spot_head: list[Line], shared_data: Path
) -> None:
    usdm_ticker = next(
        raw for _, raw in _read_lines(shared_data / USDM_BTC[0]) if "@bookTicker" in raw[:40]
    )

    assert parse_book_ticker(spot_head[2][1]) == (50093239212, 61837.63, 61837.64)
    assert parse_book_ticker(usdm_ticker) == (5123107839020, 61800.2, 61800.3)
    assert parse_book_ticker(json.dumps(json.loads(usdm_ticker)["data"])) == (
        5123107839020,
        61800.2,
        61800.3,
    )
    assert parse_book_ticker(spot_head[0][1]) is None  # a depth frame
    assert parse_book_ticker(spot_head[7][1]) is None  # the snapshot
    assert parse_book_ticker("garbage") is None
    assert (
        parse_book_ticker('{"stream":"btcusdt@bookTicker","data":{"u":1,"b":"NaN","a":"1"}}')
        is None
    )


def test_rest_snapshot_line_is_told_apart_from_stream_frames(spot_head: list[Line]) -> None:
    assert [is_rest_snapshot(raw) for _, raw in spot_head] == [False] * 7 + [True]
    assert is_rest_snapshot(spot_head[7][1].encode())
    assert not is_rest_snapshot(spot_head[0][1].encode())


def test_other_streams_and_symbols_are_ignored_without_json_parsing(
    spot_head: list[Line], shared_data: Path
) -> None:
    eth_depth = next(
        raw
        for _, raw in _read_lines(shared_data / "hftbacktest/spot/ethusdt_20240808.gz")
        if is_depth(raw)
    )
    parser = BinanceParser("BTCUSDT")
    frames = [
        spot_head[2][1],  # btcusdt@bookTicker
        eth_depth,  # another symbol
        '{"stream":"btcusdt@kline_1m","data":{"not":"parsed"}',  # truncated: never parsed
        '{"stream":"btcusdt@depth20@100ms","data":{}}',  # partial depth is not a diff
        '{"stream":"btcusdt@aggTrade","data":{}}',  # trades are subscribed as @trade
    ]

    out = [parser.on_message(raw, 1) for raw in frames]

    assert out == [[]] * len(frames)
    assert parser.stats.ignored == len(frames)
    assert parser.stats.malformed == 0


def test_raw_stream_payload_and_reordered_envelope_parse_like_the_envelope(
    spot_head: list[Line],
) -> None:
    ts, raw = spot_head[3]
    payload = json.loads(raw)["data"]
    parser = BinanceParser("BTCUSDT")

    from_envelope = parser.on_message(raw, ts)
    from_payload = parser.on_message(compact(payload), ts)
    reordered = parser.on_message(json.dumps({"data": payload, "stream": "btcusdt@trade"}), ts)
    as_bytes = parser.on_message(raw.encode(), ts)
    other_symbol = parser.on_message(compact({**payload, "s": "ETHUSDT"}), ts)
    ack = parser.on_message('{"result":null,"id":1}', ts)

    assert from_envelope == from_payload == reordered == as_bytes
    assert len(from_envelope) == 1
    assert other_symbol == ack == []
    assert parser.stats.ignored == 2
    assert parser.stats.malformed == 0


def test_raw_stream_depth_payload_is_buffered(spot_head: list[Line]) -> None:
    parser = BinanceParser("BTCUSDT")

    assert parser.on_message(compact(depth_data(spot_head[0][1])), 1) == []
    assert parser.buffered == 1


def test_agg_trade_frames_parse_when_subscribed(shared_data: Path) -> None:
    with gzip.open(shared_data / "cryptofeed/BINANCE_FUTURES.jsonl.gz", "rt") as fh:
        frames = [
            json.loads(entry)["data"] for entry in fh if '"recv"' in entry and "@aggTrade" in entry
        ]
    raw = next(f for f in frames if f.startswith('{"stream":"sushiusdt@aggTrade"'))
    data = json.loads(raw)["data"]
    agg = BinanceParser("SUSHIUSDT", "usdm", trade_stream="aggTrade")
    individual = BinanceParser("SUSHIUSDT", "usdm")

    (trade,) = agg.on_message(raw, 7)

    assert trade == Trade(
        data["T"] * 1_000_000,
        7,
        "SUSHIUSDT",
        float(data["p"]),
        float(data["q"]),
        Side.SELL if data["m"] else Side.BUY,
        str(data["a"]),
    )
    assert individual.on_message(raw, 7) == []  # would count twice next to @trade
    assert individual.stats.ignored == 1


@pytest.mark.parametrize(
    ("trade_type", "kept"),
    [("MARKET", True), ("LIQUIDATION", True), ("INSURANCE_FUND", False), ("ADL", False)],
)
def test_futures_trades_keep_only_order_book_prints(
    shared_data: Path, trade_type: str, kept: bool
) -> None:
    raw = next(raw for _, raw in _read_lines(shared_data / USDM_BTC[0]) if "@trade" in raw[:40])
    assert '"X":"MARKET"' in raw
    parser = BinanceParser("BTCUSDT", "usdm", 0)

    events = parser.on_message(raw.replace('"X":"MARKET"', f'"X":"{trade_type}"'), 1)

    assert (len(events) == 1) is kept
    assert parser.stats.trades == int(kept)
    assert parser.stats.ignored == int(not kept)


# --------------------------------------------------------------------------------------------
# Sync edge cases on real frames
# --------------------------------------------------------------------------------------------


def test_snapshot_newer_than_every_buffered_diff_waits_for_the_first_live_diff(
    spot_head: list[Line],
) -> None:
    parser = BinanceParser("BTCUSDT")
    depth_1, depth_2, depth_3 = (spot_head[i] for i in (0, 1, 5))
    parser.on_message(depth_1[1], depth_1[0])

    on_snapshot = parser.on_snapshot(spot_head[7][1], spot_head[7][0])
    covered = parser.on_message(depth_2[1], depth_2[0])
    first_live = parser.on_message(depth_3[1], depth_3[0])
    duplicate = parser.on_message(depth_3[1], depth_3[0])

    assert [type(e) for e in on_snapshot] == [BookSnapshot]
    assert parser.buffered == 0
    assert covered == []
    assert [e.sequence for e in first_live if isinstance(e, BookDelta)] == [SPOT_DEPTH_3[1]]
    assert duplicate == []
    assert parser.stats.stale_dropped == 1  # only the duplicate after sync is stale
    assert parser.stats.gaps == 0


def test_snapshot_older_than_buffered_diffs_is_a_gap_then_a_newer_one_syncs(
    spot_head: list[Line],
) -> None:
    parser = BinanceParser("BTCUSDT")
    for ts, raw in spot_head[:7]:
        parser.on_message(raw, ts)
    old = json.loads(spot_head[7][1])
    old["lastUpdateId"] = SPOT_DEPTH_1[0] - 5  # updates U-4 .. U-1 are in neither

    too_old = parser.on_snapshot(compact(old), 10)

    assert too_old == [
        BookInvalid(
            0,
            10,
            "BTCUSDT",
            f"sequence gap: expected U <= {SPOT_DEPTH_1[0] - 4} after snapshot "
            f"{SPOT_DEPTH_1[0] - 5}, got U={SPOT_DEPTH_1[0]} (u={SPOT_DEPTH_1[1]})",
        )
    ]
    assert parser.resync is Resync.REST_SNAPSHOT
    assert parser.buffered == 3  # kept for the next snapshot
    assert (parser.stats.gaps, parser.stats.resyncs) == (1, 1)

    synced = parser.on_snapshot(spot_head[7][1], spot_head[7][0])

    assert [type(e) for e in synced] == [BookSnapshot, BookDelta]
    assert resync_of(parser) is Resync.NONE


def test_first_live_diff_not_connecting_to_the_snapshot_is_a_gap(
    spot_head: list[Line], shared_data: Path
) -> None:
    later = [line for line in _read_lines(shared_data / SPOT_BTC[0])[:2000] if is_depth(line[1])]
    ts, raw = later[10]
    data = depth_data(raw)
    parser = BinanceParser("BTCUSDT")
    parser.on_snapshot(spot_head[7][1], spot_head[7][0])

    events = parser.on_message(raw, ts)

    assert events == [
        BookInvalid(
            data["E"] * 1_000_000,
            ts,
            "BTCUSDT",
            f"sequence gap: expected U <= {SPOT_SNAPSHOT_ID + 1} after snapshot "
            f"{SPOT_SNAPSHOT_ID}, got U={data['U']} (u={data['u']})",
        )
    ]
    assert parser.resync is Resync.REST_SNAPSHOT
    assert parser.buffered == 1  # the diff that showed the gap waits for the next snapshot


def test_reset_forgets_the_sync_and_buffers_again(spot_head: list[Line]) -> None:
    parser = BinanceParser("BTCUSDT")
    for ts, raw in spot_head[:7]:
        parser.on_message(raw, ts)
    parser.on_snapshot(spot_head[7][1], spot_head[7][0])

    parser.reset()

    assert parser.resync is Resync.REST_SNAPSHOT
    assert parser.last_update_id == 0
    assert parser.on_message(spot_head[5][1], spot_head[5][0]) == []
    assert parser.buffered == 1


def test_full_buffer_drops_the_oldest_diff_and_counts_it(spot_head: list[Line]) -> None:
    parser = BinanceParser("BTCUSDT", buffer_limit=2)
    for ts, raw in spot_head[:7]:
        parser.on_message(raw, ts)

    assert parser.buffered == 2
    assert parser.buffer_overflows == 1
    events = parser.on_snapshot(spot_head[7][1], spot_head[7][0])
    assert [type(e) for e in events] == [BookSnapshot, BookDelta]  # the dropped one was covered


def test_snapshot_older_than_the_synced_book_is_ignored(spot_head: list[Line]) -> None:
    parser = BinanceParser("BTCUSDT")
    for ts, raw in spot_head[:7]:
        parser.on_message(raw, ts)
    parser.on_snapshot(spot_head[7][1], spot_head[7][0])

    assert parser.on_snapshot(spot_head[7][1], spot_head[7][0]) == []
    assert parser.stats.ignored == 3 + 1  # three tickers, then the stale snapshot
    assert parser.resync is Resync.NONE


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[]",
        '{"bids":[],"asks":[]}',
        '{"lastUpdateId":"five","bids":[],"asks":[]}',
        '{"lastUpdateId":5,"bids":[["NaN","1"]],"asks":[]}',
        '{"lastUpdateId":5,"bids":[["100","-1"]],"asks":[]}',
        '{"lastUpdateId":5,"bids":[],"asks":[["Infinity","1"]]}',
        '{"lastUpdateId":5,"bids":[["1","2","3"]],"asks":[]}',
        '{"lastUpdateId":5,"bids":{},"asks":[]}',
    ],
)
def test_malformed_snapshot_body_is_counted_and_changes_nothing(body: str) -> None:
    parser = BinanceParser("BTCUSDT")

    assert parser.on_snapshot(body, 1) == []
    assert parser.stats.malformed == 1
    assert parser.resync is Resync.REST_SNAPSHOT


# --------------------------------------------------------------------------------------------
# The oracle: full replays of the hftbacktest captures
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "symbol", "market", "speed", "applied", "bbo_matches", "trades"),
    [
        pytest.param(SPOT_BTC, "BTCUSDT", "spot", 100, 6_493, 1_072, 19_904, id="spot-btcusdt"),
        pytest.param(USDM_BTC, "BTCUSDT", "usdm", 0, 6_547, 629, 21_313, id="usdm-btcusdt"),
        pytest.param(CM_BTC, "BTCUSD_PERP", "coinm", 0, 44_772, 1_885, 5_235, id="cm-btcusd"),
        pytest.param(
            ("hftbacktest/spot/ethusdt_20240808.gz", "hftbacktest/spot/ethusdt_20240809.gz"),
            "ETHUSDT",
            "spot",
            100,
            6_468,
            None,
            14_515,
            id="spot-ethusdt",
        ),
        pytest.param(
            ("hftbacktest/usdm/ethusdt_20240808.gz",),
            "ETHUSDT",
            "usdm",
            0,
            6_581,
            None,
            14_076,
            id="usdm-ethusdt",
        ),
    ],
)
def test_replay_rebuilds_book_matching_every_book_ticker_at_the_same_update_id(
    shared_data: Path,
    files: tuple[str, ...],
    symbol: str,
    market: Market,
    speed: int,
    applied: int,
    bbo_matches: int | None,
    trades: int,
) -> None:
    result = replay(hft_lines(shared_data, files), symbol, market, speed)

    matches, mismatches = result.oracle()
    stats = result.parser.stats
    if bbo_matches is None:  # the data README lists no oracle count for ETH
        assert matches > 0
    else:
        assert matches == bbo_matches
    assert mismatches == 0
    assert result.deltas == applied
    assert result.snapshots == 1
    assert result.trades == stats.trades == trades
    assert (stats.gaps, stats.resyncs, stats.malformed, stats.stale_dropped) == (0, 0, 0, 0)
    assert result.crossed == 0 and not result.invalids
    assert result.book.valid
    assert result.parser.resync is Resync.NONE


# --------------------------------------------------------------------------------------------
# Fault injection on in-memory copies
# --------------------------------------------------------------------------------------------

SLICE = 12_000  # lines of the 0808 captures used for fault injection (~1,000 spot diffs)


def _slice(shared_data: Path, name: str) -> list[Line]:
    return list(_read_lines(shared_data / name)[:SLICE])


def _post_snapshot_depth(lines: list[Line]) -> list[int]:
    snap = next(i for i, (_, raw) in enumerate(lines) if is_rest_snapshot(raw))
    return [i for i, (_, raw) in enumerate(lines) if i > snap and is_depth(raw)]


def test_lost_spot_diff_invalidates_once_and_a_later_snapshot_recovers(
    shared_data: Path,
) -> None:
    lines = _slice(shared_data, SPOT_BTC[0])
    depth_at = _post_snapshot_depth(lines)
    lost, after_lost = depth_at[100], depth_at[101]
    sync_at, insert_after = depth_at[300], depth_at[305]
    # The REST snapshot the shell would fetch: the clean book at the diff ending at sync_id.
    clean_prefix = replay(lines[: sync_at + 1], "BTCUSDT", "spot", 100)
    sync_id = depth_data(lines[sync_at][1])["u"]
    assert clean_prefix.book.sequence == sync_id
    recovery = (lines[insert_after][0] + 1, snapshot_body(sync_id, clean_prefix.book))
    faulty = (
        lines[:lost] + lines[lost + 1 : insert_after + 1] + [recovery] + lines[insert_after + 1 :]
    )
    result = replay([], "BTCUSDT", "spot", 100)
    parser = result.parser

    result.feed(faulty[:insert_after])  # up to just before the recovery snapshot

    lost_data, next_data = depth_data(lines[lost][1]), depth_data(lines[after_lost][1])
    assert [e.reason for e in result.invalids] == [
        f"sequence gap: expected U={lost_data['U']}, got U={next_data['U']} (u={next_data['u']})"
    ]
    assert (parser.stats.gaps, parser.stats.resyncs) == (1, 1)
    assert parser.resync is Resync.REST_SNAPSHOT
    assert result.book.invalid_reason.startswith("sequence gap: expected U=")
    assert parser.buffered == 305 - 101 + 1  # from the diff after the lost one on
    deltas_before = result.deltas

    result.feed(faulty[insert_after : insert_after + 1])  # the recovery snapshot

    assert resync_of(parser) is Resync.NONE
    assert result.book.valid
    assert result.deltas - deltas_before == 5  # buffered diffs after the snapshot's id

    result.feed(faulty[insert_after + 1 :])
    clean = replay(lines, "BTCUSDT", "spot", 100)
    matches, mismatches = result.oracle()
    assert mismatches == 0
    assert 0 < matches < clean.oracle()[0]  # tickers during the outage have no rebuilt BBO
    assert book_levels(result.book) == book_levels(clean.book)
    assert result.book.sequence == clean.book.sequence
    assert (parser.stats.gaps, parser.stats.resyncs) == (1, 1)


def test_lost_usdm_diff_breaks_the_pu_chain(shared_data: Path) -> None:
    lines = _slice(shared_data, USDM_BTC[0])
    depth_at = _post_snapshot_depth(lines)
    lost, after_lost = depth_at[200], depth_at[201]
    faulty = lines[:lost] + lines[lost + 1 :]

    result = replay(faulty, "BTCUSDT", "usdm", 0)

    before_gap = replay(lines[:lost], "BTCUSDT", "usdm", 0)
    lost_data, next_data = depth_data(lines[lost][1]), depth_data(lines[after_lost][1])
    assert [e.reason for e in result.invalids] == [
        f"sequence gap: expected pu={lost_data['pu']}, got pu={next_data['pu']} "
        f"(u={next_data['u']})"
    ]
    assert result.parser.stats.gaps == 1
    assert result.parser.resync is Resync.REST_SNAPSHOT
    assert not result.book.valid
    assert result.deltas == before_gap.deltas  # nothing after the gap reaches the book


def _corrupt(raw: str, side: str, price: str | None = None, qty: str | None = None) -> str:
    msg = json.loads(raw)
    level = msg["data"][side][0]
    if price is not None:
        level[0] = price
    if qty is not None:
        level[1] = qty
    return compact(msg)


def test_garbage_frames_are_counted_as_malformed_and_leave_the_book_alone(
    shared_data: Path,
) -> None:
    lines = _slice(shared_data, SPOT_BTC[0])
    depth_at = _post_snapshot_depth(lines)
    target = depth_at[50]
    ts, raw = lines[target]
    side = "b" if depth_data(raw)["b"] else "a"
    trade_raw = next(raw for _, raw in lines if stream_of(raw) == "btcusdt@trade")
    garbage = [
        "not json at all",
        "",
        "{}",
        "[1, 2, 3]",
        '{"stream":',
        '{"stream":"btcusdt@depth@100ms","data":[]}',
        '{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT"}}',
        '{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT",'
        '"U":"one","u":2,"b":[],"a":[]}}',
        '{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT",'
        '"U":1,"u":2,"b":"12","a":[]}}',
        '{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT"}}',
        _corrupt(raw, side, price="NaN"),
        _corrupt(raw, side, qty="-1.00000000"),
        _corrupt(raw, side, price="Infinity"),
        _corrupt(raw, side, price="0.00000000"),
        trade_raw.replace('"p":"', '"p":"-'),
        trade_raw.replace('"m":true', '"m":"yes"').replace('"m":false', '"m":"yes"'),
    ]
    faulty = lines[:target] + [(ts, g) for g in garbage] + lines[target:]

    result = replay(faulty, "BTCUSDT", "spot", 100)
    as_bytes = result.parser.on_message(b"\xff\xfe{", ts)

    clean = replay(lines, "BTCUSDT", "spot", 100)
    assert as_bytes == []
    assert result.parser.stats.malformed == len(garbage) + 1
    assert result.oracle() == clean.oracle()
    assert result.deltas == clean.deltas
    assert book_levels(result.book) == book_levels(clean.book)
    assert result.parser.stats.gaps == 0 and result.book.valid


@pytest.mark.parametrize(
    ("name", "symbol", "market", "speed"),
    [(SPOT_BTC[0], "BTCUSDT", "spot", 100), (USDM_BTC[0], "BTCUSDT", "usdm", 0)],
    ids=["spot", "usdm"],
)
def test_duplicated_diff_is_dropped_as_stale_not_a_gap(
    shared_data: Path, name: str, symbol: str, market: Market, speed: int
) -> None:
    lines = _slice(shared_data, name)
    target = _post_snapshot_depth(lines)[40]
    faulty = [*lines[: target + 1], lines[target], *lines[target + 1 :]]

    result = replay(faulty, symbol, market, speed)

    clean = replay(lines, symbol, market, speed)
    stats = result.parser.stats
    assert (stats.stale_dropped, stats.gaps) == (1, 0)
    assert result.deltas == clean.deltas
    assert book_levels(result.book) == book_levels(clean.book)


# --------------------------------------------------------------------------------------------
# cryptofeed captures: several symbols on one connection, REST snapshots as http entries
# --------------------------------------------------------------------------------------------

_DEPTH_URL_SYMBOL = re.compile(r"/depth\?symbol=([A-Z0-9_]+)")


@pytest.mark.parametrize(
    ("name", "market", "symbols"),
    [
        ("BINANCE", "spot", {"NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR"}),
        ("BINANCE_FUTURES", "usdm", {"SUSHIUSDT", "AKROUSDT", "KEEPUSDT", "CTKUSDT"}),
        (
            "BINANCE_DELIVERY",
            "coinm",
            {
                "BCHUSD_PERP",
                "LINKUSD_PERP",
                "BCHUSD_210924",
                "ETCUSD_PERP",
                "ETHUSD_210924",
                "XRPUSD_PERP",
                "BTCUSD_211231",
                "TRXUSD_PERP",
                "LINKUSD_211231",
                "EOSUSD_PERP",
            },
        ),
    ],
)
def test_cryptofeed_capture_syncs_every_symbol_without_gaps(
    shared_data: Path, name: str, market: Market, symbols: set[str]
) -> None:
    with gzip.open(shared_data / "cryptofeed" / f"{name}.jsonl.gz", "rt") as fh:
        entries = [json.loads(line) for line in fh]
    # Entries are not in time order (the REST snapshots are logged before the connect).
    entries = sorted((e for e in entries if "ts" in e), key=lambda e: e["ts"])
    replays: dict[str, Replay] = {}
    for entry in entries:
        match = _DEPTH_URL_SYMBOL.search(entry.get("url", ""))
        if entry["t"] == "http" and match:
            replays[match[1]] = replay([], match[1], market, 100, trade_stream="aggTrade")
    assert set(replays) == symbols
    agg_trades = 0

    for entry in entries:
        ts = round(entry["ts"] * 1e9)
        match = _DEPTH_URL_SYMBOL.search(entry.get("url", ""))
        if entry["t"] == "http" and match:
            target = replays[match[1]]
            target.apply(target.parser.on_snapshot(entry["data"], ts))
        elif entry["t"] == "recv":
            agg_trades += "@aggTrade" in entry["data"][:48]
            for result in replays.values():
                result.apply(result.parser.on_message(entry["data"], ts))

    for symbol, result in replays.items():
        stats = result.parser.stats
        assert result.snapshots == 1, symbol
        assert result.deltas > 0, symbol
        assert (stats.gaps, stats.malformed, stats.stale_dropped) == (0, 0, 0), symbol
        assert result.parser.resync is Resync.NONE, symbol
        assert result.book.valid and result.crossed == 0, symbol
        assert stats.ignored > 0, symbol  # tickers, klines and the other symbols
    assert sum(r.trades for r in replays.values()) == agg_trades > 0


def test_trade_frames_decode_the_same_with_and_without_the_envelope(shared_data: Path) -> None:
    # Enveloped frames take the typed decoder; raw-stream payloads the generic one.
    lines = _read_lines(shared_data / USDM_BTC[0])
    frames = [raw for _, raw in lines if stream_of(raw) == "btcusdt@trade"][:500]
    typed = BinanceParser("BTCUSDT", "usdm", 0)
    generic = BinanceParser("BTCUSDT", "usdm", 0)
    for n, raw in enumerate(frames):
        payload = compact(json.loads(raw)["data"])
        assert typed.on_message(raw, n) == generic.on_message(payload, n)
    assert typed.stats == generic.stats
    assert typed.stats.trades > 400
