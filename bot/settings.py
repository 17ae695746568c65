"""Settings: a TOML file plus ``MMBOT_...`` environment overrides, strict and frozen.

Precedence, highest first: explicit overrides from the command line, environment variables
(``MMBOT_RISK__MAX_INVENTORY=2`` sets ``risk.max_inventory``; sections are separated by a double
underscore), the TOML file, the defaults below. Unknown keys are errors wherever they come from:
a typo in a risk limit must never be silently ignored.

Units are in the field names or docstrings: prices in quote currency, sizes in base-asset units,
time in seconds unless the name ends in ``_ms`` or ``_ns``, σ in price/√second, A in 1/second,
k in 1/price, γ in 1/(price·size).
"""

from __future__ import annotations

import contextvars
import math
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from bot.errors import ConfigError

ENV_PREFIX = "MMBOT_"

# Environment variables with our prefix that are not settings (test switches, secrets read
# elsewhere); everything else under MMBOT_ must name a field.
NON_SETTING_ENV = frozenset({
    "MMBOT_REQUIRE_SHARED_DATA", "MMBOT_REQUIRE_RAY", "MMBOT_REQUIRE_CBOOK",  # CI switches
    "MMBOT_PURE_PYTHON",  # run the pure-Python book and helpers (bot.native)
})


class _Section(BaseModel):
    # Numbers must be finite (TOML can spell inf and nan): an infinite tick or start price
    # has no meaning, and nan passes no check. Risk limits alone may be inf (no limit).
    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="strings",
                              allow_inf_nan=False)


class MarketSettings(_Section):
    """Which market to trade and its trading rules.

    ``tick_size`` and ``lot_size`` left unset are taken from the venue: the simulated market's
    own (0.01 and 0.001), or, in replay, inferred from the recording's first book snapshot.
    """

    venue: str = "sim"
    symbol: str = "SIM-USD"
    tick_size: float | None = Field(None, gt=0)
    lot_size: float | None = Field(None, gt=0)
    min_qty: float = Field(0.0, ge=0)
    min_notional: float = Field(0.0, ge=0)


class LadderSettings(_Section):
    """How each side's quote is spread over several price levels."""

    levels: int = Field(1, ge=1, le=50)
    spacing_ticks: float = Field(1.0, ge=0)
    order_qty: float = Field(1.0, gt=0)
    size_decay: float = Field(1.0, gt=0)
    inventory_shaping: bool = False


class StrategySettings(_Section):
    """The quoting model and its parameters.

    ``kind`` picks the model: ``avellaneda_stoikov`` (AS 2008, finite horizon), ``glft``
    (Guéant–Lehalle–Fernandez-Tapia asymptotic, infinite horizon), ``glft_exact`` (finite
    inventory bounds ±q_max, matrix exponential), ``fixed_spread`` (the benchmark).
    """

    kind: Literal["avellaneda_stoikov", "glft", "glft_exact", "fixed_spread"] = (
        "avellaneda_stoikov"
    )
    gamma: float = Field(0.1, ge=0, description="risk aversion, 1/(price*size)")
    centre: Literal["reservation", "mid"] = "reservation"
    horizon: Literal["session", "rolling"] = "rolling"
    session_s: float = Field(86_400.0, gt=0)
    rolling_horizon_s: float = Field(60.0, ge=0)
    drift: float = 0.0
    skew_scale: float = Field(1.0, ge=0)
    q_max: int = Field(10, ge=1, le=500)
    half_spread_bps: float | None = Field(None, gt=0)
    half_spread_ticks: float | None = Field(None, gt=0)
    ladder: LadderSettings = LadderSettings()


