"""Registered queries compiled to one SQL statement that returns the response's ``data`` as JSON.

A trusted document is known before any request names it, so the work the resolver path does per
request — walking the document, resolving every field of every row in Python, a statement per
level of the tree — can be done once, at planning: the planner turns the document into one
statement that builds the whole response inside PostgreSQL. The statement runs in the request's
transaction under the caller's identity, so row-level security filters it as it filters any
other; the policies' request-level decisions are taken before it runs; and it also returns what
the audit record needs (the ids of the rows the caller received, whether a guarded relation was
followed).

What the planner compiles is declared next to the Strawberry types: a ``Table`` on each object
type (its columns, the rows it points at, the lists under it) and a ``RootConnection`` in the
metadata of a root field. The declarations name columns; the SQL itself (the JSON-building
statement, and a domain's computed columns and lists) is built in the repositories
(``api.repositories.json_sql`` and each domain's repository), as all SQL is. Arguments may be
literals or variables (a variable's value is checked when a request sends it). Whatever is not
declared (mutations, subscriptions, an ordering given by a variable, fragments on other types,
directives, computed fields, personal data, filters, paging backward) runs on the resolver
path, for the whole document, and ``plan`` says why. The two paths give the same bytes (the
differential test runs random documents through both).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from graphql import (
    BooleanValueNode,
    EnumValueNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLEnumType,
    GraphQLField,
    GraphQLObjectType,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    NullValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    StringValueNode,
    ValueNode,
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
from api.policy.engine import Entity
from api.repositories.json_sql import (
    KEY_TYPES,
    MAX_KEYS,
    ChildRows,
    Format,
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
from api.repositories.sql import Conditions, Ordering, decode_cursor
from api.settings import GraphSettings

SQL = "lighthouse.sql"  # a root field's metadata key for its RootConnection
TABLE = "__lighthouse_table__"  # the attribute a compiled object type keeps its Table in


class NotCompiled(Exception):
    """Why a document runs on the resolver path."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Column:
    """A scalar of the row: a column's name, or an expression a repository gives (naming the
    row ``{row}``), and how it is written."""

    source: str
    format: Format = Format.VALUE


@dataclass(frozen=True, slots=True)
class Composite:
    """An object made of the row's own columns (a location): its fields' columns."""

    fields: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class ToOne:
    """The row ``key`` points at, in the field type's table. ``guarded``: the policies'
    question the resolver path asks when it follows the relation (decided before the statement
    runs, recorded when a row of the page had the key set)."""

    key: str
    guarded: tuple[str, Entity] | None = None
    target_key: str = "id"  # the column of the field type's table that ``key`` holds


@dataclass(frozen=True, slots=True)
class Variable:
    """An argument given by a variable: its value is known only when a request sends it."""

    name: str


@dataclass(frozen=True, slots=True)
class Slot:
    """A parameter from a variable: ``convert`` turns the request's (coerced) value into the
    parameter, or raises NotCompiled for a value the resolver path refuses or treats apart."""

    variable: str
    convert: Callable[[Any], object]


def checked(value: object, convert: Callable[[Any], object]) -> object:
    """An argument's parameter: converted now when the document gives it literally (raising
    NotCompiled at planning), when a request sends it when given by a variable."""
    if isinstance(value, Variable):
        return Slot(value.name, convert)
    return convert(value)


def literal(value: object, where: str) -> Any:
    """An argument that shapes the statement itself (an ordering): a variable will not do."""
    if isinstance(value, Variable):
        raise NotCompiled(f"{where} given by a variable is not compiled")
    return value


Bind = Callable[[object, str], str]  # a value (or a Slot) and its SQL type → its placeholder


@dataclass(frozen=True, slots=True)
class ToMany:
    """A list field: ``children`` turns the field's arguments (literal values, or Variables)
    into its rows (through a repository's SQL), or raises NotCompiled for arguments the
    resolver path refuses."""

    children: Callable[[Mapping[str, Any], Bind], ChildRows]


FieldSql = Column | Composite | ToOne | ToMany


@dataclass(frozen=True, slots=True)
class Table:
    """How an object type reads from the database: its table, and its fields by Python name."""

    name: str
    fields: Mapping[str, FieldSql]


def compiled(cls: type, table: str, **fields: FieldSql) -> None:
    """Declare how ``cls`` (a Strawberry object type) compiles to SQL."""
    setattr(cls, TABLE, Table(table, fields))


class Filter(Protocol):
    """A repository's filter: its WHERE clause, its values appended to ``args``."""

    def conditions(self, args: list[object] | None = None) -> Conditions: ...


