"""A loopback fake Binance SPOT venue that ccxt's real ``binance`` classes trade against.

``FakeBinanceSpot`` is one aiohttp server on ``127.0.0.1:0`` serving what ccxt 4.5's
``ccxt.async_support.binance`` (REST) and ``ccxt.pro.binance`` (user data) call for spot
trading, with its own ledger, so a test sees an order reach the venue, rest, fill, cancel, and
what the client was told about it. It is built in two layers: ``SpotLedger`` is the matching
engine and the account (no I/O, no clock of its own); ``FakeBinanceSpot`` is the thin asyncio
shell (HTTP, signatures, websockets, faults, counters).

What ccxt calls (see ``ccxt/async_support/binance.py`` and ``ccxt/pro/binance.py``):

* ``load_markets`` -> ``GET /api/v3/exchangeInfo`` (only with ``CCXT_OPTIONS``: by default it
  also calls fapi/dapi ``exchangeInfo``, sapi ``margin/allPairs`` and sapi
  ``capital/config/getall``, none of which this fake serves);
* ``create_order`` -> ``POST /api/v3/order`` (form body, signed). ``postOnly`` on spot becomes
  ``type=LIMIT_MAKER`` (GTX is for futures only); ``clientOrderId`` is sent as
  ``newClientOrderId`` (ccxt makes one up with its broker prefix ``x-TKT5PX2F`` otherwise);
  ``newOrderRespType=FULL``;
* ``cancel_order`` -> ``DELETE /api/v3/order`` (``orderId``, or ``origClientOrderId`` when
  ``params={"clientOrderId": ...}``); ``cancel_all_orders`` -> ``DELETE /api/v3/openOrders``;
* ``fetch_order`` -> ``GET /api/v3/order``; ``fetch_open_orders`` -> ``GET /api/v3/openOrders``;
  ``fetch_orders`` -> ``GET /api/v3/allOrders``; ``fetch_my_trades`` -> ``GET
  /api/v3/myTrades`` (``since`` -> ``startTime``, ``params={"orderId": ...}`` passes through);
  ``fetch_balance`` -> ``GET /api/v3/account``;
* ``watch_orders`` / ``watch_my_trades`` / ``watch_balance`` on spot do NOT use a listenKey in
  ccxt 4.5.x: they open the WebSocket API (``urls['api']['ws']['ws-api']['spot']``, here
  ``/ws-api/v3``) and send ``userDataStream.subscribe.signature`` (params ``apiKey``,
  ``timestamp``, ``recvWindow``, ``signature`` = HMAC of the sorted ``k=v`` pairs). Events come
  back as ``{"subscriptionId": n, "event": {...}}``. The listenKey flow (``POST
  /api/v3/userDataStream`` and ``/ws/<listenKey>``, raw events) is served as well, for clients
  that still use it.

Behaviour, as on the real venue:

* Signed endpoints check ``X-MBX-APIKEY`` (HTTP 401, -2014 missing / -2015 unknown), the
  HMAC-SHA256 ``signature`` of query string + body (HTTP 400, -1022; Binance answers 400, not
  401, for a bad signature), and ``timestamp`` against ``recvWindow`` (default 5000, max 60000;
  -1021, -1131). ``clock_skew_ms`` moves the venue's clock to provoke -1021.
* Filters (-1013 ``Filter failure: PRICE_FILTER | LOT_SIZE | NOTIONAL``), balance locks (quote
  for buys, base for sells; -2010 ``Account has insufficient balance for requested action.``),
  ``LIMIT_MAKER`` that would cross the book (-2010 ``Order would immediately match and
  take.``), a client order id already used by an open order (-2010 ``Duplicate order sent.``),
  cancel of an order that is not open (-2011 ``Unknown order sent.``; also a cancel-all with
  nothing open), query of an unknown order (-2013 ``Order does not exist.``), a
  ``newClientOrderId`` outside ``^[.A-Z:/a-z0-9_-]{1,36}$`` (-1100; at most 36 characters).
* The market is controlled by the test: ``set_book``. A plain ``LIMIT`` (or ``MARKET``) that
  crosses fills at once, in full, at the touch, as taker; nothing else fills until the test
  calls ``fill`` (``set_book`` never trades through resting orders).
* Commission is charged at ``maker_fee`` / ``taker_fee`` of the notional, in the quote asset by
  default (``commission="quote"``; ``"received"`` charges the asset received, which is what
  Binance does without BNB fee payment). A buy whose free quote cannot pay its fee pays it in
  the base asset received (as Binance falls back from BNB).

Faults are queued per request with ``fail_next(endpoint, kind)``; each one is used once by the
next matching request (REST) or event / handshake (user data websockets):

=================  ====================================================  =================
kind               what the venue does                                   applied?
=================  ====================================================  =================
RATE_LIMIT         HTTP 429, ``Retry-After``, ``{"code":-1003,...}``     no
UNAVAILABLE        HTTP 503 ``Service Unavailable.``; on ``"ws"``: the   no
                   next handshake is refused with 503
GATEWAY_TIMEOUT    HTTP 504 (execution status unknown)                   yes
TIMEOUT            the response is held past the client's timeout        yes
DROP               ``"ws"`` only: the next event is not sent; every      (event lost)
                   user-data connection is aborted instead (TCP reset)
SILENT             ``"ws"`` only: from the next event on the user-data   (events lost)
                   connections send nothing and answer no ping
=================  ====================================================  =================

"applied" means the request reaches the ledger (an order really rests) although the client
gets an error; ``fail_next(..., applied=...)`` overrides it.

ccxt exceptions for each answer (ccxt 4.5.x; loopback URLs do not match ccxt's per-market
exception tables, only its common ones, which hold every code below):

* 429 -> ``DDoSProtection`` (binance's ``handle_errors`` raises it for 418/429 before looking
  at the body; ``RateLimitExceeded`` is its sibling under ``NetworkError``, not a subclass);
* 503 (text body) -> ``ExchangeNotAvailable``; 504 and a held response -> ``RequestTimeout``;
* -1022, -2014, -2015 -> ``AuthenticationError``; -1021 -> ``InvalidNonce`` (a NetworkError);
* -2010 insufficient balance -> ``InsufficientFunds``; -2010 would take ->
  ``OrderImmediatelyFillable``; -2010 duplicate -> ``InvalidOrder`` (not ``DuplicateOrderId``);
* -2011, -2013 -> ``OrderNotFound``;
* -1013 ``LOT_SIZE`` / ``PRICE_FILTER`` -> ``InvalidOrder`` (matched on the body text);
  -1013 ``NOTIONAL`` -> ``BadRequest``; -1100 (client order id) -> ``BadRequest``;
* a path the fake does not serve -> HTTP 404 text -> ``ExchangeNotAvailable`` (and ``errors``).

ccxt pro user data (spot): a dropped connection fails the pending ``watch_*`` at once with
``NetworkError`` ("closing code 1006"); ccxt does not reconnect by itself, the next
``watch_*`` call dials and subscribes again. A silent connection fails it with
``RequestTimeout`` after two missed pongs (``keep_alive_ms``). A refused handshake raises
``NetworkError``. A -1022 on the subscription surfaces as ``KeyError('spot')`` raised while
handling the ``AuthenticationError`` (a ccxt 4.5.x cleanup bug).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import hmac
import json
import re
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, InvalidOperation
from enum import StrEnum
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

ZERO = Decimal(0)
EIGHT_DP = Decimal("0.00000001")
CLIENT_ORDER_ID = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
"""What Binance accepts as ``newClientOrderId`` (else -1100): at most 36 characters."""

CCXT_OPTIONS: dict[str, Any] = {
    # Spot only: no fapi / dapi exchangeInfo at load_markets.
    "defaultType": "spot",
    "fetchMarkets": {"types": ["spot"]},
    # No sapi margin/allPairs and margin/isolated/allPairs at load_markets.
    "fetchMargins": False,
    # No sapi capital/config/getall at load_markets (currencies come from the markets).
    "fetchCurrencies": False,
    # No GET /api/v3/time at load_markets (the fake's clock is the test's clock).
    "adjustForTimeDifference": False,
    # Binance's own default; ccxt's is 10000.
    "recvWindow": 5000,
    # fetch_open_orders() without a symbol is allowed (ccxt raises a warning error otherwise).
    "fetchOpenOrders": {"warnWithoutSymbol": False},
}
"""The ccxt ``options`` a binance instance needs against the fake (``make_exchange`` sets them)."""

MSG_INSUFFICIENT_BALANCE = "Account has insufficient balance for requested action."
MSG_WOULD_TAKE = "Order would immediately match and take."
MSG_DUPLICATE = "Duplicate order sent."
MSG_UNKNOWN_ORDER = "Unknown order sent."
MSG_NO_SUCH_ORDER = "Order does not exist."
MSG_BAD_SIGNATURE = "Signature for this request is not valid."
MSG_BAD_API_KEY = "Invalid API-key, IP, or permissions for action."
MSG_API_KEY_FORMAT = "API-key format invalid."
MSG_TS_OUTSIDE = "Timestamp for this request is outside of the recvWindow."
MSG_TS_AHEAD = "Timestamp for this request was 1000ms ahead of the server's time."
MSG_RATE_LIMIT = ("Too much request weight used; current limit is 6000 request weight per 1 "
                  "MINUTE. Please use WebSocket Streams for live updates to avoid polling the "
                  "API.")


def _fmt(value: Decimal) -> str:
    """Format a quantity or price the way Binance does: eight decimals."""
    return f"{value.quantize(EIGHT_DP):f}"


def _dec(value: Decimal | str | float | int) -> Decimal:
    """Turn a test's number into a Decimal without binary-float noise."""
    return value if isinstance(value, Decimal) else Decimal(str(value))


