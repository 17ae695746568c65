"""Avellaneda & Stoikov (2008): quoting around an inventory-adjusted reservation price.

Objective: the paper's CARA (exponential) utility of terminal wealth over a finite horizon T,
``max -E[exp(-gamma·(X_T + q_T·S_T))]``, with mid ``dS = sigma dW`` and fills at depth delta
arriving with intensity ``A·exp(-k·delta)``. (Not the risk-neutral ``E[X_T] - phi·q_T²``
criterion of the Cartea-Jaimungal family.) The quotes are the paper's approximate solution:

    r = s - q·gamma·sigma²·tau                                   (reservation price)
    delta_a + delta_b = gamma·sigma²·tau + (2/gamma)·ln(1 + gamma/k)    (total spread)

with ``tau = T - t`` in seconds, sigma in price/√s, k in 1/price, gamma in 1/(price·size) and
q in units of that size (see ``strategies.base`` for how the class counts it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from bot.events import BUY, NS_PER_SECOND, SELL, MarketState, Quote, QuoteSet, cbook
from strategies.base import (
    HorizonMode,
    can_quote,
    check_horizon,
    inventory_free_depth,
    require_non_negative,
    require_positive,
    time_to_horizon_s,
)
from strategies.ladder import LadderParams, build_ladder


def as_reservation_price(mid: float, q: float, gamma: float, sigma: float, tau_s: float) -> float:
    """Return the reservation price ``r = mid - q·gamma·sigma²·tau``.

    Args:
        mid: Mid price.
        q: Inventory, in the size unit ``gamma`` is expressed in (signed).
        gamma: Risk aversion, 1/(price·size), >= 0.
        sigma: Volatility, price per sqrt(second), >= 0.
        tau_s: Time to the horizon, seconds, >= 0.

    Returns:
        The reservation price, price units; below the mid when long, above when short.

    Raises:
        ValueError: If gamma, sigma or tau_s is negative or not finite.
    """
    require_non_negative("gamma", gamma)
    require_non_negative("sigma", sigma)
    require_non_negative("tau_s", tau_s)
    return _reservation_price(mid, q, gamma, sigma, tau_s)


def _reservation_price(mid: float, q: float, gamma: float, sigma: float, tau_s: float) -> float:
    """``as_reservation_price`` on inputs already checked (the strategy's hot path)."""
    return mid - q * gamma * sigma * sigma * tau_s


def as_total_spread(gamma: float, sigma: float, tau_s: float, k: float) -> float:
    """Return the total spread ``gamma·sigma²·tau + (2/gamma)·ln(1 + gamma/k)``.

    As ``gamma`` -> 0 the spread tends to ``2/k`` (and the reservation price to the mid); at or
    below ``strategies.base.GAMMA_ZERO`` that limit is used for the log term.

    Args:
        gamma: Risk aversion, 1/(price·size), >= 0.
        sigma: Volatility, price per sqrt(second), >= 0.
        tau_s: Time to the horizon, seconds, >= 0.
        k: Intensity decay, 1/price, > 0.

    Returns:
        The distance between ask and bid, price units (> 0).

    Raises:
        ValueError: If k <= 0, or gamma, sigma or tau_s is negative, or any is not finite.
    """
    require_non_negative("gamma", gamma)
    require_non_negative("sigma", sigma)
    require_non_negative("tau_s", tau_s)
    require_positive("k", k)
    return _total_spread(gamma, sigma, tau_s, k)


def _total_spread(gamma: float, sigma: float, tau_s: float, k: float) -> float:
    """``as_total_spread`` on inputs already checked (the strategy's hot path)."""
    return gamma * sigma * sigma * tau_s + 2.0 * inventory_free_depth(gamma, k)


@dataclass(frozen=True, slots=True)
class ASParams:
    """Parameters of the Avellaneda-Stoikov strategy (sigma and k come from the market state).

    Attributes:
        gamma: Risk aversion, 1/(price·size) per base-asset unit, >= 0. The model is applied
            with fills of ``ladder.order_qty`` (see ``strategies.base``).
        ladder: Ladder shape; ``ladder.order_qty`` is also the model's fill size.
        centre: ``"reservation"`` centres the spread on r (the paper's inventory strategy);
            ``"mid"`` centres the same spread on the mid (the paper's symmetric strategy).
        horizon: ``"session"``: tau runs down to the end of each session (see
            ``strategies.base.time_to_horizon_s``); ``"rolling"``: tau is constant.
        session_s: Session length, seconds.
        session_origin_ns: Start of one session, integer nanoseconds; 0 with 86 400 s gives
            sessions ending at UTC midnight.
        rolling_horizon_s: Constant tau for the rolling horizon, seconds.
    """

    gamma: float
    ladder: LadderParams
    centre: Literal["reservation", "mid"] = "reservation"
    horizon: HorizonMode = "session"
    session_s: float = 86_400.0
    session_origin_ns: int = 0
    rolling_horizon_s: float = 3_600.0

    def __post_init__(self) -> None:
        """Validate; raise ValueError naming the offending field."""
        require_non_negative("gamma", self.gamma)
        if self.centre not in ("reservation", "mid"):
            raise ValueError(f"centre must be 'reservation' or 'mid', got {self.centre!r}")
        check_horizon(self.horizon, self.session_s, self.rolling_horizon_s)


class AvellanedaStoikov:
    """Quote the Avellaneda-Stoikov bid and ask, then lay the ladder out from them."""

    __slots__ = ("_kernel", "_params")

    def __init__(self, params: ASParams) -> None:
        """Hold the parameters; all per-event inputs come with the market state."""
        self._params = params
        self._kernel = _compiled_quote(params)

    @property
    def name(self) -> str:
        """Return ``"avellaneda_stoikov"``."""
        return "avellaneda_stoikov"

    @property
    def params(self) -> ASParams:
        """Return the parameters."""
        return self._params

    @property
    def kernel(self) -> object | None:
        """The compiled quote (``bot._cbook.ASQuote``), or None (no C extension, or a ladder
        it does not hold); the engine fuses it into its compiled requote."""
        return self._kernel

    def quote(self, state: MarketState) -> QuoteSet:
        """Return the quotes for ``state``.

        Uses ``state.mid``, ``state.inventory``, ``state.sigma`` and ``state.intensity_k``
        (A does not enter the AS quotes). The reported ``reservation_price`` is the centre
        actually used (r, or the mid for ``centre="mid"``) and ``half_spread`` is half the
        total spread.

        Returns:
            The quotes, or an empty set when the mid, sigma, k or inventory is unusable
            (not finite, mid or k not positive, sigma negative).

        Raises:
            ValueError: If the ladder spacing is in ticks and ``state.tick_size`` is not
                finite and positive.
        """
        kernel = self._kernel
        if kernel is not None:
            # The same formulas in C (bot/_cdecide.c); None when the inputs are not its plain
            # case (unusable or not floats): then the lines below decide.
            quotes = kernel(state)
            if quotes is not None:
                return quotes
        p = self._params
        mid, sigma, k, inventory = state.mid, state.sigma, state.intensity_k, state.inventory
        if not can_quote(state, uses_intensity_a=False):
            return QuoteSet.empty()
        tau_s = time_to_horizon_s(
            state.ts_ns, p.horizon, p.session_s, p.session_origin_ns, p.rolling_horizon_s
        )
        fill_qty = p.ladder.order_qty
        gamma_per_fill = p.gamma * fill_qty
        # can_quote checked sigma and k, ASParams gamma and the horizon, LadderParams the
        # fill size, and tau lies in (0, session_s]: the formulas need no checks of their own.
        half_spread = 0.5 * _total_spread(gamma_per_fill, sigma, tau_s, k)
        if p.centre == "mid":
            centre = mid
        else:
            centre = _reservation_price(mid, inventory / fill_qty, gamma_per_fill, sigma, tau_s)
        bids, asks = build_ladder(
            centre - half_spread, centre + half_spread, inventory, state.tick_size, p.ladder
        )
        return QuoteSet(bids, asks, centre, half_spread)


def _compiled_quote(params: ASParams) -> Callable[[MarketState], QuoteSet | None] | None:
    """Return ``AvellanedaStoikov.quote`` compiled for ``params``, or None (no C extension)."""
    ladder = params.ladder
    session_ns = round(params.session_s * NS_PER_SECOND)
    origin_ns = params.session_origin_ns
    if cbook is None or type(ladder.levels) is not int or not 1 <= ladder.levels <= 64 or not (
        session_ns < 2**63 and type(origin_ns) is int and -(2**63) <= origin_ns < 2**63
    ):
        return None
    kernel: Callable[[MarketState], QuoteSet | None] = cbook.ASQuote(
        state_cls=MarketState, quote_cls=Quote, quoteset_cls=QuoteSet, buy=BUY,
        sell=SELL, gamma=params.gamma, order_qty=ladder.order_qty, levels=ladder.levels,
        spacing=ladder.spacing or 0.0, spacing_ticks=ladder.spacing_ticks,
        size_decay=ladder.size_decay,
        inventory_shaping=ladder.inventory_shaping and ladder.max_inventory is not None,
        max_inventory=ladder.max_inventory or 1.0, centre_mid=params.centre == "mid",
        rolling=params.horizon == "rolling", rolling_horizon_s=params.rolling_horizon_s,
        session_ns=session_ns, origin_ns=params.session_origin_ns)
    return kernel
