"""Tests of the simulated venues: lifecycle, latency, fill models, queue estimate, AS fills."""

from __future__ import annotations

import math
import random
from dataclasses import FrozenInstanceError

import pytest

from adapters.sim_market import SyntheticL2Config, SyntheticL2Market
from adapters.sim_venue import (
    FillModel,
    PoissonFillVenue,
    PoissonVenueConfig,
    SimVenue,
    SimVenueConfig,
    hit_probability,
)
from bot.book import OrderBook
from bot.clock import VirtualClock
from bot.errors import ConfigError
from bot.events import (
    BookDelta,
    BookSnapshot,
    CancelOrder,
    Level,
    Liquidity,
    MarketEvent,
    OrderAccepted,
    OrderCanceled,
    OrderCancelRejected,
    OrderEvent,
    OrderFilled,
    OrderRejected,
    PlaceOrder,
    Side,
    Trade,
)

SYM = "TEST"
MS = 1_000_000


def snapshot(ts: int, bids: list[Level], asks: list[Level]) -> BookSnapshot:
    return BookSnapshot(ts, ts, SYM, tuple(bids), tuple(asks))


def delta(ts: int, bids: list[Level] | None = None, asks: list[Level] | None = None) -> BookDelta:
    return BookDelta(ts, ts, SYM, tuple(bids or ()), tuple(asks or ()))


def trade(ts: int, price: float, qty: float, aggressor: Side, trade_id: str = "") -> Trade:
    return Trade(ts, ts, SYM, price, qty, aggressor, trade_id)


class Harness:
    """A venue on a virtual clock fed like the engine feeds it: venue first, then the book."""

    def __init__(self, config: SimVenueConfig | None = None) -> None:
        self.clock = VirtualClock()
        self.book = OrderBook(SYM)
        self.out: list[OrderEvent] = []
        self.venue = SimVenue(config or SimVenueConfig(), self.clock, self.out.append, self.book)
        self._ids = 0

    def at(self, ts: int) -> None:
        self.clock.run_due(ts)
        self.clock.advance_to(ts)

    def market(self, event: MarketEvent) -> None:
        self.at(event.ts_local_ns)
        self.venue.on_market(event)
        if isinstance(event, BookSnapshot | BookDelta):
            self.book.apply(event)
            self.venue.after_book(event.ts_local_ns)

    def place(self, side: Side, price: float, qty: float, *, post_only: bool = True) -> str:
        self._ids += 1
        cid = f"o{self._ids}"
        now = self.clock.now_ns()
        self.venue.submit(PlaceOrder(now, cid, SYM, side, price, qty, post_only))
        return cid

    def cancel(self, cid: str) -> None:
        self.venue.submit(CancelOrder(self.clock.now_ns(), cid, SYM))

    def fills(self) -> list[OrderFilled]:
        return [e for e in self.out if isinstance(e, OrderFilled)]

    def of_type(self, kind: type) -> list[OrderEvent]:
        return [e for e in self.out if isinstance(e, kind)]


def book_100(h: Harness, bid_qty: float = 5.0, ts: int = 0) -> None:
    """Bids 100.0 / 99.99, asks 100.02 / 100.03."""
    h.market(snapshot(ts, [(100.0, bid_qty), (99.99, 7.0)], [(100.02, 4.0), (100.03, 6.0)]))


# ------------------------------------------------------------------------------------------
# Lifecycle and latency
# ------------------------------------------------------------------------------------------


def test_zero_latency_place_is_accepted_synchronously_with_queue_from_book() -> None:
    h = Harness()
    book_100(h)

    cid = h.place(Side.BUY, 100.0, 1.0)

    assert h.out == [OrderAccepted(0, cid, "sim-1")]
    order = h.venue.open_orders[cid]
    assert (order.side, order.price, order.remaining, order.queue_ahead) == (
        Side.BUY,
        100.0,
        1.0,
        5.0,
    )
    assert h.venue.accepted == 1


