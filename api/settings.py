"""The one settings object, validated once at start-up.

Settings are grouped by concern (``settings.database``, ``settings.http``, ``settings.graph``,
``settings.city``, ``settings.oauth``, ``settings.policy``, ``settings.logging``); each group
reads its own ``LIGHTHOUSE_*`` variables from the environment (or a ``.env`` file). A missing or
malformed value stops start-up with a message that names the variable. New concerns (serving,
licensing, Open311) add a group of their own here.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

import pydantic_settings
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
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from api import bundled


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


def _env(name: str) -> Any:
    """A field read from ``LIGHTHOUSE_<NAME>`` whatever its group's prefix (the variable names
    predate the grouping and stay as they are)."""
    return Field(validation_alias=f"LIGHTHOUSE_{name}")


class SettingsGroup(BaseSettings):
    """One concern's settings; ``env_prefix`` names its variables unless a field says otherwise."""

    model_config = SettingsConfigDict(
        env_prefix="LIGHTHOUSE_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
    )

    @classmethod
    def variable(cls, location: str) -> str:
        """The environment variable behind an error's location: a field named by its own
        variable (an alias) or by its name under the group's prefix."""
        if location.startswith("LIGHTHOUSE_"):
            return location
        return f"{cls.model_config.get('env_prefix', '')}{location}".upper()


class DatabaseSettings(SettingsGroup):
    model_config = SettingsConfigDict(env_prefix="LIGHTHOUSE_DATABASE_")

    url: PostgresUrl | None = Field(
        default=None,
        description=(
            "Connection URL of the application role (no table ownership, no BYPASSRLS). "
            "Unset: an embedded PostgreSQL is started under data_dir."
        ),
    )
    owner_url: PostgresUrl | None = Field(
        default=None,
        description="Connection URL of the role that owns the schema; used by migrations and seeding.",
    )
    app_role: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,62}$")] = "lighthouse_app"
    pool_min_size: Annotated[int, Field(ge=0, le=100)] = 2
    pool_max_size: Annotated[int, Field(ge=1, le=500)] = 10
    statement_timeout_ms: Annotated[int, Field(ge=100, le=600_000)] = 15_000
    plan_cache_mode: Literal["auto", "force_generic_plan", "force_custom_plan"] = Field(
        default="force_generic_plan",
        description=(
            "PostgreSQL's plan_cache_mode for the gateway's connections. Its statements are "
            "prepared once per connection; a generic plan is made once, where 'auto' may plan "
            "a compiled document's statement afresh on every request."
        ),
    )
    data_dir: Path = Field(default=Path(".lighthouse"), validation_alias="LIGHTHOUSE_DATA_DIR")
    migrate_on_start: bool | None = Field(
        default=None,
        validation_alias="LIGHTHOUSE_MIGRATE_ON_START",
        description="Run migrations when the server starts; defaults to on for the embedded database.",
    )
    migrations_dir: Path = Field(
        default_factory=lambda: bundled.directory("migrations"),
        validation_alias="LIGHTHOUSE_MIGRATIONS_DIR",
    )

    @model_validator(mode="after")
    def _pool_bounds(self) -> DatabaseSettings:
        if self.pool_min_size > self.pool_max_size:
            raise ValueError(
                "LIGHTHOUSE_DATABASE_POOL_MIN_SIZE must not exceed LIGHTHOUSE_DATABASE_POOL_MAX_SIZE"
            )
        return self

    @property
    def embedded(self) -> bool:
        return self.url is None


