"""``mmbot record`` end to end: the real verb against a fake Binance on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes.venues import FakeBinance, load_binance_usdm

import bot.record
from adapters.binance import BinanceParser
from adapters.recording import iter_frames, read_info
from bot.errors import VenueError
from bot.record import record_command
from bot.replay import resolve_source, run_replay
from bot.settings import load_settings


@contextlib.contextmanager
def venue_in_thread(make: Callable[[], FakeBinance]) -> Iterator[FakeBinance]:
    """Serve a fake venue from its own event loop (``record_command`` runs its own)."""
    started = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        box["stop"] = asyncio.Event()
        async with make() as venue:
            box["venue"] = venue
            started.set()
            await box["stop"].wait()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(10), "the fake venue did not start"
    try:
        yield box["venue"]
    finally:
        loop.call_soon_threadsafe(box["stop"].set)
        thread.join(10)
        loop.close()


# An address nothing listens on: every connection is refused at once.
REFUSED = ("ws://127.0.0.1:9", "http://127.0.0.1:9")


def usdm_parser_at(ws_base: str, rest_base: str,
                   **options: Any) -> Callable[..., BinanceParser]:
    """A ``make_parser`` stand-in: the BTCUSDT USD-M parser, its websocket and REST at a fake."""
    def make(venue: str, symbol: str, **_: Any) -> BinanceParser:
        assert (venue, symbol) == ("binance-usdm", "BTCUSDT")
        return BinanceParser(symbol, "usdm", depth_speed_ms=0, ws_base=ws_base,
                             rest_base=rest_base, **options)
    return make


def test_record_writes_a_recording_that_replays(shared_data: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    capture = load_binance_usdm(shared_data / "hftbacktest" / "usdm" / "btcusdt_20240808.gz",
                                1500)
    out = tmp_path / "rec.jsonl.gz"
    with venue_in_thread(lambda: FakeBinance(capture, pace_s=0.0005)) as venue:
        monkeypatch.setattr(bot.record, "make_parser",
                            usdm_parser_at(venue.ws_base, venue.rest_base))
        summary = record_command("binance-usdm", "BTCUSDT", out, duration_s=3.0)

    assert summary["files"] == [str(out)]
    assert summary["connects"] == 1 and summary["sequence_gaps"] == 0
    assert summary["frames"] > 1000 and summary["events"] > 300
    info = read_info(out)
    assert (info.format, info.venue, info.symbol) == ("mmbot", "binance-usdm", "BTCUSDT")
    kinds = {frame.kind for frame in iter_frames([out])}
    assert {"ws", "rest"} <= kinds  # the frames and the REST snapshot the sync asked for
    result = run_replay(resolve_source([out], None, None), load_settings(None, {}, environ={}),
                        None)
    assert result.engine.book.valid and result.engine.stats.book_updates > 100


def test_record_that_receives_nothing_fails_with_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bot.record, "make_parser", usdm_parser_at(*REFUSED))
    out = tmp_path / "rec.jsonl.gz"
    with pytest.raises(VenueError, match=r"recorded nothing: no frame from binance-usdm "
                                         r"BTCUSDT \([1-9]\d* failed connection attempt"):
        record_command("binance-usdm", "BTCUSDT", out, duration_s=1.5)
    assert not out.exists()
