"""Compiled helpers (``bot/_cbook.c``) for the hot path, with their pure-Python references.

Each name here is the C function when the extension was built, else the reference below it,
which has the same results (``tests/test_cbook.py`` checks them against each other). The
order book takes its side from ``cbook`` the same way. ``MMBOT_PURE_PYTHON=1`` runs the
references.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import Protocol

Level = tuple[float, float]


def _level_starts(text: str, from_end: bool) -> Iterator[int]:
    """The index of each "[" of ``text[1:]``, from the end (``from_end``) or the start: in a
    level array, which holds only decimal strings, the start of each level in turn."""
    index = len(text) if from_end else 0
    while True:
        index = text.rfind("[", 1, index) if from_end else text.find("[", index + 1)
        if index < 0:
            return
        yield index


def py_nth_bracket(text: str, n: int, from_end: bool) -> int:
    """Return the index of the ``n``-th "[" of ``text[1:]`` from the end or the start, or -1.

    A level array holds only decimal strings, so every "[" after the outer one opens a level:
    this finds where the ``n``-th level from either end starts.
    """
    for k, index in enumerate(_level_starts(text, from_end), 1):
        if k == n:
            return index
    return -1


_DIGITS = frozenset("0123456789.")
_BLANKS = " \t\r\n"


def _raw_price(text: str, at: int) -> float | None:
    """Return the price of the level whose "[" is at ``at``, or None when it is not readable.

    The price is the text between the first two quotes after the bracket (only whitespace may
    come before the first): 1 to 63 ASCII digits with at most one ".", at least one digit.
    """
    i = at + 1
    while i < len(text) and text[i] in _BLANKS:
        i += 1
    if i >= len(text) or text[i] != '"':
        return None
    end = text.find('"', i + 1)
    raw = text[i + 1 : end]
    if end < 0 or not 0 < len(raw) <= 63 or not _DIGITS.issuperset(raw):
        return None
    dots = raw.count(".")
    if dots > 1 or dots == len(raw):
        return None
    return float(raw)


def py_count_through(text: str, bound: float, from_end: bool, above: bool) -> int:
    """Count the levels of a raw level array, from one end, whose price reaches ``bound``.

    Walks the levels from the end (``from_end``) or the start and counts those with a price
    at or above ``bound`` (``above``) or at or below it, stopping at the first that has not.
    A level whose price is not readable counts and stops the walk, so decoding the counted
    levels raises on it. The parser asks how many deferred levels can reach the touch.
    """
    count = 0
    for index in _level_starts(text, from_end):
        count += 1
        price = _raw_price(text, index)
        if price is None:
            return count
        if not (price >= bound if above else price <= bound):
            return count - 1
    return count


# Strict reading of level arrays: [["61800.20","2.909"],["61800.10","0.696"]]. A level is
# "[" ws price ws "," ws qty ws "]", each value a JSON number of at most 63 characters, quoted
# (as Binance sends them) or bare; a price must be finite and > 0, a quantity finite and >= 0
# (-0 reads as 0).
_WS = "[ \t\n\r]*"
_NUMBER = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
_LEVEL = re.compile(r"\[" + _WS + f'("?)({_NUMBER})\\1' + _WS + "," + _WS
                    + f'("?)({_NUMBER})\\3' + _WS + r"\]")
_WS_RUN = re.compile(_WS)
LEVEL_NUMBER_MAX = 63


def _level_error(at: int, what: str) -> ValueError:
    return ValueError(f"corrupt level array at {at}: {what}")


def _skip_ws(text: str, i: int) -> int:
    match = _WS_RUN.match(text, i)
    return match.end() if match is not None else i


def py_read_level(text: str, at: int) -> tuple[float, float, int]:
    """Read the level whose "[" is at ``at``; return (price, qty, index after its "]").

    Raises:
        ValueError: It is not a level of two quoted JSON numbers, or a value is out of bounds.
    """
    match = _LEVEL.match(text, at)
    if match is None:
        raise _level_error(at, "not a level")
    raw_price, raw_qty = match.group(2, 4)
    if len(raw_price) > LEVEL_NUMBER_MAX or len(raw_qty) > LEVEL_NUMBER_MAX:
        raise _level_error(at, "not a level")
    price = float(raw_price)
    qty = float(raw_qty)
    if not 0.0 < price < math.inf:
        raise _level_error(at, "price not finite and positive")
    if not 0.0 <= qty < math.inf:
        raise _level_error(at, "quantity not finite and non-negative")
    return price, qty + 0.0, match.end()


def _read_levels(text: str, i: int, n: int) -> tuple[tuple[Level, ...], int]:
    """Read ``n`` levels from ``i`` separated by ws "," ws; return them and where they end."""
    levels: list[Level] = []
    for k in range(n):
        if k:
            if text[i : i + 1] != ",":
                raise _level_error(i, "expected ','")
            i = _skip_ws(text, i + 1)
        price, qty, i = py_read_level(text, i)
        levels.append((price, qty))
        i = _skip_ws(text, i)
    return tuple(levels), i


def _closes_at(text: str, i: int) -> bool:
    return text[i : i + 1] == "]" and _skip_ws(text, i + 1) == len(text)


def py_parse_levels(text: str) -> tuple[Level, ...]:
    """Read every level of a level array.

    Raises:
        ValueError: The array or one of its levels is corrupt.
    """
    if not text.startswith("["):
        raise _level_error(0, "expected '['")
    levels, end = _read_levels(text, _skip_ws(text, 1), text.count("[", 1))
    if not _closes_at(text, end):
        raise _level_error(end, "expected ']' and the end")
    return levels


def _region(text: str, start: int, stop: int | None) -> str:
    """``text[start:stop]``, the level array a reader was given (the whole text by default)."""
    if start == 0 and stop is None:
        return text
    end = len(text) if stop is None else stop
    if not 0 <= start <= end <= len(text):
        raise ValueError(f"region {start}:{end} is not within the text ({len(text)})")
    return text[start:end]


def py_split_levels(text: str, count: int, at_end: bool, start: int = 0,
                    stop: int | None = None) -> tuple[tuple[Level, ...], float, str]:
    """Read the ``count`` levels at the end (``at_end``) or the start of a level array.

    The array is ``text[start:stop]`` (the whole text by default; the compiled reader reads
    it in place, with no copy).

    Returns those levels in array order, the price of the boundary level next to them (nan if
    there is none) and the rest of the array, raw, starting with the boundary level ("" if
    there is none). With fewer than ``count + 1`` levels all are read and checked. Only the
    levels read and the array's bracket at that end are checked; the rest is when it is read.

    Raises:
        ValueError: ``count`` < 0, or what is read is corrupt.
    """
    if count < 0:
        raise ValueError("split_levels: count must be >= 0")
    text = _region(text, start, stop)
    if not text.startswith("["):
        raise _level_error(0, "expected '['")
    start = py_nth_bracket(text, count + 1, at_end)
    if start < 0:
        return py_parse_levels(text), math.nan, ""
    if at_end:
        levels, end = _read_levels(text, start, count + 1)
        if not _closes_at(text, end):
            raise _level_error(end, "expected ']' and the end")
        if count:
            cut = text.find("[", start + 1)
            rest = text[:cut].rstrip(" \t\n\r").removesuffix(",") + "]"
        else:
            rest = text
        return levels[1:], levels[0][0], rest
    levels, end = _read_levels(text, _skip_ws(text, 1), count + 1)
    if text[end : end + 1] != "," and not _closes_at(text, end):
        raise _level_error(end, "expected ',' or ']' and the end")
    return levels[:-1], levels[-1][0], "[" + text[start:]


def py_nearest_at_end(text: str, bids: bool, start: int = 0, stop: int | None = None) -> bool:
    """Tell from its two end levels whether a side's levels nearest the touch come last.

    The array is ``text[start:stop]`` (the whole text by default).

    Binance sorts every side by price, but not the same way everywhere (spot bids descend,
    futures bids ascend): the highest bid, or the lowest ask, is nearest the touch. True with
    fewer than two levels.

    Raises:
        ValueError: An end level is corrupt.
    """
    text = _region(text, start, stop)
    first = text.find("[", 1)
    last = text.rfind("[", 1)
    if first < 0 or last == first:
        return True
    return (py_read_level(text, first)[0] < py_read_level(text, last)[0]) == bids


def py_settle_count(text: str, from_end: bool, keys: Sequence[float], sign: float) -> int:
    """Count the levels of a raw level array to book before a side's best level is final.

    How many levels ``BookSide.settle_take`` takes (see ``py_settle_take``). ``keys`` are the
    side's signed prices in ascending order (``sign`` * price; the best is last). The levels
    are read nearest the touch first (from the end when ``from_end``) against the stored ones
    from the best down: a stored level above the next level read stays the best (stop before
    that level); a level read with a quantity becomes the best (stop after it); a deletion
    goes on, removing the stored level at its price if there is one. A level that is not
    readable counts and stops the walk, so decoding the counted levels raises on it.
    """
    j = len(keys) - 1  # the highest stored level no level read has matched
    count = 0
    for index in _level_starts(text, from_end):
        count += 1
        try:
            price, qty, _ = py_read_level(text, index)
        except ValueError:
            return count
        key = sign * price
        if j >= 0 and keys[j] > key:
            return count - 1
        if j >= 0 and keys[j] == key:
            j -= 1
        if qty > 0.0:
            return count
    return count


def py_settle_take(text: str, from_end: bool, keys: Sequence[float],
                   sign: float) -> tuple[tuple[Level, ...], float, str]:
    """Take the levels of a raw level array to book before a side's best level is final.

    The reference of ``BookSide.settle_take``: the ``py_settle_count`` levels, split off as
    ``py_split_levels`` does (those levels in array order, the boundary price, the raw rest);
    ``((), nan, text)`` when none is needed.

    Raises:
        ValueError: What ``py_split_levels`` reads for that many levels is corrupt.
    """
    count = py_settle_count(text, from_end, keys, sign)
    if not count:
        return (), math.nan, text
    return py_split_levels(text, count, from_end)


def py_level_qty(levels: Sequence[Level], price: float) -> float | None:
    """Return the quantity of the last level at ``price`` (as ``dict(levels).get``), or None."""
    for at, qty in reversed(levels):
        if at == price:
            return qty
    return None


# A JSON string without escapes or control characters, and a JSON integer of <= 18 digits.
_PLAIN_STRING = re.compile(r'"[^"\\\x00-\x1f]*"')
_PLAIN_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,17})")
_DEPTH_INTS = frozenset({"E", "U", "u", "pu"})

DepthCut = tuple[str, int, int, int, int, int, int, int, int]


def py_cut_depth(text: str) -> DepthCut | None:
    """Read a Binance combined-stream depth diff in its compact layout, without a decoder.

    The layout: ``{"stream":"<name>","data":{"<key>":<int or string>,...,"b":[...],"a":[...]}}``.
    Returns ``(s, E, U, u, pu, bids_start, bids_stop, asks_start, asks_stop)`` (pu -1 when
    absent; each level array is ``text[start:stop]``, brackets included, not read here), or
    None for anything else: whitespace, escapes, a value that is neither an integer nor a plain
    string, a field twice, a missing field, something after the asks, non-ASCII text. The
    caller decodes those generically, which decides.
    """
    if not text.isascii() or not text.startswith('{"stream":'):
        return None
    match = _PLAIN_STRING.match(text, 10)
    if match is None or not text.startswith(',"data":{', match.end()):
        return None
    i = match.end() + 9
    symbol: str | None = None
    ints: dict[str, int] = {}
    while True:
        key = _PLAIN_STRING.match(text, i)
        if key is None or not text.startswith(":", key.end()):
            return None
        name, at = key.group()[1:-1], key.end() + 1
        if name == "b":
            break
        if name == "a":
            return None  # the asks key before the bids: a field twice, or not the layout
        if name in ints or (name == "s" and symbol is not None):
            return None  # a field twice
        value = _PLAIN_STRING.match(text, at)
        if value is not None:
            if name in _DEPTH_INTS:
                return None
            if name == "s":
                symbol = value.group()[1:-1]
        else:
            value = _PLAIN_INT.match(text, at)
            if value is None or name == "s":
                return None
            if name in _DEPTH_INTS:
                ints[name] = int(value.group())
        if not text.startswith(",", value.end()):
            return None
        i = value.end() + 1
    if symbol is None or not ints.keys() >= {"E", "U", "u"}:
        return None
    bids_start = i + 4
    if not text.startswith("[", bids_start):
        return None
    asks_at = text.find("a", bids_start) - 3
    if asks_at < bids_start or not text.startswith('],"a":[', asks_at):
        return None
    asks_start, asks_stop = asks_at + 6, len(text) - 2
    if not text.endswith("]}}") or asks_stop < asks_start + 2:
        return None
    if not (asks_stop - asks_start == 2 or text.endswith("]]", 0, asks_stop)):
        return None  # something follows the asks
    return (symbol, ints["E"], ints["U"], ints["u"], ints.get("pu", -1), bids_start,
            asks_at + 1, asks_start, asks_stop)


DepthSplit = tuple[str, int, int, int, int, Sequence[Level], Sequence[Level], str, bool, float,
                   str, bool, float]


def py_split_depth(text: str, count: int) -> DepthSplit | None:
    """Read and split a compact Binance depth diff in one go (the compiled twin is one call).

    ``py_cut_depth``, then, on each level array, ``py_nearest_at_end`` and ``py_split_levels``:
    ``(s, E, U, u, pu, near bids, near asks, deep bids, bids nearest at end, highest deep bid,
    deep asks, asks nearest at end, lowest deep ask)``; a bound is -inf (bids) or inf (asks)
    when no level of that side is deferred. None when the text is not in the compact layout.

    Raises:
        ValueError: ``count`` < 0, or a level read is corrupt.
    """
    if count < 0:
        raise ValueError("split_depth: count must be >= 0")
    cut = py_cut_depth(text)
    if cut is None:
        return None
    symbol, ts_ms, first_id, final_id, prev_id, b0, b1, a0, a1 = cut
    bids_at_end = py_nearest_at_end(text, True, b0, b1)
    near_b, bid_max, deep_b = py_split_levels(text, count, bids_at_end, b0, b1)
    asks_at_end = py_nearest_at_end(text, False, a0, a1)
    near_a, ask_min, deep_a = py_split_levels(text, count, asks_at_end, a0, a1)
    return (symbol, ts_ms, first_id, final_id, prev_id, near_b, near_a, deep_b, bids_at_end,
            -math.inf if bid_max != bid_max else bid_max, deep_a, asks_at_end,
            math.inf if ask_min != ask_min else ask_min)


cbook: ModuleType | None
"""The compiled module ``bot._cbook``, or None (not built, or ``MMBOT_PURE_PYTHON`` set)."""
try:
    from bot import _cbook as cbook
except ImportError:  # built without a C compiler: the references are correct, only slower
    cbook = None
if os.environ.get("MMBOT_PURE_PYTHON"):
    cbook = None

nth_bracket: Callable[[str, int, bool], int] = (
    cbook.nth_bracket if cbook is not None else py_nth_bracket)
level_qty: Callable[[Sequence[Level], float], float | None] = (
    cbook.level_qty if cbook is not None else py_level_qty)
count_through: Callable[[str, float, bool, bool], int] = (
    cbook.count_through if cbook is not None else py_count_through)
parse_levels: Callable[[str], tuple[Level, ...]] = (
    cbook.parse_levels if cbook is not None else py_parse_levels)
# Every level as a compiled LevelRun (no Python object per level), else as a tuple.
parse_run: Callable[[str], Sequence[Level]] = (
    cbook.parse_run if cbook is not None else py_parse_levels)


class _SplitLevels(Protocol):
    def __call__(self, text: str, count: int, at_end: bool, start: int = ...,
                 stop: int = ..., /) -> tuple[tuple[Level, ...], float, str]: ...


class _SplitRun(Protocol):
    def __call__(self, text: str, count: int, at_end: bool, start: int = ...,
                 stop: int = ..., /) -> tuple[Sequence[Level], float, str]: ...


class _NearestAtEnd(Protocol):
    def __call__(self, text: str, bids: bool, start: int = ..., stop: int = ..., /) -> bool: ...


split_levels: _SplitLevels = cbook.split_levels if cbook is not None else py_split_levels
# The levels read as a compiled LevelRun (no Python object per level), else as a tuple.
split_run: _SplitRun = cbook.split_run if cbook is not None else py_split_levels
nearest_at_end: _NearestAtEnd = (
    cbook.nearest_at_end if cbook is not None else py_nearest_at_end)
split_depth: Callable[[str, int], DepthSplit | None] = (
    cbook.split_depth if cbook is not None else py_split_depth)