class HttpSettings(SettingsGroup):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    workers: Annotated[int, Field(ge=1, le=64)] = 1
    event_loop: Literal["auto", "asyncio", "uvloop"] = Field(
        default="auto", description="The event loop uvicorn runs (auto: uvloop when installed)."
    )
    graphiql: bool | None = Field(
        default=None, description="Serve GraphiQL; defaults to on outside production."
    )
    server_timing: bool | None = Field(
        default=None,
        description="Report auth, policy and audit time in a Server-Timing header; on outside production.",
    )
    max_body_bytes: Annotated[int, Field(ge=1024, le=512 * 1024 * 1024)] = Field(
        default=1024 * 1024,
        description="The largest request body any route reads; larger ones get 413 unread.",
    )
    max_body_seconds: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=60.0,
        description="How long a request body may take to arrive in full; a slower one gets 408.",
    )
    metrics_secret_file: Path | None = Field(
        default=None,
        validation_alias="LIGHTHOUSE_METRICS_SECRET_FILE",
        description="A file of scrape secrets (one per line): /metrics then needs one as a bearer "
        "token, from anywhere. Unset: served to this machine only, and in production not at all.",
    )
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        max_length=100,
        description="The origins whose pages may call the gateway from a browser, exact and "
        "comma-separated (https://board.example.gov.tw,http://localhost:5173); none by default.",
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _listed(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("cors_origins")
    @classmethod
    def _exact_origins(cls, origins: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(exact_origin(origin) for origin in origins)


class GraphSettings(SettingsGroup):
    max_query_depth: Annotated[int, Field(ge=2, le=50)] = 10
    max_aliases: Annotated[int, Field(ge=1, le=1000)] = 30
    max_tokens: Annotated[int, Field(ge=50, le=100_000)] = 2_000
    max_page_size: Annotated[int, Field(ge=1, le=1000)] = 100
    max_subscriptions_per_connection: Annotated[int, Field(ge=1, le=1000)] = 20
    max_document_bytes: Annotated[int, Field(ge=256, le=1024 * 1024)] = Field(
        default=64 * 1024,
        description="The largest GraphQL document (comments included), refused before parsing.",
    )
    document_cache_entries: Annotated[int, Field(ge=0, le=100_000)] = 512
    document_cache_bytes: Annotated[int, Field(ge=0, le=256 * 1024 * 1024)] = Field(
        default=4 * 1024 * 1024, description="Bytes of document text the parse cache may keep."
    )
    max_websockets: Annotated[int, Field(ge=1, le=100_000)] = Field(
        default=1000, description="Open WebSocket connections per gateway process."
    )
    max_websockets_per_principal: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=8, description="Open WebSocket connections per caller, per gateway process."
    )
    connection_init_seconds: Annotated[int, Field(ge=1, le=300)] = Field(
        default=10, description="How long a WebSocket may wait before connection_init."
    )
    trusted_documents_only: bool = Field(
        default=False,
        description="Run registered documents only (by documentId, or a text that is one); "
        "any other document is refused with TRUSTED_DOCUMENT_REQUIRED.",
    )
    compiled_documents: bool = Field(
        default=True,
        description="Answer a request that names a registered query the planner compiled with "
        "its one SQL statement (off: every request runs on the resolvers).",
    )
    subgraph: str | None = Field(
        default=None,
        description="Serve one domain alone as a federation subgraph (incidents, assets, "
        "bureaus, models, licensing, audit, documents); unset: the unified graph.",
    )


def exact_origin(origin: str) -> str:
    """``origin`` as browsers send it (scheme://host[:port], lower case, no default port), or a
    ValueError saying why it is not one. A wildcard is refused: it would let any site's pages
    call the graph with the tokens its users hold."""
    if "*" in origin:
        raise ValueError(f"{origin!r}: exact origins only, no wildcard")
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError as error:
        raise ValueError(f"{origin!r} is not an origin: {error}") from None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username is not None
    ):
        raise ValueError(f"{origin!r} is not an origin (scheme://host[:port], nothing after)")
    default = {"http": 80, "https": 443}[parts.scheme]
    shown = "" if port in (None, default) else f":{port}"
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}{shown}"


class CitySettings(SettingsGroup):
    model_config = SettingsConfigDict(env_prefix="LIGHTHOUSE_CITY_")

    timezone: str = "Asia/Taipei"
    # The city's Open311 jurisdiction_id: a request naming another is answered 404.
    jurisdiction: Annotated[str, Field(min_length=1, max_length=100)] = "kaohsiung.gov.tw"
    idempotency_key_ttl_hours: Annotated[int, Field(ge=1, le=24 * 90)] = Field(
        default=72, validation_alias="LIGHTHOUSE_IDEMPOTENCY_KEY_TTL_HOURS"
    )

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown time zone {value!r}") from error
        return value


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


