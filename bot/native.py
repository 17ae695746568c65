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
