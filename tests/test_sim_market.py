"""Tests of the simulated markets: the AS 2008 world and the synthetic L2 market."""

from __future__ import annotations

import itertools
import math
import random
from collections import defaultdict

import pytest

from adapters.sim_market import (
    ASWorldConfig,
    SyntheticL2Config,
    SyntheticL2Market,
    as_world_events,
)
from bot.book import OrderBook
from bot.errors import ConfigError
from bot.events import BookDelta, BookSnapshot, MarketEvent, Side, Trade

# ------------------------------------------------------------------------------------------
# The AS 2008 world
# ------------------------------------------------------------------------------------------


def test_as_world_has_n_plus_one_snapshots_on_the_step_clock() -> None:
    config = ASWorldConfig()

    events = list(as_world_events(config, random.Random(1), start_ns=1_000))

    assert config.steps == 200
    assert len(events) == 201
    assert [e.ts_local_ns for e in events] == [1_000 + i * 5_000_000 for i in range(201)]
    assert all(e.ts_exchange_ns == e.ts_local_ns for e in events)
    assert all(isinstance(e, BookSnapshot) and e.symbol == "SIM" for e in events)


def test_as_world_mid_moves_plus_or_minus_sigma_sqrt_dt_and_book_mid_is_the_model_mid() -> None:
    config = ASWorldConfig()
    book = OrderBook(config.symbol)
    step = config.sigma * math.sqrt(config.dt_s)
    mids = []

    for event in as_world_events(config, random.Random(2)):
        book.apply(event)
        assert book.valid
        assert book.spread == pytest.approx(config.tick)
        mids.append(book.mid)

    assert mids[0] == pytest.approx(config.s0)
    moves = [b - a for a, b in itertools.pairwise(mids)]
    assert all(abs(abs(m) - step) < 1e-9 for m in moves)
    ups = sum(1 for m in moves if m > 0)
    assert 70 < ups < 130  # a fair coin over 200 steps


def test_as_world_uses_one_draw_per_step_and_is_reproducible() -> None:
    config = ASWorldConfig(horizon_s=0.5)
    rng = random.Random(9)

    first = list(as_world_events(config, rng))
    reference = random.Random(9)
    for _ in range(config.steps):
        reference.random()

    assert rng.getstate() == reference.getstate()
    assert first == list(as_world_events(config, random.Random(9)))
    assert first != list(as_world_events(config, random.Random(10)))


def test_as_world_config_rejects_non_positive_step() -> None:
    with pytest.raises(ConfigError) as info:
        ASWorldConfig(dt_s=0.0)
    assert info.value.field == "dt_s"


# ------------------------------------------------------------------------------------------
# The synthetic L2 market
# ------------------------------------------------------------------------------------------


def _apply_all(events: list[MarketEvent], symbol: str) -> OrderBook:
    """Apply every book event to a real book, checking it stays valid and positive."""
    book = OrderBook(symbol)
    for event in events:
        if isinstance(event, BookSnapshot | BookDelta):
            book.apply(event)  # raises DataError on a crossed or corrupt book
            assert book.valid
            assert all(q >= 0.0 for _, q in event.bids + event.asks)
            assert book.best_bid < book.best_ask
        else:
            assert isinstance(event, Trade)
            assert event.qty > 0.0
    return book


def test_synthetic_market_starts_with_a_full_ladder_around_s0() -> None:
    config = SyntheticL2Config()

    first = next(iter(SyntheticL2Market(config).events(start_ns=7)))

    assert isinstance(first, BookSnapshot)
    assert first.ts_local_ns == first.ts_exchange_ns == 7
    assert len(first.bids) == len(first.asks) == config.levels
    assert first.bids[0][0] == 99.99
    assert first.asks[0][0] == 100.01
    assert all(
        0.5 * config.level_qty - config.lot <= q <= 1.5 * config.level_qty + config.lot
        for _, q in first.bids + first.asks
    )