def test_place_is_accepted_only_after_entry_latency_and_cannot_fill_before() -> None:
    h = Harness(SimVenueConfig(entry_latency_ns=10 * MS))
    book_100(h)
    cid = h.place(Side.BUY, 100.0, 1.0)

    h.market(trade(5 * MS, 99.99, 10.0, Side.SELL))  # through our price, but we are in flight
    assert h.out == []
    assert cid not in h.venue.open_orders

    h.at(10 * MS)
    assert h.out == [OrderAccepted(10 * MS, cid, "sim-1")]

    h.market(trade(11 * MS, 99.99, 10.0, Side.SELL))
    assert [f.qty for f in h.fills()] == [1.0]


def test_queue_ahead_is_read_from_the_book_at_activation_not_at_submit() -> None:
    h = Harness(SimVenueConfig(entry_latency_ns=10 * MS))
    book_100(h, bid_qty=5.0)
    cid = h.place(Side.BUY, 100.0, 1.0)

    h.market(delta(5 * MS, bids=[(100.0, 9.0)]))
    h.at(10 * MS)

    assert h.venue.open_orders[cid].queue_ahead == 9.0


def test_cancel_takes_effect_after_cancel_latency_and_fills_can_arrive_meanwhile() -> None:
    h = Harness(SimVenueConfig(cancel_latency_ns=10 * MS))
    book_100(h)
    cid = h.place(Side.BUY, 100.0, 4.0)
    h.cancel(cid)

    h.market(trade(3 * MS, 99.99, 1.5, Side.SELL, "t1"))  # through: fills in the cancel window
    assert cid not in h.venue.open_orders  # a full fill removes it
    h.at(10 * MS)

    assert h.fills()[0].qty == 4.0
    assert h.out[-1] == OrderCancelRejected(10 * MS, cid, "unknown_order")


def test_cancel_of_resting_order_cancels_at_due_time() -> None:
    h = Harness(SimVenueConfig(cancel_latency_ns=10 * MS))
    book_100(h)
    cid = h.place(Side.BUY, 100.0, 4.0)
    h.cancel(cid)

    h.at(9 * MS)
    assert cid in h.venue.open_orders
    h.at(10 * MS)

    assert h.out[-1] == OrderCanceled(10 * MS, cid)
    assert h.venue.open_orders == {}


def test_cancel_arriving_before_activation_cancels_the_order_at_activation() -> None:
    h = Harness(SimVenueConfig(entry_latency_ns=10 * MS, cancel_latency_ns=2 * MS))
    book_100(h)
    cid = h.place(Side.BUY, 100.0, 1.0)
    h.cancel(cid)

    h.at(5 * MS)
    assert h.out == []
    h.at(10 * MS)

    assert h.out == [OrderCanceled(10 * MS, cid, "canceled_before_activation")]
    assert h.venue.open_orders == {}
    assert h.venue.accepted == 0


def test_cancel_of_unknown_order_is_rejected() -> None:
    h = Harness()
    book_100(h)

    h.cancel("nope")

    assert h.out == [OrderCancelRejected(0, "nope", "unknown_order")]


def test_duplicate_client_order_id_is_rejected() -> None:
    h = Harness()
    book_100(h)
    h.venue.submit(PlaceOrder(0, "x", SYM, Side.BUY, 100.0, 1.0))

    h.venue.submit(PlaceOrder(0, "x", SYM, Side.BUY, 99.99, 1.0))

    assert h.out[-1] == OrderRejected(0, "x", "duplicate_client_order_id")
    assert h.venue.rejects == 1


def test_open_orders_is_a_read_only_copy() -> None:
    h = Harness()
    book_100(h)
    cid = h.place(Side.BUY, 100.0, 1.0)
    view = h.venue.open_orders

    with pytest.raises(TypeError):
        view[cid] = view[cid]  # type: ignore[index]
    with pytest.raises(FrozenInstanceError):
        view[cid].remaining = 0.0  # type: ignore[misc]


def test_config_rejects_negative_latency_naming_the_field() -> None:
    with pytest.raises(ConfigError) as info:
        SimVenueConfig(entry_latency_ns=-1)
    assert info.value.field == "entry_latency_ns"


# ------------------------------------------------------------------------------------------
# Crossing orders: post-only reject and taker execution
# ------------------------------------------------------------------------------------------


