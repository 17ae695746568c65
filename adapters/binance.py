"""Binance market data (spot, USD-M and COIN-M futures): a pure parser with the depth sync rules.

One ``BinanceParser`` follows one symbol on one market through a combined-stream connection
(``/stream?streams=<sym>@depth@100ms/<sym>@trade/<sym>@bookTicker``). It turns diff-depth events
into ``BookDelta`` and trades into ``Trade``, and keeps the book in sync the way Binance documents
it ("How to manage a local order book correctly"):

1. Diff events are buffered (bounded; the oldest are dropped when full) until the shell hands in
   a REST depth snapshot (``resync`` is ``REST_SNAPSHOT`` until then).
2. Events the snapshot already covers are dropped: spot ``u <= lastUpdateId``, futures
   ``u < lastUpdateId`` (buffered ones, and live ones that were in flight while the snapshot
   was fetched; this is part of the sync and is not counted as stale).
3. The first event applied must connect to the snapshot: spot ``U <= lastUpdateId + 1``,
   futures ``U <= lastUpdateId`` or ``pu <= lastUpdateId`` (update ids are shared between the
   symbols of a futures market, so the snapshot id may fall between one event's ``pu`` and the
   next one's ``U``: no update of this symbol is missing then). If it starts later, updates are
   missing between the snapshot and the diffs: the snapshot is too old, which is a gap.
   If every buffered event is older than the snapshot, the snapshot is applied and the next
   live event must connect to it.
4. After that every event must continue the previous one: spot ``U <= u_prev + 1`` (normally
   ``U == u_prev + 1``; an overlap re-sends absolute quantities, which is harmless), futures
   ``pu == u_prev``. An event with ``u <= u_prev`` is older than the book: dropped and counted in
   ``stale_dropped``. Anything else is a gap: ``BookInvalid``, ``resync = REST_SNAPSHOT``, and
   buffering starts again with the event that showed the gap.

Everything here is pure (no I/O, no clock, no logging). The hot path parses JSON once per frame
and skips frames of streams it does not use (``bookTicker``, ``kline``, other symbols, the trade
flavour not subscribed) from the stream name at the start of the text, before any JSON parsing.
Malformed frames (not JSON, wrong shape, missing keys, non-finite or negative numbers) are counted
in ``stats.malformed`` and never raise.
"""

from __future__ import annotations

import json
import math
import sys
from collections import deque
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Final, Literal

import msgspec

from adapters.feed import FeedStats, Resync
from bot.errors import DataError
from bot.events import (
    BUY,
    SELL,
    BookDelta,
    BookInvalid,
    BookSnapshot,
    DeferredBookDelta,
    Level,
    MarketEvent,
    SettleBook,
    Trade,
)
from bot.frozen import maker
from bot.native import (
    cbook,
    count_through,
    nearest_at_end,
    parse_levels,
    parse_run,
    split_depth,
    split_levels,
    split_run,
)

Market = Literal["spot", "usdm", "coinm"]
TradeStream = Literal["trade", "aggTrade"]

_VENUES: Final[dict[str, str]] = {
    "spot": "binance",
    "usdm": "binance-usdm",
    "coinm": "binance-coinm",
}
_WS_BASES: Final[dict[str, str]] = {
    "spot": "wss://stream.binance.com:9443",
    "usdm": "wss://fstream.binance.com",
    "coinm": "wss://dstream.binance.com",
}
_REST_BASES: Final[dict[str, str]] = {
    "spot": "https://api.binance.com",
    "usdm": "https://fapi.binance.com",
    "coinm": "https://dapi.binance.com",
}
_DEPTH_PATHS: Final[dict[str, str]] = {
    "spot": "/api/v3/depth",
    "usdm": "/fapi/v1/depth",
    "coinm": "/dapi/v1/depth",
}
# Diff-depth update speeds, and the speed that is the stream's default (plain "<sym>@depth").
# Futures also serve "@depth@0ms" (unthrottled; not in the docs, but what the recorded
# hftbacktest captures use).
_DEPTH_SPEEDS: Final[dict[str, tuple[frozenset[int], int]]] = {
    "spot": (frozenset({100, 1000}), 1000),
    "usdm": (frozenset({0, 100, 250, 500}), 250),
    "coinm": (frozenset({0, 100, 250, 500}), 250),
}
# Futures trades also carry "X"; only these are prints of the public order book. Other values
# (insurance-fund and auto-deleverage settlements) did not trade against resting orders.
_BOOK_TRADE_TYPES: Final = frozenset({"MARKET", "LIQUIDATION"})

_SNAPSHOT_LIMIT: Final = 1000
_MS_TO_NS: Final = 1_000_000
_INF: Final = math.inf
_NAN: Final = math.nan
_ENVELOPE: Final = '{"stream":"'
_ENVELOPE_LEN: Final = len(_ENVELOPE)
_MAX_CACHED_STREAMS: Final = 256
# Enum members as module constants: a read through the class costs EnumType's __getattr__
# hook in Python 3.11 (see bot.events.BUY).
_NONE: Final = Resync.NONE
_REST_SNAPSHOT: Final = Resync.REST_SNAPSHOT

# Per-frame events built without a Python __init__ frame (every field passed; bot.frozen.maker).
_make_delta = maker(BookDelta)
_make_deferred = maker(DeferredBookDelta)
_make_trade = maker(Trade)

# What a frame is, decided from its stream name (or, without an envelope, its event type).
_SKIP: Final = 0
_DEPTH: Final = 1
_TRADE: Final = 2
_AGG_TRADE: Final = 3
_UNKNOWN: Final = 4

