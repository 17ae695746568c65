"""What every quoting strategy offers the engine, and the small pieces the models share.

A strategy is a thin class holding frozen parameters around pure pricing functions: the engine
builds a ``MarketState`` per event and calls ``quote``; nothing here reads a clock, a file or a
socket, so replay and live give the same quotes for the same states.

Shared conventions:
    * ``gamma`` is the CARA risk aversion in 1/(price·size), i.e. per unit of money.
    * The models are derived for fills of one unit of inventory. The strategy classes apply them
      with the inventory counted in fills of ``ladder.order_qty`` base units (``q = inventory /
      order_qty``) and the risk aversion per fill (``gamma * order_qty``). This is the same model
      measured in lots, so ``gamma`` keeps one meaning whatever the order size, and with
      ``order_qty = 1`` the formulas are exactly the papers'.
    * Horizons are expressed as the time left to the end of the trading session, ``tau_s``.
"""

from __future__ import annotations

import math
from typing import Literal, Protocol

from bot.events import NS_PER_SECOND, MarketState, QuoteSet

GAMMA_ZERO = 1e-12
"""At or below this risk aversion the gamma -> 0 limits are used (they avoid 0/0)."""

HorizonMode = Literal["session", "rolling"]
"""``session``: the horizon is the end of the current session; ``rolling``: a constant tau."""


class Strategy(Protocol):
    """A quoting model: turns the market state into the orders it wants resting."""

    @property
    def name(self) -> str:
        """Return a stable snake_case identifier for logs and reports."""
        ...

    def quote(self, state: MarketState) -> QuoteSet:
        """Return the desired bid and ask ladders for ``state``; empty when it cannot quote."""
        ...


def require_positive(field: str, value: float) -> None:
    """Raise ValueError naming ``field`` unless ``value`` is finite and > 0."""
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{field} must be finite and positive, got {value!r}")


def require_non_negative(field: str, value: float) -> None:
    """Raise ValueError naming ``field`` unless ``value`` is finite and >= 0."""
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{field} must be finite and non-negative, got {value!r}")


def can_quote(state: MarketState, uses_intensity_a: bool) -> bool:
    """Return whether ``state`` holds usable model inputs: mid > 0, σ >= 0, k > 0 (and A > 0
    when the model uses it) all finite, and a finite inventory. Strategies quote nothing
    otherwise, rather than raise on the hot path."""
    return (
        0 < state.mid < math.inf
        and 0 <= state.sigma < math.inf
        and 0 < state.intensity_k < math.inf
        and math.isfinite(state.inventory)
        and (not uses_intensity_a or 0 < state.intensity_a < math.inf)
    )


def inventory_free_depth(gamma: float, k: float) -> float:
    """Return ``(1/gamma)·ln(1 + gamma/k)``, the optimal depth when inventory carries no risk.

    It is the half-spread of Avellaneda-Stoikov at the horizon and the ``c1`` of Guéant,
    Lehalle and Fernandez-Tapia. ``log1p`` keeps it accurate for small ``gamma/k``; at or below
    ``GAMMA_ZERO`` the limit ``1/k`` is returned.

    Args:
        gamma: Risk aversion per fill, 1/price (validated by the caller).
        k: Intensity decay, 1/price (validated by the caller).

    Returns:
        The depth in price units.
    """
    if gamma <= GAMMA_ZERO:
        return 1.0 / k
    return math.log1p(gamma / k) / gamma


def check_horizon(horizon: str, session_s: float, rolling_horizon_s: float) -> None:
    """Validate horizon settings; raise ValueError naming the offending field."""
    if horizon not in ("session", "rolling"):
        raise ValueError(f"horizon must be 'session' or 'rolling', got {horizon!r}")
    require_positive("session_s", session_s)
    if round(session_s * NS_PER_SECOND) < 1:
        raise ValueError(f"session_s must be at least 1 ns, got {session_s!r}")
    require_positive("rolling_horizon_s", rolling_horizon_s)


def time_to_horizon_s(
    ts_ns: int,
    horizon: HorizonMode,
    session_s: float,
    session_origin_ns: int,
    rolling_horizon_s: float,
) -> float:
    """Return the time left to the horizon, ``tau`` in seconds.

    In ``session`` mode sessions are ``[origin + n·session_s, origin + (n+1)·session_s)``:
    ``tau = session_s - ((ts - origin) mod session_s)``, so ``tau`` lies in ``(0, session_s]``.
    At the first instant of a session ``tau = session_s``; one step ``dt`` before its end
    ``tau = dt``; the end instant itself is the start of the next session. This is the discrete
    convention of the Avellaneda-Stoikov experiment on ``[0, T]`` (origin 0, ``session_s = T``),
    and with origin 0 and 86 400 s it gives daily sessions ending at UTC midnight. Timestamps
    before the origin fall in earlier sessions of the same grid.

    In ``rolling`` mode ``tau = rolling_horizon_s`` always.

    Args:
        ts_ns: Event time, integer nanoseconds.
        horizon: ``"session"`` or ``"rolling"``.
        session_s: Session length in seconds.
        session_origin_ns: Start of one session, integer nanoseconds.
        rolling_horizon_s: Constant horizon in seconds for ``rolling`` mode.

    Returns:
        ``tau`` in seconds.
    """
    if horizon == "rolling":
        return rolling_horizon_s
    # Integer nanoseconds: float seconds since the epoch would lose sub-microsecond resolution.
    session_ns = round(session_s * NS_PER_SECOND)
    elapsed_ns = (ts_ns - session_origin_ns) % session_ns
    return (session_ns - elapsed_ns) / NS_PER_SECOND