def test_post_only_order_that_would_cross_is_rejected() -> None:
    h = Harness()
    book_100(h)

    cid = h.place(Side.BUY, 100.02, 1.0)

    assert h.out == [OrderRejected(0, cid, "post_only_would_cross")]
    assert h.venue.rejects == 1
    assert h.venue.open_orders == {}


def test_post_only_cross_is_checked_against_the_book_at_activation() -> None:
    h = Harness(SimVenueConfig(entry_latency_ns=10 * MS))
    book_100(h)
    cid = h.place(Side.SELL, 100.01, 1.0)  # fine now

    h.market(delta(5 * MS, bids=[(100.01, 2.0)]))  # the bid moves up to our price
    h.at(10 * MS)

    assert h.out == [OrderRejected(10 * MS, cid, "post_only_would_cross")]


def test_crossing_limit_order_takes_displayed_depth_then_rests_the_remainder() -> None:
    h = Harness(SimVenueConfig(taker_fee_bps=5.0, maker_fee_bps=-1.0))
    book_100(h)

    cid = h.place(Side.BUY, 100.03, 12.0, post_only=False)

    fills = h.fills()
    assert [(f.price, f.qty, f.remaining_qty, f.liquidity) for f in fills] == [
        (100.02, 4.0, 8.0, Liquidity.TAKER),
        (100.03, 6.0, 2.0, Liquidity.TAKER),
    ]
    assert fills[0].fee == pytest.approx(100.02 * 4.0 * 5e-4)
    assert fills[0].fee > 0.0
    assert isinstance(h.out[0], OrderAccepted)
    rest = h.venue.open_orders[cid]
    assert (rest.price, rest.remaining, rest.queue_ahead) == (100.03, 2.0, 0.0)


def test_crossing_order_filled_completely_by_taking_does_not_rest() -> None:
    h = Harness()
    book_100(h)

    cid = h.place(Side.SELL, 99.0, 6.0, post_only=False)

    assert [(f.price, f.qty, f.remaining_qty) for f in h.fills()] == [
        (100.0, 5.0, 1.0),
        (99.99, 1.0, 0.0),
    ]
    assert cid not in h.venue.open_orders


def test_post_only_crossing_order_takes_when_rejects_are_disabled() -> None:
    h = Harness(SimVenueConfig(post_only_reject=False))
    book_100(h)

    h.place(Side.BUY, 100.02, 1.0, post_only=True)

    assert [(f.price, f.liquidity) for f in h.fills()] == [(100.02, Liquidity.TAKER)]


def test_maker_fill_with_negative_maker_fee_is_a_rebate() -> None:
    h = Harness(SimVenueConfig(maker_fee_bps=-1.0))
    book_100(h)
    h.place(Side.BUY, 100.0, 2.0)

    h.market(trade(MS, 99.99, 1.0, Side.SELL))

    fill = h.fills()[0]
    assert fill.liquidity is Liquidity.MAKER
    assert fill.price == 100.0
    assert fill.fee == pytest.approx(-100.0 * 2.0 * 1e-4)
    assert fill.fee < 0.0


# ------------------------------------------------------------------------------------------
# Fill models on trades
# ------------------------------------------------------------------------------------------


def test_queue_trades_first_consume_queue_ahead_then_fill_partially() -> None:
    h = Harness()
    book_100(h, bid_qty=5.0)
    cid = h.place(Side.BUY, 100.0, 10.0)

    h.market(trade(1 * MS, 100.0, 3.0, Side.SELL, "t1"))
    assert h.fills() == []
    assert h.venue.open_orders[cid].queue_ahead == 2.0

    h.market(trade(2 * MS, 100.0, 4.0, Side.SELL, "t2"))
    h.market(trade(3 * MS, 100.0, 20.0, Side.SELL, "t3"))

    assert [(f.qty, f.remaining_qty, f.trade_id) for f in h.fills()] == [
        (2.0, 8.0, "t2"),
        (8.0, 0.0, "t3"),
    ]
    assert h.venue.open_orders == {}
    assert h.venue.fills == 2


