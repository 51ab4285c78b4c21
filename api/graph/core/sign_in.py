"""A caller without a token asking for what needs one is told to sign in: HTTP 401 with
``UNAUTHENTICATED`` and an RFC 6750 challenge, which clients' auth links act on (refresh the
token, send the user to sign in), rather than a 200 whose ``FORBIDDEN`` says nothing about why.

What needs a token is what the schema already says does, for the federation routers: a root
field marked ``@authenticated``, ``@requiresScopes`` or ``@policy``. Reference data (``bureaus``,
``categories``), ``me``, ``node`` and the schema itself stay open to anonymous callers as before,
and the policies still decide everything a signed-in caller asks. The check is a validation rule,
added for anonymous callers only, so a refused document never runs and is audited as refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from weakref import WeakKeyDictionary

from graphql import FieldNode, GraphQLError, GraphQLSchema, ValidationRule
from strawberry.extensions import SchemaExtension

from api.auth.principal import PrincipalKind
from api.graph.core.context import Context

CODE = "UNAUTHENTICATED"
NEEDING_A_TOKEN = frozenset({"Authenticated", "RequiresScopes", "Policy"})
_PROTECTED: WeakKeyDictionary[GraphQLSchema, frozenset[tuple[str, str]]] = WeakKeyDictionary()


def protected_root_fields(schema: GraphQLSchema) -> frozenset[tuple[str, str]]:
    """(root type, field) of every root field the schema marks as needing a token."""
    found = _PROTECTED.get(schema)
    if found is None:
        roots = (schema.query_type, schema.mutation_type, schema.subscription_type)
        found = frozenset(
            (root.name, name)
            for root in roots
            if root is not None
            for name, field in root.fields.items()
            if any(
                type(directive).__name__ in NEEDING_A_TOKEN
                for directive in getattr(field.extensions.get("strawberry-definition"),
                                         "directives", ())
            )
        )  # fmt: skip
        _PROTECTED[schema] = found
    return found


class TokenRequiredRule(ValidationRule):
    """Refuses, for an anonymous caller, every root field that needs a token."""

    def enter_field(self, node: FieldNode, *_: Any) -> None:
        parent = self.context.get_parent_type()
        schema = self.context.schema
        if parent is None or parent not in (
            schema.query_type,
            schema.mutation_type,
            schema.subscription_type,
        ):
            return
        if (parent.name, node.name.value) in protected_root_fields(schema):
            self.report_error(
                GraphQLError(
                    f"sign in: {node.name.value} needs an access token (Authorization: Bearer …)",
                    node,
                    extensions={"code": CODE},
                )
            )


class SignInRequired(SchemaExtension):
    """Adds ``TokenRequiredRule`` to an anonymous caller's validation."""

    def on_operation(self) -> Iterator[None]:
        context: Context = self.execution_context.context
        if context.principal.kind is PrincipalKind.ANONYMOUS:
            self.execution_context.validation_rules = (
                *self.execution_context.validation_rules,
                TokenRequiredRule,
            )
        yield


def asks_to_sign_in(body: Any) -> bool:
    """Whether a GraphQL response body refuses a caller for want of a token."""
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return False
    return any(
        isinstance(error, dict) and (error.get("extensions") or {}).get("code") == CODE
        for error in errors
    )
