"""OKX v5 public websocket: the pure parser of the order-book and trades channels.

The incremental book channels (``books`` 400 levels, ``books50-l2-tbt``, ``books-l2-tbt``) send a
full ``snapshot`` on subscription and then ``update`` messages with absolute sizes (size "0"
removes a level). Two integrity checks exist, and the parser applies both whenever the venue
provides them:

* ``seqId`` / ``prevSeqId``: an update's ``prevSeqId`` must equal the ``seqId`` of the message
  before it. A snapshot has ``prevSeqId == -1``. A message with ``seqId == prevSeqId`` and no
  levels is the venue's "still alive, nothing changed" push. A maintenance reset of the counter
  arrives as an update whose ``seqId`` is *smaller* than its ``prevSeqId``; it is accepted
  (its ``prevSeqId`` still chains), and the chain continues from the new ``seqId``.
* ``checksum``: CRC32 (as a signed 32-bit integer) of the first 25 bids and asks of the full
  book, interleaved ``bid:ask:bid:ask...`` with every level written ``price:size`` from the
  *original* strings; when one side has fewer than 25 levels the other side's remaining levels
  follow. It is verified after applying every message, snapshot included.

OKX deprecated the checksum in 2026 (demo from 2 June, production from 23 June): the field is
still sent but always ``0``, and ``seqId``/``prevSeqId`` is the integrity check. A checksum of
``0`` is therefore treated as "not provided" (counted in ``checksums_skipped``), exactly like a
missing field; the 2022 recordings carry real checksums and no sequence ids, live frames carry
sequence ids and a zero checksum, so every frame is covered by one of the two checks.

On a gap or a checksum mismatch the parser emits ``BookInvalid``, asks the shell to resubscribe
(``Resync.RESUBSCRIBE``) and drops updates until the next snapshot. Trades come from the
``trades`` channel; ``side`` is the taker's side.

Sizes are as OKX sends them: base currency for spot, *contracts* for swaps and futures (the
contract value ``ctVal`` is not applied here).
"""

from __future__ import annotations

import json
import math
import zlib
from typing import Any

from adapters.feed import FeedStats, Resync
from adapters.textbook import TextBookSide
from bot.events import BookDelta, BookInvalid, BookSnapshot, MarketEvent, Side, Trade

OKX_PUBLIC_WS_URL = "wss://ws.okx.com:8443/ws/v5/public"
"""The public websocket endpoint (market data, no login)."""

INCREMENTAL_BOOK_CHANNELS = frozenset({"books", "books50-l2-tbt", "books-l2-tbt"})
"""Book channels with a snapshot followed by incremental updates (the ones this parser reads)."""

CHECKSUM_LEVELS = 25
"""Levels per side that the OKX checksum covers."""

PING_INTERVAL_S = 20.0
"""OKX drops a connection that is silent for 30 s; a text ``ping`` well inside that keeps it."""

_NS_PER_MS = 1_000_000
_SNAPSHOT_PREV_SEQ_ID = -1


class _Malformed(Exception):
    """A frame that does not have the shape the venue documents (internal to this module)."""


def normalize_symbol(symbol: str) -> str:
    """Return the OKX instrument id for ``symbol`` ("btc/usdt" -> "BTC-USDT").

    Swap and futures ids ("BTC-USDT-SWAP", "BTC-USD-220527") pass through unchanged.

    Raises:
        ValueError: ``symbol`` is empty.
    """
    inst_id = symbol.strip().upper().replace("/", "-")
    if not inst_id:
        raise ValueError("OKX symbol must not be empty")
    return inst_id


def okx_checksum(bids: list[str], asks: list[str]) -> int:
    """Return the OKX book checksum of levels already written as ``"price:size"``.

    Args:
        bids: Best-first bid levels, at most ``CHECKSUM_LEVELS`` are used.
        asks: Best-first ask levels, at most ``CHECKSUM_LEVELS`` are used.

    Returns:
        The CRC32 of the interleaved string as a signed 32-bit integer, as OKX sends it.
    """
    bids = bids[:CHECKSUM_LEVELS]
    asks = asks[:CHECKSUM_LEVELS]
    parts: list[str] = []
    for i in range(max(len(bids), len(asks))):
        if i < len(bids):
            parts.append(bids[i])
        if i < len(asks):
            parts.append(asks[i])
    value = zlib.crc32(":".join(parts).encode())
    return value - (1 << 32) if value >= 1 << 31 else value


