"""Bybit v5 public market data: the pure parser for ``orderbook.{depth}`` and ``publicTrade``.

Endpoints ``wss://stream.bybit.com/v5/public/{linear|spot|inverse}``. One parser serves one
symbol of one category; it subscribes to ``orderbook.{depth}.{symbol}`` and
``publicTrade.{symbol}`` in one frame. So that a recording made at another depth replays
through the same parser, the book is read from whichever ``orderbook.*.{symbol}`` topic comes
first after ``reset()``; other depths of the symbol are then ignored (their update ids are a
separate sequence and must never be mixed in).

Sequence rules (docs, and the recorded 2026 linear and spot sessions):

* The book topic starts with a ``snapshot``, then sends ``delta``s with absolute quantities
  (0 removes a level). ``data.u`` is the update id: each delta carries the previous ``u`` plus
  one. Any snapshot replaces the book, whatever its ``u``: Bybit re-sends one when it has a
  problem, and after a service restart it sends a snapshot with ``u == 1``.
* A delta whose ``u`` is not the previous plus one means updates were lost: the parser counts
  a gap, emits ``BookInvalid``, asks the shell to ``RESUBSCRIBE`` (Bybit only sends a snapshot
  on subscribe) and drops deltas (``stats.stale_dropped``) until the next snapshot.
* A frame of the book topic that cannot be parsed (missing keys, non-finite or negative
  numbers) is counted in ``stats.malformed`` and handled like a gap, since the local book no
  longer matches Bybit's. A frame that is not JSON at all is counted as malformed; if it was a
  book delta, the next delta's ``u`` reports the gap.

``resync`` is ``NONE`` after ``reset()`` (subscribing on connect brings the first snapshot),
``RESUBSCRIBE`` from a gap until the next snapshot or ``reset()``. ``stats.resyncs`` counts the
invalidations (gaps and corrupt book frames), each of which asks for one.

Timestamps: book events carry ``cts``, the matching engine's time of the update (the same
clock as a trade's ``T``), falling back to ``ts`` (when the market-data service sent it) for
frames without ``cts``. Trades carry ``T``, their match time. Both are milliseconds.

Trade side: ``S`` is the taker's side (``Buy`` lifted an ask); the recorded session agrees
(every ``Buy`` printed at the best ask, every ``Sell`` at the best bid). Block trades
(``BT: true``) are negotiated off the book and never hit a resting order: they are skipped
(a frame holding nothing else counts in ``stats.ignored``).

Bybit asks clients to send ``{"op":"ping"}`` every 20 s to keep the connection open (idle
connections are dropped): the shell must send ``heartbeat_frame()`` every
``heartbeat_interval_s``. The replies (``"op":"ping"`` on linear, ``"op":"pong"`` on spot) and
subscription acks are ignored.
"""

from __future__ import annotations

import json
from typing import Any, Final, Literal

from adapters.feed import FeedStats, Resync
from bot.errors import ConfigError
from bot.events import BookDelta, BookInvalid, BookSnapshot, Level, MarketEvent, Side, Trade

Category = Literal["linear", "spot", "inverse"]

BYBIT_WS_URL_TEMPLATE: Final = "wss://stream.bybit.com/v5/public/{category}"
BYBIT_HEARTBEAT_INTERVAL_S: Final = 20.0

_VENUES: Final[dict[str, str]] = {
    "linear": "bybit",
    "spot": "bybit-spot",
    "inverse": "bybit-inverse",
}
# Book depths Bybit offers per category (``orderbook.{depth}.{symbol}``).
_DEPTHS: Final[dict[str, frozenset[int]]] = {
    "linear": frozenset({1, 50, 200, 500, 1000}),
    "inverse": frozenset({1, 50, 200, 500, 1000}),
    "spot": frozenset({1, 50, 200, 1000}),
}
_ANY_DEPTH: Final = frozenset().union(*_DEPTHS.values())
_NS_PER_MS: Final = 1_000_000
_INF: Final = float("inf")
# What a corrupt frame raises while we pick it apart: missing keys, wrong types, bad numbers.
_BAD_FRAME: Final = (KeyError, TypeError, ValueError, AttributeError, IndexError)
_TAKER_SIDE: Final[dict[str, Side]] = {"Buy": Side.BUY, "Sell": Side.SELL}


def _levels(raw_levels: list[list[str]]) -> list[Level]:
    """Convert ``[["price", "qty"], ...]``; raise ValueError on a non-finite or negative value."""
    levels: list[Level] = []
    append = levels.append
    for raw_price, raw_qty in raw_levels:
        price = float(raw_price)
        qty = float(raw_qty)
        # Chained comparisons are False for NaN, so one test per value covers NaN, inf and sign.
        if not (0.0 < price < _INF and 0.0 <= qty < _INF):
            raise ValueError(f"bad level: price={price!r} qty={qty!r}")
        append((price, qty))
    return levels


def _ms_to_ns(value: Any) -> int:
    """Convert an integer millisecond timestamp to ns; raise ValueError for anything else."""
    if type(value) is not int or value < 0:
        raise ValueError(f"bad timestamp {value!r}")
    return value * _NS_PER_MS


