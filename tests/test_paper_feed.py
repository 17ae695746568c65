"""Paper trading end to end on a live-like feed: a fake Binance on loopback, the real shell."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest
from fakes.venues import FakeBinance, load_binance_usdm

import bot.paper
from adapters.binance import BinanceParser
from adapters.venues import TOUCH_LEVELS
from bot.engine import Status
from bot.events import Side
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
        def parser(venue_name: str, symbol: str, touch_first: bool = False,
                   **_: Any) -> BinanceParser:
            assert (venue_name, symbol) == ("binance-usdm", "BTCUSDT")
            assert touch_first  # the engine consumes the feed: large diffs come split
            return BinanceParser(symbol, "usdm", depth_speed_ms=0, ws_base=venue.ws_base,
                                 rest_base=venue.rest_base, touch_levels=TOUCH_LEVELS)

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


async def test_recording_a_live_feed_replays_to_the_same_book(
    shared_data: Path, tmp_path: Path
) -> None:
    from adapters.recording import Recorder, read_info
    from adapters.ws import ReconnectPolicy, WebSocketFeed
    from bot.book import OrderBook
    from bot.events import BookDelta, BookInvalid, BookSnapshot
    from bot.replay import resolve_source, run_replay

    capture = load_binance_usdm(shared_data / "hftbacktest" / "usdm" / "btcusdt_20240808.gz",
                                1500)
    out = tmp_path / "rec.jsonl.gz"
    live_book = OrderBook("BTCUSDT")
    async with asyncio.timeout(30), FakeBinance(capture) as venue:
        parser = BinanceParser("BTCUSDT", "usdm", depth_speed_ms=0, ws_base=venue.ws_base,
                               rest_base=venue.rest_base)
        recorder = Recorder(out, {"venue": "binance-usdm", "symbol": "BTCUSDT",
                                  "streams": [], "ws_url": parser.ws_url()})
        feed = WebSocketFeed(parser, ReconnectPolicy(silence_s=1.0), tap=recorder.write)

        async def consume() -> None:
            async for event in feed.events():
                if isinstance(event, BookSnapshot | BookDelta):
                    live_book.apply(event)
                elif isinstance(event, BookInvalid):
                    live_book.invalidate(event.reason)

        task = asyncio.create_task(consume())
        await venue.done.wait()
        await asyncio.sleep(0.2)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        recorder.close()

    assert read_info(out).format == "mmbot"
    result = run_replay(resolve_source([out], None, None), load_settings(None, {}, environ={}),
                        None)
    assert live_book.valid and result.engine.book.valid
    assert result.engine.book.depth(Side.BUY, 50) == live_book.depth(Side.BUY, 50)
    assert result.engine.book.depth(Side.SELL, 50) == live_book.depth(Side.SELL, 50)


async def test_paper_without_market_data_stops_at_its_duration_with_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_record import REFUSED, usdm_parser_at

    from bot.errors import DataError

    settings = load_settings(None, {"market": {"venue": "binance-usdm", "symbol": "BTCUSDT"}},
                             environ={})
    # Every connection is refused, and the feed retries.
    monkeypatch.setattr(bot.paper, "make_parser",
                        usdm_parser_at(*REFUSED, touch_levels=TOUCH_LEVELS))
    journal = Journal(tmp_path / "journal.sqlite")
    session = PaperSession(settings, journal, get_logger())
    loop = asyncio.get_running_loop()
    started = loop.time()
    # It used to wait the whole SNAPSHOT_WAIT_S (60 s) for a first snapshot.
    async with asyncio.timeout(20):
        with pytest.raises(DataError, match=r"no book snapshot from binance-usdm BTCUSDT "
                                            r"within 1\.5 s"):
            await session.run(duration_s=1.5)
    journal.close()
    assert loop.time() - started < 10
    assert session.engine is None
