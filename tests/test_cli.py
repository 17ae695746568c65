"""The command line as a user runs it: JSON contract, exit codes, run directory."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MMBOT_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=full_env, check=False)


PAPER_TABLE_1 = {
    "inventory": {"profit_mean": 62.94, "profit_std": 5.89, "final_q_std": 2.80},
    "symmetric": {"profit_mean": 67.21, "profit_std": 13.43, "final_q_std": 8.66},
}


def test_simulate_json_reproduces_table_1_of_the_paper() -> None:
    proc = run_cli("simulate", "--gamma", "0.1", "--paths", "1000", "--seed", "1", "--json")

    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, "--json prints exactly one JSON object"
    result = json.loads(lines[0])
    assert result["gamma"] == 0.1 and result["paths"] == 1000
    for name, paper in PAPER_TABLE_1.items():
        row = result[name]
        assert set(row) >= {"spread", "profit_mean", "profit_std", "final_q_mean", "final_q_std"}
        assert row["profit_mean"] == pytest.approx(paper["profit_mean"], rel=0.08)
        assert row["profit_std"] == pytest.approx(paper["profit_std"], rel=0.20)
        assert row["final_q_std"] == pytest.approx(paper["final_q_std"], rel=0.20)
        assert row["spread_end"] == pytest.approx(1.29, abs=0.01)
    inv, sym = result["inventory"], result["symmetric"]
    assert inv["profit_std"] < 0.7 * sym["profit_std"]
    assert inv["final_q_std"] < 0.5 * sym["final_q_std"]
    assert inv["profit_mean"] < sym["profit_mean"]


def test_simulate_strategies_converge_as_gamma_goes_to_zero() -> None:
    small = json.loads(run_cli("simulate", "--gamma", "0.001", "--paths", "200", "--seed", "3",
                               "--json").stdout)
    large = json.loads(run_cli("simulate", "--gamma", "0.5", "--paths", "200", "--seed", "3",
                               "--json").stdout)

    def gap(result: dict[str, dict[str, float]]) -> float:
        return result["symmetric"]["profit_std"] - result["inventory"]["profit_std"]

    assert abs(gap(small)) < 0.25 * gap(large)
    assert small["inventory"]["profit_mean"] == pytest.approx(
        small["symmetric"]["profit_mean"], rel=0.03)


def test_simulate_is_reproducible_and_independent_of_worker_count() -> None:
    one = run_cli("simulate", "--paths", "30", "--seed", "5", "--json", "--workers", "1")
    two = run_cli("simulate", "--paths", "30", "--seed", "5", "--json", "--workers", "2")
    assert json.loads(one.stdout) == json.loads(two.stdout)


def test_config_with_unknown_key_exits_2_and_names_the_field(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[risk]\nmax_inventory = 3\nmax_lossx = 10\n")

    proc = run_cli("paper", "--venue", "sim", "--config", str(config), "--duration", "1")

    assert proc.returncode == 2
    assert "risk.max_lossx" in proc.stderr
    assert proc.stdout == ""


def test_config_with_wrong_value_exits_2_and_names_the_field(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[strategy]\ngamma = "lots"\n')

    proc = run_cli("paper", "--venue", "sim", "--config", str(config), "--duration", "1")

    assert proc.returncode == 2
    assert "strategy.gamma" in proc.stderr


def test_unknown_environment_setting_exits_2(tmp_path: Path) -> None:
    proc = run_cli("paper", "--venue", "sim", "--duration", "1",
                   env={"MMBOT_RISK__MAX_INVENTRY": "3"})
    assert proc.returncode == 2
    assert "MAX_INVENTRY" in proc.stderr.upper()


def test_bad_usage_exits_2() -> None:
    assert run_cli("simulate", "--paths", "-3").returncode == 2
    assert run_cli("frobnicate").returncode == 2


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    proc = run_cli("paper", "--venue", "sim", "--config", str(tmp_path / "nope.toml"))
    assert proc.returncode == 2
    assert "nope.toml" in proc.stderr


@pytest.mark.parametrize(("venue", "symbol", "field"), [
    ("frobex", "BTC/USD", "market.venue"),
    ("ccxt:nosuch", "BTC/USDT", "market.venue"),
    ("binance", "???", "market.symbol"),  # the parser refuses it
])
def test_a_market_paper_cannot_open_exits_2_with_a_reason_and_writes_nothing(
    tmp_path: Path, venue: str, symbol: str, field: str
) -> None:
    out = tmp_path / "runs"
    proc = run_cli("paper", "--venue", venue, "--symbol", symbol, "--duration", "1",
                   "--out", str(out))
    assert proc.returncode == 2
    assert field in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()  # no run directory for a run that never started


def test_record_with_a_symbol_the_venue_refuses_exits_2_and_writes_nothing(
    tmp_path: Path,
) -> None:
    out = tmp_path / "rec.jsonl.gz"
    proc = run_cli("record", "--venue", "binance", "--symbol", "???", "--out", str(out),
                   "--duration", "1")
    assert proc.returncode == 2
    assert "--symbol" in proc.stderr and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("verb", ["paper", "replay"])
def test_a_bad_warmup_recording_fails_before_anything_is_written(
    tmp_path: Path, verb: str
) -> None:
    out = tmp_path / "runs"
    garbage = tmp_path / "garbage.gz"
    garbage.write_bytes(b"not gzip")
    market = ["--venue", "sim", "--duration", "1"] if verb == "paper" else [
        str(ROOT.parent / "shared" / "data" / "hftbacktest" / "usdm" / "btcusdt_20240808.gz")]
    for warmup, code, says in ((tmp_path / "missing.gz", 2, "no such file"),
                               (garbage, 1, "cannot read")):
        proc = run_cli(verb, *market, "--warmup", str(warmup), "--json", "--out", str(out))
        assert proc.returncode == code, proc.stderr
        assert says in proc.stderr and "Traceback" not in proc.stderr
        assert not out.exists()


@pytest.mark.parametrize(("section", "key", "value"), [
    ("sim_market", "s0", "inf"),  # crashed the simulated market with an OverflowError
    ("sim_market", "sigma", "nan"),
    ("strategy", "gamma", "inf"),
    ("sim_venue", "maker_fee_bps", "nan"),  # unconstrained: nan passed
])
def test_paper_refuses_a_number_that_is_not_finite(
    tmp_path: Path, section: str, key: str, value: str
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f"[{section}]\n{key} = {value}\n")
    out = tmp_path / "runs"
    proc = run_cli("paper", "--venue", "sim", "--config", str(config), "--duration", "1",
                   "--json", "--out", str(out))
    assert proc.returncode == 2, proc.stderr
    assert f"{section}.{key}" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


def test_paper_sim_prints_status_lines_and_writes_a_run_directory(tmp_path: Path) -> None:
    proc = run_cli("paper", "--venue", "sim", "--config", "config/paper-sim.toml",
                   "--duration", "4", "--out", str(tmp_path))

    assert proc.returncode == 0, proc.stderr
    status = [line for line in proc.stdout.splitlines() if " mid " in line]
    assert len(status) >= 3
    for word in (" mid ", " r ", " bid ", " ask ", " spr ", " q ", " pnl ", " sigma "):
        assert word in status[-1]
    assert any(state in status[-1] for state in ("ACTIVE", "REDUCING", "HALTED"))
    runs = list(tmp_path.iterdir())
    assert len(runs) == 1
    run = runs[0]
    assert f"run directory: {run}" in proc.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["events"] > 10
    assert summary["orders_sent"] > 0
    assert summary["open_orders_at_end"] == 0
    config = json.loads((run / "config.json").read_text())
    assert config["market"]["venue"] == "sim"
    with sqlite3.connect(run / "journal.sqlite") as db:
        places = db.execute("SELECT COUNT(*) FROM orders WHERE kind = 'place'").fetchone()[0]
        marks = db.execute("SELECT COUNT(*) FROM marks").fetchone()[0]
    assert places == summary["orders_sent"]
    assert marks >= 3
    assert (run / "log.jsonl").stat().st_size > 0


def test_paper_json_prints_one_object(tmp_path: Path) -> None:
    proc = run_cli("paper", "--venue", "sim", "--duration", "2", "--json", "--out",
                   str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["mode"] == "paper"
    assert summary["fill_model"] == "queue"


def test_main_returns_exit_code_in_process(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[nope]\n")
    assert main(["paper", "--config", str(config)]) == 2
