"""The compiled book side (bot/_cbook.c) against its pure-Python reference (PyBookSide).

Random operation sequences, edge cases and bad input, then the real Binance USD-M capture
booked by both, then a whole replay with each: every observable must be identical.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bot.book
from bot.book import OrderBook, PyBookSide
from bot.events import BookDelta, BookSnapshot, Level, Side

try:
    from bot._cbook import BookSide as CBookSide
except ImportError:  # pragma: no cover - only where no C compiler was available
    CBookSide = None  # type: ignore[assignment,misc]

# Read at import: the autouse fixture in conftest.py clears MMBOT_* variables for each test.
REQUIRE_CBOOK = os.environ.get("MMBOT_REQUIRE_CBOOK") == "1"
needs_c = pytest.mark.skipif(CBookSide is None, reason="bot._cbook was not built")
NAN = float("nan")


def test_extension_is_built_where_required() -> None:
    # CI sets MMBOT_REQUIRE_CBOOK: there the fallback must not hide a failed build.
    if not REQUIRE_CBOOK and CBookSide is None:
        pytest.skip("bot._cbook was not built (no C compiler at install time)")
    assert CBookSide is not None
    assert bot.book.COMPILED
    assert bot.book.BookSide is CBookSide


def observe(side: Any, probes: list[float]) -> tuple[Any, ...]:
    """Everything a side can tell, in a comparable form (nan made comparable)."""
    best = side.best()
    return (
        len(side),
        side.top(len(side) + 3),
        side.top(2),
        side.top(0),
        side.top(-1),
        "nan" if math.isnan(best) else best,
        side.best_qty(),
        [side.get(p) for p in probes],
        [side.qty_from(p) for p in probes],
    )


# Prices on a coarse grid so updates hit existing levels, delete them and re-add them.
prices = st.integers(1, 40).map(lambda i: 100.0 + i * 0.5)
qtys = st.sampled_from([0.0, 0.0, -0.0, 0.001, 1.0, 2.5, 7.0, 1e-9, 3.3])
level_lists = st.lists(st.tuples(prices, qtys), max_size=30)
orders = st.sampled_from(["as_is", "ascending", "descending", "asc_unique", "desc_unique"])


def arrange(levels: list[Level], order: str) -> list[Level]:
    if order == "as_is":
        return levels
    if order.endswith("unique"):  # strictly monotone: the merge path of the C side
        levels = list({p: (p, q) for p, q in levels}.values())
    return sorted(levels, reverse=order.startswith("desc"))


@needs_c
@settings(max_examples=300, deadline=None)
@given(
    sign=st.sampled_from([1.0, -1.0]),
    ops=st.lists(st.tuples(st.sampled_from(["update", "update", "update", "replace"]),
                           level_lists, orders), max_size=25),
)
def test_random_operations_match_the_reference(
    sign: float, ops: list[tuple[str, list[Level], str]]
) -> None:
    ref, fast = PyBookSide(sign), CBookSide(sign)
    probes = [sign * (100.0 + i * 0.25) for i in range(0, 86)]
    for op, levels, order in ops:
        batch = tuple(arrange(levels, order))
        getattr(ref, op)(batch)
        getattr(fast, op)(batch)
        assert observe(fast, probes) == observe(ref, probes)


@needs_c
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_large_sorted_batches_merge_like_level_by_level(sign: float) -> None:
    ref, fast = PyBookSide(sign), CBookSide(sign)
    base = [(1000.0 + i, float(i % 7 + 1)) for i in range(2000)]
    for side in (ref, fast):
        side.replace(base)
    # A diff of 1,000 levels in both orders, inserting, changing and deleting across the book.
    diff = [(1000.0 + i * 2.5, 0.0 if i % 3 == 0 else float(i)) for i in range(1000)]
    for batch in (diff, diff[::-1], diff[:4], diff[-5:]):
        ref.update(batch)
        fast.update(batch)
        assert fast.top(10_000) == ref.top(10_000)
    probes = [sign * p for p in (999.0, 1000.0, 1500.25, 2000.0, 3500.0, 4000.0)]
    assert observe(fast, probes) == observe(ref, probes)


# A deep book and small sorted diffs anywhere in it, beyond both ends too: the diffs far
# from the touch take the in-place merge (galloping searches, runs moved by the net count
# of levels inserted before them), the ones at the touch the linear one. Runs of one, two
# and many levels, inserts and deletes side by side, and keys that are not stored.
deep_prices = st.integers(-20, 1220).map(lambda i: 1000.0 + i * 0.5)
deep_qtys = st.sampled_from([0.0, 0.0, -0.0, 1.0, 2.5, 1e-9])
deep_batches = st.lists(st.tuples(deep_prices, deep_qtys), min_size=4, max_size=40,
                        unique_by=lambda level: level[0])


@needs_c
@settings(max_examples=300, deadline=None)
@given(
    sign=st.sampled_from([1.0, -1.0]),
    stride=st.sampled_from([1, 2, 3]),
    batches=st.lists(st.tuples(deep_batches, st.booleans()), min_size=1, max_size=12),
)
def test_small_diffs_deep_in_a_large_book_match_the_reference(
    sign: float, stride: int, batches: list[tuple[list[Level], bool]]
) -> None:
    ref, fast = PyBookSide(sign), CBookSide(sign)
    base = [(1000.0 + i * 0.5, float(i % 5 + 1)) for i in range(0, 1200, stride)]
    for side in (ref, fast):
        side.replace(base)
    probes = [sign * (1000.0 + i * 0.5) for i in range(-25, 1230, 37)]
    for levels, descending in batches:
        batch = tuple(sorted(levels, reverse=descending))
        ref.update(batch)
        fast.update(batch)
        assert fast.top(10_000) == ref.top(10_000)
    assert observe(fast, probes) == observe(ref, probes)


@needs_c
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_layout_runs_out_of_room_at_either_end_and_grows(sign: float) -> None:
    # The C side keeps free room below its levels as well as above (so an update may move the
    # levels below it instead): runs of inserts at the far end, at the near end and at the
    # same end from both kinds of update use up one end's room, then the allocation's (more
    # than the first allocation of 8,192 levels), and the levels are laid out again each time.
    ref, fast = PyBookSide(sign), CBookSide(sign)

    def both(batch: list[Level]) -> None:
        ref.update(batch)
        fast.update(batch)

    far_first = -1.0 if sign > 0 else 1.0  # prices in this direction go deeper
    for i in range(7000):  # one far level at a time: each goes below every stored one
        both([(50_000.0 + far_first * i, 1.0 + i % 3)])
        if i % 997 == 0:
            assert fast.top(100_000) == ref.top(100_000)
    for i in range(3000):  # delete the farthest one at a time: the levels below move up
        both([(50_000.0 + far_first * (6999 - i), 0.0)])
    assert fast.top(100_000) == ref.top(100_000)
    for i in range(400):  # between the far levels (a few below): in, then out again
        both([(50_000.0 + far_first * (3999.5 - i % 97), 1.5)])
        both([(50_000.0 + far_first * (3999.5 - (i * 7) % 97), 0.0)])
    assert fast.top(100_000) == ref.top(100_000)
    for i in range(1, 6000):  # one near level at a time, above every stored one
        both([(50_000.0 - far_first * i, 2.0)])
    assert fast.top(100_000) == ref.top(100_000)
    # Sorted batches deep in the book: net inserts, net deletes, both across the whole side.
    for k in range(40):
        lo = 50_000.0 + far_first * 3900 - far_first * 0.5 * k
        batch = [(lo - far_first * 170 * j, 0.0 if (j + k) % 4 == 0 else 3.0) for j in range(50)]
        both(sorted(batch, reverse=k % 2 == 1))
        deletes = [(50_000.0 + far_first * (3999 - 61 * j - k), 0.0) for j in range(40)]
        both(sorted(deletes))
        assert fast.top(100_000) == ref.top(100_000)
    probes = [sign * (50_000.0 + d) for d in (-7000.0, -3000.5, 0.0, 2999.0, 6500.0)]
    assert observe(fast, probes) == observe(ref, probes)
    assert len(fast) > 8192


@needs_c
def test_empty_side_and_signs() -> None:
    side = CBookSide(-1.0)
    assert len(side) == 0
    assert math.isnan(side.best())
    assert side.best_qty() == 0.0
    assert side.top(5) == []
    assert side.qty_from(-100.0) == 0.0
    side.update([(101.0, 1.0), (100.5, 2.0)])
    assert side.sign == -1.0
    assert side.best() == -100.5  # asks: the lowest price is the highest signed key
    assert side.top(5) == [(100.5, 2.0), (101.0, 1.0)]
    assert side.get(-101.0) == 1.0 and side.get(101.0) == 0.0
    side.update([(100.5, 0.0), (100.5, 0.0), (99.0, 0.0)])  # missing levels are fine
    assert side.top(5) == [(101.0, 1.0)]


@needs_c
@pytest.mark.parametrize("side_type", [PyBookSide, CBookSide], ids=["py", "c"])
@pytest.mark.parametrize(
    ("levels", "error"),
    [([(1.0,)], ValueError), ([(1.0, 2.0, 3.0)], ValueError), ([("x", 1.0)], TypeError),
     ([1.0], TypeError)],
)
def test_malformed_levels_raise_in_both(
    side_type: Callable[[float], Any], levels: list[Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        side_type(1.0).update(levels)


@needs_c
def test_bad_sign_is_refused() -> None:
    for side_type in (PyBookSide, CBookSide):
        with pytest.raises(ValueError, match="sign"):
            side_type(0.5)


@needs_c
def test_lists_and_ints_are_levels_too() -> None:
    ref, fast = PyBookSide(1.0), CBookSide(1.0)
    for side in (ref, fast):
        side.update([[100, 1], [101, 2]])
        side.update(((100.0, 3),))
    assert fast.top(5) == ref.top(5) == [(101.0, 2.0), (100.0, 3.0)]


def _book_events(path: Path, limit: int) -> list[BookSnapshot | BookDelta]:
    from adapters.recording import iter_frames
    from bot.replay import FrameRouter, resolve_source

    source = resolve_source([path], None, None)
    router = FrameRouter(source)
    events: list[BookSnapshot | BookDelta] = []
    for frame in iter_frames(source.paths):
        for event in router.events(frame):
            if isinstance(event, BookSnapshot | BookDelta):
                events.append(event)
        if len(events) >= limit:
            break
    return events


@needs_c
def test_real_capture_books_identically(shared_data: Path) -> None:
    events = _book_events(shared_data / "hftbacktest" / "usdm" / "btcusdt_20240808.gz", 10**9)
    assert len(events) > 6_000
    ref, fast = OrderBook("BTCUSDT", PyBookSide), OrderBook("BTCUSDT", CBookSide)
    big = 0
    for index, event in enumerate(events):
        for book in (ref, fast):
            try:
                book.apply(event)
            except Exception as exc:  # pragma: no cover - the capture is clean
                raise AssertionError(f"event {index}: {exc}") from exc
        big += len(event.bids) + len(event.asks) >= 100
        assert (fast.best_bid, fast.best_ask, fast.best_bid_qty, fast.best_ask_qty) == (
            ref.best_bid, ref.best_ask, ref.best_bid_qty, ref.best_ask_qty)
        if index % 100 == 0 or index == len(events) - 1:
            for side in (Side.BUY, Side.SELL):
                assert fast.depth(side, 100_000) == ref.depth(side, 100_000)
                probe = ref.depth(side, 50)[-1][0]
                assert fast.cumulative_qty(side, probe) == ref.cumulative_qty(side, probe)
    assert big > 500  # the merge path ran on real diffs, not only small ones
    assert ref.levels(Side.BUY) > 500 and ref.levels(Side.SELL) > 500


@needs_c
def test_replay_is_identical_with_either_side(
    shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.replay import replay_summary, resolve_source, run_replay
    from bot.settings import load_settings

    source = resolve_source([shared_data / "hftbacktest" / "usdm" / "btcusdt_20240808.gz"],
                            None, None)
    settings_ = load_settings(None, {"market": {"venue": source.venue,
                                                "symbol": source.symbol}})
    summaries = []
    for side_type in (CBookSide, PyBookSide):
        monkeypatch.setattr(bot.book, "BookSide", side_type)
        result = run_replay(source, settings_, None)
        summary = replay_summary(result, source, settings_, None)
        for volatile in ("elapsed_s", "messages_per_s", "run_dir", "report"):
            summary.pop(volatile, None)
        book = result.engine.book
        summaries.append((summary, book.depth(Side.BUY, 100_000), book.depth(Side.SELL, 100_000)))
    assert summaries[0][0]["book_updates"] > 5_000
    assert summaries[0] == summaries[1]


# --------------------------------------------------------------------------------------------
# The parser's and the simulated venue's helpers (bot.native)
# --------------------------------------------------------------------------------------------


@needs_c
@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet='[]",.0123456789 é', max_size=60),
       n=st.integers(-2, 12), from_end=st.booleans())
def test_nth_bracket_matches_the_reference(text: str, n: int, from_end: bool) -> None:
    from bot import _cbook
    from bot.native import py_nth_bracket

    assert _cbook.nth_bracket(text, n, from_end) == py_nth_bracket(text, n, from_end)


@needs_c
def test_nth_bracket_on_a_real_level_array() -> None:
    from bot import _cbook
    from bot.native import py_nth_bracket

    raw = '[["61800.2","2.9"],["61800.1","0.6"],["61799.9","1.0"]]'
    assert _cbook.nth_bracket(raw, 1, True) == raw.rindex("[")
    assert _cbook.nth_bracket(raw, 1, False) == 1
    assert _cbook.nth_bracket(raw, 3, False) == raw.rindex("[")
    assert _cbook.nth_bracket(raw, 4, True) == -1
    for n in range(5):
        for from_end in (True, False):
            assert _cbook.nth_bracket(raw, n, from_end) == py_nth_bracket(raw, n, from_end)


@needs_c
@settings(max_examples=500, deadline=None)
@given(text=st.text(alphabet='[]",.0123456789 \té', max_size=80),
       bound=st.sampled_from([-math.inf, 0.0, 0.5, 1.0, 9.0, 10.0, 55.5, 1e9, math.inf]),
       from_end=st.booleans(), above=st.booleans())
def test_count_through_matches_the_reference(text: str, bound: float, from_end: bool,
                                             above: bool) -> None:
    from bot import _cbook
    from bot.native import py_count_through

    assert (_cbook.count_through(text, bound, from_end, above)
            == py_count_through(text, bound, from_end, above))


@settings(max_examples=300, deadline=None)
@given(levels=st.lists(st.tuples(st.decimals(min_value=0, max_value=100_000, places=2,
                                             allow_nan=False, allow_infinity=False),
                                 st.sampled_from(["0", "1.5"])), max_size=12),
       bound=st.floats(0.0, 100_001.0), from_end=st.booleans(), above=st.booleans())
def test_count_through_counts_the_levels_that_reach_the_bound(
        levels: list[tuple[Any, str]], bound: float, from_end: bool, above: bool) -> None:
    from bot.native import count_through, py_count_through

    raw = "[" + ",".join(f'["{price}","{qty}"]' for price, qty in levels) + "]"
    prices = [float(price) for price, _ in levels]
    walk = prices[::-1] if from_end else prices
    expected = 0
    for price in walk:
        if not (price >= bound if above else price <= bound):
            break
        expected += 1
    assert count_through(raw, bound, from_end, above) == expected
    assert py_count_through(raw, bound, from_end, above) == expected


def test_count_through_counts_an_unreadable_price_and_stops_there() -> None:
    from bot.native import count_through, py_count_through

    raw = '[["12","1"],["11.5","1"],[ "1e3","1"],["10","1"]]'
    for count in (count_through, py_count_through):
        assert count(raw, 0.0, False, True) == 3  # the third is not a plain decimal
        assert count(raw, 11.6, False, True) == 1
        assert count(raw, 0.0, True, True) == 2
        assert count('[["1.2.3","1"]]', 0.0, True, True) == 1
        assert count('[[".","1"]]', 0.0, True, True) == 1
        assert count('[["5","1"]]', 6.0, True, True) == 0
        assert count("[]", 0.0, True, True) == 0


@needs_c
@settings(max_examples=300, deadline=None)
@given(levels=st.lists(st.tuples(prices, qtys), max_size=20), price=prices)
def test_level_qty_is_dict_get(levels: list[Level], price: float) -> None:
    from bot import _cbook
    from bot.native import py_level_qty

    batch = tuple(levels)
    expected = dict(batch).get(price)
    assert _cbook.level_qty(batch, price) == expected
    assert py_level_qty(batch, price) == expected


@needs_c
def test_level_qty_refuses_what_is_not_a_level() -> None:
    from bot import _cbook

    with pytest.raises(TypeError):
        _cbook.level_qty(((1.0, 2.0, 3.0),), 1.0)
    with pytest.raises(TypeError):
        _cbook.level_qty(5, 1.0)  # type: ignore[arg-type]
    assert _cbook.level_qty([(1, 7)], 1.0) == 7  # ints compare as numbers, like dict keys


# Level arrays: the strict readers (parse_levels, split_levels, nearest_at_end).
# Characters of random text; the two outside ASCII make strings of 2- and 4-byte kind, which
# the C readers take on their generic path.
TEXT_CHARS = '[]",.0123456789e- ' + "\u20ac\U0001f600"
NUMBERS = ["1", "61800.20", "0.001", "0", "-0", "1e3", "2E-2", "1.5e+2", "10", "9.75",
           "+1", ".5", "5.", "01", "nan", "inf", "-1", "1e400", "\\u0031", "1" * 64, ""]
WS = ["", "", "", " ", "\n\t"]


@st.composite
def level_texts(draw: st.DrawFn) -> str:
    """Level arrays, mostly well formed, with corruptions of every kind mixed in."""
    def level() -> str:
        price, qty = draw(st.sampled_from(NUMBERS)), draw(st.sampled_from(NUMBERS))
        ws = [draw(st.sampled_from(WS)) for _ in range(4)]
        shape = draw(st.sampled_from(["ok"] * 6 + ["no_comma", "bare", "three", "open",
                                                    "half"]))
        if shape == "no_comma":
            return f'["{price}" "{qty}"]'
        if shape == "bare":
            return f'[{price},{ws[2]}{qty}]'
        if shape == "half":
            return f'["{price},"{qty}"]'
        if shape == "three":
            return f'["{price}","{qty}","1"]'
        if shape == "open":
            return f'["{price}","{qty}"'
        return f'[{ws[0]}"{price}"{ws[1]},{ws[2]}"{qty}"{ws[3]}]'

    levels = [level() for _ in range(draw(st.integers(0, 6)))]
    seps = [draw(st.sampled_from([",", ",", ",", " , ", ",,", ""])) for _ in levels]
    body = "".join(lv + (sep if i < len(levels) - 1 else "") for i, (lv, sep)
                   in enumerate(zip(levels, seps, strict=True)))
    text = draw(st.sampled_from(["[", "[", "[ ", ""])) + body
    text += draw(st.sampled_from(["]", "]", "] ", "]x", ",]", ""]))
    if draw(st.booleans()) and text:  # a random character overwritten
        at = draw(st.integers(0, len(text) - 1))
        text = text[:at] + draw(st.sampled_from(list('[]",.0e- '))) + text[at + 1:]
    if draw(st.integers(0, 5)) == 0:  # a wide character somewhere: not ASCII any more
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(["\u20ac", "\U0001f600"])) + text[at:]
    return text


def as_split(result: tuple[Any, float, str]) -> tuple[tuple[Level, ...], float, str]:
    """split_run's result as split_levels gives it: the levels a LevelRun, read as a tuple."""
    levels, boundary, rest = result
    assert type(levels).__name__ == "LevelRun"
    return tuple(levels), boundary, rest


