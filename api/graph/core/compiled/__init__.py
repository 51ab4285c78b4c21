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

from api.graph.core.compiled.declarations import (
    SQL,
    Bind,
    Column,
    Composite,
    Filter,
    NeedsValues,
    NotCompiled,
    RootById,
    RootConnection,
    Slot,
    Table,
    ToMany,
    ToOne,
    Variable,
    checked,
    compiled,
    literal,
    statuses_argument,
)
from api.graph.core.compiled.planner import Plan, Planner

__all__ = [
    "SQL",
    "Bind",
    "Column",
    "Composite",
    "Filter",
    "NeedsValues",
    "NotCompiled",
    "Plan",
    "Planner",
    "RootById",
    "RootConnection",
    "Slot",
    "Table",
    "ToMany",
    "ToOne",
    "Variable",
    "checked",
    "compiled",
    "literal",
    "statuses_argument",
]
