"""The GraphQL endpoint: Strawberry's ASGI view with Lighthouse's context and guards.

Over HTTP a request that is not GraphQL — a form post (cross-site request forgery), a body
that is not JSON or is nested past orjson's limit, a batch, a document larger than the limit —
is refused with a coded JSON error before anything is parsed, and the refusal is audited (per
source address, see ``api.access.refusals``). A WebSocket must authenticate in its
``connection_init``; connections are bounded in all and per caller.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import timedelta
from typing import Any

import orjson
from cross_web import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter, GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLRequestData
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UnsetType

from api.access.refusals import Verdict
from api.auth.principal import Principal
from api.auth.tokens import InvalidToken
from api.graph.core.context import Context
from api.graph.core.fast_path import CompiledDocuments
from api.graph.core.sign_in import asks_to_sign_in
from api.graph.core.socket_documents import RegisteredDocumentsHandler
from api.graph.core.trusted import sha256
from api.http.graphiql import graphiql_page_response
from api.http.request_context import access_note
from api.http.transaction import (
    client_address,
    request_transaction,
    too_many,
)
from api.resources import resources_of

JSON_TYPES = ("application/json", "application/graphql-response+json")
MULTIPART = "multipart/form-data"
PREFLIGHT_HEADERS = (b"graphql-require-preflight", b"apollo-require-preflight")
CODES = {
    400: "BAD_REQUEST",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "DOCUMENT_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}
SOCKET_SUBJECT = "lighthouse_socket_subject"
DOCUMENT_ID = "documentId"
_REQUEST: ContextVar[Request] = ContextVar("lighthouse_graphql_request")


class TextFrames(ASGIWebSocketAdapter):
    """graphql-transport-ws messages as text frames: the protocol's messages are JSON text, and
    browsers' clients (graphql-ws in Apollo Client, urql, GraphiQL) ignore binary frames.
    Strawberry sends whatever ``encode_json`` returns, and ours returns orjson's bytes."""

    async def send_json(self, message: Mapping[str, object]) -> None:
        try:
            await self.ws.send_text(orjson.dumps(message).decode())
        except WebSocketDisconnect as exc:
            raise WebSocketDisconnected from exc


