"""Recorded feeds: our recording format (writer and reader) and the readers of other formats.

Every reader yields ``Frame``s (raw text as received, local receive time in ns), which replay
hands to the same venue parsers as live. Files are streamed line by line, never loaded whole,
except cryptofeed sessions: those are short (≤ a few minutes) and their lines are not in time
order, so each file is read and sorted by receive time.

Formats:

* ``mmbot`` (ours): gzip JSON lines. The first line is a header
  ``{"format": "mmbot-recording", "version": 1, "venue", "symbol", "streams", "ws_url",
  "recorder", "started_ns", "part"}``; every other line is one frame
  ``{"ts": <local ns>, "k": "ws" | "rest" | "connect", "c": <connection id>, "d": <raw text>}``.
  Long recordings rotate into numbered parts (``name.part2.jsonl.gz`` ...), each with a header.
* ``hftbacktest``: gzip text, ``<local_ns> <raw JSON>`` per line; a REST depth snapshot is a
  bare JSON object without a ``stream`` key.
* ``cryptofeed``: JSON lines; a ``header`` line naming the exchange, then ``http``, ``connect``,
  ``send`` and ``recv`` entries with ``ts`` in float seconds.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple

from bot.errors import DataError

RECORDING_FORMAT = "mmbot-recording"
RECORDING_VERSION = 1


class Frame(NamedTuple):
    """One recorded input: a websocket frame (``ws``), a REST body (``rest``) or a connect.

    ``conn`` names the websocket connection for ``ws`` and ``connect`` frames (``data`` of a
    ``connect`` is the address) and is the request URL for ``rest`` frames ('' if unknown).
    """

    ts_local_ns: int
    kind: str
    conn: str
    data: str


@dataclass(slots=True)
class RecordingInfo:
    """What a recording says about itself (venue and symbol when it names them)."""

    format: str
    venue: str | None = None
    symbol: str | None = None
    exchange: str | None = None
    l2_symbols: list[str] = field(default_factory=list)
    header: dict[str, Any] = field(default_factory=dict)


class _Progress:
    """Compressed bytes read so far of the file being streamed, for progress bars."""

    def __init__(self) -> None:
        self.raw: IO[bytes] | None = None
        self.total = 0
        self.done_before = 0

    def position(self) -> int:
        raw = self.raw
        return self.done_before + (raw.tell() if raw is not None and not raw.closed else 0)


PROGRESS = _Progress()
"""Where the current ``iter_frames`` is: ``PROGRESS.position()`` of ``PROGRESS.total`` bytes."""


@contextlib.contextmanager
def _open_text(path: Path, track: bool = False) -> Iterator[IO[str]]:
    """Open a (gzip) text file; with ``track`` its compressed position feeds ``PROGRESS``."""
    with path.open("rb") as raw:
        if track:
            PROGRESS.raw = raw
        binary = gzip.GzipFile(fileobj=raw) if path.suffix == ".gz" else raw
        with io.TextIOWrapper(binary, encoding="utf-8", newline="\n") as text:
            yield text


def read_info(path: Path) -> RecordingInfo:
    """Detect the format of ``path`` and read what its header says.

    Raises:
        DataError: the file is empty or in no format we read.
    """
    try:
        with _open_text(path) as fh:
            first = fh.readline()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from exc
    if not first.strip():
        raise DataError(f"{path}: empty file")
    head, _, rest = first.partition(" ")
    if head.isdigit() and rest.lstrip().startswith("{"):
        return RecordingInfo("hftbacktest")
    try:
        header = json.loads(first)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not a recording we can read (first line: {first[:80]!r})") \
            from exc
    if isinstance(header, dict) and header.get("format") == RECORDING_FORMAT:
        return RecordingInfo("mmbot", venue=header.get("venue"), symbol=header.get("symbol"),
                             header=header)
    if isinstance(header, dict) and header.get("t") == "header":
        config = header.get("config") or {}
        return RecordingInfo("cryptofeed", exchange=header.get("exchange"),
                             l2_symbols=list(config.get("l2_book") or []), header=header)
    raise DataError(f"{path}: not a recording we can read (unknown header)")


def iter_frames(paths: Sequence[Path]) -> Iterator[Frame]:
    """Yield the frames of ``paths`` in order (files one after another, as given)."""
    PROGRESS.total = sum(p.stat().st_size for p in paths)
    PROGRESS.done_before = 0
    for path in paths:
        info = read_info(path)
        if info.format == "hftbacktest":
            yield from _hftbacktest_frames(path)
        elif info.format == "mmbot":
            yield from _mmbot_frames(path)
        else:
            yield from _cryptofeed_frames(path)
        PROGRESS.done_before += path.stat().st_size
        PROGRESS.raw = None


# What a gzip stream cut short (a recorder killed mid-write) or damaged raises when read.
_CUT_SHORT = (EOFError, zlib.error, gzip.BadGzipFile)


def _lines(fh: IO[str]) -> Iterator[str | None]:
    """The lines of an open recording; None last when the file ends cut short or damaged,
    after every line read before that point (the caller counts it as one bad frame)."""
    try:
        yield from fh
    except _CUT_SHORT:
        yield None


def _cut_short(path: Path) -> Frame:
    return Frame(0, "bad", "", f"{path}: the recording ends cut short or damaged")


def _hftbacktest_frames(path: Path) -> Iterator[Frame]:
    with _open_text(path, track=True) as fh:
        for line in _lines(fh):
            if line is None:
                yield _cut_short(path)
                return
            ts, _, data = line.partition(" ")
            if not data:
                continue
            data = data.rstrip("\n")
            # The REST snapshot is the only line without the combined-stream envelope.
            ws = data.startswith('{"stream"')
            try:
                yield Frame(int(ts), "ws" if ws else "rest", "ws" if ws else "", data)
            except ValueError:
                yield Frame(0, "bad", "", line)


def _mmbot_frames(path: Path) -> Iterator[Frame]:
    with _open_text(path, track=True) as fh:
        fh.readline()
        for line in _lines(fh):
            if line is None:
                yield _cut_short(path)
                return
            try:
                obj = json.loads(line)
                yield Frame(int(obj["ts"]), str(obj["k"]), str(obj.get("c", "ws")),
                            str(obj["d"]))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                yield Frame(0, "bad", "", line)


def _cryptofeed_frames(path: Path) -> Iterator[Frame]:
    frames: list[Frame] = []
    with _open_text(path, track=True) as fh:
        for line in _lines(fh):
            if line is None:
                frames.append(_cut_short(path))
                break
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            kind = obj.get("t")
            ts = round(float(obj.get("ts", 0.0)) * 1e9)
            conn = str(obj.get("conn", ""))
            if kind == "recv" and "data" in obj:
                frames.append(Frame(ts, "ws", conn, obj["data"]))
            elif kind == "http":
                url, body = str(obj.get("url", "")), str(obj.get("data", ""))
                frames.append(Frame(ts, "rest", url, body))
            elif kind == "connect":
                frames.append(Frame(ts, "connect", conn, str(obj.get("addr", ""))))
    frames.sort(key=lambda f: f.ts_local_ns)
    yield from frames


class Recorder:
    """Write raw frames in our recording format, rotating into parts.

    Args:
        path: the first file (``.jsonl.gz``); later parts are ``<stem>.partN.jsonl.gz``.
        header: venue, symbol, streams and ws_url to repeat in every part's header.
        rotate_bytes: start a new part after this many uncompressed bytes.
        rotate_s: start a new part after this many seconds of recorded time.
    """

    def __init__(self, path: Path, header: dict[str, Any], rotate_bytes: int = 512 << 20,
                 rotate_s: float = 3600.0) -> None:
        self.path = path
        self.header = header
        self.rotate_bytes = rotate_bytes
        self.rotate_ns = round(rotate_s * 1e9)
        self.parts: list[Path] = []
        self.frames = 0
        self._fh: IO[str] | None = None
        self._bytes = 0
        self._part_start_ns = 0

    def _part_path(self, n: int) -> Path:
        if n == 1:
            return self.path
        name = self.path.name
        stem = name[: -len(".jsonl.gz")] if name.endswith(".jsonl.gz") else self.path.stem
        return self.path.with_name(f"{stem}.part{n}.jsonl.gz")

    def _open_part(self, ts_ns: int) -> IO[str]:
        self.close()
        target = self._part_path(len(self.parts) + 1)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Held open across writes until rotation or close(): not a with-block by design.
        fh: IO[str] = gzip.open(target, "wt", encoding="utf-8", compresslevel=6)  # noqa: SIM115
        header = {"format": RECORDING_FORMAT, "version": RECORDING_VERSION, **self.header,
                  "started_ns": ts_ns, "part": len(self.parts) + 1}
        fh.write(json.dumps(header) + "\n")
        self.parts.append(target)
        self._fh = fh
        self._bytes = 0
        self._part_start_ns = ts_ns
        return fh

    def write(self, ts_local_ns: int, kind: str, conn: str, data: str) -> None:
        """Append one frame (``kind`` is ``ws``, ``rest`` or ``connect``)."""
        fh = self._fh
        if (fh is None or self._bytes >= self.rotate_bytes
                or ts_local_ns - self._part_start_ns >= self.rotate_ns):
            fh = self._open_part(ts_local_ns)
        line = json.dumps({"ts": ts_local_ns, "k": kind, "c": conn, "d": data}) + "\n"
        fh.write(line)
        self._bytes += len(line)
        self.frames += 1

    def close(self) -> None:
        """Finish the current part."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
