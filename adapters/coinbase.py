"""Coinbase Advanced Trade market data: the pure parser for ``level2`` and ``market_trades``.

Endpoint ``wss://advanced-trade-ws.coinbase.com``, public channels, no authentication. One
parser serves one product; it subscribes to ``level2`` (book snapshot, then absolute updates),
``market_trades`` and ``heartbeats`` (a one-second server ping that keeps the subscriptions of a
quiet product from being closed after 60-90 s without traffic).

Sequence rules (checked against the docs and the recorded 2026 session):

* ``sequence_num`` is per *connection*, shared by every channel and every product on it, and
  starts at 0 after connecting. Each frame must carry the previous number plus one; anything
  else means frames were lost. The parser therefore tracks it on every frame it sees,
  including heartbeats, subscription confirmations and other products' frames that it
  otherwise ignores. The first frame after ``reset()`` is accepted with any number.
* After a gap the parser emits ``BookInvalid``, counts the gap, asks the shell to
  ``RESUBSCRIBE`` and drops ``level2`` updates (``stats.stale_dropped``) until a new
  ``level2`` snapshot for its product arrives. Trades keep flowing: they need no book.
* A frame with a good ``sequence_num`` whose ``level2`` content cannot be read (missing
  keys, non-finite or negative numbers, unknown side or type) is counted in
  ``stats.malformed`` and treated as a lost book update: ``BookInvalid`` and ``RESUBSCRIBE``
  as for a gap, because the local book may no longer match the venue's. Other products'
  events are skipped unread, so a frame too broken to name its product counts as ours.
* A frame that is not JSON, or has no usable ``sequence_num`` (or, on the ``level2`` and
  ``market_trades`` channels and on a gap, ``timestamp``), is counted as malformed and does
  not advance the sequence: if it was a real frame, the next one reports the gap.

``resync`` is ``NONE`` after ``reset()`` (the subscribe frames the shell sends on connect
bring the first snapshot), ``RESUBSCRIBE`` from a gap until the next snapshot or ``reset()``;
reconnecting (which calls ``reset()``) is the simplest way for the shell to act on it.
``stats.resyncs`` counts the invalidations (gaps and corrupt book frames), each of which asks
for one.

Trade side: in ``market_trades`` the ``side`` field is the side of the *maker* order, as in
the ``match`` messages of the older Coinbase Exchange feed, not the taker's; the Advanced Trade
reference only calls it the trade's side. The recorded session settles it: trades reported
``SELL`` print at the best ask (a resting sell was lifted by a buyer) and ``BUY`` at the best
bid, and multi-trade updates reported ``BUY`` walk the bids downwards (a seller sweeping
them). The parser therefore sets ``Trade.aggressor`` to the opposite of ``side``.

Timestamps: book events carry the frame's ``timestamp`` (RFC 3339, nanoseconds, UTC); trades
carry their own match ``time`` (microseconds), the moment the trade happened. The
``market_trades`` snapshot sent on subscribe holds recent history, not live trades: it is
ignored.
"""

from __future__ import annotations

import functools
import json
import re
from datetime import date
from typing import Any

from adapters.feed import FeedStats, Resync
from bot.events import (
    NS_PER_SECOND,
    BookDelta,
    BookInvalid,
    BookSnapshot,
    Level,
    MarketEvent,
    Side,
    Trade,
)

COINBASE_WS_URL = "wss://advanced-trade-ws.coinbase.com"

_INF = float("inf")
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_NS_PER_DAY = 86_400 * NS_PER_SECOND
_RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?Z", re.ASCII)
# What a corrupt frame raises while we pick it apart: missing keys, wrong types, bad numbers.
_BAD_FRAME = (KeyError, TypeError, ValueError, AttributeError, IndexError)
# ``side`` is the maker's side; the aggressor is the other one (see the module docstring).
_AGGRESSOR_OF_MAKER_SIDE = {"BUY": Side.SELL, "SELL": Side.BUY}


@functools.lru_cache(maxsize=8)
def _day_start_ns(day: str) -> int:
    """Return the epoch ns of 00:00 UTC on ``day`` (``YYYY-MM-DD``); ValueError if no such day."""
    ordinal = date(int(day[0:4]), int(day[5:7]), int(day[8:10])).toordinal()
    return (ordinal - _EPOCH_ORDINAL) * _NS_PER_DAY


def parse_rfc3339_ns(stamp: str) -> int:
    """Parse a UTC RFC 3339 time such as ``2026-08-09T21:05:48.483587501Z`` to epoch ns.

    Exact to the nanosecond (``datetime`` keeps microseconds) and about twice as fast. The
    fraction is optional and may have 1 to 9 digits.

    Args:
        stamp: The text; it must end in ``Z``.

    Returns:
        Nanoseconds since the Unix epoch.

    Raises:
        ValueError: ``stamp`` is not in that form or names an impossible date or time.
    """
    match = _RFC3339_UTC.fullmatch(stamp)
    if match is None:
        raise ValueError(f"not an RFC 3339 UTC time: {stamp!r}")
    hour_s, minute_s, second_s, fraction = match.groups()
    hour, minute, second = int(hour_s), int(minute_s), int(second_s)
    if hour > 23 or minute > 59 or second > 60:
        raise ValueError(f"not an RFC 3339 UTC time: {stamp!r}")
    ns = _day_start_ns(stamp[:10]) + (hour * 3600 + minute * 60 + second) * NS_PER_SECOND
    if fraction:
        ns += int(fraction.ljust(9, "0"))
    return ns


