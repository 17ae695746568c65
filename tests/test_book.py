"""Tests for bot.book: snapshots, deltas, validation, crossing, depth, and a reference model."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bot.book
from bot.book import OrderBook, PyBookSide
from bot.errors import DataError
from bot.events import BookDelta, BookSnapshot, Level, Side

SYMBOL = "BTCUSDT"
NAN = float("nan")
INF = float("inf")


def snapshot(
    bids: list[Level], asks: list[Level], sequence: int = 1, ts: int = 1_000
) -> BookSnapshot:
    return BookSnapshot(ts, ts + 5, SYMBOL, tuple(bids), tuple(asks), sequence)


def delta(
    bids: list[Level] | None = None,
    asks: list[Level] | None = None,
    sequence: int = 2,
    ts: int = 2_000,
) -> BookDelta:
    return BookDelta(ts, ts + 5, SYMBOL, tuple(bids or ()), tuple(asks or ()), sequence)


def state(book: OrderBook) -> tuple[list[Level], list[Level], int, int, int]:
    return (
        book.depth(Side.BUY, 1_000),
        book.depth(Side.SELL, 1_000),
        book.sequence,
        book.last_update_ns,
        book.updates,
    )


@pytest.fixture(autouse=True, params=["compiled", "reference"])
def _side_type(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every test on the compiled side and on its pure-Python reference."""
    if request.param == "reference":
        monkeypatch.setattr(bot.book, "BookSide", PyBookSide)
    elif not bot.book.COMPILED:
        pytest.skip("bot._cbook not built, or MMBOT_PURE_PYTHON set")


@pytest.fixture
def book() -> OrderBook:
    book = OrderBook(SYMBOL)
    book.apply(snapshot([(100.0, 1.0), (99.5, 2.0), (99.0, 3.0)], [(100.5, 1.5), (101.0, 2.5)]))
    return book


# --------------------------------------------------------------------------------------------
# Basics
# --------------------------------------------------------------------------------------------


def test_new_book_is_invalid_and_empty_until_first_snapshot() -> None:
    book = OrderBook(SYMBOL)

    assert not book.valid
    assert book.invalid_reason == "no snapshot yet"
    assert math.isnan(book.best_bid)
    assert math.isnan(book.best_ask)
    assert math.isnan(book.mid)
    assert book.best_bid_qty == 0.0


def test_snapshot_sets_both_sides_and_makes_book_valid(book: OrderBook) -> None:
    assert book.valid
    assert book.invalid_reason == ""
    assert book.best_bid == 100.0
    assert book.best_ask == 100.5
    assert book.best_bid_qty == 1.0
    assert book.best_ask_qty == 1.5
    assert book.mid == 100.25
    assert book.spread == 0.5
    assert book.sequence == 1
    assert book.last_update_ns == 1_005
    assert book.updates == 1


def test_snapshot_sorts_unsorted_levels_and_skips_zero_quantities() -> None:
    book = OrderBook(SYMBOL)

    book.apply(snapshot([(99.0, 3.0), (100.0, 1.0), (98.0, 0.0)], [(102.0, 1.0), (101.0, 2.0)]))

    assert book.depth(Side.BUY, 5) == [(100.0, 1.0), (99.0, 3.0)]
    assert book.depth(Side.SELL, 5) == [(101.0, 2.0), (102.0, 1.0)]


def test_snapshot_replaces_previous_levels(book: OrderBook) -> None:
    book.apply(snapshot([(90.0, 1.0)], [(91.0, 1.0)], sequence=7))

    assert book.depth(Side.BUY, 10) == [(90.0, 1.0)]
    assert book.depth(Side.SELL, 10) == [(91.0, 1.0)]
    assert book.sequence == 7


