"""Request ids, access logs and HTTP metrics, as one pure ASGI middleware."""

from __future__ import annotations

import re
import time
import uuid

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.timing import Timings

log = structlog.get_logger("api.access")

REQUEST_ID_HEADER = "x-request-id"
VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
KNOWN_ROUTES = ("/graphql", "/healthz", "/readyz", "/metrics")


class RequestContextMiddleware:
    """Gives every request an id (the caller's ``X-Request-ID`` if well-formed), binds it to the
    logs, returns it in the response header, and records an access log line and metrics."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = incoming if VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        timings = state["timings"] = Timings()
        path = scope.get("path", "")
        route = path if path in KNOWN_ROUTES else "other"
        method = scope.get("method", "WS")
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                resources = state.get("resources")
                if (
                    timings.seconds
                    and resources is not None
                    and resources.settings.server_timing_enabled
                ):
                    headers.append((b"server-timing", timings.header().encode()))
                message = {**message, "headers": headers}
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            structlog.contextvars.unbind_contextvars("request_id")
            resources = state.get("resources")
            if resources is not None and scope["type"] == "http":
                resources.metrics.http_requests.labels(route, method, str(status)).inc()
                resources.metrics.http_seconds.labels(route, method).observe(elapsed)
            if route != "/metrics":
                log.info(
                    "http.request",
                    request_id=request_id,
                    method=method,
                    path=path,
                    status=status,
                    duration_ms=round(elapsed * 1000, 2),
                )
