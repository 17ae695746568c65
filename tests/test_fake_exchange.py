"""ccxt's real binance classes against the loopback fake spot venue (``tests/fakes/exchange.py``).

Every scenario drives ``ccxt.async_support.binance`` or ``ccxt.pro.binance`` unmodified, pointed
at ``FakeBinanceSpot`` with ``make_exchange`` (the options it sets are ``CCXT_OPTIONS``), and
checks both sides: what ccxt returned or raised, and what the venue saw and holds (recorded
requests, ledger, counters). The exception classes asserted here are the contract the live
execution adapter relies on; each test names the Binance answer behind it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import ccxt
import ccxt.async_support
import ccxt.pro
import pytest
from fakes.exchange import (
    BTCUSDT,
    CCXT_OPTIONS,
    WS,
    BinanceError,
    FakeBinanceSpot,
    FaultKind,
    SpotLedger,
)
from hypothesis import given, settings
from hypothesis import strategies as st

SYMBOL = "BTC/USDT"
TEST_TIMEOUT_S = 10.0
PREFIX = "mmtest-"
"""The run prefix our client order ids carry (the live adapter's convention)."""


# --------------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinanceSpot]:
    """Start the venue with 10,000 USDT and 1 BTC, BTCUSDT quoted 60000.00 / 60000.01."""
    async with FakeBinanceSpot() as venue:
        venue.set_book("BTCUSDT", "60000.00", "60000.01")
        yield venue


@pytest.fixture
async def rest(fake: FakeBinanceSpot) -> AsyncIterator[Any]:
    """Return ccxt.async_support.binance with markets loaded (REST timeout 500 ms)."""
    exchange = fake.make_exchange(ccxt.async_support.binance, timeout_ms=500)
    try:
        async with asyncio.timeout(TEST_TIMEOUT_S):
            await exchange.load_markets()
        yield exchange
    finally:
        await exchange.close()


@pytest.fixture
async def pro(fake: FakeBinanceSpot) -> AsyncIterator[Any]:
    """Return ccxt.pro.binance with markets loaded (websocket ping every 200 ms)."""
    exchange = fake.make_exchange(ccxt.pro.binance, timeout_ms=500, keep_alive_ms=200)
    try:
        async with asyncio.timeout(TEST_TIMEOUT_S):
            await exchange.load_markets()
        yield exchange
    finally:
        await exchange.close()


async def post_only_bid(exchange: Any, coid: str, price: float = 59000.0,
                        qty: float = 0.001) -> dict[str, Any]:
    """Place a post-only BTC/USDT bid the way the live adapter does."""
    order: dict[str, Any] = await exchange.create_order(
        SYMBOL, "limit", "buy", qty, price, {"postOnly": True, "clientOrderId": coid})
    return order


async def subscribed(fake: FakeBinanceSpot) -> None:
    """Wait for ccxt pro's user data subscription, then let ccxt register its watch future.

    The venue counts a subscription when it answers it; ccxt registers the watch's own future
    when it has read that answer, a few loop turns later.
    """
    await fake.wait_subscribed()
    await asyncio.sleep(0.01)


def balances(fake: FakeBinanceSpot) -> dict[str, tuple[Decimal, Decimal]]:
    """Return a snapshot of (free, locked) per asset."""
    return {asset: (b.free, b.locked) for asset, b in fake.balances().items()}


# --------------------------------------------------------------------------------------------
# Markets and the ccxt options
# --------------------------------------------------------------------------------------------


async def test_load_markets_takes_tick_lot_and_min_notional_from_exchange_info_only(
        fake: FakeBinanceSpot) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S):
        exchange = fake.make_exchange(ccxt.async_support.binance)
        try:
            markets = await exchange.load_markets()
        finally:
            await exchange.close()

        market = markets[SYMBOL]
        assert market["precision"]["price"] == 0.01
        assert market["precision"]["amount"] == 0.00001
        assert market["limits"]["amount"]["min"] == 0.00001
        assert market["limits"]["cost"]["min"] == 5.0
        assert markets["ETH/USDT"]["precision"]["amount"] == 0.0001
        # CCXT_OPTIONS keep load_markets to one public call: no sapi, fapi or dapi.
        assert [(r.method, r.path) for r in fake.requests] == [("GET", "/api/v3/exchangeInfo")]
        assert fake.errors == []


