"""Turn a model's touch-most bid and ask into ladders of orders, with size shaping by inventory.

Prices stay unrounded floats: snapping to the venue tick happens once, in the order manager.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bot.events import BUY, SELL, Quote
from strategies.base import require_non_negative, require_positive


@dataclass(frozen=True, slots=True)
class LadderParams:
    """How many orders to rest per side, how far apart and how large.

    Attributes:
        order_qty: Size of the touch-most order, base-asset units. The models also take it as
            their fill size (see ``strategies.base``).
        levels: Orders per side, >= 1.
        spacing: Distance between consecutive levels, price units. Set at most one of
            ``spacing`` and ``spacing_ticks``; one of them is required when ``levels > 1``.
        spacing_ticks: Distance between consecutive levels in ticks of the venue's tick size.
        size_decay: Size multiplier per level: level ``i`` has ``order_qty · size_decay**i``.
        inventory_shaping: Scale down the side that would increase ``|inventory|`` by
            ``max(0, 1 - |inventory| / max_inventory)``; the reducing side keeps full size.
        max_inventory: Inventory at which shaping removes the increasing side, base units;
            required when ``inventory_shaping`` is set.
    """

    order_qty: float
    levels: int = 1
    spacing: float | None = None
    spacing_ticks: float | None = None
    size_decay: float = 1.0
    inventory_shaping: bool = False
    max_inventory: float | None = None

    def __post_init__(self) -> None:
        """Validate; raise ValueError naming the offending field."""
        require_positive("order_qty", self.order_qty)
        if self.levels < 1:
            raise ValueError(f"levels must be >= 1, got {self.levels!r}")
        if self.spacing is not None and self.spacing_ticks is not None:
            raise ValueError("spacing and spacing_ticks are exclusive: set at most one")
        if self.spacing is not None:
            require_non_negative("spacing", self.spacing)
        if self.spacing_ticks is not None:
            require_non_negative("spacing_ticks", self.spacing_ticks)
        if self.levels > 1 and self.spacing is None and self.spacing_ticks is None:
            raise ValueError("spacing or spacing_ticks is required when levels > 1")
        require_positive("size_decay", self.size_decay)
        if self.inventory_shaping:
            if self.max_inventory is None:
                raise ValueError("max_inventory is required when inventory_shaping is set")
            require_positive("max_inventory", self.max_inventory)


def build_ladder(
    bid_price: float | None,
    ask_price: float | None,
    inventory: float,
    tick_size: float,
    params: LadderParams,
) -> tuple[tuple[Quote, ...], tuple[Quote, ...]]:
    """Return the bid and ask ladders around the model's touch-most prices.

    Level ``i`` (0-based) bids at ``bid_price - i·spacing`` and asks at ``ask_price + i·spacing``.
    Orders whose size comes out as 0 (shaping at or beyond ``max_inventory``) and orders at a
    non-positive or infinite price (a far skew on a cheap asset) are left out; the remaining
    quotes keep their level index.

    Args:
        bid_price: Touch-most bid price, or None for no bids.
        ask_price: Touch-most ask price, or None for no asks.
        inventory: Current inventory, base-asset units (signed).
        tick_size: Venue tick, price units; used only with ``spacing_ticks``.
        params: The ladder shape.

    Returns:
        ``(bids, asks)``, each ordered from the touch outwards.

    Raises:
        ValueError: If ``spacing_ticks`` is set and ``tick_size`` is not finite and positive.
    """
    if params.spacing_ticks is not None:
        require_positive("tick_size", tick_size)
        spacing = params.spacing_ticks * tick_size
    else:
        spacing = params.spacing or 0.0

    bid_scale = ask_scale = 1.0
    if params.inventory_shaping and params.max_inventory is not None:
        # Only the side that would push |inventory| further out shrinks; the other side is
        # how the position gets worked off, so it keeps full size.
        increasing_scale = max(0.0, 1.0 - abs(inventory) / params.max_inventory)
        if inventory > 0:
            bid_scale = increasing_scale
        elif inventory < 0:
            ask_scale = increasing_scale

    bids: list[Quote] = []
    asks: list[Quote] = []
    for level in range(params.levels):
        qty = params.order_qty * params.size_decay**level
        if bid_price is not None:
            price = bid_price - level * spacing
            bid_qty = qty * bid_scale
            if bid_qty > 0 and 0 < price < math.inf:
                bids.append(Quote(BUY, price, bid_qty, level))
        if ask_price is not None:
            price = ask_price + level * spacing
            ask_qty = qty * ask_scale
            if ask_qty > 0 and 0 < price < math.inf:
                asks.append(Quote(SELL, price, ask_qty, level))
    return tuple(bids), tuple(asks)