def outcome(call: Callable[[], Any]) -> Any:
    """A call's result made comparable (nan as a marker), or the fact that it raised."""
    try:
        result = call()
    except ValueError:
        return "ValueError"
    return repr(result)


@needs_c
@settings(max_examples=1500, deadline=None)
@given(text=st.one_of(level_texts(), st.text(alphabet=TEXT_CHARS, max_size=40)),
       count=st.integers(0, 5), flag=st.booleans())
def test_level_readers_match_the_reference(text: str, count: int, flag: bool) -> None:
    from bot import _cbook
    from bot.native import py_nearest_at_end, py_parse_levels, py_split_levels

    assert outcome(lambda: _cbook.parse_levels(text)) == outcome(lambda: py_parse_levels(text))
    assert (outcome(lambda: _cbook.split_levels(text, count, flag))
            == outcome(lambda: py_split_levels(text, count, flag))
            == outcome(lambda: as_split(_cbook.split_run(text, count, flag))))
    assert (outcome(lambda: _cbook.nearest_at_end(text, flag))
            == outcome(lambda: py_nearest_at_end(text, flag)))


@needs_c
@settings(max_examples=800, deadline=None)
@given(text=st.one_of(level_texts(), st.text(alphabet=TEXT_CHARS, max_size=40)),
       head=st.text(alphabet=TEXT_CHARS, max_size=6), tail=st.text(alphabet=TEXT_CHARS, max_size=6),
       count=st.integers(0, 5), flag=st.booleans())
