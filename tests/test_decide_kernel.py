"""The engine's compiled requote (``bot._cbook.Decide``) against its steps run one by one.

``Engine._requote`` asks the compiled requote first and runs the strategy, the gate's check,
the order manager's diff and the gate's admission one by one whenever it answers None. Runs
of the same input with and without it must send the same commands and end in the same state;
the scenarios below drive it through its fallbacks (the gate trims, reduces or halts, an
order-rate limit, widened or paused quotes). Its unit tests check that a None answer changes
nothing and that an answer keeps the order manager's books as ``diff`` does.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import bot.engine
from bot.events import BUY, SELL, CancelOrder, PlaceOrder, RiskState
from bot.journal import read_table
from bot.native import cbook
from bot.orders import ManagedOrder, OrderManager, OrderManagerConfig, OrderState
from bot.paper import run_sim_virtual
from bot.replay import resolve_source, run_replay
from bot.settings import load_settings
from risk import RiskGate, RiskLimits
from strategies.avellaneda_stoikov import ASParams, AvellanedaStoikov
from strategies.ladder import LadderParams
from tests.differential import assert_same_replays

pytestmark = pytest.mark.skipif(cbook is None, reason="C extension not built")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def answers(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """Count the compiled requote's answers and fallbacks in the engines built meanwhile."""
    counts: Counter[str] = Counter()
    build = bot.engine.compiled_requote

    def counting(*args: Any) -> Callable[..., Any] | None:
        decide = build(*args)
        if decide is None:
            return None

        def call(*values: Any) -> Any:
            out = decide(*values)
            counts["answered" if out is not None else "fallback"] += 1
            if out is not None and out[1] and not out[4]:
                counts["admitted_in_python"] += 1
            return out
        return call

    monkeypatch.setattr(bot.engine, "compiled_requote", counting)
    yield counts


def _without_compiled_requote(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bot.engine, "compiled_requote", lambda *args: None)


SIM_SCENARIOS: dict[str, dict[str, Any]] = {
    # The shipped config: an order-rate limit, so admission always runs in Python.
    "paper_sim": {},
    # No rate limit, a 3-level ladder against a tight cap: trims and REDUCING.
    "ladder_at_the_cap": {
        "strategy": {"gamma": 0.001, "ladder": {"levels": 3, "spacing_ticks": 2.0,
                                                "order_qty": 0.5}},
        "risk": {"max_inventory": 2.0, "max_loss": 1e9, "max_drawdown": 1e9,
                 "max_orders_per_s": math.inf},
    },
    # The kill-switch trips: HALTED is the Python steps' case.
    "halted": {"risk": {"max_loss": 0.05, "max_drawdown": 0.05, "max_orders_per_s": math.inf}},
    # Session horizon (no decision cache) and quotes widened while the model looks off.
    "widened": {
        "strategy": {"horizon": "session", "session_s": 40.0},
        "health": {"action": "widen", "interval_s": 5.0, "spread_ratio": 1.5},
        "risk": {"max_orders_per_s": math.inf},
    },
}


def _sim_run(overrides: dict[str, Any], tmp: Path) -> tuple[Any, list[Any], list[Any]]:
    from bot.app import RunDir

    settings = load_settings(ROOT / "config" / "paper-sim.toml", overrides, environ={})
    run = RunDir(tmp)
    run.path.mkdir()
    engine, _ = run_sim_virtual(settings, 90.0, run)
    return engine, read_table(run.journal, "orders"), read_table(run.journal, "fills")


