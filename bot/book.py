"""The L2 order book of one symbol: snapshots, absolute deltas, best-of-book and depth queries.

Each side keeps its *signed* prices in ascending order with their quantities. The signed price
is ``price`` for bids and ``-price`` for asks (the ``Side`` value is exactly that sign), so on
both sides the best level is the *last* one: best-of-book is O(1), and the levels that change
most (near the touch) are inserted and removed close to the end, where little shifts. Negation
is exact in floating point, so equal wire prices always hit the same key; keys are never rounded.

A side is ``bot._cbook.BookSide`` (C, built at install time) or, where the extension was not
built, ``PyBookSide`` (pure Python: a dict and a sorted list), its reference; the two behave
identically. Set ``MMBOT_PURE_PYTHON=1`` to run the reference.

Corrupt data never reaches the strategy: an event with a non-finite or non-positive price, or a
non-finite or negative quantity, is rejected whole before anything is mutated, and a book that
ends up crossed is marked invalid. Both raise ``DataError``. An invalid book ignores deltas until
the next good snapshot, because deltas applied on top of a broken state cannot repair it.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable, Sequence
from typing import Protocol

from bot.errors import DataError
from bot.events import BUY, SELL, BookDelta, BookSnapshot, Level, Side
from bot.native import cbook, py_settle_take

_INF = float("inf")
_NAN = float("nan")


BookPartKernel = Callable[[BookDelta, float, float], int | None]
"""``bot._cbook.BookPart``: a simulated venue's pass over one part of a split update, then
``OrderBook.apply(part, checked=True, cross_check=False)``, in one call ``(part, low, high)``.
None: not its plain case, nothing done; else the touch is final (best bid >= low, best ask
<= high) or not (0), and when final whether the book and the venue's orders need checking
(2) or not (1). A simulated venue offers one (``book_part_kernel``) where it applies."""


class PyBookSide:
    """One side of the book, stored as signed prices so that the best level is the last key.

    The pure-Python reference of ``bot._cbook.BookSide`` (the compiled side the book uses
    when the extension is built): both have exactly this API and these semantics, which
    ``tests/test_cbook.py`` checks on random operations and on real captures.
    """

    __slots__ = ("keys", "qty", "sign")

    def __init__(self, sign: float) -> None:
        if sign not in (1.0, -1.0):
            raise ValueError("sign must be 1.0 (bids) or -1.0 (asks)")
        self.sign = sign
        self.keys: list[float] = []
        self.qty: dict[float, float] = {}

    def replace(self, levels: Sequence[Level]) -> None:
        """Replace every level with ``levels``; a repeated price keeps its last quantity."""
        sign = self.sign
        # Drop zeros only after de-duplicating, so (p, 1.0), (p, 0.0) ends like a delta would.
        latest = {sign * price: qty for price, qty in levels}
        self.qty = {key: qty for key, qty in latest.items() if qty != 0.0}
        self.keys = sorted(self.qty)

    def update(self, levels: Sequence[Level]) -> None:
        """Set absolute quantities, in order; a quantity of 0 removes the level."""
        sign = self.sign
        keys = self.keys
        book = self.qty
        for price, qty in levels:
            key = sign * price
            if qty == 0.0:
                if book.pop(key, None) is not None:
                    del keys[bisect_left(keys, key)]
            else:
                if key not in book:
                    insort(keys, key)
                book[key] = qty

    def best(self) -> float:
        """The best (last) signed price, or nan when the side is empty."""
        keys = self.keys
        return keys[-1] if keys else _NAN

    def best_qty(self) -> float:
        """The quantity at the best level, or 0.0 when the side is empty."""
        keys = self.keys
        return self.qty[keys[-1]] if keys else 0.0

    def get(self, key: float) -> float:
        """The quantity at a signed price, or 0.0 when there is no level."""
        return self.qty.get(key, 0.0)

    def qty_from(self, key: float) -> float:
        """The total quantity at signed prices >= ``key``, summed in ascending order."""
        keys = self.keys
        qty = self.qty
        return sum([qty[k] for k in keys[bisect_left(keys, key):]], 0.0)

    def top(self, n: int) -> list[Level]:
        """Up to ``n`` levels as (price, qty), best first, prices unsigned."""
        if n <= 0:
            return []
        sign = self.sign
        qty = self.qty
        return [(sign * key, qty[key]) for key in self.keys[-1 : -n - 1 : -1]]

    def settle_take(self, text: str, from_end: bool) -> tuple[Sequence[Level], float, str]:
        """Split off the levels of a raw level array of this side, nearest the touch first
        (from its end when ``from_end``), to book before no further one can change the best
        level: (those levels in array order, the boundary price or nan, the raw rest).
        """
        return py_settle_take(text, from_end, self.keys, self.sign)

    def __len__(self) -> int:
        return len(self.keys)


class SideStore(Protocol):
    """What the book needs of a side: ``PyBookSide`` and ``bot._cbook.BookSide`` both are."""

    @property
    def sign(self) -> float: ...
    def replace(self, levels: Sequence[Level]) -> None: ...
    def update(self, levels: Sequence[Level]) -> None: ...
    def best(self) -> float: ...
    def best_qty(self) -> float: ...
    def get(self, key: float) -> float: ...
    def qty_from(self, key: float) -> float: ...
    def top(self, n: int) -> list[Level]: ...
    def settle_take(self, text: str, from_end: bool) -> tuple[Sequence[Level], float, str]: ...
    def __len__(self) -> int: ...


BookSide: Callable[[float], SideStore]
"""The side the book uses: the compiled one when built, else the reference."""
BookSide = cbook.BookSide if cbook is not None else PyBookSide
COMPILED = BookSide is not PyBookSide


def _first_bad_level(levels: Sequence[Level]) -> Level | None:
    """Return the first level that must not enter the book, or None when all are good."""
    for level in levels:
        price, qty = level
        # Chained comparisons are False for NaN, so one test per value covers NaN, inf and sign.
        if not (0.0 < price < _INF and 0.0 <= qty < _INF):
            return level
    return None


class OrderBook:
    """L2 order book for one symbol, fed by ``BookSnapshot`` and ``BookDelta`` events.

    The book starts invalid ("no snapshot yet") and becomes valid with the first good snapshot.
    Queries read the stored levels whether or not the book is valid; callers that act on prices
    (strategy, risk) must check ``valid`` first.

    Attributes:
        symbol: The instrument this book belongs to.
        sequence: ``sequence`` of the last applied event.
        last_update_ns: ``ts_local_ns`` of the last applied event.
        updates: Number of events applied (snapshots and deltas).
        ignored_deltas: Number of deltas dropped because the book was invalid.
    """

    __slots__ = (
        "_asks",
        "_bids",
        "_invalid_reason",
        "ignored_deltas",
        "last_update_ns",
        "sequence",
        "symbol",
        "updates",
    )

    def __init__(self, symbol: str, side_type: Callable[[float], SideStore] | None = None) -> None:
        """Create an empty, invalid book for ``symbol``; it becomes valid with a snapshot.

        ``side_type`` picks the side implementation (default ``BookSide``: compiled if built).
        """
        self.symbol = symbol
        side = side_type or BookSide
        self._bids = side(float(BUY))
        self._asks = side(float(SELL))
        self._invalid_reason = "no snapshot yet"
        self.sequence = 0
        self.last_update_ns = 0
        self.updates = 0
        self.ignored_deltas = 0

    # ----------------------------------------------------------------------------------------
    # Updates
    # ----------------------------------------------------------------------------------------

    def check(self, event: BookSnapshot | BookDelta) -> None:
        """Validate ``event``'s levels without applying them.

        Raises:
            DataError: a level holds a non-finite or non-positive price or a non-finite or
                negative quantity; the book is marked invalid.
        """
        self._validate(event.bids, "bid")
        self._validate(event.asks, "ask")

    def apply(self, event: BookSnapshot | BookDelta, checked: bool = False,
              cross_check: bool = True) -> None:
        """Apply a snapshot (replaces both sides) or a delta (absolute quantities).

        A good snapshot makes the book valid. While the book is invalid, deltas are counted in
        ``ignored_deltas`` and otherwise ignored: the feed has to resync with a snapshot.

        Args:
            event: The market-data event; its ``symbol`` must be this book's symbol.
            checked: ``check(event)`` already passed; skip validating the levels again.
            cross_check: Check for a crossed book now. False books one part of an update
                split in two (the halves may cross between them); the caller then calls
                ``check_crossed`` once the whole update is in.

        Raises:
            DataError: The event belongs to another symbol (the book is left untouched), holds
                a non-finite or non-positive price or a non-finite or negative quantity (the
                book is marked invalid and nothing of the event is applied), or leaves the book
                crossed (the event is applied and the book marked invalid).
        """
        if event.symbol != self.symbol:
            raise DataError(f"{self.symbol}: book got an event for {event.symbol!r}")
        is_snapshot = isinstance(event, BookSnapshot)
        if not is_snapshot and self._invalid_reason:
            self.ignored_deltas += 1
            return
        if not checked:
            self._validate(event.bids, "bid")
            self._validate(event.asks, "ask")
        if is_snapshot:
            self._bids.replace(event.bids)
            self._asks.replace(event.asks)
        else:
            self._bids.update(event.bids)
            self._asks.update(event.asks)
        self.sequence = event.sequence
        self.last_update_ns = event.ts_local_ns
        self.updates += 1
        if cross_check:
            self.check_crossed()
        if is_snapshot:
            self._invalid_reason = ""

    def check_crossed(self) -> None:
        """Mark the book invalid and raise if its best bid is at or above its best ask.

        Raises:
            DataError: The book is crossed.
        """
        if self._bids.best() >= -self._asks.best():  # is_crossed(), inlined: once per update
            reason = (
                f"crossed book: best bid {self.best_bid!r} >= best ask {self.best_ask!r} "
                f"(sequence {self.sequence})"
            )
            self.invalidate(reason)
            raise DataError(f"{self.symbol}: {reason}")

    def invalidate(self, reason: str) -> None:
        """Mark the book invalid (sequence gap, ``BookInvalid`` event, corrupt data).

        Args:
            reason: Why; kept in ``invalid_reason`` until the next good snapshot.
        """
        # An empty reason would read as "valid", so always keep something to show.
        self._invalid_reason = reason or "invalidated"

    def _validate(self, levels: Sequence[Level], side_name: str) -> None:
        """Raise ``DataError`` (and invalidate) if any level in ``levels`` is corrupt."""
        bad = _first_bad_level(levels)
        if bad is None:
            return
        price, qty = bad
        reason = (
            f"corrupt {side_name} level (price={price!r}, qty={qty!r}): price must be finite "
            "and > 0, qty finite and >= 0"
        )
        self.invalidate(reason)
        raise DataError(f"{self.symbol}: {reason}")

    # ----------------------------------------------------------------------------------------
    # State
    # ----------------------------------------------------------------------------------------

    @property
    def valid(self) -> bool:
        """Whether the book is in sync and uncrossed, so its prices may be quoted against."""
        return not self._invalid_reason

    @property
    def invalid_reason(self) -> str:
        """Why the book is invalid; empty while it is valid."""
        return self._invalid_reason

    def is_crossed(self) -> bool:
        """Return True when both sides are present and the best bid is >= the best ask."""
        # An empty side's best is nan, and comparisons with nan are False.
        return self._bids.best() >= -self._asks.best()

    # ----------------------------------------------------------------------------------------
    # Best of book
    # ----------------------------------------------------------------------------------------

    @property
    def best_bid(self) -> float:
        """The highest bid price, or nan when there are no bids."""
        return self._bids.best()

    @property
    def best_ask(self) -> float:
        """The lowest ask price, or nan when there are no asks."""
        return -self._asks.best()

    @property
    def best_bid_qty(self) -> float:
        """The quantity at the best bid, or 0.0 when there are no bids."""
        return self._bids.best_qty()

    @property
    def best_ask_qty(self) -> float:
        """The quantity at the best ask, or 0.0 when there are no asks."""
        return self._asks.best_qty()

    def touch(self) -> tuple[float, float]:
        """``(best_bid, best_ask)`` in one call (nan for a side with no level)."""
        return self._bids.best(), -self._asks.best()

    @property
    def mid(self) -> float:
        """The mid price, or nan unless both sides have a level."""
        return (self._bids.best() + -self._asks.best()) * 0.5

    @property
    def spread(self) -> float:
        """Best ask minus best bid, or nan unless both sides have a level."""
        return -self._asks.best() - self._bids.best()

    # ----------------------------------------------------------------------------------------
    # Depth
    # ----------------------------------------------------------------------------------------

    def _side(self, side: Side) -> SideStore:
        return self._bids if side is BUY else self._asks

    def qty_at(self, side: Side, price: float) -> float:
        """Return the quantity resting at ``price`` on ``side`` (BUY = bids), 0.0 if no level."""
        book_side = self._bids if side is BUY else self._asks
        return book_side.get(book_side.sign * price)

    def depth(self, side: Side, n: int) -> list[Level]:
        """Return up to ``n`` levels of ``side`` (BUY = bids), best first."""
        return self._side(side).top(n)

    def cumulative_qty(self, side: Side, price: float) -> float:
        """Return the total quantity on ``side`` at prices at or better than ``price``.

        Better means higher for bids and lower for asks: this is the quantity that trades before
        (or together with) a resting order at ``price``.
        """
        book_side = self._side(side)
        return book_side.qty_from(book_side.sign * price)

    def settle_take(self, side: Side, text: str,
                    from_end: bool) -> tuple[Sequence[Level], float, str]:
        """Split off the levels of a raw level array of ``side``, nearest the touch first (from
        its end when ``from_end``), to book before no further one can change that side's best.

        For a parser's deferred levels (``DeepLevels.settle``): exact for an array sorted by
        price, as venues send them. Nothing is booked. Returns (those levels in array order,
        the price of the boundary level next to them or nan, the rest of the array, raw,
        starting with the boundary level or ""); ``((), nan, text)`` when none is needed. The
        compiled side returns the levels as a ``LevelRun``: read once, no object per level.

        Raises:
            ValueError: The levels read are corrupt (as ``split_levels`` would raise).
        """
        return self._side(side).settle_take(text, from_end)

    def levels(self, side: Side) -> int:
        """Return the number of price levels on ``side`` (BUY = bids)."""
        return len(self._side(side))