def test_queue_trade_through_the_price_fills_fully_despite_queue() -> None:
    h = Harness()
    book_100(h, bid_qty=50.0)
    h.place(Side.BUY, 100.0, 3.0)

    h.market(trade(MS, 99.99, 0.1, Side.SELL))

    assert [(f.qty, f.remaining_qty, f.price) for f in h.fills()] == [(3.0, 0.0, 100.0)]


def test_queue_order_alone_at_the_front_fills_on_the_next_trade() -> None:
    h = Harness()
    book_100(h)
    cid = h.place(Side.BUY, 100.01, 3.0)  # an empty level inside the spread
    assert h.venue.open_orders[cid].queue_ahead == 0.0

    h.market(trade(MS, 100.01, 1.0, Side.SELL))

    assert [(f.qty, f.remaining_qty) for f in h.fills()] == [(1.0, 2.0)]


def test_queue_trade_at_price_is_shared_by_our_orders_in_time_priority() -> None:
    h = Harness()
    book_100(h)
    first = h.place(Side.SELL, 100.01, 2.0)
    second = h.place(Side.SELL, 100.01, 2.0)

    h.market(trade(MS, 100.01, 3.0, Side.BUY))

    assert [(f.client_order_id, f.qty) for f in h.fills()] == [(first, 2.0), (second, 1.0)]


def test_trades_on_the_other_side_do_not_fill() -> None:
    h = Harness(SimVenueConfig(fill_model=FillModel.TOUCH))
    book_100(h)
    h.place(Side.BUY, 100.0, 1.0)

    h.market(trade(MS, 100.02, 5.0, Side.BUY))  # lifts asks; our bid is not involved

    assert h.fills() == []


def test_trade_through_model_never_fills_on_a_trade_at_the_price() -> None:
    h = Harness(SimVenueConfig(fill_model=FillModel.TRADE_THROUGH))
    book_100(h)
    h.place(Side.SELL, 100.02, 1.0)

    h.market(trade(MS, 100.02, 1000.0, Side.BUY))
    assert h.fills() == []

    h.market(trade(2 * MS, 100.03, 0.1, Side.BUY))
    assert [(f.qty, f.price) for f in h.fills()] == [(1.0, 100.02)]


def test_touch_model_fills_whole_order_on_a_small_trade_at_the_price() -> None:
    h = Harness(SimVenueConfig(fill_model=FillModel.TOUCH))
    book_100(h, bid_qty=50.0)
    h.place(Side.BUY, 100.0, 3.0)

    h.market(trade(MS, 100.0, 0.1, Side.SELL))

    assert [(f.qty, f.remaining_qty) for f in h.fills()] == [(3.0, 0.0)]


@pytest.mark.parametrize("model", list(FillModel))
def test_opposite_side_moving_through_our_price_fills_in_every_model(model: FillModel) -> None:
    h = Harness(SimVenueConfig(fill_model=model))
    book_100(h, bid_qty=50.0)
    h.place(Side.BUY, 100.0, 3.0)

    # The bid level is gone and an ask now sits at our price: the market went through us.
    h.market(delta(MS, bids=[(100.0, 0.0)], asks=[(100.0, 1.0)]))

    assert [(f.qty, f.price, f.liquidity) for f in h.fills()] == [(3.0, 100.0, Liquidity.MAKER)]


def test_snapshot_with_crossing_opposite_level_fills() -> None:
    h = Harness()
    book_100(h)
    h.place(Side.SELL, 100.02, 1.0)

    h.market(snapshot(MS, [(100.03, 1.0)], [(100.04, 1.0)]))

    assert [f.qty for f in h.fills()] == [1.0]


def test_delta_not_reaching_our_price_does_not_fill() -> None:
    h = Harness()
    book_100(h)
    h.place(Side.BUY, 100.0, 1.0)

    h.market(delta(MS, asks=[(100.01, 1.0)]))

    assert h.fills() == []


# ------------------------------------------------------------------------------------------
# Queue position under depth updates
# ------------------------------------------------------------------------------------------


