"""The compiled plain case of the engine's last steps for a new mid (``AfterBook``).

``Engine._after_book`` feeds each new mid to the volatility estimator, marks the portfolio and
hands the PnL to the kill-switch. ``bot._cbook.AfterBook`` does the three in one call when
none has anything to record or trip, and answers None otherwise, having changed nothing. Two
sets of parts go through the same random mids, fills and limit changes: one takes the kernel's
answer when it gives one, the other always runs the Python steps. They must stay equal.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import bot.engine
from bot.engine import after_book_kernel
from bot.events import RiskState, RiskStateChanged
from bot.native import cbook
from bot.portfolio import Portfolio
from bot.replay import resolve_source, run_replay
from bot.settings import load_settings
from risk import RiskGate, RiskLimits
from strategies.volatility import VolatilityEstimator
from tests.differential import assert_same_replays

pytestmark = pytest.mark.skipif(cbook is None, reason="C extension not built")

Parts = tuple[VolatilityEstimator | None, Portfolio, RiskGate]


def _limits(rng: random.Random) -> RiskLimits:
    return RiskLimits(max_inventory=10.0, max_loss=rng.choice((math.inf, 4.0, 30.0)),
                      max_drawdown=rng.choice((math.inf, 2.5, 15.0)))


def _parts(seed: int) -> Parts:
    rng = random.Random(seed)
    estimator = None if rng.random() < 0.2 else VolatilityEstimator(
        interval_ns=rng.choice((20_000, 100_000)), window=8, min_samples=2,
        ewma_halflife=rng.choice((None, 4)))
    return estimator, Portfolio(), RiskGate(_limits(rng))


def _python_steps(parts: Parts, ts: int, mid: float) -> RiskStateChanged | None:
    """``Engine._after_book``'s steps after the kernel's place: its reference."""
    estimator, portfolio, gate = parts
    if estimator is not None:
        estimator.update(ts, mid)
    return gate.on_pnl(ts, portfolio.mark(mid))


def _comparable(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, (list, tuple)) or type(value).__name__ == "deque":
        return tuple(_comparable(v) for v in value)
    return value


def _state(parts: Parts) -> tuple[Any, ...]:
    out: list[Any] = []
    for obj in parts:
        if obj is None:
            out.append(None)
            continue
        slots = [name for cls in type(obj).__mro__ for name in getattr(cls, "__slots__", ())]
        out.extend((name, _comparable(getattr(obj, name, None))) for name in slots
                   if not name.endswith("kernel"))
    return tuple(out)


def _mutate(rng: random.Random, parts: Parts, ts: int) -> None:
    """What happens to the parts between mids: fills, odd values, a reset after a halt."""
    _, portfolio, gate = parts
    roll = rng.random()
    if roll < 0.08:  # a fill: inventory and cash move together
        qty = rng.choice((-2.0, -1.0, -0.5, 0.5, 1.0, 2.0))
        price = portfolio.mark_price if portfolio.mark_price == portfolio.mark_price else 100.0
        portfolio.position += qty
        portfolio.cash -= qty * price + rng.uniform(0.0, 0.3)
    elif roll < 0.09:
        portfolio.position = 0.0
    elif roll < 0.095:
        portfolio.position = 1  # an int: not the kernel's case
    elif roll < 0.10 and gate.state is RiskState.HALTED:
        gate.reset(ts)


def _mid(rng: random.Random, last: float) -> float:
    roll = rng.random()
    if roll < 0.01:
        return rng.choice((math.nan, 0.0, -1.0, math.inf))
    return max(1.0, last + rng.choice((0.0, 0.0, 0.01, -0.01, 0.5, -0.5, 3.0, -3.0)))


@pytest.mark.parametrize("seed", range(40))
def test_the_kernel_leaves_the_parts_as_the_python_steps_do(seed: int) -> None:
    rng = random.Random(seed)
    ours, reference = _parts(seed), _parts(seed)
    kernel = after_book_kernel(*ours)
    assert kernel is not None
    answered = declined = 0
    ts, mid = rng.randrange(10**6), 100.0
    for _ in range(600):
        ts += rng.choice((0, 1, 200, 900, 4_000, 20_000))
        mid = _mid(rng, mid if mid == mid and 0 < mid < math.inf else 100.0)
        state = rng.getstate()
        _mutate(rng, ours, ts)
        rng.setstate(state)
        _mutate(rng, reference, ts)
        if mid != mid:
            continue  # the engine stops before the kernel (no mid)
        answer = kernel(ts, mid)
        if answer is None:
            declined += 1
            change = _python_steps(ours, ts, mid)
        else:
            assert answer is True
            answered += 1
            change = None
        expected = _python_steps(reference, ts, mid)
        assert change == expected
        assert _state(ours) == _state(reference)
        if isinstance(ours[1].position, int):  # put a float back for the next steps
            ours[1].position = reference[1].position = 0.0
    assert answered > 100 and declined > 0  # (each reason to decline: the test below)


def test_what_the_kernel_declines() -> None:
    estimator = VolatilityEstimator(interval_ns=1_000, window=8, min_samples=2)
    portfolio = Portfolio()
    gate = RiskGate(RiskLimits(max_inventory=10.0, max_loss=5.0, max_drawdown=2.0))
    kernel = after_book_kernel(estimator, portfolio, gate)
    assert kernel is not None
    parts = (estimator, portfolio, gate)

    def declines(ts: int, mid: float, why: str) -> None:
        before = _state(parts)
        assert kernel(ts, mid) is None, why
        assert _state(parts) == before, why  # nothing changed
        _python_steps(parts, ts, mid)

    declines(500, 100.0, "the first mid sets the sampling clock")
    assert kernel(900, 100.5) is True
    declines(1_500, 100.2, "a boundary passed: a sample to record")
    portfolio.position, portfolio.cash = 1.0, -100.0
    assert kernel(1_800, 101.0) is True  # pnl +1.0, the new peak
    assert gate._peak_pnl == pytest.approx(1.0)
    declines(1_900, 98.9, "drawdown 2.1 from the peak trips the gate")
    assert gate.state is RiskState.HALTED
    assert kernel(1_950, 94.0) is True  # halted: only the peak is tracked
    gate.reset(1_960)
    declines(1_970, 94.0, "pnl -6 is past the loss limit")
    gate.reset(1_980)
    gate._limits = RiskLimits(max_inventory=10.0)
    declines(1_990, 150.0, "the limits were replaced")
    with pytest.raises(TypeError, match="takes"):
        kernel(1)  # type: ignore[call-arg]
    assert kernel(2_000.0, 150.0) is None  # type: ignore[arg-type]  # a float time
    assert kernel(2_000, 150) is None  # an int mid


def test_no_kernel_for_other_classes_or_non_float_limits() -> None:
    class Gate(RiskGate):
        pass

    limits = RiskLimits(max_inventory=10.0)
    assert after_book_kernel(None, Portfolio(), Gate(limits)) is None
    assert after_book_kernel(None, Portfolio(), RiskGate(RiskLimits(10.0, max_loss=5))) is None
    assert after_book_kernel(None, Portfolio(), RiskGate(limits)) is not None


def test_a_replay_with_the_kernel_is_the_replay_without(
    shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = shared_data / "hftbacktest" / "usdm" / "btcusdt_20240808.gz"
    source = resolve_source([path], None, None)
    settings = load_settings(None, {"risk": {"max_drawdown": 40.0}}, environ={})
    answers = 0
    real: Callable[..., Any] = after_book_kernel

    def counting(*args: Any) -> Any:
        kernel = real(*args)
        assert kernel is not None

        def call(ts: int, mid: float) -> Any:
            nonlocal answers
            answer = kernel(ts, mid)
            answers += answer is True
            return answer

        return call

    monkeypatch.setattr(bot.engine, "after_book_kernel", counting)
    fast = run_replay(source, settings, None)
    monkeypatch.setattr(bot.engine, "after_book_kernel", lambda *args: None)
    slow = run_replay(source, settings, None)
    assert_same_replays(fast, slow, source, settings)
    assert fast.engine.stats.book_updates > 6_000 and answers > 5_000
    assert fast.engine.gate.state is RiskState.HALTED  # the drawdown limit was reached
