"""The ``mmbot`` command line (contract in DESIGN.md).

``--json`` prints exactly one JSON object on stdout; logs go to stderr and to the run
directory. Exit codes: 0 success, 2 bad usage or bad config (the message names the field),
1 runtime failure.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bot.errors import ConfigError, MmbotError, SafetyError
from bot.settings import Settings, load_settings, merge_overrides

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _positive_or_inf(text: str) -> float:
    value = float(text)
    if not value > 0:  # nan too
        raise argparse.ArgumentTypeError(f"must be a positive number or inf, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a non-negative number, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every verb implemented so far."""
    parser = argparse.ArgumentParser(
        prog="mmbot",
        description="Avellaneda-Stoikov market-making bot: paper, live and replay.",
    )
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    sim = sub.add_parser(
        "simulate",
        help="the Avellaneda-Stoikov 2008 experiment (Table 1) through the real engine",
        description=(
            "Run the AS 2008 experiment: s0=100, T=1 s, sigma=2, dt=0.005, k=1.5, A=140, "
            "unit orders; the 'inventory' strategy quotes around the reservation price, the "
            "'symmetric' one the same spread around the mid. Same paths for both."
        ),
    )
    sim.add_argument("--gamma", type=_non_negative_float, default=0.1,
                     help="risk aversion gamma (default 0.1)")
    sim.add_argument("--paths", type=_positive_int, default=1000, help="number of paths")
    sim.add_argument("--seed", type=int, default=1, help="random seed")
    sim.add_argument("--workers", type=_positive_int, default=None,
                     help="processes to use (default: number of CPUs)")
    sim.add_argument("--json", action="store_true", help="print one JSON object")

    paper = sub.add_parser("paper", help="paper trade: live-like feed, simulated fills")
    paper.add_argument("--venue", default=None,
                       help="binance|binance-usdm|coinbase|bybit|okx|kraken|ccxt:<id>|sim")
    paper.add_argument("--symbol", default=None, help="symbol (default from the config)")
    paper.add_argument("--config", type=Path, default=None, help="TOML config file")
    paper.add_argument("--duration", type=_positive_float, default=None,
                       help="stop after this many seconds (default: until Ctrl-C)")
    paper.add_argument("--fill-model", choices=["queue", "trade-through", "touch"], default=None)
    paper.add_argument("--out", type=Path, default=None, help="parent folder of run directories")
    paper.add_argument("--speed", type=_positive_float, default=1.0,
                       help="simulated market only: seconds of market per wall second")
    paper.add_argument("--warmup", type=Path, action="append", default=[], metavar="PATH",
                       help="seed the sigma/A/k estimators from a recording first")
    paper.add_argument("--json", action="store_true",
                       help="no status lines; print the summary as one JSON object")
    live = sub.add_parser("live", help="trade real money through ccxt (needs --confirm-live)")
    live.add_argument("--venue", default=None, help="binance|binance-usdm|coinbase|bybit|okx|"
                                                    "kraken|ccxt:<id> (default: the config's)")
    live.add_argument("--symbol", default=None,
                      help="symbol in the venue's notation (default: the config's; one "
                           "config only)")
    live.add_argument("--config", type=Path, action="append", required=True,
                      help="TOML config of one market; repeat for several markets on one venue")
    live.add_argument("--global-max-loss", type=_positive_float, default=None,
                      help="halt every market when their summed PnL falls to -this")
    live.add_argument("--confirm-live", action="store_true",
                      help="required: confirms that real orders may be sent")
    live.add_argument("--dry-run", action="store_true",
                      help="run everything, send nothing, log the orders it would send")
    live.add_argument("--duration", type=_positive_float, default=None,
                      help="stop after this many seconds (default: until Ctrl-C)")
    live.add_argument("--out", type=Path, default=None, help="parent folder of run directories")
    live.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                      help="continue the journal of an earlier (crashed) run of this market")
    live.add_argument("--json", action="store_true", help="print the summary as one JSON object")

    replay = sub.add_parser("replay", help="replay recorded feeds through the engine")
    replay.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                        help="recordings (ours, hftbacktest raw Binance, cryptofeed sessions); "
                             "several files of one connection continue each other")
    replay.add_argument("--config", type=Path, default=None, help="TOML config file")
    replay.add_argument("--fill-model", choices=["queue", "trade-through", "touch"],
                        default=None)
    replay.add_argument("--venue", default=None, help="override the venue the files name")
    replay.add_argument("--symbol", default=None, help="which market of a multi-symbol file")
    replay.add_argument("--speed", choices=["max", "1"], default="max",
                        help="max: as fast as possible (default); 1: recorded pace")
    replay.add_argument("--out", type=Path, default=None, help="parent folder of run directories")
    replay.add_argument("--warmup", type=Path, action="append", default=[], metavar="PATH",
                        help="seed the sigma/A/k estimators from another recording first")
    replay.add_argument("--no-report", action="store_true",
                        help="skip the HTML/PNG report (and --no-benchmark to skip the "
                             "fixed-spread benchmark run)")
    replay.add_argument("--no-benchmark", action="store_true",
                        help="do not replay the fixed-spread benchmark after the strategy")
    replay.add_argument("--json", action="store_true", help="print one JSON object")

    record = sub.add_parser("record", help="record a venue's raw feed for replay")
    record.add_argument("--venue", required=True, help="native venue (binance, okx, ...)")
    record.add_argument("--symbol", required=True, help="symbol in the venue's notation")
    record.add_argument("--out", type=Path, required=True, help="output file (*.jsonl.gz)")
    record.add_argument("--duration", type=_positive_float, default=None,
                        help="stop after this many seconds (default: until Ctrl-C)")
    record.add_argument("--rotate-mb", type=_positive_float, default=512.0,
                        help="start a new part after this many MiB (uncompressed)")
    record.add_argument("--rotate-s", type=_positive_float, default=3600.0,
                        help="start a new part after this many seconds")
    record.add_argument("--json", action="store_true", help="print one JSON object")

    cal = sub.add_parser("calibrate", help="estimate sigma, A and k from recorded feeds")
    cal.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                     help="recordings (anything replay reads)")
    cal.add_argument("--method", choices=["time-to-fill", "hits"], default="time-to-fill")
    cal.add_argument("--venue", default=None, help="override the venue the files name")
    cal.add_argument("--symbol", default=None, help="which market of a multi-symbol file")
    cal.add_argument("--ticks", action="store_true",
                     help="report prices in ticks (k in 1/tick, sigma in ticks/sqrt(s))")
    cal.add_argument("--tick-size", type=_positive_float, default=None,
                     help="tick size (default: inferred from the first snapshot)")
    cal.add_argument("--depth-points", type=_positive_int, default=21)
    cal.add_argument("--max-depth-ticks", type=_positive_float, default=50.0)
    cal.add_argument("--horizon", type=_positive_float, default=1.0,
                     help="time-to-fill censoring horizon, seconds")
    cal.add_argument("--start", type=_non_negative_float, default=0.0,
                     help="estimate from this many seconds after the first event")
    cal.add_argument("--end", type=_positive_or_inf, default=math.inf,
                     help="estimate until this many seconds after the first event")
    cal.add_argument("--plot", type=Path, default=None, help="write the fit plot (PNG)")
    cal.add_argument("--json", action="store_true", help="print one JSON object")

    sweep = sub.add_parser("sweep", help="replay a grid of parameters over recordings")
    sweep.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="recordings")
    sweep.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2",
                       help="a parameter and its values, e.g. gamma=0.01,0.1 (repeatable)")
    sweep.add_argument("--config", type=Path, default=None, help="base TOML config")
    sweep.add_argument("--workers", type=_positive_int, default=None,
                       help="local processes (default: number of CPUs)")
    sweep.add_argument("--ray", default=None, metavar="ADDRESS",
                       help="run on a Ray cluster ('local' starts a local instance)")
    sweep.add_argument("--metric", default="pnl", help="metric of the heatmap (default pnl)")
    sweep.add_argument("--out", type=Path, default=None, help="parent folder of the results")
    sweep.add_argument("--json", action="store_true", help="print one JSON object")

    report = sub.add_parser("report", help="HTML + PNG report of a run directory")
    report.add_argument("run_dir", type=Path, metavar="RUN_DIR")

    bench = sub.add_parser("bench", help="throughput and tick-to-quote latency of the pipeline")
    bench.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                       help="recordings (default: the shared Binance USD-M BTCUSDT capture)")
    bench.add_argument("--config", type=Path, default=None, help="TOML config file")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def _print_json(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=False) + "\n")
    sys.stdout.flush()