def test_delta_sets_absolute_quantities_and_adds_levels(book: OrderBook) -> None:
    book.apply(delta(bids=[(100.0, 4.0), (100.25, 0.5)], asks=[(100.75, 1.0)], sequence=9))

    assert book.best_bid == 100.25
    assert book.qty_at(Side.BUY, 100.0) == 4.0
    assert book.qty_at(Side.SELL, 100.75) == 1.0
    assert book.levels(Side.BUY) == 4
    assert book.levels(Side.SELL) == 3
    assert book.sequence == 9
    assert book.last_update_ns == 2_005
    assert book.updates == 2


def test_delta_with_zero_quantity_removes_level_and_missing_level_is_fine(
    book: OrderBook,
) -> None:
    book.apply(delta(bids=[(100.0, 0.0), (42.0, 0.0)], asks=[(100.5, 0.0)]))

    assert book.valid
    assert book.best_bid == 99.5
    assert book.best_ask == 101.0
    assert book.qty_at(Side.BUY, 100.0) == 0.0
    assert book.levels(Side.BUY) == 2
    assert book.levels(Side.SELL) == 1


def test_empty_side_is_valid_but_has_no_mid(book: OrderBook) -> None:
    book.apply(delta(asks=[(100.5, 0.0), (101.0, 0.0)]))

    assert book.valid
    assert book.best_bid == 100.0
    assert math.isnan(book.best_ask)
    assert book.best_ask_qty == 0.0
    assert math.isnan(book.mid)
    assert math.isnan(book.spread)
    assert not book.is_crossed()


def test_prices_parsed_from_equal_strings_hit_the_same_level() -> None:
    book = OrderBook(SYMBOL)
    book.apply(snapshot([(float("64123.45"), 1.0)], [(float("64123.46"), 1.0)]))

    book.apply(delta(bids=[(float("64123.45"), 0.0)]))

    assert book.levels(Side.BUY) == 0


# --------------------------------------------------------------------------------------------
# Corrupt data
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bids", "asks", "fragment"),
    [
        ([(NAN, 1.0)], [], "bid level (price=nan"),
        ([(99.0, NAN)], [], "qty=nan"),
        ([], [(INF, 1.0)], "ask level (price=inf"),
        ([], [(101.0, INF)], "qty=inf"),
        ([(99.0, -1.0)], [], "qty=-1.0"),
        ([(0.0, 1.0)], [], "price=0.0"),
        ([], [(-101.0, 1.0)], "price=-101.0"),
    ],
    ids=["nan-price", "nan-qty", "inf-price", "inf-qty", "negative-qty", "zero-price", "neg-price"],
)
def test_corrupt_delta_raises_invalidates_and_applies_nothing(
    book: OrderBook, bids: list[Level], asks: list[Level], fragment: str
) -> None:
    # A good level first: it must not be applied either, the event is rejected whole.
    event = delta(bids=[(99.75, 5.0), *bids], asks=[(100.75, 5.0), *asks])
    before = state(book)

    with pytest.raises(DataError, match="corrupt") as info:
        book.apply(event)

    assert fragment in str(info.value)
    assert not book.valid
    assert fragment in book.invalid_reason
    assert state(book) == before


def test_corrupt_snapshot_invalidates_and_keeps_previous_levels(book: OrderBook) -> None:
    before = state(book)

    with pytest.raises(DataError, match="corrupt ask level"):
        book.apply(snapshot([(90.0, 1.0)], [(91.0, NAN)], sequence=5))

    assert not book.valid
    assert state(book) == before


def test_delta_that_crosses_the_book_is_applied_and_invalidates(book: OrderBook) -> None:
    with pytest.raises(DataError, match="crossed book"):
        book.apply(delta(bids=[(100.5, 1.0)], sequence=3))

    assert not book.valid
    assert book.invalid_reason.startswith("crossed book")
    assert book.is_crossed()
    assert book.sequence == 3


def test_locked_book_counts_as_crossed(book: OrderBook) -> None:
    with pytest.raises(DataError, match="crossed book"):
        book.apply(delta(asks=[(100.0, 1.0)]))

    assert not book.valid


def test_crossed_snapshot_leaves_book_invalid() -> None:
    book = OrderBook(SYMBOL)

    with pytest.raises(DataError, match="crossed book"):
        book.apply(snapshot([(101.0, 1.0)], [(100.0, 1.0)]))

    assert not book.valid


