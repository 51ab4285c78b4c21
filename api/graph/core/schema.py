"""The root schema: it only combines the domain bundles it is given."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry import relay
from strawberry.extensions import (
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.federation.schema import FederationAny
from strawberry.schema.config import StrawberryConfig
from strawberry.types.info import Info as StrawberryInfo

from api.domain.errors import InvalidInput
from api.graph.core.bundle import DomainBundle
from api.graph.core.documents import CachedDocuments, DocumentCache
from api.graph.core.errors import query_error
from api.graph.core.extensions import (
    ErrorPolicyExtension,
    IntrospectionPolicy,
    MetricsExtension,
    OperationNameRequired,
    OperationScopeExtension,
)
from api.graph.core.prefetch import PrefetchPlan
from api.graph.core.sign_in import SignInRequired
from api.graph.core.subgraph import key_fields, reduce_to_references
from api.graph.core.viewer import ViewerQueries
from api.settings import Settings

FEDERATION_VERSION = "2.9"
# References a router may send in one ``_entities`` call (its batches are far smaller).
MAX_REPRESENTATIONS = 1000


def _core_queries(subgraph: bool) -> type:
    """The fields every schema has. Made afresh for each schema: Strawberry's relay ``node``
    field is bound to the first schema built with it. A subgraph has no ``node``: it could only
    answer for its own domain's types, and a router would send it any ID."""
    if subgraph:
        return ViewerQueries

    @strawberry.type
    class CoreQueries(ViewerQueries):
        node: relay.Node | None = relay.node(description="Any object by its global ID.")

    return CoreQueries


class LighthouseSchema(strawberry.federation.Schema):
    def __init__(self, documents: DocumentCache | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.prefetch_plan = PrefetchPlan.of(self)
        self.documents = documents

    def entities_resolver(
        self, info: StrawberryInfo, representations: list[FederationAny]
    ) -> list[FederationAny]:
        """``_entities`` for a router: at most ``MAX_REPRESENTATIONS`` references a call, each
        an object naming one of this schema's entity types; anything else is refused whole
        (INVALID_INPUT), before anything is read."""
        if len(representations) > MAX_REPRESENTATIONS:
            raise query_error(
                InvalidInput(
                    "representations",
                    f"at most {MAX_REPRESENTATIONS} a call; send the rest in another",
                )
            )
        type_map = self.schema_converter.type_map
        for index, given in enumerate(representations):
            representation: dict[str, object] = given if isinstance(given, dict) else {}
            type_name = representation.get("__typename")
            entry = type_map.get(type_name) if isinstance(type_name, str) else None
            definition = getattr(entry, "definition", None)
            keys = key_fields(definition) if definition is not None else set()
            if (
                not keys
                or not all(isinstance(representation.get(key), str | int) for key in keys)
                or len(representation) > 16
            ):
                raise query_error(
                    InvalidInput(
                        "representations",
                        f"item {index} is not a reference to an entity of this graph (an "
                        "object with __typename and its key fields)",
                    )
                )
        return super().entities_resolver(info, representations)

    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        """Strawberry logs every error at ERROR level; expected ones (a caller's bad input, a
        denial) are not faults. ErrorPolicyExtension logs the unexpected ones."""


def _root(name: str, parts: Sequence[type]) -> type | None:
    if not parts:
        return None
    return strawberry.type(type(name, tuple(parts), {}))


def build_schema(
    settings: Settings, domains: Sequence[DomainBundle], *, subgraph: bool = False
) -> LighthouseSchema:
    """The graph of ``domains``, as a federation v2 subgraph schema (``_service``,
    ``_entities``): all of them make the unified graph; with ``subgraph``, the domains served
    alone behind a router, other domains' entities cut down to references (their keys)."""
    names = [domain.name for domain in domains]
    if len(set(names)) != len(names):
        raise ValueError(f"a domain is given twice: {names}")
    graph = settings.graph
    documents = DocumentCache(graph.document_cache_entries, graph.document_cache_bytes)
    # Factories: a fresh extension per operation; the caches they share live in this schema.
    extensions: list[Any] = [
        MetricsExtension,
        ErrorPolicyExtension,
        lambda: MaxTokensLimiter(max_token_count=graph.max_tokens),
        lambda: CachedDocuments(documents),
        lambda: QueryDepthLimiter(max_depth=graph.max_query_depth),
        lambda: MaxAliasesLimiter(max_alias_count=graph.max_aliases),
        IntrospectionPolicy,
        SignInRequired,
        lambda: ValidationCache(maxsize=256),
        OperationNameRequired,
        OperationScopeExtension,
    ]
    query = _root("Query", [d.query for d in domains if d.query] + [_core_queries(subgraph)])
    schema = LighthouseSchema(
        documents=documents,
        # The newest version the composition and both routers (Hive Gateway, Apollo) know.
        federation_version=FEDERATION_VERSION,
        query=query,
        mutation=_root("Mutation", [d.mutation for d in domains if d.mutation]),
        subscription=_root("Subscription", [d.subscription for d in domains if d.subscription]),
        types=[t for d in domains for t in d.types],
        config=StrawberryConfig(auto_camel_case=True),
        extensions=extensions,
    )
    if subgraph:
        reduce_to_references(schema._schema, names)
    return schema
