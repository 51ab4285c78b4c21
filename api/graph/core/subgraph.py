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

from graphql import (
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLUnionType,
    get_named_type,
)
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
    the names of the types cut. Another domain's type that is no entity is left out when
    nothing the subgraph serves reaches it any more (it hung off an entity now cut), and
    refused with ``NotAReference`` when something does (give it a ``@key``, or move it to the
    graph core as a shared type)."""
    served = set(served) | {SHARED_PACKAGE}
    reduced: list[str] = []
    strangers: list[str] = []
    for graphql_type in list(schema.type_map.values()):
        definition = _definition(graphql_type)
        if definition is None:
            continue
        domain = domain_of(definition)
        if domain is None or domain in served:
            continue
        keys = key_fields(definition)
        if not keys:
            strangers.append(graphql_type.name)
            continue
        assert isinstance(graphql_type, GraphQLObjectType)
        for name in [name for name in graphql_type.fields if name not in keys]:
            del graphql_type.fields[name]
        reduced.append(graphql_type.name)
    reachable = _reachable(schema, served)
    # Anything else nothing reaches any more (a connection's edge type that hung off an entity
    # now cut) is left out too: a subgraph declares only what it resolves.
    for graphql_type in list(schema.type_map.values()):
        definition = _definition(graphql_type)
        if (
            definition is not None
            and domain_of(definition) is None
            and graphql_type.name not in reachable
            and not key_fields(definition)
        ):
            del schema.type_map[graphql_type.name]
    for name in strangers:
        if name in reachable:
            definition = _definition(schema.type_map[name])
            domain = domain_of(definition) if definition is not None else None
            raise NotAReference(
                f"{name} (domain {domain}) is not an "
                f"entity: a subgraph of {sorted(served - {SHARED_PACKAGE})} can only refer to "
                "it by key"
            )
        del schema.type_map[name]
    return sorted(reduced)


def _definition(graphql_type: GraphQLNamedType) -> StrawberryObjectDefinition | None:
    if not isinstance(graphql_type, GraphQLObjectType):
        return None
    definition = graphql_type.extensions.get("strawberry-definition")
    return definition if isinstance(definition, StrawberryObjectDefinition) else None


def _reachable(schema: GraphQLSchema, served: set[str]) -> set[str]:
    """The names of the types reachable from the root types and the served domains' own."""
    roots: list[GraphQLNamedType] = [
        t for t in (schema.query_type, schema.mutation_type, schema.subscription_type) if t
    ]
    for graphql_type in schema.type_map.values():
        definition = _definition(graphql_type)
        if definition is not None and domain_of(definition) in served:
            roots.append(graphql_type)
    seen: set[str] = set()
    while roots:
        current = roots.pop()
        if current.name in seen:
            continue
        seen.add(current.name)
        if isinstance(current, GraphQLObjectType | GraphQLInterfaceType):
            roots.extend(current.interfaces)
            for field in current.fields.values():
                roots.append(get_named_type(field.type))
                roots.extend(get_named_type(argument.type) for argument in field.args.values())
        elif isinstance(current, GraphQLUnionType):
            roots.extend(current.types)
        elif isinstance(current, GraphQLInputObjectType):
            roots.extend(get_named_type(field.type) for field in current.fields.values())
    return seen