def test_unexplained_decrease_removes_queue_ahead_with_probability_rule() -> None:
    h = Harness(SimVenueConfig(queue_power=2.0))
    book_100(h, bid_qty=5.0)
    cid = h.place(Side.BUY, 100.0, 1.0)
    h.market(delta(MS, bids=[(100.0, 8.0)]))  # 3 more join behind us
    assert h.venue.open_orders[cid].queue_ahead == 5.0

    h.market(delta(2 * MS, bids=[(100.0, 6.0)]))  # 2 canceled, origin unknown

    front, back = 5.0, 3.0
    p = back**2 / (back**2 + front**2)
    assert h.venue.open_orders[cid].queue_ahead == pytest.approx(front - 2.0 * p)


def test_queue_power_changes_the_attribution() -> None:
    h = Harness(SimVenueConfig(queue_power=3.0))
    book_100(h, bid_qty=5.0)
    cid = h.place(Side.BUY, 100.0, 1.0)
    h.market(delta(MS, bids=[(100.0, 8.0)]))

    h.market(delta(2 * MS, bids=[(100.0, 6.0)]))

    p = 27.0 / (27.0 + 125.0)
    assert h.venue.open_orders[cid].queue_ahead == pytest.approx(5.0 - 2.0 * p)


def test_decrease_with_nobody_behind_us_is_clamped_to_the_level() -> None:
    h = Harness()
    book_100(h, bid_qty=5.0)
    cid = h.place(Side.BUY, 100.0, 2.0)

    h.market(delta(MS, bids=[(100.0, 1.0)]))
    assert h.venue.open_orders[cid].queue_ahead == 1.0
    h.market(delta(2 * MS, bids=[(100.0, 0.0)]))
    assert h.venue.open_orders[cid].queue_ahead == 0.0

    h.market(trade(3 * MS, 100.0, 0.5, Side.SELL))
    assert [f.qty for f in h.fills()] == [0.5]


def test_trade_volume_is_not_counted_again_by_the_following_depth_update() -> None:
    h = Harness()
    book_100(h, bid_qty=5.0)
    cid = h.place(Side.BUY, 100.0, 1.0)
    h.market(delta(MS, bids=[(100.0, 10.0)]))  # 5 behind us

    h.market(trade(2 * MS, 100.0, 3.0, Side.SELL))
    assert h.venue.open_orders[cid].queue_ahead == 2.0
    h.market(delta(2 * MS, bids=[(100.0, 7.0)]))  # the depth update reflecting that trade

    assert h.venue.open_orders[cid].queue_ahead == 2.0
    h.market(delta(3 * MS, bids=[(100.0, 6.0)]))  # a later cancel is attributed again
    assert h.venue.open_orders[cid].queue_ahead < 2.0


def test_snapshot_without_our_level_empties_the_queue_ahead() -> None:
    h = Harness()
    book_100(h, bid_qty=5.0)
    cid = h.place(Side.BUY, 100.0, 1.0)

    h.market(snapshot(MS, [(99.99, 7.0)], [(100.02, 4.0)]))

    assert h.venue.open_orders[cid].queue_ahead == 0.0


def test_increase_of_the_level_does_not_move_us_back() -> None:
    h = Harness()
    book_100(h, bid_qty=5.0)
    cid = h.place(Side.BUY, 100.0, 1.0)

    h.market(delta(MS, bids=[(100.0, 50.0)]))

    assert h.venue.open_orders[cid].queue_ahead == 5.0


# ------------------------------------------------------------------------------------------
# Determinism on a synthetic market
# ------------------------------------------------------------------------------------------


