"""A domain served alone, as an Apollo Federation v2 subgraph.

Served alone, a domain's types still name other domains' entities (an incident's bureau, its
asset). In its subgraph such an entity is a reference: its key fields only, so that a federation
router asks the owning subgraph for the rest through ``_entities`` and plans a cross-domain query
across subgraphs. Types that every domain shares (locations, page info, the caller, errors) are
``@shareable``: each subgraph resolves them the same way.

A type's domain is the package it is defined in (``api.graph.<domain>``); ``api.graph.core`` is
everyone's. The reduction works on the built schema, so every subgraph's Python types are the
unified graph's: one definition of each type, whichever way it is served.
"""

from __future__ import annotations

from collections.abc import Iterable

from graphql import GraphQLObjectType, GraphQLSchema
from strawberry.federation.schema_directives import Key
from strawberry.types.base import StrawberryObjectDefinition

GRAPH_PACKAGE = "api.graph."
SHARED_PACKAGE = "core"


class NotAReference(ValueError):
    """A subgraph names another domain's type that is not an entity (it has no @key)."""


def domain_of(definition: StrawberryObjectDefinition) -> str | None:
    """The domain package a type is defined in; None for types from outside the graph."""
    module = getattr(definition.origin, "__module__", "") or ""
    if not module.startswith(GRAPH_PACKAGE):
        return None
    return module[len(GRAPH_PACKAGE) :].split(".", 1)[0]


def key_fields(definition: StrawberryObjectDefinition) -> set[str]:
    """The fields of an entity's keys (GraphQL names); empty for a type that is no entity."""
    fields: set[str] = set()
    for directive in definition.directives or ():
        if isinstance(directive, Key):
            fields.update(str(directive.fields).split())
    return fields


def reduce_to_references(schema: GraphQLSchema, served: Iterable[str]) -> list[str]:
    """Cut every entity of a domain not ``served`` down to its key fields, in ``schema``;
    the names of the types cut. Raises ``NotAReference`` for another domain's type that is
    no entity (give it a ``@key``, or move it to the graph core as a shared type)."""
    served = set(served) | {SHARED_PACKAGE}
    reduced: list[str] = []
    for graphql_type in schema.type_map.values():
        if not isinstance(graphql_type, GraphQLObjectType):
            continue
        definition = graphql_type.extensions.get("strawberry-definition")
        if not isinstance(definition, StrawberryObjectDefinition):
            continue
        domain = domain_of(definition)
        if domain is None or domain in served:
            continue
        keys = key_fields(definition)
        if not keys:
            raise NotAReference(
                f"{graphql_type.name} (domain {domain}) is not an entity: a subgraph of "
                f"{sorted(served - {SHARED_PACKAGE})} can only refer to it by key"
            )
        for name in [name for name in graphql_type.fields if name not in keys]:
            del graphql_type.fields[name]
        reduced.append(graphql_type.name)
    return sorted(reduced)
