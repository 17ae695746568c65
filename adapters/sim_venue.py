"""Simulated execution venues: the L2 fill-model venue (paper, replay) and the AS 2008 venue.

Both venues share one order lifecycle (``_VenueCore``):

* ``submit(PlaceOrder)``: the order becomes active ``entry_latency_ns`` after
  ``scheduler.now_ns()`` (synchronously inside ``submit`` when the latency is 0). At activation
  it is accepted (``OrderAccepted``) and rests, or is rejected (``OrderRejected``). A
  ``client_order_id`` that is already in flight or resting is rejected at once
  (``"duplicate_client_order_id"``).
* ``submit(CancelOrder)``: takes effect ``cancel_latency_ns`` later (synchronously when 0).
  A resting order is removed (``OrderCanceled``); an unknown, filled or already canceled one
  gets ``OrderCancelRejected(reason="unknown_order")``. Fills can still happen while the cancel
  is on its way. A cancel that takes effect while its order is still in flight (cancel latency
  shorter than entry latency) is remembered, and the order is canceled at its activation time
  instead of being accepted: ``OrderCanceled(reason="canceled_before_activation")``, with no
  ``OrderAccepted`` before it. This keeps the outcome deterministic and never leaves an orphan
  order resting.
* Scheduled activations and cancels carry their due time as the event time, so the order events
  are the same under a virtual clock and a wall clock. Fills carry the market event's
  ``ts_local_ns``.

``SimVenue`` fills resting orders against recorded or simulated L2 data and trades with one of
three fill models (``FillModel``); ``PoissonFillVenue`` fills them with the AS 2008 rule, a hit
probability ``A·exp(-k·δ)·dt`` per step. Neither changes the market it reads: the recorded
market is not changed by our orders (REFERENCE.md, section 4).

Prices are compared exactly, as the book keys them: order prices must be the canonical floats
the feed produces (``bot.orders`` snaps to ``round(n * tick, decimals)``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from functools import partial
from types import MappingProxyType
from typing import Final

from bot.book import BookPartKernel, OrderBook
from bot.clock import Scheduler
from bot.errors import ConfigError
from bot.events import (
    BUY,
    SELL,
    BookDelta,
    BookSnapshot,
    Command,
    Liquidity,
    MarketEvent,
    OrderAccepted,
    OrderCanceled,
    OrderCancelRejected,
    OrderEvent,
    OrderFilled,
    OrderRejected,
    PlaceOrder,
    Side,
    Trade,
)
from bot.frozen import maker
from bot.native import cbook, level_qty

_INF = math.inf
_BPS = 1e-4
# Each of our fills builds one: without a Python __init__ frame (every field passed).
_make_filled = maker(OrderFilled)

REJECT_POST_ONLY = "post_only_would_cross"
REJECT_DUPLICATE = "duplicate_client_order_id"
CANCEL_REJECT_UNKNOWN = "unknown_order"
CANCELED_BEFORE_ACTIVATION = "canceled_before_activation"

OrderSink = Callable[[OrderEvent], None]


class FillModel(Enum):
    """How resting orders are filled from L2 data (REFERENCE.md, section 4).

    QUEUE (default): a queue position is estimated and advanced by trades at the price and by
    cancels; partial fills. TRADE_THROUGH (conservative): only trades strictly through the price
    fill. TOUCH (optimistic): any trade at or through the price fills the whole order.
    """

    QUEUE = "queue"
    TRADE_THROUGH = "trade-through"
    TOUCH = "touch"


# Enum members as module constants: a read through the class costs EnumType's __getattr__
# hook in Python 3.11 (see bot.events.BUY).
_QUEUE: Final = FillModel.QUEUE
_TOUCH: Final = FillModel.TOUCH
_MAKER: Final = Liquidity.MAKER
_TAKER: Final = Liquidity.TAKER
_DEPTH_EVENTS: Final = (BookDelta, BookSnapshot)  # a tuple: "A | B" builds a union per call


def _check_latency(name: str, value: int) -> None:
    if value < 0:
        raise ConfigError(name, f"must be >= 0, got {value}")


@dataclass(frozen=True, slots=True)
class SimVenueConfig:
    """Settings of the L2 simulated venue.

    Attributes:
        fill_model: The fill model.
        entry_latency_ns: Delay from ``submit`` to the order resting on the venue.
        cancel_latency_ns: Delay from ``submit`` of a cancel to its taking effect.
        maker_fee_bps: Fee on maker fills in basis points of notional (negative: rebate).
        taker_fee_bps: Fee on taker fills in basis points of notional.
        queue_power: Exponent n of ``f(x) = x**n`` in the cancel attribution rule.
        lot_size: Quantity step of fills, base units; a partial fill from the queue model is
            rounded down to whole lots, as a real venue fills (0: any quantity).
        post_only_reject: Reject a post-only order that would cross at activation. When False
            the post-only flag is not enforced and a crossing order executes as taker.
    """

    fill_model: FillModel = FillModel.QUEUE
    entry_latency_ns: int = 0
    cancel_latency_ns: int = 0
    maker_fee_bps: float = 0.0
    taker_fee_bps: float = 0.0
    queue_power: float = 2.0
    post_only_reject: bool = True
    lot_size: float = 0.0

    def __post_init__(self) -> None:
        """Reject impossible values, naming the field."""
        _check_latency("entry_latency_ns", self.entry_latency_ns)
        _check_latency("cancel_latency_ns", self.cancel_latency_ns)
        if not self.queue_power > 0.0:
            raise ConfigError("queue_power", f"must be > 0, got {self.queue_power}")
        if not 0.0 <= self.lot_size < math.inf:
            raise ConfigError("lot_size", f"must be >= 0 and finite, got {self.lot_size}")


@dataclass(frozen=True, slots=True)
class PoissonVenueConfig:
    """Settings of the AS 2008 venue: a hit probability ``A·exp(-k·δ)·dt`` per step.

    Attributes:
        intensity_a: A, arrivals per second at the mid (1/second).
        intensity_k: k, decay of the arrival rate with depth (1/price).
        entry_latency_ns: Delay from ``submit`` to the order resting on the venue.
        cancel_latency_ns: Delay from ``submit`` of a cancel to its taking effect.
        maker_fee_bps: Fee on fills in basis points of notional (negative: rebate).
    """

    intensity_a: float
    intensity_k: float
    entry_latency_ns: int = 0
    cancel_latency_ns: int = 0
    maker_fee_bps: float = 0.0

    def __post_init__(self) -> None:
        """Reject impossible values, naming the field."""
        if not self.intensity_a >= 0.0:
            raise ConfigError("intensity_a", f"must be >= 0, got {self.intensity_a}")
        if not self.intensity_k >= 0.0:
            raise ConfigError("intensity_k", f"must be >= 0, got {self.intensity_k}")
        _check_latency("entry_latency_ns", self.entry_latency_ns)
        _check_latency("cancel_latency_ns", self.cancel_latency_ns)


@dataclass(frozen=True, slots=True)
class OpenOrder:
    """A read-only copy of one resting order.

    Attributes:
        client_order_id: Our id of the order.
        side: BUY or SELL.
        price: Limit price.
        qty: Original quantity.
        remaining: Quantity still working.
        queue_ahead: Estimated displayed quantity ahead of the order at its price (QUEUE model;
            other models keep the value seen at entry).
        accepted_ns: When the order started resting.
    """

    client_order_id: str
    side: Side
    price: float
    qty: float
    remaining: float
    queue_ahead: float
    accepted_ns: int


@dataclass(slots=True)
class _Order:
    """The venue's mutable record of a resting order."""

    client_order_id: str
    side: Side
    price: float
    qty: float
    remaining: float
    queue_ahead: float
    accepted_ns: int


