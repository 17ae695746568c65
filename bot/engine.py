"""The engine: one consumer that applies events in order and decides synchronously.

The flow of one market event (DESIGN.md):

1. the simulated venue (paper/replay) matches our resting orders against the event, before the
   book changes, and its fills are applied at once;
2. the book, the portfolio mark, the kill-switch and the estimators update;
3. the strategy turns a ``MarketState`` into desired quotes;
4. the risk gate approves, trims or refuses them (or halts);
5. the order manager diffs approved quotes against live orders into the fewest commands, the
   gate admits them against the hard inventory cap and the order-rate budget, and they go to
   the execution venue.

Order events coming back (accepted, filled, canceled, rejected) are queued by ``on_order_event``
and drained in arrival order by the consumer, never applied from another task: the same input
gives the same record, run after run.

Time: ``run_virtual`` drives a ``VirtualClock`` from the events' ``ts_local_ns``, interleaving
the venue's scheduled callbacks (entry and cancel latency) in timestamp order. ``run_wall`` runs
on the wall clock with the same scheduling interface (``Scheduler.call_at``), the callbacks
arriving through the same queue as market data.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from bot.book import BookPartKernel, OrderBook
from bot.clock import Scheduler, VirtualClock, WallClock
from bot.errors import DataError
from bot.events import (
    BUY,
    SELL,
    BookDelta,
    BookInvalid,
    BookSnapshot,
    Command,
    DeferredBookDelta,
    MarketEvent,
    MarketState,
    OrderCanceled,
    OrderEvent,
    OrderFilled,
    OrderRejected,
    PlaceOrder,
    QuoteSet,
    RiskDenied,
    RiskState,
    RiskStateChanged,
    Timer,
    Trade,
    cbook,
)
from bot.frozen import maker
from bot.journal import Journal
from bot.orders import OrderManager, snap_price
from bot.portfolio import Portfolio
from risk.gate import RiskContext, RiskGate
from strategies.avellaneda_stoikov import AvellanedaStoikov
from strategies.base import Strategy
from strategies.health import ModelHealth
from strategies.intensity import IntensityEstimator
from strategies.volatility import VolatilityEstimator

_INF = math.inf
_nextafter = math.nextafter
_NAN = math.nan
TOUCH_FIRST_LEVELS = 48
"""Deltas with more levels than this are applied touch first (see ``Engine._split_delta``)."""
NEAR_BAND_TICKS = 100
"""Half-width of the band around the touch that is booked before quoting, in ticks."""
DEEPEN_AT_LEAST = 32
"""Fewest deferred levels of a side booked per fallback round (see ``Engine._deepen``).

The first round books exactly the levels the touch needs (``DeepLevels.settle``). Further
rounds happen only for deferred levels out of price order; at least this many per round (4x
more each further round) keeps them few, while decoding a few levels too many costs little.
"""
_EMPTY = QuoteSet.empty()
_CORRUPT = -1  # _book_deep: the deferred levels were corrupt (the book is invalidated)
# Side names for log fields: a dict read instead of Enum's name property (two Python calls),
# which runs for each fill even when the logger drops the line.
_SIDE_NAMES = {BUY: BUY.name, SELL: SELL.name}

# Built on every requote or split: without a Python __init__ frame (bot.frozen.maker).
_make_state = maker(MarketState)
_make_context = maker(RiskContext)
_make_delta = maker(BookDelta)


class ExecutionVenue(Protocol):
    """Where commands go: the simulated venue or a live exchange adapter."""

    def submit(self, command: Command) -> None:
        """Send one command; results come back through the engine's ``on_order_event``."""
        ...


class SimulatedVenue(ExecutionVenue, Protocol):
    """A venue that also sees market data, to fill resting orders (paper and replay).

    It may also offer ``book_part_kernel() -> BookPartKernel | None`` (``SimVenue`` does): its
    ``on_market`` and the book's ``apply`` of one part of a split update in one compiled call.
    """

    def on_market(self, event: MarketEvent) -> None:
        """Match resting orders against ``event`` (called before the book applies it)."""
        ...

    def after_book(self, ts_ns: int) -> None:
        """Fill what the updated book has moved through (called after a depth update)."""
        ...

    @property
    def enters_immediately(self) -> bool:
        """Whether an order rests as soon as it is sent (no entry latency)."""
        ...


@dataclass(frozen=True, slots=True)
class ModelInputs:
    """Configured model parameters; σ is replaced by the estimate once the estimator is warm."""

    sigma: float
    intensity_a: float
    intensity_k: float


@dataclass(frozen=True, slots=True)
class Status:
    """The numbers of one status line."""

    ts_ns: int
    mid: float
    reservation: float
    bid: float
    ask: float
    position: float
    pnl: float
    sigma: float
    sigma_estimated: bool
    intensity_a: float
    intensity_k: float
    intensity_fitted: bool
    state: RiskState
    fills: int
    orders_sent: int
    book_valid: bool

    @property
    def spread(self) -> float:
        """Our quoted spread (ask − bid), NaN when a side is missing."""
        return self.ask - self.bid


@dataclass(slots=True)
class EngineStats:
    """Counters of one run."""

    events: int = 0
    book_updates: int = 0
    trades: int = 0
    bad_events: int = 0
    book_invalidations: int = 0
    quotes: int = 0
    orders_sent: int = 0
    cancels_sent: int = 0
    fills: int = 0
    duplicate_fills: int = 0
    rejects: int = 0
    denials: Counter[str] = field(default_factory=Counter)
    health_warnings: Counter[str] = field(default_factory=Counter)
    refits: int = 0
    refits_rejected: int = 0
    recovered_fills: int = 0


