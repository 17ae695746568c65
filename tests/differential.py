"""Shared pieces of the tests that hold a compiled kernel to its Python reference."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

UNUSABLE = (math.nan, math.inf, -math.inf, -1.0, 0.0)


def odd(rng: random.Random, value: float, rate: float = 0.02) -> Any:
    """Return ``value``; now and then (``rate``) an unusable one, half as often an int.

    Both are inputs a kernel must leave to the Python code: the unusable ones take its error
    paths, an int where a float belongs is not the kernel's plain case.
    """
    roll = rng.random()
    if roll < rate:
        return rng.choice(UNUSABLE)
    if roll < 1.5 * rate:
        return round(value)
    return value


def outcome(call: Callable[..., T], *args: Any) -> T | type[Exception]:
    """Return what ``call(*args)`` returns, or the class of the ValueError or OverflowError it
    raises, so the two sides of a differential test compare with ``==`` either way."""
    try:
        return call(*args)
    except (ValueError, OverflowError) as exc:
        return type(exc)


VOLATILE = frozenset({"elapsed_s", "messages_per_s", "run_dir", "files", "report"})
"""Keys of a run summary that differ between two runs of the same input (time, paths)."""


def stable(summary: dict[str, Any]) -> dict[str, Any]:
    """A run summary without its ``VOLATILE`` keys: what two runs of one input must share."""
    return {k: v for k, v in summary.items() if k not in VOLATILE}


def assert_same_replays(fast: Any, slow: Any, source: Any, settings: Any) -> dict[str, Any]:
    """Assert two replays of one input (with and without a kernel) ended the same: summary,
    engine counters and cash. Returns the first one's summary for the caller's own checks."""
    from bot.replay import replay_summary

    a = replay_summary(fast, source, settings, None)
    b = replay_summary(slow, source, settings, None)
    assert stable(a) == stable(b)
    assert fast.engine.stats == slow.engine.stats
    assert fast.engine.portfolio.cash == slow.engine.portfolio.cash
    return a
