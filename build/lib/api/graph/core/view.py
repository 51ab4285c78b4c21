"""The GraphQL endpoint: Strawberry's ASGI view with Lighthouse's context and guards."""

from __future__ import annotations

import uuid

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UnsetType

from api.auth.principal import Principal
from api.auth.tokens import InvalidToken
from api.graph.core.context import Context
from api.http.graphiql import graphiql_page_response
from api.http.transaction import request_transaction, unauthenticated
from api.resources import resources_of

JSON_TYPES = ("application/json", "application/graphql-response+json")


class GraphQLView(GraphQL[Context, None]):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Cross-site request forgery: a browser form can POST text/plain, multipart or urlencoded
        # bodies without a preflight; only JSON is taken (and GET carries queries only).
        if scope["type"] == "http" and scope.get("method") == "POST":
            content_type = ""
            for name, value in scope.get("headers", []):
                if name == b"content-type":
                    content_type = value.decode("latin-1").split(";")[0].strip().lower()
            if content_type not in JSON_TYPES:
                response = JSONResponse(
                    {
                        "errors": [
                            {
                                "message": "POST GraphQL documents as application/json",
                                "extensions": {"code": "UNSUPPORTED_MEDIA_TYPE"},
                            }
                        ]
                    },
                    status_code=415,
                )
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def render_graphql_ide(self, request: Request) -> Response:
        """GraphiQL from the gateway's own assets: the page names no other host."""
        return graphiql_page_response()

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket | None = None
    ) -> Context:
        request_id = getattr(request.state, "request_id", None) or uuid.uuid4().hex
        if isinstance(request, WebSocket):
            # The caller authenticates at connection_init (on_ws_connect).
            return Context(
                request=request,
                response=response,
                resources=resources_of(request),
                principal=Principal.anonymous(),
                request_id=request_id,
            )
        transaction = request_transaction(request)
        return Context(
            request=request,
            response=response,
            resources=resources_of(request),
            principal=transaction.principal,
            request_id=request_id,
            transaction=transaction,
        )

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """A subscription's caller authenticates with the handshake's Authorization header or
        an ``Authorization`` entry in the connection_init payload (browsers cannot set headers)."""
        params = context.connection_params or {}
        authorization = params.get("Authorization") or params.get("authorization")
        if not isinstance(authorization, str):
            authorization = context.request.headers.get("authorization")
        gate = context.resources.gate
        try:
            principal = await gate.authenticator.verify(authorization)
            async with gate.unit_of_work(principal, lambda: "connection") as uow:
                await gate.authenticator.check(uow, principal)
        except InvalidToken as error:
            client = context.request.client
            await gate.record_refusal(
                context.request_id,
                client.host if client else "unknown",
                context.request.url.path,
                error.reason,
            )
            raise ConnectionRejectionError({"message": error.reason}) from None
        context.principal = principal
        return await super().on_ws_connect(context)


def graphql_refusal(reason: str) -> Response:
    """A refused token, answered as GraphQL clients expect (and with RFC 6750's challenge)."""
    return unauthenticated(reason)


def graphql_view(schema: object, *, graphiql: bool, max_subscriptions: int) -> GraphQLView:
    return GraphQLView(
        schema,  # type: ignore[arg-type]
        graphql_ide="graphiql" if graphiql else None,
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        max_subscriptions_per_connection=max_subscriptions,
    )
