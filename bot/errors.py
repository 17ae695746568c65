"""The mmbot exception hierarchy.

::

    MmbotError                      base of everything we raise on purpose
    ├── ConfigError                 bad or unknown setting; the CLI exits 2 naming the field
    ├── DataError                   corrupt market data (NaN, negative size, crossed book);
    │                               the book is invalidated and quotes pulled, never fatal
    │   └── SequenceGapError        a feed skipped updates; the book must be resynced
    ├── VenueError                  an execution venue refused or failed a request
    │   ├── OrderRejectedError      the venue rejected an order (post-only, funds, invalid)
    │   └── VenueUnavailableError   network error, timeout, rate limit: retryable
    └── SafetyError                 a money-safety precondition failed (missing --confirm-live,
                                    missing keys); the CLI exits 2

Only ``VenueUnavailableError`` is retryable; everything else is decided once.
"""

from __future__ import annotations


class MmbotError(Exception):
    """Base class for every error mmbot raises on purpose."""


class ConfigError(MmbotError):
    """A setting is wrong or unknown. ``field`` names it (dotted path)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def __reduce__(self) -> tuple[type[ConfigError], tuple[str, str]]:
        # Rebuild from both fields: errors cross process boundaries (sweeps on a pool).
        return (type(self), (self.field, self.message))


class DataError(MmbotError):
    """Market data that cannot be applied: NaN or negative values, a crossed book."""


class SequenceGapError(DataError):
    """A feed skipped one or more updates."""


class VenueError(MmbotError):
    """An execution venue failed a request."""


class OrderRejectedError(VenueError):
    """The venue rejected an order."""


class VenueUnavailableError(VenueError):
    """The venue could not be reached, timed out or rate-limited us; the request may be retried."""


class SafetyError(MmbotError):
    """A money-safety precondition is not met."""


def is_retryable(exc: BaseException) -> bool:
    """Return True when ``exc`` is worth retrying (transient network or venue trouble)."""
    return isinstance(exc, VenueUnavailableError | TimeoutError | ConnectionError)
