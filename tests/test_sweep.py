"""Parameter sweeps: the grid, both backends against one-by-one replays, the result files."""

from __future__ import annotations

import csv
import gzip
import importlib.util
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bot.errors import ConfigError
from bot.replay import replay_summary, resolve_source, run_replay
from bot.settings import load_settings
from bot.sweep import (
    parse_grid,
    progress_bar,
    recording_names,
    run_sweep,
    sweep_command,
    write_results,
)

ROOT = Path(__file__).resolve().parents[1]
RECORDINGS = ("btcusdt_20240808.gz", "ethusdt_20240808.gz")
HEAD_LINES = 15_000  # about 50 s of USD-M feed, REST snapshot included
COMPARED = ("pnl", "fills", "orders_sent", "final_inventory", "sequence_gaps", "realised",
            "fees", "volume", "risk_state", "messages", "trades", "book_updates")

HAVE_RAY = importlib.util.find_spec("ray") is not None
# Read at collection: the autouse fixture in conftest.py clears MMBOT_* before each test.
REQUIRE_RAY = os.environ.get("MMBOT_REQUIRE_RAY") == "1"


@pytest.fixture
def recordings(shared_data: Path, tmp_path: Path) -> list[Path]:
    """Truncated copies of the two USD-M recordings: real frames, a few seconds per replay."""
    out = []
    for name in RECORDINGS:
        target = tmp_path / "rec" / name
        target.parent.mkdir(exist_ok=True)
        with gzip.open(shared_data / "hftbacktest" / "usdm" / name, "rt") as src, \
                gzip.open(target, "wt", compresslevel=1) as dst:
            dst.writelines(itertools.islice(src, HEAD_LINES))
        out.append(target)
    return out


def reference(paths: list[Path], gamma: float, levels: int,
              requote_ticks: float) -> list[dict[str, Any]]:
    """Replay each recording one by one, in this process, the way ``mmbot replay`` does."""
    settings = load_settings(None, {"strategy": {"gamma": gamma, "ladder": {"levels": levels}},
                                    "orders": {"requote_ticks": requote_ticks}})
    out = []
    for path in paths:
        source = resolve_source([path], None, None)
        result = run_replay(source, settings, None)
        out.append(replay_summary(result, source, settings, None))
    return out


# -- the grid ---------------------------------------------------------------------------------


def test_parse_grid_maps_short_names_to_setting_paths_and_parses_values() -> None:
    grid = parse_grid(["gamma=0.01,0.1,1", "levels=1,3", "fill_model=queue,touch",
                       "k=50", "A=5.5", "risk.enforce_touch=true,false", "max_inventory=2.5"])

    assert grid == {
        "strategy.gamma": [0.01, 0.1, 1],
        "strategy.ladder.levels": [1, 3],
        "sim_venue.fill_model": ["queue", "touch"],
        "model.intensity_k": [50],
        "model.intensity_a": [5.5],
        "risk.enforce_touch": [True, False],
        "risk.max_inventory": [2.5],
    }
    assert [type(v) for v in grid["strategy.gamma"]] == [float, float, int]
    assert type(grid["strategy.ladder.levels"][0]) is int


def test_parse_grid_passes_dotted_paths_through_in_the_order_given() -> None:
    grid = parse_grid(["strategy.ladder.spacing_ticks=1,2", "requote_ticks=0.5"])

    assert list(grid) == ["strategy.ladder.spacing_ticks", "orders.requote_ticks"]
    assert grid["strategy.ladder.spacing_ticks"] == [1, 2]