def _checked(price: float, qty: float) -> Level:
    """Return ``(price, qty)`` or raise ValueError unless 0 < price < inf and 0 <= qty < inf."""
    # Chained comparisons are False for NaN, so one test per value covers NaN, inf and sign.
    if not (0.0 < price < _INF and 0.0 <= qty < _INF):
        raise ValueError(f"bad level: price={price!r} qty={qty!r}")
    return (price, qty)


class CoinbaseParser:
    """Pure parser of one Coinbase Advanced Trade product: ``level2`` book and trades.

    A ``level2`` update as received (``l2_data``; ``updates`` may mix both sides, quantities
    are absolute, 0 removes the level)::

        {"channel":"l2_data","timestamp":"2026-08-09T21:05:48.506659391Z","sequence_num":15,
         "events":[{"type":"update","product_id":"BTC-USD","updates":[
           {"side":"offer","event_time":"2026-08-09T21:05:48.264069Z",
            "price_level":"65106.54","new_quantity":"0.15361938"},
           {"side":"offer","event_time":"2026-08-09T21:05:48.264069Z",
            "price_level":"65155.5","new_quantity":"0.00000011"}]}]}

    The snapshot has the same shape with ``"type":"snapshot"`` and every level (``"bid"``
    and ``"offer"``). A ``market_trades`` update (newest trade first; ``side`` is the
    maker's side)::

        {"channel":"market_trades","timestamp":"2026-08-09T21:05:51.452192913Z",
         "sequence_num":136,"events":[{"type":"update","trades":[
           {"product_id":"BTC-USD","trade_id":"1068572096","price":"65083.66",
            "size":"0.00100346","time":"2026-08-09T21:05:51.426861Z","side":"BUY"},
           {"product_id":"BTC-USD","trade_id":"1068572095","price":"65083.67",
            "size":"0.00322434","time":"2026-08-09T21:05:51.376358Z","side":"SELL"}]}]}

    Heartbeats (``"channel":"heartbeats"``), subscription confirmations, ``ticker``,
    ``candles`` and other products' frames are ignored but still advance the sequence.

    Attributes:
        venue: ``"coinbase"``.
        symbol: The product id, e.g. ``"BTC-USD"`` (``"BTC/USD"`` is accepted and converted).
        stats: Counters of this parser.
        heartbeat_interval_s: None: the server sends heartbeats, the client sends nothing.
    """

    venue: str = "coinbase"

    def __init__(self, symbol: str, ws_url: str = COINBASE_WS_URL) -> None:
        """Create a parser for ``symbol``.

        Args:
            symbol: Product id such as ``"BTC-USD"``; ``"BTC/USD"`` is accepted.
            ws_url: Websocket address (tests point it at a loopback server).
        """
        self.symbol = symbol.strip().upper().replace("/", "-")
        self.stats = FeedStats()
        self.heartbeat_interval_s: float | None = None
        self._ws_url = ws_url
        self._last_seq: int | None = None
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
        """Return the subscribe frames for ``level2``, ``market_trades`` and ``heartbeats``."""
        products = [self.symbol]
        return [
            _dumps({"type": "subscribe", "product_ids": products, "channel": "level2"}),
            _dumps({"type": "subscribe", "product_ids": products, "channel": "market_trades"}),
            # The heartbeats channel takes no products.
            _dumps({"type": "subscribe", "channel": "heartbeats"}),
        ]

    def snapshot_url(self) -> str | None:
        """Return None: the ``level2`` channel sends its snapshot on subscribe."""
        return None

    def heartbeat_frame(self) -> str | None:
        """Return None: Coinbase needs no client ping (the heartbeats channel keeps it open)."""
        return None

    def reset(self) -> None:
        """Forget the sequence and the book state: called on every (re)connect."""
        self._last_seq = None
        self._in_sync = False
        self._resync = Resync.NONE

    def on_snapshot(self, raw: str | bytes, ts_local_ns: int) -> list[MarketEvent]:
        """Ignore a REST body: Coinbase books come from the websocket (``snapshot_url`` is None).

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
        """Parse one websocket frame; check ``sequence_num``; never raise.

        Args:
            raw: The frame as received (text, or UTF-8 bytes).
            ts_local_ns: Local receive time.

        Returns:
            The events in order: a ``BookInvalid`` first if this frame reveals a gap, then the
            book snapshot / deltas or trades of this product (often none).
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
        seq = msg.get("sequence_num")
        if seq is None and "channel" not in msg and "type" in msg:
            # Control replies such as {"type":"error",...} carry no sequence number.
            stats.ignored += 1
            return []
        stamp = msg.get("timestamp")
        if type(seq) is not int or type(stamp) is not str:
            stats.malformed += 1
            return []
        last = self._last_seq
        gap = last is not None and seq != last + 1
        channel = msg.get("channel")
        if not gap and channel != "l2_data" and channel != "market_trades":
            # Heartbeats, confirmations, other channels: only the sequence matters.
            self._last_seq = seq
            stats.ignored += 1
            return []
        try:
            ts_exchange_ns = parse_rfc3339_ns(stamp)
        except ValueError:
            # Treated as not received: the sequence stays put, so a gap shows on the next frame.
            stats.malformed += 1
            return []

        self._last_seq = seq
        out: list[MarketEvent] = []
        if gap:
            stats.gaps += 1
            out.append(
                self._lose_book(f"sequence gap: {last} -> {seq}", ts_exchange_ns, ts_local_ns)
            )
        if channel == "l2_data":
            self._on_level2(msg, seq, ts_exchange_ns, ts_local_ns, out)
        elif channel == "market_trades":
            self._on_trades(msg, ts_local_ns, out)
        else:
            stats.ignored += 1
        return out

    def _lose_book(self, reason: str, ts_exchange_ns: int, ts_local_ns: int) -> BookInvalid:
        """Mark the book out of sync, ask for a resubscribe and return the ``BookInvalid``."""
        self._in_sync = False
        self._resync = Resync.RESUBSCRIBE
        self.stats.resyncs += 1
        return BookInvalid(ts_exchange_ns, ts_local_ns, self.symbol, reason)

    def _on_level2(
        self,
        msg: dict[str, Any],
        seq: int,
        ts_exchange_ns: int,
        ts_local_ns: int,
        out: list[MarketEvent],
    ) -> None:
        """Append this product's snapshot / deltas of an ``l2_data`` frame to ``out``."""
        stats = self.stats
        symbol = self.symbol
        # Parse every event of the frame before changing any state, so that a corrupt frame
        # is rejected whole and never half-applied.
        parsed: list[BookSnapshot | BookDelta] = []
        try:
            for event in msg["events"]:
                if event["product_id"] != symbol:
                    continue
                kind = event["type"]
                bids: list[Level] = []
                asks: list[Level] = []
                for update in event["updates"]:
                    level = _checked(float(update["price_level"]), float(update["new_quantity"]))
                    side = update["side"]
                    if side == "bid":
                        bids.append(level)
                    elif side == "offer":
                        asks.append(level)
                    else:
                        raise ValueError(f"unknown side {side!r}")
                if kind == "update":
                    parsed.append(
                        BookDelta(
                            ts_exchange_ns, ts_local_ns, symbol, tuple(bids), tuple(asks), seq
                        )
                    )
                elif kind == "snapshot":
                    bids.sort(reverse=True)
                    asks.sort()
                    parsed.append(
                        BookSnapshot(
                            ts_exchange_ns, ts_local_ns, symbol, tuple(bids), tuple(asks), seq
                        )
                    )
                else:
                    raise ValueError(f"unknown level2 event type {kind!r}")
        except _BAD_FRAME:
            # Other products' events are skipped unread, so whatever broke may have been ours.
            stats.malformed += 1
            out.append(self._lose_book("malformed level2 frame", ts_exchange_ns, ts_local_ns))
            return

        if not parsed:
            stats.ignored += 1
            return
        for event in parsed:
            if isinstance(event, BookSnapshot):
                self._in_sync = True
                self._resync = Resync.NONE
            elif not self._in_sync:
                # Deltas before the (re)snapshot cannot be applied to anything valid.
                stats.stale_dropped += 1
                continue
            stats.book_events += 1
            out.append(event)

    def _on_trades(self, msg: dict[str, Any], ts_local_ns: int, out: list[MarketEvent]) -> None:
        """Append this product's live trades of a ``market_trades`` frame to ``out``."""
        stats = self.stats
        symbol = self.symbol
        trades: list[Trade] = []
        try:
            for event in msg["events"]:
                kind = event["type"]
                if kind == "snapshot":
                    # Recent history sent on subscribe: these trades are not happening now.
                    continue
                if kind != "update":
                    raise ValueError(f"unknown market_trades event type {kind!r}")
                # An update lists its trades newest first; emit them in the order they happened.
                for trade in reversed(event["trades"]):
                    if trade["product_id"] != symbol:
                        continue
                    price, qty = _checked(float(trade["price"]), float(trade["size"]))
                    trades.append(
                        Trade(
                            parse_rfc3339_ns(trade["time"]),
                            ts_local_ns,
                            symbol,
                            price,
                            qty,
                            _AGGRESSOR_OF_MAKER_SIDE[trade["side"]],
                            str(trade["trade_id"]),
                        )
                    )
        except _BAD_FRAME:
            stats.malformed += 1
            return
        if not trades:
            stats.ignored += 1
            return
        stats.trades += len(trades)
        out.extend(trades)


def _dumps(obj: dict[str, Any]) -> str:
    """Serialize a frame compactly, as the venues' own examples are written."""
    return json.dumps(obj, separators=(",", ":"))
