"""The planner: a registered query, walked against the schema, becomes one statement."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    GraphQLEnumType,
    GraphQLField,
    GraphQLObjectType,
    OperationDefinitionNode,
    OperationType,
    VariableDefinitionNode,
    VariableNode,
    get_named_type,
    parse,
    value_from_ast,
)
from graphql.pyutils import Undefined
from strawberry import Schema
from strawberry.types.arguments import convert_argument
from strawberry.types.field import StrawberryField

from api.domain.errors import InvalidInput
from api.graph.core.compiled.declarations import (
    SQL,
    TABLE,
    Column,
    Composite,
    NeedsValues,
    NotCompiled,
    RootById,
    RootConnection,
    Slot,
    Table,
    ToMany,
    ToOne,
    checked,
    literal,
)
from api.graph.core.compiled.document import (
    arguments_of,
    fields_of,
    no_arguments,
    response_key,
    walk,
)
from api.policy.engine import Entity
from api.repositories.json_sql import (
    KEY_TYPES,
    MAX_KEYS,
    JsonStatement,
    Page,
    after_condition,
    child_list,
    column,
    cursor_sql,
    formatted,
    json_object,
    quote,
    related_row,
)
from api.repositories.sql import Ordering, decode_cursor
from api.settings import GraphSettings


@dataclass(frozen=True, slots=True)
class Plan:
    """A compiled document: one statement, its parameters, and what the audit needs."""

    operation: str
    sql: str
    params: tuple[object, ...]  # values, and Slots the request's variables fill
    variables: tuple[VariableDefinitionNode, ...]
    asked: tuple[tuple[str, Entity], ...]  # decided before the statement, recorded always
    guarded: tuple[tuple[str, Entity, str], ...]  # (action, resource, the flag column)
    seen: tuple[tuple[str, str], ...]  # (type name, the id-array column)

    def parameters(self, variables: Mapping[str, Any]) -> list[object]:
        """The statement's parameters for a request's coerced variables; NotCompiled when a
        value is one the resolver path must answer (a page size out of range)."""
        return [
            p.convert(variables.get(p.variable)) if isinstance(p, Slot) else p for p in self.params
        ]


@dataclass(slots=True)
class _Plan:
    """What planning gathers besides the statement."""

    statement: JsonStatement = field(default_factory=JsonStatement)
    asked: list[tuple[str, Entity]] = field(default_factory=list)
    guarded: list[tuple[str, Entity, str]] = field(default_factory=list)
    seen: list[tuple[str, str]] = field(default_factory=list)
    fixed: Mapping[str, Any] = field(default_factory=dict)  # variables' values compiled in
    definitions: tuple[VariableDefinitionNode, ...] = ()


class Planner:
    """Plans documents against ``schema``; plans are pure functions of the document."""

    def __init__(self, schema: Schema, graph: GraphSettings) -> None:
        self._schema = schema
        self._graph = graph

    def plan(
        self, text: str, operation_name: str | None, fixed: Mapping[str, Any] | None = None
    ) -> Plan | NotCompiled:
        """The document's plan, or why not. ``fixed``: coerced values of the variables a filter
        is given by (``NeedsValues`` names them), compiled in as if written literally."""
        try:
            return self._plan(text, operation_name, fixed or {})
        except NotCompiled as reason:
            return reason

    def _plan(self, text: str, operation_name: str | None, fixed: Mapping[str, Any]) -> Plan:
        document = parse(text, max_tokens=self._graph.max_tokens)
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        if operation_name is None and len(operations) == 1:
            operation = operations[0]
        else:
            named = [o for o in operations if o.name and o.name.value == operation_name]
            if not named:
                raise NotCompiled("the request names no operation of the document")
            operation = named[0]
        if operation.operation is not OperationType.QUERY:
            raise NotCompiled(f"only queries are compiled ({operation.operation.value} is not)")
        if operation.directives:
            raise NotCompiled("directives are not compiled")
        query = self._definition("Query")
        plan = _Plan(fixed=fixed, definitions=tuple(operation.variable_definitions or ()))
        pairs: list[tuple[str, str]] = []
        for node in fields_of(operation.selection_set, "Query", fragments):
            if node.name.value == "__typename":
                pairs.append((response_key(node), quote("Query")))
                continue
            root = _field(query, node.name.value)
            definition = _strawberry(root)
            spec = definition.metadata.get(SQL) if definition.metadata else None
            if isinstance(spec, RootConnection):
                pairs.append(
                    (response_key(node), self._connection(plan, spec, root, node, fragments))
                )
            elif isinstance(spec, RootById):
                pairs.append((response_key(node), self._by_id(plan, spec, root, node, fragments)))
            else:
                raise NotCompiled(f"Query.{node.name.value} has no SQL mapping")
        assert operation.name is not None  # registered documents name every operation
        return Plan(
            operation=operation.name.value,
            sql=plan.statement.sql(_object(pairs)),
            params=tuple(plan.statement.params),
            variables=tuple(operation.variable_definitions or ()),
            asked=tuple(plan.asked),
            guarded=tuple(plan.guarded),
            seen=tuple(plan.seen),
        )

    def _definition(self, name: str) -> GraphQLObjectType:
        found = self._schema._schema.get_type(name)
        if not isinstance(found, GraphQLObjectType):
            raise NotCompiled(f"{name} is not an object type")
        return found

    def _connection(
        self,
        plan: _Plan,
        spec: RootConnection,
        root: GraphQLField,
        node: FieldNode,
        fragments: Mapping[str, FragmentDefinitionNode],
    ) -> str:
        statement = plan.statement
        known = {"first", "orderBy", "after"} | ({"filter"} if spec.filter else set())
        unknown = {a.name.value for a in node.arguments or ()} - known
        if unknown:
            raise NotCompiled(
                f"{node.name.value}({', '.join(sorted(unknown))}) is not compiled yet"
            )
        arguments = arguments_of(node, skip={"filter"})
        default, most = spec.page_size(self._graph)

        def page_size(value: object) -> int:
            size = default if value is None else value
            if not isinstance(size, int) or not 1 <= size <= most:
                raise NotCompiled("first out of range: the resolver path answers with the error")
            return size

        order_name = literal(arguments.get("orderBy", spec.default_order), "orderBy")
        ordering = spec.orderings.get(str(order_name))
        if ordering is None:
            raise NotCompiled(f"the ordering {order_name} is not compiled")
        connection = _object_type(root)
        edges_type = _object_type(_field(connection, "edges"))
        node_type = _object_type(_field(edges_type, "node"))
        table = _table(node_type)
        given = arguments.get("first", default)
        size = statement.bind(checked(given, page_size), "int")
        look_ahead = statement.bind(checked(given, lambda v: page_size(v) + 1), "int")
        filtered = self._filter(plan, spec, root, node)
        where = (
            f"({filtered}) AND ({self._after(statement, ordering, arguments)})"
            if ("after" in arguments)
            else filtered
        )
        page = statement.page(table.name, ordering, where, size, look_ahead, filtered)
        plan.asked.append(spec.listed)
        if spec.audited is not None:
            plan.seen.append((spec.audited, page.ids()))
        row = statement.alias("r")
        pairs: list[tuple[str, str]] = []
        for child in fields_of(node.selection_set, connection.name, fragments):
            key, name = response_key(child), child.name.value
            if name != "edges":
                no_arguments(child)
            if name == "__typename":
                pairs.append((key, quote(connection.name)))
            elif name == "totalCount":
                pairs.append((key, page.total()))
            elif name == "pageInfo":
                pairs.append((key, self._page_info(statement, child, page, arguments, fragments)))
            elif name == "edges":
                edge_pairs: list[tuple[str, str]] = []
                for edge in fields_of(child.selection_set, edges_type.name, fragments):
                    no_arguments(edge)
                    if edge.name.value == "__typename":
                        edge_pairs.append((response_key(edge), quote(edges_type.name)))
                    elif edge.name.value == "cursor":
                        edge_pairs.append((response_key(edge), cursor_sql(ordering, row)))
                    elif edge.name.value == "node":
                        value = self._object(plan, node_type, row, edge, fragments, page)
                        edge_pairs.append((response_key(edge), value))
                    else:
                        raise NotCompiled(
                            f"{edges_type.name}.{edge.name.value} is not compiled yet"
                        )
                pairs.append((key, page.edges(edge_pairs, row)))
            else:
                raise NotCompiled(f"{connection.name}.{name} is not compiled yet")
        return _object(pairs)

    def _filter(
        self, plan: _Plan, spec: RootConnection, root: GraphQLField, node: FieldNode
    ) -> str:
        """The WHERE clause of a ``filter`` (TRUE without one), built by the repository's
        filter with its values bound among the statement's. A filter given by variables is
        read with their values (``fixed``), so each distinct value has a plan of its own."""
        given = next((a for a in node.arguments or () if a.name.value == "filter"), None)
        if given is None or spec.filter is None:
            return "TRUE"
        variables = tuple(
            dict.fromkeys(n.name.value for n in walk(given.value) if isinstance(n, VariableNode))
        )
        if any(name not in plan.fixed for name in variables):
            raise NeedsValues(variables, plan.definitions)
        value = value_from_ast(given.value, root.args["filter"].type, dict(plan.fixed))
        if value is Undefined:
            raise NotCompiled("a filter the schema refuses")
        if value is None:
            return "TRUE"
        argument = next(a for a in _strawberry(root).arguments if a.python_name == "filter")
        converted = convert_argument(
            value, argument.type, self._schema.schema_converter.scalar_registry, self._schema.config
        )
        try:
            return spec.filter(converted).conditions(plan.statement.params).sql()
        except InvalidInput:
            raise NotCompiled("a filter the resolver path refuses (it names the error)") from None

    def _by_id(
        self,
        plan: _Plan,
        spec: RootById,
        root: GraphQLField,
        node: FieldNode,
        fragments: Mapping[str, FragmentDefinitionNode],
    ) -> str:
        arguments = arguments_of(node)
        if set(arguments) != {"id"}:
            raise NotCompiled(f"{node.name.value} takes its id only")

        def key(value: object) -> int:
            if not isinstance(value, str):
                raise NotCompiled("an id that is not text")
            try:
                return spec.decode(value, spec.type_name, "id")
            except InvalidInput:
                raise NotCompiled("an id the resolver path refuses") from None

        target = _object_type(root)
        statement = plan.statement
        hole = statement.bind(checked(arguments["id"], key), "bigint")
        rows = statement.rows(_table(target).name, f"id = {hole}")
        plan.asked.append(spec.listed)
        if spec.audited is not None:
            plan.seen.append((spec.audited, rows.ids()))
        row = statement.alias("r")
        value = self._object(plan, target, row, node, fragments, rows)
        return statement.first_of(value, rows, row)

    @staticmethod
    def _after(statement: JsonStatement, ordering: Ordering, arguments: Mapping[str, Any]) -> str:
        """Rows after the ``after`` cursor (all rows when it is null): its values bound one by
        one, decoded as the resolver path decodes them (a cursor it refuses goes to it)."""

        def part(index: int) -> Callable[[Any], object]:
            def convert(text: object) -> object:
                if text is None:
                    return None
                if not isinstance(text, str):
                    raise NotCompiled("a cursor that is not text")
                try:
                    return decode_cursor(ordering, text, "after")[index]
                except InvalidInput:
                    raise NotCompiled("a cursor the resolver path refuses") from None

            return convert

        given = arguments["after"]
        holes = [
            statement.bind(checked(given, part(index)), KEY_TYPES[kind][0])
            for index, kind in enumerate(ordering.types)
        ]
        return after_condition(ordering, holes)

    @staticmethod
    def _page_info(
        statement: JsonStatement,
        node: FieldNode,
        page: Page,
        arguments: Mapping[str, Any],
        fragments: Mapping[str, FragmentDefinitionNode],
    ) -> str:
        pairs: list[tuple[str, str]] = []
        for child in fields_of(node.selection_set, "PageInfo", fragments):
            no_arguments(child)
            name = child.name.value
            if name == "__typename":
                value = quote("PageInfo")
            elif name == "hasNextPage":
                value = page.has_next()
            elif name == "hasPreviousPage":
                after = arguments.get("after")
                value = statement.bind(checked(after, lambda v: v is not None), "boolean")
            elif name in ("startCursor", "endCursor"):
                value = page.end_cursor(first=name == "startCursor")
            else:
                raise NotCompiled(f"PageInfo.{name} is not compiled")
            pairs.append((response_key(child), value))
        return _object(pairs)

    def _object(
        self,
        plan: _Plan,
        definition: GraphQLObjectType,
        row: str,
        node: FieldNode,
        fragments: Mapping[str, FragmentDefinitionNode],
        page: Page | None,
    ) -> str:
        """The JSON object of ``row`` (a row of ``definition``'s table) for ``node``'s fields.
        ``page``: the page when ``row`` is one of its rows (guarded relations are only compiled
        there)."""
        statement = plan.statement
        table = _table(definition)
        pairs: list[tuple[str, str]] = []
        for child in fields_of(node.selection_set, definition.name, fragments):
            key, name = response_key(child), child.name.value
            if name == "__typename":
                pairs.append((key, quote(definition.name)))
                continue
            graphql_field = _field(definition, name)
            spec = table.fields.get(_python_name(graphql_field))
            where = f"{definition.name}.{name}"
            if spec is None:
                raise NotCompiled(f"{where} is computed in Python")
            if not isinstance(spec, ToMany):
                no_arguments(child)
            if isinstance(spec, Column):
                _check_enum(graphql_field, where)
                value = formatted(column(spec.source, row), spec.format, definition.name)
                pairs.append((key, value))
            elif isinstance(spec, Composite):
                inner: list[tuple[str, str]] = []
                for part in fields_of(child.selection_set, "", fragments):
                    if part.name.value not in spec.fields:
                        raise NotCompiled(f"{where}.{part.name.value} is computed in Python")
                    no_arguments(part)
                    inner.append((response_key(part), column(spec.fields[part.name.value], row)))
                pairs.append((key, _object(inner)))
            elif isinstance(spec, ToOne):
                target = _object_type(graphql_field)
                alias = statement.alias("t")
                value = self._object(plan, target, alias, child, fragments, None)
                pairs.append((key, related_row(value, _table(target).name, alias,
                                               column(spec.key, row), spec.target_key)))  # fmt: skip
                if spec.guarded is not None:
                    if page is None:
                        raise NotCompiled(f"{where} is guarded and only compiled on a page's rows")
                    action, resource = spec.guarded
                    plan.guarded.append((action, resource, page.any_set(spec.key)))
            else:
                target = _object_type(graphql_field)
                children = spec.children(arguments_of(child), statement.bind)
                alias = statement.alias("c")
                value = self._object(plan, target, alias, child, fragments, None)
                pairs.append((key, child_list(value, children, row, alias)))
        return _object(pairs)


def _object(pairs: list[tuple[str, str]]) -> str:
    if not 1 <= len(pairs) <= MAX_KEYS:
        raise NotCompiled(f"1 to {MAX_KEYS} fields at one level are compiled")
    return json_object(pairs)


# --- the schema ------------------------------------------------------------------------------


def _field(definition: GraphQLObjectType, name: str) -> GraphQLField:
    found: GraphQLField | None = definition.fields.get(name)
    if found is None:
        raise NotCompiled(f"{definition.name}.{name} is not a field")
    return found


def _strawberry(graphql_field: GraphQLField) -> StrawberryField:
    definition = (graphql_field.extensions or {}).get("strawberry-definition")
    if not isinstance(definition, StrawberryField):
        raise NotCompiled("a field Strawberry did not define")
    return definition


def _python_name(graphql_field: GraphQLField) -> str:
    name = _strawberry(graphql_field).python_name
    return "id" if name == "_id" else name  # Relay's Node keeps its id field as _id


def _object_type(graphql_field: GraphQLField) -> GraphQLObjectType:
    """The object type of a field, under its list and non-null wrappers."""
    named = get_named_type(graphql_field.type)
    if not isinstance(named, GraphQLObjectType):
        raise NotCompiled(f"{named} is not an object type")
    return named


def _table(definition: GraphQLObjectType) -> Table:
    strawberry_type = (definition.extensions or {}).get("strawberry-definition")
    table = getattr(getattr(strawberry_type, "origin", None), TABLE, None)
    if not isinstance(table, Table):
        raise NotCompiled(f"{definition.name} has no SQL mapping")
    return table


def _check_enum(graphql_field: GraphQLField, where: str) -> None:
    """An enum's names are what the resolver path writes; the row holds its values."""
    named = get_named_type(graphql_field.type)
    if isinstance(named, GraphQLEnumType):
        enum = getattr((named.extensions or {}).get("strawberry-definition"), "wrapped_cls", None)
        if not (isinstance(enum, type) and issubclass(enum, Enum)) or any(
            member.name != member.value for member in enum
        ):
            raise NotCompiled(f"{where}: an enum whose names are not its values")
