"""Shared fixtures: a real PostgreSQL (embedded, or LIGHTHOUSE_TEST_DATABASE_URL), a migrated
database per session, and the gateway running as a real process on it."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from api.db import migrations
from api.db.endpoints import with_database, with_user
from api.logging import configure_logging
from api.settings import LogFormat
from tests import embedded, scheduling
from tests.oidc_provider import OidcProvider
from tests.serving_tier import ServingTier
from tests.support import REPOSITORY, DatabaseUnderTest, GatewayProcess, GraphQLClient, free_port
from tests.tokens import TokenFactory

APP_ROLE = "lighthouse_app"
DATA_TABLES = (
    "lighthouse.incident_transfer, lighthouse.work_order, lighthouse.incident_event, "
    "lighthouse.incident, lighthouse.asset, lighthouse.idempotency_key"
)
CLEAN = f"""
ALTER TABLE lighthouse.incident_event DISABLE TRIGGER incident_event_no_truncate;
TRUNCATE {DATA_TABLES}, lighthouse.incident_share, lighthouse.incident_reporter,
    lighthouse.detection_review, lighthouse.detection, lighthouse.frame_analysis, lighthouse.frame,
    lighthouse.open311_request, lighthouse.model_decision, lighthouse.evaluation_answer,
    lighthouse.evaluation_item, lighthouse.evaluation_run, lighthouse.evaluation_set,
    lighthouse.category_threshold, lighthouse.model_card, lighthouse.pgqueuer,
    lighthouse.pgqueuer_log RESTART IDENTITY;