class BybitParser:
    """Pure parser of one Bybit v5 symbol: ``orderbook.{depth}`` and ``publicTrade``.

    A book delta as received (``u`` must be the previous ``u`` plus one)::

        {"topic":"orderbook.200.SOLUSDT","type":"delta","ts":1786310819154,
         "data":{"s":"SOLUSDT","b":[["77.290","5408.7"]],"a":[["77.310","211.6"]],
                 "u":13783325,"seq":272903624865},"cts":1786310819145}

    The snapshot has ``"type":"snapshot"`` and every level (bids best first, asks best first).
    Trades, oldest first, ``S`` the taker's side (every trade message says ``"snapshot"``)::

        {"topic":"publicTrade.ETHUSDT","type":"snapshot","ts":1786310820511,"data":[
          {"T":1786310820510,"s":"ETHUSDT","S":"Buy","v":"0.02","p":"1922.52","L":"PlusTick",
           "i":"a519448f-56e5-58e6-90a1-004086e0e530","BT":false,"RPI":false,
           "seq":430879434767}]}

    Attributes:
        venue: ``"bybit"`` (linear), ``"bybit-spot"`` or ``"bybit-inverse"``.
        symbol: Bybit's symbol, e.g. ``"BTCUSDT"`` (``"BTC/USDT"`` and ``"BTC/USDT:USDT"`` are
            accepted and converted).
        category: ``"linear"``, ``"spot"`` or ``"inverse"``.
        depth: Book depth subscribed to.
        stats: Counters of this parser.
        heartbeat_interval_s: Seconds between ``heartbeat_frame()`` sends (20).
    """

    def __init__(
        self,
        symbol: str,
        category: Category = "linear",
        depth: int = 50,
        ws_url: str | None = None,
    ) -> None:
        """Create a parser for ``symbol`` in ``category``.

        Args:
            symbol: Bybit symbol such as ``"BTCUSDT"``.
            category: Market: ``"linear"`` (USDT/USDC perpetuals and futures), ``"spot"`` or
                ``"inverse"``.
            depth: Book depth: 1, 50, 200, 1000, or 500 for linear and inverse.
            ws_url: Websocket address to use instead of Bybit's (tests use a loopback server).

        Raises:
            ConfigError: ``category`` or ``depth`` is not one Bybit offers, or the symbol is
                empty.
        """
        if category not in _VENUES:
            raise ConfigError("category", f"must be linear, spot or inverse, not {category!r}")
        if depth not in _DEPTHS[category]:
            allowed = ", ".join(str(d) for d in sorted(_DEPTHS[category]))
            raise ConfigError("depth", f"{category} order books come in depths {allowed}")
        # ccxt-style "BTC/USDT:USDT" -> "BTCUSDT"; dashes stay (dated futures: "BTC-26DEC25").
        self.symbol = symbol.strip().upper().split(":", 1)[0].replace("/", "")
        if not self.symbol:
            raise ConfigError("symbol", "must not be empty")
        self.category: Category = category
        self.depth = depth
        self.venue = _VENUES[category]
        self.stats = FeedStats()
        self.heartbeat_interval_s: float | None = BYBIT_HEARTBEAT_INTERVAL_S
        self._ws_url = ws_url or BYBIT_WS_URL_TEMPLATE.format(category=category)
        self._book_topic = f"orderbook.{depth}.{self.symbol}"
        self._book_topics = frozenset(f"orderbook.{d}.{self.symbol}" for d in _ANY_DEPTH)
        self._read_topic: str | None = None
        self._trade_topic = f"publicTrade.{self.symbol}"
        self._last_u: int | None = None
        self._in_sync = False
        self._resync = Resync.NONE

    # ----------------------------------------------------------------------------------------
    # What the shell asks
    # ----------------------------------------------------------------------------------------

    @property
    def resync(self) -> Resync:
        """Return RESUBSCRIBE from a gap until the next snapshot, NONE otherwise."""
        return self._resync

    def ws_url(self) -> str:
        """Return the websocket address to connect to."""
        return self._ws_url

    def subscribe_frames(self) -> list[str]:
        """Return the one subscribe frame for the book and trade topics."""
        return [
            json.dumps(
                {"op": "subscribe", "args": [self._book_topic, self._trade_topic]},
                separators=(",", ":"),
            )
        ]

    def snapshot_url(self) -> str | None:
        """Return None: the book topic sends its snapshot on subscribe."""
        return None

    def heartbeat_frame(self) -> str | None:
        """Return the application-level ping Bybit expects every ``heartbeat_interval_s``."""
        return '{"op":"ping"}'

    def reset(self) -> None:
        """Forget the update id and the book state: called on every (re)connect."""
        self._read_topic = None
        self._last_u = None
        self._in_sync = False
        self._resync = Resync.NONE

    def on_snapshot(self, raw: str | bytes, ts_local_ns: int) -> list[MarketEvent]:
        """Ignore a REST body: Bybit books come from the websocket (``snapshot_url`` is None).

        Args:
            raw: Unused body, counted in ``stats.ignored``.
            ts_local_ns: Unused.

        Returns:
            Always an empty list.
        """
        self.stats.ignored += 1
        return []

    # ----------------------------------------------------------------------------------------
    # Frames
    # ----------------------------------------------------------------------------------------

    def on_message(self, raw: str | bytes, ts_local_ns: int) -> list[MarketEvent]:
        """Parse one websocket frame; check the book's update ids; never raise.

        Args:
            raw: The frame as received (text, or UTF-8 bytes).
            ts_local_ns: Local receive time.

        Returns:
            The events in order: a book snapshot or delta, trades, or a ``BookInvalid`` when
            this frame reveals a gap; often none (other topics, acks, pongs).
        """
        stats = self.stats
        stats.messages += 1
        try:
            msg = json.loads(raw)
        except (ValueError, TypeError, RecursionError):
            stats.malformed += 1
            return []
        if type(msg) is not dict:
            stats.malformed += 1
            return []
        topic = msg.get("topic")
        if type(topic) is str:
            if topic == self._trade_topic:
                return self._on_trades(msg, ts_local_ns)
            if topic in self._book_topics:
                if self._read_topic is None:
                    self._read_topic = topic
                if topic == self._read_topic:
                    return self._on_book(msg, ts_local_ns)
            # Other topics and symbols, and other depths of this symbol's book.
            stats.ignored += 1
        elif topic is None and "op" in msg:
            # Subscribe acks and ping replies.
            stats.ignored += 1
        else:
            stats.malformed += 1
        return []

    def _lose_book(self, reason: str, ts_exchange_ns: int, ts_local_ns: int) -> BookInvalid:
        """Mark the book out of sync, ask for a resubscribe and return the ``BookInvalid``."""
        self._in_sync = False
        self._resync = Resync.RESUBSCRIBE
        self.stats.resyncs += 1
        return BookInvalid(ts_exchange_ns, ts_local_ns, self.symbol, reason)

    def _on_book(self, msg: dict[str, Any], ts_local_ns: int) -> list[MarketEvent]:
        """Handle one frame of the book topic."""
        stats = self.stats
        try:
            kind = msg["type"]
            data = msg["data"]
            update_id = data["u"]
            if type(update_id) is not int or data["s"] != self.symbol:
                raise ValueError("bad update id or symbol")
            ts_exchange_ns = _ms_to_ns(msg["cts"] if "cts" in msg else msg["ts"])
            bids = _levels(data["b"])
            asks = _levels(data["a"])
            if kind not in ("snapshot", "delta"):
                raise ValueError(f"unknown book message type {kind!r}")
        except _BAD_FRAME:
            stats.malformed += 1
            ts_exchange_ns = 0
            if type(msg.get("ts")) is int:
                ts_exchange_ns = msg["ts"] * _NS_PER_MS
            return [self._lose_book("malformed book frame", ts_exchange_ns, ts_local_ns)]

        if kind == "snapshot":
            # Any snapshot replaces the book, including the u == 1 one after a restart.
            self._last_u = update_id
            self._in_sync = True
            self._resync = Resync.NONE
            bids.sort(reverse=True)
            asks.sort()
            stats.book_events += 1
            return [
                BookSnapshot(
                    ts_exchange_ns, ts_local_ns, self.symbol, tuple(bids), tuple(asks), update_id
                )
            ]
        if not self._in_sync:
            # Deltas before the (re)snapshot cannot be applied to anything valid.
            stats.stale_dropped += 1
            return []
        last = self._last_u
        if last is None or update_id != last + 1:
            stats.gaps += 1
            reason = f"update id gap: {last} -> {update_id}"
            return [self._lose_book(reason, ts_exchange_ns, ts_local_ns)]
        self._last_u = update_id
        stats.book_events += 1
        return [
            BookDelta(ts_exchange_ns, ts_local_ns, self.symbol, tuple(bids), tuple(asks), update_id)
        ]

    def _on_trades(self, msg: dict[str, Any], ts_local_ns: int) -> list[MarketEvent]:
        """Handle one frame of the trade topic (trades oldest first)."""
        stats = self.stats
        symbol = self.symbol
        trades: list[MarketEvent] = []
        try:
            for trade in msg["data"]:
                if trade["s"] != symbol:
                    raise ValueError(f"trade for {trade['s']!r} on {symbol}'s topic")
                if trade.get("BT") is True:
                    continue
                price = float(trade["p"])
                qty = float(trade["v"])
                if not (0.0 < price < _INF and 0.0 <= qty < _INF):
                    raise ValueError(f"bad trade: price={price!r} qty={qty!r}")
                trades.append(
                    Trade(
                        _ms_to_ns(trade["T"]),
                        ts_local_ns,
                        symbol,
                        price,
                        qty,
                        _TAKER_SIDE[trade["S"]],
                        str(trade["i"]),
                    )
                )
        except _BAD_FRAME:
            stats.malformed += 1
            return []
        if not trades:
            stats.ignored += 1
            return []
        stats.trades += len(trades)
        return trades