async def test_default_ccxt_options_call_sapi_which_the_fake_refuses_and_records(
        fake: FakeBinanceSpot) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S):
        exchange = ccxt.async_support.binance({"apiKey": fake.api_key, "secret": fake.secret,
                                               "enableRateLimit": False})
        exchange.urls["api"] = fake.urls()
        exchange.timeout_on_exit = 0
        try:
            with pytest.raises(ccxt.ExchangeNotAvailable):
                await exchange.load_markets()
        finally:
            await exchange.close()

        assert "not served: GET /sapi/v1/capital/config/getall" in fake.errors
        assert set(CCXT_OPTIONS) >= {"fetchCurrencies", "fetchMarkets", "fetchMargins"}


# --------------------------------------------------------------------------------------------
# Orders: create, cancel, rejects
# --------------------------------------------------------------------------------------------


async def test_post_only_with_client_order_id_goes_out_as_limit_maker_and_locks_quote(
        fake: FakeBinanceSpot, rest: Any) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S):
        order = await post_only_bid(rest, PREFIX + "1")

        sent = fake.requests_to("POST", "/api/v3/order")[-1]
        assert sent.params["type"] == "LIMIT_MAKER"
        assert "timeInForce" not in sent.params
        assert sent.params["newClientOrderId"].startswith(PREFIX)
        assert sent.params["newOrderRespType"] == "FULL"
        assert {"timestamp", "recvWindow", "signature"} <= set(sent.params)
        assert sent.api_key == fake.api_key and sent.status == 200
        assert order["clientOrderId"] == PREFIX + "1"
        assert order["postOnly"] is True and order["status"] == "open"
        assert [o.client_order_id for o in fake.open_orders("BTCUSDT")] == [PREFIX + "1"]
        assert balances(fake)["USDT"] == (Decimal("9941"), Decimal("59"))


async def test_cancel_by_client_order_id_sends_orig_client_order_id_and_releases_the_lock(
        fake: FakeBinanceSpot, rest: Any) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S):
        await post_only_bid(rest, PREFIX + "2")

        canceled = await rest.cancel_order(None, SYMBOL, {"clientOrderId": PREFIX + "2"})

        sent = fake.requests_to("DELETE", "/api/v3/order")[-1]
        assert sent.params["origClientOrderId"] == PREFIX + "2"
        assert "orderId" not in sent.params
        assert canceled["status"] == "canceled"
        # ccxt reports the cancel request's own id as clientOrderId (Binance's "clientOrderId"
        # of a cancel answer); the order's id is in "origClientOrderId".
        assert canceled["info"]["origClientOrderId"] == PREFIX + "2"
        assert fake.open_orders() == []
        assert balances(fake)["USDT"] == (Decimal("10000"), Decimal("0"))


async def test_cancel_of_a_filled_order_raises_order_not_found(
        fake: FakeBinanceSpot, rest: Any) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S):
        order = await post_only_bid(rest, PREFIX + "3")
        await fake.fill(PREFIX + "3")

        with pytest.raises(ccxt.OrderNotFound):
            await rest.cancel_order(order["id"], SYMBOL)

        assert fake.requests_to("DELETE", "/api/v3/order")[-1].code == -2011
        assert fake.order(PREFIX + "3").status == "FILLED"


async def test_cancel_all_cancels_every_open_order_then_raises_order_not_found_when_none_left(
        fake: FakeBinanceSpot, rest: Any) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S):
        await post_only_bid(rest, PREFIX + "4a")
        await post_only_bid(rest, PREFIX + "4b", price=58000.0)

        canceled = await rest.cancel_all_orders(SYMBOL)

        assert sorted(o["info"]["origClientOrderId"] for o in canceled) == [PREFIX + "4a",
                                                                            PREFIX + "4b"]
        assert fake.open_orders() == []
        # Binance answers -2011 to a cancel-all with nothing open; ccxt raises, not [].
        with pytest.raises(ccxt.OrderNotFound):
            await rest.cancel_all_orders(SYMBOL)


async def test_bid_beyond_free_quote_raises_insufficient_funds_and_nothing_rests(
        fake: FakeBinanceSpot, rest: Any) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S):
        with pytest.raises(ccxt.InsufficientFunds):
            await post_only_bid(rest, PREFIX + "5", qty=0.2)  # 11,800 USDT > 10,000

        assert fake.requests_to("POST", "/api/v3/order")[-1].code == -2010
        assert fake.open_orders() == []
        assert balances(fake)["USDT"] == (Decimal("10000"), Decimal("0"))


