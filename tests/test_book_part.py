"""The compiled booking of one part of a split update (``bot._cbook.BookPart``) against Python.

``Engine._book_part`` and the engine's touch-first path ask the simulated venue's kernel
first: it runs ``SimVenue.on_market(part)`` (the queue pass) and then
``OrderBook.apply(part, checked=True, cross_check=False)``, and tells where the touch stands.
Whenever it answers None the engine calls the two in Python. Replays with and without it must
end the same; on random books, orders and parts, an answer must leave the book and the venue
exactly as the Python leaves them, with the status the engine would have computed, and a None
answer must change nothing.
"""

from __future__ import annotations

import gc
import math
import random
import weakref
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.sim_venue import FillModel, SimVenue, SimVenueConfig, _Order
from bot.app import MarketRules, build_engine
from bot.book import OrderBook
from bot.clock import VirtualClock
from bot.engine import Engine
from bot.events import BUY, SELL, BookDelta, BookSnapshot, DeferredBookDelta, Level, OrderEvent
from bot.native import cbook
from bot.paper import sim_venue_config
from bot.replay import resolve_source, run_replay
from bot.settings import load_settings
from tests.differential import assert_same_replays

pytestmark = pytest.mark.skipif(cbook is None, reason="C extension not built")

ROOT = Path(__file__).resolve().parents[1]
SYM = "BTCUSDT"
TICK = 0.1
INF = math.inf
S_NS = 1_000_000_000


