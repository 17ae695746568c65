"""Fake venues for fault-injection tests: real loopback servers replaying recorded real frames.

``FakeBinance`` (USD-M futures: combined stream + REST depth snapshot), ``FakeBybit`` (v5
linear: snapshot on subscribe) and ``FakeOkx`` (v5 public ``books``: snapshot on subscribe,
CRC32 checksum on every message) behave like the live venue as far as a market-data client can
tell:

* The market is one stream of recorded frames with a shared cursor. Every connection continues
  where the market is, and frames pass while nobody is connected (``missed_on_reconnect``), so
  a client that reconnects without resyncing ends up with a wrong book.
* The venue keeps its own L2 book, keyed by the wire's price strings, and applies every book
  frame as it leaves the cursor (sent, removed by a fault, or missed while away). Snapshots are
  built from that book (Binance REST, Bybit on subscribe), and a test compares the client's book
  with it.
* Faults are configured per connection attempt (``Fault``, indexed by attempt number, counting
  refused handshakes): a refused handshake, an abrupt TCP drop, a removed book frame (a sequence
  gap), a burst of garbage, silence, half-open silence, a wrong checksum (OKX). Counters say
  what happened.
* Frames go out in batches with a short pause between them, like a live venue's pace, so the
  client stays close behind the stream instead of drowning in a backlog.

Everything runs in the test's event loop (websocket server and REST server alike), so a snapshot
is always consistent with the frames sent so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from http import HTTPStatus
from itertools import zip_longest
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

WireLevel = tuple[str, str]
"""One level as the venue sends it: (price, quantity) strings."""


# --------------------------------------------------------------------------------------------
# Recorded data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BookUpdate:
    """The book content of one frame (or of the initial snapshot), with its ids and times.

    Attributes:
        bids: Levels as on the wire; quantity "0" (any spelling) removes the level.
        asks: Same for asks.
        update_id: Binance ``u`` (``lastUpdateId`` for a snapshot), Bybit ``u``; OKX (the 2022
            frames have no ``seqId``): the message's position, 0 for the snapshot, n for the
            n-th update.
        ts_ms: Binance ``E``, Bybit ``ts``, OKX ``ts``.
        tx_ms: Binance ``T``, Bybit ``cts``, OKX ``ts``.
        seq: Bybit ``seq`` (0 for Binance and OKX).
        checksum: OKX ``checksum`` as recorded (None for the others).
    """

    bids: tuple[WireLevel, ...]
    asks: tuple[WireLevel, ...]
    update_id: int
    ts_ms: int
    tx_ms: int
    seq: int = 0
    checksum: int | None = None


@dataclass(frozen=True, slots=True)
class Frame:
    """One recorded websocket frame, exactly as the venue sent it."""

    channel: str
    """Binance stream name or Bybit topic."""
    text: str
    book: BookUpdate | None = None
    """The parsed book content when this is a depth diff / book delta."""


@dataclass(frozen=True, slots=True)
class Capture:
    """A recorded session: the book at the start and the frames that follow it."""

    symbol: str
    initial: BookUpdate
    frames: tuple[Frame, ...]

    @property
    def book_frames(self) -> int:
        """Return how many frames carry book updates."""
        return sum(1 for frame in self.frames if frame.book is not None)


def _wire_levels(raw: Iterable[Sequence[str]]) -> tuple[WireLevel, ...]:
    return tuple((price, qty) for price, qty in raw)


@cache
def load_binance_usdm(path: Path, max_lines: int = 4000) -> Capture:
    """Load the first ``max_lines`` lines of an hftbacktest Binance USD-M capture.

    Lines are ``<local_ns> <json>``; the bare ``{"lastUpdateId":...}`` line is the REST
    snapshot. The stream the venue serves starts at the snapshot: depth diffs it already covers
    (``u < lastUpdateId``) and trades and tickers recorded before it are left out, the way a
    live stream looks from that point on.

    Raises:
        ValueError: No snapshot, the first diff does not bracket it, or the ``pu`` chain has a
            gap (the recording itself is checked before it is served).
    """
    texts: list[str] = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for number, line in enumerate(fh):
            if number >= max_lines:
                break
            texts.append(line.rstrip("\n").partition(" ")[2])
    snapshot_at = next(
        (i for i, text in enumerate(texts) if text.startswith('{"lastUpdateId"')), None
    )
    if snapshot_at is None:
        raise ValueError(f"{path}: no REST snapshot in the first {max_lines} lines")
    body = json.loads(texts[snapshot_at])
    snapshot_id: int = body["lastUpdateId"]
    initial = BookUpdate(_wire_levels(body["bids"]), _wire_levels(body["asks"]), snapshot_id,
                         body["E"], body["T"])
    frames: list[Frame] = []
    symbol = ""
    prev_u: int | None = None
    for i, text in enumerate(texts):
        if i == snapshot_at:
            continue
        msg = json.loads(text)
        data = msg["data"]
        if data.get("e") == "depthUpdate":
            if data["u"] < snapshot_id:
                continue
            if prev_u is None and not (data["U"] <= snapshot_id or data["pu"] <= snapshot_id):
                raise ValueError(f"{path}: first diff U={data['U']} after snapshot {snapshot_id}")
            if prev_u is not None and data["pu"] != prev_u:
                raise ValueError(f"{path}: recorded gap pu={data['pu']} after u={prev_u}")
            prev_u = data["u"]
            symbol = data["s"]
            book = BookUpdate(_wire_levels(data["b"]), _wire_levels(data["a"]), data["u"],
                              data["E"], data["T"])
            frames.append(Frame(msg["stream"], text, book))
        elif i > snapshot_at:
            frames.append(Frame(msg["stream"], text))
    return Capture(symbol, initial, tuple(frames))


@cache
def load_bybit_linear(path: Path, symbol: str = "BTCUSDT", conn: str = "BYBIT.ws.2") -> Capture:
    """Load one symbol's book and trade frames from a cryptofeed Bybit v5 session.

    Entries are ``{"t":"recv","conn":...,"data":"<frame>"}``; frames of ``orderbook.*.<symbol>``
    and ``publicTrade.<symbol>`` on ``conn`` are kept. The first book frame (the snapshot the
    venue sent on subscribe) becomes the initial book; the deltas after it are served.

    Raises:
        ValueError: No snapshot, or the deltas' ``u`` is not contiguous.
    """
    initial: BookUpdate | None = None
    frames: list[Frame] = []
    prev_u = 0
    trade_topic = f"publicTrade.{symbol}"
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            entry = json.loads(line)
            if entry.get("t") != "recv" or entry.get("conn") != conn or "data" not in entry:
                continue
            text: str = entry["data"]
            msg = json.loads(text)
            topic = msg.get("topic")
            if topic == trade_topic and initial is not None:
                frames.append(Frame(topic, text))
                continue
            if type(topic) is not str or not (
                topic.startswith("orderbook.") and topic.endswith(f".{symbol}")
            ):
                continue
            data = msg["data"]
            book = BookUpdate(_wire_levels(data["b"]), _wire_levels(data["a"]), data["u"],
                              msg["ts"], msg.get("cts", msg["ts"]), data["seq"])
            if msg["type"] == "snapshot":
                if initial is not None:
                    raise ValueError(f"{path}: second snapshot at u={data['u']}")
                initial = book
                prev_u = book.update_id
                continue
            if initial is None:
                continue
            if data["u"] != prev_u + 1:
                raise ValueError(f"{path}: recorded gap u={prev_u} -> {data['u']}")
            prev_u = data["u"]
            frames.append(Frame(topic, text, book))
    if initial is None:
        raise ValueError(f"{path}: no {symbol} book snapshot on {conn}")
    return Capture(symbol, initial, tuple(frames))


# --------------------------------------------------------------------------------------------
# The venue's book
# --------------------------------------------------------------------------------------------


class StringBook:
    """A venue-side L2 book keyed by the wire's price strings (no float maths on the venue)."""

    def __init__(self, bids: Iterable[WireLevel], asks: Iterable[WireLevel]) -> None:
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}
        self.apply(bids, asks)

    def apply(self, bids: Iterable[WireLevel], asks: Iterable[WireLevel]) -> None:
        """Set absolute quantities; a zero quantity removes the level."""
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for price, qty in levels:
                if Decimal(qty) == 0:
                    side.pop(price, None)
                else:
                    side[price] = qty

    def top(self, bids: bool, n: int | None = None) -> list[WireLevel]:
        """Return the best ``n`` levels of one side (all when None), best first, as strings."""
        side = self.bids if bids else self.asks
        prices = sorted(side, key=Decimal, reverse=bids)[:n]
        return [(price, side[price]) for price in prices]

    def levels(self, bids: bool, n: int) -> list[tuple[float, float]]:
        """Return the best ``n`` levels of one side as floats (what a client's book holds)."""
        return [(float(price), float(qty)) for price, qty in self.top(bids, n)]