def test_readers_read_a_region_in_place_as_its_slice(text: str, head: str, tail: str,
                                                    count: int, flag: bool) -> None:
    # The parser hands the level arrays over as spans of the frame: reading text[start:stop]
    # in place must give what reading the slice gives, errors included.
    from bot import _cbook
    from bot.native import py_nearest_at_end, py_split_levels

    frame, start, stop = head + text + tail, len(head), len(head) + len(text)
    split_want = outcome(lambda: _cbook.split_levels(text, count, flag))
    assert outcome(lambda: _cbook.split_levels(frame, count, flag, start, stop)) == split_want
    assert outcome(lambda: py_split_levels(frame, count, flag, start, stop)) == split_want
    assert outcome(lambda: as_split(_cbook.split_run(frame, count, flag, start, stop))) == \
        split_want
    nearest_want = outcome(lambda: _cbook.nearest_at_end(text, flag))
    assert outcome(lambda: _cbook.nearest_at_end(frame, flag, start, stop)) == nearest_want
    assert outcome(lambda: py_nearest_at_end(frame, flag, start, stop)) == nearest_want
    for bad in ((-1, stop), (start, len(frame) + 1), (stop + 1, stop)):
        with pytest.raises(ValueError):
            _cbook.split_levels(frame, count, flag, *bad)
        with pytest.raises(ValueError):
            py_split_levels(frame, count, flag, *bad)
        with pytest.raises(ValueError):
            _cbook.split_run(frame, count, flag, *bad)


