"""A generic market-data feed on ccxt pro, for any exchange without a native module.

``--venue ccxt:<exchange-id>`` streams ``watch_order_book`` and ``watch_trades``. ccxt keeps
the book itself (snapshot, deltas and its own sequence checks), so every update arrives as the
current top of book: we emit it as a ``BookSnapshot`` of the top ``depth`` levels. Trades come
from ccxt's cache of recent trades, deduplicated by trade id (or timestamp, price and size when
the exchange gives no id). Errors are handled like the native feeds: a retryable ccxt error
(network, timeout, rate limit, exchange not available) invalidates the book and the watch is
retried with the shared backoff; anything else stops the feed.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from adapters.ws import ReconnectPolicy
from bot.events import BookInvalid, BookSnapshot, Level, MarketEvent, Side, Trade

MS = 1_000_000


def _levels(rows: Any, depth: int) -> tuple[Level, ...]:
    out: list[Level] = []
    for row in rows[:depth]:
        price, qty = float(row[0]), float(row[1])
        out.append((price, qty))
    return tuple(out)


def book_event(book: dict[str, Any], symbol: str, depth: int, ts_local_ns: int) -> BookSnapshot:
    """Translate a ccxt order book dict into a ``BookSnapshot``."""
    ts_ms = book.get("timestamp")
    ts_exchange = int(ts_ms) * MS if ts_ms else ts_local_ns
    nonce = book.get("nonce")
    return BookSnapshot(ts_exchange, ts_local_ns, symbol, _levels(book.get("bids") or [], depth),
                        _levels(book.get("asks") or [], depth), int(nonce) if nonce else 0)


def trade_event(trade: dict[str, Any], symbol: str, ts_local_ns: int) -> Trade | None:
    """Translate a ccxt trade dict into a ``Trade`` (None when it lacks a side or price)."""
    side = trade.get("side")
    price, amount = trade.get("price"), trade.get("amount")
    if side not in ("buy", "sell") or price is None or amount is None:
        return None
    ts_ms = trade.get("timestamp")
    ts_exchange = int(ts_ms) * MS if ts_ms else ts_local_ns
    return Trade(ts_exchange, ts_local_ns, symbol, float(price), float(amount),
                 Side.BUY if side == "buy" else Side.SELL, str(trade.get("id") or ""))


def market_rules(market: dict[str, Any], precision_mode: int) -> tuple[float, float]:
    """Return (tick, lot) of a ccxt market, whatever its precision mode."""
    import ccxt

    precision = market.get("precision") or {}

    def step(value: Any) -> float:
        if value is None:
            return math.nan
        if precision_mode == ccxt.TICK_SIZE:
            return float(value)
        return float(10.0 ** -int(value))

    return step(precision.get("price")), step(precision.get("amount"))


class CcxtFeed:
    """Stream one symbol of any ccxt pro exchange as events."""

    def __init__(self, exchange_id: str, symbol: str, depth: int = 50,
                 policy: ReconnectPolicy | None = None, exchange: Any = None,
                 log: Any = None) -> None:
        self.exchange_id = exchange_id
        self.symbol = symbol
        self.depth = depth
        self.policy = policy or ReconnectPolicy()
        self.log = log
        self.errors = 0
        self._exchange = exchange
        self._seen: deque[str] = deque(maxlen=5000)
        self._seen_set: set[str] = set()
        self._rng = random.Random()

    def _make_exchange(self) -> Any:
        if self._exchange is None:
            import ccxt.pro

            try:
                cls = getattr(ccxt.pro, self.exchange_id)
            except AttributeError as exc:
                from bot.errors import ConfigError

                raise ConfigError("market.venue",
                                  f"ccxt pro has no exchange {self.exchange_id!r}") from exc
            self._exchange = cls({"enableRateLimit": True})
        return self._exchange

    async def rules(self) -> tuple[float, float]:
        """Load markets and return (tick, lot) of the symbol."""
        exchange = self._make_exchange()
        markets = await exchange.load_markets()
        if self.symbol not in markets:
            from bot.errors import ConfigError

            raise ConfigError("market.symbol",
                              f"{self.exchange_id} has no market {self.symbol!r}")
        return market_rules(markets[self.symbol], exchange.precisionMode)

    def _fresh(self, trade: dict[str, Any]) -> bool:
        key = str(trade.get("id") or (trade.get("timestamp"), trade.get("price"),
                                      trade.get("amount")))
        if key in self._seen_set:
            return False
        if len(self._seen) == self._seen.maxlen:
            self._seen_set.discard(self._seen[0])
        self._seen.append(key)
        self._seen_set.add(key)
        return True

    async def events(self) -> AsyncIterator[MarketEvent]:
        """Yield book snapshots and trades until cancelled."""
        import ccxt

        exchange = self._make_exchange()
        queue: asyncio.Queue[MarketEvent | BaseException] = asyncio.Queue()

        async def watch(kind: str) -> None:
            attempt = 0
            while True:
                try:
                    if kind == "book":
                        book = await exchange.watch_order_book(self.symbol, self.depth)
                        queue.put_nowait(book_event(book, self.symbol, self.depth,
                                                    time.time_ns()))
                    else:
                        trades = await exchange.watch_trades(self.symbol)
                        now = time.time_ns()
                        for raw in trades:
                            if self._fresh(raw):
                                event = trade_event(raw, self.symbol, now)
                                if event is not None:
                                    queue.put_nowait(event)
                    attempt = 0
                except (ccxt.NetworkError, ccxt.ExchangeNotAvailable) as exc:
                    self.errors += 1
                    now = time.time_ns()
                    queue.put_nowait(BookInvalid(now, now, self.symbol, f"ccxt: {exc}"[:200]))
                    if self.log is not None:
                        self.log.warning("ccxt_feed_error", kind=kind, error=type(exc).__name__)
                    await asyncio.sleep(self.policy.delay(attempt, self._rng))
                    attempt += 1
                except Exception as exc:
                    # Not retryable: hand it to the consumer, which stops the feed.
                    queue.put_nowait(exc)
                    return

        tasks = [asyncio.create_task(watch("book"), name=f"ccxt-book:{self.symbol}"),
                 asyncio.create_task(watch("trades"), name=f"ccxt-trades:{self.symbol}")]
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await exchange.close()
