"""Money safety of ``mmbot live``: confirmation, keys from the environment only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.app import MarketRules
from bot.errors import SafetyError
from bot.live import ccxt_id, check_safety, limits_summary
from bot.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config" / "live-example.toml"


def live(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("MMBOT_")}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "bot.cli", "live", "--venue", "binance",
                           "--symbol", "BTCUSDT", "--config", str(CONFIG), *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, env=full,
                          check=False)


def test_live_refuses_to_start_without_confirm_live() -> None:
    proc = live(env={"MMBOT_API_KEY": "k", "MMBOT_API_SECRET": "s"})
    assert proc.returncode == 2
    assert "--confirm-live" in proc.stderr


def test_live_refuses_without_keys_in_the_environment() -> None:
    proc = live("--confirm-live")
    assert proc.returncode == 2
    assert "MMBOT_API_KEY" in proc.stderr


def test_keys_in_a_config_file_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(CONFIG.read_text() + '\napi_secret = "oops"\n')
    proc = subprocess.run([sys.executable, "-m", "bot.cli", "live", "--venue", "binance",
                           "--symbol", "BTCUSDT", "--config", str(config), "--confirm-live"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
                          env={k: v for k, v in os.environ.items()
                               if not k.startswith("MMBOT_")})
    assert proc.returncode == 2
    assert "api_secret" in proc.stderr
    assert "oops" not in proc.stderr + proc.stdout


def test_dry_run_needs_no_confirmation_and_no_keys() -> None:
    settings = load_settings(CONFIG, environ={})
    check_safety(settings, confirm_live=False, dry_run=True)
    with pytest.raises(SafetyError):
        check_safety(settings, confirm_live=False, dry_run=False)


def test_startup_summary_states_the_limits() -> None:
    settings = load_settings(CONFIG, environ={})
    text = limits_summary(settings, MarketRules(0.01, 0.00001), dry_run=False)
    for needle in ("LIVE", "inventory cap 0.001", "loss limit 10.0", "max order size 0.0005",
                   "tick 0.01"):
        assert needle in text


def test_venue_names_map_to_ccxt_ids() -> None:
    assert ccxt_id("binance") == "binance"
    assert ccxt_id("binance-usdm") == "binanceusdm"
    assert ccxt_id("ccxt:kucoin") == "kucoin"


def test_several_markets_must_share_one_venue(tmp_path: Path) -> None:
    other = tmp_path / "okx.toml"
    other.write_text(CONFIG.read_text().replace('venue = "binance"', 'venue = "okx"')
                     .replace('symbol = "BTCUSDT"', 'symbol = "ETH-USDT"'))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMBOT_")}
    env.update({"MMBOT_API_KEY": "k", "MMBOT_API_SECRET": "s"})
    proc = subprocess.run([sys.executable, "-m", "bot.cli", "live", "--config", str(CONFIG),
                           "--config", str(other), "--confirm-live"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, env=env,
                          check=False)
    assert proc.returncode == 2
    assert "market.venue" in proc.stderr


def test_one_symbol_flag_cannot_name_several_markets(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "bot.cli", "live", "--config", str(CONFIG),
                           "--config", str(CONFIG), "--symbol", "BTCUSDT", "--confirm-live"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={k: v for k, v in os.environ.items()
                               if not k.startswith("MMBOT_")}, check=False)
    assert proc.returncode == 2
