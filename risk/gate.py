"""The pre-trade risk gate: inventory cap, spread floor, kill-switch and the other limits.

The gate sits twice on the path from strategy to venue:

* Stage 1, :meth:`RiskGate.check`, shapes the strategy's desired quotes before the order
  manager sees them: it drops what may not rest (halted, bad book, bad quote, inventory side
  closed, outside the price band), moves prices that are too tight (spread floor, touch) and
  trims quantities (order size, notional, inventory cap).
* Stage 2, :meth:`RiskGate.admit`, is the hard last check on the commands the order manager
  produced: cancels always pass; a place must fit the inventory cap counting every live order
  (in flight, working, pending cancel) and the order-rate budget.

States: ACTIVE quotes both sides; REDUCING (|position| at or above ``max_inventory``) quotes
only the side that brings the position back; HALTED (drawdown, loss limit or a manual halt)
approves nothing and asks for every order to be cancelled until :meth:`RiskGate.reset`.

Denials: every quote that is dropped, moved or trimmed yields one :class:`RiskDenied` per rule
that touched it, carrying the quote's price and quantity as they were before that rule and a
detail saying what was done; an untouched quote yields none. While HALTED, ``check`` reports
no denials: the halt itself was reported once as a :class:`RiskStateChanged`, and repeating it
on every book event would only flood the log.

The gate is pure: no I/O, no clock, no logging. Time arrives as ``ts_ns`` arguments.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from bot.events import (
    BUY,
    NS_PER_SECOND,
    SELL,
    CancelOrder,
    Command,
    DenyReason,
    HaltReason,
    PlaceOrder,
    Quote,
    QuoteSet,
    RiskDecision,
    RiskDenied,
    RiskState,
    RiskStateChanged,
    Side,
    cbook,
    fast_init,
    maker,
)

_BPS = 1e4
_INF: Final = math.inf
# Enum members as module constants: a read through the class costs EnumType's __getattr__
# hook in Python 3.11 (see bot.events.BUY).
_ACTIVE: Final = RiskState.ACTIVE
_REDUCING: Final = RiskState.REDUCING
_HALTED: Final = RiskState.HALTED

_make_decision = maker(RiskDecision)


def _require(ok: bool, name: str, rule: str, value: object) -> None:
    if not ok:
        raise ValueError(f"{name}: {rule}, got {value!r}")


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Limits enforced by :class:`RiskGate`. Invalid values raise ``ValueError`` naming the field.

    Attributes:
        max_inventory: Hard cap on |position| in base units, counting working and in-flight
            orders. Positive and finite.
        min_half_spread_ticks: Minimum distance of a quote from the mid, in ticks. 0 disables.
        min_half_spread_bps: Minimum distance of a quote from the mid, in basis points of the
            mid. 0 disables. The floor is the larger of the two.
        enforce_touch: Never quote at or through the opposite touch: a bid at or above the best
            ask is pulled back to one tick below it, an ask likewise above the best bid.
        max_drawdown: Halt when the mark-to-market PnL falls this far below its peak, in quote
            currency. ``math.inf`` disables.
        max_loss: Halt when the PnL is at or below ``-max_loss``, in quote currency.
            ``math.inf`` disables.
        max_order_qty: Largest quantity of one order, in base units. ``math.inf`` disables.
        max_order_notional: Largest price times quantity of one order, in quote currency.
            ``math.inf`` disables.
        price_band_bps: Drop quotes further than this from the mid, in basis points of the mid.
            ``math.inf`` disables.
        max_book_age_ns: Pull all quotes when the last book update is older than this. 0
            disables.
        max_orders_per_s: Most places admitted in any one-second window (a whole number).
            ``math.inf`` disables.
    """

    max_inventory: float
    min_half_spread_ticks: float = 0.0
    min_half_spread_bps: float = 0.0
    enforce_touch: bool = True
    max_drawdown: float = math.inf
    max_loss: float = math.inf
    max_order_qty: float = math.inf
    max_order_notional: float = math.inf
    price_band_bps: float = math.inf
    max_book_age_ns: int = 0
    max_orders_per_s: float = math.inf

    def __post_init__(self) -> None:
        """Reject values that are out of range, NaN, or contradict each other."""
        _require(
            0.0 < self.max_inventory < math.inf,
            "max_inventory",
            "must be positive and finite",
            self.max_inventory,
        )
        for name in ("min_half_spread_ticks", "min_half_spread_bps"):
            value = getattr(self, name)
            _require(0.0 <= value < math.inf, name, "must be >= 0 and finite", value)
        for name in (
            "max_drawdown",
            "max_loss",
            "max_order_qty",
            "max_order_notional",
            "price_band_bps",
        ):
            value = getattr(self, name)
            _require(value > 0.0, name, "must be positive (math.inf disables)", value)
        _require(
            self.max_book_age_ns >= 0,
            "max_book_age_ns",
            "must be >= 0 (0 disables)",
            self.max_book_age_ns,
        )
        rate = self.max_orders_per_s
        _require(
            rate == math.inf or (1.0 <= rate < math.inf and float(rate).is_integer()),
            "max_orders_per_s",
            "must be a whole number >= 1 (math.inf disables)",
            rate,
        )
        # A floor at or beyond the band would silently drop every quote.
        _require(
            self.min_half_spread_bps < self.price_band_bps,
            "min_half_spread_bps",
            f"must be below price_band_bps ({self.price_band_bps!r})",
            self.min_half_spread_bps,
        )


