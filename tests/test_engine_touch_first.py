"""Split book updates (``DeferredBookDelta``): quoting before the deep levels are booked must
give the decisions, fills and book that booking the whole update first gives."""

from __future__ import annotations

from typing import Any

import pytest

from bot.book import OrderBook
from bot.engine import DEEPEN_AT_LEAST, Engine
from bot.errors import DataError
from bot.events import (
    BookDelta,
    BookSnapshot,
    CancelOrder,
    DeferredBookDelta,
    Level,
    MarketEvent,
    PlaceOrder,
    SettleBook,
    Side,
)
from tests.test_cbook import brute_settle_count
from tests.test_engine import RecordingVenue, make_engine, settings_for

S = 1_000_000_000
TICK = 0.01


class ListDeep:
    """``DeepLevels`` over in-memory levels, nearest the touch handed out first."""

    def __init__(self, bids: list[Level], asks: list[Level], corrupt: bool = False,
                 settle_short: bool = False) -> None:
        self.bids = sorted(bids)  # ascending, as Binance futures send them: nearest bids last
        self.asks = sorted(asks)  # nearest asks first
        self.corrupt = corrupt
        self.settle_short = settle_short  # settle hands out one level per side, as if unsorted
        self.calls: list[str] = []
        self.near = delta([], [])

    def settle(self, book: SettleBook) -> tuple[BookDelta, float, float]:
        """Hand out the fewest nearest levels after which the book's touch is final.

        Found by brute force on a copy of the book, independently of ``settle_take``.
        """
        self.calls.append("settle")
        if self.corrupt:
            raise DataError("T-USD: corrupt depth level")
        assert isinstance(book, OrderBook)
        nb = brute_settle_count(book.depth(Side.BUY, 10**6), self.bids[::-1], 1.0)
        na = brute_settle_count(book.depth(Side.SELL, 10**6), self.asks, -1.0)
        if self.settle_short:
            nb, na = min(nb, 1), min(na, 1)
        bids, self.bids = self.bids[len(self.bids) - nb:], self.bids[:len(self.bids) - nb]
        asks, self.asks = self.asks[:na], self.asks[na:]
        return (delta(bids, asks), self.bids[-1][0] if self.bids else -float("inf"),
                self.asks[0][0] if self.asks else float("inf"))

    def through(self, bid_floor: float, ask_cap: float,
                at_least: int = 1) -> tuple[BookDelta, float, float]:
        self.calls.append(f"through({bid_floor}, {ask_cap}, {at_least})")
        if self.corrupt:
            raise DataError("T-USD: corrupt depth level")
        nb = 0
        if self.bids and self.bids[-1][0] >= bid_floor:
            reach = sum(1 for price, _ in self.bids if price >= bid_floor)
            nb = max(at_least, reach)
        na = 0
        if self.asks and self.asks[0][0] <= ask_cap:
            reach = sum(1 for price, _ in self.asks if price <= ask_cap)
            na = max(at_least, reach)
        bids, self.bids = self.bids[len(self.bids) - nb:], self.bids[:len(self.bids) - nb]
        asks, self.asks = self.asks[:na], self.asks[na:]
        return (delta(bids, asks), self.bids[-1][0] if self.bids else -float("inf"),
                self.asks[0][0] if self.asks else float("inf"))

    def rest(self) -> BookDelta:
        self.calls.append("rest")
        if self.corrupt:
            raise DataError("T-USD: corrupt depth level")
        bids, asks, self.bids, self.asks = self.bids, self.asks, [], []
        return delta(bids, asks)

    def whole(self) -> BookDelta:
        near = self.near
        rest = self.rest()
        return delta([*rest.bids, *near.bids], [*near.asks, *rest.asks])


def delta(bids: list[Level], asks: list[Level], ts_s: float = 2.0) -> BookDelta:
    ts = round(ts_s * S)
    return BookDelta(ts, ts, "T-USD", tuple(bids), tuple(asks), 2, True)


def split(bids: list[Level], asks: list[Level], near: int = 4,
          corrupt: bool = False) -> tuple[DeferredBookDelta, ListDeep]:
    """Split like a parser: the ``near`` bids and asks nearest the touch now, the rest later."""
    bids, asks = sorted(bids), sorted(asks)
    deep = ListDeep(bids[:-near], asks[near:], corrupt)
    deep.near = delta(bids[-near:], asks[:near])
    ts = 2 * S
    event = DeferredBookDelta(
        ts, ts, "T-USD", 2, deep.near,
        bids[-near - 1][0] if len(bids) > near else -float("inf"),
        asks[near][0] if len(asks) > near else float("inf"), deep)
    return event, deep