class GraphQLView(GraphQL[Context, None]):
    websocket_adapter_class = TextFrames
    graphql_transport_ws_handler_class = RegisteredDocumentsHandler

    def __init__(
        self,
        schema: Any,
        *,
        max_document_bytes: int,
        trusted_only: bool = False,
        compiled: CompiledDocuments | None = None,
        **options: Any,
    ) -> None:
        super().__init__(schema, **options)
        self.max_document_bytes = max_document_bytes
        self.trusted_only = trusted_only
        self.compiled = compiled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._socket(scope, receive, send)
            return
        request = Request(scope, receive)
        _REQUEST.set(request)  # for the body's parsing, which Strawberry hands an adapter
        response: Response | None = None
        try:
            # Cross-site request forgery: a browser form can POST text/plain, multipart or
            # urlencoded bodies without a preflight. JSON is taken; a multipart request (a file
            # upload) only with a header no form can send, which makes a browser ask first.
            if request.method == "POST":
                content_type = _content_type(scope)
                if content_type == MULTIPART:
                    if not _has_preflight_header(scope):
                        raise HTTPException(
                            400,
                            "a multipart request must carry the header "
                            "GraphQL-Require-Preflight: 1",
                        )
                elif content_type not in JSON_TYPES:
                    raise HTTPException(
                        415, "POST GraphQL documents as application/json (uploads as multipart)"
                    )
                # A registered query the planner compiled is answered by its one statement
                # (or, the policies refusing it, by the resolvers, which say why).
                elif self.compiled is not None:
                    response = await self.compiled.answer(request)
            if response is None:
                response = await self.run(request)
        except DocumentNotFound as error:
            # A step of the protocol, not an attack: answered, not counted as a refusal.
            response = _coded(400, error.reason, error.code, request_transaction(request))
        except HTTPException as error:
            response = await self._refused(
                request, error.status_code, error.reason, getattr(error, "code", None)
            )
        await response(scope, receive, send)

    async def _refused(
        self, request: Request, status: int, reason: str, code: str | None = None
    ) -> Response:
        """A coded JSON error for a request that is not GraphQL, audited as a refusal."""
        resources = resources_of(request)
        transaction = request_transaction(request)
        source = client_address(request.scope)
        verdict = await resources.refusals.refuse(
            source, request.url.path, reason, transaction.request_id, transaction.principal
        )
        if verdict is Verdict.THROTTLED:
            return too_many(resources.refusals.retry_after(source))
        return _coded(status, reason, code or CODES.get(status, "BAD_REQUEST"), transaction)

    def create_response(self, response_data: Any, sub_response: Response) -> Response:
        response = super().create_response(response_data, sub_response)
        # Only an anonymous caller is told to sign in (a token revoked while a request ran is
        # an UNAUTHENTICATED error in a 200, as any error a field meets).
        anonymous = not request_transaction(_REQUEST.get()).principal.is_authenticated
        if anonymous and asks_to_sign_in(response_data):
            # RFC 6750 §3.1: a request without credentials is challenged with no error code.
            access_note(_REQUEST.get().scope).refusal = "UNAUTHENTICATED"
            response.status_code = 401
            response.headers["WWW-Authenticate"] = 'Bearer realm="lighthouse"'
        return response

    def decode_json(self, data: str | bytes) -> object:
        # orjson refuses nesting past 1,024 levels with a decode error (answered 400), where
        # the standard library would exhaust the interpreter's recursion limit.
        return orjson.loads(data)

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    async def process_result(self, request: Any, result: Any) -> Any:
        """The answer, its errors in the document's order: root fields resolve side by side, so
        the order they failed in is the order their queries came back in (GraphQL leaves the
        order open); the same request must get the same bytes."""
        answer = await super().process_result(request, result)
        errors = answer.get("errors")
        if isinstance(errors, list) and len(errors) > 1:
            answer["errors"] = sorted(errors, key=_error_order)
        return answer

    def parse_json(self, data: str | bytes) -> Any:
        return _document_id_in_extensions(super().parse_json(data))

    def parse_query_params(self, params: Any) -> dict[str, Any]:
        # A GET names a registered document as a POST does (urql's persistedExchange and
        # Apollo's persisted-query link send queries by GET).
        parsed: dict[str, Any] = _document_id_in_extensions(super().parse_query_params(params))
        return parsed

    def should_render_graphql_ide(self, request: Any) -> bool:
        # A GET naming a document is a query even when it accepts anything (fetch's */*).
        named = DOCUMENT_ID in request.query_params or "extensions" in request.query_params
        return not named and super().should_render_graphql_ide(request)

    async def parse_http_body(self, request: Any) -> GraphQLRequestData | list[GraphQLRequestData]:
        data = await super().parse_http_body(request)
        items = data if isinstance(data, list) else [data]
        # Refused before parsing: the token limit does not count comments, and a document is
        # held (and cached) as text.
        for item in items:
            if item.query is not None and len(item.query) > self.max_document_bytes:
                raise HTTPException(
                    413, f"the GraphQL document is longer than {self.max_document_bytes} bytes"
                )
        for item in items:
            await self._trusted(item)
        return data

    async def _trusted(self, item: GraphQLRequestData) -> None:
        """The registered text of a request that names a document by id; and, when only
        trusted documents are taken, the refusal of any other text."""
        starlette_request = _REQUEST.get()
        transaction = request_transaction(starlette_request)
        registry = resources_of(starlette_request).documents
        uow = transaction.uow
        if uow is None:
            return
        named = _named_document(item.extensions)
        if named is not None and item.query is None:
            text = await registry.text(uow, named)
            if text is None:
                # The automatic persisted queries' protocol: the client sends the text next.
                raise DocumentNotFound(named)
            item.query = text
            return
        text = item.query
        if text is None:
            return
        if named is not None and named.startswith("sha256:") and sha256(text) != named[7:]:
            raise HTTPException(400, "the document's SHA-256 is not the one named")
        if self.trusted_only and not await registry.registered(uow, text):
            raise TrustedDocumentRequired()

    async def render_graphql_ide(self, request: Request) -> Response:
        """GraphiQL from the gateway's own assets: the page names no other host."""
        return graphiql_page_response()

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

    # --- WebSockets ---------------------------------------------------------------------------

    async def _socket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Hold one of the process's connection slots for the socket's life (and the caller's
        slot, once it authenticated)."""
        sockets = scope["state"]["resources"].sockets
        if not sockets.open():
            await WebSocket(scope, receive, send).close(1013, "too many connections; retry later")
            return
        try:
            await super().__call__(scope, receive, send)
        finally:
            sockets.close()
            subject = scope["state"].pop(SOCKET_SUBJECT, None)
            if subject is not None:
                sockets.release(subject)

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """A subscription's caller authenticates with the handshake's Authorization header or
        an ``Authorization`` entry in the connection_init payload (browsers cannot set headers).
        Anonymous connections are refused: every subscription event costs the service work."""
        params = context.connection_params or {}
        authorization = params.get("Authorization") or params.get("authorization")
        if not isinstance(authorization, str):
            authorization = context.request.headers.get("authorization")
        resources = context.resources
        gate = resources.gate
        try:
            if not authorization:
                raise InvalidToken("authenticate in connection_init (Authorization: Bearer …)")
            principal = await gate.authenticator.verify(authorization)
            async with gate.unit_of_work(principal, lambda: "connection") as uow:
                await gate.authenticator.check(uow, principal)
        except InvalidToken as error:
            await resources.refusals.refuse(
                client_address(context.request.scope),
                context.request.url.path,
                error.reason,
                context.request_id,
            )
            raise ConnectionRejectionError({"message": error.reason}) from None
        if not resources.sockets.claim(principal.subject):
            raise ConnectionRejectionError(
                {"message": "too many open connections for this caller; close one first"}
            )
        context.request.scope["state"][SOCKET_SUBJECT] = principal.subject
        context.principal = principal
        return await super().on_ws_connect(context)


def _content_type(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            return str(value.decode("latin-1").split(";")[0].strip().lower())
    return ""


def _has_preflight_header(scope: Scope) -> bool:
    return any(name in PREFLIGHT_HEADERS and value for name, value in scope.get("headers", []))


def is_upload(scope: Scope) -> bool:
    """A GraphQL multipart request (a file upload), which the body limit lets be larger."""
    return scope.get("method") == "POST" and _content_type(scope) == MULTIPART


class DocumentNotFound(HTTPException):
    """A request named a document that is not registered."""

    code = "PERSISTED_QUERY_NOT_FOUND"

    def __init__(self, named: str) -> None:
        # Apollo's clients look for this message to send the text next.
        super().__init__(400, "PersistedQueryNotFound")
        self.named = named


class TrustedDocumentRequired(HTTPException):
    code = "TRUSTED_DOCUMENT_REQUIRED"

    def __init__(self) -> None:
        super().__init__(
            400,
            "this gateway runs registered documents only: register the operation "
            "(lighthouse documents register) and send its documentId",
        )


def _document_id_in_extensions(parsed: Any) -> Any:
    """``documentId`` (GraphQL over HTTP's persisted documents) is not a field Strawberry keeps:
    it travels on in the extensions, where ``_trusted`` looks for it."""
    if isinstance(parsed, dict) and DOCUMENT_ID in parsed:
        extensions = parsed.get("extensions")
        if extensions is None:
            extensions = parsed["extensions"] = {}
        if isinstance(extensions, dict):
            extensions[DOCUMENT_ID] = parsed.pop(DOCUMENT_ID)
    return parsed


def _error_order(error: Any) -> tuple[tuple[tuple[int, int], ...], tuple[str, ...], str]:
    """Where an error is in the document (its locations, then its path), then its message."""
    locations = tuple(
        (int(at.get("line", 0)), int(at.get("column", 0))) for at in error.get("locations") or ()
    )
    path = tuple(str(step) for step in error.get("path") or ())
    return locations, path, str(error.get("message", ""))


def _named_document(extensions: dict[str, Any] | None) -> str | None:
    """The document a request names: ``documentId``, or the automatic persisted queries' hash
    (as ``sha256:<hex>``)."""
    if not isinstance(extensions, dict):
        return None
    named = extensions.get(DOCUMENT_ID)
    if named is not None:
        if not isinstance(named, str) or not named:
            raise HTTPException(400, "documentId must be a non-empty string")
        return named
    persisted = extensions.get("persistedQuery")
    if isinstance(persisted, dict):
        digest = persisted.get("sha256Hash")
        if persisted.get("version") != 1 or not isinstance(digest, str):
            raise HTTPException(400, "persistedQuery takes version 1 and a sha256Hash")
        # GraphQL Code Generator's hashes carry their algorithm ("sha256:<hex>"), and urql sends
        # them as they are; Apollo's are bare.
        return f"sha256:{digest.lower().removeprefix('sha256:')}"
    return None


def _coded(status: int, reason: str, code: str, transaction: Any) -> Response:
    body = {
        "errors": [
            {"message": reason, "extensions": {"code": code, "requestId": transaction.request_id}}
        ]
    }
    return JSONResponse(body, status_code=status)


def graphql_view(
    schema: object,
    *,
    graphiql: bool,
    max_subscriptions: int,
    max_document_bytes: int,
    connection_init_seconds: int,
    trusted_only: bool = False,
    compiled: CompiledDocuments | None = None,
    allowed_origins: tuple[str, ...] = (),
) -> GraphQLView:
    """The graph's one view, for HTTP and WebSocket alike. ``allowed_origins`` are the browser
    pages of other origins that may open a subscription socket (the CORS allow-list: a socket's
    handshake is not subject to CORS, so the origin is checked here)."""
    return GraphQLView(
        schema,
        max_document_bytes=max_document_bytes,
        trusted_only=trusted_only,
        compiled=compiled,
        graphql_ide="graphiql" if graphiql else None,
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        multipart_uploads_enabled=True,
        max_subscriptions_per_connection=max_subscriptions,
        connection_init_wait_timeout=timedelta(seconds=connection_init_seconds),
        allowed_origins=allowed_origins,
    )
