"""Touch-first splitting of large Binance diffs (``touch_levels``) on the real captures.

A split diff (``DeferredBookDelta``) must hold exactly the levels of the diff decoded whole:
the ones nearest the touch at once, the rest on demand, with bounds the engine can trust.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from adapters.binance import (
    DEEP_FIELDS,
    BinanceParser,
    Market,
    _DeepLevels,
    _make_deep,
    is_rest_snapshot,
)
from adapters.feed import Resync
from bot.book import OrderBook
from bot.errors import DataError
from bot.events import BookDelta, BookSnapshot, DeferredBookDelta, MarketEvent, Side
from tests.test_binance import SPOT_BTC, USDM_BTC, Line, hft_lines

NEAR = 16


def lockstep(lines: list[Line], market: Market, speed: int
             ) -> tuple[list[tuple[MarketEvent, MarketEvent]], BinanceParser, BinanceParser]:
    """Feed the same lines to a splitting and a plain parser; pair up their events."""
    split = BinanceParser("BTCUSDT", market, speed, touch_levels=NEAR)
    plain = BinanceParser("BTCUSDT", market, speed)
    pairs: list[tuple[MarketEvent, MarketEvent]] = []
    for ts, raw in lines:
        if is_rest_snapshot(raw):
            a, b = split.on_snapshot(raw, ts), plain.on_snapshot(raw, ts)
        else:
            a, b = split.on_message(raw, ts), plain.on_message(raw, ts)
        assert len(a) == len(b)
        pairs.extend(zip(a, b, strict=True))
    return pairs, split, plain


@pytest.mark.parametrize(("files", "market", "speed"), [(USDM_BTC, "usdm", 0),
                                                        (SPOT_BTC, "spot", 100)])
def test_split_diffs_hold_exactly_the_levels_of_the_whole_diff(
    shared_data: Path, files: tuple[str, ...], market: Market, speed: int
) -> None:
    pairs, split, plain = lockstep(hft_lines(shared_data, files), market, speed)
    deferred = 0
    for ours, whole in pairs:
        if type(ours) is not DeferredBookDelta:
            assert ours == whole
            continue
        deferred += 1
        assert isinstance(whole, BookDelta)
        # Nearest the touch first: the highest bids and the lowest asks.
        bids = sorted(whole.bids, reverse=True)
        asks = sorted(whole.asks)
        assert len(bids) > NEAR or len(asks) > NEAR
        assert sorted(ours.near.bids, reverse=True) == bids[:NEAR]
        assert sorted(ours.near.asks) == asks[:NEAR]
        assert ours.deep_bid_max == (bids[NEAR][0] if len(bids) > NEAR else -float("inf"))
        assert ours.deep_ask_min == (asks[NEAR][0] if len(asks) > NEAR else float("inf"))
        assert (ours.sequence, ours.ts_exchange_ns, ours.ts_local_ns) == \
            (whole.sequence, whole.ts_exchange_ns, whole.ts_local_ns)
        assert ours.whole() == whole
    assert deferred > 100
    assert split.stats == plain.stats


def test_deep_levels_come_nearest_first_and_then_the_rest(shared_data: Path) -> None:
    pairs, _, _ = lockstep(hft_lines(shared_data, USDM_BTC)[:20_000], "usdm", 0)
    ours, whole = next((a, b) for a, b in pairs if type(a) is DeferredBookDelta
                       and isinstance(b, BookDelta) and len(b.bids) > 200 and len(b.asks) > 200)
    assert isinstance(whole, BookDelta)
    # Bids down to the 10th deferred one; no ask (a cap of -inf reaches none).
    part, bid_max, ask_min = ours.deep.through(whole.bids[-NEAR - 10][0], -float("inf"))
    assert part.bids == whole.bids[-NEAR - 10:-NEAR] and part.asks == ()
    assert bid_max == whole.bids[-NEAR - 11][0] and ask_min == ours.deep_ask_min
    # Only the nearest ask reaches this cap, but at least 64 are asked for; bids are clear.
    part, bid_max, ask_min = ours.deep.through(float("inf"), whole.asks[NEAR][0], 64)
    assert part.bids == () and part.asks == whole.asks[NEAR:NEAR + 64]
    assert bid_max == whole.bids[-NEAR - 11][0] and ask_min == whole.asks[NEAR + 64][0]
    rest = ours.deep.rest()
    assert tuple(rest.bids) == whole.bids[:-NEAR - 10]
    assert tuple(rest.asks) == whole.asks[NEAR + 64:]
    assert ours.deep.rest() == BookDelta(rest.ts_exchange_ns, rest.ts_local_ns, "BTCUSDT", (),
                                         (), rest.sequence, True)


@pytest.mark.parametrize(("files", "market", "speed"), [(USDM_BTC, "usdm", 0),
                                                        (SPOT_BTC, "spot", 100)])
def test_settle_books_exactly_what_the_touch_needs(
    shared_data: Path, files: tuple[str, ...], market: Market, speed: int
) -> None:
    # Replay the capture into two books: one booked whole, one split as the engine books it
    # (near, settle, then the rest after quoting). After settle, the touch is already the
    # whole update's and every deferred level left is behind it. (That no fewer levels would
    # do is checked on the book side, in test_cbook.py.)
    pairs, _, _ = lockstep(hft_lines(shared_data, files)[:40_000], market, speed)
    split_book, whole_book = OrderBook("BTCUSDT"), OrderBook("BTCUSDT")
    settled = deepened = 0
    for ours, whole in pairs:
        if not isinstance(whole, BookSnapshot | BookDelta):
            continue
        if type(ours) is not DeferredBookDelta or not split_book.valid:
            event = ours.whole() if type(ours) is DeferredBookDelta else ours
            assert isinstance(event, BookSnapshot | BookDelta)
            split_book.apply(event)
            whole_book.apply(whole)
            continue
        split_book.apply(ours.near, cross_check=False)
        part, bid_max, ask_min = ours.deep.settle(split_book)
        split_book.apply(part, cross_check=False)
        whole_book.apply(whole)
        touch = (split_book.best_bid, split_book.best_ask)
        assert touch == (whole_book.best_bid, whole_book.best_ask)
        assert (split_book.best_bid_qty, split_book.best_ask_qty) == \
            (whole_book.best_bid_qty, whole_book.best_ask_qty)
        assert bid_max < touch[0] and ask_min > touch[1]
        settled += 1
        deepened += bool(part.bids or part.asks)
        split_book.apply(ours.deep.rest())
        assert split_book.depth(Side.BUY, 10**6) == whole_book.depth(Side.BUY, 10**6)
        assert split_book.depth(Side.SELL, 10**6) == whole_book.depth(Side.SELL, 10**6)
    assert settled > 50 and deepened > 5


def synced_parser(lines: list[Line]) -> tuple[BinanceParser, int]:
    """Return a splitting USD-M parser in sync, and the index of the next line to feed."""
    parser = BinanceParser("BTCUSDT", "usdm", 0, touch_levels=NEAR)
    for i, (ts, raw) in enumerate(lines):
        if is_rest_snapshot(raw):
            parser.on_snapshot(raw, ts)
        else:
            parser.on_message(raw, ts)
        if parser.resync is Resync.NONE and i > 200:
            return parser, i + 1
    raise AssertionError("never in sync")


def next_large(lines: list[Line], start: int) -> int:
    return next(i for i in range(start, len(lines))
                if '"b":[' in lines[i][1] and len(lines[i][1]) > 12_000)


def at_large_diff(lines: list[Line]) -> tuple[BinanceParser, int]:
    """Return a synced splitting parser fed up to the next large diff, and that diff's index."""
    parser, start = synced_parser(lines)
    index = next_large(lines, start)
    for ts, raw in lines[start:index]:
        parser.on_message(raw, ts)
    return parser, index


