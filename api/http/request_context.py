"""Request ids, access logs and HTTP metrics, as one pure ASGI middleware."""

from __future__ import annotations

import functools
import re
import time
import uuid
from dataclasses import dataclass

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.timing import Timings

log = structlog.get_logger("api.access")

REQUEST_ID_HEADER = "x-request-id"
VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
CONVERTER = re.compile(r":\w+}")


NOTE_KEY = "access_note"


@dataclass(slots=True)
class AccessNote:
    """What the access log line says of a request besides its path and status, filled in by
    the layers that learn it: who called, the operation, and why it was refused (a code)."""

    principal: str | None = None
    operation: str | None = None
    refusal: str | None = None
    decision: str | None = None  # DENY or PARTIAL: the policies refused some or all of it

    def fields(self) -> dict[str, str]:
        named = (("principal", self.principal), ("operation", self.operation),
                 ("refusal", self.refusal), ("decision", self.decision))  # fmt: skip
        return {name: value for name, value in named if value}


def access_note(scope: Scope) -> AccessNote:
    """The request's note (a throwaway one outside the middleware, as in some tests)."""
    note = scope.get("state", {}).get(NOTE_KEY)
    return note if isinstance(note, AccessNote) else AccessNote()


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
        note = state[NOTE_KEY] = AccessNote()
        path = scope.get("path", "")
        method = scope.get("method", "WS")
        status = 500
        socket = Socket()
        started = time.perf_counter()

        async def receive_noting_close() -> Message:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                socket.closed_by_client(message.get("code", 1005))
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status
            kind = message["type"]
            if kind == "websocket.accept":
                status = 101
            elif kind == "websocket.close":
                socket.closed_by_server(message.get("code", 1000))
                if status != 101:  # refused before it was accepted
                    status = 403
            elif kind == "websocket.http.response.start":
                status = message["status"]
            elif kind == "http.response.start":
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
            if scope["type"] == "websocket":
                await self.app(scope, receive_noting_close, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            structlog.contextvars.unbind_contextvars("request_id")
            resources = state.get("resources")
            route = route_template(scope)
            if resources is not None and scope["type"] == "http":
                resources.metrics.http_requests.labels(route, method, str(status)).inc()
                resources.metrics.http_seconds.labels(route, method).observe(elapsed)
            if scope["type"] == "websocket":
                log.info(
                    "websocket.closed",
                    request_id=request_id,
                    path=path,
                    status=status,
                    closed_by=socket.by,
                    close_code=socket.code,
                    duration_ms=round(elapsed * 1000, 2),
                    **note.fields(),
                )
            elif route != "/metrics":
                log.info(
                    "http.request",
                    request_id=request_id,
                    method=method,
                    path=path,
                    status=status,
                    duration_ms=round(elapsed * 1000, 2),
                    **note.fields(),
                )


def route_template(scope: Scope) -> str:
    """The route a request matched, as its template (``/v1/models/{model}``, so that metrics have
    one series per route, whatever the path's values); "other" when none matched (a 404)."""
    template = getattr(scope.get("route"), "path", None)
    return _without_converters(template) if isinstance(template, str) else "other"


@functools.cache  # the routes are few and fixed: each template is rewritten once
def _without_converters(template: str) -> str:
    return CONVERTER.sub("}", template)


class Socket:
    """How a WebSocket ended: who closed it first (the client, the gateway, or neither when the
    connection broke) and with which close code."""

    def __init__(self) -> None:
        self.by = "neither"
        self.code: int | None = None

    def closed_by_client(self, code: int) -> None:
        if self.code is None:
            self.by, self.code = "client", code

    def closed_by_server(self, code: int) -> None:
        if self.code is None:
            self.by, self.code = "gateway", code