class ModelSettings(_Section):
    """Model parameters: fixed values, which also serve as fallbacks until estimators are warm."""

    sigma: float = Field(0.05, gt=0, description="volatility, price per sqrt(second)")
    intensity_a: float = Field(5.0, gt=0, description="order arrival rate at the mid, 1/second")
    intensity_k: float = Field(50.0, gt=0, description="decay of arrivals with depth, 1/price")
    estimate_sigma: bool = True
    sigma_interval_ms: int = Field(1000, gt=0)
    sigma_window: int = Field(300, ge=2)
    sigma_min_samples: int = Field(20, ge=2)
    calibrate: Literal["off", "online"] = Field(
        "off", description="online: re-fit A and k on a trailing window of the live feed"
    )
    calibration_method: Literal["time-to-fill", "hits"] = "hits"
    refit_s: float = Field(30.0, gt=0, description="how often the online fit runs")
    calibration_window_s: float = Field(600.0, gt=0, description="trailing window of the fit")
    depth_points: int = Field(21, ge=2, le=200)
    max_depth_ticks: float = Field(50.0, gt=0)
    min_r2: float = Field(0.5, ge=0, le=1, description="fits below this R² are not used")
    a_bounds: tuple[float, float] = Field((1e-4, 1e5), description="accepted A, 1/second")
    k_bounds: tuple[float, float] = Field((1e-6, 1e9), description="accepted k, 1/price")


class HealthSettings(_Section):
    """The model-health monitor: is the market still the one the model assumes?"""

    enabled: bool = True
    interval_s: float = Field(60.0, gt=0, description="evaluation period")
    fill_rate_tolerance: float = Field(
        0.5, gt=0, description="warn when realised/forecast fills is off by more than this"
    )
    min_expected_fills: float = Field(5.0, gt=0, description="judge fill rates only above")
    inventory_drift: float = Field(
        0.8, gt=0, le=1, description="warn when mean |q| exceeds this share of the cap"
    )
    spread_ratio: float = Field(
        25.0, gt=1, description="warn when our spread exceeds the market's by this factor"
    )
    action: Literal["warn", "widen", "pause"] = "warn"
    widen_factor: float = Field(1.5, gt=1)
    pause_s: float = Field(30.0, gt=0)


class RiskSettings(_Section):
    """Limits of the pre-trade gate. ``inf`` (or a missing value) disables a limit."""

    model_config = ConfigDict(allow_inf_nan=True)  # nan still fails every limit's check

    max_inventory: float = Field(10.0, gt=0, allow_inf_nan=False)
    min_half_spread_ticks: float = Field(0.0, ge=0, allow_inf_nan=False)
    min_half_spread_bps: float = Field(0.0, ge=0, allow_inf_nan=False)
    enforce_touch: bool = True
    max_drawdown: float = Field(math.inf, gt=0)
    max_loss: float = Field(math.inf, gt=0)
    max_order_qty: float = Field(math.inf, gt=0)
    max_order_notional: float = Field(math.inf, gt=0)
    price_band_bps: float = Field(math.inf, gt=0)
    max_book_age_ms: int = Field(0, ge=0, description="0 disables the stale-book guard")
    max_orders_per_s: float = Field(math.inf, gt=0, description="whole number, or inf")

    @model_validator(mode="after")
    def _check_limits(self) -> RiskSettings:
        if math.isfinite(self.max_orders_per_s) and not self.max_orders_per_s.is_integer():
            raise ValueError("max_orders_per_s must be a whole number of orders, or inf")
        if self.min_half_spread_bps >= self.price_band_bps:
            raise ValueError("min_half_spread_bps must be below price_band_bps")
        return self


class OrderSettings(_Section):
    """Order manager behaviour."""

    requote_ticks: float = Field(1.0, ge=0)
    max_order_age_s: float = Field(0.0, ge=0, description="0: no age limit")
    post_only: bool = True
    client_id_prefix: str = Field("mm", min_length=1, max_length=16, pattern=r"^[A-Za-z0-9_-]+$")


class SimVenueSettings(_Section):
    """The simulated venue used by paper trading and replay."""

    fill_model: Literal["queue", "trade-through", "touch"] = "queue"
    entry_latency_ms: float = Field(5.0, ge=0)
    cancel_latency_ms: float = Field(5.0, ge=0)
    maker_fee_bps: float = 0.0
    taker_fee_bps: float = Field(5.0, ge=0)
    queue_power: float = Field(2.0, gt=0)
    post_only_reject: bool = True


class SimMarketSettings(_Section):
    """The built-in simulated market (``--venue sim``): a synthetic L2 book with AS arrivals."""

    s0: float = Field(100.0, gt=0)
    sigma: float = Field(0.05, ge=0, description="price per sqrt(second)")
    intensity_a: float = Field(5.0, gt=0, description="market orders per second per side")
    intensity_k: float = Field(50.0, gt=0, description="1/price")
    seed: int = 1