@pytest.fixture
def answers(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """Count the kernel's answers and fallbacks in the venues made meanwhile."""
    counts: Counter[str] = Counter()
    build = SimVenue.book_part_kernel

    def counting(venue: SimVenue) -> Any:
        kernel = build(venue)
        assert kernel is not None

        def call(part: BookDelta, low: float, high: float) -> int | None:
            pending = bool(venue._traded) and bool(venue._orders)
            out = kernel(part, low, high)
            counts["fallback" if out is None else f"status_{out}"] += 1
            counts["with_traded"] += pending and out is not None
            return out
        return call

    monkeypatch.setattr(SimVenue, "book_part_kernel", counting)
    yield counts


@pytest.mark.parametrize("fill_model", ["queue", "touch", "trade-through"])
def test_replay_with_and_without_the_kernel_is_identical(
    shared_data: Path, fill_model: str, answers: Counter[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = shared_data / "hftbacktest" / "usdm" / "btcusdt_20240808.gz"
    source = resolve_source([path], None, None)
    settings = load_settings(None, {"sim_venue": {"fill_model": fill_model}}, environ={})
    fast = run_replay(source, settings, None)
    # Every case is exercised: the touch final and quiet, final but to check, not final.
    assert answers["status_1"] > 1000 and answers["status_0"] > 10 and answers["status_2"] > 0
    if fill_model == "queue":  # trade quantity pending at our price: the kernel's case too
        assert answers["with_traded"] > 50
    monkeypatch.setattr(SimVenue, "book_part_kernel", lambda venue: None)
    slow = run_replay(source, settings, None)

    assert assert_same_replays(fast, slow, source, settings)["fills"] > 0
    assert fast.engine.book.updates == slow.engine.book.updates


# ------------------------------------------------------------------------------ unit


def _sink(event: OrderEvent) -> None:
    raise AssertionError(f"a depth part must not emit order events: {event}")


def _market(seed: int, model: FillModel, power: float) -> tuple[OrderBook, SimVenue]:
    """A book around 100 and a venue with a few orders near the touch (same seed, same state)."""
    rng = random.Random(seed)
    book = OrderBook(SYM)
    bids = tuple((round(99.9 - TICK * i, 1), float(rng.randint(1, 9))) for i in range(12))
    asks = tuple((round(100.0 + TICK * i, 1), float(rng.randint(1, 9))) for i in range(12))
    book.apply(BookSnapshot(0, 0, SYM, bids, asks, 1))
    venue = SimVenue(SimVenueConfig(fill_model=model, queue_power=power), VirtualClock(),
                     _sink, book)
    for n in range(rng.randint(0, 5)):
        side = rng.choice((BUY, SELL))
        price = round((99.9 - TICK * rng.randint(-1, 4)) if side is BUY
                      else (100.0 + TICK * rng.randint(-1, 4)), 1)
        ahead = rng.choice((0.0, rng.uniform(0.0, 10.0), rng.uniform(0.0, 3.0)))
        venue._orders[f"o{n}"] = _Order(f"o{n}", side, price, 1.0, 1.0, ahead, 0)
    return book, venue


def _part(rng: random.Random, seq: int) -> BookDelta:
    """A delta of levels near the touch (some at our orders' prices), as tuples or a run."""
    def side(base: float, step: float) -> Any:
        levels: list[Level] = []
        for i in sorted(rng.sample(range(-2, 8), rng.randint(0, 5))):
            qty = rng.choice((0.0, float(rng.randint(1, 12)), rng.uniform(0.1, 12.0)))
            levels.append((round(base + step * i, 1), qty))
        if step < 0:
            levels.reverse()  # Binance lists both sides in ascending price order
        if rng.random() < 0.5:
            return cbook.LevelRun(levels)
        return tuple(levels)
    return BookDelta(seq, seq, SYM, side(99.9, -TICK), side(100.0, TICK), seq, True)


def _state(book: OrderBook, venue: SimVenue) -> tuple[Any, ...]:
    orders = [(o.client_order_id, o.side, o.price, o.remaining, o.queue_ahead)
              for o in venue._orders.values()]
    return (book.depth(BUY, 100), book.depth(SELL, 100), book.sequence, book.last_update_ns,
            book.updates, book.valid, orders, dict(venue._traded))


def _python(book: OrderBook, venue: SimVenue, part: BookDelta, low: float,
            high: float) -> int:
    """What the engine does without the kernel, and the status it would read from it."""
    venue.on_market(part)
    book.apply(part, checked=True, cross_check=False)
    bid, ask = book.touch()
    if not (bid >= low and ask <= high):
        return 0
    crossed = bid >= ask
    through = any(ask <= o.price if o.side is BUY else bid >= o.price
                  for o in venue._orders.values())
    return 2 if crossed or through else 1


def test_answers_equal_the_python_on_random_parts() -> None:
    seen: Counter[Any] = Counter()
    for seed in range(400):
        rng = random.Random(seed)
        model = rng.choice(list(FillModel))
        power = rng.choice((2.0, 1.0, 0.5, 3, 2))
        book, venue = _market(seed, model, power)
        twin_book, twin_venue = _market(seed, model, power)
        kernel = venue.book_part_kernel()
        assert kernel is not None
        traded = rng.random() < 0.4
        if traded:  # trades were counted at some of our prices (or where we no longer are)
            prices = [(o.side, o.price) for o in venue._orders.values()]
            prices += [(BUY, 99.8), (SELL, 100.1), (SELL, 100.0)]
            for key in rng.sample(prices, rng.randint(1, 3)):
                # an int count is not the kernel's case: it leaves those to the Python
                count = rng.uniform(0.0, 6.0) if rng.random() < 0.9 else rng.randint(1, 3)
                venue._traded[key] = twin_venue._traded[key] = count
        for step in range(6):
            part = _part(rng, 2 + step)
            low, high = rng.choice(((-INF, INF), (99.8, 100.1), (99.95, 100.05), (100.0, 99.9)))
            before = _state(book, venue)
            pending = bool(venue._traded)
            status = kernel(part, low, high)
            if status is None:
                assert _state(book, venue) == before, "a None answer must change nothing"
                status = _python(book, venue, part, low, high)
                seen["fallback"] += 1
            else:
                seen[status] += 1
                seen["with_traded"] += pending and model is FillModel.QUEUE
            assert _python(twin_book, twin_venue, part, low, high) == status
            assert _state(book, venue) == _state(twin_book, twin_venue)
            if not book.valid or book.is_crossed():
                break
    assert seen[0] > 50 and seen[1] > 50 and seen[2] > 50
    assert seen["with_traded"] > 50


@pytest.mark.parametrize("case", ["traded_int", "traded_key", "traded_many", "invalid",
                                  "snapshot", "int_price", "many_orders", "overflow",
                                  "nan_ahead", "list_levels", "other_symbol", "int_quantity",
                                  "odd_order"])
def test_not_its_case_answers_none_and_changes_nothing(case: str) -> None:
    book, venue = _market(7, FillModel.QUEUE, 2.0)
    venue._orders["me"] = _Order("me", BUY, 99.9, 1.0, 1.0, 3.0, 0)
    levels: Any = ((99.9, 1.0),)
    part: Any = BookDelta(5, 5, SYM, levels, (), 5, True)
    if case == "traded_int":  # counts are floats (trade quantities summed from 0.0)
        venue._traded[(BUY, 99.9)] = 2
    elif case == "traded_key":
        venue._traded[("BUY", 99.9)] = 2.0  # type: ignore[index]
    elif case == "traded_many":
        for n in range(70):
            venue._traded[(SELL, 101.0 + n)] = 1.0
    elif case == "invalid":
        book.invalidate("gap")
    elif case == "snapshot":
        part = BookSnapshot(5, 5, SYM, levels, ((100.0, 1.0),), 5, True)
    elif case == "int_price":
        venue._orders["me"].price = 100  # type: ignore[assignment]
    elif case == "many_orders":
        for n in range(70):
            venue._orders[f"x{n}"] = _Order(f"x{n}", SELL, 101.0, 1.0, 1.0, 0.0, 0)
    elif case == "overflow":  # Python raises OverflowError on the queue rule's power
        venue._queue_power = 400.0
        venue._orders["me"].queue_ahead = 5.0
        book.apply(BookDelta(4, 4, SYM, ((99.9, 1e300),), (), 4, True))
        part = BookDelta(5, 5, SYM, ((99.9, 1.0),), (), 5, True)
        with pytest.raises(OverflowError):
            _market_copy_python(part)
    elif case == "nan_ahead":
        venue._orders["me"].queue_ahead = math.nan
    elif case == "list_levels":
        part = BookDelta(5, 5, SYM, [(99.9, 1.0)], (), 5, True)
    elif case == "other_symbol":
        part = BookDelta(5, 5, "ETHUSDT", levels, (), 5, True)
    elif case == "int_quantity":
        part = BookDelta(5, 5, SYM, ((99.9, 1),), (), 5, True)
    elif case == "odd_order":
        venue._orders["odd"] = object()  # type: ignore[assignment]
    kernel = venue.book_part_kernel()
    assert kernel is not None
    before = _state(book, venue) if case != "odd_order" else None
    assert kernel(part, -INF, INF) is None
    if before is not None:
        assert _state(book, venue) == before


def _market_copy_python(part: BookDelta) -> None:
    """The Python pass on the overflow case's market: it raises OverflowError."""
    book, venue = _market(7, FillModel.QUEUE, 400.0)
    venue._orders["me"] = _Order("me", BUY, 99.9, 1.0, 1.0, 5.0, 0)
    book.apply(BookDelta(4, 4, SYM, ((99.9, 1e300),), (), 4, True))
    venue.on_market(part)


def test_only_the_exact_simulated_venue_has_a_kernel() -> None:
    class Custom(SimVenue):
        __slots__ = ()

    book = OrderBook(SYM)
    config = SimVenueConfig()
    assert SimVenue(config, VirtualClock(), _sink, book).book_part_kernel() is not None
    assert Custom(config, VirtualClock(), _sink, book).book_part_kernel() is None


def test_an_engine_with_the_kernel_is_freed_by_the_cyclic_gc() -> None:
    # engine -> kernel -> venue -> its sink (the engine's bound method) -> engine: the kernel
    # must show the GC its references, or no engine with a simulated venue would ever be freed.
    def build() -> weakref.ref[Engine]:
        engine, _ = _engine_on_sim_venue(kernel=True)
        return weakref.ref(engine)

    engine = build()
    gc.collect()
    assert engine() is None


# ------------------------------------------------------------------------------ engine


def _engine_on_sim_venue(kernel: bool) -> tuple[Engine, SimVenue]:
    """An engine on the exact simulated venue (so with its kernel unless ``kernel`` is False)."""
    from tests.test_engine import settings_for

    clock = VirtualClock()
    # With an entry latency: with none, a split update is booked whole before quoting.
    settings = settings_for(sim_venue={"entry_latency_ms": 5.0, "cancel_latency_ms": 5.0})
    engine = build_engine(settings, MarketRules(0.01, 0.001), clock, None, log=None)
    venue = SimVenue(sim_venue_config(settings), clock, engine.on_order_event, engine.book)
    engine.attach_venue(venue, simulated=True)
    assert engine._part_kernel is not None
    if not kernel:
        engine._part_kernel = None
    return engine, venue


def _recording(kernel: Any, answers: list[int | None]) -> Any:
    def call(part: BookDelta, low: float, high: float) -> int | None:
        answers.append(kernel(part, low, high))
        return answers[-1]
    return call


@pytest.mark.parametrize("crossing", ["book", "our_bid", "nothing"])
def test_a_kernel_answer_still_lets_the_engine_check_deep_levels_booked_late(
    crossing: str,
) -> None:
    # The split says no deferred level reaches the touch, so the engine quotes and books them
    # after; input out of order breaks that. The kernel's answer for them (2: crossed, or
    # crossing an order) must still send the engine through its checks, as the Python does:
    # a crossed book is invalidated and the quotes pulled, a crossed order is filled; its 1
    # (nothing to check) lets it skip them. Same outcome with and without the kernel.
    from tests.test_engine_touch_first import ListDeep, delta, ladder

    outcomes = []
    for kernel in (True, False):
        engine, venue = _engine_on_sim_venue(kernel)
        engine.step(ladder(100.0, 20))
        engine.step(delta([(99.99, 3.0)], [(100.01, 3.0)], ts_s=1.5))  # quotes rest now
        ours = {o.side: o.price for o in venue._orders.values()}
        assert set(ours) == {BUY, SELL}
        if crossing == "book":  # an ask under the best bid
            deep = ListDeep([], [(99.95, 2.0)])
        elif crossing == "our_bid":  # the book moves down through our bid, uncrossed
            steps = round((99.99 - ours[BUY]) / 0.01)
            gone_bids = [(round(ours[BUY] + 0.01 * i, 2), 0.0) for i in range(steps + 1)]
            gone_asks = [(round(100.01 + 0.01 * i, 2), 0.0) for i in range(20)]
            deep = ListDeep(gone_bids, [*gone_asks, (ours[BUY], 0.5)])
        else:  # a far level, where the split said
            deep = ListDeep([], [(101.50, 2.0)])
        near = delta([(99.99, 4.0)], [])
        ts = 2 * S_NS
        event = DeferredBookDelta(ts, ts, "T-USD", 3, near, -INF, 100.30, deep)
        answers: list[int | None] = []
        if kernel:
            engine._part_kernel = _recording(engine._part_kernel, answers)
        engine.step(event)
        if kernel:  # the near part, then the deep one: both answered by the kernel
            assert answers == [1, 1 if crossing == "nothing" else 2]
        outcomes.append((engine.book.valid, engine.stats.fills, engine.portfolio.position,
                         engine.book.depth(BUY, 50), engine.book.depth(SELL, 50),
                         sorted((o.side, o.price) for o in venue._orders.values())))
    assert outcomes[0] == outcomes[1]
    valid, fills = outcomes[0][0], outcomes[0][1]
    if crossing == "book":
        assert not valid
    elif crossing == "our_bid":
        assert valid and fills == 1
    else:
        assert valid and fills == 0