def _paper_run(market_seed: int, model: FillModel) -> list[OrderEvent]:
    """Quote one lot at each touch on the synthetic market; return every order event."""
    clock = VirtualClock()
    book = OrderBook("SIM-USD")
    out: list[OrderEvent] = []
    done: set[str] = set()

    def sink(event: OrderEvent) -> None:
        out.append(event)
        if isinstance(event, OrderCanceled | OrderRejected) or (
            isinstance(event, OrderFilled) and event.remaining_qty == 0.0
        ):
            done.add(event.client_order_id)

    venue = SimVenue(
        SimVenueConfig(fill_model=model, entry_latency_ns=5 * MS, cancel_latency_ns=5 * MS),
        clock,
        sink,
        book,
    )
    market = SyntheticL2Market(SyntheticL2Config(duration_s=60.0, seed=market_seed))
    working: dict[Side, tuple[str, float]] = {}
    n = 0
    for event in market.events():
        ts = event.ts_local_ns
        clock.run_due(ts)
        clock.advance_to(ts)
        venue.on_market(event)
        if isinstance(event, BookSnapshot | BookDelta):
            book.apply(event)
        for side, best in ((Side.BUY, book.best_bid), (Side.SELL, book.best_ask)):
            current = working.get(side)
            if current is not None and current[0] not in done:
                if current[1] == best:
                    continue
                venue.submit(CancelOrder(ts, current[0], "SIM-USD"))
            n += 1
            cid = f"c{n}"
            venue.submit(PlaceOrder(ts, cid, "SIM-USD", side, best, 1.0))
            working[side] = (cid, best)
    return out


@pytest.mark.parametrize("model", list(FillModel))
def test_same_seed_gives_identical_order_event_streams(model: FillModel) -> None:
    first = _paper_run(7, model)
    second = _paper_run(7, model)
    other = _paper_run(8, model)

    assert first == second
    assert any(isinstance(e, OrderFilled) for e in first)
    assert first != other


def test_fill_models_rank_from_conservative_to_optimistic() -> None:
    filled = {
        model: sum(e.qty for e in _paper_run(3, model) if isinstance(e, OrderFilled))
        for model in FillModel
    }

    assert filled[FillModel.TRADE_THROUGH] <= filled[FillModel.QUEUE] <= filled[FillModel.TOUCH]


# ------------------------------------------------------------------------------------------
# PoissonFillVenue: the AS 2008 fill rule
# ------------------------------------------------------------------------------------------


def mid_snapshot(ts: int, mid: float) -> BookSnapshot:
    return BookSnapshot(ts, ts, SYM, ((mid - 0.00005, 1e9),), ((mid + 0.00005, 1e9),))


class PoissonHarness:
    def __init__(self, config: PoissonVenueConfig, rng: random.Random) -> None:
        self.clock = VirtualClock()
        self.out: list[OrderEvent] = []
        self.venue = PoissonFillVenue(config, self.clock, self.out.append, rng)

    def step(self, ts: int, mid: float) -> None:
        self.clock.run_due(ts)
        self.clock.advance_to(ts)
        self.venue.on_market(mid_snapshot(ts, mid))

    def place(self, cid: str, side: Side, price: float, qty: float = 1.0) -> None:
        self.venue.submit(PlaceOrder(self.clock.now_ns(), cid, SYM, side, price, qty))

    def fills(self) -> list[OrderFilled]:
        return [e for e in self.out if isinstance(e, OrderFilled)]


def test_hit_probability_is_capped_at_one_and_never_overflows() -> None:
    assert hit_probability(140.0, 1.5, 0.5, 0.005) == pytest.approx(140.0 * math.exp(-0.75) * 0.005)
    assert hit_probability(140.0, 1.5, -1e6, 0.005) == 1.0
    assert hit_probability(140.0, 1.5, 0.0, 0.0) == 0.0


def test_poisson_empirical_fill_rate_matches_intensity() -> None:
    a, k, dt_ns = 140.0, 1.5, 5 * MS
    h = PoissonHarness(PoissonVenueConfig(a, k), random.Random(12345))
    h.step(0, 100.0)
    steps = 20_000
    n = 0
    for i in range(1, steps + 1):
        # Re-quote a filled side at the same depths from the mid: δa = 0.5, δb = 1.0.
        resting = h.venue.open_orders
        for side, price in ((Side.SELL, 100.5), (Side.BUY, 99.0)):
            if not any(o.side is side for o in resting.values()):
                n += 1
                h.place(f"q{n}", side, price)
        h.step(i * dt_ns, 100.0)

    fills = h.fills()
    for side, depth in ((Side.SELL, 0.5), (Side.BUY, 1.0)):
        rate = sum(1 for f in fills if f.side is side) / steps
        expected = a * math.exp(-k * depth) * dt_ns / 1e9
        assert rate == pytest.approx(expected, rel=0.05)
    assert {f.price for f in fills} == {100.5, 99.0}
    assert all(f.liquidity is Liquidity.MAKER and f.remaining_qty == 0.0 for f in fills)


