"""Shared fixtures: the recorded exchange feeds in ../shared/data and a clean environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """Return ../shared/data; skip when it is absent unless MMBOT_REQUIRE_SHARED_DATA=1."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("MMBOT_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(f"MMBOT_REQUIRE_SHARED_DATA=1 but {SHARED_DATA} is missing")
        pytest.skip(f"recorded feeds not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _no_mmbot_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep a developer's MMBOT_* settings out of the tests (except the data switch)."""
    for name in list(os.environ):
        if name.startswith("MMBOT_") and name not in ("MMBOT_REQUIRE_SHARED_DATA",
                                                      "MMBOT_REQUIRE_RAY"):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True, scope="session")
def _quiet_logs() -> None:
    """Keep structlog's default (print everything to stdout) out of test output."""
    from bot.logs import configure_logging

    configure_logging("error", None)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep a developer's proxy settings away from loopback traffic."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "ws_proxy", "wss_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