def ladder(mid: float, levels: int) -> BookSnapshot:
    """A snapshot with ``levels`` levels a tick apart on each side of ``mid``."""
    bids = tuple((round(mid - (i + 1) * TICK, 2), 1.0 + i) for i in range(levels))
    asks = tuple((round(mid + (i + 1) * TICK, 2), 1.0 + i) for i in range(levels))
    return BookSnapshot(S, S, "T-USD", bids, asks, 1)


def run(events: list[MarketEvent], **settings: dict[str, Any]
        ) -> tuple[Engine, RecordingVenue]:
    conf = {"sim_venue": {"fill_model": "queue", "entry_latency_ms": 5.0,
                          "cancel_latency_ms": 5.0}}
    conf.update(settings)
    engine, venue, _ = make_engine(settings_for(**conf))
    for event in events:
        engine.step(event)
    return engine, venue


def outcome(engine: Engine, venue: RecordingVenue) -> tuple[Any, ...]:
    sent = [(ts, type(c).__name__, getattr(c, "price", None)) for ts, c in venue.sent]
    return (sent, engine.book.depth(Side.BUY, 1000), engine.book.depth(Side.SELL, 1000),
            engine.book.valid, engine.portfolio.position, engine.stats.book_updates,
            sorted((o.side, o.price, o.queue_ahead) for o in venue.inner.open_orders.values()))


def whole_of(event: DeferredBookDelta, deep: ListDeep) -> BookDelta:
    return event.whole()


def test_deep_levels_are_booked_after_the_commands_when_the_touch_is_settled() -> None:
    # The touch moves up one tick; deep levels change far from it.
    bids = [(100.0, 2.0), (99.99, 0.0)] + [(round(99.9 - i * TICK, 2), 7.0) for i in range(40)]
    asks = [(100.02, 0.0), (100.03, 3.0)] + [(round(100.2 + i * TICK, 2), 7.0) for i in range(40)]
    event, deep = split(bids, asks)
    first = ladder(100.01, 60)
    engine, venue = run([first, event])
    assert deep.calls == ["rest"]  # no deepening: the near levels settled the touch
    assert engine.book.best_bid == 100.0 and engine.book.best_ask == 100.03
    assert engine.stats.bad_events == 0 and engine.book.valid

    reference, ref_venue = run([first, whole_of(*split(bids, asks))])
    assert outcome(engine, venue) == outcome(reference, ref_venue)


def test_a_sweep_through_the_near_levels_books_deeper_levels_before_quoting() -> None:
    # Sellers sweep 60 bid levels: the near part deletes only the top 4, so the new best bid
    # is only known once the deep deletions are booked.
    first = ladder(100.0, 80)
    bids = [(round(100.0 - (i + 1) * TICK, 2), 0.0) for i in range(60)]
    asks = [(99.4, 0.0), (99.41, 4.0)]  # a new ask just above the new best bid
    event, deep = split(bids, asks)
    engine, venue = run([first, event])
    # One round: exactly the deep deletions down to the new best bid (all of them here).
    assert deep.calls == ["settle"]
    assert engine.book.best_bid == pytest.approx(99.39)
    assert engine.book.best_ask == pytest.approx(99.41)
    assert engine.book.valid and engine.stats.bad_events == 0
    # Every quote was made on the book after the sweep, never on the stale one.
    after = [command for ts, command in venue.sent if ts == 2 * S]
    assert any(isinstance(command, PlaceOrder) for command in after)
    for command in after:
        if isinstance(command, PlaceOrder):
            if command.side is Side.BUY:
                assert command.price < 99.41
            else:
                assert command.price > 99.39

    reference, ref_venue = run([first, whole_of(*split(bids, asks))])
    assert outcome(engine, venue) == outcome(reference, ref_venue)