ALTER TABLE lighthouse.incident_event ENABLE TRIGGER incident_event_no_truncate;
"""


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A superuser URL of the PostgreSQL server the tests use: LIGHTHOUSE_TEST_DATABASE_URL's,
    or an embedded server of this worker's own (tests/embedded.py)."""
    configured = os.environ.get("LIGHTHOUSE_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    with embedded.embedded_server() as url:
        yield url


def pytest_configure(config: pytest.Config) -> None:
    """Gateways run in the tests' own processes log as a gateway process does (plain
    tracebacks, never the local variables a default structlog would render, which for a
    deeply nested request body took half a minute)."""
    configure_logging("INFO", LogFormat.CONSOLE)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Before anything starts (in the controller, not in xdist's workers): stop what killed runs
    of the suite left behind (embedded servers, serving tiers: tests/embedded.py)."""
    if hasattr(session.config, "workerinput"):
        return
    for home in embedded.reap_orphans(embedded.suite_root()):
        print(f"stopped what a killed run left behind in {home}")


async def _create_database(server_url: str, name: str) -> None:
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


async def _drop_database(server_url: str, name: str) -> None:
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    finally:
        await admin.close()


def make_database(server_url: str) -> DatabaseUnderTest:
    name = f"lighthouse_test_{uuid.uuid4().hex[:10]}"
    asyncio.run(_create_database(server_url, name))
    owner_url = with_database(server_url, name)
    migrations.upgrade(owner_url, REPOSITORY / "migrations", APP_ROLE)
    return DatabaseUnderTest(name=name, owner_url=owner_url, app_url=with_user(owner_url, APP_ROLE))


@pytest.fixture(scope="session")
def database(server_url: str) -> Iterator[DatabaseUnderTest]:
    """A freshly migrated database for the session, dropped afterwards."""
    created = make_database(server_url)
    yield created
    asyncio.run(_drop_database(server_url, created.name))


def gateway_env(database: DatabaseUnderTest, issuer: str = "") -> dict[str, str]:
    return {
        "LIGHTHOUSE_OAUTH_ISSUER": issuer,
        "LIGHTHOUSE_ENVIRONMENT": "test",
        "LIGHTHOUSE_DATABASE_URL": database.app_url,
        "LIGHTHOUSE_DATABASE_OWNER_URL": database.owner_url,
        "LIGHTHOUSE_MIGRATE_ON_START": "false",
        "LIGHTHOUSE_LOG_LEVEL": "INFO",
        "LIGHTHOUSE_LOG_FORMAT": "json",
        "LIGHTHOUSE_DATABASE_POOL_MAX_SIZE": "10",
        # Every test calls from 127.0.0.1: refused requests are many. The throttling of a
        # source is tested on a gateway of its own (tests/http/test_refusals.py).
        "LIGHTHOUSE_REFUSALS_PER_MINUTE": "100000",
    }


SSO_AUDIENCE = "https://lighthouse.test/api"
# The city's single sign-on, played by a real OpenID provider; its codes for bureaus differ from
# Lighthouse's, so the mapping is exercised.
SSO_CLIENTS = [
    {
        "client_id": "sso-pwb-dispatcher",
        "client_secret": "sso-secret-1",
        "scope": "incidents:read incidents:write assets:read",
        "claims": {"department": "PWB", "groups": ["dispatcher"]},
    },
    {
        "client_id": "sso-auditor",
        "client_secret": "sso-secret-2",
        "scope": "audit:read",
        "claims": {"groups": ["auditor"]},
    },
]


@pytest.fixture(scope="session")
def sso(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    provider = OidcProvider(SSO_AUDIENCE, SSO_CLIENTS, tmp_path_factory.mktemp("sso") / "sso.log")
    provider.start()
    yield provider
    provider.stop()


def trusted_issuers(sso: OidcProvider) -> str:
    return json.dumps(
        [
            {
                "issuer": sso.issuer,
                "audience": SSO_AUDIENCE,
                "algorithms": ["RS256"],
                "bureau_claim": "department",
                "bureau_map": {"PWB": "PUBLIC_WORKS", "EPB": "ENVIRONMENTAL_PROTECTION"},
                "roles_claim": "groups",
            }
        ]
    )


@pytest.fixture(scope="session")
def serving_port() -> int:
    """Where the session's serving tier answers (when a test starts it): the gateway is told."""
    return free_port()


@pytest.fixture(scope="session")
def serving_secret_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The callers' secret file of the session's serving tier (its `up` writes it): the
    gateways and workers of the tests are told it, as a deployment tells them."""
    return tmp_path_factory.mktemp("serving-secret") / "caller-secret"


SERVING_TIER = pytest.StashKey[ServingTier]()


@pytest.fixture(scope="session")
def serving_tier(
    serving_port: int, serving_secret_file: Path, request: pytest.FixtureRequest
) -> Iterator[ServingTier]:
    """The real serving tier (Ray Serve LLM, vLLM on CPU, the tiny model), once per session,
    for the serving group's tests (tests/scheduling.py), which stops it when it ends."""
    with embedded.owned_home() as home:  # reaped by the next run if this one is killed
        tier = ServingTier(serving_port, home / "serving", serving_secret_file)
        tier.start()
        request.config.stash[SERVING_TIER] = tier
        yield tier
        if tier.running:
            tier.stop()


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """After the serving group's last test, stop the tier: idle, Ray and vLLM still take a
    seventh of a core, for the rest of the worker's session."""
    tier = item.config.stash.get(SERVING_TIER, None)
    if tier is None or not tier.running:
        return
    if nextitem is None or scheduling.group_of(nextitem.nodeid) != scheduling.SERVING:
        tier.stop()


@pytest.fixture(scope="session")
def frames_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the session's gateway (and the vision workers of the tests) keep frames."""
    return tmp_path_factory.mktemp("frames")


@pytest.fixture(scope="session")
def gateway(
    database: DatabaseUnderTest,
    sso: OidcProvider,
    frames_dir: Path,
    serving_port: int,
    serving_secret_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatewayProcess]:
    process = GatewayProcess({}, tmp_path_factory.mktemp("logs") / "gateway.log")
    process.configure(gateway_env(database, issuer=process.base_url))
    process.configure(
        {
            "LIGHTHOUSE_VISION_FRAMES_DIR": str(frames_dir),
            "LIGHTHOUSE_SERVING_URL": f"http://127.0.0.1:{serving_port}",
            "LIGHTHOUSE_SERVING_SECRET_FILE": str(serving_secret_file),
        }
    )
    process.configure({"LIGHTHOUSE_TRUSTED_ISSUERS": trusted_issuers(sso)})
    process.start()
    yield process
    process.stop()


@pytest.fixture
async def owner(database: DatabaseUnderTest) -> AsyncIterator[asyncpg.Connection]:
    """A connection as the schema owner, for arranging and inspecting data directly."""
    connection = await asyncpg.connect(database.owner_url)
    await connection.execute("SET search_path = lighthouse, public")
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def app(database: DatabaseUnderTest) -> AsyncIterator[asyncpg.Connection]:
    """A connection as the application role (the gateway's: no BYPASSRLS, owns no table), for
    testing the row-level security policies directly."""
    connection = await asyncpg.connect(
        database.app_url, server_settings={"search_path": "lighthouse, public"}
    )
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def clean(owner: asyncpg.Connection) -> None:
    """Start from reference data only (bureaus and categories)."""
    await owner.execute(CLEAN)


@pytest.fixture
async def http(gateway: GatewayProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def tokens(gateway: GatewayProcess, database: DatabaseUnderTest) -> TokenFactory:
    return TokenFactory(database.owner_url, gateway.base_url)


@pytest.fixture
async def client(http: httpx.AsyncClient, clean: None, tokens: TokenFactory) -> GraphQLClient:
    """A Public Works supervisor: the whole workflow for Public Works' incidents."""
    return GraphQLClient(http, tokens.named("pwb-supervisor"))


@pytest.fixture
async def city(http: httpx.AsyncClient, clean: None, tokens: TokenFactory) -> GraphQLClient:
    """A city-wide viewer: reads every bureau's incidents."""
    return GraphQLClient(http, tokens.named("city-viewer"))


@pytest.fixture
def as_(http: httpx.AsyncClient, tokens: TokenFactory) -> Callable[[str], GraphQLClient]:
    """A client acting as a named development principal."""
    return lambda name: GraphQLClient(http, tokens.named(name))


@pytest.fixture
def log_path(gateway: GatewayProcess) -> Path:
    return gateway.log_path


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "server_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.server)
    scheduling.order_and_check(items)


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """``--dist loadgroup`` by tests/scheduling.py's groups (see there why not xdist's own)."""
    if config.getvalue("dist") == "loadgroup":
        return scheduling.GroupScheduling(config, log)
    return None


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(autouse=True)
def _gateway_errors_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """When a test that used the gateway fails, show what the gateway logged at error level."""
    if "gateway" not in request.fixturenames:
        yield
        return
    gateway: GatewayProcess = request.getfixturevalue("gateway")
    offset = gateway.log_path.stat().st_size if gateway.log_path.exists() else 0
    yield
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        with gateway.log_path.open() as log:
            log.seek(offset)
            errors = [line for line in log if '"level": "error"' in line or "Traceback" in line]
        if errors:
            print("\n--- gateway errors during this test ---\n" + "".join(errors[-20:]))
