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
        ("LIGHTHOUSE_CORS_ORIGINS", "*"),
        ("LIGHTHOUSE_CORS_ORIGINS", "https://*.kcg.gov.tw"),
        ("LIGHTHOUSE_CORS_ORIGINS", "https://board.kcg.gov.tw/app"),
        ("LIGHTHOUSE_CORS_ORIGINS", "https://board.kcg.gov.tw,file:///tmp/page.html"),
        ("LIGHTHOUSE_CORS_ORIGINS", "board.kcg.gov.tw"),
        ("LIGHTHOUSE_CORS_ORIGINS", "https://user@board.kcg.gov.tw"),
        ("LIGHTHOUSE_CORS_ORIGINS", "https://board.kcg.gov.tw:99999"),
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


def test_a_json_valued_variable_that_is_not_json_is_named_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LIGHTHOUSE_TRUSTED_ISSUERS", '[{"issuer": ')
    monkeypatch.setenv("LIGHTHOUSE_PORT", "http")  # reported with it, not instead of it
    with pytest.raises(SettingsError) as error:
        load_settings()
    said = str(error.value)
    assert "LIGHTHOUSE_TRUSTED_ISSUERS: not valid JSON (Expecting value" in said, said
    assert "LIGHTHOUSE_PORT" in said and "Traceback" not in said


def test_the_log_level_is_read_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    for given in ("debug", "Warning", " error "):
        monkeypatch.setenv("LIGHTHOUSE_LOG_LEVEL", given)
        assert load_settings().logging.level == given.strip().upper()


def test_cors_origins_are_read_as_browsers_send_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "LIGHTHOUSE_CORS_ORIGINS",
        " HTTPS://Board.KCG.gov.tw:443/ , http://localhost:5173,http://[::1]:8080,,",
    )
    assert load_settings().http.cors_origins == (
        "https://board.kcg.gov.tw",
        "http://localhost:5173",
        "http://[::1]:8080",
    )
    monkeypatch.delenv("LIGHTHOUSE_CORS_ORIGINS")
    assert load_settings().http.cors_origins == ()


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