# --------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fault:
    """What goes wrong on one connection attempt; the defaults make a healthy connection.

    Frame counts are per connection. Book frames are depth diffs (Binance), book deltas
    (Bybit) or book updates (OKX); ``skip_frame_at``, ``garbage_at`` and
    ``corrupt_checksum_at`` count them from 1 (a skipped frame counts).

    Attributes:
        reject_status: Refuse the websocket handshake with this HTTP status (e.g. 503).
        drop_after: Abort the TCP connection (no close frame) after this many frames.
        skip_frame_at: Do not send this book frame (the venue's book still moves): a gap.
        garbage_at: Send a burst of corrupt frames just before this book frame.
        silent_after: Stop sending after this many frames; keep the connection open.
        half_open: While silent, also stop reading, so the client's close frame is never
            answered (a peer that has gone away without the TCP connection noticing).
        corrupt_checksum_at: Send this book frame with a wrong ``checksum`` (OKX only; the
            levels are the real ones, and the venue's book applies them).
    """

    reject_status: int | None = None
    drop_after: int | None = None
    skip_frame_at: int | None = None
    garbage_at: int | None = None
    silent_after: int | None = None
    half_open: bool = False
    corrupt_checksum_at: int | None = None


HEALTHY = Fault()


# --------------------------------------------------------------------------------------------
# The venue shell shared by both fakes
# --------------------------------------------------------------------------------------------


