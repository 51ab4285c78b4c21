"""``lighthouse serve``: the gateway under uvicorn (``LIGHTHOUSE_WORKERS`` processes); also what
``lighthouse subgraph`` and ``lighthouse demo`` run."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.console import Console

from api.command import command_settings

console = Console(stderr=True)

WORKER_HEALTHCHECK_SECONDS = 60


def serve(
    host: Annotated[str | None, typer.Option(help="Overrides LIGHTHOUSE_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Overrides LIGHTHOUSE_PORT.")] = None,
    workers: Annotated[int | None, typer.Option(help="Overrides LIGHTHOUSE_WORKERS.")] = None,
) -> None:
    """Run the GraphQL gateway."""
    import uvicorn

    # The worker processes read their settings from the environment: pass the overrides on, so
    # that, for one, the token issuer URL follows the port.
    if host is not None:
        os.environ["LIGHTHOUSE_HOST"] = host
    if port is not None:
        os.environ["LIGHTHOUSE_PORT"] = str(port)
    settings = command_settings()
    console.print(
        f"Lighthouse gateway on http://{host or settings.http.host}:{port or settings.http.port}/graphql"
    )
    uvicorn.run(
        "api.main:app",
        factory=True,
        host=host or settings.http.host,
        port=port or settings.http.port,
        workers=workers or settings.http.workers,
        loop=settings.http.event_loop,
        # A WebSocket message carries one GraphQL document and its variables.
        ws_max_size=settings.graph.max_document_bytes + 64 * 1024,
        log_config=None,
        access_log=False,
        lifespan="on",
        ws="websockets",
        proxy_headers=False,
        # How long a worker may take to answer the supervisor's ping before it is killed and
        # replaced. Uvicorn's 5 s is less than a worker needs to start (import, build the
        # schema, open its pool) on a busy 2-core machine running other gateways: workers
        # were killed mid-start, over and over, and never served.
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
    )