@needs_c
@pytest.mark.parametrize("cut", range(1, 30))
def test_a_region_ends_where_it_ends_even_mid_level(cut: int) -> None:
    # The plain-shape reader reads a level in one pass and may look past the region's end:
    # a region cut anywhere inside a level must read as its slice does (an error), even when
    # the frame's characters after the cut would complete the level.
    from bot import _cbook

    def said(*args: Any) -> str:  # split_levels' result, or the error's own words
        try:
            return repr(_cbook.split_levels(*args))
        except ValueError as exc:
            return f"ValueError: {exc}"

    text = '[["61594.50","0.000"],["61594.60","12.5"]]'
    frame = text + ',"x":1}'
    stop = len(text) - cut
    for at_end in (False, True):
        assert said(frame, 2, at_end, 0, stop) == said(text[:stop], 2, at_end)


wire_levels = st.lists(
    st.tuples(st.decimals(min_value="0.01", max_value=100_000, places=2),
              st.sampled_from(["0", "0.000", "1.5", "3", "0.001", "12.25"])),
    max_size=12, unique_by=lambda level: level[0])


@settings(max_examples=300, deadline=None)
@given(levels=wire_levels, count=st.integers(0, 14), at_end=st.booleans(),
       descending=st.booleans(), quote=st.sampled_from(['"', '"', ""]))