def test_deltas_are_ignored_while_invalid_and_snapshot_restores(book: OrderBook) -> None:
    book.invalidate("sequence gap 10 -> 12")
    before = state(book)

    book.apply(delta(bids=[(99.75, 1.0)], sequence=13))
    book.apply(delta(bids=[(NAN, 1.0)], sequence=14))

    assert state(book) == before
    assert book.ignored_deltas == 2
    assert book.invalid_reason == "sequence gap 10 -> 12"

    book.apply(snapshot([(98.0, 1.0)], [(98.5, 1.0)], sequence=20))

    assert book.valid
    assert book.best_bid == 98.0
    book.apply(delta(bids=[(98.25, 2.0)], sequence=21))
    assert book.best_bid == 98.25
    assert book.ignored_deltas == 2


def test_deltas_before_the_first_snapshot_are_ignored() -> None:
    book = OrderBook(SYMBOL)

    book.apply(delta(bids=[(99.0, 1.0)]))

    assert book.levels(Side.BUY) == 0
    assert book.ignored_deltas == 1


def test_invalidate_with_empty_reason_still_invalidates(book: OrderBook) -> None:
    book.invalidate("")

    assert not book.valid
    assert book.invalid_reason


def test_event_for_another_symbol_raises_and_leaves_book_untouched(book: OrderBook) -> None:
    before = state(book)
    event = BookDelta(1, 2, "ETHUSDT", ((100.25, 1.0),), ())

    with pytest.raises(DataError, match="ETHUSDT"):
        book.apply(event)

    assert book.valid
    assert state(book) == before


# --------------------------------------------------------------------------------------------
# Depth queries
# --------------------------------------------------------------------------------------------


def test_depth_returns_best_first_and_truncates(book: OrderBook) -> None:
    assert book.depth(Side.BUY, 2) == [(100.0, 1.0), (99.5, 2.0)]
    assert book.depth(Side.SELL, 1) == [(100.5, 1.5)]
    assert book.depth(Side.SELL, 10) == [(100.5, 1.5), (101.0, 2.5)]
    assert book.depth(Side.BUY, 0) == []
    assert book.depth(Side.BUY, -1) == []


def test_cumulative_qty_sums_levels_at_or_better_than_price(book: OrderBook) -> None:
    assert book.cumulative_qty(Side.BUY, 100.0) == 1.0
    assert book.cumulative_qty(Side.BUY, 99.5) == 3.0
    assert book.cumulative_qty(Side.BUY, 99.2) == 3.0
    assert book.cumulative_qty(Side.BUY, 50.0) == 6.0
    assert book.cumulative_qty(Side.BUY, 100.1) == 0.0
    assert book.cumulative_qty(Side.SELL, 100.5) == 1.5
    assert book.cumulative_qty(Side.SELL, 100.9) == 1.5
    assert book.cumulative_qty(Side.SELL, 101.0) == 4.0
    assert book.cumulative_qty(Side.SELL, 100.4) == 0.0


def test_qty_at_reads_the_requested_side(book: OrderBook) -> None:
    assert book.qty_at(Side.BUY, 99.5) == 2.0
    assert book.qty_at(Side.SELL, 99.5) == 0.0
    assert book.qty_at(Side.SELL, 101.0) == 2.5


# --------------------------------------------------------------------------------------------
# Property test against a reference model
# --------------------------------------------------------------------------------------------