class Engine:
    """Wire book, strategy, risk gate, order manager, portfolio and venue for one market."""

    def __init__(
        self,
        *,
        symbol: str,
        tick_size: float,
        clock: Scheduler,
        strategy: Strategy,
        gate: RiskGate,
        orders: OrderManager,
        model: ModelInputs,
        sigma_estimator: VolatilityEstimator | None = None,
        journal: Journal | None = None,
        log: Any = None,
        status_interval_ns: int = 0,
        on_status: Callable[[Status], None] | None = None,
        decision_cache: bool = False,
        health: ModelHealth | None = None,
        health_action: str = "warn",
        widen_factor: float = 1.5,
        pause_ns: int = 30 * 1_000_000_000,
        calibrator_factory: Callable[[float], IntensityEstimator] | None = None,
        refit_ns: int = 30 * 1_000_000_000,
        min_r2: float = 0.5,
        a_bounds: tuple[float, float] = (0.0, math.inf),
        k_bounds: tuple[float, float] = (0.0, math.inf),
    ) -> None:
        self.symbol = symbol
        self.tick_size = tick_size
        self.clock = clock
        self.book = OrderBook(symbol)
        self.portfolio = Portfolio()
        self.strategy = strategy
        self.gate = gate
        self.orders = orders
        self.model = model
        self.sigma_estimator = sigma_estimator
        self.journal = journal
        self.log = log
        self.stats = EngineStats()
        self.venue: ExecutionVenue | None = None
        self._sim_venue: SimulatedVenue | None = None
        self._part_kernel: BookPartKernel | None = None
        self._enters_immediately = False
        self._pending: deque[OrderEvent] = deque()
        self._status_interval_ns = status_interval_ns
        self._next_status_ns = 0
        self._on_status = on_status
        self._last_quotes: QuoteSet = _EMPTY
        self._last_denials: frozenset[str] = frozenset()
        self._shutting_down = False
        self._near_bid = -_INF
        self._near_ask = _INF
        self._pending_change = False
        self.decision_cache = decision_cache
        self.health = health
        self.health_action = health_action
        self.widen_factor = widen_factor
        self.pause_ns = pause_ns
        self._widen = 1.0
        self._paused_until_ns = 0
        self.intensity_a = model.intensity_a
        self.intensity_k = model.intensity_k
        self.intensity_fitted = False
        self.calibrator: IntensityEstimator | None = None
        self._calibrator_factory = calibrator_factory
        self.refit_ns = refit_ns
        self.min_r2 = min_r2
        self.a_bounds = a_bounds
        self.k_bounds = k_bounds
        self._next_refit_ns = 0
        self._journaled_mid = _NAN
        self._decision_key: tuple[Any, ...] | None = None
        self._decision_denials: tuple[str, ...] = ()
        self._order_epoch = 0
        self._compiled_requote = compiled_requote(strategy, gate, orders)
        self._after_book_kernel = after_book_kernel(sigma_estimator, self.portfolio, gate)
        self.last_ts_ns = 0
        # Latency probes for the benchmark: perf_counter_ns of the first quoting decision and
        # of the first commands sent since the caller last zeroed them (None: not measuring).
        self.measure: bool = False
        self.first_decision_ns = 0
        self.first_commands_ns = 0

    # ---------------------------------------------------------------- wiring

    def attach_venue(self, venue: ExecutionVenue, *, simulated: bool) -> None:
        """Attach the execution venue; a simulated one also receives market data first."""
        self.venue = venue
        self._sim_venue = venue if simulated else None  # type: ignore[assignment]
        # The venue's entry latency is configuration: read once, not on every split update.
        sim = self._sim_venue
        self._enters_immediately = sim is not None and sim.enters_immediately
        offer = getattr(venue, "book_part_kernel", None) if simulated else None
        self._part_kernel = offer() if offer is not None else None

    def on_order_event(self, event: OrderEvent) -> None:
        """Queue an order event from the venue; the consumer applies it in arrival order."""
        self._pending.append(event)

    # ---------------------------------------------------------------- the flow of one event

    def process(self, event: MarketEvent) -> None:
        """Apply one market event and requote (the flow in the module docstring)."""
        ts = event.ts_local_ns
        self.last_ts_ns = ts
        self.stats.events += 1
        kind = type(event)
        if kind is BookDelta or kind is BookSnapshot:
            self._on_book(event, ts)  # type: ignore[arg-type]
        elif kind is DeferredBookDelta:
            self._on_deferred(event, ts)  # type: ignore[arg-type]
        elif kind is Trade:
            self._on_trade(event, ts)  # type: ignore[arg-type]
        elif kind is BookInvalid:
            self._invalidate(event.reason)  # type: ignore[union-attr]
            self._requote(ts)
        elif kind is Timer:
            self._requote(ts)
        if self.health is not None and self.health.due(ts):
            self._check_health(ts)
        if self._status_interval_ns and ts >= self._next_status_ns:
            self._emit_status(ts)

    def _on_book(self, event: BookSnapshot | BookDelta, ts: int) -> None:
        book = self.book
        was_valid = book.valid
        try:
            if not event.validated:
                book.check(event)
        except DataError as exc:
            # Corrupt data never reaches the venue's matching, the book or the strategy.
            self.stats.bad_events += 1
            self._invalidated(was_valid, str(exc))
            self._requote(ts)
            return
        if (was_valid and type(event) is BookDelta and event.symbol == book.symbol
                and len(event.bids) + len(event.asks) > TOUCH_FIRST_LEVELS):
            near, deep = self._split_delta(event)
            if deep is not None:
                self._book_touch_first(near, deep, self._near_bid, self._near_ask, ts)
                return
        if not self._apply_book(event, ts, was_valid):
            self._requote(ts)
            return
        self.stats.book_updates += 1
        self._after_book(ts)
        self._requote(ts, cacheable=True)

    def _on_deferred(self, event: DeferredBookDelta, ts: int) -> None:
        """Book a parser-split delta touch first: quote on the near levels, then book the rest.

        Booked whole (before quoting) when the book is not valid, or when the simulated venue
        enters orders with no latency (a new order would read its queue from the deep levels).
        """
        if (not self.book.valid or event.symbol != self.book.symbol
                or self._enters_immediately):
            try:
                whole = event.whole()
            except DataError as exc:
                self._corrupt_levels(exc)
                self._requote(ts)
                return
            self._on_book(whole, ts)
            return
        # Every deep bid is <= deep_bid_max: a best bid strictly above it is final.
        self._book_touch_first(event.near, event, _nextafter(event.deep_bid_max, _INF),
                               _nextafter(event.deep_ask_min, -_INF), ts)

    def _book_touch_first(self, near: BookDelta, deep: BookDelta | DeferredBookDelta,
                          low: float, high: float, ts: int) -> None:
        """Book ``near``, quote, then book ``deep`` (deep bids < ``low``, deep asks > ``high``).

        The quotes need only the touch: if after ``near`` the best bid is >= ``low`` and the
        best ask <= ``high``, no deep level can change them, so the decision is the one the
        whole update gives and the deep levels are booked after the commands have left.
        Otherwise (the update moved the touch into its deep part) deep levels are booked
        first: the deferred levels nearest first, just those the touch needs (``_deepen``).
        The book may be crossed between the parts (stale asks the deep part removes, under
        bids the near part added), so it is checked, and the simulated venue fills what the
        book moved through, only once the touch is final.
        """
        book = self.book
        self._pending_change = False
        kernel = self._part_kernel
        # 1: the touch is final and there is nothing to check or fill (see _book_part).
        status = kernel(near, low, high) if kernel is not None and not self._pending else None
        if status is None:
            self._book_part_python(near, ts)
            bid, ask = book.touch()
            status = 0 if not (bid >= low and ask <= high) else 2
        self.stats.book_updates += 1
        pending: BookDelta | DeferredBookDelta | None = deep
        if status == 0:
            if type(deep) is DeferredBookDelta:
                ok, left, status = self._deepen(deep, ts)
                if not ok:
                    self._requote(ts)
                    return
                pending = deep if left else None
            else:
                status = self._book_part(deep, ts)  # type: ignore[arg-type]
                pending = None
        # The kernel's 1 for the last part booked also means nothing is left to check or fill.
        if status != 1 and not self._touch_final(ts):
            self._requote(ts)
            return
        self._after_book(ts)
        self._requote(ts, cacheable=True)
        if pending is None:
            return
        touch = book.touch()
        self._pending_change = False
        status = self._book_deep(pending, ts)
        if status == _CORRUPT or (status != 1 and not self._touch_final(ts)):
            self._requote(ts)
            return
        moved = touch != book.touch()
        if moved:  # deep levels were not where the parser said (input out of order)
            self._after_book(ts)
        if moved or self._pending_change:
            self._requote(ts)

    def _deepen(self, event: DeferredBookDelta, ts: int) -> tuple[bool, bool, int | None]:
        """Book deferred levels nearest first until no deeper one can change the touch.

        The first round books exactly the levels the touch needs (``DeepLevels.settle``: the
        book walks the deferred levels against its own, so a sweep that deletes hundreds of
        levels is one round of just those). Should the touch still not be clear of every
        deferred level (levels out of price order), further rounds book the deferred levels
        that reach it (bids at or above the best bid, asks at or below the best ask), from a
        side whose touch they can still change: at least ``DEEPEN_AT_LEAST`` levels, 4x more
        each round. Returns (False, False, None) if the levels were corrupt (the book is
        invalidated), else (True, whether levels are left to book after quoting, what
        ``_book_part`` answered for the last part booked: 1 when nothing is left to check).
        """
        book = self.book
        deep = event.deep
        bid_max, ask_min = event.deep_bid_max, event.deep_ask_min
        at_least = DEEPEN_AT_LEAST
        settle = True
        status: int | None = None
        while True:
            bid, ask = book.touch()
            # A side with no level (nan) needs every deferred level of that side.
            bid_floor = _INF if bid > bid_max else (bid if bid == bid else -_INF)
            ask_cap = -_INF if ask < ask_min else (ask if ask == ask else _INF)
            if bid_floor == _INF and ask_cap == -_INF:
                return True, True, status
            try:
                if settle:
                    settle = False
                    part, bid_max, ask_min = deep.settle(book)
                else:
                    part, bid_max, ask_min = deep.through(bid_floor, ask_cap, at_least)
                    at_least *= 4
                if not part.bids and not part.asks:  # no progress (cannot happen): book all
                    part, bid_max, ask_min = deep.rest(), -_INF, _INF
            except DataError as exc:
                self._corrupt_levels(exc)
                return False, False, None
            status = self._book_part(part, ts)
            if bid_max == -_INF and ask_min == _INF:
                return True, False, status

    def _book_part(self, part: BookDelta, ts: int) -> int | None:
        """Let the simulated venue see one part of a split update, then book it.

        In one C call when the venue has a kernel for it (``book_part_kernel``) and the case
        is its plain one; it leaves nothing to drain (a depth update fills nothing before the
        book applies it), so it runs only when nothing is waiting to be drained. Returns the
        kernel's answer (1: the book is not crossed and crosses no order of the venue, so
        ``_touch_final`` has nothing to do; 0 or 2: it may), None when the Python booked it.
        """
        kernel = self._part_kernel
        if kernel is not None and not self._pending:
            status: int | None = kernel(part, -_INF, _INF)
            if status is not None:
                return status
        self._book_part_python(part, ts)
        return None

    def _book_part_python(self, part: BookDelta, ts: int) -> None:
        """``_book_part`` without the kernel: the venue's ``on_market``, then the book's apply."""
        venue = self._sim_venue
        if venue is not None:
            venue.on_market(part)
            if self._pending:
                self._pending_change |= self._drain(ts)
        self.book.apply(part, checked=True, cross_check=False)

    def _book_deep(self, deep: BookDelta | DeferredBookDelta, ts: int) -> int | None:
        """Decode (if deferred) and book the deep part: ``_CORRUPT`` if it is corrupt, else
        what ``_book_part`` answered."""
        if type(deep) is DeferredBookDelta:
            try:
                deep = deep.deep.rest()
            except DataError as exc:
                self._corrupt_levels(exc)
                return _CORRUPT
        return self._book_part(deep, ts)  # type: ignore[arg-type]

    def _corrupt_levels(self, exc: DataError) -> None:
        """Deferred levels were corrupt: count them; the book is unknown until a resync."""
        self.stats.bad_events += 1
        self._invalidate(str(exc))

    def _touch_final(self, ts: int) -> bool:
        """The update is booked: reject a crossed book, then fill what the book moved through."""
        try:
            self.book.check_crossed()
        except DataError as exc:
            self._invalidated(True, str(exc))
            return False
        venue = self._sim_venue
        if venue is not None:
            venue.after_book(ts)
            if self._pending:
                self._pending_change |= self._drain(ts)
        return True

    def _after_book(self, ts: int) -> None:
        """Feed a new mid to the estimators, the journal and the kill-switch."""
        book = self.book
        mid = book.mid
        if mid != mid:
            return
        if self.journal is not None and mid != self._journaled_mid:
            self._journaled_mid = mid
            self.journal.mid(ts, mid)
        if self.calibrator is None and self._calibrator_factory is not None:
            self.calibrator = self._calibrator_factory(book.spread / 2.0)
        if self.calibrator is not None:
            self.calibrator.update_mid(ts, mid)
            if ts >= self._next_refit_ns:
                if self._next_refit_ns:
                    self._refit(ts)
                else:  # the first fit waits a full refit period for data
                    self._next_refit_ns = ts + self.refit_ns
        # The volatility update, the mark and the kill-switch's check in one call when each is
        # its plain case (bot._cbook.AfterBook: nothing to record, nothing trips); the steps
        # below are its reference. They touch nothing the journal and calibrator steps do.
        kernel = self._after_book_kernel
        if kernel is not None and kernel(ts, mid):
            return
        if self.sigma_estimator is not None:
            self.sigma_estimator.update(ts, mid)
        change = self.gate.on_pnl(ts, self.portfolio.mark(mid))  # _check_pnl, inlined
        if change is not None:
            self._risk_changed(change)

    def _split_delta(self, delta: BookDelta) -> tuple[BookDelta, BookDelta | None]:
        """Split a large delta into the levels near the touch and the deep rest.

        Touch first: the strategy only needs the top of the book, so the near part is applied
        and quoted on before the deep levels are booked (same event, same timestamp). The
        band covers every live order of ours, so the venue's queue model sees the levels at
        our prices before we requote. Returns ``(delta, None)`` when it cannot be split.
        """
        book = self.book
        band = NEAR_BAND_TICKS * self.tick_size
        bid, ask = book.touch()
        for order in self.orders.orders.values():
            reach = (bid - order.price) if order.side is BUY else (order.price - ask)
            if reach >= band:
                band = reach + self.tick_size
        low, high = bid - band, ask + band
        self._near_bid, self._near_ask = low, high
        bids, asks = delta.bids, delta.asks
        near_b = tuple([lv for lv in bids if lv[0] >= low])
        near_a = tuple([lv for lv in asks if lv[0] <= high])
        if any(q > 0.0 and p > high for p, q in near_b) or any(
            q > 0.0 and p < low for p, q in near_a
        ):
            # A sweep through the band: a near level meets the other side's deep levels, so
            # the parts are not independent. Book it whole. (Deletions cannot cross.)
            return delta, None
        deep_b = tuple([lv for lv in bids if lv[0] < low]) if len(near_b) < len(bids) else ()
        deep_a = tuple([lv for lv in asks if lv[0] > high]) if len(near_a) < len(asks) else ()
        ts_x, ts_l, sym, seq = delta.ts_exchange_ns, delta.ts_local_ns, delta.symbol, delta.sequence
        return (_make_delta(ts_x, ts_l, sym, near_b, near_a, seq, True),
                _make_delta(ts_x, ts_l, sym, deep_b, deep_a, seq, True))

    def _apply_book(self, event: BookSnapshot | BookDelta, ts: int, was_valid: bool) -> bool:
        """Let the simulated venue match, apply to the book; return False if now invalid."""
        self._pending_change = False
        venue = self._sim_venue
        if venue is not None:
            venue.on_market(event)
            self._pending_change = self._drain(ts)
        try:
            self.book.apply(event, checked=True)
        except DataError as exc:
            # apply() has already marked the book invalid; count and log the transition.
            self._invalidated(was_valid, str(exc))
            return False
        if venue is not None:
            venue.after_book(ts)
            self._pending_change |= self._drain(ts)
        if not was_valid and self.book.valid and self.log is not None:
            self.log.info("book_valid", sequence=event.sequence)
        return True

    def _on_trade(self, trade: Trade, ts: int) -> None:
        if not (0.0 < trade.price < _INF and 0.0 < trade.qty < _INF):
            self.stats.bad_events += 1
            if self.log is not None:
                self.log.warning("trade_dropped", reason="non-finite or non-positive",
                                 price=trade.price, qty=trade.qty)
            return
        self.stats.trades += 1
        if self.calibrator is not None:
            self.calibrator.update_trade(trade)
        if self._sim_venue is not None:
            fills_before = self.stats.fills
            self._sim_venue.on_market(trade)
            self._drain(ts)
            if self.stats.fills != fills_before:
                self._requote(ts)

    def _invalidate(self, reason: str) -> None:
        was_valid = self.book.valid
        self.book.invalidate(reason)
        self._invalidated(was_valid, reason)

    def _invalidated(self, was_valid: bool, reason: str) -> None:
        if was_valid:
            self.stats.book_invalidations += 1
            if self.log is not None:
                self.log.warning("book_invalid", reason=reason)

    def _check_pnl(self, ts: int, pnl: float) -> None:
        change = self.gate.on_pnl(ts, pnl)
        if change is not None:
            self._risk_changed(change)

    def _risk_changed(self, change: RiskStateChanged) -> None:
        if self.journal is not None:
            self.journal.risk_event(change)
        if self.log is not None:
            level = self.log.error if change.new is RiskState.HALTED else self.log.warning
            level("risk_state_changed", old=change.old.value, new=change.new.value,
                  reason=change.reason)

    # ---------------------------------------------------------------- quoting

    def market_state(self, ts: int) -> MarketState:
        """Return what the strategy sees now (σ from the estimator once it is warm)."""
        bid, ask = self.book.touch()
        est = self.sigma_estimator
        sigma = est.current if est is not None else None
        if sigma is None:
            sigma = self.model.sigma
        return _make_state(ts, (bid + ask) * 0.5, bid, ask, self.tick_size,
                           self.portfolio.position, sigma, self.intensity_a, self.intensity_k)

    def _requote(self, ts: int, cacheable: bool = False) -> None:
        if self._shutting_down:
            return
        book = self.book
        # The touch, σ and validity are read once: the key, the strategy's state, the risk
        # context and the diff all take these values (the book does not change in between).
        bid, ask = book.touch()
        valid = book.valid
        est = self.sigma_estimator
        sigma = est.current if est is not None else None
        key = None
        if cacheable and self.decision_cache:
            # Most depth updates leave the touch alone (93% on the Binance USD-M capture).
            # When the strategy and limits do not depend on time, the same inputs give the
            # same decision: keep the quotes, count the same denials, skip the work.
            key = (bid, ask, valid, self.portfolio.position, sigma, self.gate.state,
                   self._order_epoch, self.intensity_a, self.intensity_k, self._widen,
                   self.last_ts_ns < self._paused_until_ns)
            if key == self._decision_key:
                for reason in self._decision_denials:
                    self.stats.denials[reason] += 1
                if self.measure and not self.first_decision_ns:
                    self.first_decision_ns = time.perf_counter_ns()
                return
        mid = (bid + ask) * 0.5  # book.mid, computed as the book does
        quoting = valid and mid == mid and ts >= self._paused_until_ns
        if sigma is None:
            sigma = self.model.sigma
        position = self.portfolio.position
        fused = self._compiled_requote
        decided = None
        if fused is not None and quoting and self._widen == 1.0:
            # The steps below in one C call (bot/_cdecide.c's Decide) when each is its plain
            # case: nothing to deny, trim or change; None otherwise, with nothing changed.
            decided = fused(ts, bid, ask, book.last_update_ns, position, sigma,
                            self.intensity_k, self.tick_size)
        ctx: RiskContext | None = None
        if decided is not None:
            self.stats.quotes += 1
            approved, commands, live_buy_qty, live_sell_qty, all_admitted = decided
            denials: tuple[RiskDenied, ...] = ()
            if self._last_denials:
                self._note_denials(denials)
        else:
            if quoting:
                # market_state(ts), from the values read above
                desired = self.strategy.quote(_make_state(
                    ts, mid, bid, ask, self.tick_size, position, sigma, self.intensity_a,
                    self.intensity_k))
                self.stats.quotes += 1
                if self._widen != 1.0:
                    desired = widen(desired, mid, self._widen)
            else:
                desired = _EMPTY
            live_buy_qty, live_sell_qty = self.orders.live_qtys()
            ctx = _make_context(ts, mid, bid, ask, self.tick_size, valid, book.last_update_ns,
                                position, live_buy_qty, live_sell_qty)
            decision = self.gate.check(desired, ctx)
            for change in decision.changes:
                self._risk_changed(change)
            denials = decision.denials
            if denials or self._last_denials:
                self._note_denials(denials)
            approved = decision.approved
            if decision.cancel_all:
                commands = list(self.orders.cancel_all(ts))
            else:
                commands = self.orders.diff(approved, bid, ask, ts)
            all_admitted = False
        self._last_quotes = approved
        self._decision_denials = tuple(d.reason.value for d in denials) if denials else ()
        self._decision_key = key
        if commands:
            if all_admitted:
                admitted = commands
            else:
                if ctx is None:
                    ctx = _make_context(ts, mid, bid, ask, self.tick_size, valid,
                                        book.last_update_ns, position, live_buy_qty,
                                        live_sell_qty)
                admitted, refused = self.gate.admit(commands, ctx)
                if refused:
                    # Refused for the rate budget or the live-order cap: the same inputs may
                    # pass later, so this decision must not be reused.
                    self._decision_key = None
                    self._refuse(commands, admitted, refused, ts)
            if self.measure and admitted and not self.first_commands_ns:
                # The commands leave here: diffed, admitted, handed to the execution venue.
                self.first_commands_ns = time.perf_counter_ns()
            self._send(admitted)
        if self.measure and not self.first_decision_ns:
            self.first_decision_ns = time.perf_counter_ns()
        if self.health is not None:
            # Bookkeeping only (evaluated after the event): off the tick-to-quote path.
            self._observe_health(ts, approved)

    def _refit(self, ts: int) -> None:
        """Re-fit A and k on the trailing window; use the fit only if it is sound."""
        calibrator = self.calibrator
        assert calibrator is not None
        self._next_refit_ns = ts + self.refit_ns
        fit = calibrator.fit(ts, "both")
        a, k, r2 = fit.A, fit.k, fit.r2
        low_a, high_a = self.a_bounds
        low_k, high_k = self.k_bounds
        if fit.status != "ok" or a is None or k is None or r2 is None:
            reason = fit.reason
        elif r2 < self.min_r2:
            reason = f"R² {r2:.3f} below {self.min_r2}"
        elif not (low_a <= a <= high_a and low_k <= k <= high_k):
            reason = f"A={a:.4g}, k={k:.4g} outside the configured bounds"
        else:
            self.intensity_a, self.intensity_k = a, k
            self.intensity_fitted = True
            self.stats.refits += 1
            if self.log is not None:
                self.log.info("calibration_refit", A=round(a, 6), k=round(k, 6),
                              r2=round(r2, 4), points=fit.points, hits=fit.hits)
            return
        self.stats.refits_rejected += 1
        if self.log is not None:
            using = "fit" if self.intensity_fitted else "configured"
            self.log.info("calibration_not_used", reason=reason, using=using,
                          A=self.intensity_a, k=self.intensity_k)

    def halt(self, ts: int, reason: str) -> None:
        """Trip the kill-switch from outside (a global loss limit): cancel all, send nothing.

        Call it on the engine's consumer (``clock.call_at``), like any other input.
        """
        change = self.gate.halt(ts, reason)
        if change is not None:
            self._risk_changed(change)
            self._requote(ts)

    def recover_fills(self, fills: Iterable[OrderFilled], journal_them: bool) -> int:
        """Apply fills from before a restart (the journal's, or the venue's since the last one
        journaled); ``journal_them`` records the venue's in this run's journal. Return how many
        were new to the portfolio."""
        applied = 0
        for fill in fills:
            if self.portfolio.apply_fill(fill):
                applied += 1
                self.stats.recovered_fills += 1
                if journal_them and self.journal is not None:
                    self.journal.order_event(fill, self.portfolio.position, self.portfolio.pnl)
        return applied

    def warm_up(self, events: Iterable[MarketEvent], shift_ns: int = 0) -> int:
        """Feed a recording to the estimators only (σ, A, k), before trading; return events.

        ``shift_ns`` moves the recording's timestamps (so it ends just before the live feed
        starts: estimators keep trailing windows and a fixed clock, and a gap of months would
        read as a frozen market). No order is placed and nothing else changes: the book used
        here is a scratch one.
        """
        scratch = OrderBook(self.symbol)
        n = 0
        last = 0
        for event in events:
            n += 1
            ts = event.ts_local_ns + shift_ns
            last = ts
            if isinstance(event, BookSnapshot | BookDelta):
                try:
                    scratch.apply(event)
                except DataError:
                    continue
                mid = scratch.mid
                if scratch.valid and mid == mid:
                    if self.sigma_estimator is not None:
                        self.sigma_estimator.update(ts, mid)
                    if self.calibrator is None and self._calibrator_factory is not None:
                        self.calibrator = self._calibrator_factory(scratch.spread / 2.0)
                    if self.calibrator is not None:
                        self.calibrator.update_mid(ts, mid)
            elif isinstance(event, Trade) and self.calibrator is not None:
                self.calibrator.update_trade(replace(event, ts_local_ns=ts))
            elif isinstance(event, BookInvalid):
                scratch.invalidate(event.reason)
        if self.calibrator is not None and n:
            self._refit(last)
        if self.log is not None:
            est = self.sigma_estimator
            self.log.info("warm_up_done", events=n, sigma_ready=bool(est and est.ready),
                          intensity_fitted=self.intensity_fitted)
        return n

    def _observe_health(self, ts: int, quotes: QuoteSet) -> None:
        health = self.health
        assert health is not None
        book = self.book
        mid = book.mid
        bid = quotes.bids[0].price if quotes.bids else _NAN
        ask = quotes.asks[0].price if quotes.asks else _NAN
        health.observe(ts, bid_depth=mid - bid, ask_depth=ask - mid,
                       inventory=self.portfolio.position, our_spread=ask - bid,
                       market_spread=book.best_ask - book.best_bid,
                       intensity_a=self.intensity_a, intensity_k=self.intensity_k)

    def _check_health(self, ts: int) -> None:
        health = self.health
        assert health is not None
        warnings = health.evaluate(ts)
        action = self.health_action
        for warning in warnings:
            self.stats.health_warnings[warning.kind] += 1
            if self.log is not None:
                self.log.warning("model_health", kind=warning.kind, detail=warning.message,
                                 value=round(warning.value, 4), bound=warning.bound,
                                 action=action)
        if action == "widen":
            # Widen while the model is off; back to normal after a clean period.
            self._widen = self.widen_factor if warnings else 1.0
        elif action == "pause" and warnings:
            self._paused_until_ns = ts + self.pause_ns
            self._requote(ts)

    def _note_denials(self, denials: tuple[RiskDenied, ...]) -> None:
        # Edge-triggered: a denial is logged and journaled when its reason starts, not on
        # every event while it persists (a stale book would otherwise log per tick).
        reasons = frozenset(d.reason.value for d in denials)
        for denial in denials:
            self.stats.denials[denial.reason.value] += 1
            if denial.reason.value not in self._last_denials:
                if self.journal is not None:
                    self.journal.risk_event(denial)
                if self.log is not None:
                    self.log.info("risk_denied", reason=denial.reason.value,
                                  side=denial.side.name, price=denial.price, qty=denial.qty,
                                  detail=denial.detail)
        self._last_denials = reasons

    def _refuse(self, commands: list[Command], admitted: list[Command],
                refused: list[RiskDenied], ts: int) -> None:
        sent = {id(c) for c in admitted}
        for command in commands:
            if id(command) not in sent and isinstance(command, PlaceOrder):
                # The order manager already counts it as in flight: tell it it never left.
                self._order_epoch += 1
                self.orders.on_event(OrderRejected(ts, command.client_order_id, "risk_denied"))
        self._note_denials(tuple(refused))

    def _send(self, commands: list[Command]) -> None:
        venue = self.venue
        if venue is None:
            raise RuntimeError("engine has no execution venue attached")
        journal = self.journal
        self._order_epoch += len(commands)
        for command in commands:
            if journal is not None:
                journal.command(command)
            if type(command) is PlaceOrder:
                self.stats.orders_sent += 1
            else:
                self.stats.cancels_sent += 1
            venue.submit(command)
        self._drain(self.last_ts_ns)

    # ---------------------------------------------------------------- order events

    def _drain(self, ts: int) -> bool:
        """Apply queued order events in order; return True if any changed what we hold."""
        pending = self._pending
        changed = False
        while pending:
            event = pending.popleft()
            self._order_epoch += 1
            self.orders.on_event(event)
            kind = type(event)
            if kind is OrderFilled:
                self._on_fill(event)  # type: ignore[arg-type]
                changed = True
            elif kind is OrderRejected:
                self.stats.rejects += 1
                changed = True
                if self.log is not None:
                    self.log.info("order_rejected", client_order_id=event.client_order_id,
                                  reason=event.reason)  # type: ignore[union-attr]
            elif kind is OrderCanceled:
                changed = True
            if self.journal is not None:
                mid = self.book.mid
                self.journal.order_event(event, self.portfolio.position, self.portfolio.pnl,
                                         mid if mid == mid else None)
        return changed

    def _on_fill(self, fill: OrderFilled) -> None:
        if not self.portfolio.apply_fill(fill):
            self.stats.duplicate_fills += 1
            return
        self.stats.fills += 1
        if self.health is not None:
            self.health.on_fill()
        if self.log is not None:
            self.log.info("order_filled", client_order_id=fill.client_order_id,
                          side=_SIDE_NAMES[fill.side], price=fill.price, qty=fill.qty,
                          position=self.portfolio.position)
        mid = self.book.mid
        self._check_pnl(fill.ts_ns, self.portfolio.mark(mid if mid == mid else fill.price))

    # ---------------------------------------------------------------- status

    def status(self, ts: int) -> Status:
        """Return the current status line numbers."""
        quotes = self._last_quotes
        est = self.sigma_estimator
        warm = est is not None and est.ready
        return Status(
            ts_ns=ts,
            mid=self.book.mid,
            reservation=quotes.reservation_price,
            bid=snap_price(quotes.bids[0].price, self.tick_size, BUY) if quotes.bids else _NAN,
            ask=snap_price(quotes.asks[0].price, self.tick_size, SELL) if quotes.asks
            else _NAN,
            position=self.portfolio.position,
            pnl=self.portfolio.pnl,
            sigma=est.value if warm and est is not None else self.model.sigma,
            sigma_estimated=warm,
            intensity_a=self.intensity_a,
            intensity_k=self.intensity_k,
            intensity_fitted=self.intensity_fitted,
            state=self.gate.state,
            fills=self.stats.fills,
            orders_sent=self.stats.orders_sent,
            book_valid=self.book.valid,
        )

    def _emit_status(self, ts: int) -> None:
        interval = self._status_interval_ns
        if self._next_status_ns == 0:
            self._next_status_ns = ts + interval
        else:
            self._next_status_ns += interval * (1 + (ts - self._next_status_ns) // interval)
        status = self.status(ts)
        if self.journal is not None:
            self.journal.mark(ts, status.mid, status.reservation, status.bid, status.ask,
                              status.position, status.pnl, status.sigma, status.state.value,
                              self.book.best_bid, self.book.best_ask, self.portfolio.fees,
                              status.intensity_a, status.intensity_k)
        if self._on_status is not None:
            self._on_status(status)

    # ---------------------------------------------------------------- running

    def run_virtual(self, events: Iterable[MarketEvent]) -> None:
        """Run a finite feed on virtual time, interleaving the venue's scheduled callbacks."""
        clock = self.clock
        if not isinstance(clock, VirtualClock):
            raise TypeError("run_virtual needs a VirtualClock")
        step = self.step
        for event in events:
            step(event)

    def step(self, event: MarketEvent) -> None:
        """Advance virtual time to ``event``, running due venue callbacks first, and apply it."""
        clock = self.clock
        assert isinstance(clock, VirtualClock)
        ts = event.ts_local_ns
        due = clock.next_due_ns()
        if due is not None and due <= ts:
            self._run_callbacks(clock, ts)
        clock.advance_to(ts)
        self.process(event)

    def run_due(self, until_ns: int) -> None:
        """Run the venue callbacks due by ``until_ns`` (virtual time), as ``step`` would first."""
        clock = self.clock
        assert isinstance(clock, VirtualClock)
        due = clock.next_due_ns()
        if due is not None and due <= until_ns:
            self._run_callbacks(clock, until_ns)

    def _run_callbacks(self, clock: VirtualClock, until_ns: int) -> None:
        while (due := clock.next_due_ns()) is not None and due <= until_ns:
            clock.run_due(due)
            self.last_ts_ns = due
            if self._drain(due):
                self._requote(due)

    def finish_virtual(self, grace_ns: int = 10_000_000_000) -> None:
        """Cancel every live order and let the venue confirm, on virtual time."""
        clock = self.clock
        if not isinstance(clock, VirtualClock):
            raise TypeError("finish_virtual needs a VirtualClock")
        ts = clock.now_ns()
        self._shutting_down = True
        self._send(list(self.orders.cancel_all(ts)))
        self._run_callbacks(clock, ts + grace_ns)
        if self.journal is not None:
            self.journal.flush()

    async def run_wall(
        self,
        source: AsyncIterator[MarketEvent],
        duration_s: float | None = None,
        timer_interval_s: float = 0.25,
        cancel_timeout_s: float = 5.0,
        journal_flush_s: float = 0.5,
    ) -> None:
        """Run a live feed on the wall clock until it ends or ``duration_s`` elapses.

        On the way out (end of feed, duration, SIGINT via task cancellation, or an error)
        every live order is cancelled and the venue's confirmations are awaited. The journal
        is written out every ``journal_flush_s``, between events: a process killed hard
        loses at most that much of it (and a restart asks the venue for the fills since).
        """
        clock = self.clock
        if not isinstance(clock, WallClock):
            raise TypeError("run_wall needs a WallClock")
        queue: asyncio.Queue[Any] = asyncio.Queue()
        clock.bind(queue.put_nowait)
        stop = object()

        async def feed() -> None:
            async for event in source:
                queue.put_nowait(event)
            queue.put_nowait(stop)

        async def ticker() -> None:
            while True:
                await asyncio.sleep(timer_interval_s)
                now = clock.now_ns()
                queue.put_nowait(Timer(now, now, self.symbol))

        async def stopper() -> None:
            if duration_s is not None:
                await asyncio.sleep(duration_s)
                queue.put_nowait(stop)

        async def flusher(journal: Journal) -> None:
            # Runs while the consumer awaits its queue: never inside an event's handling.
            while True:
                await asyncio.sleep(journal_flush_s)
                journal.flush()

        async def consume() -> None:
            while True:
                item = await queue.get()
                if item is stop:
                    return
                self._consume(item)

        try:
            async with asyncio.TaskGroup() as group:
                helpers = [
                    group.create_task(feed(), name=f"feed:{self.symbol}"),
                    group.create_task(ticker(), name=f"timer:{self.symbol}"),
                    group.create_task(stopper(), name=f"stopper:{self.symbol}"),
                ]
                if self.journal is not None:
                    helpers.append(group.create_task(flusher(self.journal),
                                                     name=f"journal:{self.symbol}"))
                await group.create_task(consume(), name=f"engine:{self.symbol}")
                for task in helpers:
                    task.cancel()
        finally:
            await self._shutdown_wall(queue, cancel_timeout_s)

    def _consume(self, item: Any) -> None:
        if callable(item):
            item()
            ts = self.clock.now_ns()
            self.last_ts_ns = ts
            if self._drain(ts):
                self._requote(ts)
        else:
            self.process(item)

    async def _shutdown_wall(self, queue: asyncio.Queue[Any], timeout_s: float) -> None:
        self._shutting_down = True
        ts = self.clock.now_ns()
        self._send(list(self.orders.cancel_all(ts)))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.orders.orders and loop.time() < deadline:
            try:
                item = await asyncio.wait_for(queue.get(), deadline - loop.time())
            except TimeoutError:
                break
            if callable(item):
                self._consume(item)
        if self.orders.orders and self.log is not None:
            self.log.error("shutdown_orders_unconfirmed", count=len(self.orders.orders))
        if self.journal is not None:
            self.journal.flush()


def compiled_requote(strategy: Strategy, gate: RiskGate,
                     orders: OrderManager) -> Callable[..., Any] | None:
    """The requote's plain case in one C call (``bot._cbook.Decide``), or None.

    Built when the strategy is Avellaneda-Stoikov and the strategy, the gate and the order
    manager each have their compiled kernel; ``Engine._requote`` runs the steps one by one
    whenever it answers None. Exact classes only: a subclass may override the methods it
    stands for.
    """
    if (cbook is None or type(strategy) is not AvellanedaStoikov or type(gate) is not RiskGate
            or type(orders) is not OrderManager):
        return None
    quote, check, diff = strategy.kernel, gate.kernel, orders.kernel
    if quote is None or check is None or diff is None:
        return None
    decide: Callable[..., Any] = cbook.Decide(
        quote=quote, check=check, diff=diff, gate=gate, state_slot="_state",
        active=RiskState.ACTIVE, reducing=RiskState.REDUCING,
        admit_plain=gate.admit_compiled, manager=orders)
    return decide


def after_book_kernel(estimator: VolatilityEstimator | None, portfolio: Portfolio,
                      gate: RiskGate) -> Callable[[int, float], bool | None] | None:
    """``Engine._after_book``'s volatility update, mark and PnL check in one C call
    (``bot._cbook.AfterBook``), or None. Exact classes only (a subclass may override what it
    stands for), and float limits (the kernel compares in doubles)."""
    limits = gate.limits if type(gate) is RiskGate else None
    if (cbook is None or limits is None or type(portfolio) is not Portfolio
            or (estimator is not None and type(estimator) is not VolatilityEstimator)
            or type(limits.max_loss) is not float or type(limits.max_drawdown) is not float):
        return None
    kernel: Callable[[int, float], bool | None] = cbook.AfterBook(
        estimator, portfolio, gate, RiskState.HALTED, limits.max_loss, limits.max_drawdown)
    return kernel


def widen(quotes: QuoteSet, mid: float, factor: float) -> QuoteSet:
    """Return ``quotes`` with every price ``factor`` times as far from ``mid`` (health action)."""
    bids = tuple(replace(q, price=mid - (mid - q.price) * factor) for q in quotes.bids)
    asks = tuple(replace(q, price=mid + (q.price - mid) * factor) for q in quotes.asks)
    return QuoteSet(bids, asks, quotes.reservation_price, quotes.half_spread * factor)