@fast_init
@dataclass(frozen=True, slots=True)
class RiskContext:
    """What the gate needs to know about the market and our orders; built by the engine.

    Attributes:
        ts_ns: Event time of this decision, in nanoseconds.
        mid: Mid price of the book, in quote currency.
        best_bid: Best bid price.
        best_ask: Best ask price.
        tick_size: Venue price increment.
        book_valid: False while the book is out of sync (gap, resync pending, corrupt data).
        last_book_ts_ns: Event time of the last book update, in nanoseconds.
        position: Filled inventory in base units, positive when long.
        live_buy_qty: Remaining quantity of ALL our live buy orders: in flight, working and
            pending cancel; each of them can still fill.
        live_sell_qty: The same for sell orders.
    """

    ts_ns: int
    mid: float
    best_bid: float
    best_ask: float
    tick_size: float
    book_valid: bool
    last_book_ts_ns: int
    position: float
    live_buy_qty: float
    live_sell_qty: float


class _Kernel(Protocol):
    """The compiled plain cases of ``check`` and ``admit`` (``bot._cbook.GateCheck``)."""

    def __call__(self, bids: tuple[Quote, ...], asks: tuple[Quote, ...], ctx: RiskContext,
                 reducing: bool) -> bool: ...

    def admits(self, commands: Sequence[Command], ctx: RiskContext, halted: bool) -> bool: ...


