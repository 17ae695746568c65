"""``mmbot record``: write a venue's raw frames in our recording format.

The recorder taps the same websocket shell and parser that paper and live trading use, so the
frames written are exactly those the bot would have seen, REST snapshots included, each with
its local receive time. Replay feeds them back through the same parser.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Any

from adapters.recording import Recorder
from adapters.venues import make_parser
from adapters.ws import WebSocketFeed
from bot.errors import ConfigError, VenueError
from bot.logs import configure_logging, get_logger

RECORDER_VERSION = "mmbot-recorder 1"


def record_command(venue: str, symbol: str, out: Path, duration_s: float | None,
                   rotate_mb: float = 512.0, rotate_s: float = 3600.0) -> dict[str, Any]:
    """Record ``venue``/``symbol`` into ``out`` until ``duration_s`` elapses or Ctrl-C."""
    if venue == "sim" or venue.startswith("ccxt:"):
        raise ConfigError("--venue", "record speaks the native venue protocols only "
                                     "(raw frames); ccxt and sim have none")
    if not out.name.endswith(".jsonl.gz"):
        raise ConfigError("--out", "recordings are gzip JSON lines: name the file *.jsonl.gz")
    configure_logging("warning")
    log = get_logger(venue=venue, symbol=symbol, mode="record")
    try:
        parser = make_parser(venue, symbol)
    except ValueError as exc:  # a symbol the venue's parser refuses
        raise ConfigError("--symbol", str(exc)) from exc
    recorder = Recorder(out, {"venue": venue, "symbol": symbol, "ws_url": parser.ws_url(),
                              "streams": parser.subscribe_frames(),
                              "recorder": RECORDER_VERSION},
                        rotate_bytes=int(rotate_mb * (1 << 20)), rotate_s=rotate_s)
    feed = WebSocketFeed(parser, tap=recorder.write, log=log)
    events = 0

    async def main() -> None:
        nonlocal events
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        if task is not None:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, task.cancel)

        async def consume() -> None:
            nonlocal events
            async for _ in feed.events():
                events += 1

        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(consume(), duration_s)

    try:
        asyncio.run(main())
    finally:
        recorder.close()
    stats = parser.stats
    summary = {"venue": venue, "symbol": symbol, "files": [str(p) for p in recorder.parts],
               "frames": recorder.frames, "events": events, "connects": feed.connects,
               "disconnects": feed.disconnects, "sequence_gaps": stats.gaps,
               "checksum_errors": stats.checksum_errors, "malformed": stats.malformed}
    sys.stderr.write(f"recorded {recorder.frames} frames into {len(recorder.parts)} file(s)\n")
    if not recorder.frames:
        # No file was written: a run that recorded nothing has failed (exit 1), it did not
        # record an empty market.
        raise VenueError(f"recorded nothing: no frame from {venue} {symbol} "
                         f"({feed.disconnects} failed connection attempt(s), logged above)")
    return summary