class BinanceError(Exception):
    """An error answer of the venue: HTTP status, Binance code and message."""

    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(f"{status} {code} {msg}")
        self.status = status
        self.code = code
        self.msg = msg

    def payload(self) -> dict[str, Any]:
        """Return the JSON body Binance sends."""
        return {"code": self.code, "msg": self.msg}


def _mandatory(name: str) -> BinanceError:
    return BinanceError(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null,"
                                    " or malformed.")


# --------------------------------------------------------------------------------------------
# Symbols, orders, trades, balances
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SymbolRules:
    """One spot symbol and its filters (PRICE_FILTER, LOT_SIZE, NOTIONAL)."""

    symbol: str
    base: str
    quote: str
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    min_price: Decimal
    max_price: Decimal
    min_notional: Decimal
    max_notional: Decimal

    def info(self) -> dict[str, Any]:
        """Return the ``exchangeInfo`` entry, with the fields ccxt parses."""
        return {
            "symbol": self.symbol, "status": "TRADING",
            "baseAsset": self.base, "baseAssetPrecision": 8,
            "quoteAsset": self.quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
            # Only what the fake executes: ccxt refuses other types before sending them.
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
            "icebergAllowed": False, "ocoAllowed": False, "otoAllowed": False,
            "quoteOrderQtyMarketAllowed": True, "allowTrailingStop": False,
            "cancelReplaceAllowed": False, "amendAllowed": False,
            "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": _fmt(self.min_price),
                 "maxPrice": _fmt(self.max_price), "tickSize": _fmt(self.tick_size)},
                {"filterType": "LOT_SIZE", "minQty": _fmt(self.min_qty),
                 "maxQty": _fmt(self.max_qty), "stepSize": _fmt(self.step_size)},
                {"filterType": "NOTIONAL", "minNotional": _fmt(self.min_notional),
                 "applyMinToMarket": True, "maxNotional": _fmt(self.max_notional),
                 "applyMaxToMarket": False, "avgPriceMins": 5},
                {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            ],
            "permissions": [], "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }


BTCUSDT = SymbolRules("BTCUSDT", "BTC", "USDT", tick_size=Decimal("0.01"),
                      step_size=Decimal("0.00001"), min_qty=Decimal("0.00001"),
                      max_qty=Decimal("9000"), min_price=Decimal("0.01"),
                      max_price=Decimal("1000000"), min_notional=Decimal("5"),
                      max_notional=Decimal("9000000"))
ETHUSDT = SymbolRules("ETHUSDT", "ETH", "USDT", tick_size=Decimal("0.01"),
                      step_size=Decimal("0.0001"), min_qty=Decimal("0.0001"),
                      max_qty=Decimal("9000"), min_price=Decimal("0.01"),
                      max_price=Decimal("1000000"), min_notional=Decimal("5"),
                      max_notional=Decimal("9000000"))


@dataclass(slots=True)
class VenueOrder:
    """An order as the venue holds it.

    Attributes:
        locked: What the order still holds of its lock asset (quote for a buy, base for a
            sell); 0 once it is closed.
        lock_price: The price the buy lock was computed at (the limit price; the touch for a
            market buy).
    """

    order_id: int
    client_order_id: str
    symbol: str
    side: str
    type: str
    time_in_force: str
    price: Decimal
    orig_qty: Decimal
    time_ms: int
    update_ms: int
    lock_price: Decimal
    executed_qty: Decimal = ZERO
    cumm_quote_qty: Decimal = ZERO
    status: str = "NEW"
    locked: Decimal = ZERO

    @property
    def remaining(self) -> Decimal:
        """Return the quantity still to fill."""
        return self.orig_qty - self.executed_qty

    @property
    def is_open(self) -> bool:
        """Return whether the order rests on the book."""
        return self.status in ("NEW", "PARTIALLY_FILLED")

    def wire(self) -> dict[str, Any]:
        """Return the order as ``GET /api/v3/order`` shows it."""
        return {
            "symbol": self.symbol, "orderId": self.order_id, "orderListId": -1,
            "clientOrderId": self.client_order_id, "price": _fmt(self.price),
            "origQty": _fmt(self.orig_qty), "executedQty": _fmt(self.executed_qty),
            "cummulativeQuoteQty": _fmt(self.cumm_quote_qty), "status": self.status,
            "timeInForce": self.time_in_force, "type": self.type, "side": self.side,
            "stopPrice": _fmt(ZERO), "icebergQty": _fmt(ZERO), "time": self.time_ms,
            "updateTime": self.update_ms, "isWorking": True, "workingTime": self.time_ms,
            "origQuoteOrderQty": _fmt(ZERO), "selfTradePreventionMode": "EXPIRE_MAKER",
        }


@dataclass(frozen=True, slots=True)
class VenueTrade:
    """One fill of one of our orders."""

    trade_id: int
    order_id: int
    client_order_id: str
    symbol: str
    side: str
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str
    is_maker: bool
    time_ms: int

    def wire(self) -> dict[str, Any]:
        """Return the trade as ``GET /api/v3/myTrades`` shows it."""
        return {
            "symbol": self.symbol, "id": self.trade_id, "orderId": self.order_id,
            "orderListId": -1, "price": _fmt(self.price), "qty": _fmt(self.qty),
            "quoteQty": _fmt(self.quote_qty), "commission": _fmt(self.commission),
            "commissionAsset": self.commission_asset, "time": self.time_ms,
            "isBuyer": self.side == "BUY", "isMaker": self.is_maker, "isBestMatch": True,
        }


@dataclass(slots=True)
class Balance:
    """One asset of the account."""

    free: Decimal = ZERO
    locked: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        """Return free + locked."""
        return self.free + self.locked


Event = dict[str, Any]
"""A user data stream event payload (``executionReport``, ``outboundAccountPosition``)."""


@dataclass(frozen=True, slots=True)
class Placed:
    """What a new order did: the order, its immediate (taker) fills, the events."""

    order: VenueOrder
    trades: tuple[VenueTrade, ...]
    events: tuple[Event, ...]


# --------------------------------------------------------------------------------------------
# The ledger: matching engine and account, no I/O
# --------------------------------------------------------------------------------------------


