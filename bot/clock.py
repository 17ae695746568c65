"""Clocks: one scheduling interface for virtual time (simulate, replay) and wall time (paper, live).

Components that need to act later (the simulated venue activating an order after its entry
latency, a cancel acknowledgement) call ``scheduler.call_at(ts_ns, callback)``. Under a
``VirtualClock`` the engine runs the callback when virtual time reaches ``ts_ns``, interleaved
with the recorded feed in timestamp order; under a ``WallClock`` the asyncio loop runs it at
that wall time. Either way the callback runs on the engine's single consumer, never concurrently.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable
from typing import Protocol

Callback = Callable[[], None]


class Scheduler(Protocol):
    """Read the current time and run a callback at a later time."""

    def now_ns(self) -> int:
        """Return the current time in nanoseconds (virtual or wall)."""
        ...

    def call_at(self, ts_ns: int, callback: Callback) -> None:
        """Run ``callback`` once the clock reaches ``ts_ns`` (immediately-next if in the past)."""
        ...


class VirtualClock:
    """Virtual time that advances only when the engine says so.

    Callbacks are kept in a heap ordered by ``(ts_ns, insertion order)`` so that two callbacks
    due at the same instant run in the order they were scheduled: replays stay deterministic.
    """

    __slots__ = ("_heap", "_now_ns", "_seq")

    def __init__(self, start_ns: int = 0) -> None:
        self._now_ns = start_ns
        self._heap: list[tuple[int, int, Callback]] = []
        self._seq = 0

    def now_ns(self) -> int:
        """Return the current virtual time."""
        return self._now_ns

    def call_at(self, ts_ns: int, callback: Callback) -> None:
        """Schedule ``callback`` at ``ts_ns`` (never earlier than now)."""
        self._seq += 1
        heapq.heappush(self._heap, (max(ts_ns, self._now_ns), self._seq, callback))

    def next_due_ns(self) -> int | None:
        """Return the time of the earliest scheduled callback, or None."""
        return self._heap[0][0] if self._heap else None

    def advance_to(self, ts_ns: int) -> None:
        """Move virtual time forward to ``ts_ns`` (time never goes backwards)."""
        if ts_ns > self._now_ns:
            self._now_ns = ts_ns

    def run_due(self, until_ns: int) -> int:
        """Run, in order, every callback due at or before ``until_ns``; return how many ran.

        Virtual time is advanced to each callback's due time before it runs, and callbacks that
        schedule further callbacks inside the window are run too.
        """
        ran = 0
        heap = self._heap
        while heap and heap[0][0] <= until_ns:
            ts_ns, _, callback = heapq.heappop(heap)
            self.advance_to(ts_ns)
            callback()
            ran += 1
        return ran

    def pending(self) -> int:
        """Return the number of callbacks not yet run."""
        return len(self._heap)


class WallClock:
    """Wall time; callbacks are handed to ``post`` (the engine's queue) when they fall due.

    ``post`` is set by the engine when it starts; until then ``call_at`` raises because no loop
    exists to run the callback on.
    """

    __slots__ = ("_post",)

    def __init__(self) -> None:
        self._post: Callable[[Callback], None] | None = None

    def bind(self, post: Callable[[Callback], None]) -> None:
        """Attach the engine's thread-safe-on-loop ``post`` function."""
        self._post = post

    def now_ns(self) -> int:
        """Return the wall time in nanoseconds since the Unix epoch."""
        return time.time_ns()

    def call_at(self, ts_ns: int, callback: Callback) -> None:
        """Deliver ``callback`` to the engine's queue at wall time ``ts_ns``."""
        post = self._post
        if post is None:
            raise RuntimeError("WallClock.call_at before the engine bound it to its queue")
        loop = asyncio.get_running_loop()
        delay_s = max(0.0, (ts_ns - time.time_ns()) / 1e9)
        loop.call_later(delay_s, post, callback)