def test_split_levels_reads_what_msgspec_reads(levels: list[tuple[Any, str]], count: int,
                                               at_end: bool, descending: bool,
                                               quote: str) -> None:
    import msgspec

    from bot.native import (
        parse_levels,
        py_parse_levels,
        py_split_levels,
        split_levels,
        split_run,
    )

    levels.sort(reverse=descending)
    raw = "[" + ",".join(f"[{quote}{price}{quote},{quote}{qty}{quote}]"
                         for price, qty in levels) + "]"
    decoded = tuple(msgspec.json.decode(raw, type=list[tuple[float, float]], strict=False))
    assert parse_levels(raw) == py_parse_levels(raw) == decoded
    for split in (split_levels, py_split_levels, split_run):
        run, boundary, rest = split(raw, count, at_end)
        near = tuple(run)  # split_run's LevelRun reads as its levels
        if len(decoded) <= count:
            assert (near, rest) == (decoded, "") and math.isnan(boundary)
            continue
        deep = parse_levels(rest)
        assert len(near) == count
        if at_end:
            assert deep + near == decoded and boundary == deep[-1][0]
        else:
            assert near + deep == decoded and boundary == deep[0][0]


def test_level_readers_on_corrupt_and_edge_input() -> None:
    from bot import native

    readers = [(native.py_parse_levels, native.py_split_levels, native.py_nearest_at_end)]
    if native.cbook is not None:
        readers.append((native.cbook.parse_levels, native.cbook.split_levels,
                        native.cbook.nearest_at_end))
    for parse, split, nearest in readers:
        assert parse("[]") == () and parse(" [ ] "[1:]) == ()
        assert parse('[ ["1.5" , "0"] ,\n["2","-0"] ]') == ((1.5, 0.0), (2.0, 0.0))
        assert math.copysign(1.0, parse('[["2","-0"]]')[0][1]) == 1.0  # -0 is 0
        assert parse('[["1e3","2E-2"]]') == ((1000.0, 0.02),)
        assert parse('[[61800.2, 3],["5", 0]]') == ((61800.2, 3.0), (5.0, 0.0))  # bare too
        for bad in ['[["0","1"]]', '[["-1","1"]]', '[["1","-1"]]', '[["1e400","1"]]',
                    '[["nan","1"]]', '[["+1","1"]]', '[[".5","1"]]', '[["5.","1"]]',
                    '[["01","1"]]', '[["\\u0031","1"]]', '[["1","1"]', '[["1","1"]]]',
                    '[["1","1"]["2","1"]]', '[["1","1"],]', '[["1,"1"]]', '[[1","1"]]',
                    '[["1","1","1"]]', '[[01,1]]', '[[1 2,1]]',
                    f'[["{"1" * 64}","1"]]', '[["1","1"]] x', '["1","1"]', '', '[',
                    '[["1","1"],["2","1"]']:
            with pytest.raises(ValueError, match="corrupt level array"):
                parse(bad)
        assert parse(f'[["{"1" * 63}","1"]]') == ((float("1" * 63), 1.0),)
        raw = '[["3","1"],["2","1"],["1","1"]]'
        assert split(raw, 1, True) == (((1.0, 1.0),), 2.0, '[["3","1"],["2","1"]]')
        assert split(raw, 1, False) == (((3.0, 1.0),), 2.0, '[["2","1"],["1","1"]]')
        assert split(raw, 0, True) == ((), 1.0, raw)
        assert split(raw, 0, False) == ((), 3.0, raw)
        near, boundary, rest = split(raw, 3, True)
        assert (near, rest) == (parse(raw), "") and math.isnan(boundary)
        # Only the levels taken are checked; the rest is checked when it is read.
        assert split('[["x"],["2","1"],["1","1"]]', 1, True)[0] == ((1.0, 1.0),)
        with pytest.raises(ValueError):
            split('[["3","1"],["2","1"],["1","-1"]]', 1, True)
        with pytest.raises(ValueError):
            split('[["3","1"],["2","1"]] ["1","1"]]', 1, False)
        with pytest.raises(ValueError):
            split(raw, -1, True)
        assert nearest(raw, True) is False and nearest(raw, False) is True
        assert nearest('[["1","1"],["2","1"]]', True) is True
        assert nearest('[["1","1"]]', False) is True and nearest("[]", True) is True
        with pytest.raises(ValueError):
            nearest('[["1","1"],["x","1"]]', True)