class SpotLedger:
    """Orders, trades and balances of one account; speaks Binance's parameters and errors.

    Every mutating method returns the user data events it caused, in order; the caller sends
    them. Time comes from ``clock`` (milliseconds).
    """

    def __init__(
        self,
        symbols: Iterable[SymbolRules],
        balances: Mapping[str, Decimal | str | float | int],
        *,
        maker_fee: Decimal,
        taker_fee: Decimal,
        commission: Literal["quote", "received"],
        clock: Callable[[], int],
    ) -> None:
        self.symbols = {rules.symbol: rules for rules in symbols}
        self.balances: dict[str, Balance] = {asset: Balance(_dec(amount))
                                             for asset, amount in balances.items()}
        for rules in self.symbols.values():
            self.balances.setdefault(rules.base, Balance())
            self.balances.setdefault(rules.quote, Balance())
        self.maker_fee = maker_fee
        self.taker_fee = taker_fee
        self.commission = commission
        self.clock = clock
        self.orders: dict[int, VenueOrder] = {}
        self.trades: list[VenueTrade] = []
        self.books: dict[str, tuple[Decimal | None, Decimal | None]] = {}
        self.fees_paid: dict[str, Decimal] = {}
        self._next_order_id = 4_000_001
        self._next_trade_id = 900_001

    # ---------------------------------------------------------------- lookups

    def rules(self, symbol: str | None) -> SymbolRules:
        """Return the rules of ``symbol`` or raise -1121."""
        if symbol is None:
            raise _mandatory("symbol")
        rules = self.symbols.get(symbol)
        if rules is None:
            raise BinanceError(400, -1121, "Invalid symbol.")
        return rules

    def find(self, symbol: str | None, order_id: str | int | None,
             client_order_id: str | None) -> VenueOrder | None:
        """Return the order by id, or by client id (the open one first, else the newest)."""
        if order_id is not None:
            try:
                order = self.orders.get(int(order_id))
            except ValueError:
                return None
            if order is not None and (symbol is None or order.symbol == symbol):
                return order
            return None
        matches = [o for o in self.orders.values() if o.client_order_id == client_order_id
                   and (symbol is None or o.symbol == symbol)]
        if not matches:
            return None
        open_ = [o for o in matches if o.is_open]
        return (open_ or matches)[-1]

    def open_orders(self, symbol: str | None = None) -> list[VenueOrder]:
        """Return the resting orders, oldest first."""
        return [o for o in self.orders.values()
                if o.is_open and (symbol is None or o.symbol == symbol)]

    # ---------------------------------------------------------------- new order

    def place(self, params: Mapping[str, str]) -> Placed:
        """Handle ``POST /api/v3/order`` parameters; raise ``BinanceError`` when refused."""
        rules = self.rules(params.get("symbol"))
        side = params.get("side")
        if side not in ("BUY", "SELL"):
            raise BinanceError(400, -1117, "Invalid side.")
        type_ = params.get("type")
        if type_ not in ("LIMIT", "LIMIT_MAKER", "MARKET"):
            raise BinanceError(400, -1116, "Invalid orderType.")
        tif = params.get("timeInForce")
        if type_ == "LIMIT":
            if tif is None:
                raise _mandatory("timeInForce")
            if tif != "GTC":
                raise BinanceError(400, -1115, "Invalid timeInForce.")
        elif tif is not None:
            raise BinanceError(400, -1106, "Parameter 'timeInForce' sent when not required.")
        book_bid, book_ask = self.books.get(rules.symbol, (None, None))
        price = ZERO
        quote_order_qty = self._optional_decimal(params, "quoteOrderQty")
        if type_ == "MARKET":
            touch = book_ask if side == "BUY" else book_bid
            if touch is None:
                raise BinanceError(400, -2010, "Order book liquidity is less than symbol "
                                               "minimum quantity.")
            if quote_order_qty is not None and side == "BUY":
                qty = (quote_order_qty / touch).quantize(rules.step_size, ROUND_DOWN)
            else:
                qty = self._decimal(params, "quantity")
            lock_price = touch
        else:
            price = self._decimal(params, "price")
            qty = self._decimal(params, "quantity")
            lock_price = price
            self._check_price(rules, price)
        self._check_qty(rules, qty)
        notional = qty * lock_price
        if notional < rules.min_notional or (type_ != "MARKET"
                                             and notional > rules.max_notional):
            raise BinanceError(400, -1013, "Filter failure: NOTIONAL")
        client_order_id = params.get("newClientOrderId") or f"fake_{secrets.token_hex(8)}"
        if not CLIENT_ORDER_ID.fullmatch(client_order_id):
            raise BinanceError(400, -1100, "Illegal characters found in parameter "
                                           f"'newClientOrderId'; legal range is "
                                           f"'{CLIENT_ORDER_ID.pattern}'.")
        if any(o.client_order_id == client_order_id for o in self.open_orders()):
            raise BinanceError(400, -2010, MSG_DUPLICATE)
        crosses = (book_ask is not None and side == "BUY" and lock_price >= book_ask) or (
            book_bid is not None and side == "SELL" and lock_price <= book_bid)
        if type_ == "LIMIT_MAKER" and crosses:
            raise BinanceError(400, -2010, MSG_WOULD_TAKE)
        takes = type_ == "MARKET" or crosses
        fill_price = (book_ask if side == "BUY" else book_bid) if takes else None
        lock_asset = rules.quote if side == "BUY" else rules.base
        lock = notional if side == "BUY" else qty
        if self.balances[lock_asset].free < lock:
            raise BinanceError(400, -2010, MSG_INSUFFICIENT_BALANCE)
        now = self.clock()
        order = VenueOrder(self._next_order_id, client_order_id, rules.symbol, side, type_,
                           tif or "GTC", price, qty, now,
                           now, lock_price, locked=lock)
        self._next_order_id += 1
        self.orders[order.order_id] = order
        balance = self.balances[lock_asset]
        balance.free -= lock
        balance.locked += lock
        events: list[Event] = [self.execution_report(order, "NEW")]
        trades: list[VenueTrade] = []
        if takes and fill_price is not None:
            trade, fill_events = self._execute(order, qty, fill_price, maker=False)
            trades.append(trade)
            events.extend(fill_events)
        else:
            events.append(self.account_position([lock_asset]))
        return Placed(order, tuple(trades), tuple(events))

    @classmethod
    def _decimal(cls, params: Mapping[str, str], name: str) -> Decimal:
        value = cls._optional_decimal(params, name)
        if value is None:
            raise _mandatory(name)
        return value

    @staticmethod
    def _optional_decimal(params: Mapping[str, str], name: str) -> Decimal | None:
        raw = params.get(name)
        if raw is None or raw == "":
            return None
        try:
            value = Decimal(raw)
        except InvalidOperation:
            raise BinanceError(400, -1100, f"Illegal characters found in parameter '{name}'; "
                                           "legal range is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'."
                               ) from None
        if not value.is_finite() or value <= 0:
            raise BinanceError(400, -1100, f"Illegal characters found in parameter '{name}'.")
        return value

    @staticmethod
    def _check_price(rules: SymbolRules, price: Decimal) -> None:
        if (price < rules.min_price or price > rules.max_price
                or (price - rules.min_price) % rules.tick_size != 0):
            raise BinanceError(400, -1013, "Filter failure: PRICE_FILTER")

    @staticmethod
    def _check_qty(rules: SymbolRules, qty: Decimal) -> None:
        if (qty < rules.min_qty or qty > rules.max_qty
                or (qty - rules.min_qty) % rules.step_size != 0):
            raise BinanceError(400, -1013, "Filter failure: LOT_SIZE")

    # ---------------------------------------------------------------- fills

    def fill(self, ref: int | str, qty: Decimal | str | float | None = None,
             price: Decimal | str | float | None = None) -> tuple[VenueTrade, list[Event]]:
        """Fill resting order ``ref`` (order id or client order id) as maker.

        Args:
            ref: ``orderId`` (int) or ``clientOrderId`` (str) of an open order.
            qty: Quantity to fill; the whole remainder when None.
            price: Fill price; the order's limit price when None. It may be better than the
                limit (lower for a buy), never worse.

        Raises:
            ValueError: The order is not open, or ``qty`` / ``price`` do not fit it.
        """
        order = (self.find(None, ref, None) if isinstance(ref, int)
                 else self.find(None, None, ref))
        if order is None or not order.is_open:
            raise ValueError(f"no open order {ref!r}")
        fill_qty = order.remaining if qty is None else _dec(qty)
        fill_price = order.price if price is None else _dec(price)
        if not ZERO < fill_qty <= order.remaining:
            raise ValueError(f"fill qty {fill_qty} outside (0, {order.remaining}] of {ref!r}")
        if (order.side == "BUY" and fill_price > order.price) or (
                order.side == "SELL" and fill_price < order.price):
            raise ValueError(f"fill price {fill_price} is worse than the limit {order.price}")
        return self._execute(order, fill_qty, fill_price, maker=True)

    def _fee(self, amount: Decimal, *, maker: bool) -> Decimal:
        rate = self.maker_fee if maker else self.taker_fee
        return (amount * rate).quantize(EIGHT_DP, ROUND_HALF_UP)

    def _execute(self, order: VenueOrder, qty: Decimal, price: Decimal,
                 *, maker: bool) -> tuple[VenueTrade, list[Event]]:
        rules = self.symbols[order.symbol]
        base, quote = self.balances[rules.base], self.balances[rules.quote]
        quote_qty = price * qty
        if order.side == "BUY":
            release = order.lock_price * qty
            if order.remaining == qty:
                release = order.locked
            commission_asset = rules.quote
            commission = self._fee(quote_qty, maker=maker)
            # Like Binance's BNB fee option: when the fee asset cannot pay, the asset received
            # pays instead.
            if self.commission == "received" or quote.free + release - quote_qty < commission:
                commission_asset = rules.base
                commission = self._fee(qty, maker=maker)
            order.locked -= release
            quote.locked -= release
            quote.free += release - quote_qty
            base.free += qty
        else:
            release = qty if order.remaining != qty else order.locked
            commission_asset = rules.quote
            commission = self._fee(quote_qty, maker=maker)
            order.locked -= release
            base.locked -= release
            quote.free += quote_qty
        self.balances[commission_asset].free -= commission
        self.fees_paid[commission_asset] = self.fees_paid.get(commission_asset, ZERO) + commission
        now = self.clock()
        order.executed_qty += qty
        order.cumm_quote_qty += quote_qty
        order.status = "FILLED" if order.remaining == 0 else "PARTIALLY_FILLED"
        order.update_ms = now
        trade = VenueTrade(self._next_trade_id, order.order_id, order.client_order_id,
                           order.symbol, order.side, price, qty, quote_qty, commission,
                           commission_asset, maker, now)
        self._next_trade_id += 1
        self.trades.append(trade)
        return trade, [self.execution_report(order, "TRADE", trade),
                       self.account_position([rules.base, rules.quote])]

    # ---------------------------------------------------------------- cancels

    def cancel(self, params: Mapping[str, str]) -> tuple[dict[str, Any], list[Event]]:
        """Handle ``DELETE /api/v3/order``: return the cancel answer and the events."""
        rules = self.rules(params.get("symbol"))
        order_id, orig = params.get("orderId"), params.get("origClientOrderId")
        if order_id is None and orig is None:
            raise BinanceError(400, -1102, "Param 'origClientOrderId' or 'orderId' must be "
                                           "sent, but both were empty/null!")
        order = self.find(rules.symbol, order_id, orig)
        if order is None or not order.is_open:
            raise BinanceError(400, -2011, MSG_UNKNOWN_ORDER)
        cancel_id = params.get("newClientOrderId") or f"fake_cancel_{secrets.token_hex(6)}"
        return self._cancel(order, cancel_id)

    def cancel_all(self, params: Mapping[str, str]) -> tuple[list[dict[str, Any]], list[Event]]:
        """Handle ``DELETE /api/v3/openOrders`` (-2011 when nothing is open, as on Binance)."""
        rules = self.rules(params.get("symbol"))
        orders = self.open_orders(rules.symbol)
        if not orders:
            raise BinanceError(400, -2011, MSG_UNKNOWN_ORDER)
        answers: list[dict[str, Any]] = []
        events: list[Event] = []
        for order in orders:
            answer, order_events = self._cancel(order, f"fake_cancel_{secrets.token_hex(6)}")
            answers.append(answer)
            events.extend(order_events)
        return answers, events

    def _cancel(self, order: VenueOrder, cancel_id: str) -> tuple[dict[str, Any], list[Event]]:
        rules = self.symbols[order.symbol]
        asset = rules.quote if order.side == "BUY" else rules.base
        balance = self.balances[asset]
        balance.locked -= order.locked
        balance.free += order.locked
        order.locked = ZERO
        order.status = "CANCELED"
        order.update_ms = self.clock()
        answer = {
            "symbol": order.symbol, "origClientOrderId": order.client_order_id,
            "orderId": order.order_id, "orderListId": -1, "clientOrderId": cancel_id,
            "transactTime": order.update_ms, "price": _fmt(order.price),
            "origQty": _fmt(order.orig_qty), "executedQty": _fmt(order.executed_qty),
            "cummulativeQuoteQty": _fmt(order.cumm_quote_qty), "status": order.status,
            "timeInForce": order.time_in_force, "type": order.type, "side": order.side,
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }
        return answer, [self.execution_report(order, "CANCELED", cancel_id=cancel_id),
                        self.account_position([asset])]

    # ---------------------------------------------------------------- events

    def execution_report(self, order: VenueOrder, execution: str,
                         trade: VenueTrade | None = None, cancel_id: str | None = None) -> Event:
        """Return the ``executionReport`` of one change of ``order`` (Binance's fields)."""
        now = self.clock()
        return {
            "e": "executionReport", "E": now, "s": order.symbol,
            # On a cancel "c" is the cancel request's id and "C" the order's own.
            "c": cancel_id or order.client_order_id, "S": order.side, "o": order.type,
            "f": order.time_in_force, "q": _fmt(order.orig_qty), "p": _fmt(order.price),
            "P": _fmt(ZERO), "F": _fmt(ZERO), "g": -1,
            "C": order.client_order_id if cancel_id else "",
            "x": execution, "X": order.status, "r": "NONE", "i": order.order_id,
            "l": _fmt(trade.qty if trade else ZERO), "z": _fmt(order.executed_qty),
            "L": _fmt(trade.price if trade else ZERO),
            "n": _fmt(trade.commission) if trade else "0",
            "N": trade.commission_asset if trade else None,
            "T": trade.time_ms if trade else order.update_ms,
            "t": trade.trade_id if trade else -1, "I": 0, "w": order.is_open,
            "m": trade.is_maker if trade else False, "M": False, "O": order.time_ms,
            "Z": _fmt(order.cumm_quote_qty), "Y": _fmt(trade.quote_qty if trade else ZERO),
            "Q": _fmt(ZERO), "W": order.time_ms, "V": "EXPIRE_MAKER",
        }

    def account_position(self, assets: Sequence[str]) -> Event:
        """Return the ``outboundAccountPosition`` event of ``assets``."""
        now = self.clock()
        return {"e": "outboundAccountPosition", "E": now, "u": now,
                "B": [{"a": asset, "f": _fmt(self.balances[asset].free),
                       "l": _fmt(self.balances[asset].locked)} for asset in assets]}

    def account(self) -> dict[str, Any]:
        """Return ``GET /api/v3/account``."""
        return {
            "makerCommission": int(self.maker_fee * 10_000),
            "takerCommission": int(self.taker_fee * 10_000),
            "buyerCommission": 0, "sellerCommission": 0,
            "commissionRates": {"maker": _fmt(self.maker_fee), "taker": _fmt(self.taker_fee),
                                "buyer": _fmt(ZERO), "seller": _fmt(ZERO)},
            "canTrade": True, "canWithdraw": True, "canDeposit": True, "brokered": False,
            "requireSelfTradePrevention": False, "preventSor": False,
            "updateTime": self.clock(), "accountType": "SPOT",
            "balances": [{"asset": asset, "free": _fmt(b.free), "locked": _fmt(b.locked)}
                         for asset, b in sorted(self.balances.items())],
            "permissions": ["SPOT"], "uid": 354937868,
        }