async def test_post_only_at_the_ask_raises_order_immediately_fillable(
        fake: FakeBinanceSpot, rest: Any) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S):
        with pytest.raises(ccxt.OrderImmediatelyFillable) as info:
            await post_only_bid(rest, PREFIX + "6", price=60000.01)

        # Matched on Binance's message ("Order would immediately match and take."), code -2010.
        assert isinstance(info.value, ccxt.InvalidOrder)
        assert fake.requests_to("POST", "/api/v3/order")[-1].code == -2010
        assert fake.open_orders() == [] and fake.trades() == []


async def test_plain_limit_crossing_the_ask_fills_at_once_as_taker_at_the_touch(
        fake: FakeBinanceSpot, rest: Any) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S):
        order = await rest.create_order(SYMBOL, "limit", "buy", 0.001, 60100.0,
                                        {"clientOrderId": PREFIX + "7"})

        assert order["status"] == "closed" and order["filled"] == 0.001
        assert order["trades"][0]["price"] == 60000.01
        [trade] = await rest.fetch_my_trades(SYMBOL)
        assert trade["takerOrMaker"] == "taker"
        assert trade["fee"] == {"currency": "USDT", "cost": pytest.approx(0.06000001)}
        # The lock was at 60100; the fill at 60000.01 gives the difference back.
        assert balances(fake)["USDT"] == (Decimal("9939.93998999"), Decimal("0"))
        assert balances(fake)["BTC"] == (Decimal("1.001"), Decimal("0"))


@pytest.mark.parametrize(
    ("price", "quantity", "error", "message"),
    [
        ("59000.005", "0.001", ccxt.InvalidOrder, "Filter failure: PRICE_FILTER"),
        ("59000.00", "0.0010001", ccxt.InvalidOrder, "Filter failure: LOT_SIZE"),
        ("59000.00", "0.00005", ccxt.BadRequest, "Filter failure: NOTIONAL"),
    ],
)
async def test_filter_failures_raise_by_the_message_binance_sends(
        fake: FakeBinanceSpot, rest: Any, price: str, quantity: str,
        error: type[Exception], message: str) -> None:
    # The raw endpoint: ccxt's create_order would round price and amount to the filters first.
    async with asyncio.timeout(TEST_TIMEOUT_S):
        with pytest.raises(error) as info:
            await rest.private_post_order({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT",
                                           "timeInForce": "GTC", "price": price,
                                           "quantity": quantity})

        assert message in str(info.value)
        assert fake.requests_to("POST", "/api/v3/order")[-1].code == -1013
        assert fake.open_orders() == []


async def test_amount_below_the_lot_is_refused_by_ccxt_before_it_is_sent(
        fake: FakeBinanceSpot, rest: Any) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S):
        with pytest.raises(ccxt.InvalidOrder):
            await post_only_bid(rest, PREFIX + "8", qty=0.000001)

        assert fake.requests_to("POST", "/api/v3/order") == []


async def test_same_client_order_id_while_the_first_rests_is_a_duplicate_invalid_order(
        fake: FakeBinanceSpot, rest: Any) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S):
        await post_only_bid(rest, PREFIX + "9")

        with pytest.raises(ccxt.InvalidOrder) as info:
            await post_only_bid(rest, PREFIX + "9")

        # -2010 "Duplicate order sent." is a plain InvalidOrder in ccxt, not DuplicateOrderId.
        assert type(info.value) is ccxt.InvalidOrder
        assert "Duplicate order sent." in str(info.value)
        assert len(fake.open_orders()) == 1
        # Once the first is closed the id is free again.
        await rest.cancel_order(None, SYMBOL, {"clientOrderId": PREFIX + "9"})
        assert (await post_only_bid(rest, PREFIX + "9"))["status"] == "open"


async def test_client_order_id_longer_than_36_characters_is_a_bad_request(
        fake: FakeBinanceSpot, rest: Any) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S):
        with pytest.raises(ccxt.BadRequest, match="-1100"):
            await post_only_bid(rest, PREFIX + "x" * (37 - len(PREFIX)))

        assert fake.open_orders() == []
        assert (await post_only_bid(rest, PREFIX + "x" * (36 - len(PREFIX))))["status"] == "open"


