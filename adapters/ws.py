"""The I/O shell of every native venue feed: one websocket, one reconnect policy.

``WebSocketFeed`` connects, subscribes, hands every raw frame to the venue's pure parser and
yields the resulting events. It is written once for all venues:

* reconnect with exponential backoff and jitter, reset once a connection has delivered data;
* a silence watchdog: a connection that sends nothing for ``silence_s`` is dropped and
  reopened (a half-open TCP connection otherwise looks alive forever);
* resync: when the parser asks for a REST snapshot (Binance) it is fetched while frames keep
  flowing into the parser's buffer (a failed fetch is retried with the reconnect backoff, not
  on the next frame: a REST endpoint hammered while it fails starts banning the IP); when it
  asks to resubscribe the connection is reopened, which makes the venue send a fresh snapshot;
* heartbeats the venue requires (``parser.heartbeat_frame()`` every ``heartbeat_interval_s``);
* an optional ``tap`` sees every raw frame with its receive time (the recorder).

Errors: network failures, timeouts, closed connections and HTTP errors on the handshake are
retryable (``is_retryable``); everything else propagates and stops the feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, InvalidURI, WebSocketException

from adapters.feed import FeedParser, Resync
from bot.events import BookInvalid, MarketEvent

Tap = Callable[[int, str, str, str], None]
"""Called with (ts_local_ns, kind, conn, data) for every frame: kind ws | rest | connect."""


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """Backoff between connection attempts and the silence watchdog.

    Delay n (from 0) is ``min(max_s, initial_s * factor**n)`` scaled by a random factor in
    ``[1 - jitter, 1 + jitter]``; it returns to ``initial_s`` after a successful connection,
    one that kept delivering data for ``healthy_s``. Failed REST snapshot fetches back off
    the same way. ``close_timeout_s`` bounds the closing handshake (on shutdown or
    resubscribe) with a venue that no longer answers.
    """

    initial_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2
    silence_s: float = 30.0
    open_timeout_s: float = 10.0
    snapshot_timeout_s: float = 10.0
    close_timeout_s: float = 2.0
    healthy_s: float = 10.0
    max_attempts: int | None = None

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Return the wait before reconnect attempt ``attempt`` (0-based)."""
        try:
            base = min(self.max_s, self.initial_s * self.factor**attempt)
        except OverflowError:
            # factor**attempt leaves the float range after ~1000 attempts (a venue down for
            # hours at the cap): long past max_s, and the feed must keep retrying, not die.
            base = self.max_s
        return base * (1.0 + self.jitter * (2.0 * rng.random() - 1.0))


def is_retryable(exc: BaseException) -> bool:
    """Return True for failures a reconnect can cure: network, timeout, closed, bad handshake."""
    if isinstance(exc, InvalidURI):
        return False
    return isinstance(
        exc, OSError | TimeoutError | WebSocketException | InvalidHandshake | ResyncNeeded
    )


class ResyncNeeded(Exception):
    """The parser lost sync and the venue resends a snapshot only on a fresh subscription."""


class FeedStopped(Exception):
    """The feed gave up after ``max_attempts`` consecutive failed connections."""