# --------------------------------------------------------------------------------------------
# Faults and records
# --------------------------------------------------------------------------------------------


class FaultKind(StrEnum):
    """What goes wrong on one request (see the module docstring's table)."""

    RATE_LIMIT = "rate_limit"
    UNAVAILABLE = "unavailable"
    GATEWAY_TIMEOUT = "gateway_timeout"
    TIMEOUT = "timeout"
    DROP = "drop"
    SILENT = "silent"


_APPLIED_BY_DEFAULT = {FaultKind.GATEWAY_TIMEOUT, FaultKind.TIMEOUT}
_WS_EVENT_FAULTS = {FaultKind.DROP, FaultKind.SILENT}
WS = "ws"
"""The ``fail_next`` endpoint of the user data websockets (both flavours)."""


@dataclass(frozen=True, slots=True)
class _Fault:
    kind: FaultKind
    applied: bool
    delay_s: float
    retry_after_s: int


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the venue saw it.

    Attributes:
        method: HTTP method, or ``"WS"`` for a WebSocket API request.
        path: URL path (``/api/v3/order``), or the WebSocket API method name.
        params: Query string and body parameters, decoded (``signature`` included).
        api_key: The ``X-MBX-APIKEY`` header (WebSocket API: the ``apiKey`` param).
        status: HTTP status answered (WebSocket API: the ``status`` field).
        code: Binance error code answered, or None.
        fault: The injected fault, or None.
    """

    method: str
    path: str
    params: dict[str, str]
    api_key: str | None
    status: int
    code: int | None = None
    fault: FaultKind | None = None


@dataclass(eq=False, slots=True)
class _Session:
    ws: web.WebSocketResponse
    transport: asyncio.Transport | None
    kind: Literal["ws-api", "stream"]
    subscription_id: int | None = None
    silent: bool = False


_Security = Literal["NONE", "USER_STREAM", "SIGNED"]


@dataclass(slots=True)
class _Answer:
    status: int
    body: Any
    events: list[Event] = field(default_factory=list)
    code: int | None = None


# --------------------------------------------------------------------------------------------
# The venue
# --------------------------------------------------------------------------------------------


class FakeBinanceSpot:
    """Loopback Binance spot REST + user data streams over a ``SpotLedger``.

    Use as an async context manager; ``make_exchange`` returns a ccxt instance pointed at it.

    Attributes:
        ledger: The venue's orders, trades and balances.
        requests: Every REST and WebSocket API request, in arrival order.
        counters: ``requests``, ``signed``, ``auth_failures``, ``rejected`` (Binance error
            answers), ``fault.<kind>`` (faults used), ``ws_connections``, ``ws_refused``,
            ``ws_subscriptions``, ``ws_drops`` (connections aborted), ``ws_silenced``,
            ``events_sent`` (frames written), ``events_lost`` (events a subscribed connection
            did not get because of a fault), ``listen_keys``.
        errors: Requests the fake does not serve or cannot parse (a test fails on any).
        clock_skew_ms: Added to the wall clock to make the venue's time (provokes -1021).
        timeout_delay_s: How long a ``TIMEOUT`` fault holds the response by default.
    """

    def __init__(
        self,
        *,
        api_key: str = "fake-api-key",
        secret: str = "fake-secret",
        balances: Mapping[str, Decimal | str | float | int] | None = None,
        symbols: Iterable[SymbolRules] = (BTCUSDT, ETHUSDT),
        maker_fee: Decimal | str = "0.001",
        taker_fee: Decimal | str = "0.001",
        commission: Literal["quote", "received"] = "quote",
        timeout_delay_s: float = 2.0,
    ) -> None:
        self.api_key = api_key
        self.secret = secret
        self.ledger = SpotLedger(symbols, balances if balances is not None
                                 else {"USDT": "10000", "BTC": "1"},
                                 maker_fee=_dec(maker_fee), taker_fee=_dec(taker_fee),
                                 commission=commission, clock=self.now_ms)
        self.requests: list[RecordedRequest] = []
        self.counters: Counter[str] = Counter()
        self.errors: list[str] = []
        self.clock_skew_ms = 0
        self.timeout_delay_s = timeout_delay_s
        self.listen_keys: set[str] = set()
        self._faults: dict[str, deque[_Fault]] = {}
        self._sessions: set[_Session] = set()
        self._next_subscription = 0
        self._closing = asyncio.Event()
        self._streams_changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._routes: dict[tuple[str, str], tuple[_Security, Callable[
            [dict[str, str]], _Answer]]] = {
            ("GET", "/api/v3/ping"): ("NONE", lambda _: _Answer(200, {})),
            ("GET", "/api/v3/time"): ("NONE", lambda _: _Answer(200,
                                                                {"serverTime": self.now_ms()})),
            ("GET", "/api/v3/exchangeInfo"): ("NONE", self._exchange_info),
            ("GET", "/api/v3/depth"): ("NONE", self._depth),
            ("GET", "/api/v3/ticker/bookTicker"): ("NONE", self._book_ticker),
            ("POST", "/api/v3/order"): ("SIGNED", self._new_order),
            ("GET", "/api/v3/order"): ("SIGNED", self._query_order),
            ("DELETE", "/api/v3/order"): ("SIGNED", self._cancel_order),
            ("GET", "/api/v3/openOrders"): ("SIGNED", self._open_orders),
            ("DELETE", "/api/v3/openOrders"): ("SIGNED", self._cancel_all),
            ("GET", "/api/v3/allOrders"): ("SIGNED", self._all_orders),
            ("GET", "/api/v3/myTrades"): ("SIGNED", self._my_trades),
            ("GET", "/api/v3/account"): ("SIGNED", lambda _: _Answer(200,
                                                                     self.ledger.account())),
            ("POST", "/api/v3/userDataStream"): ("USER_STREAM", self._new_listen_key),
            ("PUT", "/api/v3/userDataStream"): ("USER_STREAM", self._keep_listen_key),
            ("DELETE", "/api/v3/userDataStream"): ("USER_STREAM", self._close_listen_key),
        }

    # ---------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_get("/ws-api/v3", self._ws_api)
        app.router.add_get("/ws/{listen_key}", self._ws_stream)
        app.router.add_route("*", "/{tail:.*}", self._rest)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Held (TIMEOUT) responses and open websockets would hold the shutdown otherwise.
        self._closing.set()
        for session in list(self._sessions):
            if session.transport is not None:
                session.transport.abort()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def port(self) -> int:
        """Return the server's port on 127.0.0.1."""
        assert self._runner is not None, "use the venue as an async context manager"
        port: int = self._runner.addresses[0][1]
        return port

    @property
    def base_url(self) -> str:
        """Return ``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        """Return the WebSocket API address ccxt pro uses for spot user data."""
        return f"ws://127.0.0.1:{self.port}/ws-api/v3"

    @property
    def stream_url(self) -> str:
        """Return the stream base; a listenKey stream is ``<stream_url>/<listenKey>``."""
        return f"ws://127.0.0.1:{self.port}/ws"

    def urls(self) -> dict[str, Any]:
        """Return the dict to assign to ``exchange.urls['api']`` (REST and pro websockets).

        Every REST section ccxt's binance knows points here (so a stray sapi / fapi call is
        answered 404 and recorded in ``errors`` instead of leaving the machine).
        """
        base = self.base_url
        rest = {name: f"{base}/api/v3" for name in ("public", "private")}
        rest["v1"] = f"{base}/api/v1"
        for name, path in (("sapi", "sapi/v1"), ("sapiV2", "sapi/v2"), ("sapiV3", "sapi/v3"),
                           ("sapiV4", "sapi/v4"), ("fapiPublic", "fapi/v1"),
                           ("fapiPublicV2", "fapi/v2"), ("fapiPublicV3", "fapi/v3"),
                           ("fapiPrivate", "fapi/v1"), ("fapiPrivateV2", "fapi/v2"),
                           ("fapiPrivateV3", "fapi/v3"), ("fapiData", "futures/data"),
                           ("dapiPublic", "dapi/v1"), ("dapiPrivate", "dapi/v1"),
                           ("dapiPrivateV2", "dapi/v2"), ("dapiData", "futures/data"),
                           ("eapiPublic", "eapi/v1"), ("eapiPrivate", "eapi/v1"),
                           ("papi", "papi/v1"), ("papiV2", "papi/v2")):
            rest[name] = f"{base}/{path}"
        stream = self.stream_url
        return {**rest, "ws": {"spot": stream, "margin": stream,
                               "ws-api": {"spot": self.ws_url}}}

    def make_exchange(
        self,
        cls: Any = None,
        *,
        api_key: str | None = None,
        secret: str | None = None,
        timeout_ms: int = 3000,
        enable_rate_limit: bool = False,
        keep_alive_ms: int | None = None,
    ) -> Any:
        """Return a ccxt binance instance (``cls``) configured against this venue.

        Args:
            cls: ``ccxt.async_support.binance`` (the default) or ``ccxt.pro.binance``.
            api_key: Defaults to the venue's key.
            secret: Defaults to the venue's secret (pass another to provoke -1022).
            timeout_ms: ccxt's REST timeout (a ``TIMEOUT`` fault must outlast it).
            enable_rate_limit: ccxt's client-side throttle (off: it would add ~1 s per
                ``exchangeInfo``, whose ccxt cost is 20 x 50 ms).
            keep_alive_ms: ccxt pro's websocket ping interval (default 180 s); a silent
                connection is declared dead after two missed pongs.
        """
        if cls is None:
            import ccxt.async_support

            cls = ccxt.async_support.binance
        exchange = cls({
            "apiKey": self.api_key if api_key is None else api_key,
            "secret": self.secret if secret is None else secret,
            "timeout": timeout_ms,
            "enableRateLimit": enable_rate_limit,
            "options": copy.deepcopy(CCXT_OPTIONS),
        })
        exchange.urls["api"] = self.urls()
        # ccxt sleeps this long in close() for TLS teardown; there is no TLS on loopback.
        exchange.timeout_on_exit = 0
        if keep_alive_ms is not None:
            exchange.streaming = {**exchange.streaming, "keepAlive": keep_alive_ms}
        return exchange

    # ---------------------------------------------------------------- test controls

    def now_ms(self) -> int:
        """Return the venue's clock in milliseconds (wall clock + ``clock_skew_ms``)."""
        return int(time.time() * 1000) + self.clock_skew_ms

    def set_book(self, symbol: str, best_bid: Decimal | str | float | None,
                 best_ask: Decimal | str | float | None) -> None:
        """Set the touch of ``symbol`` (None: that side is empty). Resting orders do not fill."""
        self.ledger.rules(symbol)
        self.ledger.books[symbol] = (None if best_bid is None else _dec(best_bid),
                                     None if best_ask is None else _dec(best_ask))

    async def fill(self, ref: int | str, qty: Decimal | str | float | None = None,
                   price: Decimal | str | float | None = None) -> VenueTrade:
        """Fill an open order as maker and send its events (see ``SpotLedger.fill``)."""
        trade, events = self.ledger.fill(ref, qty, price)
        await self._broadcast(events)
        return trade

    def fail_next(self, endpoint: str, kind: FaultKind, count: int = 1, *,
                  applied: bool | None = None, delay_s: float | None = None,
                  retry_after_s: int = 1) -> None:
        """Inject ``kind`` into the next ``count`` requests to ``endpoint``.

        Args:
            endpoint: ``"/api/v3/order"`` (any method), ``"POST /api/v3/order"``, ``"*"`` (any
                REST request), or ``WS`` (``"ws"``: user data websockets; DROP / SILENT are
                used by the next event, UNAVAILABLE by the next handshake).
            kind: What goes wrong.
            count: How many consecutive matching requests get it.
            applied: Whether the request still reaches the ledger (default: yes for
                GATEWAY_TIMEOUT and TIMEOUT, no otherwise).
            delay_s: How long TIMEOUT holds the response (default ``timeout_delay_s``).
            retry_after_s: The ``Retry-After`` header of RATE_LIMIT.
        """
        is_ws = endpoint == WS
        if is_ws != (kind in _WS_EVENT_FAULTS) and kind is not FaultKind.UNAVAILABLE:
            raise ValueError(f"{kind} does not apply to {endpoint!r}")
        fault = _Fault(kind, kind in _APPLIED_BY_DEFAULT if applied is None else applied,
                       self.timeout_delay_s if delay_s is None else delay_s, retry_after_s)
        self._faults.setdefault(endpoint, deque()).extend([fault] * count)

    async def drop_streams(self) -> int:
        """Abort every user data websocket now (a TCP reset, no close frame); return how many."""
        sessions = list(self._sessions)
        for session in sessions:
            self._drop(session)
        await asyncio.sleep(0)
        return len(sessions)

    def silence_streams(self) -> int:
        """Make every user data websocket silent now (no events, no pongs); return how many."""
        for session in self._sessions:
            session.silent = True
        self.counters["ws_silenced"] += len(self._sessions)
        return len(self._sessions)

    @property
    def subscribed_streams(self) -> int:
        """Return how many user data connections currently receive events."""
        return sum(1 for s in self._sessions if s.subscription_id is not None and not s.silent)

    async def wait_subscribed(self, count: int = 1, timeout_s: float = 5.0) -> None:
        """Wait until ``count`` user data connections receive events."""
        async with asyncio.timeout(timeout_s):
            while self.subscribed_streams < count:
                self._streams_changed.clear()
                await self._streams_changed.wait()

    # ---------------------------------------------------------------- assertions

    def open_orders(self, symbol: str | None = None) -> list[VenueOrder]:
        """Return the venue's resting orders."""
        return self.ledger.open_orders(symbol)

    def order(self, ref: int | str) -> VenueOrder:
        """Return an order by id (int) or client order id (str)."""
        order = (self.ledger.find(None, ref, None) if isinstance(ref, int)
                 else self.ledger.find(None, None, ref))
        if order is None:
            raise KeyError(ref)
        return order

    def balances(self) -> dict[str, Balance]:
        """Return the account's balances (live objects: copy before comparing over time)."""
        return self.ledger.balances

    def trades(self, symbol: str | None = None) -> list[VenueTrade]:
        """Return our fills, oldest first."""
        return [t for t in self.ledger.trades if symbol is None or t.symbol == symbol]

    def requests_to(self, method: str, path: str) -> list[RecordedRequest]:
        """Return the recorded requests of one endpoint."""
        return [r for r in self.requests if r.method == method and r.path == path]

    # ---------------------------------------------------------------- faults

    def _take_fault(self, keys: Sequence[str], kinds: set[FaultKind]) -> _Fault | None:
        for key in keys:
            queue = self._faults.get(key)
            if queue and queue[0].kind in kinds:
                fault = queue.popleft()
                self.counters[f"fault.{fault.kind}"] += 1
                return fault
        return None

    async def _hold(self, seconds: float) -> None:
        """Sleep, but wake up when the venue shuts down."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    # ---------------------------------------------------------------- REST

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        method, path = request.method, request.path
        raw_query = request.raw_path.partition("?")[2]
        body = await request.text() if request.can_read_body else ""
        # A parameter sent in both the query string and the body: the query string wins.
        params = dict(parse_qsl(body, keep_blank_values=True))
        params.update(parse_qsl(raw_query, keep_blank_values=True))
        api_key = request.headers.get("X-MBX-APIKEY")
        self.counters["requests"] += 1
        fault = self._take_fault((f"{method} {path}", path, "*"), set(FaultKind))
        if fault is not None and not fault.applied:
            # A held request that is not applied was lost on the way in: the client times
            # out, the venue never acts on it, and whatever it answers at last goes nowhere.
            kind = FaultKind.GATEWAY_TIMEOUT if fault.kind is FaultKind.TIMEOUT else fault.kind
            response = self._fault_response(kind, fault.retry_after_s)
            self.requests.append(RecordedRequest(method, path, params, api_key,
                                                 response.status, None, fault.kind))
            if fault.kind is FaultKind.TIMEOUT:
                await self._hold(fault.delay_s)
            return response
        answer = self._answer(method, path, params, raw_query, body, api_key)
        self.requests.append(RecordedRequest(method, path, params, api_key, answer.status,
                                             answer.code, fault.kind if fault else None))
        await self._broadcast(answer.events)
        if fault is not None:
            if fault.kind is FaultKind.TIMEOUT:
                await self._hold(fault.delay_s)
            else:
                return self._fault_response(fault.kind, fault.retry_after_s)
        if answer.status == 404:
            # Plain text, as a venue's web server answers an unknown path (ccxt: 404 ->
            # ExchangeNotAvailable, never mistaken for a Binance error code).
            return web.Response(status=404, text=f"fake: {method} {path} is not served")
        return web.json_response(answer.body, status=answer.status)

    @staticmethod
    def _fault_response(kind: FaultKind, retry_after_s: int) -> web.Response:
        if kind is FaultKind.RATE_LIMIT:
            return web.json_response({"code": -1003, "msg": MSG_RATE_LIMIT}, status=429,
                                     headers={"Retry-After": str(retry_after_s)})
        if kind is FaultKind.GATEWAY_TIMEOUT:
            return web.Response(status=504, text="<html><body><h1>504 Gateway Time-out</h1>"
                                                 "</body></html>", content_type="text/html")
        return web.Response(status=503, text="Service Unavailable.")

    def _answer(self, method: str, path: str, params: dict[str, str], raw_query: str,
                body: str, api_key: str | None) -> _Answer:
        route = self._routes.get((method, path))
        if route is None:
            self.errors.append(f"not served: {method} {path}")
            return _Answer(404, None)
        security, handler = route
        try:
            if security != "NONE":
                self._check_api_key(api_key)
            if security == "SIGNED":
                self.counters["signed"] += 1
                self._check_signature(raw_query, body)
                self._check_timestamp(params)
            return handler(params)
        except BinanceError as exc:
            self.counters["rejected"] += 1
            if exc.code in (-2014, -2015, -1022, -1021):
                self.counters["auth_failures"] += 1
            return _Answer(exc.status, exc.payload(), code=exc.code)

    def _check_api_key(self, api_key: str | None) -> None:
        if not api_key:
            raise BinanceError(401, -2014, MSG_API_KEY_FORMAT)
        if not hmac.compare_digest(api_key, self.api_key):
            raise BinanceError(401, -2015, MSG_BAD_API_KEY)

    def _check_signature(self, raw_query: str, body: str) -> None:
        """Check the HMAC-SHA256 of ``totalParams`` (query string + body, no ``signature``)."""
        signatures = [part.partition("=")[2] for part in (raw_query + "&" + body).split("&")
                      if part.startswith("signature=")]
        if len(signatures) != 1 or not signatures[0]:
            raise _mandatory("signature")

        def unsigned(raw: str) -> str:
            return "&".join(p for p in raw.split("&") if p and not p.startswith("signature="))

        total = unsigned(raw_query) + unsigned(body)
        expected = hmac.new(self.secret.encode(), total.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signatures[0].lower()):
            raise BinanceError(400, -1022, MSG_BAD_SIGNATURE)

    def _check_timestamp(self, params: Mapping[str, Any]) -> None:
        try:
            timestamp = int(params["timestamp"])
        except (KeyError, ValueError):
            raise _mandatory("timestamp") from None
        try:
            recv_window = int(params.get("recvWindow", 5000))
        except ValueError:
            raise _mandatory("recvWindow") from None
        if recv_window > 60_000:
            raise BinanceError(400, -1131, "recvWindow must be less than 60000")
        server_time = self.now_ms()
        if timestamp >= server_time + 1000:
            raise BinanceError(400, -1021, MSG_TS_AHEAD)
        if server_time - timestamp > recv_window:
            raise BinanceError(400, -1021, MSG_TS_OUTSIDE)

    # ---------------------------------------------------------------- endpoints

    def _exchange_info(self, params: dict[str, str]) -> _Answer:
        wanted: Iterable[str] = self.ledger.symbols
        if "symbol" in params:
            wanted = [self.ledger.rules(params["symbol"]).symbol]
        elif "symbols" in params:
            wanted = [self.ledger.rules(s).symbol for s in json.loads(params["symbols"])]
        return _Answer(200, {
            "timezone": "UTC", "serverTime": self.now_ms(),
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                 "limit": 6000},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10,
                 "limit": 100},
                {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1,
                 "limit": 200000},
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5,
                 "limit": 61000},
            ],
            "exchangeFilters": [],
            "symbols": [self.ledger.symbols[s].info() for s in wanted],
        })

    def _touch(self, symbol: str | None) -> tuple[SymbolRules, Decimal | None, Decimal | None]:
        rules = self.ledger.rules(symbol)
        bid, ask = self.ledger.books.get(rules.symbol, (None, None))
        return rules, bid, ask

    def _depth(self, params: dict[str, str]) -> _Answer:
        _, bid, ask = self._touch(params.get("symbol"))
        return _Answer(200, {"lastUpdateId": self.now_ms(),
                             "bids": [] if bid is None else [[_fmt(bid), _fmt(Decimal(1))]],
                             "asks": [] if ask is None else [[_fmt(ask), _fmt(Decimal(1))]]})

    def _book_ticker(self, params: dict[str, str]) -> _Answer:
        rules, bid, ask = self._touch(params.get("symbol"))
        return _Answer(200, {"symbol": rules.symbol, "bidPrice": _fmt(bid or ZERO),
                             "bidQty": _fmt(Decimal(1) if bid else ZERO),
                             "askPrice": _fmt(ask or ZERO),
                             "askQty": _fmt(Decimal(1) if ask else ZERO)})

    def _new_order(self, params: dict[str, str]) -> _Answer:
        placed = self.ledger.place(params)
        order = placed.order
        body: dict[str, Any] = {"symbol": order.symbol, "orderId": order.order_id,
                                "orderListId": -1, "clientOrderId": order.client_order_id,
                                "transactTime": order.time_ms}
        response_type = params.get("newOrderRespType", "FULL")
        if response_type in ("RESULT", "FULL"):
            wire = order.wire()
            for key in ("stopPrice", "icebergQty", "time", "updateTime", "isWorking"):
                wire.pop(key)
            body.update(wire)
            body["transactTime"] = order.time_ms
        if response_type == "FULL":
            body["fills"] = [{"price": _fmt(t.price), "qty": _fmt(t.qty),
                              "commission": _fmt(t.commission),
                              "commissionAsset": t.commission_asset, "tradeId": t.trade_id}
                             for t in placed.trades]
        return _Answer(200, body, list(placed.events))

    def _query_order(self, params: dict[str, str]) -> _Answer:
        rules = self.ledger.rules(params.get("symbol"))
        order_id, orig = params.get("orderId"), params.get("origClientOrderId")
        if order_id is None and orig is None:
            raise BinanceError(400, -1102, "Param 'origClientOrderId' or 'orderId' must be "
                                           "sent, but both were empty/null!")
        order = self.ledger.find(rules.symbol, order_id, orig)
        if order is None:
            raise BinanceError(400, -2013, MSG_NO_SUCH_ORDER)
        return _Answer(200, order.wire())

    def _cancel_order(self, params: dict[str, str]) -> _Answer:
        answer, events = self.ledger.cancel(params)
        return _Answer(200, answer, events)

    def _cancel_all(self, params: dict[str, str]) -> _Answer:
        answers, events = self.ledger.cancel_all(params)
        return _Answer(200, answers, events)

    def _open_orders(self, params: dict[str, str]) -> _Answer:
        symbol = params.get("symbol")
        if symbol is not None:
            self.ledger.rules(symbol)
        return _Answer(200, [o.wire() for o in self.ledger.open_orders(symbol)])

    @staticmethod
    def _window(params: Mapping[str, str]) -> tuple[int, int, int]:
        start = int(params.get("startTime", 0))
        end = int(params.get("endTime", 2**63))
        limit = min(int(params.get("limit", 500)), 1000)
        return start, end, limit

    def _all_orders(self, params: dict[str, str]) -> _Answer:
        rules = self.ledger.rules(params.get("symbol"))
        start, end, limit = self._window(params)
        from_id = int(params.get("orderId", 0))
        orders = [o for o in self.ledger.orders.values() if o.symbol == rules.symbol
                  and o.order_id >= from_id and start <= o.time_ms <= end]
        return _Answer(200, [o.wire() for o in orders[:limit]])

    def _my_trades(self, params: dict[str, str]) -> _Answer:
        rules = self.ledger.rules(params.get("symbol"))
        start, end, limit = self._window(params)
        order_id = params.get("orderId")
        from_id = int(params.get("fromId", 0))
        trades = [t for t in self.ledger.trades if t.symbol == rules.symbol
                  and (order_id is None or t.order_id == int(order_id))
                  and t.trade_id >= from_id and start <= t.time_ms <= end]
        return _Answer(200, [t.wire() for t in trades[:limit]])

    def _new_listen_key(self, params: dict[str, str]) -> _Answer:
        # One account, one active key: a second POST returns the same key (as Binance does).
        if not self.listen_keys:
            self.listen_keys.add(secrets.token_urlsafe(48)[:60])
            self.counters["listen_keys"] += 1
        return _Answer(200, {"listenKey": next(iter(self.listen_keys))})

    def _listen_key(self, params: Mapping[str, str]) -> str:
        key = params.get("listenKey")
        if not key:
            raise _mandatory("listenKey")
        if key not in self.listen_keys:
            raise BinanceError(400, -1125, "This listenKey does not exist.")
        return key

    def _keep_listen_key(self, params: dict[str, str]) -> _Answer:
        self._listen_key(params)
        return _Answer(200, {})

    def _close_listen_key(self, params: dict[str, str]) -> _Answer:
        key = self._listen_key(params)
        self.listen_keys.discard(key)
        for session in [s for s in self._sessions if s.kind == "stream"]:
            self._sessions.discard(session)
            if session.transport is not None:
                session.transport.abort()
        return _Answer(200, {})

    # ---------------------------------------------------------------- user data websockets

    async def _ws_api(self, request: web.Request) -> web.StreamResponse:
        """WebSocket API: ``userDataStream.subscribe.signature``, then wrapped events."""
        return await self._serve_ws(request, "ws-api")

    async def _ws_stream(self, request: web.Request) -> web.StreamResponse:
        """Legacy ``/ws/<listenKey>``: raw events from the first frame on."""
        if request.match_info["listen_key"] not in self.listen_keys:
            self.counters["ws_refused"] += 1
            return web.json_response({"code": -1125, "msg": "This listenKey does not exist."},
                                     status=400)
        return await self._serve_ws(request, "stream")

    async def _serve_ws(self, request: web.Request,
                        kind: Literal["ws-api", "stream"]) -> web.StreamResponse:
        if self._take_fault((WS,), {FaultKind.UNAVAILABLE}) is not None:
            self.counters["ws_refused"] += 1
            return web.Response(status=503, text="Service Unavailable.")
        # autoping off: a silent connection must be able to leave pings unanswered.
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        session = _Session(ws, request.transport, kind)
        if kind == "stream":
            session.subscription_id = self._new_subscription()
        self._sessions.add(session)
        self.counters["ws_connections"] += 1
        try:
            while not ws.closed:
                msg = await ws.receive()
                if msg.type == WSMsgType.PING:
                    if not session.silent:
                        await ws.pong(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    if kind == "ws-api" and not session.silent:
                        await ws.send_str(json.dumps(self._ws_request(session, msg.data)))
                    elif kind == "stream":
                        self.errors.append(f"unexpected frame on a listenKey stream: "
                                           f"{msg.data!r}")
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED,
                                  WSMsgType.ERROR):
                    break
        except ConnectionResetError:
            pass
        finally:
            self._sessions.discard(session)
            self._streams_changed.set()
        return ws

    def _new_subscription(self) -> int:
        subscription = self._next_subscription
        self._next_subscription += 1
        self.counters["ws_subscriptions"] += 1
        self._streams_changed.set()
        return subscription

    def _ws_request(self, session: _Session, text: str) -> dict[str, Any]:
        """Answer one WebSocket API request (only the user data stream methods are served)."""
        try:
            request = json.loads(text)
            request_id = request.get("id")
            method = str(request["method"])
            params = request.get("params") or {}
            if not isinstance(params, dict):
                raise ValueError(params)
        except (ValueError, KeyError, AttributeError, TypeError):
            self.errors.append(f"WebSocket API: not a request: {text!r}")
            return {"id": None, "status": 400,
                    "error": {"code": -1135, "msg": "Invalid JSON Request"}}
        api_key = params.get("apiKey")
        try:
            if method == "userDataStream.subscribe.signature":
                self._check_api_key(api_key)
                self._check_ws_signature(params)
                self._check_timestamp(params)
                if session.subscription_id is None:
                    session.subscription_id = self._new_subscription()
                result: dict[str, Any] = {"subscriptionId": session.subscription_id}
            elif method == "userDataStream.unsubscribe":
                session.subscription_id = None
                result = {}
            elif method in ("ping", "session.status"):
                result = {}
            else:
                self.errors.append(f"WebSocket API: method not served: {method}")
                raise BinanceError(400, -1020, "This operation is not supported.")
        except BinanceError as exc:
            self.counters["rejected"] += 1
            if exc.code in (-2014, -2015, -1022, -1021):
                self.counters["auth_failures"] += 1
            self.requests.append(RecordedRequest("WS", method, _strs(params), api_key,
                                                 exc.status, exc.code))
            return {"id": request_id, "status": exc.status, "error": exc.payload()}
        self.requests.append(RecordedRequest("WS", method, _strs(params), api_key, 200))
        return {"id": request_id, "status": 200, "result": result,
                "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE",
                                "intervalNum": 1, "limit": 6000, "count": 2}]}

    def _check_ws_signature(self, params: Mapping[str, Any]) -> None:
        """WebSocket API payload: every param but ``signature``, sorted, ``k=v`` joined by &."""
        signature = params.get("signature")
        if not isinstance(signature, str) or not signature:
            raise _mandatory("signature")
        payload = "&".join(f"{k}={_str(params[k])}" for k in sorted(params) if k != "signature")
        expected = hmac.new(self.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise BinanceError(400, -1022, MSG_BAD_SIGNATURE)

    def _drop(self, session: _Session) -> None:
        self.counters["ws_drops"] += 1
        session.subscription_id = None
        if session.transport is not None:
            session.transport.abort()
        self._sessions.discard(session)

    async def _broadcast(self, events: Iterable[Event]) -> None:
        for event in events:
            listeners = [s for s in self._sessions if s.subscription_id is not None]
            fault = self._take_fault((WS,), _WS_EVENT_FAULTS) if listeners else None
            if fault is not None and fault.kind is FaultKind.DROP:
                self.counters["events_lost"] += len(listeners)
                for session in listeners:
                    self._drop(session)
                continue
            if fault is not None:
                self.counters["ws_silenced"] += len(listeners)
                for session in listeners:
                    session.silent = True
            for session in listeners:
                if session.silent:
                    self.counters["events_lost"] += 1
                    continue
                frame = event if session.kind == "stream" else {
                    "subscriptionId": session.subscription_id, "event": event}
                try:
                    await session.ws.send_str(json.dumps(frame))
                except ConnectionError:
                    self.counters["events_lost"] += 1
                    continue
                self.counters["events_sent"] += 1


def _str(value: Any) -> str:
    """Stringify a WebSocket API param the way the signer did (``true``/``false`` for bools)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _strs(params: Mapping[str, Any]) -> dict[str, str]:
    return {k: _str(v) for k, v in params.items()}