_PARSE_ERRORS: Final = (KeyError, TypeError, ValueError, IndexError, AttributeError)

# One buffered diff: (U, u, pu or -1 on spot, the delta ready to emit).
_Diff = tuple[int, int, int, BookDelta | DeferredBookDelta]


def normalize_symbol(symbol: str) -> str:
    """Return Binance's spelling of ``symbol``: "btc/usdt", "BTC-USDT" -> "BTCUSDT".

    COIN-M contract names keep their underscore ("BTCUSD_PERP", "BTCUSD_240927").

    Raises:
        ValueError: Nothing is left, or characters other than letters, digits and "_" remain.
    """
    name = symbol.replace("/", "").replace("-", "").strip().upper()
    if not name or not all(c.isalnum() or c == "_" for c in name) or not name.isascii():
        raise ValueError(f"not a Binance symbol: {symbol!r}")
    return name


def is_rest_snapshot(raw: str | bytes) -> bool:
    """Tell whether a recorded line is a REST depth snapshot body rather than a stream frame.

    hftbacktest captures put the ``GET /api/v3/depth`` (``/fapi/v1/depth``, ``/dapi/v1/depth``)
    response in the middle of the websocket frames, as bare JSON with no ``stream`` key::

        {"lastUpdateId":50093239218,"bids":[["61837.63000000","3.78826000"], ...],"asks":[...]}
    """
    head = raw[:64]
    if isinstance(head, bytes):
        return b'"lastUpdateId"' in head and b'"stream"' not in head
    return '"lastUpdateId"' in head and '"stream"' not in head


def parse_book_ticker(raw: str | bytes) -> tuple[int, float, float] | None:
    """Return ``(u, best_bid, best_ask)`` from a ``bookTicker`` frame, or None for anything else.

    Used as an oracle for the rebuilt book (same ``u`` means same best bid and ask); the engine
    itself does not consume ``bookTicker``. Real spot frame::

        {"stream":"btcusdt@bookTicker","data":{"u":50093239212,"s":"BTCUSDT",
         "b":"61837.63000000","B":"3.78826000","a":"61837.64000000","A":"1.54698000"}}

    Futures frames add ``"e":"bookTicker"``, ``"T"`` and ``"E"`` (COIN-M also ``"ps"``).
    """
    try:
        msg = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if type(msg) is not dict:
        return None
    stream = msg.get("stream")
    if stream is not None:
        if type(stream) is not str or not stream.endswith("@bookTicker"):
            return None
        msg = msg.get("data")
        if type(msg) is not dict:
            return None
    if msg.get("e", "bookTicker") != "bookTicker":
        return None
    try:
        update_id = msg["u"]
        bid = float(msg["b"])
        ask = float(msg["a"])
    except _PARSE_ERRORS:
        return None
    if type(update_id) is not int or not (math.isfinite(bid) and math.isfinite(ask)):
        return None
    return update_id, bid, ask


# Typed decoding of depth frames: msgspec turns the decimal strings into floats and checks
# every level (price finite and > 0, quantity finite and >= 0) in C, ~5x faster than
# json.loads plus float() per value; diffs of hundreds of levels are the latency tail.
_FLOAT_MAX: Final = sys.float_info.max
_WirePrice = Annotated[float, msgspec.Meta(gt=0.0, le=_FLOAT_MAX)]
_WireQty = Annotated[float, msgspec.Meta(ge=0.0, le=_FLOAT_MAX)]
_WireLevels = list[tuple[_WirePrice, _WireQty]]


class _DepthData(msgspec.Struct):
    s: str
    E: int
    U: int
    u: int
    b: _WireLevels
    a: _WireLevels
    pu: int = -1


class _DepthEnvelope(msgspec.Struct):
    data: _DepthData


class _Snapshot(msgspec.Struct):
    lastUpdateId: int  # the venue's field name
    bids: _WireLevels
    asks: _WireLevels
    E: int = 0


class _RawDepthData(msgspec.Struct):
    s: str
    E: int
    U: int
    u: int
    b: msgspec.Raw
    a: msgspec.Raw
    pu: int = -1


class _RawDepthEnvelope(msgspec.Struct):
    data: _RawDepthData


class _TradeData(msgspec.Struct):
    s: str
    T: int
    p: str
    q: str
    m: bool
    t: int | None = None  # @trade
    a: int | None = None  # @aggTrade
    X: str | None = None  # futures: MARKET, LIQUIDATION, INSURANCE_FUND, ADL


class _TradeEnvelope(msgspec.Struct):
    data: _TradeData


_TRADE_DECODER: Final = msgspec.json.Decoder(_TradeEnvelope)
_DEPTH_DECODER: Final = msgspec.json.Decoder(_DepthEnvelope, strict=False)
_RAW_DEPTH_DECODER: Final = msgspec.json.Decoder(_RawDepthEnvelope, strict=False)
_SNAPSHOT_DECODER: Final = msgspec.json.Decoder(_Snapshot, strict=False)

_DECODE_ERRORS: Final = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError)


def _levels(raw_levels: Any) -> tuple[Level, ...] | None:
    """Convert wire levels ``[["61837.63", "3.78"], ...]`` to floats; None if any is corrupt.

    A price must be finite and > 0, a quantity finite and >= 0 (0 removes the level).
    """
    if type(raw_levels) is not list:
        return None
    # One pass: the filter converts and checks each level; a dropped level means a corrupt one.
    levels = [
        (price, qty)
        for raw_price, raw_qty in raw_levels
        if 0.0 < (price := float(raw_price)) < _INF and 0.0 <= (qty := float(raw_qty)) < _INF
    ]
    if len(levels) != len(raw_levels):
        return None
    return tuple(levels)