@st.composite
def json_numbers(draw: st.DrawFn) -> str:
    """JSON numbers: short decimals like a venue's, and long or extreme ones."""
    digits = st.text(alphabet="0123456789", min_size=1, max_size=25)
    whole = draw(st.one_of(st.just("0"), digits.map(lambda d: "1" + d),
                           st.integers(1, 99_999).map(str)))
    number = whole
    if draw(st.booleans()):
        number += "." + draw(digits)
    if draw(st.integers(0, 3)) == 0:
        exponent = draw(st.one_of(st.integers(-30, 30), st.integers(-400, 400)))
        sign = draw(st.sampled_from(["", "+"])) if exponent >= 0 else ""
        number += draw(st.sampled_from(["e", "E"])) + sign + str(exponent)
    return number


@needs_c
@settings(max_examples=2000, deadline=None)
@given(number=json_numbers())
def test_numbers_read_exactly_as_float_does(number: str) -> None:
    from bot import _cbook
    from bot.native import py_parse_levels

    text = f'[["{number}","{number}"]]'
    expected = float(number)
    if len(number) > 63 or not 0.0 < expected < math.inf:
        for parse in (_cbook.parse_levels, py_parse_levels):
            with pytest.raises(ValueError):
                parse(text)
        return
    assert _cbook.parse_levels(text) == py_parse_levels(text) == ((expected, expected),)


# Edges of the reader's one-pass common shape ([-]int[.frac], at most 19 digits, no exponent)
# and of the JSON grammar: each is read as the reference reads it, or rejected by both.
NUMBER_EDGES = [
    "0", "7", "61594.50", "0.000", "00", "01", "0.5", "00.5", "-0", "-0.0", "-1.5", "-", "--1",
    "1.", ".5", "1..2", "1.2.3", "1e5", "1E-2", "1.5e", "1.5e+", "0x10", "1_000", "+1", " 1",
    "1 ", "nan", "inf", "1234567890123456789", "12345678901234567890", "1.234567890123456789",
    "1.2345678901234567890", "9007199254740992", "9007199254740993", "9007199254740993.0",
    "0.0000000000000000000001", "0.00000000000000000000001", "123456789.0123456789",
    "1" + "0" * 22, "1" + "0" * 23, "18446744073709551616", "99999999999999999999.9",
]


@needs_c
@pytest.mark.parametrize("number", NUMBER_EDGES)
@pytest.mark.parametrize("quoted", [True, False])
def test_number_edges_read_as_the_reference_does(number: str, quoted: bool) -> None:
    from bot import _cbook
    from bot.native import py_parse_levels

    wire = f'"{number}"' if quoted else number
    text = f"[[{wire},{wire}]]"
    try:
        expected: Any = py_parse_levels(text)
    except ValueError:
        with pytest.raises(ValueError):
            _cbook.parse_levels(text)
        return
    got = _cbook.parse_levels(text)
    assert got == expected
    # -0.0 == 0.0: the sign of a price or quantity read must match as well
    assert [math.copysign(1.0, v) for level in got for v in level] == [
        math.copysign(1.0, v) for level in expected for v in level]


# The quantity of a deletion has its own quick reader ("0", "0.0...0" quoted); its edges, and
# what looks like it but is not, must read as the reference reads them, sign included.
ZERO_QTY_EDGES = [
    '"0"', '"0.0"', '"0.00000000"', '"0."', '"00"', '"00.0"', '"0.0e1"', '"0.01"', '"0.000001"',
    '"-0"', '"-0.000"', '"0 "', '" 0"', '"0', '"0.0', '"0.00', "0", "0.000", '"0.0"0', '"0x0"',
    '"0.0.0"', '""',
]


@needs_c
@pytest.mark.parametrize("qty", ZERO_QTY_EDGES)
def test_zero_quantity_edges_read_as_the_reference_does(qty: str) -> None:
    from bot import _cbook
    from bot.native import py_parse_levels

    for text in (f'[["61594.50",{qty}]]', f'[["61594.50",{qty}],["61594.40","1.5"]]'):
        try:
            expected: Any = py_parse_levels(text)
        except ValueError:
            for parse in (_cbook.parse_levels, _cbook.parse_run):
                with pytest.raises(ValueError):
                    parse(text)
            continue
        got = _cbook.parse_levels(text)
        assert got == expected == tuple(_cbook.parse_run(text))
        assert [math.copysign(1.0, q) for _, q in got] == \
            [math.copysign(1.0, q) for _, q in expected]


# ------------------------------------------------------------------ settle_take

def _wire(levels: list[Level]) -> str:
    return "[" + ",".join(f'["{p!r}","{q!r}"]' for p, q in levels) + "]"


def brute_settle_count(stored: list[Level], nearest_first: list[Level], sign: float) -> int:
    """The fewest levels to apply, nearest first, before no other can change the best."""
    def best_after(n: int) -> Level | None:
        book = {sign * p: q for p, q in stored}
        for price, qty in nearest_first[:n]:
            if qty:
                book[sign * price] = qty
            else:
                book.pop(sign * price, None)
        if not book:
            return None
        key = max(book)
        return key, book[key]

    final = best_after(len(nearest_first))
    for n in range(len(nearest_first) + 1):
        left = [sign * price for price, _ in nearest_first[n:]]
        if best_after(n) == final and (not left if final is None
                                       else all(key < final[0] for key in left)):
            return n
    raise AssertionError("unreachable")


def both_sides(sign: float, stored: list[Level]) -> list[Any]:
    sides: list[Any] = [PyBookSide(sign)] + ([CBookSide(sign)] if CBookSide is not None else [])
    for side in sides:
        side.replace(stored)
    return sides