class _FakeVenue:
    """Websocket server, shared cursor, venue book, faults and counters."""

    miss_tail = 200
    """Frames a reconnect never lets pass unseen (so there is always a tail left to serve)."""

    def __init__(
        self,
        capture: Capture,
        faults: Sequence[Fault],
        *,
        missed_on_reconnect: int,
        batch: int,
        pace_s: float,
    ) -> None:
        self.capture = capture
        self.faults = tuple(faults)
        self.missed_on_reconnect = missed_on_reconnect
        self.batch = batch
        self.pace_s = pace_s
        self.book = StringBook(capture.initial.bids, capture.initial.asks)
        self.last: BookUpdate = capture.initial
        self.done = asyncio.Event()
        """Set once every recorded frame has left the cursor (the client may still lag)."""
        self.errors: list[str] = []
        """Requests the venue could not make sense of (a test fails on any)."""
        self.handshakes = 0
        self.connections = 0
        self.frames_sent = 0
        self.book_frames_sent = 0
        self.frames_missed = 0
        self.book_frames_skipped = 0
        self.garbage_sent = 0
        self.drops = 0
        self.connected_at: list[float] = []
        self.handshake_at: list[float] = []
        self.silent_at: list[float] = []
        self.went_silent = asyncio.Event()
        """Set when a connection goes silent (``Fault.silent_after``)."""
        self._cursor = 0
        self._silent: set[ServerConnection] = set()
        self._superseded = asyncio.Event()
        self._attempt_of: dict[ServerConnection, int] = {}
        self._open: set[ServerConnection] = set()
        self._server: Server | None = None

    # ---------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        self._server = await serve(self._handler, "127.0.0.1", 0,
                                   process_request=self._process_request)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Silent and half-open connections would hold the server's close for its close timeout.
        for ws in list(self._open):
            ws.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    @property
    def port(self) -> int:
        """Return the websocket server's port on 127.0.0.1."""
        assert self._server is not None, "use the venue as an async context manager"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def last_update_id(self) -> int:
        """Return the update id of the venue's current book."""
        return self.last.update_id

    @property
    def remaining(self) -> int:
        """Return how many recorded frames have not left the cursor yet."""
        return len(self.capture.frames) - self._cursor

    def fault(self, attempt: int) -> Fault:
        """Return the fault of connection attempt ``attempt`` (0-based; healthy past the list)."""
        return self.faults[attempt] if attempt < len(self.faults) else HEALTHY

    # ---------------------------------------------------------------- handshake

    def _check_request(self, request: Request) -> str | None:
        """Return why the upgrade request is wrong for this venue, or None."""
        raise NotImplementedError

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        attempt = self.handshakes
        self.handshakes += 1
        self.handshake_at.append(asyncio.get_running_loop().time())
        fault = self.fault(attempt)
        if fault.reject_status is not None:
            return connection.respond(fault.reject_status, "Service Unavailable\n")
        problem = self._check_request(request)
        if problem is not None:
            self.errors.append(problem)
            return connection.respond(HTTPStatus.BAD_REQUEST, problem + "\n")
        self._attempt_of[connection] = attempt
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        attempt = self._attempt_of.pop(ws)
        self.connections += 1
        self.connected_at.append(asyncio.get_running_loop().time())
        # Tell the previous connection (if it still lingers) that it has been replaced.
        self._superseded.set()
        self._superseded = asyncio.Event()
        if self.connections > 1:
            self._miss(self.missed_on_reconnect)
        self._open.add(ws)
        superseded = self._superseded
        try:
            await self._session(ws, superseded, self.fault(attempt))
        except ConnectionClosed:
            pass
        finally:
            self._open.discard(ws)

    async def _session(self, ws: ServerConnection, superseded: asyncio.Event,
                       fault: Fault) -> None:
        """Serve one accepted connection (venue-specific subscription, then ``_stream``)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- the market

    def _take(self) -> Frame:
        """Move the market on by one frame, updating the venue's book."""
        frame = self.capture.frames[self._cursor]
        self._cursor += 1
        if frame.book is not None:
            self.book.apply(frame.book.bids, frame.book.asks)
            self.last = frame.book
        return frame

    def _miss(self, count: int) -> None:
        """Let ``count`` frames pass with nobody connected (keeping a tail to serve)."""
        for _ in range(max(0, min(count, self.remaining - self.miss_tail))):
            self._take()
            self.frames_missed += 1

    def _garbage(self, before: Frame) -> list[str | bytes]:
        """Return the corrupt frames sent just before the book frame ``before``."""
        raise NotImplementedError

    def _book_text(self, frame: Frame, number: int, fault: Fault) -> str:
        """Return the wire text of book frame ``number`` (from 1) of a connection."""
        return frame.text

    async def _stream(self, ws: ServerConnection, superseded: asyncio.Event, fault: Fault,
                      channels: set[str]) -> None:
        """Send frames of ``channels`` from the shared cursor, injecting ``fault``."""
        frames = self.capture.frames
        sent = 0
        book_frames = 0
        # A newer connection supersedes this one: only one client takes from the cursor.
        while not superseded.is_set():
            if fault.drop_after is not None and sent >= fault.drop_after:
                self.drops += 1
                ws.transport.abort()
                return
            if fault.silent_after is not None and sent >= fault.silent_after:
                self.silent_at.append(asyncio.get_running_loop().time())
                self._silent.add(ws)
                self.went_silent.set()
                if fault.half_open:
                    ws.transport.pause_reading()
                await self._linger(ws, superseded)
                ws.transport.abort()
                return
            if self._cursor >= len(frames):
                self.done.set()
                await self._linger(ws, superseded)
                return
            frame = self._take()
            if frame.channel not in channels:
                continue
            if frame.book is not None:
                book_frames += 1
                if book_frames == fault.garbage_at:
                    for junk in self._garbage(frame):
                        await ws.send(junk)
                        self.garbage_sent += 1
                if book_frames == fault.skip_frame_at:
                    self.book_frames_skipped += 1
                    continue
                await ws.send(self._book_text(frame, book_frames, fault))
                self.book_frames_sent += 1
            else:
                await ws.send(frame.text)
            sent += 1
            self.frames_sent += 1
            if sent % self.batch == 0:
                await asyncio.sleep(self.pace_s)

    async def _linger(self, ws: ServerConnection, superseded: asyncio.Event) -> None:
        """Keep a quiet connection until the client closes it or a newer one replaces it."""
        closed = asyncio.create_task(ws.wait_closed(), name="fake-venue-closed")
        replaced = asyncio.create_task(superseded.wait(), name="fake-venue-replaced")
        try:
            await asyncio.wait({closed, replaced}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
            replaced.cancel()


# --------------------------------------------------------------------------------------------
# Binance USD-M
# --------------------------------------------------------------------------------------------

_BINANCE_DEPTH_LIMITS = frozenset({5, 10, 20, 50, 100, 500, 1000})


class FakeBinance(_FakeVenue):
    """Binance USD-M futures: ``/stream?streams=...`` websocket and ``GET /fapi/v1/depth``.

    The REST snapshot is the venue's current book (best 1000 levels a side when asked for
    ``limit=1000``) with ``lastUpdateId`` = the ``u`` of the last diff that left the cursor,
    and ``E``/``T`` of that diff, like a futures snapshot.

    Attributes:
        http_503_on_snapshot: The first n snapshot requests get HTTP 503.
        snapshot_requests: Depth requests received (failed ones included).
        snapshot_request_at: Loop time of each depth request.
        snapshots_served: Depth requests answered with a book.
    """

    def __init__(
        self,
        capture: Capture,
        faults: Sequence[Fault] = (),
        *,
        http_503_on_snapshot: int = 0,
        missed_on_reconnect: int = 40,
        batch: int = 16,
        pace_s: float = 0.001,
    ) -> None:
        super().__init__(capture, faults, missed_on_reconnect=missed_on_reconnect, batch=batch,
                         pace_s=pace_s)
        self.http_503_on_snapshot = http_503_on_snapshot
        self.snapshot_requests = 0
        self.snapshot_request_at: list[float] = []
        self.snapshots_served = 0
        self._http: asyncio.Server | None = None
        lower = capture.symbol.lower()
        self.streams = frozenset(frame.channel for frame in capture.frames)
        self.depth_stream = next(s for s in self.streams if s.startswith(f"{lower}@depth"))
        self._bad_trade = next(
            (frame.text for frame in capture.frames if frame.channel == f"{lower}@trade"), None
        )

    async def __aenter__(self) -> Self:
        self._http = await asyncio.start_server(self._serve_http, "127.0.0.1", 0)
        return await super().__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await super().__aexit__(exc_type, exc, tb)
        if self._http is not None:
            self._http.close()
            await self._http.wait_closed()

    @property
    def ws_base(self) -> str:
        """Return the websocket base address (what ``BinanceParser(ws_base=...)`` takes)."""
        return f"ws://127.0.0.1:{self.port}"

    @property
    def rest_base(self) -> str:
        """Return the REST base address (what ``BinanceParser(rest_base=...)`` takes)."""
        assert self._http is not None, "use the venue as an async context manager"
        port: int = self._http.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    # ---------------------------------------------------------------- websocket

    def _requested_streams(self, path: str) -> list[str]:
        url = urlsplit(path)
        if url.path != "/stream":
            return []
        return [s for s in parse_qs(url.query).get("streams", [""])[0].split("/") if s]

    def _check_request(self, request: Request) -> str | None:
        streams = self._requested_streams(request.path)
        if not streams:
            return f"expected /stream?streams=..., got {request.path}"
        if self.depth_stream not in streams:
            return f"depth stream {self.depth_stream} not requested in {request.path}"
        return None

    async def _session(self, ws: ServerConnection, superseded: asyncio.Event,
                       fault: Fault) -> None:
        assert ws.request is not None
        channels = set(self._requested_streams(ws.request.path)) & self.streams
        await self._stream(ws, superseded, fault, channels)

    def _garbage(self, before: Frame) -> list[str | bytes]:
        """Not JSON, wrong shapes, a truncated frame, binary junk, NaN and negative levels.

        The corrupt depth frames are copies of the next real diff (same ``U``/``u``/``pu``) so
        that only their levels are wrong.
        """
        msg = json.loads(before.text)
        side = "b" if msg["data"]["b"] else "a"
        nan_price = json.loads(before.text)
        nan_price["data"][side][0][0] = "NaN"
        negative_qty = json.loads(before.text)
        negative_qty["data"][side][0][1] = "-1.000"
        junk: list[str | bytes] = [
            "not json {",
            "{}",
            "[]",
            b"\xff\xfe\x00 binary junk",
            before.text[: len(before.text) // 2],
            json.dumps(nan_price, separators=(",", ":")),
            json.dumps(negative_qty, separators=(",", ":")),
        ]
        if self._bad_trade is not None:
            trade = json.loads(self._bad_trade)
            trade["data"]["p"] = "NaN"
            junk.append(json.dumps(trade, separators=(",", ":")))
        return junk

    # ---------------------------------------------------------------- REST

    async def _serve_http(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            status, body = self._rest(method, target)
            payload = body.encode()
            writer.write(
                f"HTTP/1.1 {status.value} {status.phrase}\r\n"
                "Content-Type: application/json;charset=UTF-8\r\n"
                f"Content-Length: {len(payload)}\r\n"
                "Connection: close\r\n\r\n".encode("latin-1") + payload
            )
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _rest(self, method: str, target: str) -> tuple[HTTPStatus, str]:
        """Answer one REST request like Binance (error bodies are Binance's)."""
        url = urlsplit(target)
        if method != "GET" or url.path != "/fapi/v1/depth":
            self.errors.append(f"unexpected REST request {method} {target}")
            return HTTPStatus.NOT_FOUND, '{"code":-5000,"msg":"Path not found"}'
        query = parse_qs(url.query)
        if query.get("symbol") != [self.capture.symbol]:
            self.errors.append(f"snapshot for the wrong symbol: {target}")
            return HTTPStatus.BAD_REQUEST, '{"code":-1121,"msg":"Invalid symbol."}'
        limit = int(query.get("limit", ["500"])[0])
        if limit not in _BINANCE_DEPTH_LIMITS:
            self.errors.append(f"snapshot limit {limit} not offered: {target}")
            return (HTTPStatus.BAD_REQUEST,
                    '{"code":-1130,"msg":"Invalid data sent for a parameter."}')
        self.snapshot_requests += 1
        self.snapshot_request_at.append(asyncio.get_running_loop().time())
        if self.snapshot_requests <= self.http_503_on_snapshot:
            return (HTTPStatus.SERVICE_UNAVAILABLE,
                    '{"code":-1008,"msg":"Server is currently overloaded with other requests.'
                    ' Please try again in a few minutes."}')
        self.snapshots_served += 1
        last = self.last
        body = {
            "lastUpdateId": last.update_id,
            "E": last.ts_ms,
            "T": last.tx_ms,
            "bids": self.book.top(True, limit),
            "asks": self.book.top(False, limit),
        }
        return HTTPStatus.OK, json.dumps(body, separators=(",", ":"))


# --------------------------------------------------------------------------------------------
# Bybit v5 linear
# --------------------------------------------------------------------------------------------


class FakeBybit(_FakeVenue):
    """Bybit v5 public linear: ``/v5/public/linear``, ``{"op":"subscribe"}``, ping/pong.

    Every subscription to the book topic gets a fresh ``snapshot`` built from the venue's
    current book (``u``/``seq``/``ts``/``cts`` of the last delta that left the cursor), then the
    recorded deltas that follow, whose ``u`` continue it.

    Attributes:
        subscriptions: Subscribe requests received.
        snapshots_sent: Book snapshots sent (one per book subscription).
        pings: Application pings (``{"op":"ping"}``) answered.
    """

    path = "/v5/public/linear"

    def __init__(
        self,
        capture: Capture,
        faults: Sequence[Fault] = (),
        *,
        missed_on_reconnect: int = 10,
        batch: int = 4,
        pace_s: float = 0.001,
    ) -> None:
        super().__init__(capture, faults, missed_on_reconnect=missed_on_reconnect, batch=batch,
                         pace_s=pace_s)
        self.subscriptions = 0
        self.snapshots_sent = 0
        self.pings = 0
        self.topics = frozenset(frame.channel for frame in capture.frames)
        self.book_topic = next(t for t in self.topics if t.startswith("orderbook."))
        self._bad_trade = next(
            (frame.text for frame in capture.frames if frame.channel.startswith("publicTrade.")),
            None,
        )

    @property
    def ws_url(self) -> str:
        """Return the websocket address (what ``BybitParser(ws_url=...)`` takes)."""
        return f"ws://127.0.0.1:{self.port}{self.path}"

    def _check_request(self, request: Request) -> str | None:
        if request.path != self.path:
            return f"expected {self.path}, got {request.path}"
        return None

    def _ack(self, op: str, success: bool = True, ret_msg: str = "") -> str:
        return json.dumps({"success": success, "ret_msg": ret_msg, "conn_id": "fake-bybit",
                           "req_id": "", "op": op}, separators=(",", ":"))

    def snapshot_frame(self) -> str:
        """Return the book snapshot a new subscriber gets now."""
        depth = int(self.book_topic.split(".")[1])
        last = self.last
        return json.dumps(
            {
                "topic": self.book_topic,
                "type": "snapshot",
                "ts": last.ts_ms,
                "data": {
                    "s": self.capture.symbol,
                    "b": self.book.top(True, depth),
                    "a": self.book.top(False, depth),
                    "u": last.update_id,
                    "seq": last.seq,
                },
                "cts": last.tx_ms,
            },
            separators=(",", ":"),
        )

    async def _session(self, ws: ServerConnection, superseded: asyncio.Event,
                       fault: Fault) -> None:
        request = json.loads(await asyncio.wait_for(ws.recv(), 5.0))
        if request.get("op") != "subscribe" or type(request.get("args")) is not list:
            self.errors.append(f"expected a subscribe frame first, got {request!r}")
            return
        self.subscriptions += 1
        wanted = set(request["args"])
        unknown = wanted - self.topics
        if unknown:
            self.errors.append(f"subscription to topics not offered: {sorted(unknown)}")
            await ws.send(self._ack("subscribe", False, f"Invalid topics: {sorted(unknown)}"))
            return
        await ws.send(self._ack("subscribe"))
        pongs = asyncio.create_task(self._answer_pings(ws),
                                    name=f"fake-bybit-pongs:{self.connections}")
        try:
            if self.book_topic in wanted:
                await ws.send(self.snapshot_frame())
                self.snapshots_sent += 1
            await self._stream(ws, superseded, fault, wanted)
        finally:
            pongs.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await pongs

    async def _answer_pings(self, ws: ServerConnection) -> None:
        """Answer ``{"op":"ping"}`` like Bybit linear (``op`` stays "ping")."""
        async for raw in ws:
            msg = json.loads(raw)
            if msg.get("op") == "ping":
                # A silent connection answers nothing, pings included.
                if ws in self._silent:
                    continue
                self.pings += 1
                await ws.send(self._ack("ping", ret_msg="pong"))

    def _garbage(self, before: Frame) -> list[str | bytes]:
        """Not JSON, ``{}``, a trade with a NaN price, then a copy of the delta with a NaN price.

        The corrupt delta carries the real one's ``u``: the parser must treat it as a lost book
        (counted malformed, resubscribe), not skip it.
        """
        delta = json.loads(before.text)
        side = "b" if delta["data"]["b"] else "a"
        delta["data"][side][0][0] = "NaN"
        junk: list[str | bytes] = ["not json {", "{}"]
        if self._bad_trade is not None:
            trade = json.loads(self._bad_trade)
            trade["data"][0]["p"] = "NaN"
            junk.append(json.dumps(trade, separators=(",", ":")))
        junk.append(json.dumps(delta, separators=(",", ":")))
        return junk


# --------------------------------------------------------------------------------------------
# OKX v5 public (books + trades)
# --------------------------------------------------------------------------------------------

OKX_CHECKSUM_LEVELS = 25
"""Levels per side the OKX ``books`` checksum covers."""

OKX_BOOK_DEPTH = 400
"""Levels per side of the ``books`` channel's snapshot."""


def okx_book_checksum(book: StringBook) -> int:
    """Return the OKX checksum of ``book``, as OKX documents it (written for the fake).

    The best 25 bids and asks are interleaved bid, ask, bid, ask ... (when one side runs out the
    other side's remaining levels follow), each written ``price:size`` with the wire strings,
    joined with ``:``; the checksum is the CRC32 of that string as a *signed* 32-bit integer.
    """
    bids = [f"{price}:{qty}" for price, qty in book.top(True, OKX_CHECKSUM_LEVELS)]
    asks = [f"{price}:{qty}" for price, qty in book.top(False, OKX_CHECKSUM_LEVELS)]
    merged = [level for pair in zip_longest(bids, asks) for level in pair if level is not None]
    crc = zlib.crc32(":".join(merged).encode())
    return int.from_bytes(crc.to_bytes(4, "big"), "big", signed=True)


@dataclass(frozen=True, slots=True)
class OkxCapture(Capture):
    """An OKX session: ``Capture`` plus the recorded snapshot frame (for the levels' extras)."""

    snapshot_text: str


def _okx_levels(raw: Iterable[Sequence[str]]) -> tuple[WireLevel, ...]:
    return tuple((level[0], level[1]) for level in raw)


@cache
def load_okx_books(path: Path, inst_id: str = "BTC-USDT", conn: str = "OKX.ws.1") -> OkxCapture:
    """Load one instrument's ``books`` and ``trades`` frames from a cryptofeed OKX session.

    The first ``books`` frame (the ``snapshot`` OKX pushed on subscribe) becomes the initial
    book; the ``update`` frames after it and the trades recorded after it are served, verbatim.
    The 2022 frames have no ``seqId``: ``BookUpdate.update_id`` is the position (snapshot 0,
    n-th update n) and ``checksum`` the recorded one.

    Raises:
        ValueError: No snapshot, a frame with more than one data item, or a recorded checksum
            that does not match the book replayed with ``okx_book_checksum`` (the recording and
            the fake's checksum are checked before anything is served).
    """
    initial: BookUpdate | None = None
    snapshot_text = ""
    book: StringBook | None = None
    frames: list[Frame] = []
    updates = 0
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            entry = json.loads(line)
            if entry.get("t") != "recv" or entry.get("conn") != conn or "data" not in entry:
                continue
            text: str = entry["data"]
            msg = json.loads(text)
            arg = msg.get("arg")
            if "event" in msg or not isinstance(arg, dict) or arg.get("instId") != inst_id:
                continue
            channel = arg.get("channel")
            if channel == "trades" and initial is not None:
                frames.append(Frame("trades", text))
                continue
            if channel != "books":
                continue
            if len(msg["data"]) != 1:
                raise ValueError(f"{path}: books frame with {len(msg['data'])} data items")
            data = msg["data"][0]
            bids, asks = _okx_levels(data["bids"]), _okx_levels(data["asks"])
            ts_ms = int(data["ts"])
            checksum: int = data["checksum"]
            if msg["action"] == "snapshot":
                if initial is not None:
                    raise ValueError(f"{path}: second {inst_id} snapshot at ts={ts_ms}")
                initial = BookUpdate(bids, asks, 0, ts_ms, ts_ms, checksum=checksum)
                snapshot_text = text
                book = StringBook(bids, asks)
            elif book is None:
                continue
            else:
                updates += 1
                update = BookUpdate(bids, asks, updates, ts_ms, ts_ms, checksum=checksum)
                book.apply(bids, asks)
                frames.append(Frame("books", text, update))
            if okx_book_checksum(book) != checksum:
                raise ValueError(f"{path}: recorded checksum {checksum} does not match the "
                                 f"replayed book at ts={ts_ms}")
    if initial is None:
        raise ValueError(f"{path}: no {inst_id} books snapshot on {conn}")
    return OkxCapture(inst_id, initial, tuple(frames), snapshot_text)


class FakeOkx(_FakeVenue):
    """OKX v5 public: ``/ws/v5/public``, ``{"op":"subscribe"}``, text ``ping``/``pong``.

    A subscribe names ``{"channel": ..., "instId": ...}`` args; each offered one is acked with
    ``{"event":"subscribe","arg":{...}}`` in order (an unknown one gets OKX's error event and is
    reported in ``errors``). A ``books`` subscription gets a ``snapshot`` built from the venue's
    current book (best 400 levels a side, ``ts`` of the last update that left the cursor, and a
    checksum computed by the venue with ``okx_book_checksum``), then the recorded ``update``
    frames from the cursor on: their recorded checksums hold, because the venue's book is the
    recorded book at that point. Trades of the instrument follow as recorded.

    Attributes:
        subscriptions: Subscribe requests received.
        snapshots_sent: Book snapshots sent (one per ``books`` subscription).
        pings: Text ``ping`` frames answered with ``pong``.
        checksums_corrupted: Updates sent with a wrong checksum (``Fault.corrupt_checksum_at``).
        corrupted_checksums: The wrong checksums, in the order sent.
    """

    path = "/ws/v5/public"
    miss_tail = 40

    def __init__(
        self,
        capture: OkxCapture,
        faults: Sequence[Fault] = (),
        *,
        missed_on_reconnect: int = 10,
        batch: int = 4,
        pace_s: float = 0.001,
    ) -> None:
        super().__init__(capture, faults, missed_on_reconnect=missed_on_reconnect, batch=batch,
                         pace_s=pace_s)
        self.subscriptions = 0
        self.snapshots_sent = 0
        self.pings = 0
        self.checksums_corrupted = 0
        self.corrupted_checksums: list[int] = []
        self.channels = frozenset(frame.channel for frame in capture.frames) | {"books"}
        # What the levels carry besides price and size: ["0" (deprecated), order count].
        self._extras: dict[bool, dict[str, list[str]]] = {True: {}, False: {}}
        self._track_extras(capture.snapshot_text)
        self._bad_trade = next(
            (frame.text for frame in capture.frames if frame.channel == "trades"), None
        )

    @property
    def ws_url(self) -> str:
        """Return the websocket address (what ``OkxParser(ws_url=...)`` takes)."""
        return f"ws://127.0.0.1:{self.port}{self.path}"

    def _check_request(self, request: Request) -> str | None:
        if request.path != self.path:
            return f"expected {self.path}, got {request.path}"
        return None

    # ---------------------------------------------------------------- the book

    def _track_extras(self, text: str) -> None:
        data = json.loads(text)["data"][0]
        for is_bid, key in ((True, "bids"), (False, "asks")):
            extras = self._extras[is_bid]
            for level in data[key]:
                if Decimal(level[1]) == 0:
                    extras.pop(level[0], None)
                else:
                    extras[level[0]] = list(level[2:])

    def _take(self) -> Frame:
        frame = super()._take()
        if frame.book is not None:
            self._track_extras(frame.text)
        return frame

    def checksum(self) -> int:
        """Return the checksum of the venue's current book."""
        return okx_book_checksum(self.book)

    def snapshot_frame(self) -> str:
        """Return the ``books`` snapshot a new subscriber gets now."""
        data: dict[str, object] = {}
        for is_bid, key in ((False, "asks"), (True, "bids")):
            extras = self._extras[is_bid]
            data[key] = [[price, qty, *extras.get(price, ["0", "1"])]
                         for price, qty in self.book.top(is_bid, OKX_BOOK_DEPTH)]
        data["ts"] = str(self.last.ts_ms)
        data["checksum"] = self.checksum()
        return json.dumps(
            {"arg": {"channel": "books", "instId": self.capture.symbol}, "action": "snapshot",
             "data": [data]},
            separators=(",", ":"),
        )

    def _book_text(self, frame: Frame, number: int, fault: Fault) -> str:
        if number != fault.corrupt_checksum_at:
            return frame.text
        msg = json.loads(frame.text)
        item = msg["data"][0]
        # Flip low bits: still a signed 32-bit value, never the real one, never 0 ("absent").
        bad = item["checksum"] ^ 0x5A5A or 1
        item["checksum"] = bad
        self.checksums_corrupted += 1
        self.corrupted_checksums.append(bad)
        return json.dumps(msg, separators=(",", ":"))

    # ---------------------------------------------------------------- websocket

    @staticmethod
    def _error(code: str, msg: str) -> str:
        return json.dumps({"event": "error", "code": code, "msg": msg, "connId": "fake-okx"},
                          separators=(",", ":"))

    async def _session(self, ws: ServerConnection, superseded: asyncio.Event,
                       fault: Fault) -> None:
        raw = await asyncio.wait_for(ws.recv(), 5.0)
        try:
            request = json.loads(raw)
        except ValueError:
            request = None
        if (not isinstance(request, dict) or request.get("op") != "subscribe"
                or type(request.get("args")) is not list):
            self.errors.append(f"expected a subscribe frame first, got {raw!r}")
            await ws.send(self._error("60012", f"Illegal request: {raw!r}"))
            return
        self.subscriptions += 1
        wanted: set[str] = set()
        for arg in request["args"]:
            channel = arg.get("channel") if isinstance(arg, dict) else None
            inst_id = arg.get("instId") if isinstance(arg, dict) else None
            if channel not in self.channels or inst_id != self.capture.symbol:
                self.errors.append(f"subscription not offered: {arg!r}")
                await ws.send(self._error(
                    "60018", f"Wrong URL or channel:{channel},instId:{inst_id} doesn't exist."))
                continue
            wanted.add(channel)
            await ws.send(json.dumps({"event": "subscribe",
                                      "arg": {"channel": channel, "instId": inst_id}},
                                     separators=(",", ":")))
        pongs = asyncio.create_task(self._answer_pings(ws),
                                    name=f"fake-okx-pongs:{self.connections}")
        try:
            if "books" in wanted:
                await ws.send(self.snapshot_frame())
                self.snapshots_sent += 1
            await self._stream(ws, superseded, fault, wanted)
        finally:
            pongs.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await pongs

    async def _answer_pings(self, ws: ServerConnection) -> None:
        """Answer the text ``ping`` with ``pong``; anything else is not expected mid-stream."""
        async for raw in ws:
            if raw == "ping":
                # A silent connection answers nothing, pings included.
                if ws in self._silent:
                    continue
                self.pings += 1
                await ws.send("pong")
            else:
                self.errors.append(f"unexpected frame on a subscribed connection: {raw!r}")

    def _garbage(self, before: Frame) -> list[str | bytes]:
        """Not JSON, ``{}``, ``[]``, binary junk, a truncated update, NaN / negative levels.

        The corrupt updates are copies of the next real one (same checksum) with one level
        broken; a NaN trade ends the burst.
        """
        msg = json.loads(before.text)
        side = "bids" if msg["data"][0]["bids"] else "asks"
        nan_price = json.loads(before.text)
        nan_price["data"][0][side][0][0] = "NaN"
        negative_size = json.loads(before.text)
        negative_size["data"][0][side][0][1] = "-1"
        junk: list[str | bytes] = [
            "not json {",
            "{}",
            "[]",
            b"\xff\xfe\x00 binary junk",
            before.text[: len(before.text) // 2],
            json.dumps(nan_price, separators=(",", ":")),
            json.dumps(negative_size, separators=(",", ":")),
        ]
        if self._bad_trade is not None:
            trade = json.loads(self._bad_trade)
            trade["data"][0]["px"] = "NaN"
            junk.append(json.dumps(trade, separators=(",", ":")))
        return junk
