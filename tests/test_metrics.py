"""Backtest metrics on small hand-made journals whose answers are known exactly."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from bot.events import (
    CancelOrder,
    Liquidity,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
    PlaceOrder,
    Side,
)
from bot.journal import Journal
from bot.metrics import METRICS, SECONDS_PER_YEAR, compute_metrics, load_run

NS = 1_000_000_000
T0 = 1_723_161_600 * NS  # 2024-08-09T00:00:00Z
NAN = math.nan


def ts(seconds: float) -> int:
    return T0 + round(seconds * NS)


class RunBuilder:
    """Write a run directory like the app does: config.json, summary.json, journal.sqlite."""

    def __init__(self, path: Path, *, max_inventory: float = 10.0, interval_s: float = 1.0,
                 summary: dict[str, Any] | None = None) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        config = {"risk": {"max_inventory": max_inventory},
                  "run": {"status_interval_s": interval_s},
                  "market": {"venue": "sim", "symbol": "SIM-USD"},
                  "sim_venue": {"fill_model": "queue", "entry_latency_ms": 5.0,
                                "cancel_latency_ms": 5.0}}
        (path / "config.json").write_text(json.dumps(config))
        base = {"strategy": "avellaneda_stoikov", "fill_model": "queue",
                "entry_latency_ms": 5.0, "cancel_latency_ms": 5.0}
        (path / "summary.json").write_text(json.dumps({**base, **(summary or {})}))
        self.journal = Journal(path / "journal.sqlite")
        self.position = 0.0
        self.cash = 0.0

    def mark(self, seconds: float, mid: float, *, position: float | None = None,
             pnl: float | None = None, bid: float = NAN, ask: float = NAN,
             state: str = "ACTIVE") -> None:
        q = self.position if position is None else position
        value = self.cash + q * mid if pnl is None else pnl
        self.journal.mark(ts(seconds), mid, mid, bid, ask, q, value, 1.0, state,
                          mid - 0.05, mid + 0.05, 0.0, 1.0, 1.0)

    def marks(self, seconds: Sequence[float], mids: Sequence[float]) -> None:
        for s, m in zip(seconds, mids, strict=True):
            self.mark(s, m)

    def place(self, seconds: float, coid: str, side: Side, price: float,
              qty: float = 1.0) -> None:
        self.journal.command(PlaceOrder(ts(seconds), coid, "SIM-USD", side, price, qty))

    def cancel(self, seconds: float, coid: str) -> None:
        self.journal.command(CancelOrder(ts(seconds), coid, "SIM-USD"))

    def accepted(self, seconds: float, coid: str) -> None:
        self.journal.order_event(OrderAccepted(ts(seconds), coid))

    def canceled(self, seconds: float, coid: str) -> None:
        self.journal.order_event(OrderCanceled(ts(seconds), coid))

    def rejected(self, seconds: float, coid: str) -> None:
        self.journal.order_event(OrderRejected(ts(seconds), coid, "post_only"))

    def fill(self, seconds: float, coid: str, side: Side, price: float, qty: float, mid: float,
             *, fee: float = 0.0, remaining: float = 0.0, trade_id: str = "") -> None:
        self.position += side.value * qty
        self.cash -= side.value * qty * price + fee
        event = OrderFilled(ts(seconds), coid, side, price, qty, remaining, fee,
                            Liquidity.MAKER, trade_id)
        self.journal.order_event(event, self.position, self.cash + self.position * mid, mid)

    def metrics(self) -> dict[str, Any]:
        self.journal.close()
        return compute_metrics(load_run(self.path))


def test_round_trip_bought_at_bid_sold_at_ask_captures_the_spread_exactly(
    tmp_path: Path,
) -> None:
    run = RunBuilder(tmp_path / "run")
    run.marks([0, 1], [100.0, 100.0])
    run.fill(2.0, "b1", Side.BUY, 99.9, 2.0, mid=100.0, fee=0.01)
    run.marks([2, 3, 4], [100.0, 100.0, 100.0])
    run.fill(4.5, "a1", Side.SELL, 100.1, 2.0, mid=100.0, fee=0.01)
    run.marks([5, 6], [100.0, 100.0])

    m = run.metrics()

    assert m["pnl"] == pytest.approx(0.38)
    assert m["realised"] == pytest.approx(0.4)
    assert m["unrealised"] == pytest.approx(0.0)
    assert m["fees"] == pytest.approx(0.02)
    assert m["spread_capture_pnl"] == pytest.approx(0.4)
    assert m["inventory_pnl"] == pytest.approx(0.0, abs=1e-12)
    assert m["spread_capture_per_fill"] == pytest.approx(0.1)
    assert m["spread_capture_per_fill_bps"] == pytest.approx(10.0)
    assert m["volume"] == pytest.approx(2 * 99.9 + 2 * 100.1)
    assert m["final_inventory"] == 0.0
    assert (m["fills"], m["buy_fills"], m["sell_fills"]) == (2, 1, 1)


def test_inventory_pnl_is_the_mark_to_market_of_the_position_held(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path / "run", summary={"final_mid": 103.0})
    run.marks([0, 1], [100.0, 100.0])
    run.fill(1.5, "b1", Side.BUY, 99.5, 1.0, mid=100.0, fee=0.1)
    run.marks([2, 3], [101.0, 103.0])

    m = run.metrics()

    assert m["pnl"] == pytest.approx(103.0 - 99.5 - 0.1)
    assert m["unrealised"] == pytest.approx(3.5)
    assert m["spread_capture_pnl"] == pytest.approx(0.5)
    assert m["inventory_pnl"] == pytest.approx(3.0)
    assert m["final_inventory"] == 1.0


def test_markout_after_a_known_mid_move_is_exact_and_skips_fills_past_the_end(
    tmp_path: Path,
) -> None:
    run = RunBuilder(tmp_path / "run")
    run.marks([0, 1, 2, 3], [100.0] * 4)
    run.fill(3.0, "b1", Side.BUY, 99.95, 1.0, mid=100.0)
    run.marks([4], [100.5])
    run.fill(4.5, "a1", Side.SELL, 100.55, 2.0, mid=100.5)
    run.marks(range(5, 13), [100.5] * 8)
    run.marks(range(13, 21), [99.0] * 8)

    m = run.metrics()

    # 1 s: buy sees the 4 s mark (100.5), the sell the 5 s mark (100.5).
    assert m["markout_1s"] == pytest.approx((0.55 + 0.05) / 2)
    assert m["markout_1s_bps"] == pytest.approx((0.55 / 99.95 + 0.05 / 100.55) / 2 * 1e4)
    assert m["markout_1s_pnl"] == pytest.approx(0.55 + 2 * 0.05)
    assert m["markout_1s_fills"] == 2
    # 10 s: both see 99.0: the buy lost 0.95 per unit, the sell gained 1.55.
    assert m["markout_10s"] == pytest.approx((-0.95 + 1.55) / 2)
    assert m["markout_10s_pnl"] == pytest.approx(-0.95 + 2 * 1.55)
    # 60 s is past the last mark (20 s) for both fills.
    assert m["markout_60s_fills"] == 0
    assert m["markout_60s"] is None
    assert m["markout_60s_pnl"] == 0.0


def test_markout_never_uses_a_mid_from_before_the_fill(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path / "run")
    run.marks([0, 1], [100.0, 100.0])
    run.fill(1.2, "b1", Side.BUY, 101.0, 1.0, mid=101.5)  # the mid jumped after the 1 s mark
    run.marks([2, 3], [101.5, 101.5])

    m = run.metrics()

    assert m["markout_1s"] == pytest.approx(0.5)  # 1.2 + 1 s -> the 2 s mark


def test_max_drawdown_is_the_largest_fall_from_the_running_peak(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path / "run")
    for i, pnl in enumerate([0.0, 1.0, 3.0, 2.0, -1.0, 0.5, 4.0, 3.5]):
        run.mark(i, 100.0, position=0.0, pnl=pnl)

    assert run.metrics()["max_drawdown"] == pytest.approx(4.0)


def test_max_drawdown_counts_losses_from_the_flat_start(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path / "run")
    for i, pnl in enumerate([-2.0, -1.0, -0.5]):
        run.mark(i, 100.0, position=0.0, pnl=pnl)

    assert run.metrics()["max_drawdown"] == pytest.approx(2.0)


@pytest.mark.parametrize("interval_s", [1.0, 2.0])
def test_sharpe_of_a_known_increment_series_is_annualised_on_the_mark_clock(
    tmp_path: Path, interval_s: float,
) -> None:
    run = RunBuilder(tmp_path / "run", interval_s=interval_s)
    for i, pnl in enumerate([0.0, 1.0, 3.0, 2.0, 5.0]):
        run.mark(i * interval_s, 100.0, position=0.0, pnl=pnl)

    m = run.metrics()

    per = 1.25 / math.sqrt(8.75 / 3)  # increments 1, 2, -1, 3
    assert m["sharpe_per_interval"] == pytest.approx(per)
    assert m["sharpe_annualisation"] == pytest.approx(math.sqrt(SECONDS_PER_YEAR / interval_s))
    assert m["sharpe"] == pytest.approx(per * math.sqrt(SECONDS_PER_YEAR / interval_s))
    assert f"{interval_s:g} s" in m["sharpe_annualisation_text"]


def test_sharpe_ignores_marks_written_a_little_late_and_fills_a_skipped_tick(
    tmp_path: Path,
) -> None:
    run = RunBuilder(tmp_path / "run")
    # Late by 30 ms each (first event after the tick); no mark at all at 4 s (quiet market).
    for t, pnl in [(0.0, 0.0), (1.03, 1.0), (2.01, 3.0), (3.2, 2.0), (5.04, 5.0)]:
        run.mark(t, 100.0, position=0.0, pnl=pnl)

    m = run.metrics()

    inc = [1.0, 2.0, -1.0, 0.0, 3.0]
    mean = sum(inc) / 5
    std = math.sqrt(sum((x - mean) ** 2 for x in inc) / 4)
    assert m["sharpe_per_interval"] == pytest.approx(mean / std)


def test_sharpe_is_none_when_the_pnl_never_moves(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path / "run")
    for i in range(5):
        run.mark(i, 100.0, position=0.0, pnl=0.0)

    m = run.metrics()

    assert m["sharpe"] is None and m["sharpe_per_interval"] is None


def test_fills_per_hour_fill_ratio_and_order_to_trade(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path / "run")
    run.mark(0, 100.0)
    for i, coid in enumerate(["b1", "a1", "b2", "a2"]):
        side = Side.BUY if coid.startswith("b") else Side.SELL
        run.place(10 + i, coid, side, 99.0 if side is Side.BUY else 101.0)
        run.accepted(10.01 + i, coid)
    run.fill(20, "b1", Side.BUY, 99.0, 1.0, mid=100.0)
    run.fill(30, "a1", Side.SELL, 101.0, 0.5, mid=100.0, remaining=0.5)
    run.fill(40, "a1", Side.SELL, 101.0, 0.5, mid=100.0)
    run.cancel(50, "b2")
    run.cancel(50, "a2")
    run.canceled(50.01, "b2")
    run.canceled(50.01, "a2")
    run.mark(1800, 100.0)

    m = run.metrics()

    assert m["duration_s"] == pytest.approx(1800.0)
    assert m["fills"] == 3
    assert m["fills_per_hour"] == pytest.approx(6.0)
    assert m["orders_placed"] == 4
    assert m["cancels_sent"] == 2
    assert m["fill_ratio"] == pytest.approx(3 / 4)
    assert m["filled_order_ratio"] == pytest.approx(2 / 4)
    assert m["order_to_trade"] == pytest.approx((4 + 2) / 3)


def test_time_at_cap_and_inventory_statistics_over_the_marks(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path / "run", max_inventory=2.0)
    positions = [0.0, 1.0, 2.0, 2.0, -2.0, 1.9999999999, 1.0]
    for i, q in enumerate(positions):
        run.mark(i, 100.0, position=q, pnl=0.0)

    m = run.metrics()

    mean = sum(positions) / 7
    assert m["time_at_cap"] == pytest.approx(4 / 7)
    assert m["inventory_mean"] == pytest.approx(mean)
    assert m["inventory_std"] == pytest.approx(
        math.sqrt(sum((q - mean) ** 2 for q in positions) / 7))
    assert m["inventory_max_abs"] == pytest.approx(2.0)
    assert m["max_inventory"] == 2.0


def test_quote_uptime_counts_time_with_a_live_bid_and_a_live_ask(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path / "run")
    run.mark(0, 100.0, bid=99.0, ask=101.0)
    run.place(0.9, "b1", Side.BUY, 99.0)
    run.accepted(1, "b1")
    run.place(1.9, "a1", Side.SELL, 101.0)
    run.accepted(2, "a1")                        # never canceled: live to the last mark
    run.place(2.9, "a2", Side.SELL, 100.0)
    run.rejected(3, "a2")                        # never live
    run.cancel(3.9, "b1")
    run.canceled(4, "b1")
    run.place(4.9, "b2", Side.BUY, 99.0)
    run.accepted(5, "b2")
    run.fill(6, "b2", Side.BUY, 99.0, 0.5, mid=100.0, remaining=0.5)  # still live
    run.fill(8, "b2", Side.BUY, 99.0, 0.5, mid=100.0)                 # done
    run.mark(10, 100.0, bid=NAN, ask=101.0)

    m = run.metrics()

    assert m["quote_uptime_bid"] == pytest.approx(0.6)  # [1, 4] and [5, 8]
    assert m["quote_uptime_ask"] == pytest.approx(0.8)  # [2, 10]
    assert m["quote_uptime"] == pytest.approx(0.5)      # [2, 4] and [5, 8]
    assert m["marks_two_sided"] == pytest.approx(0.5)
    assert m["rejects"] == 1


def test_the_model_that_produced_the_numbers_is_part_of_the_result(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path / "run", summary={"strategy": "fixed_spread",
                                                "fill_model": "trade_through",
                                                "entry_latency_ms": 25.0,
                                                "cancel_latency_ms": 30.0})
    run.marks([0, 1], [100.0, 100.0])

    m = run.metrics()

    assert m["strategy"] == "fixed_spread"
    assert m["fill_model"] == "trade_through"
    assert (m["entry_latency_ms"], m["cancel_latency_ms"]) == (25.0, 30.0)


def test_a_run_without_fills_is_json_with_none_for_undefined_metrics(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path / "run")
    run.marks([0, 1, 2], [100.0, 100.0, 100.0])

    m = run.metrics()

    json.dumps(m, allow_nan=False)
    assert set(METRICS) <= set(m)
    assert m["pnl"] == 0.0 and m["fills"] == 0
    for key in ("fill_ratio", "order_to_trade", "spread_capture_per_fill", "markout_1s",
                "maker_share"):
        assert m[key] is None, key


def test_repeated_fill_with_the_same_trade_id_counts_once(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path / "run")
    run.marks([0, 1], [100.0, 100.0])
    run.fill(1.5, "b1", Side.BUY, 99.0, 1.0, mid=100.0, trade_id="t1")
    run.fill(1.6, "b1", Side.BUY, 99.0, 1.0, mid=100.0, trade_id="t1")
    run.marks([2], [100.0])

    run.journal.close()
    data = load_run(run.path)
    m = compute_metrics(data)

    assert data.duplicate_fills == 1
    assert m["fills"] == 1
    assert m["final_inventory"] == 1.0


def test_markouts_use_every_journaled_mid_change_between_marks(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path / "run")
    run.marks([0, 1], [100.0, 100.0])
    run.fill(1.0, "b1", Side.BUY, 99.95, 1.0, mid=100.0)
    run.journal.mid(ts(1.05), 99.9)  # the adverse move 50 ms after the fill
    run.journal.mid(ts(1.4), 100.2)
    run.marks([2, 3], [100.2, 100.2])

    m = run.metrics()

    # At 1.1 s the mid is the 1.05 s change; without the mid table it would still be 100.0.
    from bot.metrics import load_run, markout

    unit = markout(load_run(run.path), 0.1).unit
    assert unit.tolist() == pytest.approx([99.9 - 99.95])
    assert m["markout_1s"] == pytest.approx(100.2 - 99.95)