# --------------------------------------------------------------------------------------------
# Authentication and timing
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "secret", "status", "code"),
                         [(None, "not-the-secret", 400, -1022), ("not-the-key", None, 401, -2015)])
async def test_wrong_credentials_raise_authentication_error_and_nothing_is_applied(
        fake: FakeBinanceSpot, key: str | None, secret: str | None, status: int,
        code: int) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S):
        exchange = fake.make_exchange(ccxt.async_support.binance, api_key=key, secret=secret)
        try:
            await exchange.load_markets()
            with pytest.raises(ccxt.AuthenticationError):
                await post_only_bid(exchange, PREFIX + "10")
            with pytest.raises(ccxt.AuthenticationError):
                await exchange.fetch_balance()
        finally:
            await exchange.close()

        assert {(r.status, r.code) for r in fake.requests if r.path != "/api/v3/exchangeInfo"
                } == {(status, code)}
        assert fake.open_orders() == []
        assert fake.counters["auth_failures"] == 2


async def test_venue_clock_behind_the_client_raises_invalid_nonce_a_network_error(
        fake: FakeBinanceSpot, rest: Any) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S):
        fake.clock_skew_ms = -5000

        with pytest.raises(ccxt.InvalidNonce) as info:
            await post_only_bid(rest, PREFIX + "11")

        # -1021: retryable in ccxt's hierarchy, although the order was refused outright.
        assert isinstance(info.value, ccxt.NetworkError)
        assert fake.requests_to("POST", "/api/v3/order")[-1].code == -1021
        assert fake.open_orders() == []


# --------------------------------------------------------------------------------------------
# Faults on REST
# --------------------------------------------------------------------------------------------


async def test_rate_limited_create_raises_ddos_protection_with_retry_after_and_nothing_rests(
        fake: FakeBinanceSpot, rest: Any) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S):
        fake.fail_next("POST /api/v3/order", FaultKind.RATE_LIMIT, retry_after_s=2)

        with pytest.raises(ccxt.DDoSProtection) as info:
            await post_only_bid(rest, PREFIX + "12")

        # binance raises DDoSProtection on any 429; RateLimitExceeded is a sibling class.
        assert not isinstance(info.value, ccxt.RateLimitExceeded)
        assert rest.last_response_headers["Retry-After"] == "2"
        assert fake.open_orders() == []
        assert fake.counters["fault.rate_limit"] == 1
        # One request, one fault: the retry goes through.
        assert (await post_only_bid(rest, PREFIX + "12"))["status"] == "open"


@pytest.mark.parametrize(
    ("kind", "applied", "error", "rests"),
    [
        (FaultKind.UNAVAILABLE, None, ccxt.ExchangeNotAvailable, False),
        (FaultKind.GATEWAY_TIMEOUT, None, ccxt.RequestTimeout, True),
        (FaultKind.TIMEOUT, False, ccxt.RequestTimeout, False),
    ],
)
async def test_5xx_or_timeout_on_create_raises_a_network_error_and_rests_only_if_applied(
        fake: FakeBinanceSpot, rest: Any, kind: FaultKind, applied: bool | None,
        error: type[Exception], rests: bool) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S):
        fake.fail_next("/api/v3/order", kind, applied=applied, delay_s=0.7)

        with pytest.raises(error) as info:
            await post_only_bid(rest, PREFIX + "13")

        assert isinstance(info.value, ccxt.NetworkError)
        open_ = await rest.fetch_open_orders(SYMBOL)
        assert [o["clientOrderId"] for o in open_] == ([PREFIX + "13"] if rests else [])


async def test_timeout_raises_request_timeout_while_the_order_reached_the_venue(
        fake: FakeBinanceSpot, rest: Any) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S):
        fake.fail_next("POST /api/v3/order", FaultKind.TIMEOUT, delay_s=2.0)
        started = time.monotonic()

        with pytest.raises(ccxt.RequestTimeout):
            await post_only_bid(rest, PREFIX + "14")

        assert time.monotonic() - started < 1.5  # ccxt gave up at 500 ms, not the venue
        open_ = await rest.fetch_open_orders(SYMBOL)
        assert [o["clientOrderId"] for o in open_] == [PREFIX + "14"]
        found = await rest.fetch_order(None, SYMBOL, {"clientOrderId": PREFIX + "14"})
        assert found["status"] == "open" and found["postOnly"] is True
        assert fake.requests_to("POST", "/api/v3/order")[0].fault is FaultKind.TIMEOUT