class _VenueCore:
    """The order lifecycle shared by the simulated venues: latency, accept, cancel, fill.

    Resting orders are kept in a dict in activation order, which is their time priority.
    """

    __slots__ = (
        "_accepted",
        "_cancel_latency_ns",
        "_early_cancels",
        "_entry_latency_ns",
        "_fills",
        "_in_flight",
        "_maker_fee_bps",
        "_orders",
        "_rejects",
        "_scheduler",
        "_sink",
    )

    def __init__(
        self,
        scheduler: Scheduler,
        sink: OrderSink,
        entry_latency_ns: int,
        cancel_latency_ns: int,
        maker_fee_bps: float,
    ) -> None:
        self._scheduler = scheduler
        self._sink = sink
        self._entry_latency_ns = entry_latency_ns
        self._cancel_latency_ns = cancel_latency_ns
        self._maker_fee_bps = maker_fee_bps
        self._orders: dict[str, _Order] = {}
        self._in_flight: set[str] = set()
        self._early_cancels: set[str] = set()
        self._accepted = 0
        self._rejects = 0
        self._fills = 0

    # ---------------------------------------------------------------- public surface

    @property
    def enters_immediately(self) -> bool:
        """Whether an order rests as soon as it is sent (no entry latency)."""
        return self._entry_latency_ns == 0

    def book_part_kernel(self) -> BookPartKernel | None:
        """``on_market(part)`` and the book's ``apply`` of a split update's part in one C call.

        None here: only ``SimVenue`` has one (``bot._cbook.BookPart``).
        """
        return None

    @property
    def accepted(self) -> int:
        """Number of orders accepted (``OrderAccepted`` emitted)."""
        return self._accepted

    @property
    def rejects(self) -> int:
        """Number of orders rejected (``OrderRejected`` emitted; cancel rejects not counted)."""
        return self._rejects

    @property
    def fills(self) -> int:
        """Number of fills (``OrderFilled`` events, partial fills counted one by one)."""
        return self._fills

    @property
    def open_orders(self) -> Mapping[str, OpenOrder]:
        """Read-only copies of the resting orders by ``client_order_id``, in time priority.

        Orders still in flight (before their entry latency has elapsed) are not included.
        """
        return MappingProxyType(
            {
                cid: OpenOrder(
                    o.client_order_id,
                    o.side,
                    o.price,
                    o.qty,
                    o.remaining,
                    o.queue_ahead,
                    o.accepted_ns,
                )
                for cid, o in self._orders.items()
            }
        )

    def submit(self, command: Command) -> None:
        """Send a place or cancel command; its outcome comes back through the sink.

        Args:
            command: ``PlaceOrder`` or ``CancelOrder``.
        """
        now = self._scheduler.now_ns()
        if isinstance(command, PlaceOrder):
            cid = command.client_order_id
            if cid in self._in_flight or cid in self._orders:
                self._rejects += 1
                self._sink(OrderRejected(now, cid, REJECT_DUPLICATE))
                return
            self._in_flight.add(cid)
            latency = self._entry_latency_ns
            if latency == 0:
                self._activate(command, now)
            else:
                due = now + latency
                self._scheduler.call_at(due, partial(self._activate, command, due))
        else:
            latency = self._cancel_latency_ns
            if latency == 0:
                self._cancel(command.client_order_id, now)
            else:
                due = now + latency
                self._scheduler.call_at(due, partial(self._cancel, command.client_order_id, due))

    # ---------------------------------------------------------------- lifecycle

    def _activate(self, command: PlaceOrder, ts_ns: int) -> None:
        cid = command.client_order_id
        self._in_flight.discard(cid)
        if cid in self._early_cancels:
            self._early_cancels.discard(cid)
            self._sink(OrderCanceled(ts_ns, cid, CANCELED_BEFORE_ACTIVATION))
            return
        self._enter(command, ts_ns)

    def _enter(self, command: PlaceOrder, ts_ns: int) -> None:
        """Admit an order that has reached the venue; by default it rests at the front."""
        self._accept(command, ts_ns)
        self._rest(command, ts_ns, command.qty, 0.0)

    def _cancel(self, client_order_id: str, ts_ns: int) -> None:
        if self._orders.pop(client_order_id, None) is not None:
            self._sink(OrderCanceled(ts_ns, client_order_id))
        elif client_order_id in self._in_flight:
            self._early_cancels.add(client_order_id)
        else:
            self._sink(OrderCancelRejected(ts_ns, client_order_id, CANCEL_REJECT_UNKNOWN))

    def _accept(self, command: PlaceOrder, ts_ns: int) -> None:
        self._accepted += 1
        self._sink(OrderAccepted(ts_ns, command.client_order_id, f"sim-{self._accepted}"))

    def _reject(self, command: PlaceOrder, ts_ns: int, reason: str) -> None:
        self._rejects += 1
        self._sink(OrderRejected(ts_ns, command.client_order_id, reason))

    def _rest(self, command: PlaceOrder, ts_ns: int, remaining: float, queue_ahead: float) -> None:
        cid = command.client_order_id
        self._orders[cid] = _Order(
            cid, command.side, command.price, command.qty, remaining, queue_ahead, ts_ns
        )

    def _fill(
        self,
        cid: str,
        side: Side,
        price: float,
        qty: float,
        remaining: float,
        fee_bps: float,
        liquidity: Liquidity,
        ts_ns: int,
        trade_id: str = "",
    ) -> None:
        self._fills += 1
        self._sink(
            _make_filled(
                ts_ns,
                cid,
                side,
                price,
                qty,
                remaining,
                price * qty * fee_bps * _BPS,
                liquidity,
                trade_id,
            )
        )

    def _fill_resting(self, order: _Order, qty: float, ts_ns: int, trade_id: str = "") -> None:
        """Fill ``qty`` (clipped to what remains) of a resting order as maker at its price."""
        if qty >= order.remaining:
            qty = order.remaining
            order.remaining = 0.0
            del self._orders[order.client_order_id]
        else:
            order.remaining -= qty
        self._fill(
            order.client_order_id,
            order.side,
            order.price,
            qty,
            order.remaining,
            self._maker_fee_bps,
            _MAKER,
            ts_ns,
            trade_id,
        )


