"""The HTML report: self-contained, every figure a real PNG, every panel there, no NaN shown."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from test_metrics import RunBuilder

from bot.app import RunDir
from bot.events import Side
from bot.replay import replay_summary, resolve_source, run_replay
from bot.report import FIGURES, downsample, report_command, stride, write_report
from bot.settings import load_settings, snapshot

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BASE = ("overview.png", "attribution.png", "markouts.png", "inventory_hist.png")
CALIBRATION: dict[str, Any] = {
    "bid": {"A": 20.0, "k": 1.0, "r2": 0.97, "depths": [0.05, 0.15, 0.25, 0.35],
            "rates": [19.0, 17.5, 15.0, 14.0]},
    "ask": {"A": 18.0, "k": 1.2, "r2": None, "depths": [0.05, 0.15, 0.25, 0.35],
            "rates": [17.0, 0.0, 13.0, 11.5]},
    "A": 19.0, "k": 1.1, "units": {"price": "quote currency"}, "symbol": "BTCUSDT",
}


def check_report(page: Path, figures: tuple[str, ...]) -> str:
    """Assert the report is complete and return its HTML."""
    assert page.is_file()
    text = page.read_text()
    sources = re.findall(r'<img src="([^"]*)"', text)
    assert len(sources) == len(figures)
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    for name in figures:
        png = page.parent / name
        assert png.is_file() and png.read_bytes().startswith(PNG_MAGIC)
        for title in FIGURES[name]:
            assert title in text, title
    table = re.search(r'<table id="metrics">.*?</table>', text, re.S)
    assert table is not None
    assert not re.search(r"\b(nan|inf)\b", table.group(0), re.I)
    metrics = json.loads((page.parent / "metrics.json").read_text(),
                         parse_constant=lambda c: pytest.fail(f"{c} in metrics.json"))
    assert metrics["strategy"]["fills"] >= 0
    return text


def replay_into(path: Path, capture: Path, overrides: dict[str, Any]) -> None:
    settings = load_settings(ROOT / "config" / "replay-btcusdt.toml", overrides, environ={})
    path.mkdir(parents=True)
    run = RunDir(path)
    run.write_json("config.json", snapshot(settings))
    source = resolve_source([capture], None, None)
    replay_summary(run_replay(source, settings, run), source, settings, run)


def test_report_of_a_real_replay_against_the_fixed_spread_benchmark(
    shared_data: Path, tmp_path: Path,
) -> None:
    capture = shared_data / "hftbacktest" / "usdm" / "btcusdt_20240808.gz"
    run_dir = tmp_path / "run"
    replay_into(run_dir, capture, {})
    replay_into(run_dir / "benchmark", capture,
                {"strategy": {"kind": "fixed_spread", "half_spread_ticks": 10.0}})

    page = write_report(run_dir, run_dir / "benchmark", CALIBRATION)

    text = check_report(page, (*BASE, "comparison.png", "calibration.png"))
    assert "avellaneda_stoikov" in text and "fixed_spread" in text
    assert "<th>benchmark</th>" in text
    assert "fill model <b>queue</b>" in text and "entry latency 10 ms" in text
    metrics = json.loads((page.parent / "metrics.json").read_text())
    assert metrics["strategy"]["fills"] > 0 and metrics["benchmark"]["fills"] > 0
    assert metrics["strategy"]["fill_model"] == "queue"


def tiny_run(path: Path) -> RunBuilder:
    run = RunBuilder(path, max_inventory=2.0, summary={"venue": "sim", "symbol": "SIM-USD"})
    for i in range(30):
        mid = 100.0 + 0.1 * (i % 7)
        if i == 10:
            run.fill(10.5, "b1", Side.BUY, mid - 0.2, 1.0, mid=mid)
        if i == 20:
            run.fill(20.5, "a1", Side.SELL, mid + 0.2, 1.0, mid=mid, fee=0.01)
        run.mark(i, mid, bid=mid - 0.2, ask=mid + 0.2)
    run.journal.close()
    return run


def test_report_of_a_tiny_hand_made_run(tmp_path: Path) -> None:
    run = tiny_run(tmp_path / "run")

    page = write_report(run.path)

    text = check_report(page, BASE)
    assert "No benchmark run given" in text


def test_report_command_compares_against_a_benchmark_folder_inside_the_run(
    tmp_path: Path,
) -> None:
    run = tiny_run(tmp_path / "run")
    bench = RunBuilder(run.path / "benchmark", max_inventory=2.0,
                       summary={"strategy": "fixed_spread", "venue": "sim",
                                "symbol": "SIM-USD"})
    bench.marks(range(30), [100.0] * 30)
    bench.journal.close()

    page = report_command(run.path)

    text = check_report(page, (*BASE, "comparison.png"))
    assert page == run.path / "report" / "report.html"
    assert "<th>benchmark</th>" in text


def test_report_of_a_run_that_never_filled_shows_dashes_not_nan(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path / "run")
    run.marks(range(5), [100.0] * 5)
    run.journal.close()

    text = check_report(write_report(run.path), BASE)

    assert "–" in text


def test_calibration_without_anything_to_plot_is_noted_not_drawn(tmp_path: Path) -> None:
    run = tiny_run(tmp_path / "run")

    text = check_report(write_report(run.path, calibration={"bid": {"A": None}}), BASE)

    assert "nothing to plot" in text or "holds no depths" in text


def test_calibration_accepts_fit_objects(tmp_path: Path) -> None:
    run = tiny_run(tmp_path / "run")
    fit = SimpleNamespace(depths=[0.1, 0.2, 0.3], rates=[5.0, 4.0, 3.0], A=6.0, k=1.7, r2=0.9)

    page = write_report(run.path, calibration={"bid": fit, "ask": fit})

    check_report(page, (*BASE, "calibration.png"))


def test_downsample_keeps_every_part_of_the_series_and_its_extremes() -> None:
    x = np.arange(100_000, dtype=np.float64)
    y = np.sin(x / 5_000.0)
    y[77_777] = 50.0
    y[12_345] = -50.0
    y[30_000:31_000] = np.nan

    xs, ys = downsample(x, y, max_points=4_000)

    assert len(xs) <= 4_000
    assert xs[0] < 100 and xs[-1] > 99_900
    assert np.nanmax(ys) == 50.0 and np.nanmin(ys) == -50.0
    assert np.all(np.diff(xs) >= 0)
    (a,) = stride(x, max_points=1_000)
    assert len(a) <= 1_000 and a[0] == 0.0 and a[-1] > 99_800


def test_report_of_a_folder_that_is_no_run_directory_is_a_config_error(tmp_path: Path) -> None:
    from bot.errors import ConfigError
    from bot.report import report_command

    with pytest.raises(ConfigError, match="RUN_DIR"):
        report_command(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="no journal"):
        report_command(tmp_path)


def test_a_damaged_run_directory_is_a_data_error_naming_the_file(tmp_path: Path) -> None:
    from bot.errors import DataError
    from bot.journal import Journal

    run = tiny_run(tmp_path / "run")
    journal = run.path / "journal.sqlite"
    whole = journal.read_bytes()
    journal.write_bytes(whole[:3000])  # a journal cut short
    with pytest.raises(DataError, match=r"journal.sqlite: cannot read the journal"):
        report_command(run.path)
    journal.write_bytes(b"not a database at all, but long enough to be read as a header" * 4)
    with pytest.raises(DataError, match=r"journal.sqlite: cannot read the journal"):
        report_command(run.path)
    # Reopened to continue it (a restart), it is refused and left as it was.
    with pytest.raises(DataError, match=r"journal.sqlite: cannot open the journal"):
        Journal(journal)
    assert journal.read_bytes().startswith(b"not a database")
    journal.write_bytes(whole)
    (run.path / "summary.json").write_text('{"strategy": ')
    with pytest.raises(DataError, match=r"summary.json: not a JSON snapshot"):
        report_command(run.path)


def test_run_directory_json_is_written_whole_or_not_at_all(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    run = RunDir(tmp_path)
    run.write_json("summary.json", {"pnl": 1.0})
    assert json.loads((tmp_path / "summary.json").read_text()) == {"pnl": 1.0}

    def torn(self: Path, text: str) -> int:  # the process dies mid-write
        with open(self, "w") as fh:
            fh.write(text[:5])
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", torn)
    with pytest.raises(KeyboardInterrupt):
        run.write_json("summary.json", {"pnl": 2.0, "fills": 3})
    monkeypatch.undo()
    assert json.loads((tmp_path / "summary.json").read_text()) == {"pnl": 1.0}