@dataclass(frozen=True, slots=True)
class RootConnection:
    """A root field that lists a table as a Relay connection (``first``, ``after``,
    ``orderBy``, and a ``filter`` given literally when ``filter`` turns it into the
    repository's filter, raising NotCompiled for what it leaves to the resolvers)."""

    orderings: Mapping[str, Ordering]
    default_order: str
    listed: tuple[str, Entity]  # the policies' question the resolver path asks first
    audited: str  # the type name the audit record notes the rows under
    page_size: Callable[[GraphSettings], tuple[int, int]]  # (default, most)
    filter: Callable[[Any], Filter] | None = None


@dataclass(frozen=True, slots=True)
class RootById:
    """A root field that finds one row by its Relay id (null when there is none or the caller
    may not see it)."""

    type_name: str  # the id's type
    listed: tuple[str, Entity]  # the policies' question the resolver path asks first
    audited: str  # the type name the audit record notes the row under
    decode: Callable[[str, str, str], int]  # (id, type, field) → key; InvalidInput if not one


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


class Planner:
    """Plans documents against ``schema``; plans are pure functions of the document."""

    def __init__(self, schema: Schema, graph: GraphSettings) -> None:
        self._schema = schema
        self._graph = graph

    def plan(self, text: str, operation_name: str | None) -> Plan | NotCompiled:
        try:
            return self._plan(text, operation_name)
        except NotCompiled as reason:
            return reason

    def _plan(self, text: str, operation_name: str | None) -> Plan:
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
        plan = _Plan()
        pairs: list[tuple[str, str]] = []
        for node in _fields(operation.selection_set, "Query", fragments):
            if node.name.value == "__typename":
                pairs.append((_key(node), quote("Query")))
                continue
            root = _field(query, node.name.value)
            definition = _strawberry(root)
            spec = definition.metadata.get(SQL) if definition.metadata else None
            if isinstance(spec, RootConnection):
                pairs.append((_key(node), self._connection(plan, spec, root, node, fragments)))
            elif isinstance(spec, RootById):
                pairs.append((_key(node), self._by_id(plan, spec, root, node, fragments)))
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
        arguments = _arguments(node, skip={"filter"})
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
        filtered = self._filter(statement, spec, root, node)
        where = (
            f"({filtered}) AND ({self._after(statement, ordering, arguments)})"
            if ("after" in arguments)
            else filtered
        )
        page = statement.page(table.name, ordering, where, size, look_ahead, filtered)
        plan.asked.append(spec.listed)
        plan.seen.append((spec.audited, page.ids()))
        row = statement.alias("r")
        pairs: list[tuple[str, str]] = []
        for child in _fields(node.selection_set, connection.name, fragments):
            key, name = _key(child), child.name.value
            if name != "edges":
                _no_arguments(child)
            if name == "__typename":
                pairs.append((key, quote(connection.name)))
            elif name == "totalCount":
                pairs.append((key, page.total()))
            elif name == "pageInfo":
                pairs.append((key, self._page_info(statement, child, page, arguments, fragments)))
            elif name == "edges":
                edge_pairs: list[tuple[str, str]] = []
                for edge in _fields(child.selection_set, edges_type.name, fragments):
                    _no_arguments(edge)
                    if edge.name.value == "__typename":
                        edge_pairs.append((_key(edge), quote(edges_type.name)))
                    elif edge.name.value == "cursor":
                        edge_pairs.append((_key(edge), cursor_sql(ordering, row)))
                    elif edge.name.value == "node":
                        value = self._object(plan, node_type, row, edge, fragments, page)
                        edge_pairs.append((_key(edge), value))
                    else:
                        raise NotCompiled(
                            f"{edges_type.name}.{edge.name.value} is not compiled yet"
                        )
                pairs.append((key, page.edges(edge_pairs, row)))
            else:
                raise NotCompiled(f"{connection.name}.{name} is not compiled yet")
        return _object(pairs)

    def _filter(
        self, statement: JsonStatement, spec: RootConnection, root: GraphQLField, node: FieldNode
    ) -> str:
        """The WHERE clause of a ``filter`` given literally (TRUE without one), built by the
        repository's filter with its values bound among the statement's."""
        given = next((a for a in node.arguments or () if a.name.value == "filter"), None)
        if given is None or spec.filter is None:
            return "TRUE"
        if any(isinstance(n, VariableNode) for n in _walk(given.value)):
            raise NotCompiled("a filter given by variables is not compiled")
        value = value_from_ast(given.value, root.args["filter"].type)
        if value is Undefined:
            raise NotCompiled("a filter the schema refuses")
        if value is None:
            return "TRUE"
        argument = next(a for a in _strawberry(root).arguments if a.python_name == "filter")
        converted = convert_argument(
            value, argument.type, self._schema.schema_converter.scalar_registry, self._schema.config
        )
        try:
            return spec.filter(converted).conditions(statement.params).sql()
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
        arguments = _arguments(node)
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
        for child in _fields(node.selection_set, "PageInfo", fragments):
            _no_arguments(child)
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
            pairs.append((_key(child), value))
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
        for child in _fields(node.selection_set, definition.name, fragments):
            key, name = _key(child), child.name.value
            if name == "__typename":
                pairs.append((key, quote(definition.name)))
                continue
            graphql_field = _field(definition, name)
            spec = table.fields.get(_python_name(graphql_field))
            where = f"{definition.name}.{name}"
            if spec is None:
                raise NotCompiled(f"{where} is computed in Python")
            if not isinstance(spec, ToMany):
                _no_arguments(child)
            if isinstance(spec, Column):
                _check_enum(graphql_field, where)
                value = formatted(column(spec.source, row), spec.format, definition.name)
                pairs.append((key, value))
            elif isinstance(spec, Composite):
                inner: list[tuple[str, str]] = []
                for part in _fields(child.selection_set, "", fragments):
                    if part.name.value not in spec.fields:
                        raise NotCompiled(f"{where}.{part.name.value} is computed in Python")
                    _no_arguments(part)
                    inner.append((_key(part), column(spec.fields[part.name.value], row)))
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
                children = spec.children(_arguments(child), statement.bind)
                alias = statement.alias("c")
                value = self._object(plan, target, alias, child, fragments, None)
                pairs.append((key, child_list(value, children, row, alias)))
        return _object(pairs)


