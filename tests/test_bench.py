"""The benchmark's host probe, on scripted clocks."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from bot.bench import STALL_NS, host_summary, probe_host


def _clock(steps: Iterator[int]) -> Callable[[], int]:
    """A clock that starts at 0 and advances by the next step on every read."""
    now = 0

    def read() -> int:
        nonlocal now
        value = now
        now += next(steps)
        return value

    return read


def _steps(stall_every: int, stall_ns: int) -> Iterator[int]:
    """100 ns between reads, with one ``stall_ns`` gap every ``stall_every`` reads."""
    n = 0
    while True:
        n += 1
        yield stall_ns if n % stall_every == 0 else 100


def test_probe_counts_every_gap_of_at_least_the_stall_threshold_and_nothing_else() -> None:
    # 0.01 s of 100 ns reads with a 50 µs stall every 1,000th read: each cycle of 1,000 reads
    # lasts 999 * 100 ns + 50 µs = 149.9 µs. 66 cycles end at 9.89 ms; the 67th stall is the
    # read that passes the end, and the last.
    stalls = probe_host(0.01, _clock(_steps(1000, 50_000)))

    assert stalls == [50_000] * 67
    # a gap just under the threshold is no stall
    assert probe_host(0.01, _clock(_steps(10, STALL_NS - 1))) == []
    assert probe_host(0.01, _clock(_steps(10, STALL_NS))) != []


def test_probe_ends_after_the_requested_time() -> None:
    reads = 0

    def clock() -> int:
        nonlocal reads
        reads += 1
        return reads * 1_000  # 1 µs a read

    assert probe_host(0.002, clock) == []
    assert reads == 2_001  # the start (at 1 µs), then one read a µs until 2 ms after it


def test_host_summary_reports_rate_sizes_and_share_of_time_lost() -> None:
    summary = host_summary([30_000, 50_000, 400_000], 0.2)

    assert summary["stalls_per_s"] == pytest.approx(15.0)
    assert summary["stall_p50_us"] == pytest.approx(50.0)
    assert summary["stall_max_us"] == pytest.approx(400.0)
    assert summary["stalled_pct"] == pytest.approx(100 * 480_000 / 2e8)
    quiet = host_summary([], 0.2)
    assert quiet["stalls_per_s"] == quiet["stall_max_us"] == quiet["stalled_pct"] == 0.0