class LiveSettings(_Section):
    """Live trading behaviour."""

    on_start: Literal["cancel", "adopt"] = Field(
        "cancel", description="open orders of ours found at start: cancel them or manage them"
    )


class BenchmarkSettings(_Section):
    """The fixed-spread benchmark replayed on the same data after the strategy."""

    enabled: bool = True
    half_spread_ticks: float | None = Field(
        None, gt=0, description="default: half the strategy's average quoted spread"
    )


class RunSettings(_Section):
    """Where a run writes its outputs and how it talks."""

    out_dir: Path = Path("runs")
    status_interval_s: float = Field(1.0, gt=0)
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "warning", description="console level; the JSON log in the run directory gets all"
    )


class Settings(BaseSettings):
    """All settings of one mmbot run."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        ser_json_inf_nan="strings",
    )

    market: MarketSettings = MarketSettings()
    strategy: StrategySettings = StrategySettings()
    model: ModelSettings = ModelSettings()
    risk: RiskSettings = RiskSettings()
    orders: OrderSettings = OrderSettings()
    sim_venue: SimVenueSettings = SimVenueSettings()
    sim_market: SimMarketSettings = SimMarketSettings()
    health: HealthSettings = HealthSettings()
    benchmark: BenchmarkSettings = BenchmarkSettings()
    live: LiveSettings = LiveSettings()
    run: RunSettings = RunSettings()
    api_key: SecretStr | None = Field(None, exclude=True)
    api_secret: SecretStr | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _check_strategy(self) -> Settings:
        s = self.strategy
        both_or_neither = (s.half_spread_bps is None) == (s.half_spread_ticks is None)
        if s.kind == "fixed_spread" and both_or_neither:
            raise ValueError(
                "strategy.half_spread_bps or strategy.half_spread_ticks: "
                "exactly one must be set for kind = 'fixed_spread'"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Order the sources: overrides, then environment, then the TOML file."""
        return (init_settings, env_settings, _TomlSource(settings_cls))


_toml_data: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "mmbot_toml_data", default=None
)


class _TomlSource(PydanticBaseSettingsSource):
    """The TOML file read by ``load_settings``, lowest priority above the defaults."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        data = _toml_data.get() or {}
        return data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_toml_data.get() or {})


def _check_environment(environ: dict[str, str]) -> None:
    """Reject ``MMBOT_`` variables that name no setting (pydantic ignores unknown top keys)."""
    sections = set(Settings.model_fields)
    for name in environ:
        if not name.startswith(ENV_PREFIX) or name in NON_SETTING_ENV:
            continue
        top = name[len(ENV_PREFIX) :].split("__", 1)[0].lower()
        if top not in sections:
            raise ConfigError(name, "unknown setting in the environment")


def _field_path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(settings)"


def load_settings(
    path: Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Load settings from a TOML file, the environment and explicit overrides.

    Args:
        path: TOML file, or None for defaults plus environment.
        overrides: nested dict of values that win over everything (command-line flags).
        environ: the environment to check for unknown ``MMBOT_`` variables (default
            ``os.environ``).

    Returns:
        The frozen settings.

    Raises:
        ConfigError: the file is missing or not TOML, or a field is unknown or invalid; the
            error names the field as a dotted path.
    """
    _check_environment(dict(os.environ if environ is None else environ))
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError as exc:
            raise ConfigError("--config", f"file not found: {path}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("--config", f"{path} is not valid TOML: {exc}") from exc
    for secret in ("api_key", "api_secret"):
        if secret in data:
            raise ConfigError(secret, "API keys are read from the environment only, never files")
    token = _toml_data.set(data)
    try:
        return Settings(**(overrides or {}))
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(_field_path(err["loc"]), err["msg"]) from exc
    finally:
        _toml_data.reset(token)


def merge_overrides(*pairs: tuple[str, Any]) -> dict[str, Any]:
    """Build a nested override dict from ``("section.key", value)`` pairs, skipping None values."""
    out: dict[str, Any] = {}
    for dotted, value in pairs:
        if value is None:
            continue
        node = out
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def snapshot(settings: Settings) -> dict[str, Any]:
    """Return the settings as plain JSON-able data, secrets excluded."""
    return settings.model_dump(mode="json", exclude={"api_key", "api_secret"})