class OAuthSettings(SettingsGroup):
    model_config = SettingsConfigDict(env_prefix="LIGHTHOUSE_OAUTH_")

    issuer: str | None = Field(
        default=None, description="This service's issuer URL; defaults to http://HOST:PORT."
    )
    audience: str = Field(
        default="urn:lighthouse:api", description="The audience of access tokens for this API."
    )
    access_token_ttl_seconds: Annotated[int, Field(ge=60, le=86_400)] = Field(
        default=900, validation_alias="LIGHTHOUSE_ACCESS_TOKEN_TTL_SECONDS"
    )
    signing_algorithm: Literal["ES256", "RS256"] = Field(
        default="ES256", validation_alias="LIGHTHOUSE_SIGNING_ALGORITHM"
    )
    key_encryption_key: SecretStr | None = Field(
        default=None,
        validation_alias="LIGHTHOUSE_KEY_ENCRYPTION_KEY",
        description="Base64 of 32 random bytes; encrypts signing keys at rest. Required in production.",
    )
    key_activation_delay_seconds: Annotated[int, Field(ge=0, le=86_400)] = Field(
        default=600, validation_alias="LIGHTHOUSE_KEY_ACTIVATION_DELAY_SECONDS"
    )
    token_requests_per_minute: Annotated[int, Field(ge=1, le=100_000)] = Field(
        default=60,
        validation_alias="LIGHTHOUSE_TOKEN_REQUESTS_PER_MINUTE",
        description="Tokens one authenticated client may be issued per minute.",
    )
    failed_token_requests_per_minute: Annotated[int, Field(ge=1, le=100_000)] = Field(
        default=30,
        validation_alias="LIGHTHOUSE_FAILED_TOKEN_REQUESTS_PER_MINUTE",
        description="Failed token requests (bad credentials) one source address may make per minute.",
    )
    refusals_per_minute: Annotated[int, Field(ge=1, le=100_000)] = Field(
        default=60,
        validation_alias="LIGHTHOUSE_REFUSALS_PER_MINUTE",
        description="Refused requests (bad tokens, bad bodies) one source may make per minute before 429.",
    )
    audit_anchor_seconds: Annotated[int, Field(ge=0, le=7 * 86_400)] = Field(
        default=3600,
        validation_alias="LIGHTHOUSE_AUDIT_ANCHOR_SECONDS",
        description="How often the audit chain's head is signed and published (0: never).",
    )
    trusted_issuers: list[TrustedIssuer] = Field(
        default_factory=list, validation_alias="LIGHTHOUSE_TRUSTED_ISSUERS"
    )
    jwks_refresh_seconds: Annotated[int, Field(ge=10, le=86_400)] = Field(
        default=300, validation_alias="LIGHTHOUSE_JWKS_REFRESH_SECONDS"
    )
    clock_skew_seconds: Annotated[int, Field(ge=0, le=300)] = Field(
        default=30, validation_alias="LIGHTHOUSE_CLOCK_SKEW_SECONDS"
    )

    @model_validator(mode="after")
    def _key_encryption_key(self) -> OAuthSettings:
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


class PolicySettings(SettingsGroup):
    model_config = SettingsConfigDict(env_prefix="LIGHTHOUSE_POLICIES_")

    dir: Path = Field(default_factory=lambda: bundled.directory("policies"))


