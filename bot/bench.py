"""``mmbot bench``: throughput and tick-to-quote latency of the whole replay pipeline.

The pipeline is the one replay runs: raw frame -> venue parser -> engine (simulated venue
matching, book, estimators, strategy, risk gate, order manager) -> commands to the simulated
venue. Tick-to-quote latency is measured per frame that changed the book, from the raw frame
handed to the parser to the commands leaving the order manager: diffed, admitted by the risk
gate and handed to the execution venue (``tick_to_quote_us``, frames whose update made us send
commands). ``book_frame_to_decision_us`` covers every frame that
changed the book, up to the decision (commands sent, or none needed). Frames are streamed from
disk, so memory stays flat however long the input is; ``peak_rss_mb`` shows it.
"""

from __future__ import annotations

import resource
import sys
from collections.abc import Sequence
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


def bench_command(paths: Sequence[Path], config: Path | None) -> dict[str, Any]:
    """Replay ``paths`` flat out with latency measurement; return the benchmark figures."""
    configure_logging("error")
    chosen = list(paths) or _default_paths()
    source = resolve_source(chosen, None, None)
    settings = load_settings(config, {"market": {"venue": source.venue,
                                                 "symbol": source.symbol}})
    result = run_replay(source, settings, None, measure_latency=True)
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
        # The C book and helpers (bot/_cbook.c), or their pure-Python references.
        "compiled": cbook is not None,
        "orders_sent": result.engine.stats.orders_sent,
        "fills": result.engine.stats.fills,
    }
