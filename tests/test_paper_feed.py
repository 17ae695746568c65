"""Paper trading end to end on a live-like feed: a fake Binance on loopback, the real shell."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from fakes.venues import FakeBinance, load_binance_usdm

import bot.paper
from adapters.binance import BinanceParser
from bot.engine import Status
from bot.journal import Journal, read_table
from bot.logs import get_logger
from bot.paper import PaperSession
from bot.settings import load_settings


async def test_paper_on_a_native_feed_infers_the_tick_quotes_and_cancels_everything_at_the_end(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    capture = load_binance_usdm(shared_data / "hftbacktest" / "usdm" / "btcusdt_20240808.gz",
                                3000)
    settings = load_settings(None, {
        "market": {"venue": "binance-usdm", "symbol": "BTCUSDT"},
        "strategy": {"kind": "fixed_spread", "half_spread_ticks": 3.0,
                     "ladder": {"order_qty": 0.01}},
        "risk": {"max_inventory": 0.05},
        "run": {"status_interval_s": 0.2},
    }, environ={})
    statuses: list[Status] = []
    journal = Journal(tmp_path / "journal.sqlite")

    async with asyncio.timeout(30), FakeBinance(capture, pace_s=0.002) as venue:
        def parser(venue_name: str, symbol: str, **_: Any) -> BinanceParser:
            assert (venue_name, symbol) == ("binance-usdm", "BTCUSDT")
            return BinanceParser(symbol, "usdm", depth_speed_ms=0, ws_base=venue.ws_base,
                                 rest_base=venue.rest_base)

        monkeypatch.setattr(bot.paper, "make_parser", parser)
        session = PaperSession(settings, journal, get_logger(), on_status=statuses.append)
        await session.run(duration_s=2.0)
    journal.close()

    engine = session.engine
    assert engine is not None
    assert engine.tick_size == pytest.approx(0.1)
    assert engine.stats.book_updates > 50
    assert engine.stats.orders_sent > 0
    assert not engine.orders.orders, "every order is cancelled on the way out"
    assert len(statuses) >= 5
    assert any(s.book_valid and s.bid < s.mid < s.ask for s in statuses)
    places = [r for r in read_table(journal.path, "orders") if r[2] == "place"]
    assert len(places) == engine.stats.orders_sent