async def test_fetch_order_of_an_id_the_venue_never_saw_raises_order_not_found(
        fake: FakeBinanceSpot, rest: Any) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S):
        with pytest.raises(ccxt.OrderNotFound):
            await rest.fetch_order(None, SYMBOL, {"clientOrderId": PREFIX + "never"})

        assert fake.requests_to("GET", "/api/v3/order")[-1].code == -2013


# --------------------------------------------------------------------------------------------
# Fills over REST
# --------------------------------------------------------------------------------------------


async def test_partial_then_full_fill_shows_in_my_trades_the_order_and_the_balance(
        fake: FakeBinanceSpot, rest: Any) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S):
        order = await post_only_bid(rest, PREFIX + "15")

        await fake.fill(PREFIX + "15", "0.0004")
        partial = await rest.fetch_order(order["id"], SYMBOL)
        await fake.fill(PREFIX + "15")
        full = await rest.fetch_order(order["id"], SYMBOL)
        trades = await rest.fetch_my_trades(SYMBOL, None, None, {"orderId": order["id"]})
        balance = await rest.fetch_balance()

        assert (partial["status"], partial["filled"]) == ("open", 0.0004)
        assert (full["status"], full["filled"]) == ("closed", 0.001)
        assert [(t["amount"], t["takerOrMaker"], t["order"]) for t in trades] == [
            (0.0004, "maker", order["id"]), (0.0006, "maker", order["id"])]
        assert [t["fee"]["cost"] for t in trades] == [pytest.approx(0.0236),
                                                      pytest.approx(0.0354)]
        assert balance["BTC"]["free"] == pytest.approx(1.001)
        assert balance["USDT"]["free"] == pytest.approx(10000 - 59 - 0.059)
        assert balance["USDT"]["used"] == 0


# --------------------------------------------------------------------------------------------
# User data stream (ccxt pro)
# --------------------------------------------------------------------------------------------


async def test_watch_orders_and_my_trades_see_the_partial_then_the_full_fill(
        fake: FakeBinanceSpot, pro: Any) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S):
        order = await post_only_bid(pro, PREFIX + "16")
        orders = asyncio.create_task(pro.watch_orders(SYMBOL), name="watch-orders")
        trades = asyncio.create_task(pro.watch_my_trades(SYMBOL), name="watch-trades")
        await subscribed(fake)

        await fake.fill(PREFIX + "16", "0.0004")
        # ccxt returns its live caches: read them before the next update lands.
        first_orders = [(o["id"], o["clientOrderId"], o["status"], o["filled"])
                        for o in await orders]
        first_trades = [(t["amount"], t["price"], t["takerOrMaker"]) for t in await trades]
        orders = asyncio.create_task(pro.watch_orders(SYMBOL), name="watch-orders")
        trades = asyncio.create_task(pro.watch_my_trades(SYMBOL), name="watch-trades")
        await asyncio.sleep(0.01)
        await fake.fill(PREFIX + "16")
        last_orders, last_trades = await orders, await trades

        assert first_orders == [(order["id"], PREFIX + "16", "open", 0.0004)]
        assert first_trades == [(0.0004, 59000.0, "maker")]
        assert (last_orders[-1]["status"], last_orders[-1]["filled"]) == ("closed", 0.001)
        # newUpdates (ccxt's default): a watch returns what arrived since the previous one.
        assert [t["id"] for t in last_trades] == [str(fake.trades()[-1].trade_id)]
        assert last_trades[-1]["fee"] == {"cost": pytest.approx(0.0354), "currency": "USDT"}
        # ccxt 4.5 spot: WebSocket API signature subscription, no listenKey.
        [subscribe] = [r for r in fake.requests if r.method == "WS"]
        assert subscribe.path == "userDataStream.subscribe.signature"
        assert subscribe.api_key == fake.api_key and subscribe.status == 200
        assert fake.requests_to("POST", "/api/v3/userDataStream") == []
        assert fake.errors == []


