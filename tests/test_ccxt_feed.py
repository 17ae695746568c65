"""The generic ccxt pro feed: translation, trade deduplication, retry on network errors.

ccxt keeps the book and talks to the exchange itself; what is ours is the translation into
events and the error handling, tested here with an exchange object that behaves like a ccxt
pro one (same method names, return shapes and exception classes).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import ccxt
import pytest

from adapters.ccxt_feed import CcxtFeed, book_event, market_rules, trade_event
from adapters.ws import ReconnectPolicy
from bot.events import BookInvalid, BookSnapshot, Side, Trade


class FakeProExchange:
    """Scripted ``watch_order_book`` / ``watch_trades`` results; exceptions are raised."""

    def __init__(self, books: list[Any], trades: list[Any]) -> None:
        self.books = books
        self.trades = trades
        self.closed = False

    async def watch_order_book(self, symbol: str, limit: int) -> Any:
        await asyncio.sleep(0.001)
        if not self.books:
            await asyncio.sleep(3600)
        item = self.books.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    async def watch_trades(self, symbol: str) -> Any:
        await asyncio.sleep(0.001)
        if not self.trades:
            await asyncio.sleep(3600)
        item = self.trades.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    async def close(self) -> None:
        self.closed = True


def book(ts: int, bid: float, ask: float) -> dict[str, Any]:
    return {"bids": [[bid, 1.0], [bid - 1, 2.0]], "asks": [[ask, 1.5]], "timestamp": ts,
            "nonce": ts}


def trade(tid: str, side: str, price: float) -> dict[str, Any]:
    return {"id": tid, "side": side, "price": price, "amount": 0.1, "timestamp": 1000}


async def collect(feed: CcxtFeed, n: int) -> list[Any]:
    out = []
    async with asyncio.timeout(5), contextlib.aclosing(feed.events()) as stream:
        async for event in stream:
            out.append(event)
            if len(out) == n:
                break
    return out


async def test_books_and_trades_become_events_and_repeated_trades_are_dropped() -> None:
    first = [trade("1", "buy", 100.5), trade("2", "sell", 99.5)]
    exchange = FakeProExchange(
        books=[book(1000, 99.5, 100.5), book(2000, 99.6, 100.4)],
        trades=[first, [*first, trade("3", "buy", 100.4)]],  # ccxt returns its cache again
    )
    feed = CcxtFeed("binance", "BTC/USDT", depth=10, exchange=exchange)

    events = await collect(feed, 5)

    books = [e for e in events if isinstance(e, BookSnapshot)]
    trades = [e for e in events if isinstance(e, Trade)]
    assert [b.bids[0] for b in books] == [(99.5, 1.0), (99.6, 1.0)]
    assert [t.trade_id for t in trades] == ["1", "2", "3"]
    assert trades[0].aggressor is Side.BUY and trades[1].aggressor is Side.SELL
    assert exchange.closed


async def test_network_error_invalidates_the_book_and_the_watch_is_retried() -> None:
    exchange = FakeProExchange(
        books=[book(1000, 99.5, 100.5), ccxt.NetworkError("socket closed"),
               book(3000, 99.7, 100.3)],
        trades=[],
    )
    feed = CcxtFeed("binance", "BTC/USDT", exchange=exchange,
                    policy=ReconnectPolicy(initial_s=0.001, max_s=0.01))

    events = await collect(feed, 3)

    assert isinstance(events[0], BookSnapshot)
    assert isinstance(events[1], BookInvalid)
    assert isinstance(events[2], BookSnapshot) and events[2].bids[0][0] == 99.7
    assert feed.errors == 1


async def test_a_fatal_error_stops_the_feed() -> None:
    exchange = FakeProExchange(books=[ccxt.BadSymbol("no such market")], trades=[])
    feed = CcxtFeed("binance", "NOPE/USDT", exchange=exchange)

    with pytest.raises(ccxt.BadSymbol):
        await collect(feed, 1)
    assert exchange.closed


def test_translation_keeps_depth_time_and_sides() -> None:
    snap = book_event(book(1_700_000_000_000, 10.0, 11.0), "X/Y", 1, 5)
    assert snap.ts_exchange_ns == 1_700_000_000_000 * 1_000_000
    assert snap.bids == ((10.0, 1.0),) and snap.asks == ((11.0, 1.5),)
    assert trade_event({"side": None, "price": 1.0, "amount": 1.0}, "X/Y", 0) is None


def test_market_rules_in_both_precision_modes() -> None:
    market = {"precision": {"price": 0.01, "amount": 0.001}}
    assert market_rules(market, ccxt.TICK_SIZE) == (0.01, 0.001)
    market = {"precision": {"price": 2, "amount": 5}}
    assert market_rules(market, ccxt.DECIMAL_PLACES) == pytest.approx((0.01, 0.00001))
