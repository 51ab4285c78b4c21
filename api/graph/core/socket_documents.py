"""Registered documents over the WebSocket, as over HTTP: a ``subscribe`` message may name its
document (``documentId``, or the automatic persisted queries' ``extensions.persistedQuery``)
instead of sending its text, and a gateway that runs registered documents only refuses any
other text there too (before, a socket ran whatever text it was sent).

The text is looked up in the process's registry (``DocumentRegistry``: memory first, then one
short transaction under the caller's identity); a refusal is the protocol's ``error`` message
for that operation, and the connection stays open."""

from __future__ import annotations

from typing import Any, cast

from graphql import GraphQLError
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import SubscribeMessage

from api.graph.core.context import Context

DOCUMENT_ID = "documentId"


class DocumentRefused(Exception):
    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def named_document(payload: dict[str, Any]) -> str | None:
    """The document a subscribe payload names, if any (as ``sha256:<hex>`` for a hash)."""
    named = payload.get(DOCUMENT_ID)
    extensions = payload.get("extensions")
    if named is None and isinstance(extensions, dict):
        named = extensions.get(DOCUMENT_ID)
        persisted = extensions.get("persistedQuery")
        if named is None and isinstance(persisted, dict):
            digest = persisted.get("sha256Hash")
            if persisted.get("version") != 1 or not isinstance(digest, str):
                raise DocumentRefused(
                    "persistedQuery takes version 1 and a sha256Hash", "BAD_REQUEST"
                )
            return f"sha256:{digest.lower().removeprefix('sha256:')}"
    if named is not None and (not isinstance(named, str) or not named or len(named) > 200):
        raise DocumentRefused("documentId must be a non-empty string", "BAD_REQUEST")
    return named


class RegisteredDocumentsHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws, with the document of each subscribe resolved (or refused) first."""

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        payload = message.get("payload")
        if not self.connection_acknowledged or not isinstance(payload, dict):
            await super().handle_subscribe(message)
            return
        try:
            text = await self._document(cast("dict[str, Any]", payload))
        except DocumentRefused as refused:
            error = GraphQLError(refused.message, extensions={"code": refused.code})
            await self.send_message(
                {"id": message["id"], "type": "error", "payload": [error.formatted]}
            )
            return
        payload["query"] = text
        await super().handle_subscribe(message)

    async def _document(self, payload: dict[str, Any]) -> str:
        context = self.context
        resources = context.resources
        trusted_only: bool = getattr(self.view, "trusted_only", False)
        named = named_document(payload)
        text = payload.get("query")
        if named is None and not trusted_only:
            if not isinstance(text, str):
                raise DocumentRefused("the subscribe payload has no query", "BAD_REQUEST")
            return text
        gate = resources.gate
        async with gate.unit_of_work(context.principal, lambda: "subscribe document") as uow:
            if named is not None:
                found = await resources.documents.text(uow, named)
                if found is None:
                    raise DocumentRefused("PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND")
                return found
            if not isinstance(text, str):
                raise DocumentRefused("the subscribe payload has no query", "BAD_REQUEST")
            if not await resources.documents.registered(uow, text):
                raise DocumentRefused(
                    "this gateway runs registered documents only: register the operation "
                    "(lighthouse documents register) and send its documentId",
                    "TRUSTED_DOCUMENT_REQUIRED",
                )
            return text
