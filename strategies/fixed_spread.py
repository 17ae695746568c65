"""The benchmark: a constant half-spread around the mid, no inventory skew.

Every model strategy is judged against this one on the same data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bot.events import MarketState, QuoteSet
from strategies.base import require_positive
from strategies.ladder import LadderParams, build_ladder


@dataclass(frozen=True, slots=True)
class FixedSpreadParams:
    """Parameters of the fixed-spread benchmark; set exactly one of the three half-spreads.

    Attributes:
        ladder: Ladder shape (inventory shaping, if set there, still applies to sizes).
        half_spread: Distance from the mid to each touch-most quote, price units.
        half_spread_bps: The same in basis points of the mid.
        half_spread_ticks: The same in ticks of the venue's tick size.
    """

    ladder: LadderParams
    half_spread: float | None = None
    half_spread_bps: float | None = None
    half_spread_ticks: float | None = None

    def __post_init__(self) -> None:
        """Validate; raise ValueError naming the offending field."""
        given = {
            name: value
            for name, value in (
                ("half_spread", self.half_spread),
                ("half_spread_bps", self.half_spread_bps),
                ("half_spread_ticks", self.half_spread_ticks),
            )
            if value is not None
        }
        if len(given) != 1:
            raise ValueError(
                "set exactly one of half_spread, half_spread_bps, half_spread_ticks; "
                f"got {sorted(given) or 'none'}"
            )
        for name, value in given.items():
            require_positive(name, value)


class FixedSpread:
    """Quote a constant half-spread symmetrically around the mid."""

    __slots__ = ("_params",)

    def __init__(self, params: FixedSpreadParams) -> None:
        """Hold the parameters."""
        self._params = params

    @property
    def name(self) -> str:
        """Return ``"fixed_spread"``."""
        return "fixed_spread"

    @property
    def params(self) -> FixedSpreadParams:
        """Return the parameters."""
        return self._params

    def quote(self, state: MarketState) -> QuoteSet:
        """Return ``mid ∓ half_spread`` laddered; reports the mid as the reservation price.

        Returns:
            The quotes, or an empty set when the mid (or, for a half-spread in ticks, the
            tick size) is not finite and positive.

        Raises:
            ValueError: If the ladder spacing is in ticks and ``state.tick_size`` is not
                finite and positive.
        """
        p = self._params
        mid = state.mid
        if not 0 < mid < math.inf:
            return QuoteSet.empty()
        if p.half_spread is not None:
            half_spread = p.half_spread
        elif p.half_spread_bps is not None:
            half_spread = mid * p.half_spread_bps * 1e-4
        elif p.half_spread_ticks is not None and 0 < state.tick_size < math.inf:
            half_spread = p.half_spread_ticks * state.tick_size
        else:
            return QuoteSet.empty()
        bids, asks = build_ladder(
            mid - half_spread, mid + half_spread, state.inventory, state.tick_size, p.ladder
        )
        return QuoteSet(bids, asks, mid, half_spread)
