"""A book side that keeps each level's wire text beside its quantity, for venue checksums.

OKX and Kraken checksum the best levels as they were sent (OKX ``"price:size"``, Kraken the
digits of both), so their parsers keep the text of every level next to its float quantity.
Prices are stored signed so that the best level is always the last key of the ascending list
and the worst ones, those depth truncation removes, are at the front.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable

from bot.events import Level


class TextBookSide:
    """One side of a checksummed book: sorted signed prices, ``price -> (text, qty)``."""

    __slots__ = ("keys", "levels", "sign")

    def __init__(self, sign: float) -> None:
        """``sign`` is +1 for bids and −1 for asks (best level last in ``keys``)."""
        self.sign = sign
        self.keys: list[float] = []
        self.levels: dict[float, tuple[str, float]] = {}

    def clear(self) -> None:
        """Remove every level."""
        self.keys.clear()
        self.levels.clear()

    def replace(self, levels: Iterable[tuple[float, str, float]]) -> None:
        """Replace every level with ``levels`` of ``(price, text, qty)`` (a snapshot)."""
        self.clear()
        for price, text, qty in levels:
            self.set(price, text, qty)

    def set(self, price: float, text: str, qty: float) -> None:
        """Set a level's absolute quantity; 0 removes it (a missing level is fine)."""
        key = self.sign * price
        if qty == 0.0:
            if self.levels.pop(key, None) is not None:
                del self.keys[bisect_left(self.keys, key)]
            return
        if key not in self.levels:
            insort(self.keys, key)
        self.levels[key] = (text, qty)

    def truncate(self, depth: int) -> list[float]:
        """Drop the levels beyond ``depth``; return their prices."""
        excess = len(self.keys) - depth
        if excess <= 0:
            return []
        dropped = self.keys[:excess]
        del self.keys[:excess]
        for key in dropped:
            del self.levels[key]
        sign = self.sign
        return [sign * key for key in dropped]

    def top_text(self, n: int) -> list[str]:
        """Return the texts of up to ``n`` best levels, best first."""
        levels = self.levels
        return [levels[key][0] for key in self.keys[-1 : -n - 1 : -1]]

    def all_levels(self) -> tuple[Level, ...]:
        """Return every level as ``(price, qty)``, best first."""
        sign = self.sign
        levels = self.levels
        return tuple((sign * key, levels[key][1]) for key in reversed(self.keys))
