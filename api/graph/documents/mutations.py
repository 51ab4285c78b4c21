"""``registerDocuments``: a developer registers a frontend's operations, to be sent by id."""

from __future__ import annotations

from typing import Annotated

import strawberry

from api.domain.errors import DomainError, InvalidInput
from api.graph.core import errors
from api.graph.core.context import Info
from api.graph.core.trusted import register_manifest


@strawberry.input(description="One document of a persisted-document manifest.")
class DocumentInput:
    id: str = strawberry.field(description="Its id, as the manifest gives it.")
    document: str = strawberry.field(description="Its text.")


@strawberry.type(description="What a registration did.")
class DocumentRegistration:
    registered: list[str] = strawberry.field(description="The ids registered now.")
    unchanged: list[str] = strawberry.field(
        description="The ids registered before, with the same text."
    )


RegisterDocumentsResult = Annotated[
    DocumentRegistration | errors.InvalidInput | errors.Forbidden,
    strawberry.union("RegisterDocumentsResult"),
]


@strawberry.type
class DocumentMutations:
    @strawberry.federation.mutation(
        authenticated=True,
        description="Register a frontend's documents (developers): each is checked against the "
        "schema and its limits; one wrong document registers none. A registered id never "
        "names another text.",
    )
    async def register_documents(
        self, info: Info, client: str, documents: list[DocumentInput]
    ) -> RegisterDocumentsResult:
        context = info.context
        try:
            manifest = {d.id: d.document for d in documents}
            if len(manifest) != len(documents):
                raise InvalidInput("documents", "an id is given twice")
            done = await register_manifest(
                context.access, info.schema, context.resources.settings.graph, client, manifest
            )
        except DomainError as error:
            context.audit.outcome = error.code
            return errors.to_graphql(error)  # type: ignore[return-value]
        return DocumentRegistration(registered=done.registered, unchanged=done.unchanged)