class SimVenue(_VenueCore):
    """The simulated exchange of paper trading and replay: L2 fill models on the engine's book.

    ``on_market`` must be called before the engine applies the event to ``book``, so that the
    venue sees the level quantities before the event (a decrease of a level is told apart from a
    trade that way).

    Matching rules (REFERENCE.md, section 4), fills at our limit price as maker:

    * A trade whose aggressor is BUY at price p hits our asks (a SELL aggressor our bids,
      symmetrically). Asks strictly below p fill completely in every model. Asks at p: TOUCH
      fills them completely; TRADE_THROUGH leaves them; QUEUE lets the trade quantity first
      consume ``queue_ahead``, and what is left fills our orders at p in time priority (the
      earlier order first), partially if need be.
    * A depth update (delta or snapshot) that sets an opposite level at a price that crosses our
      order (an ask at or below our bid, a bid at or above our ask) means the market moved
      through us: the order fills completely, in every model.
    * QUEUE only: a decrease of the level at our price that the trades since the last update at
      that price do not explain is attributed to cancels. A cancel of quantity d removes
      quantity ahead of us with probability ``p = f(back)/(f(back) + f(front))``,
      ``f(x) = x**queue_power``, ``front = queue_ahead``, ``back = level - queue_ahead``, where
      level is the displayed quantity net of those trades. We apply the expected value,
      ``queue_ahead -= d·p``, rather than a random draw: the same data gives the same fills
      without depending on a seed, and the estimate has less variance. ``queue_ahead`` is then
      clamped to the new level quantity (the level cannot hold more ahead of us than it has).
    * Trades are assumed to be reported before the depth update that reflects them (true of the
      feeds we read); their quantity is subtracted from the next observed decrease at that price
      so it is not counted twice.

    A crossing order at activation: post-only is rejected (``"post_only_would_cross"``) unless
    ``post_only_reject`` is False; otherwise it is accepted and executes at once as taker against
    the displayed opposite depth, level by level at the level prices, with the taker fee; a
    remainder rests at its limit price. As the recorded market does not see our taking, that
    liquidity is still displayed afterwards and a later update re-stating a crossing level fills
    the remainder as maker: an optimistic edge case of non-post-only orders only.

    Args:
        config: Venue settings.
        scheduler: Clock used for entry and cancel latency.
        sink: Receives every order event, synchronously.
        book: The engine's book of the traded symbol; read, never modified.
    """

    __slots__ = (
        "_book",
        "_lot",
        "_model",
        "_post_only_reject",
        "_queue_power",
        "_taker_fee_bps",
        "_traded",
    )

    def __init__(
        self,
        config: SimVenueConfig,
        scheduler: Scheduler,
        sink: OrderSink,
        book: OrderBook,
    ) -> None:
        super().__init__(
            scheduler, sink, config.entry_latency_ns, config.cancel_latency_ns, config.maker_fee_bps
        )
        self._book = book
        self._model = config.fill_model
        self._post_only_reject = config.post_only_reject
        self._queue_power = config.queue_power
        self._lot = config.lot_size
        self._taker_fee_bps = config.taker_fee_bps
        # Traded quantity per (resting side, price) since the last depth update at that price:
        # QUEUE model only, and only for prices where we rest.
        self._traded: dict[tuple[Side, float], float] = {}

    def book_part_kernel(self) -> BookPartKernel | None:
        """``on_market(part)`` then ``book.apply(part, checked=True, cross_check=False)`` in C.

        ``bot._cbook.BookPart`` runs this class's queue pass (``_on_depth``) and books the part
        when the case is its plain one, and tells the engine where the touch stands; otherwise
        it does nothing and the engine calls the two in Python (``tests/test_book_part.py``).
        Only for this exact class (a subclass may change the pass) and the compiled book.
        """
        if cbook is None or type(self) is not SimVenue:
            return None
        kernel: BookPartKernel = cbook.BookPart(self._book, self, _Order, BookDelta, BUY, SELL,
                                                FillModel.QUEUE)
        return kernel

    # ---------------------------------------------------------------- activation

    def _enter(self, command: PlaceOrder, ts_ns: int) -> None:
        book = self._book
        side = command.side
        price = command.price
        # NaN (an empty opposite side) compares False: nothing to cross.
        crosses = book.best_ask <= price if side is BUY else book.best_bid >= price
        if not crosses:
            self._accept(command, ts_ns)
            self._rest(command, ts_ns, command.qty, book.qty_at(side, price))
            return
        if command.post_only and self._post_only_reject:
            self._reject(command, ts_ns, REJECT_POST_ONLY)
            return
        self._accept(command, ts_ns)
        remaining = self._take(command, ts_ns)
        if remaining > 0.0:
            self._rest(command, ts_ns, remaining, book.qty_at(side, price))

    def _take(self, command: PlaceOrder, ts_ns: int) -> float:
        """Execute a crossing order against the displayed depth; return the quantity left."""
        book = self._book
        opposite = command.side.opposite
        limit = command.price
        sign = float(command.side)
        remaining = command.qty
        for level_price, resting in book.depth(opposite, book.levels(opposite)):
            # sign * (limit - level_price) < 0: the level is beyond our limit price.
            if remaining <= 0.0 or sign * (limit - level_price) < 0.0:
                break
            qty = min(remaining, resting)
            remaining = 0.0 if qty >= remaining else remaining - qty
            self._fill(
                command.client_order_id,
                command.side,
                level_price,
                qty,
                remaining,
                self._taker_fee_bps,
                _TAKER,
                ts_ns,
            )
        return remaining

    # ---------------------------------------------------------------- market data

    def on_market(self, event: MarketEvent) -> None:
        """Match resting orders against one market event, before the book applies it.

        Args:
            event: Any market event; only trades and depth updates can fill.
        """
        if not self._orders:
            # Nothing rests: no queue to track. Stale trade counts must not leak into orders
            # placed later (their queue is read from the book at entry).
            if self._traded:
                self._traded.clear()
            return
        if isinstance(event, Trade):
            self._on_trade(event)
        elif isinstance(event, _DEPTH_EVENTS):
            self._on_depth(event)

    def _on_trade(self, trade: Trade) -> None:
        price = trade.price
        qty = trade.qty
        ts = trade.ts_local_ns
        tid = trade.trade_id
        # A BUY aggressor lifts asks: our SELL orders are the ones hit, and vice versa.
        hit = trade.aggressor.opposite
        sign = float(hit)  # sign * (order price - trade price) > 0: traded through the order
        model = self._model
        at_price = False
        used = 0.0  # trade quantity already taken by our earlier orders at this price
        for order in tuple(self._orders.values()):
            if order.side is not hit:
                continue
            through = sign * (order.price - price)
            if through > 0.0:
                self._fill_resting(order, order.remaining, ts, tid)
            elif through == 0.0:
                if model is _TOUCH:
                    self._fill_resting(order, order.remaining, ts, tid)
                elif model is _QUEUE:
                    at_price = True
                    ahead = order.queue_ahead
                    reach = qty - ahead - used
                    order.queue_ahead = ahead - qty if ahead > qty else 0.0
                    if reach > 0.0:
                        take = self._whole_lots(min(reach, order.remaining))
                        if take > 0.0:
                            used += take
                            self._fill_resting(order, take, ts, tid)
        if at_price:
            key = (hit, price)
            self._traded[key] = self._traded.get(key, 0.0) + qty

    def _on_depth(self, event: BookDelta | BookSnapshot) -> None:
        # Work is per resting order, never per level in Python: deltas of hundreds of levels
        # are the latency tail. level_qty scans in C; the market moving through an order is
        # checked against the updated book in after_book().
        traded = self._traded
        if self._model is not _QUEUE:
            traded.clear()
            return
        snapshot = isinstance(event, BookSnapshot)
        bids, asks = event.bids, event.asks
        for order in self._orders.values():
            side = order.side
            price = order.price
            after = level_qty(bids if side is BUY else asks, price)
            if after is None:
                if not snapshot:
                    continue  # the delta leaves our level as it was
                after = 0.0  # a snapshot without our level: the level is gone
            self._update_queue(order, after, traded.get((side, price), 0.0))
        if traded:
            if snapshot:
                traded.clear()
            else:
                # Only our own price levels are ever tracked: forget those the update restated.
                for key in [k for k in traded
                            if level_qty(bids if k[0] is BUY else asks, k[1]) is not None]:
                    del traded[key]

    def after_book(self, ts_ns: int) -> None:
        """Fill resting orders the updated book has moved through (opposite best crossed them).

        Called by the engine after a depth event was applied to the book, so the best prices
        are the book's own, whatever the size of the update.
        """
        if not self._orders:
            return
        best_bid, best_ask = self._book.touch()
        for order in tuple(self._orders.values()):
            if order.side is BUY:
                if best_ask <= order.price:
                    self._fill_resting(order, order.remaining, ts_ns)
            elif best_bid >= order.price:
                self._fill_resting(order, order.remaining, ts_ns)

    def _whole_lots(self, qty: float) -> float:
        """Round a fill quantity down to whole lots (the expected-value queue is fractional)."""
        lot = self._lot
        if lot <= 0.0:
            return qty
        return round(math.floor(qty / lot + 1e-9) * lot, 12)

    def _update_queue(self, order: _Order, after: float, traded: float) -> None:
        """Advance ``queue_ahead`` for a depth update that sets our level to ``after``."""
        ahead = order.queue_ahead
        if ahead <= 0.0:
            return
        # The displayed level still holds the quantity traded since its last update.
        level = self._book.qty_at(order.side, order.price) - traded
        canceled = level - after
        if canceled > 0.0:
            n = self._queue_power
            f_front = ahead**n
            f_back = (level - ahead) ** n if level > ahead else 0.0
            total = f_back + f_front
            if total > 0.0:  # both can underflow to 0 for vanishing quantities
                ahead -= canceled * f_back / total
        # The level cannot hold more ahead of us than it displays.
        order.queue_ahead = min(max(ahead, 0.0), after)


