"""Reads folded into a page's own statement: what the page's rows refer to, in one round trip.

A connection's page and its nested fields (each incident's bureau, its newest events…) would be
read one statement after another: the page, then one batch per nested field, each waiting for
the one before. A ``Companion`` is such a batch read written against an array of keys (``$1``);
``read_page`` runs the page as a CTE and each companion over the keys the page's rows hold, in
one statement, and returns every part as an array of rows:

    WITH page AS MATERIALIZED (<the page's SELECT>)
    SELECT ARRAY(SELECT p FROM page AS p ORDER BY <the page's order>),
           ARRAY(SELECT c FROM (<companion, $1 := the page's keys>) AS c), …

Row-level security applies inside it as to the statements it replaces. The rows come back as
anonymous records (tuples, decoded by asyncpg with the connection's codecs), so each part's
columns must be its record type's fields in order (``columns(RecordType)``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from api.db.unit_of_work import UnitOfWork

T = TypeVar("T")

_PARAMETER = re.compile(r"\$(\d+)\b")


@dataclasses.dataclass(frozen=True, slots=True)
class Companion(Generic[T]):
    """A batch read by keys: ``sql`` takes the keys as ``$1`` and ``arguments`` as ``$2``…;
    its columns are ``record``'s fields in order. Folded into a page, the keys are the page's
    ``key`` column, and ``rows`` receives the records read."""

    sql: str
    record: Callable[..., T]
    arguments: tuple[Any, ...] = ()
    key: str = "id"
    rows: list[T] = dataclasses.field(default_factory=list)
    # Told, by whoever takes the rows, the records its callers will see (the page's look-ahead
    # row is not theirs): a read service notes them for the audit record, or decides then.
    then: Callable[[Sequence[T]], None] | None = None

    def __post_init__(self) -> None:
        used = {int(number) for number in _PARAMETER.findall(self.sql)}
        if 1 not in used or max(used) != 1 + len(self.arguments):
            raise ValueError("a companion takes its keys as $1 and one argument per $2…")
        if "$$" in self.sql:
            raise ValueError("a companion's SQL is renumbered; it cannot hold dollar quotes")

    def keyed(self, key: str) -> Companion[T]:
        """The same read, keyed by the page's column ``key``, with nothing received yet."""
        return dataclasses.replace(self, key=key, rows=[])

    def followed_by(self, then: Callable[[Sequence[T]], None]) -> Companion[T]:
        return dataclasses.replace(self, then=then)


def fold(
    page: str, arguments: Sequence[Any], order_by: str, companions: Sequence[Companion[Any]]
) -> tuple[str, list[Any]]:
    """The one statement that reads ``page`` and every companion; its arguments."""
    parts = [f"ARRAY(SELECT p FROM page AS p ORDER BY {order_by})"]
    values = list(arguments)
    for companion in companions:
        offset = len(values) - 1
        keys = (
            f"(SELECT array_agg(DISTINCT p.{companion.key})"
            f" FILTER (WHERE p.{companion.key} IS NOT NULL) FROM page AS p)"
        )

        def renumber(match: re.Match[str], keys: str = keys, offset: int = offset) -> str:
            number = int(match.group(1))
            return keys if number == 1 else f"${number + offset}"

        parts.append(f"ARRAY(SELECT c FROM ({_PARAMETER.sub(renumber, companion.sql)}) AS c)")
        values.extend(companion.arguments)
    return f"WITH page AS MATERIALIZED ({page})\nSELECT " + ",\n       ".join(parts), values


async def read_page(
    uow: UnitOfWork,
    page: str,
    arguments: Sequence[Any],
    order_by: str,
    record: Callable[..., T],
    companions: Sequence[Companion[Any]] = (),
) -> list[T]:
    """The page's rows as ``record``s; each companion's rows into its ``rows``.

    ``page`` selects ``record``'s fields in order and ends in ``ORDER BY order_by LIMIT …``.
    Without companions it runs as it is.
    """
    if not companions:
        return [record(**row) for row in await uow.fetch(page, *arguments)]
    query, values = fold(page, arguments, order_by, companions)
    row = await uow.fetchrow(query, *values)
    assert row is not None  # a SELECT without FROM returns one row
    for companion, received in zip(companions, row[1:], strict=True):
        companion.rows[:] = [companion.record(*values) for values in received]
    return [record(*values) for values in row[0]]