def _object(pairs: list[tuple[str, str]]) -> str:
    if not 1 <= len(pairs) <= MAX_KEYS:
        raise NotCompiled(f"1 to {MAX_KEYS} fields at one level are compiled")
    return json_object(pairs)


# --- the document ----------------------------------------------------------------------------


def _fields(
    selections: SelectionSetNode | None,
    type_name: str,
    fragments: Mapping[str, FragmentDefinitionNode],
) -> list[FieldNode]:
    """The fields of a selection set, fragments on the same type spread in place. A response
    key asked twice (which GraphQL merges) is left to the resolver path."""
    if selections is None:
        raise NotCompiled("a selection set is missing")
    found: list[FieldNode] = []
    for selection in selections.selections:
        if selection.directives:
            raise NotCompiled("directives (@skip, @include) are not compiled")
        if isinstance(selection, FieldNode):
            found.append(selection)
            continue
        if isinstance(selection, FragmentSpreadNode):
            fragment = fragments.get(selection.name.value)
            if fragment is None or fragment.directives:
                raise NotCompiled("a fragment is missing or has directives")
            condition, inner = fragment.type_condition.name.value, fragment.selection_set
        elif isinstance(selection, InlineFragmentNode):
            condition = selection.type_condition.name.value if selection.type_condition else ""
            inner = selection.selection_set
        else:  # pragma: no cover - graphql-core has no other selection
            raise NotCompiled("an unknown selection")
        if condition and condition != type_name:
            raise NotCompiled(f"a fragment on {condition} inside {type_name or 'an object'}")
        found.extend(_fields(inner, type_name, fragments))
    keys = [_key(node) for node in found]
    if len(set(keys)) != len(keys):
        raise NotCompiled("a response key asked twice (GraphQL's field merging) is not compiled")
    return found


def _key(node: FieldNode) -> str:
    return node.alias.value if node.alias else node.name.value


def _no_arguments(node: FieldNode) -> None:
    if node.arguments:
        raise NotCompiled(f"arguments of {node.name.value} are not compiled")


def _arguments(node: FieldNode, skip: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    return {
        argument.name.value: _literal(argument.value)
        for argument in node.arguments or ()
        if argument.name.value not in skip
    }


def _walk(value: ValueNode) -> list[ValueNode]:
    """A value and every value inside it."""
    found = [value]
    if isinstance(value, ListValueNode):
        for item in value.values:
            found += _walk(item)
    elif isinstance(value, ObjectValueNode):
        for object_field in value.fields:
            found += _walk(object_field.value)
    return found


def _literal(value: ValueNode) -> Any:
    if isinstance(value, VariableNode):
        return Variable(value.name.value)
    if isinstance(value, IntValueNode):
        return int(value.value)
    if isinstance(value, EnumValueNode | StringValueNode):
        return value.value
    if isinstance(value, BooleanValueNode):
        return value.value
    if isinstance(value, NullValueNode):
        return None
    if isinstance(value, ListValueNode):
        items = [_literal(item) for item in value.values]
        if any(isinstance(item, Variable) for item in items):
            raise NotCompiled("a variable inside a list is not compiled")
        return items
    raise NotCompiled(f"an argument of kind {value.kind} is not compiled")


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


def statuses_argument(values: Sequence[object] | None, allowed: Sequence[str]) -> list[str]:
    """A list-of-enums argument as the resolver path reads it: absent or empty means all (a
    variable's values arrive as the enum's members, a literal's as names)."""
    chosen = values or list(allowed)
    return sorted({str(getattr(v, "value", v)) for v in chosen})
