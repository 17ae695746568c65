"""Simulated markets: the AS 2008 world and a synthetic L2 market for offline paper trading.

Both follow the Avellaneda-Stoikov assumptions (REFERENCE.md, section 1): the mid is a
Brownian motion, and an order at distance δ from the mid is reached by market orders with
Poisson intensity ``A·exp(-k·δ)``.

* ``as_world_events`` is the paper's experiment world: one ``BookSnapshot`` per step whose
  one-level book has the model mid as its mid. Fills come from ``PoissonFillVenue``.
* ``SyntheticL2Market`` is the same world with a live-like L2 book and public trades, so that
  paper trading runs the whole pipeline (book, estimators, fill models) offline.

All randomness comes from one ``random.Random``; the same seed gives the same event stream.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from bot.errors import ConfigError
from bot.events import NS_PER_SECOND, BookDelta, BookSnapshot, MarketEvent, Side, Trade

_AS_LEVEL_QTY = 1e9  # deep enough that the AS world's book is never thought to run dry


def _require(ok: bool, field: str, message: str) -> None:
    if not ok:
        raise ConfigError(field, message)


def _decimals(step: float) -> int:
    """Return the number of decimals of ``step`` as written (0.01 -> 2, 0.5 -> 1, 10 -> 0)."""
    exponent = Decimal(repr(step)).normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


# --------------------------------------------------------------------------------------------
# The AS 2008 world
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ASWorldConfig:
    """The world of the AS 2008 experiment (section 3.3 of the paper).

    Attributes:
        s0: Initial mid (price).
        sigma: Volatility of the mid, price per sqrt(second).
        dt_s: Step length in seconds.
        horizon_s: Horizon T in seconds; the world has ``round(horizon_s / dt_s)`` steps.
        intensity_a: A, market order arrivals per second at the mid (for the venue).
        intensity_k: k, decay of arrivals with depth, 1/price (for the venue).
        tick: Spread of the displayed one-level book; for display only, the mid is exact.
        symbol: Symbol of the events.
    """

    s0: float = 100.0
    sigma: float = 2.0
    dt_s: float = 0.005
    horizon_s: float = 1.0
    intensity_a: float = 140.0
    intensity_k: float = 1.5
    tick: float = 0.0001
    symbol: str = "SIM"

    def __post_init__(self) -> None:
        """Reject impossible values, naming the field."""
        _require(self.s0 > 0.0, "s0", f"must be > 0, got {self.s0}")
        _require(self.sigma >= 0.0, "sigma", f"must be >= 0, got {self.sigma}")
        _require(self.dt_s > 0.0, "dt_s", f"must be > 0, got {self.dt_s}")
        _require(self.horizon_s >= 0.0, "horizon_s", f"must be >= 0, got {self.horizon_s}")
        _require(self.tick > 0.0, "tick", f"must be > 0, got {self.tick}")

    @property
    def steps(self) -> int:
        """Number of steps n; the world has n + 1 snapshots, at t = 0, dt, ..., T."""
        return round(self.horizon_s / self.dt_s)


def as_world_events(
    config: ASWorldConfig, rng: random.Random, start_ns: int = 0
) -> Iterator[BookSnapshot]:
    """Yield the AS 2008 world: a snapshot at t = 0, dt, ..., T with the model mid.

    Each step the mid moves up or down by ``sigma * sqrt(dt)`` with equal probability, using
    exactly one ``rng.random()``. A snapshot holds one bid at ``mid - tick/2`` and one ask at
    ``mid + tick/2`` (quantity 1e9), so its book is valid and its mid is the model mid.
    ``ts_exchange_ns == ts_local_ns``; ``sequence`` counts snapshots from 1.

    Args:
        config: The world's parameters.
        rng: Source of the mid moves.
        start_ns: Time of the first snapshot.
    """
    step = config.sigma * math.sqrt(config.dt_s)
    dt_ns = round(config.dt_s * NS_PER_SECOND)
    half = config.tick * 0.5
    symbol = config.symbol
    # The mid is s0 plus a whole number of steps; counting them avoids drift from summing floats.
    net_steps = 0
    for i in range(config.steps + 1):
        if i:
            net_steps += 1 if rng.random() < 0.5 else -1
        mid = config.s0 + net_steps * step
        ts = start_ns + i * dt_ns
        yield BookSnapshot(
            ts,
            ts,
            symbol,
            ((mid - half, _AS_LEVEL_QTY),),
            ((mid + half, _AS_LEVEL_QTY),),
            sequence=i + 1,
        )


# --------------------------------------------------------------------------------------------
# The synthetic L2 market
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SyntheticL2Config:
    """Parameters of the synthetic L2 market.

    Attributes:
        s0: Initial mid (price).
        sigma: Volatility of the mid, price per sqrt(second).
        intensity_a: A, market orders per second per side.
        intensity_k: k, 1/price: a market order reaches depth >= δ from the mid with
            probability ``exp(-k·δ)``, so a level at depth δ is traded at rate ``A·exp(-k·δ)``.
        bid_intensity_a: A of the bid side alone (market SELL orders hitting the bids),
            1/second; None: ``intensity_a``.
        bid_intensity_k: k of the bid side alone, 1/price; None: ``intensity_k``.
        ask_intensity_a: A of the ask side alone (market BUY orders lifting the asks),
            1/second; None: ``intensity_a``.
        ask_intensity_k: k of the ask side alone, 1/price; None: ``intensity_k``.
        tick: Price increment.
        lot: Quantity increment.
        levels: Number of price levels on each side, one per tick from the touch outwards.
            Market orders reaching beyond the last level trade nothing there, so a test that
            measures λ(δ) needs ``max_depth`` at least as deep as its deepest δ.
        level_qty: Mean quantity of a level; each level gets uniform(0.5, 1.5) times this.
        half_spread_ticks: Distance from the mid to each touch, in ticks (>= 1).
        mid_interval_s: Clock of the mid: it moves, and the book re-centres and refills the
            levels emptied by trades, every this many seconds.
        refresh_rate: Random level changes (replenishment or cancels) per second, both sides.
        duration_s: Length of the stream in seconds; None: endless.
        seed: Seed of the stream's ``random.Random``.
        symbol: Symbol of the events.
    """

    s0: float = 100.0
    sigma: float = 0.05
    intensity_a: float = 5.0
    intensity_k: float = 50.0
    tick: float = 0.01
    lot: float = 0.001
    levels: int = 20
    level_qty: float = 5.0
    half_spread_ticks: int = 1
    mid_interval_s: float = 0.1
    refresh_rate: float = 5.0
    duration_s: float | None = None
    seed: int = 1
    symbol: str = "SIM-USD"
    bid_intensity_a: float | None = None
    bid_intensity_k: float | None = None
    ask_intensity_a: float | None = None
    ask_intensity_k: float | None = None

    def __post_init__(self) -> None:
        """Reject impossible values, naming the field."""
        _require(self.s0 > 0.0, "s0", f"must be > 0, got {self.s0}")
        _require(self.sigma >= 0.0, "sigma", f"must be >= 0, got {self.sigma}")
        _require(self.intensity_a >= 0.0, "intensity_a", f"must be >= 0, got {self.intensity_a}")
        _require(self.intensity_k > 0.0, "intensity_k", f"must be > 0, got {self.intensity_k}")
        for name in ("bid_intensity_a", "ask_intensity_a"):
            a = getattr(self, name)
            _require(a is None or a >= 0.0, name, f"must be >= 0 or None, got {a}")
        for name in ("bid_intensity_k", "ask_intensity_k"):
            k = getattr(self, name)
            _require(k is None or k > 0.0, name, f"must be > 0 or None, got {k}")
        _require(self.tick > 0.0, "tick", f"must be > 0, got {self.tick}")
        _require(self.lot > 0.0, "lot", f"must be > 0, got {self.lot}")
        _require(self.levels >= 1, "levels", f"must be >= 1, got {self.levels}")
        _require(self.level_qty >= self.lot, "level_qty", "must be at least one lot")
        _require(
            self.half_spread_ticks >= 1,
            "half_spread_ticks",
            f"must be >= 1, got {self.half_spread_ticks}",
        )
        _require(
            self.mid_interval_s > 0.0, "mid_interval_s", f"must be > 0, got {self.mid_interval_s}"
        )
        _require(self.refresh_rate >= 0.0, "refresh_rate", f"must be >= 0, got {self.refresh_rate}")
        _require(
            self.duration_s is None or self.duration_s >= 0.0,
            "duration_s",
            f"must be >= 0 or None, got {self.duration_s}",
        )

    @property
    def bid_intensity(self) -> tuple[float, float]:
        """``(A, k)`` of the bid side (SELL aggressors), 1/second and 1/price."""
        a = self.intensity_a if self.bid_intensity_a is None else self.bid_intensity_a
        k = self.intensity_k if self.bid_intensity_k is None else self.bid_intensity_k
        return a, k

    @property
    def ask_intensity(self) -> tuple[float, float]:
        """``(A, k)`` of the ask side (BUY aggressors), 1/second and 1/price."""
        a = self.intensity_a if self.ask_intensity_a is None else self.ask_intensity_a
        k = self.intensity_k if self.ask_intensity_k is None else self.ask_intensity_k
        return a, k

    @property
    def max_depth(self) -> float:
        """Depth of the last level from the book centre, price: no trade prints deeper."""
        return (self.half_spread_ticks + self.levels - 1) * self.tick


class SyntheticL2Market:
    """A synthetic L2 market in the AS world, as a stream of book and trade events.

    The model, in integer ticks and lots:

    * The mid S is a Brownian motion sampled every ``mid_interval_s``; the book is centred on
      ``m = round(S / tick)``: bids at ``m - h``, ``m - h - 1``, ... and asks at ``m + h``, ...
      (``h = half_spread_ticks``), ``levels`` per side, every tick filled. On each clock step the
      book re-centres on the new m and refills levels emptied by trades, as one ``BookDelta``
      (none if nothing changed). Quantities of levels that stay are kept, so a fill model sees
      no spurious change at its price.
    * Market orders arrive as a Poisson process of rate A per side. Each reaches a depth δ drawn
      exponential with rate k, measured from ``m·tick``; it trades every level with depth <= δ,
      best first: the levels before the last completely, the last one partially (a uniform
      number of lots, possibly all). That is one ``Trade`` per level (aggressor set, trade ids
      increasing), then one ``BookDelta`` for the consumed levels, at the same timestamp. A
      market order reaching no level (δ inside the spread) prints nothing. A level at depth δ
      is therefore traded with intensity ``A·exp(-k·δ)``, exactly at the level lattice
      ``δ = (h + j)·tick``, as long as the book centre does not move. The bid side (SELL
      aggressors) and the ask side (BUY aggressors) may have their own A and k.
    * Replenishment and cancels arrive as a Poisson process of rate ``refresh_rate``: a random
      level of a random side gets a fresh random quantity (up or down), one ``BookDelta``.

    The book is never crossed and quantities are positive; prices and quantities are rounded to
    the decimals of tick and lot, the floats a venue's decimal strings would parse to.
    ``ts_exchange_ns == ts_local_ns``; book events carry a ``sequence`` counting from 1.

    Args:
        config: The market's parameters, including its seed.
    """

    __slots__ = ("config",)

    def __init__(self, config: SyntheticL2Config) -> None:
        self.config = config

    def events(self, start_ns: int = 0) -> Iterator[MarketEvent]:
        """Yield the market's events in time order, from a fresh rng seeded with ``seed``.

        Every call replays the same stream. It starts with a ``BookSnapshot`` at ``start_ns``
        and ends after ``duration_s`` (never, when it is None).

        Args:
            start_ns: Time of the first event.
        """
        return _SyntheticRun(self.config, random.Random(self.config.seed)).run(start_ns)


_NEVER = 1 << 62  # a due time no stream reaches, for a process with rate 0


class _SyntheticRun:
    """The mutable state of one pass over the synthetic market."""

    __slots__ = (
        "_asks",
        "_bids",
        "_cfg",
        "_lot_decimals",
        "_mid_ticks",
        "_price_decimals",
        "_rng",
        "_sequence",
        "_trade_id",
    )

    def __init__(self, config: SyntheticL2Config, rng: random.Random) -> None:
        self._cfg = config
        self._rng = rng
        self._price_decimals = _decimals(config.tick)
        self._lot_decimals = _decimals(config.lot)
        # Price in ticks -> quantity in lots.
        self._bids: dict[int, int] = {}
        self._asks: dict[int, int] = {}
        self._mid_ticks = 0
        self._sequence = 0
        self._trade_id = 0

    def run(self, start_ns: int) -> Iterator[MarketEvent]:
        cfg = self._cfg
        rng = self._rng
        interval_ns = round(cfg.mid_interval_s * NS_PER_SECOND)
        end_ns = (
            _NEVER if cfg.duration_s is None else start_ns + round(cfg.duration_s * NS_PER_SECOND)
        )
        mid_step = cfg.sigma * math.sqrt(cfg.mid_interval_s)
        bid_a, bid_k = cfg.bid_intensity
        ask_a, ask_k = cfg.ask_intensity
        # One process for both sides, the side drawn per order: with no per-side override this
        # is rate 2A and a fair coin, the same draws as before the overrides existed.
        order_rate = bid_a + ask_a
        p_buy = ask_a / order_rate if order_rate > 0.0 else 0.0

        s = cfg.s0
        self._recentre(s)
        yield self._snapshot(start_ns)
        next_clock = start_ns + interval_ns
        next_order = start_ns + self._wait(order_rate)
        next_refresh = start_ns + self._wait(cfg.refresh_rate)
        while True:
            # On a tie the clock goes first, then market orders, then refreshes: fixed order.
            ts = min(next_clock, next_order, next_refresh)
            if ts > end_ns:
                return
            if ts == next_clock:
                next_clock += interval_ns
                s += mid_step * rng.gauss(0.0, 1.0)
                delta = self._recentre(s)
                if delta is not None:
                    yield self._delta(ts, *delta)
            elif ts == next_order:
                next_order = ts + self._wait(order_rate)
                aggressor = Side.BUY if rng.random() < p_buy else Side.SELL
                k = ask_k if aggressor is Side.BUY else bid_k
                yield from self._sweep(ts, aggressor, rng.expovariate(k))
            else:
                next_refresh = ts + self._wait(cfg.refresh_rate)
                yield self._refresh(ts)

    # ---------------------------------------------------------------- processes

    def _wait(self, rate: float) -> int:
        """Draw the time to the next arrival of a Poisson process, in ns."""
        if rate <= 0.0:
            return _NEVER
        return round(self._rng.expovariate(rate) * NS_PER_SECOND)

    def _fresh_lots(self) -> int:
        cfg = self._cfg
        return max(1, round(cfg.level_qty * (0.5 + self._rng.random()) / cfg.lot))

    def _recentre(self, s: float) -> tuple[dict[int, int], dict[int, int]] | None:
        """Centre the book on ``s`` and refill holes; return the changed levels, if any."""
        cfg = self._cfg
        h = cfg.half_spread_ticks
        levels = cfg.levels
        # Keep every price positive however far the mid wanders down.
        mid = max(round(s / cfg.tick), h + levels)
        self._mid_ticks = mid
        bid_changes = self._recentre_side(self._bids, range(mid - h - levels + 1, mid - h + 1))
        ask_changes = self._recentre_side(self._asks, range(mid + h, mid + h + levels))
        if bid_changes or ask_changes:
            return bid_changes, ask_changes
        return None

    def _recentre_side(self, side: dict[int, int], wanted: range) -> dict[int, int]:
        changes: dict[int, int] = {}
        for price in [p for p in side if p not in wanted]:
            del side[price]
            changes[price] = 0
        for price in wanted:
            if price not in side:
                side[price] = changes[price] = self._fresh_lots()
        return changes

    def _sweep(self, ts: int, aggressor: Side, depth: float) -> Iterator[MarketEvent]:
        """Trade a market order reaching ``depth`` (price) from the mid through the book."""
        cfg = self._cfg
        reach = int(depth / cfg.tick)  # deepest level reached, in ticks from the mid
        mid = self._mid_ticks
        if aggressor is Side.BUY:
            book = self._asks
            hit = sorted(p for p in book if p - mid <= reach)
        else:
            book = self._bids
            hit = sorted((p for p in book if mid - p <= reach), reverse=True)
        if not hit:
            return
        changes: dict[int, int] = {}
        last = hit[-1]
        for price in hit:
            lots = book[price]
            traded = self._rng.randint(1, lots) if price == last else lots
            left = lots - traded
            if left:
                book[price] = left
            else:
                del book[price]
            changes[price] = left
            self._trade_id += 1
            yield Trade(
                ts,
                ts,
                cfg.symbol,
                self._price(price),
                self._qty(traded),
                aggressor,
                str(self._trade_id),
            )
        if aggressor is Side.BUY:
            yield self._delta(ts, {}, changes)
        else:
            yield self._delta(ts, changes, {})

    def _refresh(self, ts: int) -> BookDelta:
        """Give one random level of one random side a fresh quantity."""
        cfg = self._cfg
        rng = self._rng
        h = cfg.half_spread_ticks
        index = rng.randrange(cfg.levels)
        lots = self._fresh_lots()
        if rng.random() < 0.5:
            price = self._mid_ticks - h - index
            self._bids[price] = lots
            return self._delta(ts, {price: lots}, {})
        price = self._mid_ticks + h + index
        self._asks[price] = lots
        return self._delta(ts, {}, {price: lots})

    # ---------------------------------------------------------------- events

    def _price(self, ticks: int) -> float:
        return round(ticks * self._cfg.tick, self._price_decimals)

    def _qty(self, lots: int) -> float:
        return round(lots * self._cfg.lot, self._lot_decimals)

    def _snapshot(self, ts: int) -> BookSnapshot:
        self._sequence += 1
        bids = tuple(
            (self._price(p), self._qty(q)) for p, q in sorted(self._bids.items(), reverse=True)
        )
        asks = tuple((self._price(p), self._qty(q)) for p, q in sorted(self._asks.items()))
        return BookSnapshot(ts, ts, self._cfg.symbol, bids, asks, self._sequence)

    def _delta(self, ts: int, bids: dict[int, int], asks: dict[int, int]) -> BookDelta:
        self._sequence += 1
        return BookDelta(
            ts,
            ts,
            self._cfg.symbol,
            tuple((self._price(p), self._qty(q)) for p, q in sorted(bids.items(), reverse=True)),
            tuple((self._price(p), self._qty(q)) for p, q in sorted(asks.items())),
            self._sequence,
        )