class RiskGate:
    """The risk gate: a small state machine (ACTIVE / REDUCING / HALTED) plus stateless rules.

    Args:
        limits: The limits to enforce.
    """

    __slots__ = ("_admit_kernel", "_halt_reason", "_kernel", "_limits", "_peak_pnl",
                 "_recent_places_ns", "_state")

    def __init__(self, limits: RiskLimits) -> None:
        self._limits = limits
        # The compiled tests that a check or an admit has nothing to do (bot/_cdecide.c).
        self._kernel: _Kernel | None = None
        if cbook is not None and type(limits.max_book_age_ns) is int:
            self._kernel = cbook.GateCheck(
                ctx_cls=RiskContext, quote_cls=Quote, place_cls=PlaceOrder,
                cancel_cls=CancelOrder, buy=BUY, sell=SELL,
                max_inventory=limits.max_inventory,
                min_half_spread_ticks=limits.min_half_spread_ticks,
                min_half_spread_bps=limits.min_half_spread_bps,
                enforce_touch=limits.enforce_touch, price_band_bps=limits.price_band_bps,
                max_order_qty=limits.max_order_qty,
                max_order_notional=limits.max_order_notional,
                max_book_age_ns=min(limits.max_book_age_ns, 2**63 - 1))
        # Admission has a plain case only without an order-rate limit (no window to keep).
        self._admit_kernel = self._kernel if limits.max_orders_per_s == math.inf else None
        self._state = _ACTIVE
        self._peak_pnl: float | None = None
        self._halt_reason: HaltReason | None = None
        # Event times of the places admitted within the last second, oldest first.
        self._recent_places_ns: deque[int] = deque()

    @property
    def state(self) -> RiskState:
        """Return the current state."""
        return self._state

    @property
    def limits(self) -> RiskLimits:
        """Return the limits enforced."""
        return self._limits

    @property
    def kernel(self) -> object | None:
        """The compiled plain cases of ``check`` and ``admit`` (``bot._cbook.GateCheck``), or
        None; the engine fuses it into its compiled requote, which reads the state from the
        ``_state`` slot."""
        return self._kernel

    @property
    def admit_compiled(self) -> bool:
        """Whether ``admit`` has a compiled plain case (none with an order-rate limit)."""
        return self._admit_kernel is not None

    @property
    def peak_pnl(self) -> float | None:
        """Return the highest PnL seen since start or the last reset; None before the first."""
        return self._peak_pnl

    @property
    def halt_reason(self) -> HaltReason | None:
        """Return why the gate is HALTED, or None when it is not."""
        return self._halt_reason

    # ----------------------------------------------------------------------------------------
    # Stage 1: desired quotes
    # ----------------------------------------------------------------------------------------

    def check(self, desired: QuoteSet, ctx: RiskContext) -> RiskDecision:
        """Shape the strategy's desired quotes into the quotes allowed to rest.

        Rules, in order: HALTED approves nothing (``cancel_all=True``, no denials); an invalid
        or stale book, or an unusable context (non-finite or non-positive mid, touch or tick,
        non-finite position) approves nothing; then each quote is checked for sanity, moved
        to the spread floor and off the opposite touch, dropped outside the price band, and
        trimmed to the order size and notional limits; finally each side is trimmed to the
        inventory cap, innermost levels first: ``position + sum(bids) <= max_inventory`` and
        ``-position + sum(asks) <= max_inventory``. A side whose exposure is already at the
        cap is closed, which is what REDUCING means.

        Args:
            desired: The strategy's quotes, each ladder ordered from the touch outwards.
            ctx: The market and position at this event.

        Returns:
            The approved quotes (keeping the desired set's ``reservation_price`` and
            ``half_spread``), the state after the check, the denials and state changes.
        """
        state = self._state
        if state is _HALTED:
            return RiskDecision(_empty_like(desired), _HALTED, cancel_all=True)
        kernel = self._kernel
        if (kernel is not None and type(desired) is QuoteSet
                and kernel(desired.bids, desired.asks, ctx, state is _REDUCING)):
            # Nothing to drop, move or trim, nothing to deny and no change of state: the
            # rules below would approve the desired quotes as they are.
            return _make_decision(desired, state, (), (), False)
        changes = self._update_inventory_state(ctx)
        denials: list[RiskDenied] = []
        problem = self._market_problem(ctx)
        if problem is not None:
            reason, detail = problem
            for quote in (*desired.bids, *desired.asks):
                denials.append(_deny(ctx, quote, reason, detail))
            return RiskDecision(_empty_like(desired), self._state, tuple(denials), changes)
        limits = self._limits
        floor = max(
            limits.min_half_spread_ticks * ctx.tick_size,
            ctx.mid * limits.min_half_spread_bps / _BPS,
        )
        bids = self._approve_side(desired.bids, BUY, ctx, floor, denials)
        asks = self._approve_side(desired.asks, SELL, ctx, floor, denials)
        approved = QuoteSet(bids, asks, desired.reservation_price, desired.half_spread)
        return RiskDecision(approved, self._state, tuple(denials), changes)

    def _update_inventory_state(self, ctx: RiskContext) -> tuple[RiskStateChanged, ...]:
        position = ctx.position
        if not math.isfinite(position):
            # Unknown position: keep the state; _market_problem pulls every quote.
            return ()
        cap = self._limits.max_inventory
        at_cap = abs(position) >= cap
        new = _REDUCING if at_cap else _ACTIVE
        if new is self._state:
            return ()
        old, self._state = self._state, new
        if at_cap:
            keep = "asks" if position > 0 else "bids"
            reason = f"|position| {abs(position)} >= max_inventory {cap}: quoting {keep} only"
        else:
            reason = f"|position| {abs(position)} < max_inventory {cap}: quoting both sides"
        return (RiskStateChanged(ctx.ts_ns, old, new, reason),)

    def _market_problem(self, ctx: RiskContext) -> tuple[DenyReason, str] | None:
        if not ctx.book_valid:
            return DenyReason.INVALID_BOOK, "book is invalid"
        max_age = self._limits.max_book_age_ns
        age = ctx.ts_ns - ctx.last_book_ts_ns
        if max_age and age > max_age:
            return DenyReason.STALE_BOOK, f"book is {age} ns old > max_book_age_ns {max_age}"
        # Chained comparisons are False for NaN and inf, so one test covers both.
        if (
            0.0 < ctx.mid < math.inf
            and 0.0 < ctx.best_bid < math.inf
            and 0.0 < ctx.best_ask < math.inf
            and 0.0 < ctx.tick_size < math.inf
            and -math.inf < ctx.position < math.inf
        ):
            return None
        detail = (
            f"unusable context: mid={ctx.mid} best_bid={ctx.best_bid} best_ask={ctx.best_ask}"
            f" tick_size={ctx.tick_size} position={ctx.position}"
        )
        return DenyReason.INVALID_QUOTE, detail

    def _approve_side(
        self,
        quotes: tuple[Quote, ...],
        side: Side,
        ctx: RiskContext,
        floor: float,
        denials: list[RiskDenied],
    ) -> tuple[Quote, ...]:
        if not quotes:
            return ()
        cap = self._limits.max_inventory
        # Exposure in the direction this side moves the position: a fill of bids adds to a
        # long, a fill of asks adds to a short.
        exposure = ctx.position if side is BUY else -ctx.position
        if exposure >= cap:
            detail = f"side closed: position {ctx.position} at max_inventory {cap}"
            for quote in quotes:
                denials.append(_deny(ctx, quote, DenyReason.INVENTORY_CAP, detail))
            return ()
        shaped: list[Quote] = []
        for quote in quotes:
            kept = self._shape(quote, side, ctx, floor, denials)
            if kept is not None:
                shaped.append(kept)
        return self._fit_to_cap(shaped, exposure, ctx, denials)

    def _shape(
        self,
        quote: Quote,
        side: Side,
        ctx: RiskContext,
        floor: float,
        denials: list[RiskDenied],
    ) -> Quote | None:
        limits = self._limits
        ts, deny = ctx.ts_ns, denials.append
        price, qty = quote.price, quote.qty
        if quote.side is not side:
            detail = f"{quote.side.name} quote in the {side.name} ladder"
            deny(_deny(ctx, quote, DenyReason.INVALID_QUOTE, detail))
            return None
        if not (0.0 < price < math.inf and 0.0 < qty < math.inf):
            detail = "price and qty must be positive and finite"
            deny(_deny(ctx, quote, DenyReason.INVALID_QUOTE, detail))
            return None
        if floor > 0.0:
            if side is BUY:
                limit = ctx.mid - floor
                too_tight = price > limit
            else:
                limit = ctx.mid + floor
                too_tight = price < limit
            if too_tight:
                detail = f"moved to {limit}: within {floor} of mid {ctx.mid}"
                deny(RiskDenied(ts, side, price, qty, DenyReason.SPREAD_FLOOR, detail))
                price = limit
        if limits.enforce_touch:
            if side is BUY and price >= ctx.best_ask:
                moved = ctx.best_ask - ctx.tick_size
                detail = f"moved to {moved}: at or above best ask {ctx.best_ask}"
            elif side is SELL and price <= ctx.best_bid:
                moved = ctx.best_bid + ctx.tick_size
                detail = f"moved to {moved}: at or below best bid {ctx.best_bid}"
            else:
                moved = price
            if moved != price:
                deny(RiskDenied(ts, side, price, qty, DenyReason.CROSSES_TOUCH, detail))
                price = moved
        if price <= 0.0:
            detail = "price fell to <= 0 after the floor or touch adjustment"
            deny(RiskDenied(ts, side, price, qty, DenyReason.INVALID_QUOTE, detail))
            return None
        band = limits.price_band_bps
        if band < math.inf:
            distance_bps = abs(price - ctx.mid) / ctx.mid * _BPS
            if distance_bps > band:
                detail = f"{distance_bps} bps from mid {ctx.mid} > price_band_bps {band}"
                deny(RiskDenied(ts, side, price, qty, DenyReason.PRICE_BAND, detail))
                return None
        if qty > limits.max_order_qty:
            new_qty = limits.max_order_qty
            detail = f"qty trimmed to max_order_qty {new_qty}"
            deny(RiskDenied(ts, side, price, qty, DenyReason.MAX_ORDER_SIZE, detail))
            qty = new_qty
        max_notional = limits.max_order_notional
        if price * qty > max_notional:
            new_qty = max_notional / price
            # The quotient can round up by an ulp; shave until the product fits exactly.
            while price * new_qty > max_notional:
                new_qty = math.nextafter(new_qty, 0.0)
            detail = f"qty trimmed to {new_qty} for max_order_notional {max_notional}"
            deny(RiskDenied(ts, side, price, qty, DenyReason.MAX_NOTIONAL, detail))
            qty = new_qty
        if price == quote.price and qty == quote.qty:
            return quote
        return Quote(side, price, qty, quote.level)

    def _fit_to_cap(
        self,
        quotes: list[Quote],
        exposure: float,
        ctx: RiskContext,
        denials: list[RiskDenied],
    ) -> tuple[Quote, ...]:
        cap = self._limits.max_inventory
        total = 0.0
        for index, quote in enumerate(quotes):
            if exposure + (total + quote.qty) <= cap:
                total += quote.qty
                continue
            # Levels are ordered from the touch outwards: keep the inner ones whole, trim the
            # first that does not fit and drop everything beyond it.
            kept = quotes[:index]
            dropped = f"dropped: exposure {exposure} + inner levels {total} at max_inventory {cap}"
            part = _room_left(exposure, total, cap)
            if part > 0.0:
                kept.append(Quote(quote.side, quote.price, part, quote.level))
                trimmed = f"qty trimmed to {part}: exposure {exposure} + inner levels {total}"
                denials.append(_deny(ctx, quote, DenyReason.INVENTORY_CAP, trimmed))
            else:
                denials.append(_deny(ctx, quote, DenyReason.INVENTORY_CAP, dropped))
            for outer in quotes[index + 1 :]:
                denials.append(_deny(ctx, outer, DenyReason.INVENTORY_CAP, dropped))
            return tuple(kept)
        return tuple(quotes)

    # ----------------------------------------------------------------------------------------
    # Stage 2: commands
    # ----------------------------------------------------------------------------------------

    def admit(
        self, commands: Sequence[Command], ctx: RiskContext
    ) -> tuple[list[Command], list[RiskDenied]]:
        """Let through the commands that may go to the venue, in their original order.

        Cancels always pass, even when HALTED. A place is denied when HALTED, when its price
        or qty is not positive and finite, when it would break the hard inventory cap
        (``position + live_buy_qty + buys admitted so far in this batch + qty <=
        max_inventory`` for a buy, ``-position + live_sell_qty + ... <= max_inventory`` for a
        sell), or when the order-rate budget is spent. Admitted places consume the budget.

        Args:
            commands: The order manager's commands for this event.
            ctx: The same context the quotes were checked against.

        Returns:
            The admitted commands and one denial per refused place.
        """
        cap = self._limits.max_inventory
        halted = self._state is _HALTED
        kernel = self._admit_kernel
        if kernel is not None and kernel.admits(commands, ctx, halted):
            # Compiled (bot/_cdecide.c): every command passes the rules below, so all go.
            return list(commands), []
        # Every live order counts until the venue confirms its end: one in flight, working or
        # pending cancel can still fill, and so can one we cancel in this very batch. A
        # replacement near the cap therefore waits for the cancel acknowledgement.
        buy_base = ctx.position + ctx.live_buy_qty
        sell_base = -ctx.position + ctx.live_sell_qty
        buys = sells = 0.0
        admitted: list[Command] = []
        denials: list[RiskDenied] = []
        for command in commands:
            if isinstance(command, CancelOrder):
                admitted.append(command)
                continue
            qty = command.qty
            if halted:
                reason, detail = DenyReason.HALTED, "risk gate is halted"
            elif not (0.0 < qty < math.inf and 0.0 < command.price < math.inf):
                reason, detail = DenyReason.INVALID_QUOTE, "price and qty must be positive"
            # Written as "not <=" so that a NaN position or live qty denies rather than admits.
            elif command.side is BUY and not buy_base + (buys + qty) <= cap:
                reason = DenyReason.INVENTORY_CAP
                detail = _cap_detail(command, ctx.position, ctx.live_buy_qty, buys, cap)
            elif command.side is SELL and not sell_base + (sells + qty) <= cap:
                reason = DenyReason.INVENTORY_CAP
                detail = _cap_detail(command, -ctx.position, ctx.live_sell_qty, sells, cap)
            elif not self._take_rate_slot(ctx.ts_ns):
                reason = DenyReason.ORDER_RATE
                detail = f"{command.client_order_id}: max_orders_per_s spent"
            else:
                admitted.append(command)
                if command.side is BUY:
                    buys += qty
                else:
                    sells += qty
                continue
            denials.append(RiskDenied(ctx.ts_ns, command.side, command.price, qty, reason, detail))
        return admitted, denials

    def _take_rate_slot(self, ts_ns: int) -> bool:
        limit = self._limits.max_orders_per_s
        if limit == math.inf:
            return True
        window = self._recent_places_ns
        horizon = ts_ns - NS_PER_SECOND
        while window and window[0] <= horizon:
            window.popleft()
        if len(window) >= limit:
            return False
        window.append(ts_ns)
        return True

    # ----------------------------------------------------------------------------------------
    # Kill-switch
    # ----------------------------------------------------------------------------------------

    def on_pnl(self, ts_ns: int, pnl: float) -> RiskStateChanged | None:
        """Track the PnL peak and halt on a drawdown or an absolute loss.

        The loss limit is checked before the drawdown, so a PnL that breaks both reports
        LOSS_LIMIT. Once HALTED the gate stays HALTED whatever the PnL does; the peak keeps
        being tracked for the status line. A non-finite PnL is ignored.

        Args:
            ts_ns: Event time of the mark.
            pnl: Mark-to-market PnL in quote currency (realised plus unrealised, net of fees).

        Returns:
            The transition into HALTED, or None when the state did not change.
        """
        # Once per book update: comparisons rather than math.isfinite and max() calls.
        if not -_INF < pnl < _INF:  # NaN fails too
            return None
        before = self._peak_pnl
        peak = pnl if before is None or pnl > before else before
        self._peak_pnl = peak
        if self._state is _HALTED:
            return None
        limits = self._limits
        if pnl <= -limits.max_loss:
            detail = f"pnl {pnl} <= -max_loss {-limits.max_loss}"
            return self._trip(ts_ns, HaltReason.LOSS_LIMIT, detail)
        drawdown = peak - pnl
        if drawdown >= limits.max_drawdown:
            detail = (
                f"drawdown {drawdown} (peak {peak} - pnl {pnl}) >= max_drawdown"
                f" {limits.max_drawdown}"
            )
            return self._trip(ts_ns, HaltReason.DRAWDOWN, detail)
        return None

    def halt(self, ts_ns: int, reason: str) -> RiskStateChanged | None:
        """Halt by hand (operator command, lost venue connection, reconciliation mismatch).

        Args:
            ts_ns: Event time of the halt.
            reason: Why; it ends up in the state change and the log.

        Returns:
            The transition into HALTED, or None when already HALTED.
        """
        if self._state is _HALTED:
            return None
        return self._trip(ts_ns, HaltReason.MANUAL, reason)

    def reset(self, ts_ns: int) -> RiskStateChanged | None:
        """Leave HALTED for ACTIVE: the only way out of HALTED.

        The peak is forgotten and restarts from the next :meth:`on_pnl` value, so an old
        drawdown does not re-trip; a PnL still at or below ``-max_loss`` does, on the next
        mark. If the position is at the cap, the next :meth:`check` moves on to REDUCING.

        Args:
            ts_ns: Event time of the reset.

        Returns:
            The transition out of HALTED, or None when the gate was not HALTED.
        """
        if self._state is not _HALTED:
            return None
        self._state = _ACTIVE
        self._halt_reason = None
        self._peak_pnl = None
        return RiskStateChanged(ts_ns, _HALTED, _ACTIVE, "reset: halt lifted")

    def _trip(self, ts_ns: int, reason: HaltReason, detail: str) -> RiskStateChanged:
        old, self._state = self._state, _HALTED
        self._halt_reason = reason
        return RiskStateChanged(ts_ns, old, _HALTED, f"{reason.value}: {detail}")


def _empty_like(desired: QuoteSet) -> QuoteSet:
    return QuoteSet((), (), desired.reservation_price, desired.half_spread)


def _deny(ctx: RiskContext, quote: Quote, reason: DenyReason, detail: str) -> RiskDenied:
    return RiskDenied(ctx.ts_ns, quote.side, quote.price, quote.qty, reason, detail)


def _room_left(exposure: float, total: float, cap: float) -> float:
    """Return the largest qty with ``exposure + (total + qty) <= cap`` exactly in floats."""
    part = (cap - exposure) - total
    # The subtraction can round up by a few ulps of the largest operand; shave in steps of that
    # ulp (never smaller than part's own, so each step makes progress) until the sum fits.
    while part > 0.0 and exposure + (total + part) > cap:
        part -= math.ulp(max(abs(exposure), total + part, cap))
    return part


def _cap_detail(command: PlaceOrder, exposure: float, live: float, batch: float, cap: float) -> str:
    return (
        f"{command.client_order_id}: exposure {exposure} + live {live} + batch {batch}"
        f" + qty {command.qty} > max_inventory {cap}"
    )