@pytest.mark.parametrize("name", list(SIM_SCENARIOS))
def test_sim_runs_with_and_without_the_compiled_requote_are_identical(
    name: str, tmp_path: Path, answers: Counter[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = SIM_SCENARIOS[name]
    fast, orders_a, fills_a = _sim_run(overrides, tmp_path / "fast")
    compiled = Counter(answers)
    _without_compiled_requote(monkeypatch)
    slow, orders_b, fills_b = _sim_run(overrides, tmp_path / "slow")

    assert compiled["answered"] > 20, "the compiled requote must do the work to prove anything"
    assert len(orders_a) > 20
    assert orders_a == orders_b
    assert fills_a == fills_b
    assert fast.stats == slow.stats
    assert fast.portfolio.position == slow.portfolio.position
    assert fast.portfolio.cash == slow.portfolio.cash
    assert fast.orders.placed == slow.orders.placed
    assert fast.orders.cancels_sent == slow.orders.cancels_sent
    if name == "paper_sim":
        assert compiled["admitted_in_python"] > 0
    if name == "ladder_at_the_cap":
        assert compiled["fallback"] > 0 and fast.stats.denials
    if name == "halted":
        assert fast.gate.state is RiskState.HALTED


@pytest.mark.parametrize("config", [None, "replay-btcusdt.toml"])
def test_replay_with_and_without_the_compiled_requote_is_identical(
    shared_data: Path, config: str | None, answers: Counter[str],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    path = shared_data / "hftbacktest" / "usdm" / "btcusdt_20240808.gz"
    source = resolve_source([path], None, None)
    settings = load_settings(ROOT / "config" / config if config else None, {}, environ={})
    fast = run_replay(source, settings, None)
    assert answers["answered"] > 500
    _without_compiled_requote(monkeypatch)
    slow = run_replay(source, settings, None)

    assert assert_same_replays(fast, slow, source, settings)["orders_sent"] > 0


# ------------------------------------------------------------------------------ unit

TICK = 0.1


def _parts(max_orders_per_s: float = math.inf
           ) -> tuple[AvellanedaStoikov, RiskGate, OrderManager]:
    strategy = AvellanedaStoikov(ASParams(
        gamma=0.1, ladder=LadderParams(levels=2, order_qty=0.5, spacing_ticks=1.0),
        horizon="rolling", rolling_horizon_s=60.0))
    gate = RiskGate(RiskLimits(max_inventory=3.0, min_half_spread_ticks=1.0,
                               max_orders_per_s=max_orders_per_s))
    orders = OrderManager(OrderManagerConfig("X", TICK, 0.001, requote_ticks=1.0))
    return strategy, gate, orders


def _decide(strategy: AvellanedaStoikov, gate: RiskGate, orders: OrderManager) -> Any:
    decide = bot.engine.compiled_requote(strategy, gate, orders)
    assert decide is not None
    return decide


ARGS = (1_000, 99.9, 100.1, 900, 0.0, 0.5, 2.0, TICK)
"""ts_ns, best bid, best ask, last book update, position, sigma, k, tick."""


def _books(orders: OrderManager) -> tuple[Any, ...]:
    return (dict(orders.orders), [vars_of(o) for o in orders.orders.values()],
            orders.placed, orders.cancels_sent, orders._next_id)


def vars_of(order: ManagedOrder) -> tuple[Any, ...]:
    return (order.client_order_id, order.side, order.price, order.qty, order.filled_qty,
            order.state, order.level, order.sent_ts_ns)


def test_an_answer_equals_the_steps_and_keeps_the_managers_books() -> None:
    strategy, gate, orders = _parts()
    twin_strategy, twin_gate, twin = _parts()
    decide = _decide(strategy, gate, orders)
    seen: Counter[bool] = Counter()
    for ts, bid, position in ((1_000, 99.9, 0.0), (2_000, 100.3, 0.0), (3_000, 100.3, 0.1)):
        ask = bid + 0.2
        args = (ts, bid, ask, ts - 100, position, 0.5, 2.0, TICK)
        approved, commands, live_buy, live_sell, all_admitted = decide(*args)
        # the steps, one by one, on the twin (as Engine._requote runs them)
        mid = (bid + ask) * 0.5
        desired = twin_strategy.quote(bot.engine._make_state(ts, mid, bid, ask, TICK,
                                                             position, 0.5, 1.0, 2.0))
        buys, sells = twin.live_qtys()
        ctx = bot.engine._make_context(ts, mid, bid, ask, TICK, True, ts - 100, position,
                                       buys, sells)
        decision = twin_gate.check(desired, ctx)
        expected = twin.diff(decision.approved, bid, ask, ts)
        admitted, refused = twin_gate.admit(expected, ctx)

        assert approved == desired == decision.approved
        assert commands == expected and commands
        assert (live_buy, live_sell) == (buys, sells)
        # all_admitted: the gate's admit would let every command through
        assert all_admitted is (admitted == expected and not refused)
        seen[all_admitted] += 1
        assert [vars_of(o) for o in orders.orders.values()] == \
            [vars_of(o) for o in twin.orders.values()]
        assert (orders.placed, orders.cancels_sent, orders._next_id) == \
            (twin.placed, twin.cancels_sent, twin._next_id)
    assert orders.cancels_sent > 0, "the moves must have cancelled orders"
    # the orders still in flight count against the cap: the third batch would break it
    assert seen == {True: 2, False: 1}


def test_with_an_order_rate_limit_admission_is_left_to_the_gate() -> None:
    strategy, gate, orders = _parts(max_orders_per_s=10.0)
    out = _decide(strategy, gate, orders)(*ARGS)
    assert out is not None and out[1] and out[4] is False


@pytest.mark.parametrize("case", ["halted", "trimmed", "reducing_mismatch", "stale_order",
                                  "int_position", "nan_sigma", "notional_trim"])
def test_a_case_that_is_not_plain_answers_none_and_changes_nothing(case: str) -> None:
    strategy, gate, orders = _parts()
    decide = _decide(strategy, gate, orders)
    decide(*ARGS)  # some live orders to keep or cancel
    args = list(ARGS)
    args[0] = 5_000
    args[1], args[2] = 100.9, 101.1  # the touch moved: the diff would cancel and place
    if case == "halted":
        gate.halt(5_000, "drill")
    elif case == "trimmed":
        args[4] = 2.9  # 2.9 + 0.5 breaks the cap of 3: the gate trims the bids
    elif case == "reducing_mismatch":
        args[4] = 3.0  # at the cap while the gate is still ACTIVE: the gate changes state
    elif case == "stale_order":
        order = next(iter(orders.orders.values()))
        object.__setattr__(order, "price", 100)  # an int price: not the diff's plain case
    elif case == "int_position":
        args[4] = 0
    elif case == "nan_sigma":
        args[5] = math.nan
    elif case == "notional_trim":
        gate = RiskGate(RiskLimits(max_inventory=3.0, max_order_notional=30.0))
        decide = _decide(strategy, gate, orders)  # 0.5 x 101 > 30: each quote is trimmed
    before = _books(orders)
    state = gate.state

    assert decide(*args) is None
    assert _books(orders) == before
    assert gate.state is state


def test_it_refuses_to_fuse_kernels_of_different_quote_classes() -> None:
    strategy, gate, orders = _parts()
    other = cbook.OrderDiff(
        order_cls=ManagedOrder, place_cls=PlaceOrder, cancel_cls=CancelOrder,
        quote_cls=type("Other", (), {"__slots__": ("side", "price", "qty", "level")}),
        pending_new=OrderState.PENDING_NEW, pending_cancel=OrderState.PENDING_CANCEL, buy=BUY,
        symbol="X", prefix="mm-", post_only=True, tick=TICK, price_grid=orders._price_grid,
        qty_grid=orders._qty_grid, price_tol=0.1, qty_tol=1e-9, min_qty=0.0, min_notional=0.0,
        max_age_ns=0)
    with pytest.raises(TypeError, match="one Quote class"):
        cbook.Decide(quote=strategy.kernel, check=gate.kernel, diff=other, gate=gate,
                     state_slot="_state", active=RiskState.ACTIVE, reducing=RiskState.REDUCING,
                     admit_plain=True, manager=orders)
    with pytest.raises(AttributeError, match="no_such_slot"):
        cbook.Decide(quote=strategy.kernel, check=gate.kernel, diff=orders.kernel, gate=gate,
                     state_slot="no_such_slot", active=RiskState.ACTIVE,
                     reducing=RiskState.REDUCING, admit_plain=True, manager=orders)
    with pytest.raises(TypeError, match="8 positional"):
        _decide(strategy, gate, orders)(*ARGS[:7])


def test_sides_are_read_from_the_kernels_constants() -> None:
    # The answer's commands carry the very BUY and SELL members (identity, not equality).
    strategy, gate, orders = _parts()
    _, commands, _, _, _ = _decide(strategy, gate, orders)(*ARGS)
    assert {c.side for c in commands} == {BUY, SELL}
    assert all(c.side is BUY or c.side is SELL for c in commands)


def test_subclasses_that_may_override_a_step_are_not_fused() -> None:
    strategy, gate, orders = _parts()

    class Shifted(AvellanedaStoikov):
        def quote(self, state: Any) -> Any:  # a step the compiled requote would skip
            return super().quote(state)

    class Gate(RiskGate):
        pass

    assert bot.engine.compiled_requote(strategy, gate, orders) is not None
    assert bot.engine.compiled_requote(Shifted(strategy.params), gate, orders) is None
    assert bot.engine.compiled_requote(strategy, Gate(RiskLimits(max_inventory=3.0)),
                                       orders) is None
