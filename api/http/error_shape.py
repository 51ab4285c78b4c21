"""The gateway's own refusals, in the error shape of the route they are for.

Before a route's handler runs, the gateway may refuse a request itself: no token, or one that
does not stand (401); a source refused too often (429); the database out of reach (503); a body
too large (413) or too slow to arrive (408). A client reads errors in its API's own shape
(GraphQL's ``errors`` list, OpenAI's ``error`` object, Open311's ``<errors>``), so each route
family names its shape once (``protected(..., errors=SHAPE)``) and every refusal of its routes
is worded in it, with the same codes, statuses and headers (``WWW-Authenticate``,
``Retry-After``) whatever the shape.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

# (status, code, message, details) -> the response, in a shape.
Answer = Callable[[int, str, str, dict[str, Any]], Response]
THROTTLED_MESSAGE = "too many refused requests from this address; retry later"
UNAVAILABLE_RETRY_SECONDS = 5
SHAPE_ATTRIBUTE = "error_shape"
RouteT = TypeVar("RouteT", bound=BaseRoute)


def challenge(reason: str) -> str:
    """RFC 6750's challenge for a refused token. A header is Latin-1: whatever else a reason
    holds is dropped from the challenge (the body carries it whole)."""
    description = reason.replace('"', "'").encode("ascii", "replace").decode()
    return f'Bearer realm="lighthouse", error="invalid_token", error_description="{description}"'


@dataclass(frozen=True)
class ErrorShape:
    """How one family of routes words the gateway's refusals. ``unauthenticated_status`` is
    401, but Open311 answers a key that does not stand with 403, as its specification says."""

    name: str
    answer: Answer
    unauthenticated_status: int = 401

    def unauthenticated(self, reason: str) -> Response:
        response = self.answer(self.unauthenticated_status, "UNAUTHENTICATED", reason, {})
        if self.unauthenticated_status == 401:
            response.headers["WWW-Authenticate"] = challenge(reason)
        return response

    def throttled(self, retry_after: int) -> Response:
        details = {"retryAfter": retry_after}
        response = self.answer(429, "RATE_LIMITED", THROTTLED_MESSAGE, details)
        response.headers["Retry-After"] = str(retry_after)
        return response

    def unavailable(self, reason: str) -> Response:
        response = self.answer(503, "SERVICE_UNAVAILABLE", reason, {})
        response.headers["Retry-After"] = str(UNAVAILABLE_RETRY_SECONDS)
        return response

    def too_large(self, limit: int) -> Response:
        message = f"the request body is larger than {limit} bytes"
        return self.answer(413, "PAYLOAD_TOO_LARGE", message, {"limit": limit})

    def too_slow(self, seconds: float) -> Response:
        message = f"the request body did not arrive within {seconds:g} s"
        return self.answer(408, "REQUEST_TIMEOUT", message, {"seconds": seconds})

    def internal(self, request_id: str) -> Response:
        """An unexpected failure: nothing about it but the request's id, which names it in the
        gateway's log."""
        message = (
            "the gateway failed unexpectedly; quote the request id "
            f"{request_id} when reporting it (it names the failure in the gateway's log)"
        )
        response = self.answer(500, "INTERNAL_SERVER_ERROR", message, {"requestId": request_id})
        response.headers["X-Request-ID"] = request_id
        return response


def json_response(body: object, status: int) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _graphql(status: int, code: str, message: str, details: dict[str, Any]) -> Response:
    return json_response(
        {"errors": [{"message": message, "extensions": {"code": code, **details}}]}, status
    )


GRAPHQL_ERRORS = ErrorShape("graphql", _graphql)


def with_error_shape(route: RouteT, errors: ErrorShape) -> RouteT:
    """``route``, whose refusals made before it runs (the body's limits) take ``errors``."""
    setattr(route, SHAPE_ATTRIBUTE, errors)
    return route


def error_shape_of(scope: Scope) -> ErrorShape:
    """The error shape of the application's route that ``scope`` is for (GraphQL's for a
    route that names none, or for no route)."""
    routes: list[BaseRoute] = getattr(scope.get("app"), "routes", [])
    for route in routes:
        if route.matches(scope)[0] is Match.FULL:
            shape: ErrorShape = getattr(route, SHAPE_ATTRIBUTE, GRAPHQL_ERRORS)
            return shape
    return GRAPHQL_ERRORS
