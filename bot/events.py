"""The event vocabulary of mmbot: market data, strategy output, commands and events.

Everything that crosses a component boundary is one of these frozen, slotted dataclasses.

Conventions:
    * Time is integer nanoseconds since the Unix epoch (or since the start of a simulation).
      Every market event carries ``ts_exchange_ns`` (the venue's clock) and ``ts_local_ns``
      (our receive time); the engine runs on ``ts_local_ns``.
    * Prices and quantities are floats in the hot path (price in quote currency, quantity in
      units of the base asset). Rounding to a venue tick or lot happens once, in
      ``bot.orders``, at the order boundary.
    * Commands are imperative nouns (``PlaceOrder``, ``CancelOrder``); events are past tense
      (``OrderFilled``, ``RiskStateChanged``).
    * Book levels are ``(price, quantity)`` tuples; in a ``BookDelta`` a quantity of 0 removes
      the level.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import Final, Protocol

from bot.frozen import fast_init as fast_init  # re-exported: risk/ may import only bot.events
from bot.frozen import maker as maker  # re-exported likewise
from bot.native import cbook as cbook  # re-exported likewise: the compiled kernels, or None

NS_PER_SECOND = 1_000_000_000

Level = tuple[float, float]
"""A book level: ``(price, quantity)``."""


class Side(IntEnum):
    """Order side; the value is the sign of the inventory change when such an order fills."""

    BUY = 1
    SELL = -1

    @property
    def opposite(self) -> Side:
        """Return the other side."""
        return SELL if self is BUY else BUY


# The sides as plain module constants, for code that runs on every tick. In Python 3.11 a
# member read through its class (``Side.BUY``) goes through EnumType's ``__getattr__`` hook:
# ~0.1 µs each, and the quote path made dozens of them per tick.
BUY: Final = Side.BUY
SELL: Final = Side.SELL


class Liquidity(Enum):
    """Whether a fill added liquidity (maker) or took it (taker)."""

    MAKER = "maker"
    TAKER = "taker"


class RiskState(Enum):
    """Trading state of the risk gate.

    ACTIVE quotes both sides; REDUCING only quotes the side that reduces inventory; HALTED
    sends nothing new (cancels are always allowed) until an explicit reset.
    """

    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


class DenyReason(Enum):
    """Why the risk gate refused or trimmed a quote."""

    HALTED = "halted"
    INVENTORY_CAP = "inventory_cap"
    SPREAD_FLOOR = "spread_floor"
    CROSSES_TOUCH = "crosses_touch"
    MAX_ORDER_SIZE = "max_order_size"
    MAX_NOTIONAL = "max_notional"
    PRICE_BAND = "price_band"
    STALE_BOOK = "stale_book"
    INVALID_BOOK = "invalid_book"
    ORDER_RATE = "order_rate"
    INVALID_QUOTE = "invalid_quote"


class HaltReason(Enum):
    """Why the kill-switch tripped."""

    DRAWDOWN = "drawdown"
    LOSS_LIMIT = "loss_limit"
    MANUAL = "manual"


# --------------------------------------------------------------------------------------------
# Market data
# --------------------------------------------------------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True)
class BookSnapshot:
    """A full replacement of both sides of the L2 book.

    ``sequence`` is the venue's update id of the snapshot (0 when the venue has none).
    ``validated`` is set by a parser that has already checked every level (finite, price > 0,
    quantity >= 0), so the engine does not walk the levels a second time.
    """

    ts_exchange_ns: int
    ts_local_ns: int
    symbol: str
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    sequence: int = 0
    validated: bool = False


@fast_init
@dataclass(frozen=True, slots=True)
class BookDelta:
    """Changed levels of the L2 book; a level with quantity 0 is removed.

    Quantities are absolute (the new quantity at the price), not increments. ``validated`` as
    for ``BookSnapshot``. Parsers give tuples, or, for a split Binance diff (its near levels
    and its deep parts, ``DeepLevels``), a compiled ``LevelRun``: a read-only sequence of the
    same levels that compares equal to their tuple.
    """

    ts_exchange_ns: int
    ts_local_ns: int
    symbol: str
    bids: Sequence[Level]
    asks: Sequence[Level]
    sequence: int = 0
    validated: bool = False


class SettleBook(Protocol):
    """What ``DeepLevels.settle`` asks of the book (``bot.book.OrderBook`` is one)."""

    def settle_take(self, side: Side, text: str,
                    from_end: bool) -> tuple[Sequence[Level], float, str]:
        """Split off the levels of a raw level array of ``side``, nearest the touch first, to
        book before no further one can change that side's best level: (those levels in array
        order, the boundary price or nan, the raw rest); ``((), nan, text)`` for none.

        Raises:
            ValueError: Those levels are corrupt.
        """
        ...


class DeepLevels(Protocol):
    """The deferred levels of a ``DeferredBookDelta``, decoded on demand, nearest first."""

    def settle(self, book: SettleBook) -> tuple[BookDelta, float, float]:
        """Decode exactly the deferred levels ``book`` needs before its touch is final.

        ``book`` already holds the near levels. Once the levels returned are booked as well,
        no deferred level left can change its best bid or best ask (for levels sorted by
        price, as venues send them; the caller checks and falls back to ``through``). Returns
        them as a delta, with the new highest deep bid and lowest deep ask (-inf / inf when a
        side has nothing left).

        Raises:
            DataError: Those levels are corrupt (the parser resyncs).
        """
        ...

    def through(self, bid_floor: float, ask_cap: float,
                at_least: int = 1) -> tuple[BookDelta, float, float]:
        """Decode the deferred bids at or above ``bid_floor`` and asks at or below ``ask_cap``.

        Those are the levels, nearest the touch first, that can still change a best bid of
        ``bid_floor`` or a best ask of ``ask_cap`` (inf / -inf: take none from that side);
        from a side that has any, at least ``at_least`` levels are taken. Returns them as a
        delta, with the new highest deep bid and lowest deep ask (-inf / inf when a side has
        nothing left).

        Raises:
            DataError: Those levels are corrupt (the parser resyncs).
        """
        ...

    def rest(self) -> BookDelta:
        """Decode every level not yet handed out.

        Raises:
            DataError: A level is corrupt (the parser resyncs).
        """
        ...

    def whole(self) -> BookDelta:
        """Decode every level of the update, the near ones included, in the venue's order.

        For a consumer that does not split; call it instead of ``through``/``rest``.

        Raises:
            DataError: A level is corrupt (the parser resyncs).
        """
        ...


@fast_init
@dataclass(frozen=True, slots=True)
class DeferredBookDelta:
    """A large delta split by its parser: the levels nearest the touch now, the rest on demand.

    Depth diffs of hundreds of levels are the latency tail, and the quoting decision needs only
    the top of the book. ``near`` (validated) holds the changed levels nearest the touch on each
    side; ``deep`` decodes and validates the others when asked, nearest first, and raises
    ``DataError`` if they are corrupt. Every deep bid is at or below ``deep_bid_max`` and every
    deep ask at or above ``deep_ask_min`` (-inf / inf: none), so once ``near`` is booked, a
    best bid above ``deep_bid_max`` and a best ask below ``deep_ask_min`` are final. ``deep``
    is consumed once, by one consumer (the engine); ``whole()`` is the equivalent plain
    ``BookDelta`` for a consumer that does not split.
    """

    ts_exchange_ns: int
    ts_local_ns: int
    symbol: str
    sequence: int
    near: BookDelta
    deep_bid_max: float
    deep_ask_min: float
    deep: DeepLevels

    def whole(self) -> BookDelta:
        """Return the equivalent plain delta, every level in the venue's order.

        Raises:
            DataError: The deep part is corrupt.
        """
        return self.deep.whole()


@fast_init
@dataclass(frozen=True, slots=True)
class Trade:
    """A public trade. ``aggressor`` is the side of the taker (BUY lifted an ask)."""

    ts_exchange_ns: int
    ts_local_ns: int
    symbol: str
    price: float
    qty: float
    aggressor: Side
    trade_id: str = ""


@fast_init
@dataclass(frozen=True, slots=True)
class BookInvalid:
    """The feed lost sync (gap, checksum mismatch, corrupt data); quotes must be pulled."""

    ts_exchange_ns: int
    ts_local_ns: int
    symbol: str
    reason: str


@fast_init
@dataclass(frozen=True, slots=True)
class Timer:
    """A clock tick with no market data: lets stale-data guards and status lines run."""

    ts_exchange_ns: int
    ts_local_ns: int
    symbol: str = ""


MarketEvent = BookSnapshot | BookDelta | DeferredBookDelta | Trade | BookInvalid | Timer


# --------------------------------------------------------------------------------------------
# Strategy output
# --------------------------------------------------------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True)
class Quote:
    """One desired resting order. ``level`` is 0 for the touch-most level of a ladder."""

    side: Side
    price: float
    qty: float
    level: int = 0


@fast_init
@dataclass(frozen=True, slots=True)
class QuoteSet:
    """What a strategy wants resting now, with the model's diagnostics.

    ``bids`` are ordered from the best (highest) price outwards, ``asks`` likewise (lowest first).
    ``reservation_price`` and ``half_spread`` are the model's numbers before any ladder, snapping
    or risk adjustment, in price units; they feed the status line and reports.
    """

    bids: tuple[Quote, ...]
    asks: tuple[Quote, ...]
    reservation_price: float
    half_spread: float

    @staticmethod
    def empty(reservation_price: float = float("nan")) -> QuoteSet:
        """Return a quote set that wants nothing resting."""
        return QuoteSet((), (), reservation_price, float("nan"))


@fast_init
@dataclass(frozen=True, slots=True)
class MarketState:
    """Everything a strategy may look at when it quotes; built by the engine per event.

    Units: prices in quote currency, ``sigma`` in price per sqrt(second), ``intensity_a`` in
    1/second, ``intensity_k`` in 1/price, ``inventory`` in base-asset units.
    """

    ts_ns: int
    mid: float
    best_bid: float
    best_ask: float
    tick_size: float
    inventory: float
    sigma: float
    intensity_a: float
    intensity_k: float


# --------------------------------------------------------------------------------------------
# Commands (engine -> execution venue)
# --------------------------------------------------------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True)
class PlaceOrder:
    """Place a limit order. Price and quantity are already snapped to tick and lot."""

    ts_ns: int
    client_order_id: str
    symbol: str
    side: Side
    price: float
    qty: float
    post_only: bool = True
    level: int = 0


@fast_init
@dataclass(frozen=True, slots=True)
class CancelOrder:
    """Cancel one working order."""

    ts_ns: int
    client_order_id: str
    symbol: str


Command = PlaceOrder | CancelOrder


# --------------------------------------------------------------------------------------------
# Order events (execution venue -> engine)
# --------------------------------------------------------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True)
class OrderAccepted:
    """The venue accepted the order; it rests on the book from ``ts_ns`` on."""

    ts_ns: int
    client_order_id: str
    venue_order_id: str = ""


@fast_init
@dataclass(frozen=True, slots=True)
class OrderRejected:
    """The venue refused the order (post-only would cross, invalid, insufficient funds ...)."""

    ts_ns: int
    client_order_id: str
    reason: str


@fast_init
@dataclass(frozen=True, slots=True)
class OrderFilled:
    """A (partial) execution of one of our orders.

    ``fee`` is in quote currency, positive when paid, negative for a rebate. ``remaining_qty``
    is what is still working on the order after this fill (0 when complete).
    """

    ts_ns: int
    client_order_id: str
    side: Side
    price: float
    qty: float
    remaining_qty: float
    fee: float
    liquidity: Liquidity
    trade_id: str = ""


@fast_init
@dataclass(frozen=True, slots=True)
class OrderCanceled:
    """The order is gone from the venue; no more fills can arrive for it."""

    ts_ns: int
    client_order_id: str
    reason: str = ""


@fast_init
@dataclass(frozen=True, slots=True)
class OrderCancelRejected:
    """A cancel was refused, typically because the order had already filled or was unknown."""

    ts_ns: int
    client_order_id: str
    reason: str


OrderEvent = OrderAccepted | OrderRejected | OrderFilled | OrderCanceled | OrderCancelRejected


# --------------------------------------------------------------------------------------------
# Risk events
# --------------------------------------------------------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True)
class RiskDenied:
    """The risk gate refused (or trimmed) a desired quote."""

    ts_ns: int
    side: Side
    price: float
    qty: float
    reason: DenyReason
    detail: str = ""


@fast_init
@dataclass(frozen=True, slots=True)
class RiskStateChanged:
    """The risk gate moved between ACTIVE, REDUCING and HALTED."""

    ts_ns: int
    old: RiskState
    new: RiskState
    reason: str


@fast_init
@dataclass(frozen=True, slots=True)
class RiskDecision:
    """Outcome of one risk check: the approved quotes plus every denial and state change."""

    approved: QuoteSet
    state: RiskState
    denials: tuple[RiskDenied, ...] = field(default_factory=tuple)
    changes: tuple[RiskStateChanged, ...] = field(default_factory=tuple)
    cancel_all: bool = False
