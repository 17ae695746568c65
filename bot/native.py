"""Compiled helpers (``bot/_cbook.c``) for the hot path, with their pure-Python references.

Each name here is the C function when the extension was built, else the reference below it,
which has the same results (``tests/test_cbook.py`` checks them against each other). The
order book takes its side from ``cbook`` the same way. ``MMBOT_PURE_PYTHON=1`` runs the
references.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from types import ModuleType

Level = tuple[float, float]


def py_nth_bracket(text: str, n: int, from_end: bool) -> int:
    """Return the index of the ``n``-th "[" of ``text[1:]`` from the end or the start, or -1.

    A level array holds only decimal strings, so every "[" after the outer one opens a level:
    this finds where the ``n``-th level from either end starts.
    """
    index = len(text) if from_end else 0
    for _ in range(n):
        index = text.rfind("[", 1, index) if from_end else text.find("[", index + 1)
        if index < 0:
            return -1
    return index if n >= 1 else -1


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
    index = len(text) if from_end else 0
    while True:
        index = text.rfind("[", 1, index) if from_end else text.find("[", index + 1)
        if index < 0:
            return count
        count += 1
        price = _raw_price(text, index)
        if price is None:
            return count
        if not (price >= bound if above else price <= bound):
            return count - 1


def py_level_qty(levels: Sequence[Level], price: float) -> float | None:
    """Return the quantity of the last level at ``price`` (as ``dict(levels).get``), or None."""
    for at, qty in reversed(levels):
        if at == price:
            return qty
    return None


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
