"""``mmbot bench``: throughput and tick-to-quote latency of the whole replay pipeline.

The pipeline is the one replay runs: raw frame -> venue parser -> engine (simulated venue
matching, book, estimators, strategy, risk gate, order manager) -> commands to the simulated
venue. Tick-to-quote latency is measured per frame that changed the book, from the raw frame
handed to the parser to the commands leaving the order manager: diffed, admitted by the risk
gate and handed to the execution venue (``tick_to_quote_us``, frames whose update made us send
commands). ``book_frame_to_decision_us`` covers every frame that
changed the book, up to the decision (commands sent, or none needed). Frames are streamed from
disk, so memory stays flat however long the input is; ``peak_rss_mb`` shows it.

The latency tail is measured in wall time, so it includes whatever the host does to the
process: a p99 over ~700 quoting frames is their 8th-slowest, and one stall of the process
(another tenant on the core, an interrupt, the hypervisor) lands on a frame now and then.
``host`` says how often the host took the CPU from the process around the run, and for how
long (``probe_host``).
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bot.errors import ConfigError
from bot.logs import configure_logging
from bot.native import cbook
from bot.replay import resolve_source, run_replay
from bot.settings import load_settings

DEFAULT_CAPTURE = ("hftbacktest", "usdm", "btcusdt_20240808.gz")


def _default_paths() -> list[Path]:
    for base in (Path.cwd(), Path(__file__).resolve().parents[1]):
        candidate = base.parent / "shared" / "data" / Path(*DEFAULT_CAPTURE)
        if candidate.is_file():
            return [candidate]
    raise ConfigError("PATH", "no recording given and the shared Binance capture "
                              f"({'/'.join(DEFAULT_CAPTURE)}) was not found")


def _percentile(sorted_ns: list[int], q: float) -> float:
    if not sorted_ns:
        return float("nan")
    index = min(len(sorted_ns) - 1, max(0, round(q * (len(sorted_ns) - 1))))
    return sorted_ns[index] / 1000.0


def peak_rss_mb() -> float:
    """Return this process's peak resident set size in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


# A gap of at least this much between two clock reads of a spinning loop is a stall: time the
# process did not run (its own work between two reads is well under a microsecond).
STALL_NS = 20_000


def probe_host(seconds: float = 0.1, clock: Callable[[], int] = time.perf_counter_ns) -> list[int]:
    """Spin on ``clock`` for ``seconds``; return every stall seen (gaps >= ``STALL_NS``), ns.

    The loop does nothing but read the clock, so a gap between two reads is time taken from
    the process: preemption, an interrupt, steal by the hypervisor.
    """
    last = clock()
    end = last + round(seconds * 1e9)
    stalls: list[int] = []
    while True:
        now = clock()
        if now - last >= STALL_NS:
            stalls.append(now - last)
        last = now
        if now >= end:
            return stalls


def host_summary(stalls: list[int], probe_s: float) -> dict[str, float]:
    """Summarise the stalls seen in ``probe_s`` seconds of probing (see ``probe_host``)."""
    ordered = sorted(stalls)
    return {
        "probe_s": probe_s,
        "stalls_per_s": len(ordered) / probe_s if probe_s > 0 else 0.0,
        "stall_p50_us": _percentile(ordered, 0.50) if ordered else 0.0,
        "stall_max_us": ordered[-1] / 1000.0 if ordered else 0.0,
        "stalled_pct": 100.0 * sum(ordered) / (probe_s * 1e9) if probe_s > 0 else 0.0,
    }


def bench_command(paths: Sequence[Path], config: Path | None) -> dict[str, Any]:
    """Replay ``paths`` flat out with latency measurement; return the benchmark figures."""
    configure_logging("error")
    chosen = list(paths) or _default_paths()
    source = resolve_source(chosen, None, None)
    settings = load_settings(config, {"market": {"venue": source.venue,
                                                 "symbol": source.symbol}})
    # The host is probed for 0.1 s just before and just after the replay, not during it,
    # where the probe would take the CPU from the frames being timed.
    stalls = probe_host(0.1)
    result = run_replay(source, settings, None, measure_latency=True)
    stalls += probe_host(0.1)
    lat = sorted(result.command_latencies_ns)
    every = sorted(result.latencies_ns)
    return {
        "files": [str(p) for p in chosen],
        "messages": result.messages,
        "elapsed_s": result.elapsed_s,
        "messages_per_s": result.messages / result.elapsed_s if result.elapsed_s else 0.0,
        "tick_to_quote_us": {
            "p50": _percentile(lat, 0.50),
            "p99": _percentile(lat, 0.99),
            "max": lat[-1] / 1000.0 if lat else float("nan"),
            "samples": len(lat),
        },
        "book_frame_to_decision_us": {
            "p50": _percentile(every, 0.50),
            "p99": _percentile(every, 0.99),
            "max": every[-1] / 1000.0 if every else float("nan"),
            "samples": len(every),
        },
        "peak_rss_mb": peak_rss_mb(),
        "host": host_summary(stalls, 0.2),
        # The C book and helpers (bot/_cbook.c), or their pure-Python references.
        "compiled": cbook is not None,
        "orders_sent": result.engine.stats.orders_sent,
        "fills": result.engine.stats.fills,
    }
