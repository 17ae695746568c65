"""The order manager: desired quotes against live orders, and the one rounding helper.

Every price and quantity that leaves the bot goes through ``snap_price`` / ``snap_qty``: bids
are rounded down and asks up to the venue tick, quantities down to the lot. The results are
"clean" floats (``round(n * tick, decimals)``, computed by one exact division where that is the
same double: ``_grid``), equal to what ``float()`` gives for the venue's decimal string, so a
snapped price compares equal to the same price parsed from the feed.

``OrderManager.diff`` turns the approved ``QuoteSet`` into the fewest ``CancelOrder`` /
``PlaceOrder`` commands. The requote rule is explicit: a live order is kept while it sits at
the desired level within ``requote_ticks`` of the desired price, has the desired size, and is
not older than ``max_order_age_ns``; anything else is cancelled and replaced.

Orders stay "live" from the moment we send them until the venue says they are gone (rejected,
fully filled or cancelled). In particular an order we asked to cancel still counts as exposure:
cancels are asynchronous and the order may fill before the venue processes the cancel.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from enum import Enum
from functools import lru_cache
from types import MappingProxyType
from typing import Final

from bot.errors import ConfigError
from bot.events import (
    BUY,
    CancelOrder,
    Command,
    OrderAccepted,
    OrderCanceled,
    OrderCancelRejected,
    OrderEvent,
    OrderFilled,
    OrderRejected,
    PlaceOrder,
    Quote,
    QuoteSet,
    Side,
)
from bot.native import cbook

_EPS_STEPS = 1e-9
"""Tolerance, in ticks or lots, that absorbs float noise (100.30000000000001 is 1003 ticks)."""

_MAX_DECIMALS = 12

_INF = float("inf")


# --------------------------------------------------------------------------------------------
# Rounding
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _decimals(step: float) -> int:
    """Return the number of decimals needed to write ``step`` (0.01 -> 2, 0.25 -> 2, 5 -> 0)."""
    for decimals in range(_MAX_DECIMALS + 1):
        if abs(round(step, decimals) - step) <= step * _EPS_STEPS:
            return decimals
    return _MAX_DECIMALS


def _floor_to(value: float, step: float, decimals: int) -> float:
    # The rounding form: the reference _floor_on / _ceil_on are tested against.
    return round(math.floor(value / step + _EPS_STEPS) * step, decimals)


def _ceil_to(value: float, step: float, decimals: int) -> float:
    return round(math.ceil(value / step - _EPS_STEPS) * step, decimals)


_EXACT_UNITS = 2**50
"""Bound on ``n * m`` (below) for the one-division form of ``_floor_on`` / ``_ceil_on``."""

_Grid = tuple[float, int, int, float, int]
"""A step prepared for snapping: ``(step, decimals, m, 10.0**decimals, limit)`` (``_grid``)."""


@lru_cache(maxsize=64)
def _grid(step: float) -> _Grid:
    """Prepare ``step`` for ``_floor_on`` / ``_ceil_on``.

    When ``step`` is the double nearest ``m / 10**decimals`` for an integer ``m``, ``n`` steps
    rounded to ``decimals`` (what ``_floor_to`` returns) is the double nearest the decimal
    ``n * m / 10**decimals``, and so is ``(n * m) / 10.0**decimals``: both operands are exact
    doubles and IEEE division rounds correctly. This holds while ``|n * m| < 2**50``: then
    ``n * step`` is within ``2**-52`` relative of that decimal, well inside the half unit of
    the last decimal that ``round`` resolves. ``limit`` is the bound on ``n`` (0 when no such
    ``m`` exists: always round).
    """
    decimals = _decimals(step)
    scale = 10.0**decimals
    m = round(step * scale)
    if decimals > 22 or m <= 0 or m / scale != step:
        return step, decimals, 0, scale, 0
    return step, decimals, m, scale, _EXACT_UNITS // m


def _floor_on(value: float, grid: _Grid) -> float:
    """``_floor_to(value, step, decimals)`` with one division instead of ``round``."""
    step, decimals, m, scale, limit = grid
    n = math.floor(value / step + _EPS_STEPS)
    if -limit < n < limit:
        return n * m / scale
    return round(n * step, decimals)


def _ceil_on(value: float, grid: _Grid) -> float:
    """``_ceil_to(value, step, decimals)`` with one division instead of ``round``."""
    step, decimals, m, scale, limit = grid
    n = math.ceil(value / step - _EPS_STEPS)
    if -limit < n < limit:
        return n * m / scale
    return round(n * step, decimals)


def snap_price(price: float, tick: float, side: Side) -> float:
    """Round a price to the tick: bids down, asks up, so a snapped quote is never more aggressive.

    A price within 1e-9 ticks of a multiple of the tick counts as that multiple, so float noise
    (100.30000000000001 with tick 0.1) never costs a whole tick.

    Args:
        price: The raw price.
        tick: The venue's price increment (> 0).
        side: BUY rounds down, SELL rounds up.

    Returns:
        The snapped price as the float nearest to its decimal value.

    Raises:
        ValueError: ``price`` is NaN.
        OverflowError: ``price`` is infinite.
    """
    if side is BUY:
        return _floor_on(price, _grid(tick))
    return _ceil_on(price, _grid(tick))


def snap_qty(qty: float, lot: float) -> float:
    """Round a quantity down to the lot (within 1e-9 lots of float noise).

    Args:
        qty: The raw quantity.
        lot: The venue's quantity increment (> 0).

    Returns:
        The snapped quantity as the float nearest to its decimal value.

    Raises:
        ValueError: ``qty`` is NaN.
        OverflowError: ``qty`` is infinite.
    """
    return _floor_on(qty, _grid(lot))


# --------------------------------------------------------------------------------------------
# Orders and configuration
# --------------------------------------------------------------------------------------------


class OrderState(Enum):
    """Lifecycle of a live order as far as we know it."""

    PENDING_NEW = "PENDING_NEW"
    """Sent, not yet acknowledged by the venue."""
    WORKING = "WORKING"
    """Acknowledged and resting."""
    PENDING_CANCEL = "PENDING_CANCEL"
    """Cancel sent, not yet confirmed; the order may still fill."""


# Enum members as module constants: a read through the class costs EnumType's __getattr__
# hook in Python 3.11 (see bot.events.BUY).
_PENDING_NEW: Final = OrderState.PENDING_NEW
_WORKING: Final = OrderState.WORKING
_PENDING_CANCEL: Final = OrderState.PENDING_CANCEL


@dataclass(slots=True)
class ManagedOrder:
    """One of our live orders.

    Attributes:
        client_order_id: Our id for the order.
        side: BUY or SELL.
        price: Limit price (snapped).
        qty: Original quantity (snapped).
        filled_qty: Quantity filled so far.
        state: Where the order is in its lifecycle.
        level: The ladder level of the quote it was placed for (0 = touch-most).
        sent_ts_ns: When the place command was created (event time).
    """

    client_order_id: str
    side: Side
    price: float
    qty: float
    filled_qty: float
    state: OrderState
    level: int
    sent_ts_ns: int

    @property
    def remaining(self) -> float:
        """Quantity that can still fill."""
        return self.qty - self.filled_qty


@dataclass(frozen=True, slots=True)
class OrderManagerConfig:
    """How the order manager rounds, filters and requotes.

    Attributes:
        symbol: The instrument the commands are for.
        tick_size: Price increment (> 0).
        lot_size: Quantity increment (> 0).
        min_qty: Smallest order quantity the venue accepts (0 = no minimum).
        min_notional: Smallest price * qty the venue accepts (0 = no minimum).
        requote_ticks: Replace a live order only when the desired price differs by more than
            this many ticks (0 = replace on any change).
        max_order_age_ns: Replace orders older than this (0 = no limit).
        post_only: Clamp quotes so they cannot cross the opposite touch, and send post-only.
        client_id_prefix: Prefix of client order ids (``f"{prefix}{n}"``).
    """

    symbol: str
    tick_size: float
    lot_size: float
    min_qty: float = 0.0
    min_notional: float = 0.0
    requote_ticks: float = 0.0
    max_order_age_ns: int = 0
    post_only: bool = True
    client_id_prefix: str = "mm-"

    def __post_init__(self) -> None:
        """Reject values that would make rounding or requoting meaningless.

        Raises:
            ConfigError: A field is out of range; ``field`` names it.
        """
        for name in ("tick_size", "lot_size"):
            value = getattr(self, name)
            if not 0.0 < value < _INF:
                raise ConfigError(name, f"must be finite and > 0, got {value!r}")
        for name in ("min_qty", "min_notional", "requote_ticks", "max_order_age_ns"):
            value = getattr(self, name)
            if not 0.0 <= value < _INF:
                raise ConfigError(name, f"must be finite and >= 0, got {value!r}")


# --------------------------------------------------------------------------------------------
# Order manager
# --------------------------------------------------------------------------------------------

_Target = tuple[Side, int, float, float]
"""A desired order after snapping and filtering: ``(side, level, price, qty)``."""

_DiffKernel = Callable[[dict[str, ManagedOrder], tuple[Quote, ...], tuple[Quote, ...], float,
                        float, int, int], "tuple[list[Command], int] | None"]

_KERNEL_FIELDS = {
    ManagedOrder: ("client_order_id", "side", "price", "qty", "filled_qty", "state", "level",
                   "sent_ts_ns"),
    PlaceOrder: ("ts_ns", "client_order_id", "symbol", "side", "price", "qty", "post_only",
                 "level"),
    CancelOrder: ("ts_ns", "client_order_id", "symbol"),
    Quote: ("side", "price", "qty", "level"),
}
"""The fields ``bot._cbook.OrderDiff`` reads and fills, by name; it is used only while the
classes have exactly these."""


def _diff_kernel(config: OrderManagerConfig, price_grid: _Grid, qty_grid: _Grid,
                 price_tolerance: float, qty_tolerance: float, min_qty: float,
                 min_notional: float) -> _DiffKernel | None:
    """Return the compiled ``OrderManager.diff`` for ``config``, or None (no C extension)."""
    if cbook is None or not isinstance(config.max_order_age_ns, int) or any(
        tuple(f.name for f in fields(cls)) != names for cls, names in _KERNEL_FIELDS.items()
    ):
        return None
    kernel: _DiffKernel = cbook.OrderDiff(
        order_cls=ManagedOrder, place_cls=PlaceOrder, cancel_cls=CancelOrder, quote_cls=Quote,
        pending_new=_PENDING_NEW, pending_cancel=_PENDING_CANCEL,
        buy=BUY, symbol=config.symbol, prefix=config.client_id_prefix,
        post_only=config.post_only, tick=config.tick_size, price_grid=price_grid,
        qty_grid=qty_grid, price_tol=price_tolerance, qty_tol=qty_tolerance, min_qty=min_qty,
        min_notional=min_notional, max_age_ns=min(config.max_order_age_ns, 2**63 - 1))
    return kernel


class OrderManager:
    """Track our live orders and diff desired quotes against them.

    Attributes:
        config: The manager's configuration.
        placed: Number of ``PlaceOrder`` commands issued.
        cancels_sent: Number of ``CancelOrder`` commands issued.
    """

    __slots__ = (
        "_kernel",
        "_min_notional",
        "_min_qty",
        "_next_id",
        "_orders",
        "_orders_view",
        "_price_grid",
        "_price_tolerance",
        "_qty_grid",
        "_qty_tolerance",
        "cancels_sent",
        "config",
        "placed",
    )

    def __init__(self, config: OrderManagerConfig) -> None:
        """Create a manager with no live orders; client ids count from 1."""
        self.config = config
        self._orders: dict[str, ManagedOrder] = {}
        self._orders_view: Mapping[str, ManagedOrder] = MappingProxyType(self._orders)
        self._next_id = 1
        self._price_grid = _grid(config.tick_size)
        self._qty_grid = _grid(config.lot_size)
        self._price_tolerance = (config.requote_ticks + _EPS_STEPS) * config.tick_size
        self._qty_tolerance = config.lot_size * _EPS_STEPS
        # Slightly below the venue minimums, so a minimum met in decimal is not missed when the
        # float product lands just under it (0.7 * 3 is 2.0999999999999996).
        self._min_qty = config.min_qty * (1.0 - _EPS_STEPS)
        self._min_notional = config.min_notional * (1.0 - _EPS_STEPS)
        self.placed = 0
        self.cancels_sent = 0
        self._kernel = _diff_kernel(config, self._price_grid, self._qty_grid,
                                    self._price_tolerance, self._qty_tolerance, self._min_qty,
                                    self._min_notional)

    # ----------------------------------------------------------------------------------------
    # Queries
    # ----------------------------------------------------------------------------------------

    @property
    def orders(self) -> Mapping[str, ManagedOrder]:
        """Read-only view of the live orders by client order id, in placement order."""
        return self._orders_view

    @property
    def kernel(self) -> object | None:
        """The compiled ``diff`` (``bot._cbook.OrderDiff``), or None; the engine fuses it into
        its compiled requote, which keeps ``_orders``, ``_next_id``, ``placed`` and
        ``cancels_sent`` as ``diff`` does."""
        return self._kernel

    def order(self, client_order_id: str) -> ManagedOrder | None:
        """Return the live order with this id, or None."""
        return self._orders.get(client_order_id)

    @property
    def working_count(self) -> int:
        """Number of live orders the venue has acknowledged and we have not asked to cancel."""
        return sum(1 for order in self._orders.values() if order.state is _WORKING)

    def live_qty(self, side: Side) -> float:
        """Return the remaining quantity of every live order on ``side``, in flight or not.

        Pending-new and pending-cancel orders count: either may still fill.
        """
        buys, sells = self.live_qtys()
        return buys if side is BUY else sells

    def live_qtys(self) -> tuple[float, float]:
        """Return ``(live_qty(BUY), live_qty(SELL))`` in one pass over the orders."""
        buys = sells = 0.0
        for order in self._orders.values():
            # order.remaining, inlined: this runs on every requote
            if order.side is BUY:
                buys += order.qty - order.filled_qty
            else:
                sells += order.qty - order.filled_qty
        return buys, sells

    # ----------------------------------------------------------------------------------------
    # Commands
    # ----------------------------------------------------------------------------------------

    def diff(
        self, desired: QuoteSet, best_bid: float, best_ask: float, ts_ns: int
    ) -> list[Command]:
        """Return the fewest commands that turn the live orders into ``desired``.

        Each desired quote is snapped (price by side, qty down to the lot), dropped when it is
        below the lot, ``min_qty`` or ``min_notional``, and, for post-only, clamped to one tick
        inside the opposite touch. Live orders (not pending cancel) are then matched to desired
        quotes of the same side and level; a match is kept when its price is within
        ``requote_ticks`` of the desired price, its original or remaining qty equals the desired
        qty, and it is not older than ``max_order_age_ns``. Everything else is cancelled and
        the unmatched desired quotes are placed.

        Args:
            desired: The approved quotes.
            best_bid: Current best bid (nan when unknown): the floor for post-only asks.
            best_ask: Current best ask (nan when unknown): the cap for post-only bids.
            ts_ns: Event time; stamped on the commands and used for order age.

        Returns:
            All ``CancelOrder`` commands first, then the ``PlaceOrder`` commands (bids, then
            asks, in quote order), so our own sequencing never doubles the exposure.
        """
        kernel = self._kernel
        if kernel is not None:
            # The compiled diff (bot/_cdecide.c); None when an input is not its plain case.
            done = kernel(self._orders, desired.bids, desired.asks, best_bid, best_ask, ts_ns,
                          self._next_id)
            if done is not None:
                commands, placed = done
                self._next_id += placed
                self.placed += placed
                self.cancels_sent += len(commands) - placed
                return commands
        return self._py_diff(desired, best_bid, best_ask, ts_ns)

    def _py_diff(
        self, desired: QuoteSet, best_bid: float, best_ask: float, ts_ns: int
    ) -> list[Command]:
        """``diff`` in Python: the reference of the compiled kernel, and its fallback."""
        config = self.config
        tick = config.tick_size
        grid = self._price_grid
        bid_cap = _INF
        ask_floor = -_INF
        if config.post_only:
            if math.isfinite(best_ask):
                bid_cap = _floor_on(best_ask - tick, grid)
            if math.isfinite(best_bid):
                ask_floor = _ceil_on(best_bid + tick, grid)
        targets: list[_Target] = []
        self._add_targets(targets, desired, bid_cap, ask_floor)
        claimed = [False] * len(targets)

        commands: list[Command] = []
        for order in self._orders.values():
            if order.state is _PENDING_CANCEL:
                continue
            index = self._match(order, targets, claimed, ts_ns)
            if index >= 0:
                claimed[index] = True
            else:
                commands.append(self._cancel(order, ts_ns))
        for index, (side, level, price, qty) in enumerate(targets):
            if not claimed[index]:
                commands.append(self._place(side, level, price, qty, ts_ns))
        return commands

    def adopt(self, client_order_id: str, side: Side, price: float, qty: float,
              filled_qty: float, ts_ns: int) -> ManagedOrder:
        """Take over an order found resting at the venue (a restart that keeps its quotes).

        It becomes WORKING at the next free level of its side (best price first), so the next
        diff keeps, moves or cancels it like any order of ours.
        """
        level = sum(1 for order in self._orders.values() if order.side is side)
        order = ManagedOrder(client_order_id, side, price, qty, filled_qty, _WORKING,
                             level, ts_ns)
        self._orders[client_order_id] = order
        return order

    def cancel_all(self, ts_ns: int) -> list[CancelOrder]:
        """Return a cancel for every live order that is not already pending cancel."""
        return [
            self._cancel(order, ts_ns)
            for order in self._orders.values()
            if order.state is not _PENDING_CANCEL
        ]

    def _add_targets(
        self, targets: list[_Target], desired: QuoteSet, bid_cap: float, ask_floor: float
    ) -> None:
        """Append the snapped, clamped and filtered desired quotes to ``targets``."""
        price_grid = self._price_grid
        qty_grid = self._qty_grid
        min_qty = self._min_qty
        min_notional = self._min_notional
        for quotes in (desired.bids, desired.asks):
            for quote in quotes:
                price = quote.price
                qty = quote.qty
                # NaN, inf or a non-positive value cannot be snapped or placed.
                if not (0.0 < price < _INF and 0.0 < qty < _INF):
                    continue
                side = quote.side
                if side is BUY:
                    price = min(_floor_on(price, price_grid), bid_cap)
                else:
                    price = max(_ceil_on(price, price_grid), ask_floor)
                qty = _floor_on(qty, qty_grid)
                if price <= 0.0 or qty <= 0.0 or qty < min_qty or price * qty < min_notional:
                    continue
                targets.append((side, quote.level, price, qty))

    def _match(
        self, order: ManagedOrder, targets: list[_Target], claimed: list[bool], ts_ns: int
    ) -> int:
        """Return the index of the target ``order`` may stay as, or -1 to replace it."""
        for index, (side, level, price, qty) in enumerate(targets):
            if claimed[index] or side is not order.side or level != order.level:
                continue
            price_ok = abs(order.price - price) <= self._price_tolerance
            # A partial fill alone is no reason to requote: match the original size as well.
            qty_tolerance = self._qty_tolerance
            qty_ok = (
                abs(order.qty - qty) <= qty_tolerance or abs(order.remaining - qty) <= qty_tolerance
            )
            max_age = self.config.max_order_age_ns
            fresh = max_age == 0 or ts_ns - order.sent_ts_ns <= max_age
            return index if price_ok and qty_ok and fresh else -1
        return -1

    def _place(self, side: Side, level: int, price: float, qty: float, ts_ns: int) -> PlaceOrder:
        config = self.config
        client_order_id = f"{config.client_id_prefix}{self._next_id}"
        self._next_id += 1
        self._orders[client_order_id] = ManagedOrder(
            client_order_id, side, price, qty, 0.0, _PENDING_NEW, level, ts_ns
        )
        self.placed += 1
        return PlaceOrder(
            ts_ns, client_order_id, config.symbol, side, price, qty, config.post_only, level
        )

    def _cancel(self, order: ManagedOrder, ts_ns: int) -> CancelOrder:
        # The order stays live until the venue confirms: a cancel is async and may lose a race
        # with a fill, so its quantity must keep counting as exposure.
        order.state = _PENDING_CANCEL
        self.cancels_sent += 1
        return CancelOrder(ts_ns, order.client_order_id, self.config.symbol)

    # ----------------------------------------------------------------------------------------
    # Venue feedback
    # ----------------------------------------------------------------------------------------

    def on_event(self, event: OrderEvent) -> ManagedOrder | None:
        """Update the order an execution event refers to.

        Accepted orders become WORKING (a pending cancel stays pending). Rejected, cancelled
        and fully filled orders are removed. A rejected cancel puts the order back to WORKING:
        the order most likely filled, and that fill will remove it.

        Args:
            event: An order event from the execution venue.

        Returns:
            The order the event touched (already removed when the event ended it), or None
            when the id is not one of our live orders.
        """
        order = self._orders.get(event.client_order_id)
        if order is None:
            return None
        match event:
            case OrderAccepted():
                if order.state is _PENDING_NEW:
                    order.state = _WORKING
            case OrderFilled():
                order.filled_qty += event.qty
                # A fill proves the venue has the order, even if its ack has not arrived yet.
                if order.state is _PENDING_NEW:
                    order.state = _WORKING
                tolerance = self._qty_tolerance
                # The venue is the authority on whether anything still rests, so its
                # remaining_qty ends the order too (e.g. when it reduced the size itself).
                if order.remaining <= tolerance or event.remaining_qty <= tolerance:
                    del self._orders[order.client_order_id]
            case OrderCancelRejected():
                if order.state is _PENDING_CANCEL:
                    order.state = _WORKING
            case OrderRejected() | OrderCanceled():
                del self._orders[order.client_order_id]
        return order