def taken(side: Any, text: str, at_end: bool) -> tuple[tuple[Level, ...], Any, str]:
    """``settle_take``'s result made comparable: the levels as a tuple, nan as a marker."""
    levels, boundary, rest = side.settle_take(text, at_end)
    return tuple(levels), "nan" if math.isnan(boundary) else boundary, rest


settle_prices = st.integers(1, 30).map(lambda i: round(100.0 + i * 0.5, 1))


@settings(max_examples=400, deadline=None)
@given(sign=st.sampled_from([1.0, -1.0]),
       stored=st.lists(st.tuples(settle_prices, st.sampled_from([1.0, 2.5])), max_size=20),
       deferred=st.lists(st.tuples(settle_prices, st.sampled_from([0.0, 0.0, 0.0, 1.5])),
                         max_size=20, unique_by=lambda level: level[0]),
       at_end=st.booleans())
def test_settle_take_takes_the_fewest_levels_that_make_the_touch_final(
    sign: float, stored: list[Level], deferred: list[Level], at_end: bool
) -> None:
    from bot.native import py_split_levels

    # Deferred levels as a venue sends a side: sorted by price, nearest the touch first.
    nearest_first = sorted(deferred, key=lambda level: -sign * level[0])
    wire = nearest_first[::-1] if at_end else nearest_first
    text = _wire(wire)
    want = brute_settle_count(stored, nearest_first, sign)
    split = py_split_levels(text, want, at_end) if want else ((), NAN, text)
    expected = split[0], "nan" if math.isnan(split[1]) else split[1], split[2]
    for side in both_sides(sign, stored):
        assert taken(side, text, at_end) == expected, type(side)
        # Booking the levels taken gives the touch booking every level gives.
        levels = side.settle_take(text, at_end)[0]
        side.update(levels)
        final = type(side)(sign)
        final.replace(stored)
        final.update(wire)
        assert (side.best(), side.best_qty()) == (final.best(), final.best_qty()) or (
            math.isnan(side.best()) and math.isnan(final.best()))


@st.composite
def settle_texts(draw: st.DrawFn) -> str:
    """Arrays of the settle prices (so they meet the stored levels), some corrupted."""
    levels = draw(st.lists(st.tuples(settle_prices, st.sampled_from(["0", "0", "0", "1.5"])),
                           max_size=10, unique_by=lambda level: level[0]))
    levels.sort(reverse=draw(st.booleans()))
    ws = st.sampled_from(["", "", "", " ", "\n\t"])
    sep = st.sampled_from([",", ",", ",", ",", " , ", ",,", "", "x"])
    parts = [f'[{draw(ws)}"{price!r}"{draw(ws)},{draw(ws)}"{qty}"{draw(ws)}]'
             for price, qty in levels]
    body = "".join(part + (draw(sep) if k < len(parts) - 1 else "")
                   for k, part in enumerate(parts))
    text = draw(st.sampled_from(["[", "[", "[", "[ ", "", "x["])) + body
    text += draw(st.sampled_from(["]", "]", "]", "] ", "]x", ",]", ""]))
    if draw(st.integers(0, 2)) == 0 and text:  # a random character overwritten
        at = draw(st.integers(0, len(text) - 1))
        text = text[:at] + draw(st.sampled_from(list('[]",.0e- x'))) + text[at + 1:]
    if draw(st.integers(0, 5)) == 0:  # a wide character somewhere: not ASCII any more
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(["\u20ac", "\U0001f600"])) + text[at:]
    return text


@needs_c
@settings(max_examples=2500, deadline=None)
@given(sign=st.sampled_from([1.0, -1.0]),
       stored=st.lists(st.tuples(settle_prices, st.sampled_from([1.0, 2.5])), max_size=12),
       text=st.one_of(settle_texts(), level_texts(), st.text(alphabet=TEXT_CHARS, max_size=40)),
       at_end=st.booleans())
def test_settle_take_matches_the_reference_on_any_text(
    sign: float, stored: list[Level], text: str, at_end: bool
) -> None:
    # The compiled walk reads each level once and checks the structure as it goes; the
    # reference counts the levels (py_settle_count), then splits them off (split_levels).
    ref, fast = both_sides(sign, stored)
    assert outcome(lambda: taken(fast, text, at_end)) == outcome(lambda: taken(ref, text, at_end))


def test_settle_take_stops_where_the_touch_is_final_and_raises_on_what_it_reads() -> None:
    for side in both_sides(1.0, [(99.0, 1.0), (98.0, 1.0), (97.0, 1.0)]):
        # Deletions of 100 and 99, then a corrupt level: the walk reads it, so it raises.
        with pytest.raises(ValueError):
            side.settle_take('[["100","0"],["99","0"],["x","1"],["97","1"]]', False)
        # Nothing deferred reaches the best bid: none is taken, the text is left whole.
        text = '[["98.5","0"],["98","0"]]'
        assert taken(side, text, False) == ((), "nan", text)
        # A new level above the best is the best at once; the next level is the boundary.
        assert taken(side, '[["101","2"],["98","0"]]', False) == (
            ((101.0, 2.0),), 98.0, '[["98","0"]]')
        # Deleting the best and the next: the walk stops at the first stored level it spares.
        assert taken(side, '[["99","0"],["98","0"],["96.5","0"]]', False) == (
            ((99.0, 0.0), (98.0, 0.0)), 96.5, '[["96.5","0"]]')
        assert taken(side, '[["96.5","0"] , ["98","0"],["99","0"]]', True) == (
            ((98.0, 0.0), (99.0, 0.0)), 96.5, '[["96.5","0"] ]')
        # Deleting what is not stored goes on too; every level taken leaves nothing.
        assert taken(side, '[["99","0"],["98.5","0"],["98","0"],["96","0"]]', False) == (
            ((99.0, 0.0), (98.5, 0.0), (98.0, 0.0)), 96.0, '[["96","0"]]')
        assert taken(side, '[["99","0"],["98","0"],["97","0"]]', False) == (
            ((99.0, 0.0), (98.0, 0.0), (97.0, 0.0)), "nan", "")
        assert taken(side, "", True) == ((), "nan", "")
        # A bad separator among the levels taken and the boundary raises, as split_levels
        # does; one further on is left in the raw rest.
        with pytest.raises(ValueError):
            side.settle_take('[["99","0"] ["98","0"],["96","0"]]', False)
        with pytest.raises(ValueError):
            side.settle_take('[["101","1"],["98","0"] ["97","0"]]', False)
        assert taken(side, '[["101","1"],["98","0"],["97","0"] ["96","0"]]', False) == (
            ((101.0, 1.0),), 98.0, '[["98","0"],["97","0"] ["96","0"]]')
        empty = type(side)(-1.0)
        # An empty side: deletions go on until a level with a quantity.
        assert len(empty.settle_take('[["100","0"],["101","3"],["102","1"]]', False)[0]) == 2


