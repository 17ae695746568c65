"""Guéant, Lehalle & Fernandez-Tapia (2013): market making with bounded inventory.

Objective: the same CARA utility as Avellaneda-Stoikov, ``max -E[exp(-gamma·(X_T + q_T·S_T))]``,
with mid ``dS = mu dt + sigma dW``, fills at depth delta arriving with intensity
``A·exp(-k·delta)`` and the inventory kept within ``±Q`` fills. Two solutions are offered:

* The asymptotic closed form (T -> ∞), for markets that never close::

      delta_b = c1 + sigma·c2/2 + q·sigma·c2 - mu·c2/(gamma·sigma)
      delta_a = c1 + sigma·c2/2 - q·sigma·c2 + mu·c2/(gamma·sigma)
      c1 = (1/gamma)·ln(1 + gamma/k)
      c2 = sqrt((gamma/(2·k·A))·(1 + gamma/k)^(1 + k/gamma))

* The exact finite-horizon solution, ``v(tau) = exp(-M·tau)·1`` with M tridiagonal::

      M[q,q] = alpha·q²,  M[q,q±1] = -eta
      alpha = (k/2)·gamma·sigma²,  eta = A·(1 + gamma/k)^(-(1 + k/gamma))
      delta_b = c1 + (1/k)·ln(v_q / v_{q+1})      (no bid at q = Q)
      delta_a = c1 + (1/k)·ln(v_q / v_{q-1})      (no ask at q = -Q)

Depths are distances from the mid in price units; sigma in price/√s, A in 1/s, k in 1/price,
gamma in 1/(price·size), q in fills (see ``strategies.base`` for how the classes count fills).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from bot.events import MarketState, QuoteSet
from strategies.base import (
    GAMMA_ZERO,
    HorizonMode,
    can_quote,
    check_horizon,
    inventory_free_depth,
    require_non_negative,
    require_positive,
    time_to_horizon_s,
)
from strategies.ladder import LadderParams, build_ladder

FloatArray = npt.NDArray[np.float64]


def _log_growth(gamma: float, k: float) -> float:
    """Return ``(1 + k/gamma)·ln(1 + gamma/k)`` for gamma > GAMMA_ZERO (-> 1 as gamma -> 0)."""
    return (1.0 + k / gamma) * math.log1p(gamma / k)


def glft_coefficients(gamma: float, k: float, A: float) -> tuple[float, float]:
    """Return the asymptotic GLFT coefficients ``(c1, c2)``.

    ``c1 = (1/gamma)·ln(1 + gamma/k)``, ``c2 = sqrt((gamma/(2·k·A))·(1 + gamma/k)^(1 + k/gamma))``
    with the power taken in log space, so that a large ``k/gamma`` cannot overflow. As
    gamma -> 0, ``c1 -> 1/k`` and ``c2 ~ sqrt(gamma·e/(2·k·A)) -> 0``; that form is used at or
    below ``GAMMA_ZERO``.

    Args:
        gamma: Risk aversion per fill, 1/price, >= 0.
        k: Intensity decay, 1/price, > 0.
        A: Intensity at the mid, 1/second, > 0.

    Returns:
        ``(c1, c2)``: c1 in price units, c2 in sqrt(seconds) (multiplied by sigma it is a price).

    Raises:
        ValueError: If k or A is not positive, gamma is negative, or any is not finite.
    """
    require_non_negative("gamma", gamma)
    require_positive("k", k)
    require_positive("A", A)
    c1 = inventory_free_depth(gamma, k)
    if gamma <= GAMMA_ZERO:
        return c1, math.sqrt(gamma * math.e / (2.0 * k * A))
    c2 = math.exp(0.5 * (math.log(gamma / (2.0 * k * A)) + _log_growth(gamma, k)))
    return c1, c2


def glft_asymptotic_depths(
    q: float,
    sigma: float,
    gamma: float,
    k: float,
    A: float,
    drift: float = 0.0,
    skew_scale: float = 1.0,
) -> tuple[float, float]:
    """Return the asymptotic GLFT depths ``(delta_b, delta_a)`` from the mid.

    Half-spread ``c1 + sigma·c2/2``, inventory skew ``skew_scale·q·sigma·c2``, drift shift
    ``mu/(gamma·sigma²)·sigma·c2`` towards the side the drift favours. A large inventory can
    make one depth negative (that quote is through the mid): clamping to the touch is the order
    manager's job.

    Args:
        q: Inventory in fills (signed).
        sigma: Volatility, price per sqrt(second), >= 0.
        gamma: Risk aversion per fill, 1/price, >= 0.
        k: Intensity decay, 1/price, > 0.
        A: Intensity at the mid, 1/second, > 0.
        drift: Mid drift mu, price per second; needs gamma > GAMMA_ZERO and sigma > 0.
        skew_scale: Multiplier of the inventory skew, >= 0 (1 is the formula; below 1 is the
            practical damping used in hftbacktest's GLFT examples).

    Returns:
        ``(bid_depth, ask_depth)`` in price units: bid = mid - delta_b, ask = mid + delta_a.

    Raises:
        ValueError: On an invalid argument, or a non-zero drift with gamma or sigma at zero
            (the drift shift ``mu/(gamma·sigma²)`` is then unbounded).
    """
    require_non_negative("sigma", sigma)
    require_non_negative("skew_scale", skew_scale)
    if not math.isfinite(drift):
        raise ValueError(f"drift must be finite, got {drift!r}")
    c1, c2 = glft_coefficients(gamma, k, A)
    half_spread = c1 + 0.5 * sigma * c2
    skew = skew_scale * q * sigma * c2
    drift_shift = 0.0
    if drift != 0.0:
        if gamma <= GAMMA_ZERO or sigma <= 0.0:
            raise ValueError("a non-zero drift needs gamma > 0 and sigma > 0")
        drift_shift = drift * c2 / (gamma * sigma)
    return half_spread + skew - drift_shift, half_spread - skew + drift_shift


@dataclass(frozen=True, slots=True)
class GLFTParams:
    """Parameters of the asymptotic GLFT strategy (sigma, A and k come from the market state).

    Attributes:
        gamma: Risk aversion, 1/(price·size) per base-asset unit, >= 0; applied per fill of
            ``ladder.order_qty`` (see ``strategies.base``).
        ladder: Ladder shape; ``ladder.order_qty`` is also the model's fill size.
        drift: Mid drift mu, price per second; non-zero needs gamma > 0.
        skew_scale: Multiplier of the inventory skew, >= 0.
    """

    gamma: float
    ladder: LadderParams
    drift: float = 0.0
    skew_scale: float = 1.0

    def __post_init__(self) -> None:
        """Validate; raise ValueError naming the offending field."""
        require_non_negative("gamma", self.gamma)
        require_non_negative("skew_scale", self.skew_scale)
        if not math.isfinite(self.drift):
            raise ValueError(f"drift must be finite, got {self.drift!r}")
        if self.drift != 0.0 and self.gamma * self.ladder.order_qty <= GAMMA_ZERO:
            raise ValueError("drift must be 0 when gamma is 0 (the drift shift is unbounded)")


class GLFTAsymptotic:
    """Quote the infinite-horizon GLFT depths around the mid; for markets that never close."""

    __slots__ = ("_params",)

    def __init__(self, params: GLFTParams) -> None:
        """Hold the parameters; all per-event inputs come with the market state."""
        self._params = params

    @property
    def name(self) -> str:
        """Return ``"glft"``."""
        return "glft"

    @property
    def params(self) -> GLFTParams:
        """Return the parameters."""
        return self._params

    def quote(self, state: MarketState) -> QuoteSet:
        """Return the quotes for ``state``: bid = mid - delta_b, ask = mid + delta_a.

        Uses ``state.mid``, ``state.inventory``, ``state.sigma``, ``state.intensity_a`` and
        ``state.intensity_k``. Reports ``reservation_price = mid - (delta_b - delta_a)/2`` and
        ``half_spread = (delta_b + delta_a)/2``.

        Returns:
            The quotes, or an empty set when an input is unusable (not finite, mid, A or k not
            positive, sigma negative, or sigma zero with a non-zero drift).

        Raises:
            ValueError: If the ladder spacing is in ticks and ``state.tick_size`` is not
                finite and positive.
        """
        p = self._params
        mid, sigma, inventory = state.mid, state.sigma, state.inventory
        a, k = state.intensity_a, state.intensity_k
        if not can_quote(state, uses_intensity_a=True) or (sigma == 0 and p.drift != 0.0):
            return QuoteSet.empty()
        fill_qty = p.ladder.order_qty
        bid_depth, ask_depth = glft_asymptotic_depths(
            inventory / fill_qty, sigma, p.gamma * fill_qty, k, a, p.drift, p.skew_scale
        )
        bids, asks = build_ladder(
            mid - bid_depth, mid + ask_depth, inventory, state.tick_size, p.ladder
        )
        return QuoteSet(
            bids, asks, mid - 0.5 * (bid_depth - ask_depth), 0.5 * (bid_depth + ask_depth)
        )


# --------------------------------------------------------------------------------------------
# Exact finite-inventory solution
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class GLFTExactSolution:
    """The exact GLFT solution for one parameter set, ready to evaluate at any horizon.

    M commutes with the reflection q -> -q and the vector 1 is symmetric, so v is even
    (``v_q = v_{-q}``) and lives in the even subspace, where M acts as the symmetric
    (Q+1)x(Q+1) tridiagonal ``E`` on ``|q| = 0..Q``: ``E[j,j] = alpha·j²``, ``E[j,j±1] = -eta``
    except ``E[0,1] = E[1,0] = -√2·eta``. Working there halves the cost, makes the depths
    mirror exactly, and separates the nearly degenerate even/odd eigenpairs of M which,
    mixed in floating point, would cost the inventory tail most of its digits.

    With ``E = U·diag(lambda)·Uᵀ``, ``v = S·U·diag(exp(-lambda·tau))·Uᵀ·u``, where u is the
    vector 1 in that basis and S maps back to inventories. Only ratios of v enter the depths,
    so v is kept up to the positive factor ``exp(-lambda_min·tau)``: the weights
    ``exp(-(lambda - lambda_min)·tau)`` lie in (0, 1] and cannot overflow for any tau, and
    modes that underflow to 0 are negligible against the ground state.

    Build it with ``glft_exact_solution``.

    Attributes:
        q_max: Inventory bound Q, fills.
        k: Intensity decay, 1/price.
        c1: ``(1/gamma)·ln(1 + gamma/k)``, price units.
        eigenvalues: Eigenvalues lambda of E, ascending, 1/second.
        basis: ``S·U``; row j gives ``v_{±j}`` from the weights.
        projections: ``Uᵀ·u``.
    """

    q_max: int
    k: float
    c1: float
    eigenvalues: FloatArray
    basis: FloatArray
    projections: FloatArray

    def _weights(self, tau_s: float) -> FloatArray:
        """Return ``exp(-(lambda - lambda_min)·tau)·Uᵀ·u``."""
        require_non_negative("tau_s", tau_s)
        decay: FloatArray = np.exp(-(self.eigenvalues - self.eigenvalues[0]) * tau_s)
        return decay * self.projections

    def value(self, tau_s: float) -> FloatArray:
        """Return ``v(tau)`` up to a positive factor, indexed by ``q + Q``.

        Args:
            tau_s: Time to the horizon, seconds, >= 0.

        Returns:
            A vector of ``2·Q + 1`` positive values, symmetric about its centre.
        """
        rows = np.abs(np.arange(-self.q_max, self.q_max + 1))
        v: FloatArray = self.basis[rows] @ self._weights(tau_s)
        return v

    def depths(self, tau_s: float, q: int) -> tuple[float | None, float | None]:
        """Return the depths ``(delta_b, delta_a)`` from the mid at inventory ``q``.

        At ``q = Q`` there is no bid and at ``q = -Q`` no ask. Beyond the bounds only the side
        that reduces the inventory is quoted, at the depth the model gives at the bound.

        Args:
            tau_s: Time to the horizon, seconds, >= 0.
            q: Inventory in fills.

        Returns:
            ``(bid_depth, ask_depth)`` in price units, each possibly None.
        """
        q_max = self.q_max
        q = min(max(q, -q_max), q_max)
        # Only v at q-1, q and q+1 is needed; v is even, so take rows |q|-1..|q|+1 of the
        # basis: a few dot products, and the same arithmetic for q and -q (exact mirror).
        first = max(abs(q) - 1, 0)
        v: FloatArray = self.basis[first : min(abs(q) + 1, q_max) + 1] @ self._weights(tau_s)
        v_q = float(v[abs(q) - first])
        bid_depth = ask_depth = None
        if q < q_max:
            bid_depth = self.c1 + math.log(v_q / float(v[abs(q + 1) - first])) / self.k
        if q > -q_max:
            ask_depth = self.c1 + math.log(v_q / float(v[abs(q - 1) - first])) / self.k
        return bid_depth, ask_depth


def glft_exact_solution(
    q_max: int, gamma: float, sigma: float, A: float, k: float
) -> GLFTExactSolution:
    """Diagonalise the model's matrix for one parameter set (the costly step: O(Q³)).

    Args:
        q_max: Inventory bound Q, fills, >= 1.
        gamma: Risk aversion per fill, 1/price, >= 0.
        sigma: Volatility, price per sqrt(second), >= 0.
        A: Intensity at the mid, 1/second, > 0.
        k: Intensity decay, 1/price, > 0.

    Returns:
        The solution, to evaluate with ``value`` or ``depths``.

    Raises:
        ValueError: On an invalid argument.
    """
    if q_max < 1:
        raise ValueError(f"q_max must be >= 1, got {q_max!r}")
    require_non_negative("gamma", gamma)
    require_non_negative("sigma", sigma)
    require_positive("A", A)
    require_positive("k", k)
    alpha = 0.5 * k * gamma * sigma * sigma
    # (1 + gamma/k)^(1 + k/gamma) -> e as gamma -> 0.
    eta = A * math.exp(-(_log_growth(gamma, k) if gamma > GAMMA_ZERO else 1.0))
    abs_inventories = np.arange(q_max + 1, dtype=np.float64)
    off_diagonal = np.full(q_max, -eta)
    off_diagonal[0] *= math.sqrt(2.0)
    even_m = np.diag(alpha * abs_inventories**2)
    even_m += np.diag(off_diagonal, 1) + np.diag(off_diagonal, -1)
    eigenvalues, eigenvectors = np.linalg.eigh(even_m)
    # Orthonormal even basis: e_0 and (e_j + e_{-j})/√2, so 1 = e_0 + √2·Σ_j (e_j + e_{-j})/√2
    # and v_{±j} = (basis coordinate j)/√2 for j >= 1.
    to_inventory = np.full(q_max + 1, 1.0 / math.sqrt(2.0))
    to_inventory[0] = 1.0
    ones_even = 1.0 / to_inventory
    return GLFTExactSolution(
        q_max=q_max,
        k=k,
        c1=inventory_free_depth(gamma, k),
        eigenvalues=eigenvalues,
        basis=to_inventory[:, np.newaxis] * eigenvectors,
        projections=eigenvectors.T @ ones_even,
    )


def glft_exact_value(
    tau_s: float, q_max: int, gamma: float, sigma: float, A: float, k: float
) -> FloatArray:
    """Return ``v(tau) = exp(-M·tau)·1`` up to a positive factor, indexed by ``q + Q``.

    Args:
        tau_s: Time to the horizon, seconds, >= 0.
        q_max: Inventory bound Q, fills, >= 1.
        gamma: Risk aversion per fill, 1/price, >= 0.
        sigma: Volatility, price per sqrt(second), >= 0.
        A: Intensity at the mid, 1/second, > 0.
        k: Intensity decay, 1/price, > 0.

    Returns:
        A vector of ``2·Q + 1`` positive values; only their ratios are meaningful.

    Raises:
        ValueError: On an invalid argument.
    """
    return glft_exact_solution(q_max, gamma, sigma, A, k).value(tau_s)


def glft_exact_depths(
    tau_s: float, q: int, q_max: int, gamma: float, sigma: float, A: float, k: float
) -> tuple[float | None, float | None]:
    """Return the exact GLFT depths ``(delta_b, delta_a)`` from the mid, None for no quote.

    No bid at ``q = Q``, no ask at ``q = -Q``; beyond ``±Q`` only the reducing side, at the
    depth of the bound. Each call diagonalises M: to quote repeatedly, keep the result of
    ``glft_exact_solution`` (as ``GLFTExact`` does).

    Args:
        tau_s: Time to the horizon, seconds, >= 0.
        q: Inventory in fills.
        q_max: Inventory bound Q, fills, >= 1.
        gamma: Risk aversion per fill, 1/price, >= 0.
        sigma: Volatility, price per sqrt(second), >= 0.
        A: Intensity at the mid, 1/second, > 0.
        k: Intensity decay, 1/price, > 0.

    Returns:
        ``(bid_depth, ask_depth)`` in price units, each possibly None.

    Raises:
        ValueError: On an invalid argument.
    """
    return glft_exact_solution(q_max, gamma, sigma, A, k).depths(tau_s, q)


@dataclass(frozen=True, slots=True)
class GLFTExactParams:
    """Parameters of the exact GLFT strategy (sigma, A and k come from the market state).

    Attributes:
        gamma: Risk aversion, 1/(price·size) per base-asset unit, >= 0; applied per fill of
            ``ladder.order_qty`` (see ``strategies.base``).
        q_max: Inventory bound Q in fills of ``ladder.order_qty``, >= 1.
        ladder: Ladder shape; ``ladder.order_qty`` is also the model's fill size.
        horizon: ``"session"`` or ``"rolling"``, as for ``ASParams``.
        session_s: Session length, seconds.
        session_origin_ns: Start of one session, integer nanoseconds.
        rolling_horizon_s: Constant tau for the rolling horizon, seconds.
    """

    gamma: float
    q_max: int
    ladder: LadderParams
    horizon: HorizonMode = "session"
    session_s: float = 86_400.0
    session_origin_ns: int = 0
    rolling_horizon_s: float = 3_600.0

    def __post_init__(self) -> None:
        """Validate; raise ValueError naming the offending field."""
        require_non_negative("gamma", self.gamma)
        if self.q_max < 1:
            raise ValueError(f"q_max must be >= 1, got {self.q_max!r}")
        check_horizon(self.horizon, self.session_s, self.rolling_horizon_s)


class GLFTExact:
    """Quote the exact finite-horizon GLFT depths around the mid.

    The eigendecomposition is cached for the last ``(sigma, A, k)`` seen (gamma and Q are fixed
    by the parameters), so a quote with unchanged estimates costs at most three dot products of
    length ``Q + 1``; the estimators move once per sampling interval or re-fit, not per event.
    """

    __slots__ = ("_cache_key", "_params", "_solution")

    def __init__(self, params: GLFTExactParams) -> None:
        """Hold the parameters; all per-event inputs come with the market state."""
        self._params = params
        self._cache_key: tuple[float, float, float] | None = None
        self._solution: GLFTExactSolution | None = None

    @property
    def name(self) -> str:
        """Return ``"glft_exact"``."""
        return "glft_exact"

    @property
    def params(self) -> GLFTExactParams:
        """Return the parameters."""
        return self._params

    def quote(self, state: MarketState) -> QuoteSet:
        """Return the quotes for ``state``: bid = mid - delta_b, ask = mid + delta_a.

        The inventory is counted in whole fills, ``q = round(inventory / order_qty)``. At the
        bound the side that would exceed it is not quoted. With both sides quoted, reports
        ``reservation_price = mid - (delta_b - delta_a)/2`` and
        ``half_spread = (delta_b + delta_a)/2``; with one side, both are NaN.

        Returns:
            The quotes, or an empty set when an input is unusable (not finite, mid, A or k not
            positive, sigma negative).

        Raises:
            ValueError: If the ladder spacing is in ticks and ``state.tick_size`` is not
                finite and positive.
        """
        p = self._params
        mid, sigma, inventory = state.mid, state.sigma, state.inventory
        a, k = state.intensity_a, state.intensity_k
        if not can_quote(state, uses_intensity_a=True):
            return QuoteSet.empty()
        fill_qty = p.ladder.order_qty
        key = (sigma, a, k)
        solution = self._solution
        if solution is None or key != self._cache_key:
            solution = glft_exact_solution(p.q_max, p.gamma * fill_qty, sigma, a, k)
            self._cache_key, self._solution = key, solution
        tau_s = time_to_horizon_s(
            state.ts_ns, p.horizon, p.session_s, p.session_origin_ns, p.rolling_horizon_s
        )
        bid_depth, ask_depth = solution.depths(tau_s, round(inventory / fill_qty))
        bids, asks = build_ladder(
            None if bid_depth is None else mid - bid_depth,
            None if ask_depth is None else mid + ask_depth,
            inventory,
            state.tick_size,
            p.ladder,
        )
        if bid_depth is None or ask_depth is None:
            return QuoteSet(bids, asks, math.nan, math.nan)
        return QuoteSet(
            bids, asks, mid - 0.5 * (bid_depth - ask_depth), 0.5 * (bid_depth + ask_depth)
        )
