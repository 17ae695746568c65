"""Inventory, cash, fees and mark-to-market PnL of one market.

PnL is marked to the mid: ``pnl = cash + position * mid`` where cash already has fees taken
out; a run starts flat with zero cash. The split uses the average-cost method, so
``pnl == realised + unrealised - fees`` at every mark.
"""

from __future__ import annotations

import math

from bot.events import OrderFilled

_EPS = 1e-12
_INF = math.inf


class Portfolio:
    """Position and money of one market, updated exactly once per fill."""

    __slots__ = (
        "_avg_price",
        "_seen_fills",
        "cash",
        "fees",
        "fills",
        "mark_price",
        "position",
        "realised",
        "volume",
    )

    def __init__(self) -> None:
        self.position = 0.0
        self.cash = 0.0
        self.fees = 0.0
        self.realised = 0.0
        self.volume = 0.0
        self.fills = 0
        self.mark_price = math.nan
        self._avg_price = math.nan
        self._seen_fills: set[tuple[str, str]] = set()

    def apply_fill(self, fill: OrderFilled) -> bool:
        """Apply one fill; return False (and change nothing) if this trade id was seen before.

        Fills without a trade id cannot be deduplicated and are always applied.
        """
        if fill.trade_id:
            key = (fill.client_order_id, fill.trade_id)
            if key in self._seen_fills:
                return False
            self._seen_fills.add(key)
        signed = fill.qty * fill.side  # an IntEnum: the side's sign (1 or -1) itself
        self.cash -= signed * fill.price + fill.fee
        self.fees += fill.fee
        self.volume += fill.qty * fill.price
        self.fills += 1
        old = self.position
        new = old + signed
        if abs(old) < _EPS or old * signed > 0:
            # Opening or adding: the average cost moves towards the fill price.
            base = 0.0 if abs(old) < _EPS else abs(old) * self._avg_price
            self._avg_price = (base + abs(signed) * fill.price) / abs(new)
        else:
            closed = min(abs(signed), abs(old))
            self.realised += closed * (fill.price - self._avg_price) * (1.0 if old > 0 else -1.0)
            if abs(new) < _EPS:
                self._avg_price = math.nan
            elif new * old < 0:
                # Flipped through zero: the remainder opens a new position at the fill price.
                self._avg_price = fill.price
        self.position = 0.0 if abs(new) < _EPS else new
        return True

    def mark(self, price: float) -> float:
        """Mark the position at ``price`` (ignored unless finite and positive); return the PnL."""
        if 0.0 < price < _INF:
            self.mark_price = price
        # The PnL at the mark (``pnl`` reads it from here)
        if self.position == 0.0:
            return self.cash
        return self.cash + self.position * self.mark_price

    @property
    def pnl(self) -> float:
        """Mark-to-market PnL after fees, in quote currency (NaN before the first mark)."""
        return self.mark(math.nan)  # a NaN price leaves the mark as it is

    @property
    def unrealised(self) -> float:
        """PnL of the open position against its average cost, at the last mark."""
        if self.position == 0.0:
            return 0.0
        return self.position * (self.mark_price - self._avg_price)

    @property
    def avg_price(self) -> float:
        """Average entry price of the open position (NaN when flat)."""
        return self._avg_price
