"""Kraken spot websocket: pure parsers of the ``book`` and ``trade`` channels, v2 and v1.

``KrakenParser`` reads websocket v2 (``wss://ws.kraken.com/v2``), the live feed.
``KrakenV1Parser`` reads the deprecated v1 array messages; it exists to replay recordings made
with v1 (``cryptofeed/KRAKEN.jsonl.gz``) through the same checks.

Kraken books carry no sequence number: integrity rests on a CRC32 checksum of the top 10 levels
of each side, sent with every v2 message (snapshot included) and with every v1 update. The
checksum string is built from the *decimal text* of each level: for the 10 best asks (lowest
first) and then the 10 best bids (highest first), append the price and then the quantity, each
with the '.' removed and leading zeros stripped ("0.00100000" -> "100000"). The value is the
unsigned CRC32 of that string.

Kraken does not send removals for levels that fall below the subscribed depth, so after every
message the book is truncated to that depth; the emitted ``BookDelta`` lists those levels with
quantity 0, which keeps a consumer's ``OrderBook`` identical to the parser's. Levels are applied
in the order received (one message may update the same price twice).

v2 sends prices and quantities as JSON *numbers* written with the pair's full precision
(``45281.0``, ``0.10000000``); ``float`` would lose the trailing zeros the checksum needs, so
frames are decoded with ``json.loads(..., parse_float=str, parse_int=str)``, which keeps the
exact wire token. The events get ``float(token)``.

On a checksum mismatch the parser emits ``BookInvalid``, asks for ``Resync.RESUBSCRIBE`` and
drops updates until the next snapshot.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from adapters.feed import FeedStats, Resync
from adapters.textbook import TextBookSide
from bot.events import (
    NS_PER_SECOND,
    BookDelta,
    BookInvalid,
    BookSnapshot,
    MarketEvent,
    Side,
    Trade,
)

KRAKEN_WS_V2_URL = "wss://ws.kraken.com/v2"
"""Public websocket v2 endpoint."""

KRAKEN_WS_V1_URL = "wss://ws.kraken.com"
"""Public websocket v1 endpoint (deprecated; kept for replaying v1 recordings)."""

BOOK_DEPTHS = (10, 25, 100, 500, 1000)
"""Depths (levels per side) Kraken accepts for a book subscription."""

CHECKSUM_LEVELS = 10
"""Levels per side that the Kraken checksum covers, whatever the subscribed depth."""

# Kraken's v1 names for two assets; v2 uses the common names.
_V1_ASSET = {"BTC": "XBT", "DOGE": "XDG"}
_V2_ASSET = {v1: common for common, v1 in _V1_ASSET.items()}


class _Malformed(Exception):
    """A frame that does not have the shape the venue documents (internal to this module)."""


_DECODE_ERRORS = (
    _Malformed,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    InvalidOperation,
    UnicodeDecodeError,
)


def normalize_symbol(symbol: str) -> str:
    """Return the v2 name of a pair: "BTC/USD" from "btc-usd", "XBT/USD" or "BTC/USD".

    Raises:
        ValueError: ``symbol`` is not ``BASE/QUOTE`` (or ``BASE-QUOTE``).
    """
    base, sep, quote = symbol.strip().upper().replace("-", "/").partition("/")
    if not sep or not base or not quote or "/" in quote:
        raise ValueError(f"Kraken symbol must look like BTC/USD, not {symbol!r}")
    return f"{_V2_ASSET.get(base, base)}/{_V2_ASSET.get(quote, quote)}"


def v1_pair_name(symbol: str) -> str:
    """Return the v1 ``wsname`` of a pair ("BTC/USD" -> "XBT/USD")."""
    base, _, quote = normalize_symbol(symbol).partition("/")
    return f"{_V1_ASSET.get(base, base)}/{_V1_ASSET.get(quote, quote)}"


def checksum_digits(text: str) -> str:
    """Return a price or quantity as the checksum writes it: no '.', no leading zeros."""
    if "e" in text or "E" in text:
        # Defensive: a JSON number in exponent form is expanded to plain decimal notation.
        text = format(Decimal(text), "f")
    return text.replace(".", "").lstrip("0")


def kraken_checksum(asks: list[str], bids: list[str]) -> int:
    """Return the unsigned CRC32 Kraken sends, from levels already written as digits.

    Args:
        asks: Best-first (lowest first) ask levels, each ``checksum_digits(price)`` followed
            by ``checksum_digits(qty)``; at most ``CHECKSUM_LEVELS`` are used.
        bids: Best-first (highest first) bid levels, written the same way.
    """
    text = "".join(asks[:CHECKSUM_LEVELS]) + "".join(bids[:CHECKSUM_LEVELS])
    return zlib.crc32(text.encode())


def _rfc3339_ns(text: str) -> int:
    """Return ns since the epoch of an RFC 3339 time such as ``2023-10-06T17:35:55.440295Z``."""
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    fraction = ""
    head, dot, tail = text.partition(".")
    if dot:
        digits = len(tail) - len(tail.lstrip("0123456789"))
        fraction, text = tail[:digits], head + tail[digits:]
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise _Malformed(f"timestamp without a time zone: {text!r}")
    # Whole seconds are exact in a float; the fraction is added as an integer.
    return int(moment.timestamp()) * NS_PER_SECOND + int((fraction + "000000000")[:9])


def _epoch_s_ns(text: str) -> int:
    """Return ns since the epoch of a v1 time in seconds such as ``"1618678145.920470"``."""
    whole, _, fraction = text.partition(".")
    if not whole.isdigit() or (fraction and not fraction.isdigit()):
        raise _Malformed(f"bad epoch time {text!r}")
    return int(whole) * NS_PER_SECOND + int((fraction + "000000000")[:9])


# One parsed level: (price, checksum digits of price and qty, qty).
_WireLevel = tuple[float, str, float]


def _wire_level(price_text: Any, qty_text: Any, fmt: Callable[[str, bool], str]) -> _WireLevel:
    """Parse one level from its decimal texts; raise ``_Malformed`` if it cannot be in a book."""
    if not isinstance(price_text, str) or not isinstance(qty_text, str):
        raise _Malformed("price and quantity must be decimal texts")
    price = float(price_text)
    qty = float(qty_text)
    # Chained comparisons are False for NaN: one test per value covers NaN, inf and sign.
    if not (0.0 < price < math.inf and 0.0 <= qty < math.inf):
        raise _Malformed(f"bad level {price_text} {qty_text}")
    return price, fmt(price_text, True) + fmt(qty_text, False), qty


class _CheckedBook:
    """The book state both Kraken parsers share: two truncated sides, sync flag and resync.

    The parsers own the framing; this class owns applying levels, truncation, the checksum and
    what happens on a mismatch.
    """

    def __init__(self, symbol: str, stats: FeedStats) -> None:
        self.symbol = symbol
        self.stats = stats
        self.bids = TextBookSide(float(Side.BUY))
        self.asks = TextBookSide(float(Side.SELL))
        self.synced = False
        self.resync = Resync.NONE
        self.checksums_verified = 0

    def reset(self) -> None:
        self.bids.clear()
        self.asks.clear()
        self.synced = False
        self.resync = Resync.NONE

    def checksum(self) -> int:
        return kraken_checksum(
            self.asks.top_text(CHECKSUM_LEVELS), self.bids.top_text(CHECKSUM_LEVELS)
        )

    def snapshot(
        self,
        bids: list[_WireLevel],
        asks: list[_WireLevel],
        depth: int,
        checksum: int | None,
        ts_exchange_ns: int,
        ts_local_ns: int,
    ) -> list[MarketEvent]:
        """Replace the book; verify ``checksum`` when given (v1 snapshots have none)."""
        self.bids.replace(bids)
        self.asks.replace(asks)
        self.bids.truncate(depth)
        self.asks.truncate(depth)
        self.synced = True
        self.resync = Resync.NONE
        if checksum is not None:
            invalid = self._verify(checksum, ts_exchange_ns, ts_local_ns)
            if invalid is not None:
                return [invalid]
        self.stats.book_events += 1
        return [
            BookSnapshot(
                ts_exchange_ns=ts_exchange_ns,
                ts_local_ns=ts_local_ns,
                symbol=self.symbol,
                bids=self.bids.all_levels(),
                asks=self.asks.all_levels(),
            )
        ]

    def update(
        self,
        bids: list[_WireLevel],
        asks: list[_WireLevel],
        depth: int,
        checksum: int | None,
        ts_exchange_ns: int,
        ts_local_ns: int,
    ) -> list[MarketEvent]:
        """Apply levels in order, truncate, verify; return the delta or ``BookInvalid``."""
        if not self.synced:
            # After a mismatch (or before the first snapshot) updates cannot repair the book.
            self.stats.stale_dropped += 1
            return []
        for price, digits, qty in bids:
            self.bids.set(price, digits, qty)
        for price, digits, qty in asks:
            self.asks.set(price, digits, qty)
        bid_levels = [(price, qty) for price, _, qty in bids]
        ask_levels = [(price, qty) for price, _, qty in asks]
        bid_levels.extend((price, 0.0) for price in self.bids.truncate(depth))
        ask_levels.extend((price, 0.0) for price in self.asks.truncate(depth))
        if checksum is not None:
            invalid = self._verify(checksum, ts_exchange_ns, ts_local_ns)
            if invalid is not None:
                return [invalid]
        self.stats.book_events += 1
        return [
            BookDelta(
                ts_exchange_ns=ts_exchange_ns,
                ts_local_ns=ts_local_ns,
                symbol=self.symbol,
                bids=tuple(bid_levels),
                asks=tuple(ask_levels),
            )
        ]

    def _verify(self, expected: int, ts_exchange_ns: int, ts_local_ns: int) -> BookInvalid | None:
        self.checksums_verified += 1
        actual = self.checksum()
        if actual == expected:
            return None
        self.stats.checksum_errors += 1
        self.stats.resyncs += 1
        self.reset()
        self.resync = Resync.RESUBSCRIBE
        reason = f"checksum mismatch: venue {expected}, book {actual}"
        return BookInvalid(ts_exchange_ns, ts_local_ns, self.symbol, reason)


def _decode(raw: str | bytes, **kwargs: Any) -> Any:
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw, **kwargs)


# --------------------------------------------------------------------------------------------
# Websocket v2
# --------------------------------------------------------------------------------------------


class KrakenParser:
    """Pure parser of Kraken websocket v2 ``book`` and ``trade`` for one pair.

    A book update as documented by Kraken (v2 has no public recording; prices and quantities
    are JSON numbers at the pair's full precision)::

        {"channel":"book","type":"update","data":[{"symbol":"MATIC/USD",
         "bids":[{"price":0.5657,"qty":1098.3947558}],"asks":[],
         "checksum":2114181697,"timestamp":"2023-10-06T17:35:55.440295Z"}]}

    and a trade (``side`` is the taker's)::

        {"channel":"trade","type":"update","data":[{"symbol":"MATIC/USD","side":"sell",
         "price":0.5117,"qty":40.0,"ord_type":"market","trade_id":4665906,
         "timestamp":"2023-09-25T07:49:37.708706Z"}]}

    Heartbeats, status messages and method responses are ignored (counted in ``ignored``).
    Kraken sends a heartbeat every second to a subscribed client, so no ping is needed.

    Attributes:
        venue: "kraken".
        symbol: The v2 pair name, also the ``symbol`` of every event ("BTC/USD").
        depth: Subscribed book depth per side; the parser's book is truncated to it.
        stats: Counters (messages, book events, trades, checksum errors ...).
        heartbeat_interval_s: None: the client never has to ping.
    """

    venue = "kraken"

    def __init__(
        self,
        symbol: str,
        depth: int = 10,
        *,
        ws_url: str = KRAKEN_WS_V2_URL,
        price_decimals: int | None = None,
        qty_decimals: int | None = None,
    ) -> None:
        """Create a parser for ``symbol`` ("BTC/USD"; "BTC-USD" and "XBT/USD" are accepted).

        Args:
            symbol: The pair.
            depth: Book depth to subscribe to, one of ``BOOK_DEPTHS``.
            ws_url: Websocket address (tests point it at a local server).
            price_decimals: The pair's price precision. Only needed if the wire text ever
                stops carrying full precision: when given, every price is rewritten with
                exactly this many decimals for the checksum. By default the wire text is used.
            qty_decimals: The same for quantities.

        Raises:
            ValueError: Bad symbol, depth or decimals.
        """
        if depth not in BOOK_DEPTHS:
            raise ValueError(f"Kraken book depth must be one of {BOOK_DEPTHS}, not {depth}")
        for name, value in (("price_decimals", price_decimals), ("qty_decimals", qty_decimals)):
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, not {value}")
        self.symbol = normalize_symbol(symbol)
        self.depth = depth
        self.stats = FeedStats()
        self.heartbeat_interval_s: float | None = None
        self._ws_url = ws_url
        self._price_exp = None if price_decimals is None else Decimal(1).scaleb(-price_decimals)
        self._qty_exp = None if qty_decimals is None else Decimal(1).scaleb(-qty_decimals)
        self._book = _CheckedBook(self.symbol, self.stats)

    @property
    def checksums_verified(self) -> int:
        """Book messages whose checksum was computed and compared."""
        return self._book.checksums_verified

    # ----------------------------------------------------------------------------------------
    # What the shell needs
    # ----------------------------------------------------------------------------------------

    @property
    def resync(self) -> Resync:
        """Return RESUBSCRIBE after a checksum mismatch until a snapshot arrives."""
        return self._book.resync

    def ws_url(self) -> str:
        """Return the websocket address to connect to."""
        return self._ws_url

    def _book_params(self) -> dict[str, Any]:
        return {"channel": "book", "symbol": [self.symbol], "depth": self.depth}

    def _book_subscribe(self) -> str:
        return json.dumps(
            {"method": "subscribe", "params": {**self._book_params(), "snapshot": True}}
        )

    def subscribe_frames(self) -> list[str]:
        """Return the subscribe frames for the book (with snapshot) and for trades.

        The trade subscription asks for no snapshot: replaying the last 50 trades as if they
        had just happened would feed old prints to the fill model and the estimators.
        """
        return [
            self._book_subscribe(),
            json.dumps(
                {
                    "method": "subscribe",
                    "params": {"channel": "trade", "symbol": [self.symbol], "snapshot": False},
                }
            ),
        ]

    def resubscribe_frames(self) -> list[str]:
        """Return the frames that get a fresh book snapshot without reconnecting."""
        return [
            json.dumps({"method": "unsubscribe", "params": self._book_params()}),
            self._book_subscribe(),
        ]

    def snapshot_url(self) -> str | None:
        """Return None: the book channel pushes its own snapshot on subscription."""
        return None

    def heartbeat_frame(self) -> str | None:
        """Return None: Kraken sends heartbeats itself, the client need not ping."""
        return None

    def reset(self) -> None:
        """Forget the book: called on every (re)connect."""
        self._book.reset()

    # ----------------------------------------------------------------------------------------
    # Parsing
    # ----------------------------------------------------------------------------------------

    def on_snapshot(self, raw: str | bytes, ts_local_ns: int) -> list[MarketEvent]:
        """Ignore a REST body: Kraken snapshots arrive on the websocket."""
        self.stats.ignored += 1
        return []

    def on_message(self, raw: str | bytes, ts_local_ns: int) -> list[MarketEvent]:
        """Parse one websocket frame into events; malformed frames are counted, never raised."""
        stats = self.stats
        stats.messages += 1
        try:
            # Numbers stay text: the checksum needs the exact wire digits (see module doc).
            msg = _decode(raw, parse_float=str, parse_int=str)
            if not isinstance(msg, dict):
                raise _Malformed("frame is not an object")
            channel = msg.get("channel")
            kind = msg.get("type")
            if channel == "book" and kind in ("snapshot", "update"):
                return self._on_book(kind, msg["data"], ts_local_ns)
            if channel == "trade" and kind == "update":
                return self._on_trades(msg["data"], ts_local_ns)
            # Heartbeats, status, method responses (acks, errors, pong), trade snapshots.
            stats.ignored += 1
            return []
        except _DECODE_ERRORS:
            stats.malformed += 1
            return []

    def _format(self, text: str, is_price: bool) -> str:
        exp = self._price_exp if is_price else self._qty_exp
        if exp is not None:
            text = format(Decimal(text).quantize(exp), "f")
        return checksum_digits(text)

    def _levels(self, raw: Any) -> list[_WireLevel]:
        if not isinstance(raw, list):
            raise _Malformed("levels are not a list")
        return [_wire_level(level["price"], level["qty"], self._format) for level in raw]

    def _on_book(self, kind: str, data: Any, ts_local_ns: int) -> list[MarketEvent]:
        if not isinstance(data, list):
            raise _Malformed("data is not a list")
        events: list[MarketEvent] = []
        for item in data:
            if item["symbol"] != self.symbol:
                self.stats.ignored += 1
                continue
            # Parse everything before touching the book, so a bad frame changes nothing.
            bids = self._levels(item.get("bids", []))
            asks = self._levels(item.get("asks", []))
            checksum = int(item["checksum"]) if "checksum" in item else None
            stamp = item.get("timestamp")
            ts_exchange_ns = _rfc3339_ns(stamp) if isinstance(stamp, str) else 0
            book = self._book
            apply = book.snapshot if kind == "snapshot" else book.update
            events.extend(apply(bids, asks, self.depth, checksum, ts_exchange_ns, ts_local_ns))
        return events

    def _on_trades(self, data: Any, ts_local_ns: int) -> list[MarketEvent]:
        if not isinstance(data, list):
            raise _Malformed("data is not a list")
        trades: list[MarketEvent] = []
        for item in data:
            if item["symbol"] != self.symbol:
                continue
            side = item["side"]
            if side not in ("buy", "sell"):
                raise _Malformed(f"unknown trade side {side!r}")
            price = float(item["price"])
            qty = float(item["qty"])
            if not (0.0 < price < math.inf and 0.0 < qty < math.inf):
                raise _Malformed("bad trade price or quantity")
            trades.append(
                Trade(
                    ts_exchange_ns=_rfc3339_ns(item["timestamp"]),
                    ts_local_ns=ts_local_ns,
                    symbol=self.symbol,
                    price=price,
                    qty=qty,
                    aggressor=Side.BUY if side == "buy" else Side.SELL,
                    trade_id=str(item.get("trade_id", "")),
                )
            )
        if not trades:
            self.stats.ignored += 1
        self.stats.trades += len(trades)
        return trades


# --------------------------------------------------------------------------------------------
# Websocket v1 (deprecated; replay of v1 recordings)
# --------------------------------------------------------------------------------------------


def _v1_format(text: str, is_price: bool) -> str:
    return checksum_digits(text)


def _v1_levels(raw: Any) -> tuple[list[_WireLevel], int]:
    """Parse v1 levels ``[price, volume, time(, "r")]``; return them and the latest time."""
    if not isinstance(raw, list):
        raise _Malformed("levels are not a list")
    levels: list[_WireLevel] = []
    latest_ns = 0
    for level in raw:
        levels.append(_wire_level(level[0], level[1], _v1_format))
        latest_ns = max(latest_ns, _epoch_s_ns(level[2]))
    return levels, latest_ns


class KrakenV1Parser:
    """Pure parser of the deprecated Kraken websocket v1 ``book`` and ``trade`` channels.

    For replaying v1 recordings only; live trading uses ``KrakenParser`` (v2). Messages are
    arrays ``[channelID, payload..., channelName, pair]``. A book snapshot has ``"as"``/``"bs"``
    and no checksum; an update has ``"a"`` and/or ``"b"``, possibly in two separate objects,
    and the checksum ``"c"`` (a quoted unsigned integer) in the last one. A level with a fourth
    element ``"r"`` is a republish of a level back within the subscribed depth and is applied
    like any other. The depth comes from the channel name (``book-1000``). A real update
    (``KRAKEN.jsonl.gz``, 2021)::

        [1920,{"a":[["0.042990","364630.28272081","1618678145.920470"]]},
         {"b":[["0.042990","0.00000000","1618678145.920708"]],"c":"4105471083"},
         "book-1000","SC/EUR"]

    and a trade (``"s"``/``"b"`` is the taker's side)::

        [993,[["354.11000000","0.89594024","1618678142.557535","s","l",""]],"trade","XMR/USD"]

    Attributes:
        venue: "kraken-v1".
        symbol: The v2-style pair name, the ``symbol`` of every event ("BTC/CHF").
        pair: The v1 ``wsname`` matched on the wire ("XBT/CHF").
        depth: Book depth to subscribe to.
        stats: Counters (messages, book events, trades, checksum errors ...).
        heartbeat_interval_s: None: Kraken sends heartbeats itself.
    """

    venue = "kraken-v1"

    def __init__(self, symbol: str, depth: int = 1000, *, ws_url: str = KRAKEN_WS_V1_URL) -> None:
        """Create a parser for ``symbol`` ("XBT/CHF", "BTC/CHF" or "BTC-CHF").

        Raises:
            ValueError: Bad symbol or depth.
        """
        if depth not in BOOK_DEPTHS:
            raise ValueError(f"Kraken book depth must be one of {BOOK_DEPTHS}, not {depth}")
        self.symbol = normalize_symbol(symbol)
        self.pair = v1_pair_name(self.symbol)
        self.depth = depth
        self.stats = FeedStats()
        self.heartbeat_interval_s: float | None = None
        self._ws_url = ws_url
        self._book = _CheckedBook(self.symbol, self.stats)

    @property
    def checksums_verified(self) -> int:
        """Book updates whose checksum was computed and compared."""
        return self._book.checksums_verified

    @property
    def resync(self) -> Resync:
        """Return RESUBSCRIBE after a checksum mismatch until a snapshot arrives."""
        return self._book.resync

    def ws_url(self) -> str:
        """Return the websocket address to connect to."""
        return self._ws_url

    def _book_subscription(self, event: str) -> str:
        return json.dumps(
            {
                "event": event,
                "pair": [self.pair],
                "subscription": {"name": "book", "depth": self.depth},
            }
        )

    def subscribe_frames(self) -> list[str]:
        """Return the subscribe frames for the book and for trades."""
        trade = {"event": "subscribe", "pair": [self.pair], "subscription": {"name": "trade"}}
        return [self._book_subscription("subscribe"), json.dumps(trade)]

    def resubscribe_frames(self) -> list[str]:
        """Return the frames that get a fresh book snapshot without reconnecting."""
        return [self._book_subscription("unsubscribe"), self._book_subscription("subscribe")]

    def snapshot_url(self) -> str | None:
        """Return None: the book channel pushes its own snapshot on subscription."""
        return None

    def heartbeat_frame(self) -> str | None:
        """Return None: Kraken sends heartbeats itself."""
        return None

    def reset(self) -> None:
        """Forget the book: called on every (re)connect."""
        self._book.reset()

    def on_snapshot(self, raw: str | bytes, ts_local_ns: int) -> list[MarketEvent]:
        """Ignore a REST body: Kraken snapshots arrive on the websocket."""
        self.stats.ignored += 1
        return []

    def on_message(self, raw: str | bytes, ts_local_ns: int) -> list[MarketEvent]:
        """Parse one websocket frame into events; malformed frames are counted, never raised."""
        stats = self.stats
        stats.messages += 1
        try:
            msg = _decode(raw)
            if isinstance(msg, dict):
                # heartbeat, systemStatus, subscriptionStatus, pong.
                stats.ignored += 1
                return []
            if not isinstance(msg, list) or len(msg) < 4:
                raise _Malformed("frame is neither an object nor a channel array")
            channel, pair = msg[-2], msg[-1]
            if not isinstance(channel, str) or pair != self.pair:
                stats.ignored += 1
                return []
            if channel.startswith("book-"):
                return self._on_book(channel, msg[1:-2], ts_local_ns)
            if channel == "trade":
                return self._on_trades(msg[1], ts_local_ns)
            stats.ignored += 1
            return []
        except _DECODE_ERRORS:
            stats.malformed += 1
            return []

    def _on_book(self, channel: str, payloads: list[Any], ts_local_ns: int) -> list[MarketEvent]:
        depth = int(channel.removeprefix("book-"))
        if depth <= 0:
            raise _Malformed(f"bad book channel {channel!r}")
        if not all(isinstance(payload, dict) for payload in payloads):
            raise _Malformed("book payload is not an object")
        first = payloads[0]
        if "as" in first or "bs" in first:
            bids, bid_ns = _v1_levels(first.get("bs", []))
            asks, ask_ns = _v1_levels(first.get("as", []))
            return self._book.snapshot(bids, asks, depth, None, max(bid_ns, ask_ns), ts_local_ns)
        bids, asks, latest_ns = [], [], 0
        checksum: int | None = None
        for payload in payloads:
            for key, levels in (("b", bids), ("a", asks)):
                if key in payload:
                    parsed, stamp_ns = _v1_levels(payload[key])
                    levels.extend(parsed)
                    latest_ns = max(latest_ns, stamp_ns)
            if "c" in payload:
                checksum = int(payload["c"])
        return self._book.update(bids, asks, depth, checksum, latest_ns, ts_local_ns)

    def _on_trades(self, data: Any, ts_local_ns: int) -> list[MarketEvent]:
        if not isinstance(data, list):
            raise _Malformed("trades are not a list")
        trades: list[MarketEvent] = []
        for item in data:
            price = float(item[0])
            qty = float(item[1])
            side = item[3]
            if side not in ("b", "s"):
                raise _Malformed(f"unknown trade side {side!r}")
            if not (0.0 < price < math.inf and 0.0 < qty < math.inf):
                raise _Malformed("bad trade price or volume")
            trades.append(
                Trade(
                    ts_exchange_ns=_epoch_s_ns(item[2]),
                    ts_local_ns=ts_local_ns,
                    symbol=self.symbol,
                    price=price,
                    qty=qty,
                    aggressor=Side.BUY if side == "b" else Side.SELL,
                )
            )
        self.stats.trades += len(trades)
        return trades