@needs_c
@pytest.mark.parametrize("wide", ["\u20ac", "\U0001f600"])
def test_wide_strings_read_like_ascii_ones(wide: str) -> None:
    # The readers take ASCII text on a specialised path: a string holding one wide character
    # (after the levels read) must read exactly as the ASCII one does.
    from bot import _cbook

    ascii_text = '[["61800.20","0"], ["61800.10", "0.0"],["61800.00","0"],["61799.9","1"]]'
    text = ascii_text[:-1] + ',"' + wide + '"]'
    levels, boundary, rest = _cbook.split_levels(text, 2, False)
    assert (levels, boundary) == _cbook.split_levels(ascii_text, 2, False)[:2]
    assert rest == '[["61800.00","0"],["61799.9","1"],"' + wide + '"]'
    assert _cbook.nth_bracket(text, 3, False) == _cbook.nth_bracket(ascii_text, 3, False)
    assert _cbook.count_through(text, 61800.0, False, True) == 3
    side = CBookSide(1.0)
    side.replace([(61800.2, 1.0), (61800.0, 4.0)])
    # Deletes the best, a level not stored and the next stored one; the walk ends at 61799.9
    # (with a quantity): four levels, as the ASCII text and the reference give. The boundary
    # level after them is read too.
    wide_text = ascii_text[:-1] + ',["61799.8","1"],"' + wide + '"]'
    ascii_text = ascii_text[:-1] + ',["61799.8","1"]]'
    assert len(side.settle_take(wide_text, False)[0]) == 4
    assert taken(side, wide_text, False)[:2] == taken(side, ascii_text, False)[:2]
    assert taken(side, wide_text, False)[1:] == (61799.8, '[["61799.8","1"],"' + wide + '"]')
    ref = PyBookSide(1.0)
    ref.replace([(61800.2, 1.0), (61800.0, 4.0)])
    assert taken(ref, wide_text, False) == taken(side, wide_text, False)
    with pytest.raises(ValueError):
        _cbook.parse_levels(text)


# ------------------------------------------------------------------ LevelRun

@needs_c
@settings(max_examples=300, deadline=None)
@given(levels=st.lists(st.tuples(prices, st.sampled_from([0.0, 1.0, 2.5, 0.125])),
                       max_size=30),
       sign=st.sampled_from([1.0, -1.0]), index=st.integers(-35, 35),
       window=st.tuples(st.none() | st.integers(-35, 35), st.none() | st.integers(-35, 35),
                        st.none() | st.sampled_from([1, 2, -1, -3])))
def test_a_level_run_reads_as_its_levels_do(levels: list[Level], sign: float, index: int,
                                           window: tuple[int | None, ...]) -> None:
    import pickle

    from bot import _cbook

    as_tuple = tuple(levels)
    run = _cbook.LevelRun(levels)
    assert len(run) == len(as_tuple) and bool(run) == bool(as_tuple)
    assert tuple(run) == as_tuple and list(reversed(run)) == list(reversed(as_tuple))
    assert run[slice(*window)] == as_tuple[slice(*window)]
    if -len(as_tuple) <= index < len(as_tuple):
        assert run[index] == as_tuple[index]
    else:
        with pytest.raises(IndexError):
            run[index]
    assert run == _cbook.LevelRun(as_tuple) and hash(run) == hash(_cbook.LevelRun(as_tuple))
    assert run == as_tuple and as_tuple == run and hash(run) == hash(as_tuple)
    assert run != list(as_tuple) and run != (*as_tuple, (1.0, 1.0))  # as a tuple compares
    assert repr(run) == f"LevelRun({as_tuple!r})"
    assert pickle.loads(pickle.dumps(run)) == run
    # The book side and level_qty read a run as they read the tuple.
    stored = [(100.0 + i, 1.0) for i in range(0, 40, 3)]
    a, b = CBookSide(sign), CBookSide(sign)
    a.replace(stored)
    b.replace(stored)
    a.update(run)
    b.update(as_tuple)
    assert a.top(100) == b.top(100)
    for price in {p for p, _ in levels} | {99.0}:
        assert _cbook.level_qty(run, price) == _cbook.level_qty(as_tuple, price)


@needs_c
@settings(max_examples=800, deadline=None)
@given(text=st.one_of(level_texts(), st.text(alphabet=TEXT_CHARS, max_size=40)))
def test_parse_run_reads_what_parse_levels_reads(text: str) -> None:
    from bot import _cbook

    def run_levels() -> tuple[Level, ...]:
        return tuple(_cbook.parse_run(text))

    assert outcome(run_levels) == outcome(lambda: _cbook.parse_levels(text))
