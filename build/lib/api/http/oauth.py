"""The authorization server's routes (RFC 6749 token, RFC 7662, RFC 7009, RFC 8414, JWKS)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.auth.server import AuthorizationServer
from api.resources import resources_of

Handler = Callable[[AuthorizationServer, Request], Awaitable[Response]]


def _route(path: str, handler: Handler, method: str) -> Route:
    async def endpoint(request: Request) -> Response:
        return await handler(resources_of(request).authorization_server, request)

    return Route(path, endpoint, methods=[method])


def oauth_routes() -> list[Route]:
    server = AuthorizationServer
    return [
        _route("/oauth/token", server.token, "POST"),
        _route("/oauth/introspect", server.introspect, "POST"),
        _route("/oauth/revoke", server.revoke, "POST"),
        _route("/oauth/jwks", server.jwks, "GET"),
        _route("/.well-known/jwks.json", server.jwks, "GET"),
        _route("/.well-known/oauth-authorization-server", server.metadata, "GET"),
    ]