@pytest.mark.parametrize(
    "config",
    [
        SyntheticL2Config(duration_s=60.0),
        # BTC-like prices, and a mid that jumps past the whole ladder every step.
        SyntheticL2Config(
            duration_s=60.0, s0=60_000.0, tick=0.1, sigma=30.0, intensity_k=5.0, seed=4
        ),
    ],
)
def test_synthetic_market_book_is_never_crossed_and_trades_happen(
    config: SyntheticL2Config,
) -> None:
    events = list(SyntheticL2Market(config).events())

    _apply_all(events, config.symbol)

    trades = [e for e in events if isinstance(e, Trade)]
    assert len(trades) > 100
    assert {t.aggressor for t in trades} == {Side.BUY, Side.SELL}
    ids = [int(t.trade_id) for t in trades]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    stamps = [e.ts_local_ns for e in events]
    assert stamps == sorted(stamps)
    assert stamps[-1] <= 60 * 1_000_000_000
    rate = len(events) / 60.0
    assert 5.0 < rate < 100.0  # live-like: a few to a few dozen events per second


def test_synthetic_market_trades_print_at_displayed_levels() -> None:
    config = SyntheticL2Config(duration_s=20.0)
    book = OrderBook(config.symbol)

    for event in SyntheticL2Market(config).events():
        if isinstance(event, Trade):
            resting = Side.SELL if event.aggressor is Side.BUY else Side.BUY
            assert 0.0 < event.qty <= book.qty_at(resting, event.price) + 1e-9
        else:
            assert isinstance(event, BookSnapshot | BookDelta)
            book.apply(event)


def test_synthetic_market_touch_intensity_decays_as_a_exp_minus_k_delta() -> None:
    duration_s = 600.0
    config = SyntheticL2Config(duration_s=duration_s, seed=11)
    interval_ns = round(config.mid_interval_s * 1e9)
    book = OrderBook(config.symbol)
    ref_mid = math.nan
    # Deepest level (ticks from the reference mid) reached by each market order.
    reach: dict[tuple[int, Side], int] = defaultdict(int)

    for event in SyntheticL2Market(config).events():
        if isinstance(event, Trade):
            depth = round(abs(event.price - ref_mid) / config.tick)
            key = (event.ts_local_ns, event.aggressor)
            reach[key] = max(reach[key], depth)
            continue
        assert isinstance(event, BookSnapshot | BookDelta)
        book.apply(event)
        # On the mid clock the book is re-centred and full: its mid is the model's mid.
        if event.ts_local_ns % interval_ns == 0:
            ref_mid = book.mid

    depths = range(1, 7)
    rates = []
    for j in depths:
        hits = sum(1 for deepest in reach.values() if deepest >= j)
        rate = hits / (2 * duration_s)  # per side
        expected = config.intensity_a * math.exp(-config.intensity_k * j * config.tick)
        assert rate == pytest.approx(expected, rel=0.2), j
        rates.append(rate)
    # Log-linear least squares over the depths: the slope is -k.
    xs = [j * config.tick for j in depths]
    ys = [math.log(r) for r in rates]
    x_bar = sum(xs) / len(xs)
    y_bar = sum(ys) / len(ys)
    slope = sum((x - x_bar) * (y - y_bar) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - x_bar) ** 2 for x in xs
    )
    assert -slope == pytest.approx(config.intensity_k, rel=0.15)


def test_synthetic_market_is_deterministic_per_seed() -> None:
    config = SyntheticL2Config(duration_s=10.0, seed=5)

    first = list(SyntheticL2Market(config).events())
    again = list(SyntheticL2Market(config).events())
    other = list(SyntheticL2Market(SyntheticL2Config(duration_s=10.0, seed=6)).events())

    assert first == again
    assert first != other


def test_synthetic_market_without_duration_is_endless() -> None:
    stream = SyntheticL2Market(SyntheticL2Config()).events()

    events = [next(stream) for _ in range(20_000)]

    assert events[-1].ts_local_ns > 0


def test_synthetic_config_rejects_bad_values_naming_the_field() -> None:
    with pytest.raises(ConfigError) as info:
        SyntheticL2Config(half_spread_ticks=0)
    assert info.value.field == "half_spread_ticks"
