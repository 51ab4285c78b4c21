"""Schema extensions: the request's unit of work, error policy and per-operation metrics."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Iterator

import structlog
from graphql import (
    FieldNode,
    GraphQLError,
    NoSchemaIntrospectionCustomRule,
    OperationDefinitionNode,
    ValidationRule,
)
from strawberry.extensions import SchemaExtension
from strawberry.relay.types import GlobalIDValueError
from strawberry.types import ExecutionContext

from api.access.scope import OperationDescription
from api.audit.collector import AuditCollector
from api.domain.errors import DomainError, InvalidInput
from api.graph.core.context import Context
from api.policy.resources import POLICY_STORE, principal_entity
from api.settings import Environment

log = structlog.get_logger(__name__)

OPERATION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?")


def operation_label(name: str | None) -> str:
    return name if name and OPERATION_NAME.match(name) else "anonymous"


def operation_kind(execution: ExecutionContext) -> str:
    """query, mutation or subscription; "invalid" when the document did not parse or name one."""
    if not execution.graphql_document:
        return "invalid"
    try:
        return execution.operation_type.value
    except Exception:  # strawberry raises several types for a missing or unknown operation
        return "invalid"


class OperationScopeExtension(SchemaExtension):
    """Runs the operation in its access scope, and ends it with its audit record.

    Over HTTP the scope is the request's transaction (owned by the request-transaction
    middleware); the operation commits it when it is done. If the commit fails the response
    says so and carries no data: nothing is reported as done that the database did not keep.
    On a WebSocket each operation runs in a transaction of its own (and each subscription event
    in another, see ``Context.event_scope``).
    """

    async def on_operation(self) -> AsyncIterator[None]:
        context: Context = self.execution_context.context
        execution = self.execution_context

        def describe() -> OperationDescription:
            return OperationDescription(
                category="graphql",
                name=operation_label(execution.operation_name),
                kind=operation_kind(execution),
                document=execution.query,
                variables=execution.variables,
            )

        transaction = context.transaction
        if transaction is None:
            gate = context.resources.gate
            opened = gate.transaction(context.principal, context.request_id, describe)
            async with opened as access, context.enter(access):
                yield
                self._note_refusal(access.audit)
            return
        access = transaction.access(describe)
        async with context.enter(access):
            yield
            self._note_refusal(access.audit)
        try:
            await transaction.commit()
        except Exception as error:  # the audit append or the commit itself failed
            log.error("graphql.commit_failed", error=repr(error))
            result = self.execution_context.result
            if result is not None:
                result.data = None
                result.errors = [
                    GraphQLError(
                        "the request could not be committed; nothing was changed — retry it",
                        extensions={"code": "SERVICE_UNAVAILABLE"},
                    )
                ]

    _refused: str | None = None

    def on_parse(self) -> Iterator[None]:
        yield
        if self.execution_context.graphql_document is None:
            self._refused = "the document did not parse"

    def on_validate(self) -> Iterator[None]:
        yield
        errors = self.execution_context.pre_execution_errors
        if errors:
            self._refused = errors[0].message[:200]

    def _note_refusal(self, audit: AuditCollector) -> None:
        """A document the limits or validation refused never ran: audited as refused."""
        if self._refused is not None:
            audit.refusal = self._refused


class OperationNameRequired(SchemaExtension):
    """A document with several operations must say which to run (GraphQL, §6.1 GetOperation)."""

    def on_validate(self) -> Iterator[None]:
        # Before validation: errors set here stand (the schema then skips its own validation).
        execution = self.execution_context
        document = execution.graphql_document
        # Strawberry's operation_name falls back to the first operation's: ask what was sent.
        provided = getattr(execution, "_provided_operation_name", None)
        if document is not None and not provided:
            operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
            if len(operations) > 1:
                execution.pre_execution_errors = [
                    *(execution.pre_execution_errors or []),
                    GraphQLError(
                        "Must provide operation name if query contains multiple operations.",
                        extensions={"code": "GRAPHQL_VALIDATION_FAILED"},
                    ),
                ]
        yield


class ErrorPolicyExtension(SchemaExtension):
    """Expected errors keep their message and gain ``extensions.code``; the rest are masked.

    An unexpected error is logged with the request id and replaced by a message that carries
    only that id, so nothing about the internals reaches the caller.
    """

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is None or not result.errors:
            return
        context: Context = self.execution_context.context
        production = context.resources.settings.environment is Environment.PRODUCTION
        result.errors = [
            self._format(error, context.request_id, production) for error in result.errors
        ]

    @staticmethod
    def _format(error: GraphQLError, request_id: str, production: bool = False) -> GraphQLError:
        original = error.original_error
        if isinstance(original, RecursionError):
            original = InvalidInput("query", "the document is nested too deeply")
        if isinstance(original, GlobalIDValueError):
            original = InvalidInput("id", "is not an ID this API issued")
        if isinstance(original, DomainError):
            extensions: dict[str, object] = {"code": original.code}
            if isinstance(original, InvalidInput):
                extensions["field"] = original.field
            return GraphQLError(
                original.message,
                nodes=error.nodes,
                source=error.source,
                positions=error.positions,
                path=error.path,
                extensions=extensions,
            )
        if original is None or isinstance(original, GraphQLError):
            if error.extensions and "code" in error.extensions:
                return error
            code = "GRAPHQL_VALIDATION_FAILED" if error.path is None else "BAD_REQUEST"
            message = error.message
            if production:
                # "Did you mean …?" would list the schema's names to a caller who may not
                # introspect it.
                message = SUGGESTION.sub("", message)
            return GraphQLError(
                message,
                nodes=error.nodes,
                source=error.source,
                positions=error.positions,
                path=error.path,
                extensions={**(error.extensions or {}), "code": code},
            )
        log.error(
            "graphql.unexpected_error",
            path=error.path,
            error=repr(original),
            exc_info=original,
        )
        return GraphQLError(
            f"internal error; quote request id {request_id} when you report it",
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions={"code": "INTERNAL_ERROR", "requestId": request_id},
        )


class MetricsExtension(SchemaExtension):
    """Counts operations and errors and times them, labelled by operation name and type."""

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        yield
        context: Context = self.execution_context.context
        metrics = context.resources.metrics
        name = metrics.operation_name(operation_label(self.execution_context.operation_name))
        kind = operation_kind(self.execution_context)
        metrics.graphql_seconds.labels(name, kind).observe(time.perf_counter() - started)
        result = self.execution_context.result
        outcome = "error" if result is not None and result.errors else "ok"
        metrics.graphql_operations.labels(name, kind, outcome).inc()


class NoSubgraphSchemaRule(ValidationRule):
    """Refuses ``_service`` (the subgraph's SDL, for a federation router) to those who may not
    read the schema: it is introspection by another name."""

    def enter_field(self, node: FieldNode, *_: object) -> None:
        if node.name.value == "_service":
            self.report_error(
                GraphQLError(
                    "the subgraph schema (_service) is only for the federation router",
                    node,
                    extensions={"code": "FORBIDDEN"},
                )
            )


class IntrospectionPolicy(SchemaExtension):
    """Outside production the schema is open to introspection; in production only to callers the
    policies allow (IntrospectSchema: developers, auditors and the federation router)."""

    def on_operation(self) -> Iterator[None]:
        context: Context = self.execution_context.context
        resources = context.resources
        if resources.settings.environment is Environment.PRODUCTION:
            decision = resources.policy.decide(
                principal_entity(context.principal),
                "IntrospectSchema",
                POLICY_STORE,
                context.principal.scopes,
            )
            if not decision.allowed:
                self.execution_context.validation_rules = (
                    *self.execution_context.validation_rules,
                    NoSchemaIntrospectionCustomRule,
                    NoSubgraphSchemaRule,
                )
        yield
