"""The Starlette application: resources in the lifespan, routes, middleware."""

from __future__ import annotations

import asyncio
import gc
import importlib.metadata
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from functools import partial
from typing import Any

import asyncpg
import structlog
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Scope

from api.access.refusals import RefusalLedger
from api.access.scope import AccessGate
from api.auth.api_keys import ApiKeys
from api.auth.authenticate import Authenticator
from api.auth.issuers import IssuerRegistry
from api.auth.keys import KeyRing
from api.auth.principal import Principal
from api.auth.server import AuthorizationServer
from api.auth.tokens import TokenVerifier
from api.db import migrations
from api.db.database import Database
from api.db.endpoints import DatabaseEndpoints, redact, require_owner, resolve_endpoints
from api.db.errors import UNREACHABLE
from api.db.pool import connect, create_pool
from api.domain.geo import CoordinateConverter
from api.domain.sla import SlaCalendar
from api.events.incident_changes import IncidentChangeHub
from api.graph.core.bundle import DomainBundle
from api.graph.core.fast_path import CompiledDocuments
from api.graph.core.schema import build_schema
from api.graph.core.trusted import DocumentRegistry
from api.graph.core.view import graphql_view, is_upload
from api.graph.domains import DOMAINS
from api.http.body_limit import BodyLimitMiddleware
from api.http.console import console_routes
from api.http.cors import cors
from api.http.error_shape import error_shape_of
from api.http.graphiql import ASSET_ROUTE_PATH, graphiql_asset
from api.http.health import healthz, readyz
from api.http.health import metrics as metrics_endpoint
from api.http.oauth import oauth_routes
from api.http.openapi.routes import openapi_routes
from api.http.request_context import RequestContextMiddleware
from api.http.sockets import SocketBudget
from api.http.transaction import protected
from api.inference.client import ServingClient
from api.metrics import Metrics
from api.policy.engine import PolicyEngine, PolicySetInvalid
from api.repositories.audit import AuditRepository
from api.repositories.licensing import QuotaLedger
from api.repositories.oauth import OAuthRepository
from api.repositories.system import SystemRepository
from api.resources import MeteringResources, Resources, VisionResources
from api.services.audit_chain import AuditAnchors, anchored
from api.services.metering.admissions import AdmissionDesk
from api.services.metering.meter import Meter
from api.services.metering.settlements import SettlementDesk
from api.services.vision.analysis import VisionModel
from api.settings import Settings
from api.vision.decoding import DecodingBudget, ImageDecoder
from api.vision.store import FrameStore

log = structlog.get_logger(__name__)

# A multipart request's boundaries, headers and operations document around the file.
UPLOAD_OVERHEAD = 64 * 1024


class StartupError(RuntimeError):
    """The service cannot start as configured; the message says what to change."""


async def check_application_role(pool: asyncpg.Pool) -> None:
    """Refuse to serve as a role that could step around row-level security."""
    if await SystemRepository(pool).role_is_privileged():
        raise StartupError(
            "LIGHTHOUSE_DATABASE_URL connects as a role that is a superuser, has BYPASSRLS or "
            "owns Lighthouse tables; connect as the application role "
            "(LIGHTHOUSE_DATABASE_APP_ROLE) and run migrations as the owner "
            "(LIGHTHOUSE_DATABASE_OWNER_URL)."
        )