# One parsed book level: (price, "price:size" as on the wire, size).
_WireLevel = tuple[float, str, float]


def _parse_levels(raw: Any) -> list[_WireLevel]:
    """Parse OKX book levels ``[price, size, "0", orders]``; raise ``_Malformed`` if invalid."""
    if not isinstance(raw, list):
        raise _Malformed("levels are not a list")
    out: list[_WireLevel] = []
    for level in raw:
        if not isinstance(level, list) or len(level) < 2:
            raise _Malformed("level is not [price, size, ...]")
        price_text, size_text = level[0], level[1]
        if not isinstance(price_text, str) or not isinstance(size_text, str):
            raise _Malformed("price and size must be strings")
        price = float(price_text)
        qty = float(size_text)
        # Chained comparisons are False for NaN: one test per value covers NaN, inf and sign.
        if not (0.0 < price < math.inf and 0.0 <= qty < math.inf):
            raise _Malformed(f"bad level {price_text}:{size_text}")
        out.append((price, f"{price_text}:{size_text}", qty))
    return out


def _optional_int(item: dict[str, Any], key: str) -> int | None:
    value = item.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Malformed(f"{key} is not an integer")
    return value


class OkxParser:
    """Pure parser of OKX v5 ``books`` (or tick-by-tick book) and ``trades`` for one instrument.

    A real ``books`` update (``OKX.jsonl.gz``, 2022; live frames since add ``"prevSeqId"`` and
    ``"seqId"`` and, since June 2026, carry ``"checksum": 0``)::

        {"arg":{"channel":"books","instId":"BTC-USD-220527"},"action":"update",
         "data":[{"asks":[["30249.4","0","0","0"],["30261","4","0","1"],
                          ["30310.3","19","0","1"]],
                  "bids":[["30182.6","452","0","1"]],
                  "ts":"1652459225464","checksum":-914047754}]}

    and a real trade (``side`` is the taker's)::

        {"arg":{"channel":"trades","instId":"BTC-USD-220527"},"data":[{"instId":"BTC-USD-220527",
         "tradeId":"7849","px":"30218.8","sz":"1","side":"buy","ts":"1652459199958"}]}

    Attributes:
        venue: "okx".
        symbol: The OKX instrument id, also the ``symbol`` of every event ("BTC-USDT").
        channel: The book channel subscribed to.
        stats: Counters (messages, book events, trades, gaps, checksum errors ...).
        checksums_verified: Book messages whose checksum was computed and compared.
        checksums_skipped: Book messages without a usable checksum (absent or the deprecated 0).
        heartbeat_interval_s: How often the shell should send ``heartbeat_frame()`` when idle.
    """

    venue = "okx"

    def __init__(
        self,
        symbol: str,
        channel: str = "books",
        *,
        ws_url: str = OKX_PUBLIC_WS_URL,
    ) -> None:
        """Create a parser for ``symbol`` ("BTC-USDT", "BTC/USDT" or "BTC-USDT-SWAP").

        Args:
            symbol: Instrument; "/" is accepted for "-".
            channel: One of ``INCREMENTAL_BOOK_CHANNELS``; the tick-by-tick ones need a login
                and a VIP tier at OKX.
            ws_url: Websocket address (tests point it at a local server).

        Raises:
            ValueError: Empty symbol or a channel that is not an incremental book channel.
        """
        if channel not in INCREMENTAL_BOOK_CHANNELS:
            raise ValueError(
                f"OKX book channel must be one of {sorted(INCREMENTAL_BOOK_CHANNELS)}, "
                f"not {channel!r}"
            )
        self.symbol = normalize_symbol(symbol)
        self.channel = channel
        self.stats = FeedStats()
        self.checksums_verified = 0
        self.checksums_skipped = 0
        self.heartbeat_interval_s: float | None = PING_INTERVAL_S
        self._ws_url = ws_url
        self._bids = TextBookSide(float(Side.BUY))
        self._asks = TextBookSide(float(Side.SELL))
        self._synced = False
        self._last_seq: int | None = None
        self._resync = Resync.NONE

    # ----------------------------------------------------------------------------------------
    # What the shell needs
    # ----------------------------------------------------------------------------------------

    @property
    def resync(self) -> Resync:
        """Return RESUBSCRIBE after a gap or checksum mismatch until a snapshot arrives."""
        return self._resync

    def ws_url(self) -> str:
        """Return the websocket address to connect to."""
        return self._ws_url

    def subscribe_frames(self) -> list[str]:
        """Return the one subscribe frame for the book channel and trades of the instrument."""
        args = [
            {"channel": self.channel, "instId": self.symbol},
            {"channel": "trades", "instId": self.symbol},
        ]
        return [json.dumps({"op": "subscribe", "args": args})]

    def resubscribe_frames(self) -> list[str]:
        """Return the frames that get a fresh book snapshot without reconnecting.

        Unsubscribing first makes OKX treat the subscribe as new and push a snapshot again.
        """
        arg = [{"channel": self.channel, "instId": self.symbol}]
        return [
            json.dumps({"op": "unsubscribe", "args": arg}),
            json.dumps({"op": "subscribe", "args": arg}),
        ]

    def snapshot_url(self) -> str | None:
        """Return None: the book channel pushes its own snapshot on subscription."""
        return None

    def heartbeat_frame(self) -> str | None:
        """Return the text ``ping`` OKX expects from an idle client (it answers ``pong``)."""
        return "ping"

    def reset(self) -> None:
        """Forget the book and the sequence: called on every (re)connect."""
        self._bids.clear()
        self._asks.clear()
        self._synced = False
        self._last_seq = None
        self._resync = Resync.NONE

    # ----------------------------------------------------------------------------------------
    # Parsing
    # ----------------------------------------------------------------------------------------

    def on_snapshot(self, raw: str | bytes, ts_local_ns: int) -> list[MarketEvent]:
        """Ignore a REST body: OKX snapshots arrive on the websocket (``snapshot_url`` is None)."""
        self.stats.ignored += 1
        return []

    def on_message(self, raw: str | bytes, ts_local_ns: int) -> list[MarketEvent]:
        """Parse one websocket frame into events; malformed frames are counted, never raised."""
        stats = self.stats
        stats.messages += 1
        book_frame = False
        try:
            text = raw.decode() if isinstance(raw, bytes) else raw
            if text == "pong":
                stats.ignored += 1
                return []
            msg = json.loads(text)
            if not isinstance(msg, dict):
                raise _Malformed("frame is not an object")
            arg = msg.get("arg")
            data = msg.get("data")
            if "event" in msg or not isinstance(arg, dict) or data is None:
                # Subscription acks, errors and notices: nothing for the book or the strategy.
                stats.ignored += 1
                return []
            if arg.get("instId") != self.symbol:
                stats.ignored += 1
                return []
            channel = arg.get("channel")
            if not isinstance(data, list):
                raise _Malformed("data is not a list")
            if channel == self.channel:
                book_frame = True
                action = msg.get("action")
                events: list[MarketEvent] = []
                for item in data:
                    events.extend(self._on_book(action, item, ts_local_ns))
                return events
            if channel == "trades":
                return self._on_trades(data, ts_local_ns)
            stats.ignored += 1
            return []
        except (_Malformed, ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError):
            stats.malformed += 1
            if book_frame and self._synced:
                # An update of our book we cannot read is an update lost: resync now rather
                # than wait for the next checksum to notice.
                stats.resyncs += 1
                self._bids.clear()
                self._asks.clear()
                self._synced = False
                self._last_seq = None
                self._resync = Resync.RESUBSCRIBE
                return [BookInvalid(0, ts_local_ns, self.symbol, "malformed book update")]
            return []

    def _on_book(self, action: Any, item: Any, ts_local_ns: int) -> list[MarketEvent]:
        if not isinstance(item, dict):
            raise _Malformed("book data item is not an object")
        # Parse everything before touching the book, so a bad frame changes nothing.
        bids = _parse_levels(item.get("bids", []))
        asks = _parse_levels(item.get("asks", []))
        ts_exchange_ns = int(item["ts"]) * _NS_PER_MS
        checksum = _optional_int(item, "checksum")
        seq = _optional_int(item, "seqId")
        prev_seq = _optional_int(item, "prevSeqId")

        if action == "snapshot":
            return self._apply_snapshot(bids, asks, checksum, seq, ts_exchange_ns, ts_local_ns)
        if action != "update":
            raise _Malformed(f"unknown book action {action!r}")
        if not self._synced:
            # After a gap (or before the first snapshot) deltas cannot repair the book.
            self.stats.stale_dropped += 1
            return []
        # Only prevSeqId is compared: seqId < prevSeqId is the documented maintenance reset
        # and seqId == prevSeqId the no-change push; both chain and are accepted.
        chained = seq is not None and prev_seq is not None and self._last_seq is not None
        if chained and prev_seq != self._last_seq:
            reason = f"sequence gap: prevSeqId {prev_seq} != last seqId {self._last_seq}"
            return [self._invalidate(reason, ts_exchange_ns, ts_local_ns, gap=True)]
        for price, text, qty in bids:
            self._bids.set(price, text, qty)
        for price, text, qty in asks:
            self._asks.set(price, text, qty)
        if seq is not None:
            self._last_seq = seq
        mismatch = self._check(checksum)
        if mismatch:
            return [self._invalidate(mismatch, ts_exchange_ns, ts_local_ns, gap=False)]
        # A no-change push (seqId == prevSeqId, no levels) still becomes an empty delta: it
        # tells the engine the book is current, so a quiet market does not look stale.
        self.stats.book_events += 1
        return [
            BookDelta(
                ts_exchange_ns=ts_exchange_ns,
                ts_local_ns=ts_local_ns,
                symbol=self.symbol,
                bids=tuple((price, qty) for price, _, qty in bids),
                asks=tuple((price, qty) for price, _, qty in asks),
                sequence=seq if seq is not None else 0,
            )
        ]

    def _apply_snapshot(
        self,
        bids: list[_WireLevel],
        asks: list[_WireLevel],
        checksum: int | None,
        seq: int | None,
        ts_exchange_ns: int,
        ts_local_ns: int,
    ) -> list[MarketEvent]:
        self._bids.replace(bids)
        self._asks.replace(asks)
        self._synced = True
        self._last_seq = seq
        self._resync = Resync.NONE
        mismatch = self._check(checksum)
        if mismatch:
            return [self._invalidate(mismatch, ts_exchange_ns, ts_local_ns, gap=False)]
        self.stats.book_events += 1
        return [
            BookSnapshot(
                ts_exchange_ns=ts_exchange_ns,
                ts_local_ns=ts_local_ns,
                symbol=self.symbol,
                bids=self._bids.all_levels(),
                asks=self._asks.all_levels(),
                sequence=seq if seq is not None else 0,
            )
        ]

    def _check(self, expected: int | None) -> str:
        """Compare the book's checksum with ``expected``; return why it failed, or ''."""
        if not expected:
            # Absent, or 0: the value OKX sends since it deprecated the checksum.
            self.checksums_skipped += 1
            return ""
        self.checksums_verified += 1
        actual = okx_checksum(
            self._bids.top_text(CHECKSUM_LEVELS), self._asks.top_text(CHECKSUM_LEVELS)
        )
        if actual == expected:
            return ""
        return f"checksum mismatch: venue {expected}, book {actual}"

    def _invalidate(
        self, reason: str, ts_exchange_ns: int, ts_local_ns: int, *, gap: bool
    ) -> BookInvalid:
        if gap:
            self.stats.gaps += 1
        else:
            self.stats.checksum_errors += 1
        self.stats.resyncs += 1
        self._bids.clear()
        self._asks.clear()
        self._synced = False
        self._last_seq = None
        self._resync = Resync.RESUBSCRIBE
        return BookInvalid(ts_exchange_ns, ts_local_ns, self.symbol, reason)

    def _on_trades(self, data: list[Any], ts_local_ns: int) -> list[MarketEvent]:
        trades: list[MarketEvent] = []
        for item in data:
            if not isinstance(item, dict):
                raise _Malformed("trade is not an object")
            price = float(item["px"])
            qty = float(item["sz"])
            side = item["side"]
            if side not in ("buy", "sell"):
                raise _Malformed(f"unknown trade side {side!r}")
            if not (0.0 < price < math.inf and 0.0 < qty < math.inf):
                raise _Malformed("bad trade price or size")
            trades.append(
                Trade(
                    ts_exchange_ns=int(item["ts"]) * _NS_PER_MS,
                    ts_local_ns=ts_local_ns,
                    symbol=self.symbol,
                    price=price,
                    qty=qty,
                    aggressor=Side.BUY if side == "buy" else Side.SELL,
                    trade_id=str(item.get("tradeId", "")),
                )
            )
        self.stats.trades += len(trades)
        return trades