class ServingSettings(SettingsGroup):
    """The serving tier (Ray Serve LLM), reached over its OpenAI-compatible HTTP API."""

    model_config = SettingsConfigDict(env_prefix="LIGHTHOUSE_SERVING_")

    url: str = Field(default="http://127.0.0.1:8100", description="The tier's base URL.")
    model: str = Field(
        default="lighthouse-tiny-vlm", description="The served vision model the workers use."
    )
    model_version: str = Field(
        default="1", description="The version recorded with each analysis (the model registry)."
    )
    secret_file: Path | None = Field(
        default=Path(".lighthouse/serving/caller-secret"),
        description="The tier's callers' secret (its first line is sent); where "
        "`lighthouse serving up` writes it by default. Read again when it changes.",
    )
    timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 60.0
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    config: Path | None = Field(
        default=None,
        description="The serving config `lighthouse serving up` starts (default: the CPU tiny one).",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http(s) URL")
        return value


class VisionSettings(SettingsGroup):
    """Camera frames: intake limits, storage, the analysis workers and when findings count."""

    model_config = SettingsConfigDict(env_prefix="LIGHTHOUSE_VISION_")

    frames_dir: Path = Field(
        default=Path(".lighthouse/frames"),
        description="Where frames are stored, by the SHA-256 of their bytes.",
    )
    max_frame_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 8 * 1024 * 1024
    max_frame_pixels: Annotated[int, Field(ge=1024, le=200_000_000)] = 40_000_000
    max_concurrent_decodes: Annotated[int, Field(ge=1, le=64)] = Field(
        default=2,
        description="Uploaded images checked at once per gateway process; more wait their turn.",
    )
    decoding_budget_pixels: Annotated[int | None, Field(ge=1024, le=2_000_000_000)] = Field(
        default=None,
        description="Pixels being decoded at once per gateway process, all images together "
        "(about 8 bytes of memory each); an image waits until its pixels fit. At least "
        "max_frame_pixels; that by default.",
    )
    max_concurrent_analyses: Annotated[int, Field(ge=1, le=256)] = Field(
        default=4,
        description="analyzeImage calls per gateway process at once; more are refused (429).",
    )
    worker_concurrency: Annotated[int, Field(ge=1, le=256)] = Field(
        default=4, description="Frames analysed at once, across all workers."
    )
    max_attempts: Annotated[int, Field(ge=1, le=100)] = Field(
        default=5,
        description="Failed analyses (not counting a serving outage) before a frame is dead-lettered.",
    )
    max_answer_tokens: Annotated[int, Field(ge=1, le=4096)] = Field(
        default=300,
        description="Tokens the model may answer with; an answer cut short is UNUSABLE.",
    )
    outage_retry_max_seconds: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=60.0,
        description="While the serving tier is down, frames are retried at most this far apart.",
    )
    canary_check_seconds: Annotated[float, Field(ge=0.1, le=3600)] = Field(
        default=60.0,
        description="How often each worker checks a canary against its rejected-share bound.",
    )
    threshold: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.5, description="The confidence a finding needs to open or join an incident."
    )
    thresholds: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=dict, description="Per category, overriding the threshold (JSON)."
    )
    # At most 500 m: detections lock the grid cells (0.01°) around them, and two points closer
    # than a cell must share one (0.01° of longitude is over 500 m up to latitude 60°).
    dedup_meters: Annotated[float, Field(gt=0, le=500)] = Field(
        default=50.0, description="An open incident of the same category this near is joined."
    )
    dedup_hours: Annotated[float, Field(gt=0, le=24 * 30)] = Field(
        default=24.0, description="...if it was reported within these hours."
    )

    def threshold_for(self, category: str) -> float:
        return self.thresholds.get(category, self.threshold)

    @property
    def decoding_budget(self) -> int:
        return self.decoding_budget_pixels or self.max_frame_pixels

    @model_validator(mode="after")
    def _a_frame_fits_the_budget(self) -> VisionSettings:
        if self.decoding_budget < self.max_frame_pixels:
            raise ValueError(
                "LIGHTHOUSE_VISION_DECODING_BUDGET_PIXELS must be at least "
                "LIGHTHOUSE_VISION_MAX_FRAME_PIXELS (a frame at the limit must fit)"
            )
        return self


class MeteringSettings(SettingsGroup):
    """Metered inference for licensees (``/v1``): how a request's largest cost is bounded before
    it is forwarded, and how long a reservation may live."""

    model_config = SettingsConfigDict(env_prefix="LIGHTHOUSE_METERING_")

    max_request_bytes: Annotated[int, Field(ge=1024, le=256 * 1024 * 1024)] = Field(
        default=24 * 1024 * 1024,
        description="The largest /v1 request body (images travel in it, base64-encoded).",
    )
    image_tokens: Annotated[int, Field(ge=1, le=100_000)] = Field(
        default=1_600,
        description="Input tokens an image may cost at most (the model's largest image, in "
        "patches): reserved per image, settled at what the model reports.",
    )
    message_tokens: Annotated[int, Field(ge=0, le=10_000)] = Field(
        default=16,
        description="Input tokens the chat template may add per message, reserved on top of "
        "the text's bytes (a byte-level tokenizer never makes more tokens than bytes).",
    )
    lease_seconds: Annotated[int, Field(ge=10, le=86_400)] = Field(
        default=900,
        description="A reservation left by a gateway that died is given back after this long "
        "(longer than any request may take).",
    )
    sweep_seconds: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=30.0, description="How often each gateway gives back expired reservations."
    )
    admission_group: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=64,
        description="The most calls of one licensee admitted together, in one transaction "
        "(calls that arrive while a group is admitted wait for the next one).",
    )
    max_waiting_admissions: Annotated[int, Field(ge=1, le=100_000)] = Field(
        default=1024,
        description="The most calls of one licensee waiting to be admitted by one gateway "
        "process; more are refused with 503 at once.",
    )
    retention_days: Annotated[int, Field(ge=1, le=3650)] = Field(
        default=400,
        description="Usage records older than this are deleted by `lighthouse licensing rollup` "
        "once their day is rolled up (the daily totals stay).",
    )