@asynccontextmanager
async def _serving(
    settings: Settings, endpoints: DatabaseEndpoints
) -> AsyncIterator[dict[str, Any]]:
    """The process's resources, for as long as it serves; each is stopped on the way out."""
    if settings.should_migrate_on_start:
        await run_in_threadpool(
            partial(
                migrations.upgrade,
                require_owner(endpoints),
                settings.database.migrations_dir,
                settings.database.app_role,
            )
        )
    try:
        pool = await create_pool(endpoints.app_url, settings)
    except (OSError, asyncpg.PostgresError) as error:
        raise StartupError(
            f"cannot connect to {redact(endpoints.app_url)}: {error}. "
            "Check LIGHTHOUSE_DATABASE_URL and that the server is running."
        ) from error
    async with AsyncExitStack() as stack:
        stack.push_async_callback(pool.close)
        metrics = Metrics()
        metrics.watch_pool(lambda: (pool.get_size(), pool.get_idle_size(), pool.get_max_size()))
        database = Database(pool, metrics.record_statements)
        await check_application_role(pool)
        bureaus = await SystemRepository(pool).bureaus()
        try:
            policy = PolicyEngine(
                settings.policy.dir, [(b.code, b.joint_service_centre) for b in bureaus]
            )
        except PolicySetInvalid as error:
            raise StartupError(f"{error}. Fix the policies (see policies/README.md).") from error
        await AuditRepository(pool).record_policy_version(policy.version, policy.text)
        oauth = OAuthRepository(pool)
        keys = KeyRing(settings)
        await keys.ensure_signing_key(oauth)
        issuers = IssuerRegistry(
            settings.oauth.trusted_issuers, settings.oauth.jwks_refresh_seconds
        )
        stack.push_async_callback(issuers.stop)
        await issuers.start()
        verifier = TokenVerifier(settings, keys, issuers, {b.code: b.id for b in bureaus})
        authenticator = Authenticator(
            verifier, oauth, settings.issuer, keys, settings.oauth.clock_skew_seconds
        )
        gate = AccessGate(database, policy, authenticator)
        refusals = RefusalLedger(gate, limit=settings.oauth.refusals_per_minute)
        stack.push_async_callback(refusals.stop)
        await refusals.start()
        changes = IncidentChangeHub(
            lambda: connect(endpoints.app_url, settings, "lighthouse-change-listener")
        )
        stack.push_async_callback(changes.stop)
        await changes.start()
        resources = Resources(
            settings=settings,
            endpoints=endpoints,
            database=database,
            head_revision=migrations.head_revision(settings.database.migrations_dir),
            calendar=SlaCalendar(settings.city.timezone),
            converter=CoordinateConverter(),
            changes=changes,
            metrics=metrics,
            policy=policy,
            keys=keys,
            issuers=issuers,
            authenticator=authenticator,
            api_keys=ApiKeys(pool),
            gate=gate,
            refusals=refusals,
            sockets=SocketBudget(
                settings.graph.max_websockets, settings.graph.max_websockets_per_principal
            ),
            authorization_server=AuthorizationServer(
                settings, keys, oauth, gate, refusals, metrics
            ),
            vision=await stack.enter_async_context(_vision(settings)),
            metering=_metering(settings, gate),
            documents=DocumentRegistry(),
        )
        metrics.watch_sockets(lambda: resources.sockets.open_sockets)
        metrics.describe_build(
            importlib.metadata.version("lighthouse"), resources.head_revision, policy.version
        )
        stack.push_async_callback(resources.metering.admissions.close)
        stack.push_async_callback(resources.metering.settlements.close)
        stack.enter_context(
            _background(_sweep_reservations(database, settings.metering.sweep_seconds))
        )
        stack.enter_context(_background(_refresh_keys(keys, oauth)))
        anchors = AuditAnchors(AuditRepository(pool), oauth, keys, settings.issuer)
        await stack.enter_async_context(anchored(anchors, settings.oauth.audit_anchor_seconds))
        # Start-up objects (schema, settings, pools) live as long as the process: move them out
        # of the collector's way, and collect young objects less often (a page of incidents
        # allocates tens of thousands of short-lived objects per request).
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)
        log.info(
            "gateway.started",
            database=redact(endpoints.app_url),
            embedded=endpoints.embedded,
            environment=settings.environment.value,
            policy_version=policy.version,
            issuer=settings.issuer,
        )
        yield {"resources": resources}
    log.info("gateway.stopped")


@asynccontextmanager
async def _vision(settings: Settings) -> AsyncIterator[VisionResources]:
    serving, vision = settings.serving, settings.vision
    client = ServingClient(
        serving.url,
        secret_file=serving.secret_file,
        timeout_seconds=serving.timeout_seconds,
        retries=serving.retries,
    )
    try:
        yield VisionResources(
            store=FrameStore(vision.frames_dir),
            decoding=ImageDecoder(
                DecodingBudget(vision.decoding_budget, vision.max_concurrent_decodes)
            ),
            serving=client,
            model=VisionModel(
                client, serving.model, serving.model_version, vision.max_answer_tokens
            ),
            analyses=asyncio.Semaphore(vision.max_concurrent_analyses),
        )
    finally:
        await client.close()


@contextmanager
def _background(work: Coroutine[Any, Any, None]) -> Iterator[None]:
    """Run ``work`` while the block runs; cancel it after."""
    task = asyncio.create_task(work)
    try:
        yield
    finally:
        task.cancel()