def hit_probability(intensity_a: float, intensity_k: float, delta: float, dt_s: float) -> float:
    """Return ``min(1, A·exp(-k·δ)·dt)``, the AS 2008 probability of a hit within one step.

    Computed in logs so that a very negative δ (an order far through the mid) gives 1 instead of
    overflowing.

    Args:
        intensity_a: A in 1/second.
        intensity_k: k in 1/price.
        delta: Distance of the order from the mid, positive away from the mid (price).
        dt_s: Step length in seconds.
    """
    rate_dt = intensity_a * dt_s
    if rate_dt <= 0.0:
        return 0.0
    log_p = math.log(rate_dt) - intensity_k * delta
    return 1.0 if log_p >= 0.0 else math.exp(log_p)


class PoissonFillVenue(_VenueCore):
    """The venue of the AS 2008 world: each resting order is hit with ``A·exp(-k·δ)·dt``.

    On each ``BookSnapshot`` (one per simulation step), every resting order is hit with
    probability ``min(1, A·exp(-k·δ)·dt)``, where dt is the time since the previous snapshot
    (or since the order started resting, if that is later: entry latency) and δ is measured
    from the previous snapshot's mid, the one the quotes were set against (``price - mid`` for
    asks, ``mid - price`` for bids; δ may be negative). A hit fills the whole order at its own
    price as maker. Draws are made in a fixed order, asks then bids ("ask hit, independently bid
    hit"), each side in time priority, exactly one ``rng.random()`` per resting order per step,
    so a seed reproduces the run. The first snapshot only records the mid. Other event types
    are ignored.

    Args:
        config: Intensities, latencies and fee.
        scheduler: Clock used for entry and cancel latency.
        sink: Receives every order event, synchronously.
        rng: The source of the hit draws.
    """

    __slots__ = ("_intensity_a", "_intensity_k", "_prev_mid", "_prev_ts_ns", "_rng")

    def __init__(
        self,
        config: PoissonVenueConfig,
        scheduler: Scheduler,
        sink: OrderSink,
        rng: random.Random,
    ) -> None:
        super().__init__(
            scheduler, sink, config.entry_latency_ns, config.cancel_latency_ns, config.maker_fee_bps
        )
        self._intensity_a = config.intensity_a
        self._intensity_k = config.intensity_k
        self._rng = rng
        self._prev_mid = math.nan
        self._prev_ts_ns: int | None = None

    def after_book(self, ts_ns: int) -> None:
        """Do nothing: in the AS world only the Poisson draws fill orders."""

    def on_market(self, event: MarketEvent) -> None:
        """Draw the hits of the step that ends with this snapshot, then record its mid.

        Args:
            event: A market event; only ``BookSnapshot`` events with both sides count.
        """
        if not isinstance(event, BookSnapshot) or not event.bids or not event.asks:
            return
        ts = event.ts_local_ns
        prev_mid = self._prev_mid
        prev_ts = self._prev_ts_ns
        self._prev_mid = (event.bids[0][0] + event.asks[0][0]) * 0.5
        self._prev_ts_ns = ts
        if prev_ts is None or not self._orders:
            return
        a = self._intensity_a
        k = self._intensity_k
        draw = self._rng.random
        orders = tuple(self._orders.values())
        for side in (SELL, BUY):
            # sign * (price - mid) is the distance from the mid, positive away from it.
            sign = -float(side)
            for order in orders:
                if order.side is not side:
                    continue
                # Exposed only since it rested: an order activated by entry latency inside
                # the step gets the rest of the step (all of it when placed at the last step).
                dt_s = (ts - max(prev_ts, order.accepted_ns)) / 1e9
                p = hit_probability(a, k, sign * (order.price - prev_mid), dt_s)
                if draw() < p:
                    self._fill_resting(order, order.remaining, ts)