class _DeepLevels:
    """The deferred part of a split diff (``DeepLevels``): raw level arrays, decoded on demand.

    Each side is sorted by price; ``*_at_end`` says whether the levels nearest the touch are
    at the end of its array (taken from the end) or at the start.
    """

    __slots__ = ("_ask_min", "_asks", "_asks_at_end", "_bid_max", "_bids", "_bids_at_end",
                 "_epoch", "_near", "_parser")

    def __init__(self, parser: BinanceParser, epoch: int, near: BookDelta, bids: str,
                 bids_at_end: bool, bid_max: float, asks: str, asks_at_end: bool,
                 ask_min: float) -> None:
        self._parser = parser
        self._epoch = epoch
        self._near = near
        self._bids = bids
        self._bids_at_end = bids_at_end
        self._bid_max = bid_max
        self._asks = asks
        self._asks_at_end = asks_at_end
        self._ask_min = ask_min

    def through(self, bid_floor: float, ask_cap: float,
                at_least: int = 1) -> tuple[BookDelta, float, float]:
        """Decode the deferred levels that can reach ``bid_floor`` / ``ask_cap`` (``DeepLevels``).

        Only prices are read to count them (``count_through``); just those levels are decoded.
        """
        bids: tuple[Level, ...] = ()
        asks: tuple[Level, ...] = ()
        try:
            if self._bids and self._bid_max >= bid_floor:
                bids = self._take_bids(max(
                    at_least, count_through(self._bids, bid_floor, self._bids_at_end, True)))
            if self._asks and self._ask_min <= ask_cap:
                asks = self._take_asks(max(
                    at_least, count_through(self._asks, ask_cap, self._asks_at_end, False)))
        except ValueError as exc:
            raise self._corrupt(exc) from None
        return self._delta(bids, asks), self._bid_max, self._ask_min

    def settle(self, book: SettleBook) -> tuple[BookDelta, float, float]:
        """Take the deferred levels ``book`` needs for a final touch (``DeepLevels``).

        The book walks them against its own levels and splits them off (``settle_take``):
        each read once, and handed over as a compiled ``LevelRun`` where the extension is
        built, so a sweep that deletes hundreds of levels makes no Python object per level.
        """
        bids: Sequence[Level] = ()
        asks: Sequence[Level] = ()
        try:
            if self._bids:
                taken, bid_max, rest = book.settle_take(BUY, self._bids, self._bids_at_end)
                if taken:
                    bids, self._bids = taken, rest
                    self._bid_max = -_INF if bid_max != bid_max else bid_max
            if self._asks:
                taken, ask_min, rest = book.settle_take(SELL, self._asks,
                                                        self._asks_at_end)
                if taken:
                    asks, self._asks = taken, rest
                    self._ask_min = _INF if ask_min != ask_min else ask_min
        except ValueError as exc:
            raise self._corrupt(exc) from None
        return self._delta(bids, asks), self._bid_max, self._ask_min

    def _take_bids(self, count: int) -> tuple[Level, ...]:
        """Decode the ``count`` nearest deferred bids; keep the rest raw (ValueError if corrupt)."""
        bids, bid_max, self._bids = split_levels(self._bids, count, self._bids_at_end)
        self._bid_max = -_INF if bid_max != bid_max else bid_max
        return bids

    def _take_asks(self, count: int) -> tuple[Level, ...]:
        """Decode the ``count`` nearest deferred asks; keep the rest raw (ValueError if corrupt)."""
        asks, ask_min, self._asks = split_levels(self._asks, count, self._asks_at_end)
        self._ask_min = _INF if ask_min != ask_min else ask_min
        return asks

    def rest(self) -> BookDelta:
        """Decode every level not handed out yet (see ``DeepLevels``), as ``LevelRun``s."""
        bids, asks = self._decode_rest(parse_run)
        return self._delta(bids, asks)

    def whole(self) -> BookDelta:
        """Decode every level, the near ones included, in wire order (see ``DeepLevels``)."""
        # Tuples (parse_levels gives them; tuple() keeps them), to join with the near levels.
        deep_b, deep_a = (tuple(levels) for levels in self._decode_rest(parse_levels))
        near = self._near
        bids = deep_b + tuple(near.bids) if self._bids_at_end else tuple(near.bids) + deep_b
        asks = deep_a + tuple(near.asks) if self._asks_at_end else tuple(near.asks) + deep_a
        return self._delta(bids, asks)

    def _decode_rest(self, parse: Callable[[str], Sequence[Level]]
                     ) -> tuple[Sequence[Level], Sequence[Level]]:
        """Decode both sides' levels not handed out yet; nothing is left after."""
        try:
            bids = parse(self._bids) if self._bids else ()
            asks = parse(self._asks) if self._asks else ()
        except ValueError as exc:
            raise self._corrupt(exc) from None
        self._bids = self._asks = ""
        self._bid_max, self._ask_min = -_INF, _INF
        return bids, asks

    def _delta(self, bids: Sequence[Level], asks: Sequence[Level]) -> BookDelta:
        near = self._near
        return _make_delta(near.ts_exchange_ns, near.ts_local_ns, near.symbol, bids, asks,
                           near.sequence, True)

    def _corrupt(self, exc: Exception) -> DataError:
        self._bids = self._asks = ""
        self._bid_max, self._ask_min = -_INF, _INF
        self._parser._deep_corrupt(self._epoch)
        near = self._near
        return DataError(f"{near.symbol}: corrupt depth level in update {near.sequence}: {exc}")


