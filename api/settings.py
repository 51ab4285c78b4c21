"""The one settings object, validated once at start-up.

Every value comes from the environment with the ``LIGHTHOUSE_`` prefix (or a ``.env`` file).
A missing or malformed value stops start-up with a message that names the variable.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent


def _postgres_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError("must be a postgresql:// URL")
    if not parts.path.strip("/"):
        raise ValueError("must name a database (postgresql://user@host:port/DATABASE)")
    if not parts.hostname and "host=" not in parts.query:
        raise ValueError("must name a host, or a socket directory with ?host=/path")
    return value


# A PostgreSQL URL; unlike pydantic's PostgresDsn it admits Unix-socket URLs (?host=/dir).
PostgresUrl = Annotated[str, AfterValidator(_postgres_url)]


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"


class SettingsError(Exception):
    """Raised when the environment does not describe a valid configuration."""


class TrustedIssuer(BaseModel):
    """An external OpenID Connect / OAuth issuer whose access tokens this API accepts.

    Claims are mapped to a principal by configuration: ``bureau_claim`` names the claim that
    holds the bureau's code (``bureau_map`` translates the issuer's codes to Lighthouse's),
    ``roles_claim`` the list of roles, ``scope_claim`` the space-separated scopes.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    issuer: str
    audience: str
    jwks_uri: str | None = None
    algorithms: list[Literal["RS256", "ES256", "PS256", "EdDSA"]] = ["RS256"]
    subject_claim: str = "sub"
    bureau_claim: str = "bureau"
    bureau_map: dict[str, str] = Field(default_factory=dict)
    roles_claim: str = "roles"
    scope_claim: str = "scope"
    kind: Literal["staff", "service"] = "staff"

    @field_validator("issuer", "jwks_uri")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("https", "http"):
            raise ValueError("must be an http(s) URL")
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LIGHTHOUSE_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    environment: Environment = Environment.DEVELOPMENT

    # --- database -------------------------------------------------------------------------
    database_url: PostgresUrl | None = Field(
        default=None,
        description=(
            "Connection URL of the application role (no table ownership, no BYPASSRLS). "
            "Unset: an embedded PostgreSQL is started under data_dir."
        ),
    )
    database_owner_url: PostgresUrl | None = Field(
        default=None,
        description="Connection URL of the role that owns the schema; used by migrations and seeding.",
    )
    database_app_role: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,62}$")] = "lighthouse_app"
    database_pool_min_size: Annotated[int, Field(ge=0, le=100)] = 2
    database_pool_max_size: Annotated[int, Field(ge=1, le=500)] = 10
    database_statement_timeout_ms: Annotated[int, Field(ge=100, le=600_000)] = 15_000
    data_dir: Path = Path(".lighthouse")
    migrate_on_start: bool | None = Field(
        default=None,
        description="Run migrations when the server starts; defaults to on for the embedded database.",
    )
    migrations_dir: Path = REPOSITORY_ROOT / "migrations"

    # --- HTTP -----------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    workers: Annotated[int, Field(ge=1, le=64)] = 1
    graphiql: bool | None = Field(
        default=None, description="Serve GraphiQL; defaults to on outside production."
    )

    # --- GraphQL limits -------------------------------------------------------------------
    max_query_depth: Annotated[int, Field(ge=2, le=50)] = 10
    max_aliases: Annotated[int, Field(ge=1, le=1000)] = 30
    max_tokens: Annotated[int, Field(ge=50, le=100_000)] = 2_000
    max_page_size: Annotated[int, Field(ge=1, le=1000)] = 100
    max_subscriptions_per_connection: Annotated[int, Field(ge=1, le=1000)] = 20

    # --- domain ---------------------------------------------------------------------------
    city_timezone: str = "Asia/Taipei"
    idempotency_key_ttl_hours: Annotated[int, Field(ge=1, le=24 * 90)] = 72

    # --- identity and policy -------------------------------------------------------------
    oauth_issuer: str | None = Field(
        default=None,
        description="This service's issuer URL; defaults to http://HOST:PORT.",
    )
    oauth_audience: str = Field(
        default="urn:lighthouse:api", description="The audience of access tokens for this API."
    )
    access_token_ttl_seconds: Annotated[int, Field(ge=60, le=86_400)] = 900
    signing_algorithm: Literal["ES256", "RS256"] = "ES256"
    key_encryption_key: SecretStr | None = Field(
        default=None,
        description="Base64 of 32 random bytes; encrypts signing keys at rest. Required in production.",
    )
    key_activation_delay_seconds: Annotated[int, Field(ge=0, le=86_400)] = 600
    token_requests_per_minute: Annotated[int, Field(ge=1, le=100_000)] = 60
    trusted_issuers: list[TrustedIssuer] = Field(default_factory=list)
    jwks_refresh_seconds: Annotated[int, Field(ge=10, le=86_400)] = 300
    policies_dir: Path = REPOSITORY_ROOT / "policies"
    clock_skew_seconds: Annotated[int, Field(ge=0, le=300)] = 30

    server_timing: bool | None = Field(
        default=None,
        description="Report auth, policy and audit time in a Server-Timing header; on outside production.",
    )

    # --- logging --------------------------------------------------------------------------
    log_level: Annotated[str, Field(pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")] = "INFO"
    log_format: LogFormat = LogFormat.JSON

    @field_validator("city_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown time zone {value!r}") from error
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.database_pool_min_size > self.database_pool_max_size:
            raise ValueError(
                "LIGHTHOUSE_DATABASE_POOL_MIN_SIZE must not exceed LIGHTHOUSE_DATABASE_POOL_MAX_SIZE"
            )
        if self.environment is Environment.PRODUCTION and self.database_url is None:
            raise ValueError(
                "LIGHTHOUSE_DATABASE_URL is required in production "
                "(the embedded PostgreSQL is for development, tests and the demo)"
            )
        if self.environment is Environment.PRODUCTION and self.key_encryption_key is None:
            raise ValueError(
                "LIGHTHOUSE_KEY_ENCRYPTION_KEY is required in production "
                "(base64 of 32 random bytes: python -c 'import os,base64;"
                "print(base64.b64encode(os.urandom(32)).decode())')"
            )
        if self.key_encryption_key is not None:
            import base64
            import binascii

            try:
                raw = base64.b64decode(self.key_encryption_key.get_secret_value(), validate=True)
            except binascii.Error:
                raw = b""
            if len(raw) != 32:
                raise ValueError("LIGHTHOUSE_KEY_ENCRYPTION_KEY must be base64 of exactly 32 bytes")
        return self

    @property
    def uses_embedded_database(self) -> bool:
        return self.database_url is None

    @property
    def graphiql_enabled(self) -> bool:
        if self.graphiql is not None:
            return self.graphiql
        return self.environment is not Environment.PRODUCTION

    @property
    def server_timing_enabled(self) -> bool:
        if self.server_timing is not None:
            return self.server_timing
        return self.environment is not Environment.PRODUCTION

    @property
    def issuer(self) -> str:
        return self.oauth_issuer or f"http://{self.host}:{self.port}"

    @property
    def should_migrate_on_start(self) -> bool:
        if self.migrate_on_start is not None:
            return self.migrate_on_start
        return self.uses_embedded_database


def load_settings(**overrides: object) -> Settings:
    """Build the settings from the environment, turning validation errors into one clear message."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        problems = []
        for item in error.errors():
            location = [str(part) for part in item["loc"]]
            name = "LIGHTHOUSE_" + location[0].upper() if location else "LIGHTHOUSE settings"
            problems.append(f"{name}: {item['msg']}")
        raise SettingsError(
            "invalid configuration:\n  "
            + "\n  ".join(problems)
            + "\nSee README.md, 'Configuration'."
        ) from None