def _settings_for_paper(args: argparse.Namespace) -> Settings:
    overrides = merge_overrides(
        ("market.venue", args.venue),
        ("market.symbol", args.symbol),
        ("sim_venue.fill_model", args.fill_model),
        ("run.out_dir", str(args.out) if args.out is not None else None),
    )
    return load_settings(args.config, overrides)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.verb == "simulate":
            from bot.simulate import run_simulation

            result = run_simulation(args.gamma, args.paths, args.seed, workers=args.workers)
            if args.json:
                _print_json(result)
            else:
                from bot.simulate import format_table

                sys.stdout.write(format_table(result) + "\n")
            return EXIT_OK
        if args.verb == "live":
            from bot.live import run_live

            if args.symbol is not None and len(args.config) > 1:
                parser.error("--symbol applies to one config; each config names its market")
            settings_list = [load_settings(path, merge_overrides(
                ("market.venue", args.venue), ("market.symbol", args.symbol),
                ("run.out_dir", str(args.out) if args.out is not None else None)))
                for path in args.config]
            summary = run_live(settings_list, confirm_live=args.confirm_live,
                               dry_run=args.dry_run, duration_s=args.duration,
                               json_output=args.json, resume=args.resume,
                               global_max_loss=args.global_max_loss)
            if args.json:
                _print_json(summary)
            return EXIT_OK
        if args.verb == "replay":
            from bot.replay import replay_command

            overrides = merge_overrides(
                ("sim_venue.fill_model", args.fill_model),
                ("run.out_dir", str(args.out) if args.out is not None else None),
                ("benchmark.enabled", False if args.no_benchmark else None),
            )
            summary = replay_command(args.paths, args.config, overrides, args.venue,
                                     args.symbol, None if args.speed == "max" else 1.0,
                                     args.json, args.warmup, report=not args.no_report)
            if args.json:
                _print_json(summary)
            else:
                sys.stdout.write(json.dumps(summary, indent=2) + "\n")
            return EXIT_RUNTIME if summary.get("interrupted") else EXIT_OK
        if args.verb == "record":
            from bot.record import record_command

            result = record_command(args.venue, args.symbol, args.out, args.duration,
                                    args.rotate_mb, args.rotate_s)
            if args.json:
                _print_json(result)
            return EXIT_OK
        if args.verb == "calibrate":
            from bot.calibrate import CalibrationSetup, calibrate, plot_fits

            if args.end <= args.start:
                parser.error(f"calibrate: --end ({args.end:g}) must be after --start "
                             f"({args.start:g})")
            setup = CalibrationSetup(method=args.method, depth_points=args.depth_points,
                                     max_depth_ticks=args.max_depth_ticks,
                                     horizon_s=args.horizon)
            result, fits = calibrate(args.paths, setup, args.venue, args.symbol, args.ticks,
                                     args.tick_size, args.start, args.end)
            if args.plot is not None:
                plot_fits(fits, result, args.plot)
                result["plot"] = str(args.plot)
            if args.json:
                _print_json(result)
            else:
                sys.stdout.write(json.dumps(result, indent=2) + "\n")
            if result["status"] != "ok":
                raw_reasons = result.get("reasons")
                reasons = [str(r) for r in raw_reasons] if isinstance(raw_reasons, list) else []
                sys.stderr.write("mmbot: not enough data: " + "; ".join(reasons) + "\n")
            return EXIT_OK
        if args.verb == "sweep":
            from bot.sweep import sweep_command

            if not args.grid:
                parser.error("sweep needs at least one --grid NAME=V1,V2")
            result = sweep_command(args.paths, args.grid, args.config, args.workers, args.ray,
                                   args.metric, args.out)
            text = json.dumps(result, default=str)
            sys.stdout.write((text if args.json else json.dumps(result, indent=2, default=str))
                             + "\n")
            return EXIT_OK
        if args.verb == "report":
            from bot.report import report_command

            path = report_command(args.run_dir)
            sys.stdout.write(f"{path}\n")
            return EXIT_OK
        if args.verb == "bench":
            from bot.bench import bench_command

            result = bench_command(args.paths, args.config)
            if args.json:
                _print_json(result)
            else:
                sys.stdout.write(json.dumps(result, indent=2) + "\n")
            return EXIT_OK
        if args.verb == "paper":
            from bot.paper import run_paper

            settings = _settings_for_paper(args)
            summary = run_paper(settings, duration_s=args.duration, json_output=args.json,
                                speed=args.speed, warmup=args.warmup)
            if args.json:
                _print_json(summary)
            return EXIT_OK
    except (MmbotError, KeyboardInterrupt) as exc:
        return _exit_for(exc)
    except BaseExceptionGroup as group:
        # An error inside a task group (the engine's feed, a live market's task) arrives
        # wrapped: said like any other, unless it is a bug (then the traceback is wanted).
        leaves = _leaves(group)
        if not all(isinstance(leaf, MmbotError | KeyboardInterrupt) for leaf in leaves):
            raise
        return max(_exit_for(leaf) for leaf in leaves)
    parser.error(f"unknown verb {args.verb}")


def _exit_for(exc: BaseException) -> int:
    """Say what stopped the command on stderr; return its exit code."""
    if isinstance(exc, ConfigError):
        sys.stderr.write(f"mmbot: config error: {exc}\n")
        return EXIT_USAGE
    if isinstance(exc, SafetyError):
        sys.stderr.write(f"mmbot: refused: {exc}\n")
        return EXIT_USAGE
    if isinstance(exc, MmbotError):
        sys.stderr.write(f"mmbot: error: {exc}\n")
    else:
        sys.stderr.write("mmbot: interrupted\n")
    return EXIT_RUNTIME


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """Every exception of ``group``, nested groups opened."""
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found


if __name__ == "__main__":
    sys.exit(main())