class ConsoleSettings(SettingsGroup):
    """The operations console (``/console``) and how its people sign in: the city's single
    sign-on, an OpenID Connect provider the console reaches as a public client (authorization
    code with PKCE). Its tokens must be ones the gateway accepts (``LIGHTHOUSE_TRUSTED_ISSUERS``).
    Unset outside production, the gateway's own demo sign-in offers the demo principals."""

    model_config = SettingsConfigDict(env_prefix="LIGHTHOUSE_CONSOLE_")

    enabled: bool = Field(default=True, description="Serve the console at /console.")
    authorization_endpoint: str | None = Field(
        default=None, description="The single sign-on's authorization endpoint (https URL)."
    )
    token_endpoint: str | None = Field(
        default=None, description="The single sign-on's token endpoint (https URL)."
    )
    revocation_endpoint: str | None = Field(
        default=None,
        description="The single sign-on's revocation endpoint (RFC 7009): signing out revokes "
        "the console's token there, so it stops everywhere at once.",
    )
    client_id: str = Field(
        default="lighthouse-console",
        pattern=r"^[A-Za-z0-9._:-]{1,200}$",
        description="The console's client id at the single sign-on (a public client).",
    )
    scope: str = Field(
        default="openid",
        pattern=r"^[\x21\x23-\x5B\x5D-\x7E]+( [\x21\x23-\x5B\x5D-\x7E]+)*$",
        description="The scopes the console asks for, space-separated.",
    )
    resource: str | None = Field(
        default=None,
        description="The resource indicator (RFC 8707) to ask tokens for: the gateway's "
        "audience at the single sign-on, when it needs one.",
    )
    tiles_url: str | None = Field(
        default=None,
        description="The city's own raster tile server for the console's map, as a template "
        "(https://tiles.example.gov.tw/{z}/{x}/{y}.png); unset: a plain background.",
    )
    outline: str = Field(
        default="高雄市",
        max_length=4096,
        description="The outline the console's map draws: a Taiwanese county or special "
        "municipality by name (高雄市, Kaohsiung City) or code (64000), from the Ministry of "
        "the Interior's boundaries the console's build holds; or the path of a GeoJSON file "
        "(.geojson or .json: polygons in WGS84, at most 2 MiB); empty: none.",
    )

    @field_validator("authorization_endpoint", "token_endpoint", "revocation_endpoint", "tiles_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("https", "http"):
            raise ValueError("must be an http(s) URL")
        return value

    @model_validator(mode="after")
    def _both(self) -> ConsoleSettings:
        if (self.authorization_endpoint is None) != (self.token_endpoint is None):
            raise ValueError(
                "set both LIGHTHOUSE_CONSOLE_AUTHORIZATION_ENDPOINT and _TOKEN_ENDPOINT, or neither"
            )
        return self


class LoggingSettings(SettingsGroup):
    model_config = SettingsConfigDict(env_prefix="LIGHTHOUSE_LOG_")

    level: Annotated[str, Field(pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")] = "INFO"
    format: LogFormat = LogFormat.JSON

    @field_validator("level", mode="before")
    @classmethod
    def _any_case(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value


class Settings(BaseModel):
    """Every group, and the checks that span groups."""

    model_config = ConfigDict(frozen=True)

    GROUPS: ClassVar[dict[str, type[SettingsGroup]]] = {
        "database": DatabaseSettings,
        "http": HttpSettings,
        "graph": GraphSettings,
        "city": CitySettings,
        "oauth": OAuthSettings,
        "policy": PolicySettings,
        "serving": ServingSettings,
        "vision": VisionSettings,
        "metering": MeteringSettings,
        "console": ConsoleSettings,
        "logging": LoggingSettings,
    }

    environment: Environment = Environment.DEVELOPMENT
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    graph: GraphSettings = Field(default_factory=GraphSettings)
    city: CitySettings = Field(default_factory=CitySettings)
    oauth: OAuthSettings = Field(default_factory=OAuthSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    vision: VisionSettings = Field(default_factory=VisionSettings)
    metering: MeteringSettings = Field(default_factory=MeteringSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.environment is Environment.PRODUCTION and self.database.url is None:
            raise ValueError(
                "LIGHTHOUSE_DATABASE_URL is required in production "
                "(the embedded PostgreSQL is for development, tests and the demo)"
            )
        if self.environment is Environment.PRODUCTION and self.oauth.key_encryption_key is None:
            raise ValueError(
                "LIGHTHOUSE_KEY_ENCRYPTION_KEY is required in production "
                "(base64 of 32 random bytes: python -c 'import os,base64;"
                "print(base64.b64encode(os.urandom(32)).decode())')"
            )
        return self

    @property
    def uses_embedded_database(self) -> bool:
        return self.database.embedded

    @property
    def graphiql_enabled(self) -> bool:
        if self.http.graphiql is not None:
            return self.http.graphiql
        return self.environment is not Environment.PRODUCTION

    @property
    def demo_sign_in_enabled(self) -> bool:
        """The gateway's own sign-in page for the demo principals: outside production, when no
        single sign-on is configured for the console."""
        return (
            self.environment is not Environment.PRODUCTION
            and self.console.authorization_endpoint is None
        )

    @property
    def server_timing_enabled(self) -> bool:
        if self.http.server_timing is not None:
            return self.http.server_timing
        return self.environment is not Environment.PRODUCTION

    @property
    def issuer(self) -> str:
        return self.oauth.issuer or f"http://{self.http.host}:{self.http.port}"

    @property
    def should_migrate_on_start(self) -> bool:
        if self.database.migrate_on_start is not None:
            return self.database.migrate_on_start
        return self.database.embedded


class _EnvironmentSetting(SettingsGroup):
    environment: Environment = Environment.DEVELOPMENT


def load_settings(**groups: Any) -> Settings:
    """Build the settings from the environment, turning every validation error of every group
    into one message that names the variables. ``groups`` replaces whole groups
    (``database=DatabaseSettings(url=...)``) or the ``environment``."""
    problems: list[str] = []
    built: dict[str, Any] = {}
    everything: dict[str, type[SettingsGroup]] = {"environment": _EnvironmentSetting}
    everything.update(Settings.GROUPS)
    for name, group in everything.items():
        if name in groups:
            built[name] = groups[name]
            continue
        try:
            value = group()
        except ValidationError as error:
            problems.extend(_describe(group, error))
            continue
        except pydantic_settings.SettingsError as error:  # a JSON-valued variable that is not
            problems.append(_undecodable(group, error))
            continue
        built[name] = value.environment if isinstance(value, _EnvironmentSetting) else value
    if not problems:
        try:
            return Settings(**built)
        except ValidationError as error:
            problems.extend(
                str(item["msg"]).removeprefix("Value error, ") for item in error.errors()
            )
    raise SettingsError(
        "invalid configuration:\n  " + "\n  ".join(problems) + "\nSee README.md, 'Configuration'."
    )


def _undecodable(group: type[SettingsGroup], error: Exception) -> str:
    """A variable whose value pydantic-settings could not decode (JSON), by its name."""
    named = re.search(r'field "([^"]+)"', str(error))
    field = named.group(1) if named else ""
    alias = group.model_fields[field].validation_alias if field in group.model_fields else None
    variable = alias if isinstance(alias, str) else group.variable(field or "?")
    cause = f" ({error.__cause__})" if error.__cause__ is not None else ""
    return f"{variable}: not valid JSON{cause}"


def _describe(group: type[SettingsGroup], error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors():
        message = str(item["msg"]).removeprefix("Value error, ")
        if not item["loc"]:
            problems.append(message)  # a check across the group's fields names them itself
            continue
        problems.append(f"{group.variable(str(item['loc'][0]))}: {message}")
    return problems
