"""Parameter sweeps: replay recordings under a grid of settings, in parallel, and tabulate.

``mmbot sweep`` runs one replay per (configuration, recording): the configurations are the
cartesian product of ``name=v1,v2,...`` specs on top of a base config. Every combination is
validated before anything runs, so a typo exits 2 naming the field instead of failing an hour
in. Replays run without a run directory (no journal) and each returns a plain dict; the rows
come back in grid order then recording order whatever the completion order, so the table is
reproducible bit for bit.

Two backends run the same job function, ``run_job``:

* a local ``concurrent.futures.ProcessPoolExecutor`` (default, ``workers`` processes);
* Ray (optional extra, imported only on this path): ``ray_address="local"`` starts a local
  instance, anything else is passed to ``ray.init(address=...)``. On a remote cluster every
  node must have mmbot installed and read the recordings at the same path (a shared
  filesystem); the settings travel with each task, so the config file need not.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from bot.app import build_gate, build_strategy
from bot.errors import ConfigError
from bot.logs import configure_logging
from bot.replay import Source, replay_summary, resolve_source, run_replay
from bot.settings import Settings, load_settings, merge_overrides

SHORT_NAMES: dict[str, str] = {
    "gamma": "strategy.gamma",
    "levels": "strategy.ladder.levels",
    "spacing_ticks": "strategy.ladder.spacing_ticks",
    "order_qty": "strategy.ladder.order_qty",
    "kind": "strategy.kind",
    "fill_model": "sim_venue.fill_model",
    "k": "model.intensity_k",
    "A": "model.intensity_a",
    "sigma": "model.sigma",
    "max_inventory": "risk.max_inventory",
    "requote_ticks": "orders.requote_ticks",
}
"""Grid names accepted as shorthand for a setting path; any dotted path also works."""

# The recording decides the market: a grid value here would be silently overwritten.
_FROM_RECORDING = frozenset({"market.venue", "market.symbol"})
_SECRETS = frozenset({"api_key", "api_secret"})

METRICS: tuple[str, ...] = (
    "pnl", "realised", "unrealised", "fees", "volume", "final_inventory", "peak_pnl",
    "fills", "orders_sent", "cancels_sent", "rejects", "denials", "health_warnings",
    "messages", "book_updates", "trades", "sequence_gaps", "resyncs", "open_orders_at_end",
)
"""Numeric columns of a result row, in table order; any of them can be plotted."""

Progress = Callable[[int, int, float | None], None]
"""``progress(done, total, eta_s)``; ``eta_s`` is None until the first replay has finished."""


@dataclass(frozen=True, slots=True)
class SweepJob:
    """One replay of a sweep: which row it fills, the recording and the full settings.

    ``quiet``: the job runs in a worker process, whose logging it sets to errors only (the
    parent owns the console; structlog unconfigured would print every event to stdout).
    """

    index: int
    source: Source
    settings: Settings
    quiet: bool = True


# -- the grid ---------------------------------------------------------------------------------


def parse_value(text: str) -> int | float | bool | str:
    """Parse one grid value: ``true``/``false``, an int, a float (``inf``, ``1e-3``), else text."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def setting_path(name: str) -> str:
    """Return the dotted setting path of a grid name (a short name or a path).

    Raises:
        ConfigError: the name is no setting, a whole section, or a setting the sweep owns.
    """
    path = SHORT_NAMES.get(name, name)
    model: type[BaseModel] = Settings
    parts = path.split(".")
    for depth, part in enumerate(parts):
        info = model.model_fields.get(part)
        if info is None or (depth == 0 and part in _SECRETS):
            raise ConfigError(name, f"unknown setting {path!r}; give a dotted path such as "
                                    f"strategy.gamma or a short name: {', '.join(SHORT_NAMES)}")
        annotation = info.annotation
        is_section = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        last = depth == len(parts) - 1
        if last and is_section:
            raise ConfigError(name, f"{path!r} is a section, not a setting")
        if not last and not is_section:
            raise ConfigError(name, f"unknown setting {path!r}: {part!r} has no fields")
        if is_section:
            assert isinstance(annotation, type)
            model = annotation
    if path in _FROM_RECORDING:
        raise ConfigError(name, "the market comes from each recording; list recordings instead")
    return path


