"""What the planner compiles, declared next to the Strawberry types: how an object type reads
from its table, how a root field lists or finds rows, and how arguments become parameters."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from graphql import VariableDefinitionNode

from api.policy.engine import Entity
from api.repositories.json_sql import (
    ChildRows,
    Format,
)
from api.repositories.sql import Conditions, Ordering
from api.settings import GraphSettings

SQL = "lighthouse.sql"  # a root field's metadata key for its RootConnection
TABLE = "__lighthouse_table__"  # the attribute a compiled object type keeps its Table in


class NotCompiled(Exception):
    """Why a document runs on the resolver path."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NeedsValues(NotCompiled):
    """The document compiles once the values of ``variables`` are known: a filter given by
    variables builds its WHERE clause from their values (one plan per distinct value)."""

    def __init__(
        self, variables: tuple[str, ...], definitions: tuple[VariableDefinitionNode, ...] = ()
    ) -> None:
        super().__init__(f"a filter given by variables ({', '.join(variables)}) compiles per value")
        self.variables = variables
        self.definitions = definitions  # the operation's, to coerce the request's values


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


@dataclass(frozen=True, slots=True, repr=False)
class Slot:
    """A parameter from a variable: ``convert`` turns the request's (coerced) value into the
    parameter, or raises NotCompiled for a value the resolver path refuses or treats apart."""

    variable: str
    convert: Callable[[Any], object]

    def __repr__(self) -> str:
        return f"${self.variable}"  # as `documents plan` prints the parameters


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
    audited: str | None  # the type the audit record notes the rows under (None: not noted)
    page_size: Callable[[GraphSettings], tuple[int, int]]  # (default, most)
    filter: Callable[[Any], Filter] | None = None


@dataclass(frozen=True, slots=True)
class RootById:
    """A root field that finds one row by its Relay id (null when there is none or the caller
    may not see it)."""

    type_name: str  # the id's type
    listed: tuple[str, Entity]  # the policies' question the resolver path asks first
    audited: str | None  # the type the audit record notes the row under (None: not noted)
    decode: Callable[[str, str, str], int]  # (id, type, field) → key; InvalidInput if not one


def statuses_argument(values: Sequence[object] | None, allowed: Sequence[str]) -> list[str]:
    """A list-of-enums argument as the resolver path reads it: absent or empty means all (a
    variable's values arrive as the enum's members, a literal's as names)."""
    chosen = values or list(allowed)
    return sorted({str(getattr(v, "value", v)) for v in chosen})
