"""The compiled frame paths of the Binance parser against its Python paths.

``BinanceParser.on_message`` reads a frame's stream from its envelope with
``bot._cbook.StreamKind``, and hands an in-sync diff to ``bot._cbook.DepthRoute`` when the
extension is built and the parser splits; what they do not take goes down the Python path,
which stays the reference. Every test here compares the two.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from adapters.binance import (
    _AGG_TRADE,
    _DEPTH,
    _SKIP,
    _TRADE,
    _UNKNOWN,
    BinanceParser,
    Market,
    is_rest_snapshot,
)
from adapters.feed import Resync
from bot.events import DeferredBookDelta, MarketEvent
from bot.native import cbook
from tests.test_binance import CM_BTC, SPOT_BTC, USDM_BTC, Line, hft_lines

pytestmark = pytest.mark.skipif(cbook is None, reason="the C extension is not built")

NEAR = 8


class Counting:
    """Wraps a route and counts the events it answered with."""

    def __init__(self, route: Any) -> None:
        self.route = route
        self.answers = 0

    def __call__(self, *args: Any) -> Any:
        event = self.route(*args)
        self.answers += event is not None
        return event


def pair(symbol: str, market: Market, speed: int) -> tuple[BinanceParser, BinanceParser]:
    """A parser with its compiled route (counted) and one on the Python path only."""
    routed = BinanceParser(symbol, market, speed, touch_levels=NEAR)
    plain = BinanceParser(symbol, market, speed, touch_levels=NEAR)
    assert routed._route is not None
    routed._route = Counting(routed._route)
    plain._route = None
    return routed, plain


def feed(parser: BinanceParser, ts: int, raw: str) -> list[MarketEvent]:
    return parser.on_snapshot(raw, ts) if is_rest_snapshot(raw) else parser.on_message(raw, ts)


def assert_same_events(ours: list[MarketEvent], reference: list[MarketEvent]) -> None:
    assert len(ours) == len(reference)
    for a, b in zip(ours, reference, strict=True):
        assert type(a) is type(b)
        if type(a) is DeferredBookDelta:
            assert type(b) is DeferredBookDelta
            assert (a.ts_exchange_ns, a.ts_local_ns, a.symbol, a.sequence) == \
                (b.ts_exchange_ns, b.ts_local_ns, b.symbol, b.sequence)
            assert a.near == b.near
            assert (a.deep_bid_max, a.deep_ask_min) == (b.deep_bid_max, b.deep_ask_min)
            assert a.whole() == b.whole()  # every deferred level, decoded
        else:
            assert a == b


def assert_same_state(a: BinanceParser, b: BinanceParser) -> None:
    assert a.stats == b.stats
    assert (a.last_update_id, a.resync, a.buffered) == (b.last_update_id, b.resync, b.buffered)


@pytest.mark.parametrize(("symbol", "files", "market", "speed"), [
    ("BTCUSDT", USDM_BTC, "usdm", 0),
    ("BTCUSDT", SPOT_BTC, "spot", 100),
    ("BTCUSD_PERP", CM_BTC, "coinm", 0),
])
def test_the_route_gives_the_python_paths_events_on_whole_captures(
    shared_data: Path, symbol: str, files: tuple[str, ...], market: Market, speed: int
) -> None:
    routed, plain = pair(symbol, market, speed)
    for ts, raw in hft_lines(shared_data, files):
        assert_same_events(feed(routed, ts, raw), feed(plain, ts, raw))
        assert_same_state(routed, plain)
    assert isinstance(routed._route, Counting)
    # it did the work: nearly every diff of a connection that stays in sync
    assert routed._route.answers > 0.9 * routed.stats.book_events > 1000


def synced(lines: list[Line], market: Market = "usdm", speed: int = 0
           ) -> tuple[BinanceParser, BinanceParser, int]:
    """A routed and a plain parser in sync; the index of the next depth frame."""
    routed, plain = pair("BTCUSDT", market, speed)
    for i, (ts, raw) in enumerate(lines):
        feed(routed, ts, raw)
        feed(plain, ts, raw)
        if i > 300 and routed.resync is Resync.NONE and '"b":[' in lines[i + 1][1]:
            return routed, plain, i + 1
    raise AssertionError("never in sync")


def edited(raw: str, **data: Any) -> str:
    """The frame with fields of its data replaced (None removes one), in the compact layout."""
    frame = json.loads(raw)
    for key, value in data.items():
        if value is None:
            del frame["data"][key]
        else:
            frame["data"][key] = value
    return json.dumps(frame, separators=(",", ":"))


def renamed(raw: str, stream: str) -> str:
    frame = json.loads(raw)
    frame["stream"] = stream
    return json.dumps(frame, separators=(",", ":"))


def test_an_ordinary_next_diff_is_the_routes(shared_data: Path) -> None:
    routed, plain, index = synced(hft_lines(shared_data, USDM_BTC))
    ts, raw = hft_lines(shared_data, USDM_BTC)[index]
    route = routed._route
    assert isinstance(route, Counting)
    event = route.route(raw, ts, routed.last_update_id, routed, 0)
    assert event is not None
    assert_same_events([event], feed(plain, ts, raw))
    # any update speed of the symbol's diff-depth stream is a depth stream
    assert route.route(renamed(raw, "btcusdt@depth@100ms"), ts, routed.last_update_id,
                       routed, 0) is not None


def not_mine_cases(raw: str, last_id: int) -> dict[str, tuple[str | bytes, int]]:
    """Frames (and the book's update id) the route must leave to the Python path."""
    data = json.loads(raw)["data"]
    return {
        "bytes": (raw.encode(), last_id),
        "non_ascii": (raw.replace('"e":"depthUpdate"', '"e":"depthUpdaté"'), last_id),
        "trade_stream": (renamed(raw, "btcusdt@trade"), last_id),
        "partial_depth_stream": (renamed(raw, "btcusdt@depth5@100ms"), last_id),
        "other_symbols_stream": (renamed(raw, "ethusdt@depth"), last_id),
        "spaced_layout": (raw.replace('"data":{', '"data": {', 1), last_id),
        "corrupt_near_level": (edited(raw, a=[["NaN", "1.0"], *data["a"][1:]]), last_id),
        "other_symbol": (edited(raw, s="ETHUSDT"), last_id),
        "futures_without_pu": (edited(raw, pu=None), last_id),
        "gap": (edited(raw, pu=last_id + 7), last_id),  # diffs were lost
        "overlap": (edited(raw, pu=last_id - 1), last_id),
        "stale": (edited(raw, u=last_id, pu=last_id - 5), last_id),
        "exchange_time_out_of_range": (edited(raw, E=2**62), last_id),
        "update_id_out_of_range": (edited(raw, u=2**64, pu=last_id), last_id),
        "book_id_out_of_range": (raw, 2**63),
    }


NOT_MINE = ("bytes", "non_ascii", "trade_stream", "partial_depth_stream", "other_symbols_stream",
            "spaced_layout", "corrupt_near_level", "other_symbol", "futures_without_pu", "gap",
            "overlap", "stale", "exchange_time_out_of_range", "update_id_out_of_range",
            "book_id_out_of_range")


@pytest.mark.parametrize("case", NOT_MINE)
def test_what_the_route_does_not_take_goes_down_the_python_path(
    shared_data: Path, case: str
) -> None:
    lines = hft_lines(shared_data, USDM_BTC)
    routed, plain, index = synced(lines)
    ts, raw = lines[index]
    cases = not_mine_cases(raw, routed.last_update_id)
    assert sorted(cases) == sorted(NOT_MINE)
    frame, last_id = cases[case]
    route = routed._route
    assert isinstance(route, Counting)

    assert route.route(frame, ts, last_id, routed, 0) is None
    if last_id == routed.last_update_id:  # the parser's own answer is the Python path's
        answers = route.answers
        assert_same_events(routed.on_message(frame, ts), plain.on_message(frame, ts))
        assert_same_state(routed, plain)
        # (the parser decodes bytes first and hands the route the text)
        assert route.answers == answers + (case == "bytes")


def test_spot_diffs_are_the_routes_while_they_connect(shared_data: Path) -> None:
    # Spot has no pu: a diff continues the book when U <= last + 1 < u + 1.
    lines = hft_lines(shared_data, SPOT_BTC)
    routed, _, index = synced(lines, "spot", 100)
    ts, raw = lines[index]
    last = routed.last_update_id
    route = routed._route
    assert isinstance(route, Counting)
    u = json.loads(raw)["data"]["u"]
    for first, final, mine in [(last + 1, u, True), (last - 3, u, True),
                               (last + 2, u, False),  # a gap
                               (last - 3, last, False)]:  # stale
        frame = edited(raw, U=first, u=final)
        assert (route.route(frame, ts, last, routed, 0) is not None) is mine, (first, final)


def test_a_corrupt_near_level_is_counted_once(shared_data: Path) -> None:
    lines = hft_lines(shared_data, USDM_BTC)
    routed, _, index = synced(lines)
    ts, raw = lines[index]
    before = routed.stats.messages
    frame = edited(raw, a=[["1e999", "1.0"], *json.loads(raw)["data"]["a"][1:]])

    assert routed.on_message(frame, ts) == []
    assert routed.stats.malformed == 1
    assert routed.stats.messages == before + 1


def test_the_route_checks_its_arguments() -> None:
    assert cbook is not None
    route = cbook.DepthRoute("btcusdt@depth", "BTCUSDT", 8, True, tuple, tuple, tuple)
    with pytest.raises(TypeError, match="takes"):
        route("{}", 0, 0, None)
    assert route("{}", 0, 0, None, 0) is None
    with pytest.raises(ValueError, match="ASCII"):
        cbook.DepthRoute("btcusdté@depth", "BTCUSDTÉ", 8, True, tuple, tuple, tuple)
    with pytest.raises(ValueError, match="count"):
        cbook.DepthRoute("btcusdt@depth", "BTCUSDT", -1, True, tuple, tuple, tuple)


def test_a_copied_parser_shares_the_route_and_goes_on_alone(shared_data: Path) -> None:
    lines = hft_lines(shared_data, USDM_BTC)
    routed, plain, index = synced(lines)
    twin = copy.deepcopy(routed)
    assert isinstance(twin._route, Counting) and isinstance(routed._route, Counting)
    assert twin._route.route is routed._route.route  # nothing in a route changes
    for ts, raw in lines[index:index + 200]:
        assert_same_events(twin.on_message(raw, ts), plain.on_message(raw, ts))
        assert_same_state(twin, plain)
    assert routed.last_update_id < twin.last_update_id  # the original stayed where it was


@pytest.mark.parametrize(("files", "market", "trade_stream"), [
    (USDM_BTC, "usdm", "trade"), (SPOT_BTC, "spot", "aggTrade"), (CM_BTC, "coinm", "trade")])
def test_stream_kinds_are_the_references_on_every_frame(
    shared_data: Path, files: tuple[str, ...], market: Market, trade_stream: str
) -> None:
    symbol = "BTCUSD_PERP" if market == "coinm" else "BTCUSDT"
    parser = BinanceParser(symbol, market, trade_stream=trade_stream)  # type: ignore[arg-type]
    kernel = parser._envelope_kernel
    assert kernel is not None
    seen = set()
    for _, raw in hft_lines(shared_data, files):
        kind = kernel(raw)
        assert kind == parser._envelope_kind(raw)
        seen.add(kind)
    assert seen >= {_DEPTH, _SKIP}  # bookTicker is skipped


@pytest.mark.parametrize(("text", "kind"), [
    ('{"stream":"btcusdt@depth@0ms","data":{}}', _DEPTH),
    ('{"stream":"btcusdt@depth","data":{}}', _DEPTH),
    ('{"stream":"btcusdt@depth@100ms"', _DEPTH),
    ('{"stream":"btcusdt@depth5@100ms","data":{}}', _SKIP),  # a partial-depth stream
    ('{"stream":"btcusdt@dept","data":{}}', _SKIP),
    ('{"stream":"ethusdt@depth","data":{}}', _SKIP),
    ('{"stream":"btcusdt@trade","data":{}}', _TRADE),
    ('{"stream":"btcusdt@aggTrade","data":{}}', _SKIP),  # the other flavour: never counted
    ('{"stream":"btcusdt@tradeX","data":{}}', _SKIP),
    ('{"stream":"btcusdt@bookTicker","data":{}}', _SKIP),
    ('{"stream":"","data":{}}', _SKIP),
    ('{"stream":"btcusdt@depth', _UNKNOWN),  # no closing quote
    ('{"stream": "btcusdt@depth","data":{}}', _UNKNOWN),  # another layout: decoded
    ('{"data":{},"stream":"btcusdt@depth"}', _UNKNOWN),
    ('', _UNKNOWN),
    ('{"stream":"', _UNKNOWN),
])
def test_stream_kind_cases(text: str, kind: int) -> None:
    parser = BinanceParser("BTCUSDT", "usdm", 0)
    assert parser._envelope_kernel is not None
    assert parser._envelope_kernel(text) == kind
    assert parser._envelope_kind(text) == kind


def test_stream_kind_leaves_other_text_to_the_python() -> None:
    parser = BinanceParser("BTCUSDT", "usdm", 0, trade_stream="aggTrade")
    kernel = parser._envelope_kernel
    assert kernel is not None
    assert kernel('{"stream":"btcusdt@aggTrade","data":{}}') == _AGG_TRADE
    for text in ('{"stream":"btcusdt@dépth","data":{}}', '{"stream":"btcusdt@depth","é":1}'):
        assert kernel(text) is None
        assert parser.on_message(text, 1) == BinanceParser(
            "BTCUSDT", "usdm", 0, trade_stream="aggTrade").on_message(text, 1)
    assert kernel(b'{"stream":"btcusdt@depth"') is None  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ASCII"):
        cbook.StreamKind("btcusdté@depth", "x", 1, 2, 0, 4)  # type: ignore[union-attr]
