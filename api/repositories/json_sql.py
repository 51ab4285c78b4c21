"""The SQL that builds a GraphQL response as JSON inside PostgreSQL.

The planner of compiled documents (``api.graph.core.compiled``) walks a registered query and
composes these pieces into one statement; every piece of SQL it uses is built here (or, for a
domain's own columns and lists, in that domain's repository), so the graph holds none. Values
are formatted as the resolver path's serialisation writes them: timestamps as Python's
``isoformat()``, Relay ids as base64 of ``Type:id``, cursors as ``encode_cursor``, so that the two
paths answer the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

import asyncpg

from api.db.unit_of_work import UnitOfWork
from api.repositories.sql import Ordering

MAX_KEYS = 50  # json_build_object takes at most 100 arguments


class Format(StrEnum):
    VALUE = "value"  # text, numbers, booleans and enums (whose names are their values) as they are
    TIMESTAMP = "timestamp"  # as Python's isoformat() writes a UTC datetime
    DATE = "date"
    GLOBAL_ID = "global_id"  # the Relay id: base64 of "Type:id"


@dataclass(frozen=True, slots=True)
class ChildRows:
    """The rows of a list under a parent row: ``rows`` is a query of the child table for the
    parent ``{parent}``, ``order`` how they are listed."""

    rows: str
    order: str


def quote(value: str) -> str:
    """A SQL string literal (standard-conforming strings: only the quote is doubled)."""
    return "'" + value.replace("'", "''") + "'"


def column(name_or_expression: str, row: str) -> str:
    """A column of ``row`` by name, or an expression that names the row as ``{row}``."""
    if "{row}" in name_or_expression:
        return name_or_expression.format(row=row)
    return f"{row}.{name_or_expression}"


def formatted(expression: str, format: Format, type_name: str) -> str:
    if format is Format.TIMESTAMP:
        return timestamp_sql(expression)
    if format is Format.DATE:
        return f"to_char({expression}, 'YYYY-MM-DD')"
    if format is Format.GLOBAL_ID:
        prefix = quote(type_name + ":")
        return _base64(f"{prefix} || {expression}")
    return expression


def timestamp_sql(expression: str) -> str:
    """A timestamptz as Python's ``datetime.isoformat()`` writes it in UTC: microseconds only
    when there are some, and ``+00:00``."""
    utc = f"({expression} AT TIME ZONE 'UTC')"
    return (
        f"(to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE WHEN "
        f"date_part('microseconds', {utc})::bigint % 1000000 = 0 THEN '' "
        f"ELSE to_char({utc}, '.US') END || '+00:00')"
    )


def case_of(expression: str, mapping: Mapping[str, str]) -> str:
    """``mapping[value]`` of ``expression``'s value (a table of the domain, in SQL)."""
    whens = " ".join(f"WHEN {quote(k)} THEN {quote(v)}" for k, v in mapping.items())
    return f"CASE {expression} {whens} END"


# How a cursor's key values are bound, and the bounds that stand for "no cursor".
KEY_TYPES: dict[type, tuple[str, str, str]] = {
    datetime: ("timestamptz", "'-infinity'::timestamptz", "'infinity'::timestamptz"),
    int: ("bigint", "(-9223372036854775807 - 1)", "9223372036854775807"),
    # Text keys (codes) are never empty, so '' comes before all; no text comes after all, so a
    # descending ordering over text has no SQL form (none is declared).
    str: ("text", "''", ""),
}


def cursor_sql(ordering: Ordering, row: str) -> str:
    """A row's cursor as ``encode_cursor`` writes it: URL-safe base64, unpadded, of the compact
    JSON ``[ordering, key values…]`` (a timestamp as ``{"t": isoformat}``)."""
    parts = [quote(f'["{ordering.name}"')]
    for name, kind in zip(ordering.columns, ordering.types, strict=True):
        if kind is datetime:
            parts.append(f"""',{{"t":"' || {timestamp_sql(f"{row}.{name}")} || '"}}'""")
        elif kind is int:
            parts.append(f"',' || {row}.{name}::text")
        elif kind is str:
            parts.append(f"',' || to_json({row}.{name})::text")
        else:
            raise ValueError(f"a cursor over a {kind.__name__} has no SQL form")
    text = " || ".join([*parts, "']'"])
    return f"rtrim(translate(encode(convert_to({text}, 'UTF8'), 'base64'), E'+/\\n', '-_'), '=')"


def after_condition(ordering: Ordering, holes: Sequence[str]) -> str:
    """Rows after the cursor whose key values are ``holes`` (each null when there is none)."""
    bounds = []
    for hole, kind in zip(holes, ordering.types, strict=True):
        _, least, most = KEY_TYPES[kind]
        bound = most if ordering.descending else least
        if not bound:
            raise ValueError(f"a descending ordering over {kind.__name__} has no SQL form")
        bounds.append(f"coalesce({hole}, {bound})")
    operator = "<" if ordering.descending else ">"
    return f"({', '.join(ordering.columns)}) {operator} ({', '.join(bounds)})"


def _base64(text: str) -> str:
    return f"translate(encode(convert_to({text}, 'UTF8'), 'base64'), E'\\n', '')"