@pytest.mark.parametrize(("spec", "field"), [
    ("gama=0.1", "gama"),
    ("strategy.gama=0.1", "strategy.gama"),
    ("strategy=1", "strategy"),
    ("strategy.gamma.x=1", "strategy.gamma.x"),
    ("api_key=x", "api_key"),
    ("market.symbol=BTCUSDT", "market.symbol"),
])
def test_parse_grid_with_a_bad_name_raises_config_error_naming_it(spec: str, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_grid([spec])

    assert err.value.field == field


@pytest.mark.parametrize(("spec", "field"), [
    ("levels=1,0", "strategy.ladder.levels"),
    ("gamma=-1", "strategy.gamma"),
    ("fill_model=queue,magic", "sim_venue.fill_model"),
    ("levels=1.5", "strategy.ladder.levels"),
])
def test_parse_grid_with_a_bad_value_raises_config_error_naming_the_field(
    spec: str, field: str
) -> None:
    with pytest.raises(ConfigError) as err:
        parse_grid(["requote_ticks=1,2", spec])

    assert err.value.field == field
    assert "with orders.requote_ticks=1" in err.value.message  # which combination failed


@pytest.mark.parametrize("specs", [["gamma"], ["=1"], ["gamma="], ["gamma=1,,2"],
                                   ["gamma=1,1"], ["gamma=1,1.0"],
                                   ["gamma=1", "strategy.gamma=2"]])
def test_parse_grid_rejects_malformed_or_repeated_specs(specs: list[str]) -> None:
    with pytest.raises(ConfigError):
        parse_grid(specs)


def test_parse_grid_validates_combinations_on_top_of_the_config(tmp_path: Path) -> None:
    config = tmp_path / "fixed.toml"
    config.write_text("[strategy]\nhalf_spread_ticks = 2\n")

    grid = parse_grid(["kind=glft,fixed_spread"], config)

    assert grid == {"strategy.kind": ["glft", "fixed_spread"]}
    with pytest.raises(ConfigError, match="half_spread"):
        parse_grid(["kind=glft,fixed_spread"])  # no half spread without the config


def test_parse_grid_builds_each_strategy_so_its_own_checks_fail_up_front() -> None:
    with pytest.raises(ConfigError) as err:
        parse_grid(["kind=glft", "strategy.drift=0.1", "gamma=0.1,0"])

    assert err.value.field == "strategy"
    assert "strategy.gamma=0" in err.value.message


def test_recording_names_add_parent_folders_only_where_file_names_clash() -> None:
    assert recording_names([Path("/d/spot/a.gz"), Path("/d/usdm/b.gz")]) == ["a.gz", "b.gz"]
    assert recording_names([Path("/d/spot/a.gz"), Path("/d/usdm/a.gz")]) == \
        ["spot/a.gz", "usdm/a.gz"]


# -- running ----------------------------------------------------------------------------------


def test_sweep_of_eight_configurations_on_the_process_pool_equals_one_by_one_replays(
    recordings: list[Path],
) -> None:
    grid = parse_grid(["gamma=0.01,0.1", "levels=1,2", "requote_ticks=1,2"])
    calls: list[tuple[int, int, float | None]] = []

    started = time.perf_counter()
    rows = run_sweep(recordings, grid, None, workers=2,
                     progress=lambda d, t, e: calls.append((d, t, e)))
    pool_s = time.perf_counter() - started
    print(f"process pool, 2 workers: {len(rows)} replays in {pool_s:.2f} s")

    assert len(rows) == 16
    expected_order = [(g, lv, rq, name) for g in (0.01, 0.1) for lv in (1, 2) for rq in (1, 2)
                      for name in RECORDINGS]
    assert [(r["strategy.gamma"], r["strategy.ladder.levels"], r["orders.requote_ticks"],
             r["recording"]) for r in rows] == expected_order
    for n in range(0, 16, 2):
        row = rows[n]
        one_by_one = reference(recordings, row["strategy.gamma"],
                               row["strategy.ladder.levels"], row["orders.requote_ticks"])
        for got, want in zip(rows[n:n + 2], one_by_one, strict=True):
            assert {k: got[k] for k in COMPARED} == {k: want[k] for k in COMPARED}
    btc = [r for r in rows if r["recording"] == RECORDINGS[0]]
    assert len({r["orders_sent"] for r in btc}) > 1, "the grid values reach the engine"
    assert all(r["sequence_gaps"] == 0 and r["fills"] > 0 for r in rows)
    assert calls[0] == (0, 16, None)
    assert [c[0] for c in calls] == list(range(17))
    assert calls[-1][2] == 0.0


def test_sweep_in_process_with_one_worker_gives_the_same_rows(recordings: list[Path]) -> None:
    grid = parse_grid(["gamma=0.01,0.1"])

    in_process = run_sweep(recordings[:1], grid, None, workers=1)
    pooled = run_sweep(recordings[:1], grid, None, workers=2)

    assert in_process == pooled


@pytest.mark.skipif(not HAVE_RAY and not REQUIRE_RAY,
                    reason="ray not installed (MMBOT_REQUIRE_RAY=1 makes this a failure)")
def test_sweep_on_a_local_ray_instance_equals_the_process_pool(recordings: list[Path]) -> None:
    if not HAVE_RAY:
        pytest.fail("MMBOT_REQUIRE_RAY=1 but ray is not installed")
    import ray

    grid = parse_grid(["gamma=0.01,0.1", "levels=1,2"])
    started = time.perf_counter()
    pooled = run_sweep(recordings[:1], grid, None, workers=2)
    pool_s = time.perf_counter() - started
    try:
        started = time.perf_counter()
        on_ray = run_sweep(recordings[:1], grid, None, workers=2, ray_address="local")
        ray_s = time.perf_counter() - started
    finally:
        ray.shutdown()
    print(f"4 replays: process pool {pool_s:.2f} s, local ray (incl. start) {ray_s:.2f} s")

    assert len(on_ray) == 4
    assert on_ray == pooled


def test_ray_address_without_ray_installed_is_a_config_error_before_any_replay(
    recordings: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError

    with pytest.raises(ConfigError) as err:
        run_sweep(recordings[:1], parse_grid(["gamma=0.1"]), None, ray_address="local")

    assert err.value.field == "--ray"


def test_importing_the_sweep_module_does_not_import_ray() -> None:
    code = "import sys, bot.sweep; assert 'ray' not in sys.modules"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, check=False)

    assert proc.returncode == 0, proc.stderr


def test_sweep_with_zero_workers_is_a_config_error(recordings: list[Path]) -> None:
    with pytest.raises(ConfigError) as err:
        run_sweep(recordings, parse_grid(["gamma=0.1"]), None, workers=0)

    assert err.value.field == "--workers"


def test_sweep_with_a_recording_given_twice_is_a_config_error(recordings: list[Path]) -> None:
    with pytest.raises(ConfigError) as err:
        run_sweep([recordings[0], recordings[0]], parse_grid(["gamma=0.1"]), None)

    assert err.value.field == "PATH"


def test_progress_bar_shows_count_and_eta_and_ends_the_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    progress_bar(3, 8, 75.0)
    progress_bar(8, 8, 0.0)

    err = capsys.readouterr().err
    assert "3/8" in err and "ETA 1m15s" in err
    assert err.endswith("\n")


# -- results ----------------------------------------------------------------------------------


def synthetic_rows() -> list[dict[str, Any]]:
    return [{"strategy.gamma": g, "strategy.ladder.levels": lv, "orders.requote_ticks": rq,
             "recording": rec, "symbol": "X", "pnl": g * 100 - lv * 3 + rq - 2.5,
             "fills": lv * 10 + rq, "risk_state": "ACTIVE"}
            for g in (0.01, 0.1, 1.0) for lv in (1, 2) for rq in (1, 2) for rec in ("a", "b")]


def is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_write_results_writes_csv_json_and_a_heatmap_png(tmp_path: Path) -> None:
    rows = synthetic_rows()

    files = write_results(rows, tmp_path / "out", "pnl")

    assert set(files) == {"csv", "json", "png"}
    assert all(p.is_file() and p.stat().st_size > 0 for p in files.values())
    with files["csv"].open(newline="") as fh:
        table = list(csv.reader(fh))
    assert table[0][:4] == ["strategy.gamma", "strategy.ladder.levels", "orders.requote_ticks",
                            "recording"]
    assert "pnl" in table[0] and len(table) == len(rows) + 1
    document = json.loads(files["json"].read_text())
    assert document["parameters"] == ["strategy.gamma", "strategy.ladder.levels",
                                      "orders.requote_ticks"]
    assert document["rows"] == rows
    assert files["png"].name == "heatmap_pnl.png" and is_png(files["png"])


def test_write_results_with_one_parameter_draws_a_bar_chart(tmp_path: Path) -> None:
    rows = [{"strategy.gamma": g, "recording": rec, "pnl": g - 0.5}
            for g in (0.1, 1.0) for rec in ("a", "b")]

    files = write_results(rows, tmp_path, "pnl")

    assert files["png"].name == "bars_pnl.png" and is_png(files["png"])


def test_write_results_with_an_unknown_metric_raises_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        write_results(synthetic_rows(), tmp_path, "sharpe")

    assert err.value.field == "--metric"


# -- the verb ---------------------------------------------------------------------------------


def test_sweep_command_runs_the_grid_and_writes_a_sweep_folder(
    recordings: list[Path], tmp_path: Path
) -> None:
    summary = sweep_command(recordings[:1], ["gamma=0.01,0.1", "levels=1,2"], None, 1, None,
                            "pnl", tmp_path / "runs")

    assert summary["rows"] == 4 and summary["configurations"] == 4
    assert summary["parameters"] == ["strategy.gamma", "strategy.ladder.levels"]
    assert set(summary["highest"]) == {"strategy.gamma", "strategy.ladder.levels", "pnl"}
    out_dir = Path(summary["out_dir"])
    assert out_dir.parent == tmp_path / "runs" and out_dir.name.endswith("-sweep")
    assert all(Path(p).is_file() for p in summary["files"].values())
    meta = json.loads(Path(summary["files"]["json"]).read_text())
    assert meta["grid"] == {"strategy.gamma": [0.01, 0.1], "strategy.ladder.levels": [1, 2]}


def test_sweep_command_with_an_unknown_metric_fails_before_running(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        sweep_command([tmp_path / "missing.gz"], ["gamma=0.1"], None, None, None, "sharpe",
                      tmp_path)

    assert err.value.field == "--metric"