def create_app(
    settings: Settings,
    domains: Sequence[DomainBundle] = tuple(DOMAINS.values()),
    *,
    subgraph: bool = False,
) -> Starlette:
    """The gateway serving ``domains`` (all of them by default): their graph at ``/graphql``,
    the REST routes they bring and those routes' OpenAPI descriptions (``/openapi``), the
    authorization server and the operations endpoints. With
    ``subgraph``, the domains are served alone behind a federation router (other domains'
    entities are references)."""
    schema = build_schema(settings, domains, subgraph=subgraph)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        endpoints = await run_in_threadpool(resolve_endpoints, settings)
        try:
            async with _serving(settings, endpoints) as state:
                yield state
        finally:
            await run_in_threadpool(endpoints.release)

    view = graphql_view(
        schema,
        graphiql=settings.graphiql_enabled,
        max_subscriptions=settings.graph.max_subscriptions_per_connection,
        max_document_bytes=settings.graph.max_document_bytes,
        connection_init_seconds=settings.graph.connection_init_seconds,
        trusted_only=settings.graph.trusted_documents_only,
        compiled=CompiledDocuments(schema, settings.graph)
        if settings.graph.compiled_documents
        else None,
        allowed_origins=settings.http.cors_origins,
    )
    return Starlette(
        routes=[
            protected("/graphql", view, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", view),
            *oauth_routes(),
            *console_routes(settings),
            *([Route(ASSET_ROUTE_PATH, graphiql_asset)] if settings.graphiql_enabled else []),
            *(route for domain in domains for route in domain.routes),
            *openapi_routes(api for domain in domains for api in domain.apis),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint),
        ],
        middleware=[
            Middleware(RequestContextMiddleware),
            cors(settings.http.cors_origins),
            Middleware(
                BodyLimitMiddleware,
                max_bytes=settings.http.max_body_bytes,
                max_seconds=settings.http.max_body_seconds,
                larger=partial(
                    _upload_limit,
                    settings.vision.max_frame_bytes + UPLOAD_OVERHEAD,
                    settings.metering.max_request_bytes,
                ),
            ),
        ],
        lifespan=lifespan,
        exception_handlers={Exception: _unexpected},
    )


async def _unexpected(request: Request, error: Exception) -> Response:
    """A failure no route answered: JSON in the route's own error shape, naming only the
    request's id (Starlette's default is a plain-text page). Starlette raises the error again
    after this answer, so the server logs it with its traceback."""
    request_id = str(request.scope.get("state", {}).get("request_id", ""))
    return error_shape_of(request.scope).internal(request_id)


def _upload_limit(frames: int, inference: int, scope: Scope) -> int | None:
    """Frame uploads (REST, or a GraphQL multipart request) may be as large as a frame, and a
    metered chat request as large as its images."""
    path, method = scope.get("path"), scope.get("method")
    if method != "POST":
        return None
    if path == "/frames" or (path == "/graphql" and is_upload(scope)):
        return frames
    if path == "/v1/chat/completions":
        return inference
    return None


def _metering(settings: Settings, gate: AccessGate) -> MeteringResources:
    meter = Meter(settings.metering, settings.city.timezone)
    group = settings.metering.admission_group
    return MeteringResources(
        meter,
        AdmissionDesk(
            gate, meter, group_size=group, max_waiting=settings.metering.max_waiting_admissions
        ),
        SettlementDesk(gate, meter, group_size=group),
    )


async def _sweep_reservations(database: Database, every: float) -> None:
    """Give back quota reservations whose gateway died before finishing them (their lease ran
    out). Every gateway sweeps; the ledger's locks make it safe to do so at once."""
    sweeper = Principal.system("quota-sweeper")
    while True:
        await asyncio.sleep(every)
        try:
            async with database.unit_of_work(
                sweeper.database_settings(), lambda: "quota-sweep"
            ) as uow:
                released = await QuotaLedger(uow, "UTC").expire(500)
            if released:
                log.warning("metering.reservations_expired", released=released)
        except UNREACHABLE as error:
            log.warning("metering.sweep_failed", error=str(error))


async def _refresh_keys(keys: KeyRing, oauth: OAuthRepository) -> None:
    """Pick up keys rotated by another process (and the moment a new key starts signing)."""
    while True:
        await asyncio.sleep(30)
        try:
            await keys.load(oauth)
        except UNREACHABLE as error:
            log.warning("keys.refresh_failed", error=str(error))