DEEP_FIELDS = ("_parser", "_epoch", "_near", "_bids", "_bids_at_end", "_bid_max", "_asks",
               "_asks_at_end", "_ask_min")
"""``_DeepLevels.__init__``'s parameters: it only stores each in the slot of that name."""

# One per split diff: the compiled Maker stores the slots without a Python frame.
_make_deep: Callable[..., _DeepLevels] = (
    cbook.Maker(_DeepLevels, DEEP_FIELDS) if cbook is not None else _DeepLevels)


class BinanceParser:
    """Pure parser of one Binance symbol's depth and trade streams (implements ``FeedParser``).

    Attributes:
        venue: "binance", "binance-usdm" or "binance-coinm".
        symbol: The normalised symbol, e.g. "BTCUSDT" or "BTCUSD_PERP"; events carry it.
        market: "spot", "usdm" or "coinm".
        stats: Counters (frames, events, ignored, malformed, gaps, resyncs, stale diffs).
        buffer_overflows: Diffs dropped (oldest first) because the pre-snapshot buffer was full.
    """

    def __init__(
        self,
        symbol: str,
        market: Market = "spot",
        depth_speed_ms: int = 100,
        *,
        trade_stream: TradeStream = "trade",
        ws_base: str | None = None,
        rest_base: str | None = None,
        buffer_limit: int = 10_000,
        touch_levels: int = 0,
    ) -> None:
        """Create a parser; it starts out waiting for a REST snapshot.

        Args:
            symbol: "BTCUSDT", "btcusdt", "BTC/USDT", "BTC-USDT"; COIN-M "BTCUSD_PERP".
            market: "spot", "usdm" (USD-M futures) or "coinm" (COIN-M futures).
            depth_speed_ms: Diff-depth update speed: spot 100 or 1000, futures 0, 100, 250
                or 500.
            trade_stream: Subscribe to individual trades ("trade") or aggregated ones
                ("aggTrade"); frames of the other flavour are ignored so no trade counts twice.
            ws_base: Websocket base address instead of Binance's (tests use 127.0.0.1).
            rest_base: REST base address instead of Binance's.
            buffer_limit: How many diffs to keep while waiting for a snapshot.
            touch_levels: When > 0, large in-sync diffs become ``DeferredBookDelta``: this
                many changed levels per side nearest the touch are decoded at once, the rest
                when asked (for the engine, which quotes before booking deep levels).

        Raises:
            ValueError: Unknown market, speed or trade stream, bad symbol, or buffer_limit < 1.
        """
        if market not in _VENUES:
            raise ValueError(f"market must be one of {sorted(_VENUES)}, got {market!r}")
        speeds, default_speed = _DEPTH_SPEEDS[market]
        if depth_speed_ms not in speeds:
            raise ValueError(
                f"depth_speed_ms for {market} must be one of {sorted(speeds)}, got {depth_speed_ms}"
            )
        if trade_stream not in ("trade", "aggTrade"):
            raise ValueError(f"trade_stream must be 'trade' or 'aggTrade', got {trade_stream!r}")
        if buffer_limit < 1:
            raise ValueError(f"buffer_limit must be >= 1, got {buffer_limit}")
        if touch_levels < 0:
            raise ValueError(f"touch_levels must be >= 0, got {touch_levels}")
        self.market: Market = market
        self.venue = _VENUES[market]
        self.symbol = normalize_symbol(symbol)
        self.stats = FeedStats()
        # Binance pings at the websocket level (the library answers); no application ping.
        self.heartbeat_interval_s: float | None = None
        self.buffer_overflows = 0
        self._futures = market != "spot"
        self._ws_base = (ws_base or _WS_BASES[market]).rstrip("/")
        self._rest_base = (rest_base or _REST_BASES[market]).rstrip("/")

        lower = self.symbol.lower()
        self._stream_prefix = lower + "@"
        self._depth_prefix = lower + "@depth"
        speed = "" if depth_speed_ms == default_speed else f"@{depth_speed_ms}ms"
        self._depth_stream = self._depth_prefix + speed
        self._trade_stream = f"{lower}@{trade_stream}"
        self._trade_kind = _TRADE if trade_stream == "trade" else _AGG_TRADE
        self._stream_kinds: dict[str, int] = {}
        # _envelope_kind in one compiled call (None for text it leaves to the Python).
        self._envelope_kernel: Callable[[str], int | None] | None = None
        if cbook is not None and lower.isascii():
            self._envelope_kernel = cbook.StreamKind(
                self._depth_prefix, self._trade_stream, _DEPTH, self._trade_kind, _SKIP, _UNKNOWN)

        self._touch_levels = touch_levels
        # An in-sync diff, from raw frame to event, in one compiled call when splitting
        # (bot/_cbook.c's DepthRoute; the path through _on_split_depth_frame is its reference).
        self._route: Callable[[str, int, int, BinanceParser, int],
                              BookDelta | DeferredBookDelta | None] | None = None
        if touch_levels and cbook is not None and lower.isascii():
            self._route = cbook.DepthRoute(self._depth_prefix, self.symbol, touch_levels,
                                           self._futures, _make_delta, _make_deep,
                                           _make_deferred)
        # Counts connections and syncs, so a deferred part that turns out corrupt resyncs only
        # the book it belongs to.
        self._epoch = 0
        self._buffer: deque[_Diff] = deque(maxlen=buffer_limit)
        self._resync = _REST_SNAPSHOT
        self._last_update_id = 0
        # Right after a snapshot the next diff must connect to it (U/pu against lastUpdateId)
        # rather than continue a previous diff.
        self._awaiting_first = False

    # ----------------------------------------------------------------------------------------
    # FeedParser: addresses and state
    # ----------------------------------------------------------------------------------------

    @property
    def resync(self) -> Resync:
        """Return REST_SNAPSHOT until a snapshot has synced the book (and after a gap)."""
        return self._resync

    @property
    def last_update_id(self) -> int:
        """Return the ``u`` of the last applied diff (the snapshot's id right after one)."""
        return self._last_update_id

    @property
    def touch_levels(self) -> int:
        """Return how many levels per side of a large in-sync diff are decoded at once (0: the
        diff is not split). Fixed at construction: the compiled route holds it too."""
        return self._touch_levels

    @property
    def buffered(self) -> int:
        """Return how many diffs wait for a snapshot."""
        return len(self._buffer)

    def ws_url(self) -> str:
        """Return the combined-stream address: diff depth, trades and the book ticker."""
        streams = "/".join(
            (self._depth_stream, self._trade_stream, self._stream_prefix + "bookTicker")
        )
        return f"{self._ws_base}/stream?streams={streams}"

    def subscribe_frames(self) -> list[str]:
        """Return no frames: the combined-stream URL subscribes."""
        return []

    def heartbeat_frame(self) -> str | None:
        """Return None: Binance needs no application-level ping."""
        return None

    def snapshot_url(self) -> str:
        """Return the REST depth snapshot address (1000 levels)."""
        path = _DEPTH_PATHS[self.market]
        return f"{self._rest_base}{path}?symbol={self.symbol}&limit={_SNAPSHOT_LIMIT}"

    def reset(self) -> None:
        """Forget the buffer and the sequence state; wait for a new snapshot (new connection)."""
        self._buffer.clear()
        self._resync = _REST_SNAPSHOT
        self._last_update_id = 0
        self._awaiting_first = False
        self._epoch += 1

    # ----------------------------------------------------------------------------------------
    # FeedParser: frames
    # ----------------------------------------------------------------------------------------

    def on_message(self, raw: str | bytes, ts_local_ns: int) -> list[MarketEvent]:
        """Parse one websocket frame into events, checking the depth sequence.

        Args:
            raw: The frame as received: a combined-stream envelope
                ``{"stream":"btcusdt@depth@100ms","data":{...}}`` or a raw-stream payload.
            ts_local_ns: Local receive time.

        Returns:
            The events in order: a ``Trade``; a ``BookDelta`` (in sync); a ``BookInvalid`` (gap);
            or nothing (other streams and symbols, acks, buffered or stale diffs, malformed).
        """
        stats = self.stats
        stats.messages += 1
        if isinstance(raw, bytes):
            try:
                text = raw.decode()
            except UnicodeDecodeError:
                stats.malformed += 1
                return []
        else:
            text = raw
        # Fast path: decide from the stream name before paying for json.loads.
        kernel = self._envelope_kernel
        kind = kernel(text) if kernel is not None else None
        if kind is None:
            kind = self._envelope_kind(text)
        if kind == _SKIP:
            stats.ignored += 1
            return []
        if kind == _DEPTH:
            return self._on_depth_frame(text, ts_local_ns)
        if kind == self._trade_kind:
            return self._on_trade_frame(text, ts_local_ns)
        try:
            msg = json.loads(text)
        except (ValueError, RecursionError):
            stats.malformed += 1
            return []
        if type(msg) is not dict:
            stats.malformed += 1
            return []
        if kind == _UNKNOWN:
            kind, data = self._classify(msg)
            if kind == _SKIP:
                stats.ignored += 1
                return []
        else:
            data = msg.get("data")
        if kind == _UNKNOWN or type(data) is not dict:
            stats.malformed += 1
            return []
        try:
            if kind == _DEPTH:
                return self._on_depth(data, ts_local_ns)
            return self._on_trade(data, ts_local_ns, kind == _AGG_TRADE)
        except _PARSE_ERRORS:
            stats.malformed += 1
            return []

    def on_snapshot(self, raw: str | bytes, ts_local_ns: int) -> list[MarketEvent]:
        """Sync the book from a REST depth snapshot body and the buffered diffs.

        Real USD-M body (levels trimmed; spot has no ``E``/``T``, COIN-M adds ``symbol``,
        ``pair``)::

            {"lastUpdateId":5123107852948,"E":1723161256501,"T":1723161256493,
             "bids":[["61800.20","2.909"],["61800.10","0.696"]],
             "asks":[["61800.30","2.525"],["61800.40","0.050"]]}

        While in sync, a snapshot older than the book is ignored and a newer one replaces it.

        Args:
            raw: The response body.
            ts_local_ns: Local receive time.

        Returns:
            ``[BookSnapshot(sequence=lastUpdateId), BookDelta...]`` for the buffered diffs that
            follow it (ending with a ``BookInvalid`` if they hold a gap); ``[BookInvalid]`` when
            the snapshot is older than the buffered diffs (updates in between are lost, fetch
            another); ``[]`` if the body is malformed or the snapshot is stale.
        """
        stats = self.stats
        try:
            body = _SNAPSHOT_DECODER.decode(raw)
        except _DECODE_ERRORS:
            stats.malformed += 1
            return []
        last_id, ts_ms = body.lastUpdateId, body.E
        bids, asks = tuple(body.bids), tuple(body.asks)
        if self._resync is _NONE and last_id <= self._last_update_id:
            stats.ignored += 1
            return []
        # Spot REST snapshots carry no time: 0 means "unknown" on the venue's clock.
        ts_exchange_ns = ts_ms * _MS_TO_NS
        futures = self._futures
        if futures:
            pending = [diff for diff in self._buffer if diff[1] >= last_id]
        else:
            pending = [diff for diff in self._buffer if diff[1] > last_id]
        self._buffer.clear()
        if pending:
            first_id, final_id, prev_id, _ = pending[0]
            reason = self._connect_error(last_id, first_id, final_id, prev_id)
            if reason is not None:
                # Updates between the snapshot and the oldest diff we hold are lost: a newer
                # snapshot is needed, and the diffs stay buffered for it.
                self._buffer.extend(pending)
                return [self._gap(ts_exchange_ns, ts_local_ns, reason)]
        self._resync = _NONE
        self._last_update_id = last_id
        self._awaiting_first = True
        self._epoch += 1
        stats.book_events += 1
        out: list[MarketEvent] = [
            BookSnapshot(ts_exchange_ns, ts_local_ns, self.symbol, bids, asks, last_id, True)
        ]
        for first_id, final_id, prev_id, delta in pending:
            out.extend(self._sequence(first_id, final_id, prev_id, delta))
        return out

    # ----------------------------------------------------------------------------------------
    # Parsing
    # ----------------------------------------------------------------------------------------

    def _envelope_kind(self, text: str) -> int:
        """Return what a combined-stream frame carries, read from its envelope's stream name
        (``_UNKNOWN`` without one): the reference of the compiled ``StreamKind``."""
        if text.startswith(_ENVELOPE):
            end = text.find('"', _ENVELOPE_LEN)
            if end > 0:
                stream = text[_ENVELOPE_LEN:end]
                cached = self._stream_kinds.get(stream)  # _stream_kind's cache, read inline
                return self._stream_kind(stream) if cached is None else cached
        return _UNKNOWN

    def _stream_kind(self, stream: str) -> int:
        """Return what a stream name carries for this parser (cached: few distinct names)."""
        kind = self._stream_kinds.get(stream)
        if kind is not None:
            return kind
        if stream == self._trade_stream:
            kind = self._trade_kind
        elif stream.startswith(self._depth_prefix) and (
            len(stream) == len(self._depth_prefix) or stream[len(self._depth_prefix)] == "@"
        ):
            # Any diff-depth speed, so a recording replays whatever speed it was made with;
            # partial-depth streams ("@depth5", "@depth20@100ms") are not diffs.
            kind = _DEPTH
        else:
            kind = _SKIP
        if len(self._stream_kinds) < _MAX_CACHED_STREAMS:
            self._stream_kinds[stream] = kind
        return kind

    def _classify(self, msg: dict[str, Any]) -> tuple[int, Any]:
        """Classify a frame that does not start with the envelope; return (kind, payload)."""
        stream = msg.get("stream")
        if stream is not None:
            if type(stream) is not str:
                return _UNKNOWN, None
            return self._stream_kind(stream), msg.get("data")
        # A raw-stream payload (/ws/<stream>): the event type and symbol say what it is.
        event = msg.get("e")
        if event is not None:
            if msg.get("s") != self.symbol:
                return _SKIP, None
            if event == "depthUpdate":
                return _DEPTH, msg
            if event == "trade":
                return (_TRADE if self._trade_kind == _TRADE else _SKIP), msg
            if event == "aggTrade":
                return (_AGG_TRADE if self._trade_kind == _AGG_TRADE else _SKIP), msg
            return _SKIP, None
        # Subscription acks ({"result":null,"id":1}) and the spot raw bookTicker (no "e").
        if ("result" in msg and "id" in msg) or ("u" in msg and "s" in msg and "b" in msg):
            return _SKIP, None
        return _UNKNOWN, None

    def _on_depth_frame(self, text: str, ts_local_ns: int) -> list[MarketEvent]:
        """Decode a combined-stream depth frame (the hot path).

        In sync and splitting (``touch_levels``), every diff is read in place and split
        (``_on_split_depth_frame``): even a short one costs less that way, its levels read
        into compiled runs, than through the typed decoder, which converts each level's
        strings to floats. Otherwise the typed decoder.
        """
        if self._touch_levels and self._resync is _NONE and not self._awaiting_first:
            route = self._route
            if route is not None:
                # _on_split_depth_frame's accepting case in one call; None for anything else
                # (another layout, a corrupt level, a gap...), with nothing done.
                delta = route(text, ts_local_ns, self._last_update_id, self, self._epoch)
                if delta is not None:
                    self._last_update_id = delta.sequence
                    self.stats.book_events += 1
                    return [delta]
            return self._on_split_depth_frame(text, ts_local_ns)
        try:
            data = _DEPTH_DECODER.decode(text).data
        except _DECODE_ERRORS:
            self.stats.malformed += 1
            return []
        if data.s != self.symbol or (self._futures and data.pu < 0):
            self.stats.malformed += 1
            return []
        delta = _make_delta(data.E * _MS_TO_NS, ts_local_ns, self.symbol, tuple(data.b),
                            tuple(data.a), data.u, True)
        return self._sequence(data.U, data.u, data.pu if self._futures else -1, delta)

    def _on_split_depth_frame(self, text: str, ts_local_ns: int) -> list[MarketEvent]:
        """Split an in-sync diff: decode the levels nearest the touch, defer the rest.

        Binance lists both sides of a diff in ascending price order, so the changed bids
        nearest the touch are the last ones and the asks the first ones. Binance's compact
        layout is read and split in place in one call, without a JSON decoder
        (``split_depth``); any other text is decoded with the arrays left raw, their JSON
        syntax checked. The ``touch_levels`` levels of each side nearest the touch plus one
        boundary level are decoded and validated now, the deep rest when the engine asks.
        """
        stats = self.stats
        count = self._touch_levels
        try:
            # The compact layout, read and split in place in one call (no JSON decoder).
            split = split_depth(text, count)
        except ValueError:  # a corrupt near level
            stats.malformed += 1
            return []
        if split is not None:
            (symbol, ts_ms, first_id, final_id, prev_id, near_b, near_a, deep_b, bids_at_end,
             bid_max, deep_a, asks_at_end, ask_min) = split
        else:
            try:
                data = _RAW_DEPTH_DECODER.decode(text).data
                bids_raw = bytes(data.b).decode()
                asks_raw = bytes(data.a).decode()
            except _DECODE_ERRORS:
                stats.malformed += 1
                return []
            symbol, ts_ms, first_id, final_id, prev_id = data.s, data.E, data.U, data.u, data.pu
            try:
                bids_at_end = nearest_at_end(bids_raw, True)
                asks_at_end = nearest_at_end(asks_raw, False)
                near_b, deep_bid_max, deep_b = split_run(bids_raw, count, bids_at_end)
                near_a, deep_ask_min, deep_a = split_run(asks_raw, count, asks_at_end)
            except ValueError:
                stats.malformed += 1
                return []
            bid_max = -_INF if deep_bid_max != deep_bid_max else deep_bid_max
            ask_min = _INF if deep_ask_min != deep_ask_min else deep_ask_min
        if symbol != self.symbol or (self._futures and prev_id < 0):
            stats.malformed += 1
            return []
        ts_exchange_ns = ts_ms * _MS_TO_NS
        near = _make_delta(ts_exchange_ns, ts_local_ns, self.symbol, near_b, near_a, final_id,
                           True)
        if not deep_b and not deep_a:
            delta: BookDelta | DeferredBookDelta = near
        else:
            deep = _make_deep(self, self._epoch, near, deep_b, bids_at_end, bid_max, deep_a,
                              asks_at_end, ask_min)
            delta = _make_deferred(ts_exchange_ns, ts_local_ns, self.symbol, final_id, near,
                                   bid_max, ask_min, deep)
        # In sync (this path's condition): _sequence's accepting case, inline.
        book_id = self._last_update_id
        if final_id > book_id and (prev_id == book_id if self._futures
                                   else first_id <= book_id + 1):
            self._last_update_id = final_id
            stats.book_events += 1
            return [delta]
        return self._sequence(first_id, final_id, prev_id if self._futures else -1, delta)

    def _deep_corrupt(self, epoch: int) -> None:
        """The deferred part of a diff already handed out was corrupt: resync the book."""
        self.stats.malformed += 1
        if epoch != self._epoch or self._resync is not _NONE:
            return  # a reconnect or a resync since: the book is being rebuilt anyway
        self.stats.resyncs += 1
        self._resync = _REST_SNAPSHOT
        self._awaiting_first = False
        self._buffer.clear()

    def _on_depth(self, data: dict[str, Any], ts_local_ns: int) -> list[MarketEvent]:
        """Parse a diff-depth event and pass it through the sequence rules.

        Real spot frame (levels trimmed)::

            {"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1723161255308,
             "s":"BTCUSDT","U":50093239203,"u":50093239207,"b":[["55653.87000000","0.00000000"]],
             "a":[["61838.04000000","0.32332000"],["61844.30000000","0.40163000"]]}}

        Futures add ``"T"`` and ``"pu"`` (the previous event's ``u``), COIN-M also ``"ps"``::

            {"stream":"btcusd_perp@depth@0ms","data":{"e":"depthUpdate","E":1723161257460,
             "T":1723161257451,"s":"BTCUSD_PERP","ps":"BTCUSD","U":1007198631580,
             "u":1007198631835,"pu":1007198631565,"b":[["61794.4","392"]],"a":[["61801.4","0"]]}}

        Raises:
            KeyError, TypeError, ValueError: The event is malformed (the caller counts it).
        """
        first_id = data["U"]
        final_id = data["u"]
        prev_id = data["pu"] if self._futures else -1
        ts_ms = data["E"]
        if (
            type(first_id) is not int
            or type(final_id) is not int
            or type(prev_id) is not int
            or type(ts_ms) is not int
            or data["s"] != self.symbol
        ):
            raise ValueError("depth event ids, time or symbol")
        bids = _levels(data["b"])
        asks = _levels(data["a"])
        if bids is None or asks is None:
            raise ValueError("corrupt depth level")
        delta = _make_delta(ts_ms * _MS_TO_NS, ts_local_ns, self.symbol, bids, asks, final_id,
                            True)
        return self._sequence(first_id, final_id, prev_id, delta)

    def _on_trade_frame(self, text: str, ts_local_ns: int) -> list[MarketEvent]:
        """Decode a combined-stream trade frame with the typed decoder (the hot path).

        Same checks as ``_on_trade``: a price or quantity that is not a finite positive
        decimal, a side that is not a boolean, or a missing field makes the frame malformed.
        """
        try:
            data = _TRADE_DECODER.decode(text).data
        except _DECODE_ERRORS:
            self.stats.malformed += 1
            return []
        if data.X is not None and data.X not in _BOOK_TRADE_TYPES:
            self.stats.ignored += 1
            return []
        trade_id = data.t if self._trade_kind == _TRADE else data.a
        try:
            price = float(data.p)
            qty = float(data.q)
        except ValueError:
            price = qty = _NAN
        if not (0.0 < price < _INF and 0.0 < qty < _INF) or trade_id is None \
                or data.s != self.symbol:
            self.stats.malformed += 1
            return []
        self.stats.trades += 1
        return [_make_trade(data.T * _MS_TO_NS, ts_local_ns, self.symbol, price, qty,
                            SELL if data.m else BUY, str(trade_id))]

    def _on_trade(
        self, data: dict[str, Any], ts_local_ns: int, aggregated: bool
    ) -> list[MarketEvent]:
        """Parse a trade (``@trade``) or aggregated trade (``@aggTrade``).

        Real USD-M ``@trade`` frame (spot has no ``"X"``, and ``"M"`` instead)::

            {"stream":"btcusdt@trade","data":{"e":"trade","E":1723161256322,"T":1723161256322,
             "s":"BTCUSDT","t":5266583935,"p":"61800.30","q":"0.006","X":"MARKET","m":false}}

        ``@aggTrade`` has ``"a"`` (aggregate id) instead of ``"t"``, plus ``"f"``/``"l"``. ``m``
        true means the buyer was the maker, so the aggressor sold.

        Raises:
            KeyError, TypeError, ValueError: The trade is malformed (the caller counts it).
        """
        trade_type = data.get("X")
        if trade_type is not None and trade_type not in _BOOK_TRADE_TYPES:
            self.stats.ignored += 1
            return []
        price = float(data["p"])
        qty = float(data["q"])
        buyer_is_maker = data["m"]
        trade_id = data["a" if aggregated else "t"]
        ts_ms = data["T"]
        if (
            not (0.0 < price < _INF and 0.0 < qty < _INF)
            or type(buyer_is_maker) is not bool
            or type(ts_ms) is not int
            or data["s"] != self.symbol
        ):
            raise ValueError("trade price, qty, side, time or symbol")
        self.stats.trades += 1
        return [
            _make_trade(
                ts_ms * _MS_TO_NS,
                ts_local_ns,
                self.symbol,
                price,
                qty,
                SELL if buyer_is_maker else BUY,
                str(trade_id),
            )
        ]

    # ----------------------------------------------------------------------------------------
    # Sequence
    # ----------------------------------------------------------------------------------------

    def _sequence(
        self, first_id: int, final_id: int, prev_id: int, delta: BookDelta | DeferredBookDelta
    ) -> list[MarketEvent]:
        """Buffer, drop, apply or reject one diff according to the sync state."""
        if self._resync is not _NONE:
            if len(self._buffer) == self._buffer.maxlen:
                self.buffer_overflows += 1  # the deque drops the oldest on append
            self._buffer.append((first_id, final_id, prev_id, delta))
            return []
        book_id = self._last_update_id
        futures = self._futures
        if self._awaiting_first:
            # Diffs the snapshot already holds were in flight while it was fetched: dropping
            # them is part of the sync, not a stale feed. Futures keep u == lastUpdateId.
            if final_id < book_id or (final_id == book_id and not futures):
                return []
            reason = self._connect_error(book_id, first_id, final_id, prev_id)
            if reason is not None:
                return self._gap_at(delta, first_id, final_id, prev_id, reason)
            self._awaiting_first = False
        elif final_id <= book_id:
            # A duplicate or out-of-order diff: the book already holds it.
            self.stats.stale_dropped += 1
            return []
        elif futures and prev_id != book_id:
            return self._gap_at(
                delta,
                first_id,
                final_id,
                prev_id,
                f"sequence gap: expected pu={book_id}, got pu={prev_id} (u={final_id})",
            )
        elif not futures and first_id > book_id + 1:
            return self._gap_at(
                delta,
                first_id,
                final_id,
                prev_id,
                f"sequence gap: expected U={book_id + 1}, got U={first_id} (u={final_id})",
            )
        self._last_update_id = final_id
        self.stats.book_events += 1
        return [delta]

    def _connect_error(
        self, snapshot_id: int, first_id: int, final_id: int, prev_id: int
    ) -> str | None:
        """Return why the first diff after a snapshot does not connect to it, or None if it does.

        Spot update ids are per symbol, so the diff must start at or before ``snapshot_id + 1``.
        Futures ids are shared by all symbols, so ``snapshot_id`` may fall between this symbol's
        previous diff (``pu``) and this one's ``U``: the diff connects when either is at or
        before the snapshot (Binance documents ``U <= lastUpdateId <= u``, a special case).
        """
        if self._futures:
            if first_id <= snapshot_id or prev_id <= snapshot_id:
                return None
            expected = f"U <= {snapshot_id} or pu <= {snapshot_id}"
            got = f"U={first_id} pu={prev_id}"
        else:
            if first_id <= snapshot_id + 1:
                return None
            expected = f"U <= {snapshot_id + 1}"
            got = f"U={first_id}"
        return (
            f"sequence gap: expected {expected} after snapshot {snapshot_id}, "
            f"got {got} (u={final_id})"
        )

    def _gap_at(
        self,
        delta: BookDelta | DeferredBookDelta,
        first_id: int,
        final_id: int,
        prev_id: int,
        reason: str,
    ) -> list[MarketEvent]:
        """Invalidate on a gap; the diff that showed it starts the new buffer."""
        invalid = self._gap(delta.ts_exchange_ns, delta.ts_local_ns, reason)
        self._buffer.clear()
        self._buffer.append((first_id, final_id, prev_id, delta))
        return [invalid]

    def _gap(self, ts_exchange_ns: int, ts_local_ns: int, reason: str) -> BookInvalid:
        """Count a gap and ask the shell for a new snapshot."""
        self.stats.gaps += 1
        self.stats.resyncs += 1
        self._resync = _REST_SNAPSHOT
        self._awaiting_first = False
        return BookInvalid(ts_exchange_ns, ts_local_ns, self.symbol, reason)
