"""Trusted documents: the operations frontend teams register ahead of time, and requests that
name one by its id instead of sending its text.

A document is checked once, when it is registered: its size, its syntax (within the token
limit), that every operation in it is named, and its validity against the schema with the same
depth and alias limits as any request. A request then sends ``documentId`` (the GraphQL over
HTTP convention; Relay's and GraphQL Code Generator's manifests give each document an id), or
the automatic persisted queries' ``extensions.persistedQuery.sha256Hash`` (Apollo's manifests
give each document its hash), by POST or GET, and the gateway runs
the registered text. With ``LIGHTHOUSE_TRUSTED_DOCUMENTS_ONLY`` a request whose text is not a
registered document is refused.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from graphql import GraphQLError, OperationDefinitionNode, parse, specified_rules, validate
from strawberry import Schema
from strawberry.extensions import MaxAliasesLimiter, QueryDepthLimiter

from api.access.scope import AccessScope
from api.db.unit_of_work import UnitOfWork
from api.domain.errors import InvalidInput
from api.policy import resources
from api.repositories.documents import TrustedDocument, TrustedDocuments
from api.settings import GraphSettings

ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:._-]{0,127}$")
CLIENT = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
MAX_MANIFEST = 2000  # documents in one registration


APOLLO_MANIFEST = "apollo-persisted-query-manifest"


def manifest_documents(manifest: object) -> dict[str, str]:
    """The documents of a persisted-document manifest, by id: Relay's compiler's and GraphQL
    Code Generator's client preset's (a JSON object of ids to texts), or Apollo's
    (``generate-persisted-query-manifest``: format ``apollo-persisted-query-manifest``, version
    1, ``operations`` with an ``id``, the body's SHA-256, and a ``body``). A ValueError says what
    is wrong with it."""
    if isinstance(manifest, dict) and (
        manifest.get("format") == APOLLO_MANIFEST or isinstance(manifest.get("operations"), list)
    ):
        if manifest.get("format") != APOLLO_MANIFEST or manifest.get("version") != 1:
            raise ValueError(f"an Apollo manifest is format {APOLLO_MANIFEST!r}, version 1")
        operations = manifest.get("operations")
        if not isinstance(operations, list) or not all(
            isinstance(o, dict) and isinstance(o.get("id"), str) and isinstance(o.get("body"), str)
            for o in operations
        ):
            raise ValueError("each operation of an Apollo manifest has an id and a body (strings)")
        documents = {o["id"]: o["body"] for o in operations}
        if len(documents) != len(operations):
            raise ValueError("an id is given twice")
        return documents
    if isinstance(manifest, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in manifest.items()
    ):
        return manifest
    raise ValueError(
        "a manifest is a JSON object of ids to document texts (Relay, GraphQL Code Generator) "
        f"or an {APOLLO_MANIFEST} (Apollo)"
    )


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def check(
    schema: Schema, graph: GraphSettings, document_id: str, text: str, client: str, by: str
) -> TrustedDocument:
    """The document ``text`` under ``document_id``, checked as registration checks it; an
    InvalidInput naming the document otherwise."""
    field = f"documents[{document_id[:130]}]"
    if not ID.match(document_id):
        raise InvalidInput(field, "an id is 1 to 128 letters, digits and : . _ -")
    if not text or len(text.encode()) > graph.max_document_bytes:
        raise InvalidInput(field, f"a document is 1 to {graph.max_document_bytes} bytes")
    digest = sha256(text)
    # An id that says it is the text's hash must be (Code Generator's ids are the bare hash).
    claimed = document_id.removeprefix("sha256:")
    if (document_id.startswith("sha256:") or HEX64.match(document_id)) and claimed != digest:
        raise InvalidInput(field, "the id is a SHA-256 that is not the document's")
    try:
        tree = parse(text, max_tokens=graph.max_tokens)
    except GraphQLError as error:
        raise InvalidInput(field, f"does not parse: {error.message}") from None
    operations = [d for d in tree.definitions if isinstance(d, OperationDefinitionNode)]
    if not operations or any(o.name is None for o in operations):
        raise InvalidInput(field, "every operation in a registered document must be named")
    rules = [
        *specified_rules,
        *QueryDepthLimiter(max_depth=graph.max_query_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=graph.max_aliases).validation_rules,
    ]
    errors = validate(schema._schema, tree, rules)
    if errors:
        raise InvalidInput(field, f"is not valid against the schema: {errors[0].message}")
    names = [o.name.value for o in operations if o.name is not None]
    return TrustedDocument(document_id, digest, client, text, names, by)


def check_all(
    schema: Schema, graph: GraphSettings, client: str, by: str, documents: Mapping[str, str]
) -> tuple[list[TrustedDocument], list[InvalidInput]]:
    """Every document of a manifest checked: those that hold, and what is wrong with the rest."""
    checked: list[TrustedDocument] = []
    problems: list[InvalidInput] = []
    for document_id, text in documents.items():
        try:
            checked.append(check(schema, graph, document_id, text, client, by))
        except InvalidInput as problem:
            problems.append(problem)
    return checked, problems


async def register_manifest(
    access: AccessScope,
    schema: Schema,
    graph: GraphSettings,
    client: str,
    documents: Mapping[str, str],
) -> Registration:
    """A developer registers a manifest's documents: all of them, or (one being wrong) none,
    with an InvalidInput naming the wrong ones. Authorized and audited in ``access``."""
    access.authorize("RegisterDocument", resources.DOCUMENTS)
    if not CLIENT.match(client):
        raise InvalidInput("client", "1 to 63 lowercase letters, digits and . _ -")
    if not documents or len(documents) > MAX_MANIFEST:
        raise InvalidInput("documents", f"1 to {MAX_MANIFEST} documents at once")
    checked, problems = check_all(schema, graph, client, access.principal.subject, documents)
    if problems:
        listed = "; ".join(f"{p.field}: {p.message}" for p in problems[:10])
        raise InvalidInput("documents", f"{len(problems)} document(s) refused: {listed}")
    for document in checked:
        access.audit.targeted("Document", document.id)
    async with access.uow.savepoint():  # a refused registration leaves the request usable
        done = await register(TrustedDocuments(access.uow), checked)
    access.audit.notes.append(
        f"client {client}: {len(done.registered)} registered, {len(done.unchanged)} unchanged"
    )
    return done


@dataclass(frozen=True, slots=True)
class Registration:
    registered: list[str]  # new ids
    unchanged: list[str]  # ids registered before with the same text


async def register(documents: TrustedDocuments, checked: list[TrustedDocument]) -> Registration:
    """Register checked documents; an id registered before with another text is refused (an id
    names one text for good), and then nothing is registered."""
    if len(checked) > MAX_MANIFEST:
        raise InvalidInput("documents", f"at most {MAX_MANIFEST} documents at once")
    if len({d.id for d in checked}) != len(checked):
        raise InvalidInput("documents", "an id is given twice")
    before = await documents.by_ids([d.id for d in checked])
    for document in checked:
        known = before.get(document.id)
        if known is not None and known.sha256 != document.sha256:
            raise InvalidInput(
                f"documents[{document.id}]",
                "this id names another document already; registered documents never change "
                "(give the new text a new id)",
            )
    new = await documents.register([d for d in checked if d.id not in before])
    return Registration(sorted(new), sorted(d.id for d in checked if d.id in before))


class DocumentRegistry:
    """One process's memory of registered documents (they never change, so nothing expires
    but by room): id to text, and which texts are registered. Bounded by count and bytes."""

    def __init__(self, max_entries: int = 2048, max_bytes: int = 16 * 1024 * 1024) -> None:
        self._texts: OrderedDict[str, str] = OrderedDict()
        self._hashes: OrderedDict[str, None] = OrderedDict()
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0

    async def text(self, uow: UnitOfWork, document_id: str) -> str | None:
        """The registered text named ``document_id`` (by id, or by ``sha256:`` / bare hash)."""
        text = self._texts.get(document_id)
        if text is not None:
            self._texts.move_to_end(document_id)
            return text
        if not ID.match(document_id):
            return None
        documents = TrustedDocuments(uow)
        found = (await documents.by_ids([document_id])).get(document_id)
        if found is None:
            digest = document_id.removeprefix("sha256:")
            if HEX64.match(digest):
                found = await documents.by_sha256(digest)
        if found is None:
            return None
        self._keep(document_id, found.document)
        return found.document

    async def registered(self, uow: UnitOfWork, text: str) -> bool:
        """Whether ``text`` is a registered document (the trusted-only mode's check)."""
        digest = sha256(text)
        if digest in self._hashes:
            self._hashes.move_to_end(digest)
            return True
        if await TrustedDocuments(uow).by_sha256(digest) is None:
            return False
        self._hashes[digest] = None
        while len(self._hashes) > self._max_entries:
            self._hashes.popitem(last=False)
        return True

    def _keep(self, document_id: str, text: str) -> None:
        self._texts[document_id] = text
        self._bytes += len(text)
        while len(self._texts) > self._max_entries or self._bytes > self._max_bytes:
            _, evicted = self._texts.popitem(last=False)
            self._bytes -= len(evicted)
