from __future__ import annotations

import math
from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.settings import load_settings, merge_overrides, snapshot


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_defaults_load_without_a_file() -> None:
    settings = load_settings(environ={})
    assert settings.market.venue == "sim"
    assert math.isinf(settings.risk.max_loss)


def test_numbers_must_be_finite_but_risk_limits_may_be_inf(tmp_path: Path) -> None:
    for text, field in (("[market]\ntick_size = inf\n", "market.tick_size"),
                        ("[model]\nsigma = nan\n", "model.sigma"),
                        ("[strategy]\ndrift = nan\n", "strategy.drift"),
                        ("[model]\na_bounds = [0.1, inf]\n", "model.a_bounds.1"),
                        ("[risk]\nmax_inventory = inf\n", "risk.max_inventory"),
                        ("[risk]\nmin_half_spread_ticks = inf\n", "risk.min_half_spread_ticks"),
                        ("[risk]\nmax_loss = nan\n", "risk.max_loss")):
        with pytest.raises(ConfigError) as err:
            load_settings(write(tmp_path, text), environ={})
        assert err.value.field == field, text
    settings = load_settings(write(tmp_path, "[risk]\nmax_loss = inf\nmax_drawdown = inf\n"
                                             "max_orders_per_s = inf\n"), environ={})
    assert math.isinf(settings.risk.max_loss) and math.isinf(settings.risk.max_orders_per_s)


def test_unknown_key_in_a_section_is_an_error_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, "[risk]\nmax_inventry = 3\n"), environ={})
    assert err.value.field == "risk.max_inventry"


def test_unknown_section_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, "[riks]\nmax_inventory = 3\n"), environ={})
    assert err.value.field == "riks"


def test_wrong_value_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, "[risk]\nmax_inventory = -1\n"), environ={})
    assert err.value.field == "risk.max_inventory"


def test_wrong_type_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, '[strategy]\ngamma = "high"\n'), environ={})
    assert err.value.field == "strategy.gamma"


def test_not_toml_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_settings(write(tmp_path, "[risk\n"), environ={})


def test_environment_overrides_file_and_keeps_other_fields(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "[risk]\nmax_inventory = 3\nmax_loss = 50\n")
    monkeypatch.setenv("MMBOT_RISK__MAX_INVENTORY", "7")
    settings = load_settings(path)
    assert settings.risk.max_inventory == 7
    assert settings.risk.max_loss == 50


def test_cli_overrides_win_over_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "[risk]\nmax_inventory = 3\nmax_loss = 50\n")
    monkeypatch.setenv("MMBOT_RISK__MAX_INVENTORY", "7")
    settings = load_settings(path, merge_overrides(("risk.max_inventory", 9.0)))
    assert settings.risk.max_inventory == 9
    assert settings.risk.max_loss == 50


def test_unknown_environment_variable_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMBOT_RSIK__MAX_INVENTORY", "7")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert err.value.field == "MMBOT_RSIK__MAX_INVENTORY"


@pytest.mark.parametrize("name", ["MMBOT_PURE_PYTHON", "MMBOT_REQUIRE_CBOOK",
                                  "MMBOT_REQUIRE_SHARED_DATA", "MMBOT_REQUIRE_RAY"])
def test_switches_that_are_not_settings_are_let_through(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv(name, "1")
    assert load_settings().risk == load_settings(environ={}).risk


def test_unknown_nested_environment_variable_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMBOT_RISK__MAX_INVENTRY", "7")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "max_inventry" in err.value.field.lower()


def test_api_keys_in_a_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, 'api_key = "abc"\n'), environ={})
    assert err.value.field == "api_key"


def test_api_keys_come_from_environment_and_never_reach_the_snapshot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MMBOT_API_KEY", "very-secret-key")
    settings = load_settings()
    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == "very-secret-key"
    assert "very-secret-key" not in str(snapshot(settings))
    assert "very-secret-key" not in repr(settings)


def test_fixed_spread_needs_exactly_one_half_spread(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, '[strategy]\nkind = "fixed_spread"\n'), environ={})
    assert "half_spread" in str(err.value)


def test_shipped_configs_load(monkeypatch: pytest.MonkeyPatch) -> None:
    configs = sorted((Path(__file__).parents[1] / "config").glob("*.toml"))
    assert configs, "config/ must ship ready-to-run TOML files"
    for path in configs:
        load_settings(path)


def test_snapshot_round_trips_through_load(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "[risk]\nmax_inventory = 4\n"), environ={})
    data = snapshot(settings)
    again = load_settings(None, data, environ={})
    assert again == settings
