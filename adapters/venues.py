"""The venues we speak natively, and how recordings name them.

``make_parser(venue, symbol)`` returns the pure parser of a venue module; the I/O shell, the
recorder and replay all go through it, so one name means one protocol everywhere.
"""

from __future__ import annotations

import json
from typing import Any

from adapters.feed import FeedParser
from bot.errors import ConfigError

VENUES = (
    "binance", "binance-usdm", "binance-coinm", "coinbase", "bybit", "bybit-spot", "okx",
    "kraken", "kraken-v1",
)

# cryptofeed's exchange names -> ours (Bybit's category comes from the connection address).
_CRYPTOFEED = {
    "BINANCE": "binance",
    "BINANCE_US": "binance",
    "BINANCE_FUTURES": "binance-usdm",
    "BINANCE_DELIVERY": "binance-coinm",
    "COINBASE": "coinbase",
    "BYBIT": "bybit",
    "OKX": "okx",
    "KRAKEN": "kraken-v1",
}


_MONTH_CODES = "FGHJKMNQUVXZ"


TOUCH_LEVELS = 8
"""Changed levels per side decoded before the engine quotes, in parsers that split (Binance).

Reading a level is most of a split's cost, and the deep part is read only when the touch needs
it. On the Binance USD-M capture 8 levels cost least: 16 read twice what the touch needs on a
typical frame (80.3k instructions from frame to commands against 72.8k), and 6 or fewer leave
the touch unsettled so often that the deep part is read first (95.6k)."""


def make_parser(venue: str, symbol: str, *, touch_first: bool = False,
                **overrides: Any) -> FeedParser:
    """Return the parser of ``venue`` for ``symbol``; ``overrides`` set URLs (tests).

    ``touch_first``: the events go to the engine, which quotes on the levels nearest the touch
    before the deep levels of a large diff are decoded (``DeferredBookDelta``); parsers that
    cannot split ignore it.

    Raises:
        ConfigError: the venue is not one we speak natively.
    """
    if venue in ("binance", "binance-usdm", "binance-coinm"):
        from adapters.binance import BinanceParser

        market = {"binance": "spot", "binance-usdm": "usdm", "binance-coinm": "coinm"}[venue]
        if touch_first:
            overrides.setdefault("touch_levels", TOUCH_LEVELS)
        return BinanceParser(symbol, market=market, **overrides)  # type: ignore[arg-type]
    if venue == "coinbase":
        from adapters.coinbase import CoinbaseParser

        return CoinbaseParser(symbol, **overrides)
    if venue in ("bybit", "bybit-spot"):
        from adapters.bybit import BybitParser

        if venue == "bybit-spot":
            return BybitParser(symbol, category="spot", **overrides)
        return BybitParser(symbol, category="linear", **overrides)
    if venue == "okx":
        from adapters.okx import OkxParser

        return OkxParser(symbol, **overrides)
    if venue == "kraken":
        from adapters.kraken import KrakenParser

        return KrakenParser(symbol, **overrides)
    if venue == "kraken-v1":
        from adapters.kraken import KrakenV1Parser

        return KrakenV1Parser(symbol, **overrides)
    raise ConfigError("market.venue", f"unknown venue {venue!r}; one of {', '.join(VENUES)}, "
                                      "ccxt:<exchange-id> or sim")


def venue_from_cryptofeed(exchange: str, symbol: str) -> str:
    """Return our venue name for a cryptofeed session's exchange and (cryptofeed) symbol."""
    try:
        venue = _CRYPTOFEED[exchange]
    except KeyError as exc:
        raise ConfigError("recording", f"cryptofeed exchange {exchange!r} is not a venue we "
                                       f"parse; one of {', '.join(sorted(_CRYPTOFEED))}") from exc
    if venue == "bybit" and not symbol.endswith("-PERP"):
        return "bybit-spot"
    return venue


def native_symbol(venue: str, cryptofeed_symbol: str) -> str:
    """Translate cryptofeed's normalised symbol (``BTC-USDT-PERP``) into the venue's own."""
    parts = cryptofeed_symbol.split("-")
    if venue.startswith("binance"):
        if venue == "binance-coinm":
            base, quote = parts[0], parts[1]
            suffix = parts[2] if len(parts) > 2 else "PERP"
            return f"{base}{quote}_{suffix}"
        return "".join(parts[:2])
    if venue.startswith("bybit"):
        return "".join(parts[:2])
    if venue == "okx":
        if len(parts) > 2 and parts[2] == "PERP":
            return f"{parts[0]}-{parts[1]}-SWAP"
        if len(parts) > 2 and len(parts[2]) == 5 and parts[2][2] in _MONTH_CODES:
            # cryptofeed writes expiries as YY + futures month code + DD: 22K27 is 2022-05-27.
            code = parts[2]
            month = _MONTH_CODES.index(code[2]) + 1
            return f"{parts[0]}-{parts[1]}-{code[:2]}{month:02d}{code[3:]}"
        return cryptofeed_symbol
    if venue.startswith("kraken"):
        return "/".join(parts[:2])
    return cryptofeed_symbol


def accepts_connection(venue: str, address: str) -> bool:
    """Return whether a recorded websocket connection carries this venue's market."""
    if venue == "bybit":
        return address.rstrip("/").endswith("/linear")
    if venue == "bybit-spot":
        return address.rstrip("/").endswith("/spot")
    return True


def binance_market_from_frame(raw: str) -> tuple[str, str] | None:
    """Return (venue, symbol) from a Binance combined-stream depth frame, or None."""
    try:
        data = json.loads(raw).get("data", {})
    except (json.JSONDecodeError, AttributeError):
        return None
    if not isinstance(data, dict) or data.get("e") != "depthUpdate" or "s" not in data:
        return None
    if "pu" not in data:
        return "binance", str(data["s"])
    return ("binance-coinm" if "ps" in data else "binance-usdm"), str(data["s"])
