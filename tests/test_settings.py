from __future__ import annotations

import pytest

from api.settings import Environment, SettingsError, load_settings


def test_defaults_use_the_embedded_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIGHTHOUSE_DATABASE_URL", raising=False)
    settings = load_settings()
    assert settings.uses_embedded_database
    assert settings.should_migrate_on_start
    assert settings.graphiql_enabled


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LIGHTHOUSE_DATABASE_URL", "mysql://root@localhost/db"),
        ("LIGHTHOUSE_DATABASE_URL", "postgresql://user@host:5432/"),
        ("LIGHTHOUSE_PORT", "http"),
        ("LIGHTHOUSE_PORT", "70000"),
        ("LIGHTHOUSE_MAX_PAGE_SIZE", "0"),
        ("LIGHTHOUSE_CITY_TIMEZONE", "Mars/Olympus"),
        ("LIGHTHOUSE_ENVIRONMENT", "staging"),
        ("LIGHTHOUSE_LOG_LEVEL", "LOUD"),
    ],
)
def test_a_bad_setting_is_named(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert variable in str(error.value)


def test_socket_urls_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIGHTHOUSE_DATABASE_URL", "postgresql://lighthouse_app@/city?host=/run/pg")
    assert load_settings().database.url == "postgresql://lighthouse_app@/city?host=/run/pg"


def test_production_requires_a_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIGHTHOUSE_ENVIRONMENT", "production")
    monkeypatch.delenv("LIGHTHOUSE_DATABASE_URL", raising=False)
    with pytest.raises(SettingsError, match="LIGHTHOUSE_DATABASE_URL is required in production"):
        load_settings()
    monkeypatch.setenv(
        "LIGHTHOUSE_DATABASE_URL", "postgresql://app@db.city.internal:5432/lighthouse"
    )
    with pytest.raises(SettingsError, match="LIGHTHOUSE_KEY_ENCRYPTION_KEY"):
        load_settings()
    monkeypatch.setenv(
        "LIGHTHOUSE_KEY_ENCRYPTION_KEY", "c2l4dGVlbi1ieXRlcy1rZXktc2l4dGVlbi1ieXRlcyE="
    )
    settings = load_settings()
    assert settings.environment is Environment.PRODUCTION
    assert not settings.graphiql_enabled
    assert not settings.should_migrate_on_start


def test_pool_bounds_are_consistent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIGHTHOUSE_DATABASE_POOL_MIN_SIZE", "20")
    monkeypatch.setenv("LIGHTHOUSE_DATABASE_POOL_MAX_SIZE", "5")
    with pytest.raises(SettingsError, match="LIGHTHOUSE_DATABASE_POOL_MIN_SIZE"):
        load_settings()