# Every variable the service has ever read, with a value and where it lands: grouping the
# settings by concern kept every name.
EVERY_VARIABLE = [
    ("LIGHTHOUSE_ENVIRONMENT", "test", lambda s: s.environment.value),
    ("LIGHTHOUSE_DATABASE_URL", "postgresql://app@db:5432/city", lambda s: s.database.url),
    (
        "LIGHTHOUSE_DATABASE_OWNER_URL",
        "postgresql://own@db:5432/city",
        lambda s: s.database.owner_url,
    ),
    ("LIGHTHOUSE_DATABASE_APP_ROLE", "city_app", lambda s: s.database.app_role),
    ("LIGHTHOUSE_DATABASE_POOL_MIN_SIZE", "3", lambda s: s.database.pool_min_size),
    ("LIGHTHOUSE_DATABASE_POOL_MAX_SIZE", "30", lambda s: s.database.pool_max_size),
    ("LIGHTHOUSE_DATABASE_STATEMENT_TIMEOUT_MS", "2000", lambda s: s.database.statement_timeout_ms),
    ("LIGHTHOUSE_DATA_DIR", "/srv/lighthouse", lambda s: str(s.database.data_dir)),
    ("LIGHTHOUSE_MIGRATE_ON_START", "false", lambda s: s.database.migrate_on_start),
    ("LIGHTHOUSE_MIGRATIONS_DIR", "/srv/migrations", lambda s: str(s.database.migrations_dir)),
    ("LIGHTHOUSE_HOST", "0.0.0.0", lambda s: s.http.host),
    ("LIGHTHOUSE_PORT", "8101", lambda s: s.http.port),
    ("LIGHTHOUSE_WORKERS", "4", lambda s: s.http.workers),
    ("LIGHTHOUSE_EVENT_LOOP", "asyncio", lambda s: s.http.event_loop),
    ("LIGHTHOUSE_GRAPHIQL", "false", lambda s: s.http.graphiql),
    ("LIGHTHOUSE_SERVER_TIMING", "false", lambda s: s.http.server_timing),
    ("LIGHTHOUSE_MAX_QUERY_DEPTH", "12", lambda s: s.graph.max_query_depth),
    ("LIGHTHOUSE_MAX_ALIASES", "40", lambda s: s.graph.max_aliases),
    ("LIGHTHOUSE_MAX_TOKENS", "3000", lambda s: s.graph.max_tokens),
    ("LIGHTHOUSE_MAX_PAGE_SIZE", "50", lambda s: s.graph.max_page_size),
    (
        "LIGHTHOUSE_MAX_SUBSCRIPTIONS_PER_CONNECTION",
        "5",
        lambda s: s.graph.max_subscriptions_per_connection,
    ),
    ("LIGHTHOUSE_CITY_TIMEZONE", "Asia/Tokyo", lambda s: s.city.timezone),
    ("LIGHTHOUSE_IDEMPOTENCY_KEY_TTL_HOURS", "24", lambda s: s.city.idempotency_key_ttl_hours),
    ("LIGHTHOUSE_OAUTH_ISSUER", "https://api.kcg.gov.tw", lambda s: s.oauth.issuer),
    ("LIGHTHOUSE_OAUTH_AUDIENCE", "urn:kcg:api", lambda s: s.oauth.audience),
    ("LIGHTHOUSE_ACCESS_TOKEN_TTL_SECONDS", "600", lambda s: s.oauth.access_token_ttl_seconds),
    ("LIGHTHOUSE_SIGNING_ALGORITHM", "RS256", lambda s: s.oauth.signing_algorithm),
    (
        "LIGHTHOUSE_KEY_ACTIVATION_DELAY_SECONDS",
        "60",
        lambda s: s.oauth.key_activation_delay_seconds,
    ),
    ("LIGHTHOUSE_TOKEN_REQUESTS_PER_MINUTE", "10", lambda s: s.oauth.token_requests_per_minute),
    ("LIGHTHOUSE_JWKS_REFRESH_SECONDS", "60", lambda s: s.oauth.jwks_refresh_seconds),
    ("LIGHTHOUSE_CLOCK_SKEW_SECONDS", "5", lambda s: s.oauth.clock_skew_seconds),
    ("LIGHTHOUSE_POLICIES_DIR", "/srv/policies", lambda s: str(s.policy.dir)),
    ("LIGHTHOUSE_LOG_LEVEL", "DEBUG", lambda s: s.logging.level),
    ("LIGHTHOUSE_LOG_FORMAT", "console", lambda s: s.logging.format.value),
]


@pytest.mark.parametrize(("variable", "value", "read"), EVERY_VARIABLE)
def test_every_variable_keeps_its_name(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, read: object
) -> None:
    monkeypatch.setenv(variable, value)
    assert str(read(load_settings())).lower() == value.lower()  # type: ignore[operator]


def test_the_key_and_the_trusted_issuers_keep_their_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "LIGHTHOUSE_KEY_ENCRYPTION_KEY", "c2l4dGVlbi1ieXRlcy1rZXktc2l4dGVlbi1ieXRlcyE="
    )
    monkeypatch.setenv(
        "LIGHTHOUSE_TRUSTED_ISSUERS", '[{"issuer": "https://sso.kcg.gov.tw", "audience": "lh"}]'
    )
    settings = load_settings()
    assert settings.oauth.key_encryption_key is not None
    assert settings.oauth.trusted_issuers[0].issuer == "https://sso.kcg.gov.tw"
    monkeypatch.setenv("LIGHTHOUSE_TRUSTED_ISSUERS", '[{"issuer": "ftp://x", "audience": "lh"}]')
    with pytest.raises(SettingsError, match="LIGHTHOUSE_TRUSTED_ISSUERS"):
        load_settings()


def test_errors_in_several_groups_are_all_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIGHTHOUSE_PORT", "http")
    monkeypatch.setenv("LIGHTHOUSE_DATA_DIR", "")
    monkeypatch.setenv("LIGHTHOUSE_ACCESS_TOKEN_TTL_SECONDS", "5")
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert "LIGHTHOUSE_PORT" in str(error.value)
    assert "LIGHTHOUSE_ACCESS_TOKEN_TTL_SECONDS" in str(error.value)
