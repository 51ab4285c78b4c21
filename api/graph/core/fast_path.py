"""Running a compiled document: a request that names a registered query the planner compiled.

The request keeps everything the resolver path gives it — its token checked in the statement
that opens its transaction, the policies' decisions (taken before the statement, audited with
it), row-level security on every row, its audit record, the commit before the answer — and
loses what it does not need: graphql-core's parse, validation and execution, and a statement
per level of the tree. Anything else (a document that did not compile, a caller the
policies refuse, variables that do not coerce or a page size out of range) goes to the
resolver path, which answers it as it answers any request.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson
import structlog
from graphql import VariableDefinitionNode
from graphql.execution.values import get_variable_values
from starlette.requests import Request
from starlette.responses import Response
from strawberry import Schema

from api.access.scope import OperationDescription
from api.db.errors import translate
from api.domain.errors import DomainError
from api.graph.core.compiled import NeedsValues, NotCompiled, Plan, Planner
from api.graph.core.extensions import operation_label
from api.graph.core.trusted import sha256
from api.http.transaction import request_transaction
from api.policy.resources import principal_entity
from api.repositories.json_sql import CompiledReads
from api.resources import resources_of
from api.settings import GraphSettings

log = structlog.get_logger(__name__)

FIELDS = frozenset({"documentId", "operationName", "variables", "extensions"})
MAX_KEPT_VALUES = 1024  # bytes of filter values a kept plan may be keyed (and bound) by


class CompiledDocuments:
    """The planner and one process's plans (a plan is a pure function of the document and the
    operation's name; bounded by count)."""

    def __init__(self, schema: Schema, graph: GraphSettings, max_plans: int = 2048) -> None:
        self._schema = schema
        self._planner = Planner(schema, graph)
        self._plans: OrderedDict[tuple[str, str | None, bytes], Plan | NotCompiled] = OrderedDict()
        self._max_plans = max_plans

    def plan(
        self, text: str, operation_name: str | None, fixed: dict[str, Any] | None = None
    ) -> Plan | NotCompiled:
        """The plan of ``text`` (with ``fixed``: the values of the variables a filter is given
        by; one plan per distinct value, all in the same bounded memory)."""
        values = orjson.dumps(fixed, default=repr, option=orjson.OPT_SORT_KEYS) if fixed else b""
        if len(values) > MAX_KEPT_VALUES:
            # Planned for this request alone: plans are kept by count, so what each holds of
            # a caller's values is bounded too.
            return self._planner.plan(text, operation_name, fixed)
        key = (sha256(text), operation_name, values)
        found = self._plans.get(key)
        if found is None:
            found = self._plans[key] = self._planner.plan(text, operation_name, fixed)
            while len(self._plans) > self._max_plans:
                self._plans.popitem(last=False)
        else:
            self._plans.move_to_end(key)
        return found

    async def answer(self, request: Request) -> Response | None:
        """The response to ``request`` if it names a compiled document; None for the resolver
        path (which also answers every malformed request, in its own words)."""
        named = _named(await request.body())
        if named is None:
            return None
        document_id, operation_name, variables = named
        transaction = request_transaction(request)
        uow = transaction.uow
        if uow is None:
            return None
        resources = resources_of(request)
        text = await resources.documents.text(uow, document_id)
        if text is None:
            return None
        plan = self.plan(text, operation_name)
        try:
            fixed: dict[str, Any] = {}
            while isinstance(plan, NeedsValues):
                # Filters given by variables: planned with their values (each root's in turn;
                # a variable sent without a value leaves the document to the resolvers).
                coerced = self._coerced(plan.definitions, variables)
                more = {n: coerced[n] for n in plan.variables if n in coerced and n not in fixed}
                if not more:
                    break
                fixed |= more
                plan = self.plan(text, operation_name, fixed)
            if isinstance(plan, NotCompiled):
                return None
            parameters = plan.parameters(self._coerced(plan.variables, variables))
        except NotCompiled:
            return None  # the resolver path answers these values (with its error)
        principal = transaction.principal
        entity = principal_entity(principal)
        for action, resource in (*plan.asked, *((a, r) for a, r, _ in plan.guarded)):
            if not resources.policy.decide(entity, action, resource, principal.scopes).allowed:
                return None  # the resolver path refuses it, and audits the refusal
        started = time.perf_counter()
        description = OperationDescription(
            category="graphql",
            name=operation_label(plan.operation),
            kind="query",
            document=text,
            variables=variables,
        )
        access = transaction.access(lambda: description)
        try:
            with transaction.timings.measure("compiled"):
                row = await CompiledReads(access.uow).answer(plan.sql, parameters)
        except asyncpg.PostgresError as error:
            return self._failed(request, transaction.request_id, error, plan)
        for action, resource in plan.asked:
            access.authorize(action, resource)
        for action, resource, flag in plan.guarded:
            if row[flag]:
                access.authorize(action, resource)
        for type_name, column in plan.seen:
            access.audit.saw(type_name, row[column])
        try:
            await transaction.commit()
        except Exception as error:  # the audit append or the commit itself failed
            log.error("graphql.commit_failed", error=repr(error))
            return _errors(
                "the request could not be committed; nothing was changed — retry it",
                {"code": "SERVICE_UNAVAILABLE"},
            )
        self._count(request, plan, time.perf_counter() - started, "ok")
        return Response(orjson.dumps({"data": row["data"]}), media_type="application/json")

    def _coerced(
        self, definitions: Sequence[VariableDefinitionNode], variables: dict[str, Any] | None
    ) -> dict[str, Any]:
        """The request's variables as the resolver path would coerce them (defaults applied);
        NotCompiled when they do not coerce (the resolver path names the error)."""
        if not definitions:
            return {}
        coerced = get_variable_values(self._schema._schema, definitions, variables or {})
        if isinstance(coerced, list):
            raise NotCompiled("the variables do not coerce")
        return coerced.coerced

    def _failed(
        self, request: Request, request_id: str, error: asyncpg.PostgresError, plan: Plan
    ) -> Response:
        translated = translate(error)
        self._count(request, plan, 0.0, "error")
        if isinstance(translated, DomainError):
            return _errors(translated.message, {"code": translated.code})
        log.error("graphql.compiled_failed", error=repr(error), operation=plan.operation)
        return _errors(
            f"internal error; quote request id {request_id} when you report it",
            {"code": "INTERNAL_ERROR", "requestId": request_id},
        )

    @staticmethod
    def _count(request: Request, plan: Plan, seconds: float, outcome: str) -> None:
        metrics = resources_of(request).metrics
        name = metrics.operation_name(operation_label(plan.operation))
        metrics.graphql_seconds.labels(name, "query").observe(seconds)
        metrics.graphql_operations.labels(name, "query", outcome).inc()


def _named(body: bytes) -> tuple[str, str | None, dict[str, Any] | None] | None:
    """(document id, operation name, variables) of a body that names a document and sends
    nothing else the compiled path would have to honour (a text, other extensions)."""
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not data.keys() <= FIELDS:
        return None
    variables = data.get("variables")
    if variables is not None and not isinstance(variables, dict):
        return None
    operation_name = data.get("operationName")
    if operation_name is not None and not isinstance(operation_name, str):
        return None
    extensions = data.get("extensions") or {}
    if not isinstance(extensions, dict) or not extensions.keys() <= {"persistedQuery"}:
        return None
    document_id = data.get("documentId")
    if document_id is None:
        persisted = extensions.get("persistedQuery")
        if isinstance(persisted, dict):
            document_id = persisted.get("sha256Hash")
    elif "persistedQuery" in extensions:
        return None
    if not isinstance(document_id, str):
        return None
    return document_id, operation_name, variables


def _errors(message: str, extensions: dict[str, object]) -> Response:
    body = {"data": None, "errors": [{"message": message, "extensions": extensions}]}
    return Response(orjson.dumps(body), media_type="application/json")
