"""The GraphQL endpoint: Strawberry's ASGI view with Lighthouse's context."""

from __future__ import annotations

import uuid

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from api.auth.principal import Principal
from api.graph.context import Context
from api.resources import resources_of


class GraphQLView(GraphQL[Context, None]):
    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket | None = None
    ) -> Context:
        request_id = getattr(request.state, "request_id", None) or uuid.uuid4().hex
        return Context(
            request=request,
            response=response,
            resources=resources_of(request),
            principal=Principal.anonymous(),
            request_id=request_id,
        )


def graphql_view(schema: object, *, graphiql: bool, max_subscriptions: int) -> GraphQLView:
    return GraphQLView(
        schema,  # type: ignore[arg-type]
        graphql_ide="graphiql" if graphiql else None,
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        max_subscriptions_per_connection=max_subscriptions,
    )