def corrupted(raw: str, side: str, index: int, field: int, value: str) -> str:
    """Return the frame with one level's price (field 0) or quantity (1) replaced."""
    frame = json.loads(raw)
    levels = frame["data"][side]
    levels[index if index >= 0 else len(levels) // 2][field] = value
    return json.dumps(frame, separators=(",", ":"))


def test_a_corrupt_deep_level_is_found_when_asked_for_and_resyncs_the_book(
    shared_data: Path,
) -> None:
    lines = list(hft_lines(shared_data, USDM_BTC))
    parser, index = at_large_diff(lines)
    ts, raw = lines[index]
    [event] = parser.on_message(corrupted(raw, "b", -1, 0, "-61000.0"), ts)  # a deep bid
    assert isinstance(event, DeferredBookDelta)
    assert parser.stats.malformed == 0
    with pytest.raises(DataError, match="corrupt depth level"):
        event.deep.rest()
    assert parser.stats.malformed == 1
    assert parser.resync is Resync.REST_SNAPSHOT
    # Until a snapshot comes, diffs wait in the buffer.
    ts, raw = next(line for line in lines[index + 1:] if '"b":[' in line[1])
    assert parser.on_message(raw, ts) == []
    assert parser.buffered == 1


def test_a_corrupt_near_level_drops_the_frame_at_once(shared_data: Path) -> None:
    lines = list(hft_lines(shared_data, USDM_BTC))
    parser, index = at_large_diff(lines)
    before = parser.last_update_id
    ts, raw = lines[index]
    assert parser.on_message(corrupted(raw, "a", 0, 1, "NaN"), ts) == []  # the nearest ask
    assert parser.stats.malformed == 1
    assert parser.last_update_id == before
    # The frame is gone, so the next one does not connect: a gap, as for any lost frame.
    later = [line for line in lines[index + 1:] if '"b":[' in line[1]]
    events = parser.on_message(later[0][1], later[0][0])
    assert parser.stats.gaps == 1 and parser.resync is Resync.REST_SNAPSHOT
    assert len(events) == 1


def test_a_frame_laid_out_differently_is_split_the_same(shared_data: Path) -> None:
    lines = list(hft_lines(shared_data, USDM_BTC))
    a, index = at_large_diff(lines)
    b, _ = at_large_diff(lines)
    ts, raw = lines[index]
    frame = json.loads(raw)
    # The envelope as Binance starts it, the payload with spaces and the arrays not last.
    data = {"b": frame["data"].pop("b"), "a": frame["data"].pop("a"), **frame["data"]}
    spaced = (f'{{"stream":"{frame["stream"]}","data":'
              f'{json.dumps(data, separators=(", ", ": "))}}}')
    [x] = a.on_message(raw, ts)
    [y] = b.on_message(spaced, ts)
    assert isinstance(x, DeferredBookDelta) and isinstance(y, DeferredBookDelta)
    assert x.near == y.near
    assert (x.deep_bid_max, x.deep_ask_min) == (y.deep_bid_max, y.deep_ask_min)
    assert x.whole() == y.whole()


def test_a_deferred_part_from_before_a_reconnect_does_not_resync_the_new_book(
    shared_data: Path,
) -> None:
    lines = list(hft_lines(shared_data, USDM_BTC))
    parser, index = at_large_diff(lines)
    ts, raw = lines[index]
    [event] = parser.on_message(corrupted(raw, "b", -1, 1, "x"), ts)
    assert isinstance(event, DeferredBookDelta)
    parser.reset()  # a new connection: its own sync starts
    snapshot = next(i for i, (_, raw) in enumerate(lines) if is_rest_snapshot(raw))
    ts, body = lines[snapshot]
    parser.on_snapshot(body, ts)
    assert parser.resync is Resync.NONE
    resyncs = parser.stats.resyncs
    with pytest.raises(DataError):
        event.deep.rest()
    assert parser.stats.malformed == 1
    assert parser.resync is Resync.NONE
    assert parser.stats.resyncs == resyncs


def test_a_key_after_the_asks_is_not_mistaken_for_levels(shared_data: Path) -> None:
    lines = list(hft_lines(shared_data, USDM_BTC))
    a, index = at_large_diff(lines)
    b, _ = at_large_diff(lines)
    ts, raw = lines[index]
    extended = raw[:-2] + ',"x":[1]}}'  # a field Binance might add one day
    [x] = a.on_message(raw, ts)
    [y] = b.on_message(extended, ts)
    assert isinstance(x, DeferredBookDelta) and isinstance(y, DeferredBookDelta)
    assert x.near == y.near and x.whole() == y.whole()
    assert b.stats.malformed == 0


def test_deep_levels_made_without_init_equal_the_ones_init_makes() -> None:
    # _make_deep (the compiled Maker) stores DEEP_FIELDS in order, which must be exactly what
    # _DeepLevels.__init__ does with its parameters.
    parser = BinanceParser("BTCUSDT", "usdm", 0, touch_levels=NEAR)
    near = BookDelta(1, 2, "BTCUSDT", ((1.0, 2.0),), (), 3, True)
    values = (parser, 4, near, '[["1.0","2"]]', True, 1.0, '[["3.0","4"]]', False, 3.0)
    made, built = _make_deep(*values), _DeepLevels(*values)
    assert type(made) is _DeepLevels
    params = list(inspect.signature(_DeepLevels.__init__).parameters)[1:]
    assert [f"_{name}" for name in params] == list(DEEP_FIELDS)
    assert sorted(DEEP_FIELDS) == sorted(_DeepLevels.__slots__)
    for name in DEEP_FIELDS:
        assert getattr(made, name) is getattr(built, name)