async def test_dropped_user_stream_fails_the_watch_then_resubscribes_and_rest_has_the_fill(
        fake: FakeBinanceSpot, pro: Any) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S):
        await post_only_bid(pro, PREFIX + "17")
        watch = asyncio.create_task(pro.watch_my_trades(SYMBOL), name="watch-trades")
        await subscribed(fake)
        fake.fail_next(WS, FaultKind.DROP)

        await fake.fill(PREFIX + "17", "0.0002")
        # ccxt does not reconnect by itself: the pending watch fails at once.
        with pytest.raises(ccxt.NetworkError, match="closing code 1006"):
            await watch
        watch = asyncio.create_task(pro.watch_my_trades(SYMBOL), name="watch-trades")
        await subscribed(fake)
        await fake.fill(PREFIX + "17", "0.0003")
        streamed = await watch
        fetched = await pro.fetch_my_trades(SYMBOL)

        lost, seen = fake.trades()
        assert [t["id"] for t in streamed] == [str(seen.trade_id)]
        assert [t["id"] for t in fetched] == [str(lost.trade_id), str(seen.trade_id)]
        assert fake.counters["ws_drops"] == 1 and fake.counters["ws_subscriptions"] == 2
        assert fake.counters["events_lost"] == 1


async def test_silent_user_stream_is_declared_dead_by_ping_pong_with_request_timeout(
        fake: FakeBinanceSpot, pro: Any) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S):
        await post_only_bid(pro, PREFIX + "18")
        watch = asyncio.create_task(pro.watch_orders(SYMBOL), name="watch-orders")
        await subscribed(fake)
        fake.fail_next(WS, FaultKind.SILENT)
        started = time.monotonic()

        await fake.fill(PREFIX + "18")
        with pytest.raises(ccxt.RequestTimeout, match="ping-pong keepalive"):
            await watch

        # Two missed pongs at a 200 ms keepalive (the default keepalive is 180 s).
        assert time.monotonic() - started < 2.0
        assert fake.counters["ws_silenced"] == 1 and fake.counters["events_lost"] == 2
        [order] = await pro.fetch_closed_orders(SYMBOL)
        assert order["clientOrderId"] == PREFIX + "18" and order["filled"] == 0.001


async def test_refused_user_stream_handshake_raises_network_error_then_the_next_watch_connects(
        fake: FakeBinanceSpot, pro: Any) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S):
        await post_only_bid(pro, PREFIX + "19")
        fake.fail_next(WS, FaultKind.UNAVAILABLE)

        with pytest.raises(ccxt.NetworkError, match="503"):
            await pro.watch_orders(SYMBOL)
        watch = asyncio.create_task(pro.watch_orders(SYMBOL), name="watch-orders")
        await subscribed(fake)
        await fake.fill(PREFIX + "19")

        assert (await watch)[-1]["status"] == "closed"
        assert fake.counters["ws_refused"] == 1 and fake.counters["ws_connections"] == 1


async def test_user_stream_subscription_with_a_wrong_secret_fails_the_watch(
        fake: FakeBinanceSpot) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S):
        exchange = fake.make_exchange(ccxt.pro.binance, secret="not-the-secret")
        try:
            await exchange.load_markets()
            # ccxt 4.5.x raises the AuthenticationError, then trips over its own cleanup
            # (KeyError 'spot' in ensure_user_data_stream_ws_subscribe_signature).
            with pytest.raises((ccxt.AuthenticationError, KeyError)) as info:
                await exchange.watch_orders(SYMBOL)
        finally:
            await exchange.close()

        error: BaseException | None = info.value
        chain = []
        while error is not None:
            chain.append(error)
            error = error.__context__
        assert any(isinstance(e, ccxt.AuthenticationError) for e in chain)
        [subscribe] = [r for r in fake.requests if r.method == "WS"]
        assert (subscribe.status, subscribe.code) == (400, -1022)


async def test_listen_key_stream_delivers_raw_execution_reports_and_account_positions(
        fake: FakeBinanceSpot, rest: Any) -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S):
        key = (await rest.public_post_userdatastream())["listenKey"]
        assert (await rest.public_post_userdatastream())["listenKey"] == key
        await rest.public_put_userdatastream({"listenKey": key})
        await post_only_bid(rest, PREFIX + "20")
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{fake.stream_url}/{key}") as ws:
                await subscribed(fake)
                await fake.fill(PREFIX + "20", "0.0005")
                report = json.loads((await ws.receive()).data)
                position = json.loads((await ws.receive()).data)
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await session.ws_connect(f"{fake.stream_url}/not-a-listen-key")

        assert (report["e"], report["x"], report["X"]) == ("executionReport", "TRADE",
                                                            "PARTIALLY_FILLED")
        assert (report["c"], report["l"], report["z"], report["m"]) == (
            PREFIX + "20", "0.00050000", "0.00050000", True)
        assert position["e"] == "outboundAccountPosition"
        assert {b["a"] for b in position["B"]} == {"BTC", "USDT"}
        assert fake.requests_to("POST", "/api/v3/userDataStream")[0].api_key == fake.api_key


