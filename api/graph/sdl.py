"""The graph's schema as its clients see it, for code generators and IDEs that cannot (or may
not) introspect the gateway: the unified graph's types and fields in plain SDL, without the
federation machinery a router uses (``_entities``, ``_service``, ``@key``, ``@link``, the access
directives) — the same schema whichever way a client reaches it. Published in the repository
as ``schema.graphql`` and checked by a test against the schema the code builds.
"""

from __future__ import annotations

from graphql import (
    DefinitionNode,
    DirectiveDefinitionNode,
    DocumentNode,
    ObjectTypeDefinitionNode,
    TypeDefinitionNode,
    build_ast_schema,
    parse,
    print_ast,
    print_schema,
)

from api.graph.core.schema import build_schema
from api.graph.domains import DOMAINS
from api.settings import Settings

# What only a federation router reads.
ROUTER_TYPES = frozenset({"_Any", "_Entity", "_Service", "_FieldSet", "link__Import",
                          "link__Purpose"})  # fmt: skip
ROUTER_FIELDS = frozenset({"_entities", "_service"})
ROUTER_DIRECTIVES = frozenset({"authenticated", "requiresScopes", "policy", "shareable", "key",
                               "link"})  # fmt: skip


def client_sdl(settings: Settings) -> str:
    """The unified graph's SDL for its clients."""
    schema = build_schema(settings, tuple(DOMAINS.values()))
    document = parse(print_schema(schema._schema))
    kept: list[DefinitionNode] = []
    for definition in document.definitions:
        if isinstance(definition, DirectiveDefinitionNode):
            if definition.name.value in ROUTER_DIRECTIVES:
                continue
        elif isinstance(definition, TypeDefinitionNode):
            if definition.name.value in ROUTER_TYPES:
                continue
            if isinstance(definition, ObjectTypeDefinitionNode) and definition.fields:
                fields = tuple(f for f in definition.fields if f.name.value not in ROUTER_FIELDS)
                definition = ObjectTypeDefinitionNode(
                    description=definition.description,
                    name=definition.name,
                    interfaces=definition.interfaces,
                    directives=definition.directives,
                    fields=fields,
                )
        kept.append(definition)
    text = print_ast(DocumentNode(definitions=tuple(kept)))
    _refuse_dangling(text)
    return text + "\n"


def _refuse_dangling(text: str) -> None:
    """The SDL stands on its own: graphql-core builds it (every type it names is defined in it)
    and nothing of the router's is left."""
    left = ROUTER_TYPES & set(build_ast_schema(parse(text)).type_map)
    if left:
        raise ValueError(f"the client SDL still names {sorted(left)}")
