"""Liveness, readiness and metrics endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from api.db.errors import UNREACHABLE
from api.db.migrations import current_revision
from api.http.scrape import Scrape, scrape_verdict
from api.repositories.system import SystemRepository
from api.resources import resources_of
from api.settings import Environment

T = TypeVar("T")
log = structlog.get_logger(__name__)
UNREADABLE: tuple[type[BaseException], ...] = (*UNREACHABLE, TimeoutError)


async def healthz(request: Request) -> Response:
    """Alive: the process answers. It does not look at its dependencies."""
    return JSONResponse({"status": "alive"})


async def readyz(request: Request) -> Response:
    """Ready: the database answers and its schema is at the revision this code expects."""
    resources = resources_of(request)
    try:
        revision = await asyncio.wait_for(current_revision(resources.database.pool), timeout=2)
    except UNREACHABLE as error:
        return JSONResponse(
            {"status": "unavailable", "database": "unreachable", "detail": type(error).__name__},
            status_code=503,
        )
    checks = {
        "database": "ok",
        "migrations": "current" if revision == resources.head_revision else "pending",
        "revision": revision,
        "expectedRevision": resources.head_revision,
        "changeFeed": "listening" if resources.changes.listening else "reconnecting",
    }
    # The serving tier is reported, not required: without it frames queue and wait, and the
    # rest of the graph serves as before.
    serving = await resources.vision.serving.healthy()
    checks["serving"] = "ok" if serving else "unavailable"
    ready = checks["migrations"] == "current" and resources.changes.listening
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", **checks},
        status_code=200 if ready else 503,
    )


async def metrics(request: Request) -> Response:
    """Prometheus' text format, for the callers ``api.http.scrape`` allows."""
    resources = resources_of(request)
    settings = resources.settings
    production = settings.environment is Environment.PRODUCTION
    verdict = scrape_verdict(request.scope, settings.http.metrics_secret_file, production)
    if verdict is Scrape.NO_CREDENTIAL:
        return PlainTextResponse(
            "send a scrape secret of LIGHTHOUSE_METRICS_SECRET_FILE (Authorization: Bearer …)\n",
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="lighthouse-metrics"'},
        )
    if verdict is Scrape.ELSEWHERE:
        return PlainTextResponse(
            "metrics are served to this machine only (scrapers elsewhere need a secret of "
            "LIGHTHOUSE_METRICS_SECRET_FILE)\n",
            status_code=403,
        )
    if verdict is Scrape.UNREADABLE:
        return PlainTextResponse(
            "the scrape secrets cannot be read; see the gateway's log\n", status_code=503
        )
    metrics, system = resources.metrics, SystemRepository(resources.database.pool)
    metrics.operations.rows, metrics.quality.rows = await asyncio.gather(
        _gauges("operations", system.operations_gauges()),
        _gauges("quality", system.quality_gauges()),
    )
    return Response(generate_latest(resources.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def _gauges(name: str, reading: Awaitable[list[T]]) -> list[T]:
    """The rows of one set of gauges read from the database for this scrape, or none (a gap on
    a dashboard, never a stale figure) if they cannot be read in 2 s; each set on its own."""
    try:
        return await asyncio.wait_for(reading, timeout=2)
    except UNREADABLE as error:
        log.warning("metrics.gauges_unreadable", gauges=name, error=str(error))
        return []