def json_object(pairs: Sequence[tuple[str, str]]) -> str:
    """A JSON object of (response key, value SQL) pairs, in that order."""
    if not 1 <= len(pairs) <= MAX_KEYS:
        raise ValueError(f"1 to {MAX_KEYS} keys in one object")
    return f"json_build_object({', '.join(f'{quote(k)}, {v}' for k, v in pairs)})"


def related_row(value: str, table: str, alias: str, key: str, target_key: str = "id") -> str:
    """``value`` (built on ``alias``) of the row of ``table`` whose ``target_key`` is ``key``;
    null without."""
    return f"(SELECT {value} FROM {table} AS {alias} WHERE {alias}.{target_key} = {key})"


def child_list(value: str, children: ChildRows, parent: str, alias: str) -> str:
    """``value`` (built on ``alias``) of each child row of ``parent``, as a JSON array."""
    rows = children.rows.format(parent=parent)
    return (
        f"coalesce((SELECT json_agg({value} ORDER BY {children.order}) "
        f"FROM ({rows}) AS {alias}), '[]'::json)"
    )


@dataclass(slots=True)
class JsonStatement:
    """One statement being built: its parameters, its page CTEs and its extra columns."""

    params: list[object] = field(default_factory=list)
    ctes: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    aliases: int = 0

    def bind(self, value: object, sql_type: str) -> str:
        self.params.append(value)
        return f"${len(self.params)}::{sql_type}"

    def alias(self, prefix: str) -> str:
        self.aliases += 1
        return f"{prefix}{self.aliases}"

    def page(
        self,
        table: str,
        ordering: Ordering,
        where: str,
        size: str,
        look_ahead: str,
        filtered: str = "TRUE",
    ) -> Page:
        """A page of ``table`` in ``ordering`` (``where``: the filter and the cursor;
        ``filtered``: the filter alone, which the total counts): the rows, and one more to tell
        if there are."""
        page, more = self.alias("page"), self.alias("more")
        order = ordering.order_by(False)
        self.ctes.append(
            f"{more} AS (SELECT * FROM {table} WHERE {where} ORDER BY {order} LIMIT {look_ahead})"
        )
        self.ctes.append(f"{page} AS (SELECT * FROM {more} ORDER BY {order} LIMIT {size})")
        return Page(self, table, ordering, page, more, size, filtered)

    def rows(self, table: str, where: str) -> Page:
        """The rows of ``table`` that ``where`` names (one, by its id): a page of no ordering."""
        name = self.alias("rows")
        self.ctes.append(f"{name} AS (SELECT * FROM {table} WHERE {where})")
        return Page(self, table, None, name, name, "0", where)

    def first_of(self, value: str, page: Page, row: str) -> str:
        """``value`` (built on ``row``) of the page's one row; null when it has none."""
        return f"(SELECT {value} FROM {page.name} AS {row})"

    def sql(self, data: str) -> str:
        with_clause = f"WITH {', '.join(self.ctes)} " if self.ctes else ""
        return f"{with_clause}SELECT {', '.join([f'{data} AS data', *self.columns])}"


@dataclass(frozen=True, slots=True)
class Page:
    """A page's CTEs, and the SQL of what a connection says about it."""

    statement: JsonStatement
    table: str
    ordering: Ordering | None  # None: rows by id, not a connection's page
    name: str
    more: str
    size: str
    filtered: str  # the WHERE clause of the filter alone

    def ids(self) -> str:
        """A result column with the page's ids (for the audit record); its name."""
        column = f"{self.name}_ids"
        self.statement.columns.append(f"ARRAY(SELECT id FROM {self.name}) AS {column}")
        return column

    def any_set(self, key: str) -> str:
        """A result column saying whether a row of the page has ``key`` set; its name."""
        flag = self.statement.alias("guard")
        self.statement.columns.append(
            f"EXISTS (SELECT 1 FROM {self.name} WHERE {key} IS NOT NULL) AS {flag}"
        )
        return flag

    def edges(self, pairs: Sequence[tuple[str, str]], row: str) -> str:
        assert self.ordering is not None
        return (
            f"coalesce((SELECT json_agg({json_object(pairs)} "
            f"ORDER BY {self.ordering.order_by(False)}) FROM {self.name} AS {row}), '[]'::json)"
        )

    def has_next(self) -> str:
        return f"((SELECT count(*) FROM {self.more}) > {self.size})"

    def end_cursor(self, first: bool) -> str:
        assert self.ordering is not None
        alias = self.statement.alias("k")
        by = self.ordering.order_by(not first)
        return (
            f"(SELECT {cursor_sql(self.ordering, alias)} FROM {self.name} AS {alias} "
            f"ORDER BY {by} LIMIT 1)"
        )

    def total(self) -> str:
        return f"(SELECT count(*) FROM {self.table} WHERE {self.filtered})"


class CompiledReads:
    """Runs a compiled document's statement in a unit of work (under its caller's identity)."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def answer(self, sql: str, params: Sequence[object]) -> asyncpg.Record:
        """The statement's one row: ``data`` (the response's data), then the audit's columns."""
        row = await self._uow.fetchrow(sql, *params)
        assert row is not None  # a SELECT without FROM: always one row
        return row