class ReferenceBook:
    """The obvious book: two plain dicts, sorted whenever asked."""

    def __init__(self) -> None:
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self.valid = False

    @staticmethod
    def good(levels: tuple[Level, ...]) -> bool:
        return all(math.isfinite(p) and p > 0 and math.isfinite(q) and q >= 0 for p, q in levels)

    def apply(self, event: BookSnapshot | BookDelta) -> bool:
        """Apply the event; return True when the real book must raise DataError."""
        is_snapshot = isinstance(event, BookSnapshot)
        if not is_snapshot and not self.valid:
            return False
        if not (self.good(event.bids) and self.good(event.asks)):
            self.valid = False
            return True
        if is_snapshot:
            self.bids = {}
            self.asks = {}
        for book, levels in ((self.bids, event.bids), (self.asks, event.asks)):
            for price, qty in levels:
                if qty == 0:
                    book.pop(price, None)
                else:
                    book[price] = qty
        if self.bids and self.asks and max(self.bids) >= min(self.asks):
            self.valid = False
            return True
        self.valid = True
        return False

    def depth(self, side: Side, n: int) -> list[Level]:
        if side is Side.BUY:
            return sorted(self.bids.items(), reverse=True)[:n]
        return sorted(self.asks.items())[:n]


# A small price grid makes repeated prices and removals frequent; the two sides overlap only on
# part of it so that most books stay valid but crossings still happen.
bid_prices = st.integers(min_value=1, max_value=24).map(lambda i: i * 0.25)
ask_prices = st.integers(min_value=21, max_value=40).map(lambda i: i * 0.25)
good_qty = st.one_of(st.just(0.0), st.floats(min_value=0.001, max_value=100.0))
bid_levels = st.lists(st.tuples(bid_prices, good_qty), max_size=4).map(tuple)
ask_levels = st.lists(st.tuples(ask_prices, good_qty), max_size=4).map(tuple)
bad_level = st.one_of(
    st.tuples(bid_prices, st.sampled_from([NAN, INF, -1.0])),
    st.tuples(st.sampled_from([NAN, INF, 0.0, -1.0]), good_qty),
)


@st.composite
def events(draw: st.DrawFn) -> BookSnapshot | BookDelta:
    kind = draw(st.sampled_from(["snapshot", "snapshot", "bad", *["delta"] * 9]))
    bids = draw(bid_levels)
    asks = draw(ask_levels)
    if kind == "bad":
        bad = draw(bad_level)
        if draw(st.booleans()):
            bids = (*bids, bad)
        else:
            asks = (*asks, bad)
    if kind == "snapshot" or (kind == "bad" and draw(st.booleans())):
        return BookSnapshot(0, 0, SYMBOL, bids, asks)
    return BookDelta(0, 0, SYMBOL, bids, asks)


@settings(max_examples=300)
@given(
    st.builds(BookSnapshot, st.just(0), st.just(0), st.just(SYMBOL), bid_levels, ask_levels),
    st.lists(events(), max_size=40),
)
def test_book_agrees_with_reference_model(
    first: BookSnapshot, rest: list[BookSnapshot | BookDelta]
) -> None:
    book = OrderBook(SYMBOL)
    reference = ReferenceBook()

    for event in [first, *rest]:
        must_raise = reference.apply(event)
        if must_raise:
            with pytest.raises(DataError):
                book.apply(event)
        else:
            book.apply(event)

        assert book.valid == reference.valid
        ref_bids = reference.depth(Side.BUY, 1_000)
        ref_asks = reference.depth(Side.SELL, 1_000)
        assert book.depth(Side.BUY, 1_000) == ref_bids
        assert book.depth(Side.SELL, 1_000) == ref_asks
        assert book.depth(Side.BUY, 3) == ref_bids[:3]
        assert book.depth(Side.SELL, 3) == ref_asks[:3]
        if ref_bids:
            assert (book.best_bid, book.best_bid_qty) == ref_bids[0]
        else:
            assert math.isnan(book.best_bid)
        if ref_asks:
            assert (book.best_ask, book.best_ask_qty) == ref_asks[0]
        else:
            assert math.isnan(book.best_ask)
        for i in range(1, 41):
            price = i * 0.25
            assert book.qty_at(Side.BUY, price) == reference.bids.get(price, 0.0)
            assert book.qty_at(Side.SELL, price) == reference.asks.get(price, 0.0)
        assert book.is_crossed() == (
            bool(ref_bids) and bool(ref_asks) and ref_bids[0][0] >= ref_asks[0][0]
        )
