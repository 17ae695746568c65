"""Logging with structlog: readable lines on stderr, JSON lines in the run directory.

Events have stable snake_case names (``quote_requoted``, ``risk_denied``, ``risk_halted``,
``book_invalid``) and bound context (``venue``, ``symbol``, ``client_order_id``). We log
decisions, not every tick. Secrets never reach a log line: settings hold them as ``SecretStr``
and a processor masks any key that looks like a credential as a second line of defence.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any, TextIO

import structlog

_SECRET_KEYS = ("api_key", "api_secret", "secret", "password", "apikey", "passphrase")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


def _mask_secrets(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in event_dict:
        if any(marker in key.lower() for marker in _SECRET_KEYS):
            event_dict[key] = "***"
    return event_dict


class _Tee:
    """Send each rendered line to the console (readable) and to a JSON-lines file."""

    def __init__(self, console: TextIO | None, json_file: TextIO | None, console_level: int,
                 file_level: int) -> None:
        self._console = console
        self._json = json_file
        self._console_level = console_level
        self._file_level = file_level
        self._console_renderer = structlog.dev.ConsoleRenderer(colors=False)
        self._json_renderer = structlog.processors.JSONRenderer()

    def __call__(self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> str:
        level = _LEVELS.get(event_dict.get("level", "info"), logging.INFO)
        if self._json is not None and level >= self._file_level:
            self._json.write(str(self._json_renderer(logger, method_name, dict(event_dict))))
            self._json.write("\n")
            self._json.flush()
        if self._console is not None and level >= self._console_level:
            self._console.write(str(self._console_renderer(logger, method_name, event_dict)))
            self._console.write("\n")
            self._console.flush()
        raise structlog.DropEvent


_open_files: list[TextIO] = []


def configure_logging(
    level: str = "info",
    json_path: Path | None = None,
    console: TextIO | None = sys.stderr,
) -> None:
    """Configure structlog for the process.

    Args:
        level: minimum level on the console (``debug``, ``info``, ``warning``, ``error``).
        json_path: file for JSON lines (every event at debug and above), or None.
        console: stream for readable lines, or None for silence (``--json`` runs keep
            stderr for warnings only by passing ``level="warning"``).
    """
    close_logging()
    json_file: TextIO | None = None
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_file = json_path.open("a", encoding="utf-8")
        _open_files.append(json_file)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _mask_secrets,
            _Tee(console, json_file, _LEVELS[level], logging.DEBUG),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.DEBUG if json_file is not None else _LEVELS[level]
        ),
        cache_logger_on_first_use=False,
    )


def close_logging() -> None:
    """Close the JSON log files opened by ``configure_logging``."""
    while _open_files:
        _open_files.pop().close()


def get_logger(**context: Any) -> Any:
    """Return a structlog logger with ``context`` bound (venue, symbol, ...)."""
    return structlog.get_logger("mmbot").bind(**context)
