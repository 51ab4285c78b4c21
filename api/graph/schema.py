"""The root schema: it only combines the domains' queries, mutations and subscriptions."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry import relay
from strawberry.extensions import (
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig

from api.graph.assets.mutations import AssetMutations
from api.graph.assets.queries import AssetQueries
from api.graph.audit.queries import AuditQueries
from api.graph.bureaus.queries import BureauQueries
from api.graph.extensions import (
    ErrorPolicyExtension,
    IntrospectionPolicy,
    MetricsExtension,
    UnitOfWorkExtension,
)
from api.graph.incidents.mutations import IncidentMutations
from api.graph.incidents.queries import IncidentQueries
from api.graph.incidents.subscriptions import IncidentSubscriptions
from api.graph.viewer import ViewerQueries
from api.settings import Settings


@strawberry.type
class NodeQueries:
    node: relay.Node | None = relay.node(description="Any object by its global ID.")


@strawberry.type
class Query(IncidentQueries, AssetQueries, BureauQueries, AuditQueries, ViewerQueries, NodeQueries):
    pass


@strawberry.type
class Mutation(IncidentMutations, AssetMutations):
    pass


@strawberry.type
class Subscription(IncidentSubscriptions):
    pass


class LighthouseSchema(strawberry.federation.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        """Strawberry logs every error at ERROR level; expected ones (a caller's bad input, a
        denial) are not faults. ErrorPolicyExtension logs the unexpected ones."""


def build_schema(settings: Settings) -> strawberry.federation.Schema:
    """The unified graph, as a federation v2 subgraph schema (``_service``, ``_entities``)."""
    # Strawberry's annotation admits only classes and factories; instances work the same.
    extensions: list[Any] = [
        MetricsExtension,
        ErrorPolicyExtension,
        MaxTokensLimiter(max_token_count=settings.max_tokens),
        ParserCache(maxsize=256),
        QueryDepthLimiter(max_depth=settings.max_query_depth),
        MaxAliasesLimiter(max_alias_count=settings.max_aliases),
        IntrospectionPolicy,
        ValidationCache(maxsize=256),
        UnitOfWorkExtension,
    ]
    return LighthouseSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        config=StrawberryConfig(auto_camel_case=True),
        extensions=extensions,
    )