def parse_grid(specs: Sequence[str], config: Path | None = None) -> dict[str, list[Any]]:
    """Parse ``name=v1,v2,...`` specs into ``{setting path: values}`` and validate them.

    Short names (``gamma``, ``levels``, ``k``, ... see ``SHORT_NAMES``) become their setting
    paths, so the keys are always dotted paths in the order given. Every combination is
    loaded as settings on top of ``config`` up front.

    Raises:
        ConfigError: a malformed spec, an unknown or repeated name, a repeated value, or a
            value (or combination) the settings reject; the error names the field.
    """
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        name, sep, text = (part.strip() for part in spec.partition("="))
        if not sep or not name:
            raise ConfigError(spec, "expected name=v1,v2,... (e.g. gamma=0.01,0.1,1)")
        path = setting_path(name)
        if path in grid:
            raise ConfigError(name, f"{path} is given twice")
        items = [item.strip() for item in text.split(",")]
        if not all(items):
            raise ConfigError(path, f"empty value in {spec!r}")
        values = [parse_value(item) for item in items]
        if len(set(values)) != len(values):
            raise ConfigError(path, f"a value is repeated in {spec!r}")
        grid[path] = values
    grid_settings(grid, config)
    return grid


def combinations(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Return every combination of the grid, the last parameter varying fastest."""
    names = list(grid)
    return [dict(zip(names, values, strict=True))
            for values in itertools.product(*(grid[n] for n in names))]


def grid_settings(grid: dict[str, list[Any]], config: Path | None) -> list[Settings]:
    """Load the settings of every combination (in ``combinations`` order).

    The strategy and the risk gate are built once too: their own checks (e.g. a spread floor
    against a price band) would otherwise first fail inside a worker, mid-sweep.

    Raises:
        ConfigError: a combination is invalid; the field is named and the combination shown.
    """
    paths = {name: setting_path(name) for name in grid}
    out: list[Settings] = []
    for combo in combinations(grid):
        overrides = merge_overrides(*((paths[name], value) for name, value in combo.items()))
        try:
            settings = load_settings(config, overrides)
            build_strategy(settings)
            build_gate(settings)
            out.append(settings)
        except ConfigError as exc:
            shown = ", ".join(f"{name}={value}" for name, value in combo.items())
            raise ConfigError(exc.field, f"{exc.message} (with {shown})") from exc
    return out


# -- running ----------------------------------------------------------------------------------


def recording_names(paths: Sequence[Path]) -> list[str]:
    """Name each recording by its file name, with as many parent folders as keep names unique."""
    depth = 1
    while True:
        names = ["/".join(p.parts[-depth:]) for p in paths]
        if len(set(names)) == len(names) or all(depth >= len(p.parts) for p in paths):
            return names
        depth += 1


def run_job(job: SweepJob) -> dict[str, Any]:
    """Replay one recording under one configuration, without a journal; return its metrics.

    The job function of both backends: it must stay importable at module level.
    """
    if job.quiet:
        _quiet_worker()
    result = run_replay(job.source, job.settings, None)
    summary = replay_summary(result, job.source, job.settings, None)
    metrics: dict[str, Any] = {
        "symbol": job.source.symbol,
        "pnl": summary["pnl"],
        "realised": summary["realised"],
        "unrealised": summary["unrealised"],
        "fees": summary["fees"],
        "volume": summary["volume"],
        "final_inventory": summary["final_inventory"],
        "peak_pnl": result.engine.gate.peak_pnl,
        "fills": summary["fills"],
        "orders_sent": summary["orders_sent"],
        "cancels_sent": summary["cancels_sent"],
        "rejects": summary["rejects"],
        "denials": sum(summary["denials"].values()),
        "health_warnings": sum(summary["health_warnings"].values()),
        "messages": summary["messages"],
        "book_updates": summary["book_updates"],
        "trades": summary["trades"],
        "sequence_gaps": summary["sequence_gaps"],
        "resyncs": summary["resyncs"],
        "open_orders_at_end": summary["open_orders_at_end"],
        "risk_state": summary["risk_state"],
    }
    # NaN and inf would make invalid JSON and meaningless averages: write them as empty.
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v
            for k, v in metrics.items()}


_worker_quiet = False


def _quiet_worker() -> None:
    global _worker_quiet
    if not _worker_quiet:
        configure_logging("error", None)
        _worker_quiet = True


def run_sweep(
    paths: Sequence[Path],
    grid: dict[str, list[Any]],
    config: Path | None,
    workers: int | None = None,
    ray_address: str | None = None,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Replay each recording under every combination of ``grid``; return one row per replay.

    Args:
        paths: recordings; each is replayed on its own.
        grid: ``{setting path or short name: values}``, as from ``parse_grid``.
        config: base TOML config, or None for defaults (plus ``MMBOT_`` environment).
        workers: processes (default ``os.cpu_count()``); with 1 and no Ray the replays run in
            this process. For a local Ray instance, its CPU count.
        ray_address: None for the process pool; ``"local"`` to start a local Ray instance, or
            the address of a running cluster.
        progress: called with ``(done, total, eta_s)`` at the start and after each replay.

    Returns:
        Rows ``{parameter: value, ..., "recording": name, metric: value, ...}`` ordered by
        grid combination (last parameter fastest), then by recording as given.

    Raises:
        ConfigError: a grid value, the recordings, ``workers`` or Ray are unusable; raised
            before any replay runs.
    """
    if workers is not None and workers < 1:
        raise ConfigError("--workers", "must be at least 1")
    if len(set(paths)) != len(paths):
        raise ConfigError("PATH", "a recording is given twice")
    combos = combinations(grid)
    all_settings = grid_settings(grid, config)
    sources = [resolve_source([p], None, None) for p in paths]
    names = recording_names(paths)
    jobs = [SweepJob(i * len(sources) + j, source, settings)
            for i, settings in enumerate(all_settings) for j, source in enumerate(sources)]
    if ray_address is not None:
        metrics = _run_ray(jobs, workers, ray_address, progress)
    else:
        metrics = _run_local(jobs, workers, progress)
    rows: list[dict[str, Any]] = []
    for i, combo in enumerate(combos):
        for j, name in enumerate(names):
            rows.append({**combo, "recording": name, **metrics[i * len(names) + j]})
    return rows


class _Eta:
    """Count finished replays and report them with a linear time-to-go estimate."""

    def __init__(self, total: int, progress: Progress | None) -> None:
        self.total = total
        self.done = 0
        self._progress = progress
        self._started = time.perf_counter()
        if progress is not None:
            progress(0, total, None)

    def finished(self) -> None:
        self.done += 1
        if self._progress is not None:
            elapsed = time.perf_counter() - self._started
            self._progress(self.done, self.total,
                           elapsed / self.done * (self.total - self.done))


def _run_local(jobs: list[SweepJob], workers: int | None,
               progress: Progress | None) -> list[dict[str, Any]]:
    count = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    out: list[dict[str, Any]] = [{} for _ in jobs]
    eta = _Eta(len(jobs), progress)
    if count == 1:
        for job in jobs:
            out[job.index] = run_job(replace(job, quiet=False))
            eta.finished()
        return out
    with ProcessPoolExecutor(max_workers=count) as pool:
        pending: dict[Future[dict[str, Any]], int] = {
            pool.submit(run_job, job): job.index for job in jobs}
        try:
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    out[pending.pop(future)] = future.result()
                    eta.finished()
        except BaseException:
            # Fail fast: one broken replay (or Ctrl-C) stops the sweep, not the next hour.
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return out


def _run_ray(jobs: list[SweepJob], workers: int | None, address: str,
             progress: Progress | None) -> list[dict[str, Any]]:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("--ray", "ray is not installed: pip install 'ray'") from exc
    started_here = not ray.is_initialized()
    if started_here:
        if address == "local":
            ray.init(num_cpus=workers or os.cpu_count() or 1, include_dashboard=False,
                     logging_level=logging.WARNING)
        else:
            ray.init(address=address, logging_level=logging.WARNING)
    try:
        task = ray.remote(num_cpus=1)(run_job)
        eta = _Eta(len(jobs), progress)
        refs = {task.remote(job): job.index for job in jobs}
        out: list[dict[str, Any]] = [{} for _ in jobs]
        pending = list(refs)
        try:
            while pending:
                finished, pending = ray.wait(pending, num_returns=1)
                for ref in finished:
                    out[refs[ref]] = ray.get(ref)
                    eta.finished()
        except BaseException:
            for ref in pending:
                ray.cancel(ref)
            raise
        return out
    finally:
        if started_here:
            ray.shutdown()


def progress_bar(done: int, total: int, eta_s: float | None) -> None:
    """Draw ``sweep [####......] 3/8  ETA 12s`` on stderr; end the line when done."""
    width = 30
    filled = width * done // total if total else width
    eta = "--" if eta_s is None else _duration(eta_s)
    sys.stderr.write(f"\rsweep [{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
                     f"  ETA {eta}   ")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _duration(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


# -- results ----------------------------------------------------------------------------------


def parameter_names(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Return the parameter columns of sweep rows: those before ``recording``."""
    if not rows:
        return []
    keys = list(rows[0])
    return keys[: keys.index("recording")] if "recording" in keys else []


def mean_by(rows: Iterable[dict[str, Any]], params: Sequence[str],
            metric: str) -> dict[tuple[Any, ...], float]:
    """Average ``metric`` over all rows sharing the values of ``params`` (None values skipped)."""
    sums: dict[tuple[Any, ...], list[float]] = {}
    for row in rows:
        key = tuple(row[p] for p in params)
        acc = sums.setdefault(key, [0.0, 0.0])
        value = row.get(metric)
        if isinstance(value, int | float) and not isinstance(value, bool):
            acc[0] += float(value)
            acc[1] += 1
    return {k: s / n if n else math.nan for k, (s, n) in sums.items()}


def write_results(rows: Sequence[dict[str, Any]], out_dir: Path, metric: str,
                  params: Sequence[str] | None = None,
                  meta: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write ``results.csv``, ``results.json`` and a plot of ``metric``; return their paths.

    The plot is a heatmap over the first two parameters (the mean over recordings and the
    other parameters), a bar chart when there is one parameter, or one bar per recording
    when there is none.

    Args:
        rows: result rows, as from ``run_sweep``.
        out_dir: folder to write into (created).
        metric: the numeric column to plot (one of ``METRICS``).
        params: parameter columns (default: the columns before ``recording``).
        meta: extra keys for ``results.json`` (grid, config, timings).
    """
    if metric not in METRICS:
        raise ConfigError("--metric", f"unknown metric {metric!r}; one of {', '.join(METRICS)}")
    if not rows:
        raise ConfigError("--grid", "no results to write")
    params = list(parameter_names(rows) if params is None else params)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "results.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    json_path = out_dir / "results.json"
    document = {**(meta or {}), "parameters": params, "metric": metric, "rows": list(rows)}
    json_path.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n",
                         encoding="utf-8")
    png_path = out_dir / f"{'heatmap' if len(params) >= 2 else 'bars'}_{metric}.png"
    plot_metric(rows, params, metric, png_path)
    return {"csv": csv_path, "json": json_path, "png": png_path}


def plot_metric(rows: Sequence[dict[str, Any]], params: Sequence[str], metric: str,
                path: Path) -> None:
    """Plot the mean of ``metric`` over the first two parameters (see ``write_results``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recordings = list(dict.fromkeys(str(row["recording"]) for row in rows))
    if len(recordings) == 1:
        lines = [f"{metric}, {recordings[0]}"]
    elif params:
        shown = ", ".join(recordings) if len(recordings) <= 3 else f"{len(recordings)} files"
        lines = [f"{metric}, mean over {len(recordings)} recordings", f"({shown})"]
    else:
        lines = [f"{metric} per recording"]
    for other in params[2:]:
        values = ", ".join(_label(v) for v in dict.fromkeys(row[other] for row in rows))
        lines.append(f"and over {other} = {values}")
    if len(params) >= 2:
        fig = _heatmap(plt, rows, params[0], params[1], metric)
    else:
        fig = _bars(plt, rows, params[0] if params else "recording", metric, recordings)
    fig.suptitle(lines[0], fontsize=12)
    if len(lines) > 1:
        fig.axes[0].set_title("\n".join(lines[1:]), fontsize=9, color="dimgrey")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def _label(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _cell(value: float) -> str:
    if math.isnan(value):
        return "–"
    return f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:.4g}"


def _heatmap(plt: Any, rows: Sequence[dict[str, Any]], y_param: str, x_param: str,
             metric: str) -> Any:
    import numpy as np
    from matplotlib.colors import CenteredNorm

    ys = list(dict.fromkeys(row[y_param] for row in rows))
    xs = list(dict.fromkeys(row[x_param] for row in rows))
    means = mean_by(rows, [y_param, x_param], metric)
    grid = np.array([[means.get((y, x), math.nan) for x in xs] for y in ys])
    finite = grid[np.isfinite(grid)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if low < 0 < high:
        # Signed metric (PnL): pale at zero, red below, green above; symmetric and linear, so
        # equal shades mean equal magnitudes and the colour bar keeps even ticks.
        cmap = plt.get_cmap("RdYlGn")
        norm = CenteredNorm(vcenter=0.0, halfrange=max(-low, high))
    else:
        cmap = plt.get_cmap("viridis")
        norm = _linear_norm(low, high)
    cmap = cmap.with_extremes(bad="lightgrey")
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(xs) + 3.5),
                                    max(4.0, 0.8 * len(ys) + 2.5)), dpi=110,
                           layout="constrained")
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=norm, aspect="auto")
    ax.set_xticks(range(len(xs)), [_label(x) for x in xs])
    ax.set_yticks(range(len(ys)), [_label(y) for y in ys])
    ax.set_xlabel(x_param)
    ax.set_ylabel(y_param)
    for i in range(len(ys)):
        for j in range(len(xs)):
            value = float(grid[i, j])
            shade = cmap(norm(value)) if math.isfinite(value) else (0.8, 0.8, 0.8, 1.0)
            luminance = 0.299 * shade[0] + 0.587 * shade[1] + 0.114 * shade[2]
            ax.text(j, i, _cell(value), ha="center", va="center", fontsize=10,
                    color="black" if luminance > 0.5 else "white")
    fig.colorbar(image, ax=ax, label=metric)
    return fig


def _linear_norm(low: float, high: float) -> Any:
    # Widened when all values are equal, so the one colour is mid-scale, not an edge.
    from matplotlib.colors import Normalize

    if low == high:
        low, high = low - 0.5, high + 0.5
    return Normalize(vmin=low, vmax=high)


def _bars(plt: Any, rows: Sequence[dict[str, Any]], param: str, metric: str,
          recordings: list[str]) -> Any:
    values = list(dict.fromkeys(row[param] for row in rows))
    means = mean_by(rows, [param], metric)
    heights = [means.get((v,), math.nan) for v in values]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(values) + 3.0), 4.5), dpi=110,
                           layout="constrained")
    colours = ["tab:green" if h >= 0 else "tab:red" for h in heights]
    positions = list(range(len(values)))
    bars = ax.bar(positions, [0.0 if math.isnan(h) else h for h in heights], color=colours,
                  alpha=0.6, label="mean")
    ax.bar_label(bars, labels=[_cell(h) for h in heights], label_type="center", fontsize=9,
                 bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "alpha": 0.8,
                       "linewidth": 0})
    if param != "recording" and len(recordings) > 1:
        # Show the spread behind each mean: one marker per recording.
        for n, name in enumerate(recordings):
            per = mean_by((r for r in rows if r["recording"] == name), [param], metric)
            ax.scatter(positions, [per.get((v,), math.nan) for v in values], s=26,
                       marker="o", zorder=3, color=f"C{n % 10}", edgecolor="black",
                       linewidth=0.5, label=name)
        fig.legend(loc="outside lower center", ncols=min(len(recordings) + 1, 4), fontsize=8)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(positions, [_label(v) for v in values])
    ax.set_xlabel(param)
    ax.set_ylabel(metric)
    ax.margins(y=0.15)
    ax.grid(axis="y", alpha=0.3)
    return fig


# -- the verb ---------------------------------------------------------------------------------


def sweep_command(paths: Sequence[Path], grid_specs: Sequence[str], config: Path | None,
                  workers: int | None, ray: str | None, metric: str,
                  out: Path | None) -> dict[str, Any]:
    """The ``mmbot sweep`` verb: validate, run, write the results; return a summary.

    Args:
        paths: recordings, each replayed on its own.
        grid_specs: ``name=v1,v2,...`` specs (see ``parse_grid``).
        config: base TOML config.
        workers: local processes (default: CPU count), or the local Ray instance's CPUs.
        ray: None for the process pool, ``"local"`` or a Ray cluster address.
        metric: the column to plot and rank by (one of ``METRICS``).
        out: parent folder of the sweep directory (default ``run.out_dir`` of the config).

    Raises:
        ConfigError: a bad grid, metric, recording or option; nothing has run.
    """
    configure_logging("error")
    if metric not in METRICS:
        raise ConfigError("--metric", f"unknown metric {metric!r}; one of {', '.join(METRICS)}")
    grid = parse_grid(grid_specs, config)
    base = load_settings(config)
    show = sys.stderr.isatty()
    started = time.perf_counter()
    rows = run_sweep(list(paths), grid, config, workers, ray, progress_bar if show else None)
    elapsed = time.perf_counter() - started
    params = list(grid)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = _fresh_dir((out if out is not None else base.run.out_dir) / f"{stamp}-sweep")
    meta = {"grid": grid, "config": str(config) if config is not None else None,
            "recordings": [str(p) for p in paths], "backend": "ray" if ray else "process",
            "elapsed_s": elapsed}
    files = write_results(rows, out_dir, metric, params, meta)
    means = mean_by(rows, params, metric)
    ranked = [(k, v) for k, v in means.items() if math.isfinite(v)]
    best = max(ranked, key=lambda kv: kv[1]) if ranked else None
    return {
        "configurations": len(means),
        "recordings": len(paths),
        "rows": len(rows),
        "parameters": params,
        "metric": metric,
        "highest": (None if best is None else
                    {**dict(zip(params, best[0], strict=True)), metric: best[1]}),
        "backend": meta["backend"],
        "elapsed_s": elapsed,
        "out_dir": str(out_dir),
        "files": {kind: str(p) for kind, p in files.items()},
    }


def _fresh_dir(base: Path) -> Path:
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path