def http_get(url: str, timeout_s: float) -> str:
    """GET ``url`` and return the body as text (raises on HTTP errors and timeouts)."""
    request = urllib.request.Request(url, headers={"User-Agent": "mmbot"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        body: bytes = response.read()
    return body.decode("utf-8")


class WebSocketFeed:
    """Stream one venue's market data for one symbol as events, surviving faults."""

    def __init__(
        self,
        parser: FeedParser,
        policy: ReconnectPolicy | None = None,
        *,
        tap: Tap | None = None,
        log: Any = None,
        seed: int | None = None,
        fetch: Callable[[str, float], str] = http_get,
    ) -> None:
        self.parser = parser
        self.policy = policy or ReconnectPolicy()
        self.tap = tap
        self.log = log
        self.fetch = fetch
        self.connects = 0
        self.disconnects = 0
        self.silences = 0
        self.snapshot_failures = 0
        self._rng = random.Random(seed)
        self._conn = ""

    async def events(self) -> AsyncIterator[MarketEvent]:
        """Yield events forever (until cancelled, or FeedStopped after too many failures)."""
        attempt = 0
        while True:
            first_event_at: float | None = None
            try:
                async for event in self._one_connection():
                    if first_event_at is None:
                        first_event_at = time.monotonic()
                    yield event
            except Exception as exc:
                if not is_retryable(exc):
                    raise
                self.disconnects += 1
                if self.log is not None:
                    self.log.warning("feed_disconnected", error=type(exc).__name__,
                                     detail=str(exc)[:200], attempt=attempt)
            now = time.time_ns()
            # Whatever happened, the book is no longer known to be current.
            yield BookInvalid(now, now, self.parser.symbol, "feed reconnecting")
            # Success resets the backoff: a connection that kept delivering for healthy_s. One
            # that only delivered a snapshot before failing again (a checksum that never
            # matches) must not reconnect at the minimum delay forever.
            healthy = (first_event_at is not None
                       and time.monotonic() - first_event_at >= self.policy.healthy_s)
            attempt = 0 if healthy else attempt + 1
            limit = self.policy.max_attempts
            if limit is not None and attempt >= limit:
                raise FeedStopped(f"{self.parser.venue}: {attempt} connection attempts failed")
            await asyncio.sleep(self.policy.delay(attempt, self._rng))

    async def _one_connection(self) -> AsyncIterator[MarketEvent]:
        parser = self.parser
        url = parser.ws_url()
        parser.reset()
        async with connect(url, open_timeout=self.policy.open_timeout_s, max_size=None,
                           ping_interval=20, ping_timeout=20,
                           close_timeout=self.policy.close_timeout_s) as ws:
            self.connects += 1
            self._conn = f"ws.{self.connects}"
            if self.tap is not None:
                self.tap(time.time_ns(), "connect", self._conn, url)
            if self.log is not None:
                self.log.info("feed_connected", url=url)
            for frame in parser.subscribe_frames():
                await ws.send(frame)
            heartbeat = asyncio.create_task(self._heartbeat(ws), name=f"heartbeat:{url}")
            snapshot: asyncio.Task[str] | None = None
            snapshot_failures = 0  # in a row, on this connection: the next fetch backs off
            recv: asyncio.Future[Any] | None = None
            try:
                while True:
                    if recv is None:
                        recv = asyncio.ensure_future(ws.recv())
                    waiting: set[asyncio.Future[Any]] = {recv}
                    if snapshot is not None:
                        waiting.add(snapshot)
                    done, _ = await asyncio.wait(waiting, timeout=self.policy.silence_s,
                                                 return_when=asyncio.FIRST_COMPLETED)
                    if not done:
                        self.silences += 1
                        # The peer is presumed gone (half-open TCP): a closing handshake would
                        # only wait for close_timeout_s before the reconnect. Drop it now.
                        ws.transport.abort()
                        raise TimeoutError(f"no data for {self.policy.silence_s} s")
                    if snapshot is not None and snapshot in done:
                        events = self._apply_snapshot(snapshot)
                        snapshot = None
                        if events is None:
                            snapshot_failures += 1
                        else:
                            snapshot_failures = 0
                            for event in events:
                                yield event
                    if recv not in done:
                        continue
                    raw = recv.result()
                    recv = None
                    text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
                    ts = time.time_ns()
                    if self.tap is not None:
                        self.tap(ts, "ws", self._conn, text)
                    for event in parser.on_message(text, ts):
                        yield event
                    resync = parser.resync
                    if resync is Resync.RESUBSCRIBE:
                        raise ResyncNeeded(f"{parser.venue}: parser asked to resubscribe")
                    if resync is Resync.REST_SNAPSHOT and snapshot is None:
                        snapshot_url = parser.snapshot_url()
                        if snapshot_url is not None:
                            wait_s = (self.policy.delay(snapshot_failures - 1, self._rng)
                                      if snapshot_failures else 0.0)
                            snapshot = asyncio.create_task(
                                self._fetch_snapshot(snapshot_url, wait_s),
                                name=f"snapshot:{snapshot_url}")
            finally:
                heartbeat.cancel()
                for pending in (snapshot, recv):
                    if pending is not None:
                        pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await heartbeat

    async def _fetch_snapshot(self, url: str, wait_s: float) -> str:
        """Fetch a REST snapshot in a worker thread after waiting ``wait_s`` (the backoff)."""
        if wait_s > 0.0:
            await asyncio.sleep(wait_s)
        return await asyncio.to_thread(self.fetch, url, self.policy.snapshot_timeout_s)

    def _apply_snapshot(self, task: asyncio.Task[str]) -> list[MarketEvent] | None:
        """Hand a fetched snapshot to the parser; return its events, or None if it failed."""
        try:
            body = task.result()
        except Exception as exc:
            # The parser still wants a snapshot: the next frame starts another fetch, which
            # first waits out the backoff.
            self.snapshot_failures += 1
            if self.log is not None:
                self.log.warning("snapshot_failed", error=type(exc).__name__,
                                 detail=str(exc)[:200])
            return None
        ts = time.time_ns()
        if self.tap is not None:
            self.tap(ts, "rest", self.parser.snapshot_url() or "", body)
        events = self.parser.on_snapshot(body, ts)
        if self.log is not None:
            self.log.info("feed_resynced", events=len(events))
        return events

    async def _heartbeat(self, ws: Any) -> None:
        interval = self.parser.heartbeat_interval_s
        if not interval:
            return
        while True:
            await asyncio.sleep(interval)
            frame = self.parser.heartbeat_frame()
            if frame is not None:
                await ws.send(frame)