def test_levels_settle_cannot_finish_are_booked_in_growing_rounds() -> None:
    # Deferred levels out of price order (settle hands out too few): the engine sees the touch
    # is not yet clear of them and books the levels that reach it, DEEPEN_AT_LEAST first, then
    # 4x more, until it is. The outcome is still that of booking the update whole.
    first = ladder(100.0, 80)
    bids = [(round(100.0 - (i + 1) * TICK, 2), 0.0) for i in range(60)]
    asks = [(99.4, 0.0), (99.41, 4.0)]
    event, deep = split(bids, asks)
    deep.settle_short = True
    engine, venue = run([first, event])
    floor = round(100.0 - 6 * TICK, 2)  # the near 4 and the one level settle took are gone
    floor2 = round(100.0 - (6 + DEEPEN_AT_LEAST) * TICK, 2)
    assert deep.calls == ["settle", f"through({floor}, -inf, {DEEPEN_AT_LEAST})",
                          f"through({floor2}, -inf, {4 * DEEPEN_AT_LEAST})"]
    assert engine.book.best_bid == pytest.approx(99.39) and engine.book.valid

    reference, ref_venue = run([first, whole_of(*split(bids, asks))])
    assert outcome(engine, venue) == outcome(reference, ref_venue)


def test_a_book_crossed_between_the_two_parts_is_not_an_error() -> None:
    # Buyers lift 10 ask levels: the near part adds bids above asks that only the deep part
    # deletes. Checked once the whole update is in, the book is not crossed.
    first = ladder(100.0, 60)
    asks = [(round(100.0 + (i + 1) * TICK, 2), 0.0) for i in range(10)]
    bids = [(round(100.0 + (i + 1) * TICK, 2), 1.0) for i in range(6)]  # new bids up to 100.06
    event, _ = split(bids, asks, near=4)
    engine, venue = run([first, event])
    assert engine.book.valid, engine.book.invalid_reason
    assert engine.stats.book_invalidations == 0
    assert engine.book.best_bid == pytest.approx(100.06)
    assert engine.book.best_ask == pytest.approx(100.11)
    reference, ref_venue = run([first, whole_of(*split(bids, asks, near=4))])
    assert outcome(engine, venue) == outcome(reference, ref_venue)


def test_a_truly_crossed_update_still_invalidates_the_book() -> None:
    first = ladder(100.0, 60)
    bids = [(100.05, 1.0)] + [(round(99.5 - i * TICK, 2), 1.0) for i in range(10)]
    asks = [(round(100.5 + i * TICK, 2), 1.0) for i in range(10)]
    event, _ = split(bids, asks, near=2)
    engine, _ = run([first, event])
    assert not engine.book.valid
    assert "crossed" in engine.book.invalid_reason
    assert engine.stats.book_invalidations == 1


def test_corrupt_deep_levels_invalidate_the_book_and_pull_the_quotes() -> None:
    first = ladder(100.0, 60)
    bids = [(round(99.99 - i * TICK, 2), 3.0) for i in range(20)]
    asks = [(round(100.01 + i * TICK, 2), 3.0) for i in range(20)]
    engine, venue = run([first])
    quoted = [c for _, c in venue.sent if isinstance(c, PlaceOrder)]
    assert quoted
    event, _ = split(bids, asks, corrupt=True)
    engine.step(event)
    assert not engine.book.valid
    assert "corrupt" in engine.book.invalid_reason
    assert engine.stats.bad_events == 1
    cancels = {c.client_order_id for _, c in venue.sent if isinstance(c, CancelOrder)}
    assert cancels == {c.client_order_id for c in quoted}


def test_with_no_entry_latency_the_update_is_booked_whole_before_quoting() -> None:
    # An order that rests at once reads its queue from the book: the deep levels must be in.
    first = ladder(100.0, 60)
    bids = [(round(99.99 - i * TICK, 2), 9.0) for i in range(20)]
    asks = [(round(100.01 + i * TICK, 2), 9.0) for i in range(20)]
    event, deep = split(bids, asks)
    immediate = {"sim_venue": {"fill_model": "queue", "entry_latency_ms": 0.0,
                               "cancel_latency_ms": 0.0}}
    engine, venue = run([first, event], **immediate)
    assert deep.calls == ["rest"]
    reference, ref_venue = run([first, whole_of(*split(bids, asks))], **immediate)
    assert outcome(engine, venue) == outcome(reference, ref_venue)


def test_an_update_while_the_book_is_invalid_is_ignored_whole() -> None:
    bids = [(round(99.99 - i * TICK, 2), 9.0) for i in range(20)]
    asks = [(round(100.01 + i * TICK, 2), 9.0) for i in range(20)]
    event, _ = split(bids, asks)
    engine, venue = run([event])
    assert not engine.book.valid
    assert engine.book.ignored_deltas == 1
    assert venue.sent == []
