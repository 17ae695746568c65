"""What every venue feed offers: a pure parser with the venue's sequence rules.

A venue module is a pure parser (this protocol: raw frame in, events out, no I/O) plus a thin
I/O shell (``adapters.ws``) that owns the connection. Live feeds, the recorder and replay all
hand raw frames to the same parser, so a recording replays exactly as it was seen live.

Sequence handling lives in the parser. On a gap or a checksum mismatch it emits a
``BookInvalid`` with the reason, counts it, and sets ``resync`` to say what the shell must do:
fetch a REST snapshot (Binance) or resubscribe to get a fresh snapshot (the others). Until the
book is rebuilt from a snapshot the parser emits no deltas, so the engine keeps quotes pulled.
Malformed frames are counted and skipped (``FeedStats.malformed``); they never raise.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from bot.events import MarketEvent


class Resync(Enum):
    """What the I/O shell must do to get the book back after a gap."""

    NONE = "none"
    REST_SNAPSHOT = "rest_snapshot"
    RESUBSCRIBE = "resubscribe"


@dataclass(slots=True)
class FeedStats:
    """Counters of one parser; ``gaps`` and ``checksum_errors`` each cause one resync."""

    messages: int = 0
    book_events: int = 0
    trades: int = 0
    ignored: int = 0
    malformed: int = 0
    gaps: int = 0
    checksum_errors: int = 0
    resyncs: int = 0
    stale_dropped: int = 0


class FeedParser(Protocol):
    """A venue's pure parser for one symbol.

    ``on_message`` takes one raw websocket frame (text as received) and the local receive time;
    it returns the events in order (possibly none: heartbeats, acks, other symbols, buffered
    diffs). ``on_snapshot`` takes the body of a REST depth snapshot for venues that need one.
    """

    venue: str
    symbol: str
    stats: FeedStats
    heartbeat_interval_s: float | None
    """How often the shell must send ``heartbeat_frame()`` (None: the venue needs none)."""

    @property
    def resync(self) -> Resync:
        """Return what the shell must do now to rebuild the book (NONE when in sync)."""
        ...

    def ws_url(self) -> str:
        """Return the websocket address to connect to."""
        ...

    def subscribe_frames(self) -> list[str]:
        """Return the frames to send right after connecting (empty if the URL subscribes)."""
        ...

    def heartbeat_frame(self) -> str | None:
        """Return the application-level ping the venue requires, or None."""
        ...

    def snapshot_url(self) -> str | None:
        """Return the REST snapshot address, or None when the websocket sends snapshots."""
        ...

    def reset(self) -> None:
        """Forget all sequence state: called on every (re)connect, before the first frame."""
        ...

    def on_message(self, raw: str | bytes, ts_local_ns: int) -> list[MarketEvent]:
        """Parse one websocket frame into events, checking the venue's sequence rules."""
        ...

    def on_snapshot(self, raw: str | bytes, ts_local_ns: int) -> list[MarketEvent]:
        """Apply a REST depth snapshot body; return the snapshot and any buffered deltas."""
        ...