# --------------------------------------------------------------------------------------------
# The ledger on its own
# --------------------------------------------------------------------------------------------

def test_buy_fill_whose_free_quote_cannot_pay_the_fee_pays_it_in_the_base_received() -> None:
    ledger = SpotLedger([BTCUSDT], {"USDT": "59.03"}, maker_fee=Decimal("0.001"),
                        taker_fee=Decimal("0.001"), commission="quote", clock=lambda: 0)
    placed = ledger.place({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT_MAKER",
                           "price": "59000", "quantity": "0.001"})

    trade, _ = ledger.fill(placed.order.order_id)

    assert (trade.commission, trade.commission_asset) == (Decimal("0.000001"), "BTC")
    assert ledger.balances["BTC"].free == Decimal("0.000999")
    assert ledger.balances["USDT"].free == Decimal("0.03")


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("place"), st.sampled_from(["BUY", "SELL"]),
                  st.sampled_from(["LIMIT", "LIMIT_MAKER"]), st.integers(-30, 30),
                  st.integers(1, 3000)),
        st.tuples(st.just("fill"), st.integers(0, 20), st.integers(1, 100)),
        st.tuples(st.just("cancel"), st.integers(0, 20)),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(_OPS, st.sampled_from(["quote", "received"]))
def test_ledger_conserves_assets_and_locks_exactly_what_open_orders_hold(
        ops: list[tuple[Any, ...]], commission: str) -> None:
    ledger = SpotLedger([BTCUSDT], {"USDT": "1000", "BTC": "0.02"}, maker_fee=Decimal("0.001"),
                        taker_fee=Decimal("0.002"), commission=commission,  # type: ignore[arg-type]
                        clock=lambda: 0)
    ledger.books["BTCUSDT"] = (Decimal("60000.00"), Decimal("60000.10"))
    for op in ops:
        try:
            if op[0] == "place":
                _, side, type_, ticks, lots = op
                ledger.place({"symbol": "BTCUSDT", "side": side, "type": type_,
                              "price": str(Decimal("60000.05") + Decimal("0.01") * ticks),
                              "quantity": str(Decimal("0.00001") * lots),
                              **({"timeInForce": "GTC"} if type_ == "LIMIT" else {})})
            elif ledger.open_orders():
                resting = ledger.open_orders()
                order = resting[op[1] % len(resting)]
                if op[0] == "fill":
                    qty = max(order.remaining * op[2] / 100, Decimal("0.00001")).quantize(
                        Decimal("0.00001"))
                    ledger.fill(order.order_id, min(qty, order.remaining))
                else:
                    ledger.cancel({"symbol": "BTCUSDT", "orderId": str(order.order_id)})
        except BinanceError as exc:
            assert exc.code in (-2010, -1013)

    bought = sum((t.qty for t in ledger.trades if t.side == "BUY"), Decimal(0))
    sold = sum((t.qty for t in ledger.trades if t.side == "SELL"), Decimal(0))
    paid = sum((t.quote_qty for t in ledger.trades if t.side == "BUY"), Decimal(0))
    got = sum((t.quote_qty for t in ledger.trades if t.side == "SELL"), Decimal(0))
    fees = ledger.fees_paid
    btc, usdt = ledger.balances["BTC"], ledger.balances["USDT"]
    assert btc.total == Decimal("0.02") + bought - sold - fees.get("BTC", Decimal(0))
    assert usdt.total == Decimal("1000") - paid + got - fees.get("USDT", Decimal(0))
    assert min(btc.free, btc.locked, usdt.free, usdt.locked) >= 0
    resting = ledger.open_orders()
    assert usdt.locked == sum((o.locked for o in resting if o.side == "BUY"), Decimal(0))
    assert btc.locked == sum((o.locked for o in resting if o.side == "SELL"), Decimal(0))
    for order in ledger.orders.values():
        assert order.executed_qty == sum(
            (t.qty for t in ledger.trades if t.order_id == order.order_id), Decimal(0))