def test_poisson_first_snapshot_only_records_the_mid() -> None:
    h = PoissonHarness(PoissonVenueConfig(1e12, 0.0), random.Random(1))
    h.place("a", Side.SELL, 100.1)

    h.step(0, 100.0)
    assert h.fills() == []
    h.step(5 * MS, 100.0)

    assert [(f.price, f.ts_ns) for f in h.fills()] == [(100.1, 5 * MS)]


def test_poisson_depth_is_measured_from_the_previous_mid() -> None:
    # The ask sits 1.0 above the mid its quote was set against; the new mid jumps past it.
    # Measured from the previous mid the hit probability is tiny, so no fill.
    h = PoissonHarness(PoissonVenueConfig(140.0, 50.0), random.Random(1))
    h.step(0, 100.0)
    h.place("a", Side.SELL, 101.0)

    h.step(5 * MS, 102.0)

    assert h.fills() == []


def test_poisson_draws_asks_first_then_bids_one_draw_per_order() -> None:
    class Scripted(random.Random):
        def __init__(self, values: list[float]) -> None:
            super().__init__(0)
            self.values = values

        def random(self) -> float:
            return self.values.pop(0)

    rng = Scripted([0.99, 0.0, 0.0])
    h = PoissonHarness(PoissonVenueConfig(100.0, 0.0), rng)  # p = 0.5 per 5 ms step
    h.step(0, 100.0)
    h.place("bid", Side.BUY, 99.0)  # placed first, yet drawn after the ask
    h.place("ask", Side.SELL, 101.0)

    h.step(5 * MS, 100.0)

    assert [f.client_order_id for f in h.fills()] == ["bid"]
    assert rng.values == [0.0]


def test_poisson_venue_shares_the_latency_lifecycle() -> None:
    h = PoissonHarness(
        PoissonVenueConfig(
            140.0, 1.5, entry_latency_ns=10 * MS, cancel_latency_ns=10 * MS, maker_fee_bps=2.0
        ),
        random.Random(3),
    )
    h.step(0, 100.0)
    h.place("a", Side.SELL, 90.0)  # far through the mid: certain hit once resting
    h.step(5 * MS, 100.0)
    assert h.out == []

    h.step(10 * MS, 100.0)
    h.step(15 * MS, 100.0)

    assert isinstance(h.out[0], OrderAccepted)
    fill = h.fills()[0]
    assert (fill.price, fill.qty, fill.ts_ns) == (90.0, 1.0, 15 * MS)
    assert fill.fee == pytest.approx(90.0 * 2e-4)


def test_poisson_same_seed_same_fills() -> None:
    def run(seed: int) -> list[OrderEvent]:
        h = PoissonHarness(PoissonVenueConfig(140.0, 1.5), random.Random(seed))
        h.step(0, 100.0)
        for i in range(1, 400):
            if not h.venue.open_orders:
                h.place(f"q{i}", Side.SELL, 100.5)
            h.step(i * 5 * MS, 100.0)
        return h.out

    assert run(4) == run(4)
    assert run(4) != run(5)


def test_queue_partial_fills_come_in_whole_lots_when_the_lot_is_known() -> None:
    clock = VirtualClock()
    fills: list[OrderEvent] = []
    book = OrderBook(SYM)
    venue = SimVenue(SimVenueConfig(lot_size=0.001), clock, fills.append, book)
    book.apply(BookSnapshot(0, 0, SYM, ((100.0, 0.0035),), ((100.1, 1.0),), 1))
    venue.submit(PlaceOrder(0, "o1", SYM, Side.BUY, 100.0, 0.01, True))

    # 0.0035 ahead; a 0.00604 sell at our price leaves 0.00254 for us: 0.002 in whole lots.
    venue.on_market(Trade(1, 1, SYM, 100.0, 0.00604, Side.SELL, "t1"))

    filled = [e for e in fills if isinstance(e, OrderFilled)]
    assert [f.qty for f in filled] == [0.002]
    assert filled[0].remaining_qty == pytest.approx(0.008)
