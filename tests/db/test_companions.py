"""A page and the reads of what its rows refer to, in one statement: each part comes back as
the separate statements would return it (values, types, order), and the parameters of every
part keep their meaning when they are put together."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
import pytest

from api.auth.principal import Principal, PrincipalKind
from api.db.unit_of_work import UnitOfWork
from api.repositories.companions import Companion, fold, read_page
from tests.support import DatabaseUnderTest

pytestmark = pytest.mark.db

CALLER = Principal(
    subject="companions-test", kind=PrincipalKind.SERVICE, bureau_code="PWB", bureau_id=3,
    roles=frozenset({"viewer"}), scopes=frozenset(), client_id="test", token_id="jti",
)  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class Parent:
    id: int
    owner_id: int | None
    tags: list[str]
    meta: dict[str, Any]
    at: datetime


@dataclasses.dataclass(frozen=True, slots=True)
class Child:
    id: int
    parent_id: int
    numbers: list[int]
    note: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class Owner:
    id: int
    name: str


PAGE = (
    "SELECT id, owner_id, tags, meta, at FROM parent WHERE id > $1 AND id <= $2"
    " ORDER BY {order} LIMIT $3"
)
CHILDREN = """
SELECT c.* FROM unnest($1::bigint[]) AS p (id) CROSS JOIN LATERAL (
    SELECT id, parent_id, numbers, note FROM child WHERE parent_id = p.id ORDER BY id DESC LIMIT $2
) AS c
"""
OWNERS = "SELECT id, name FROM owner WHERE id = ANY($1::int[]) AND name <> $2"


@pytest.fixture
async def uow(database: DatabaseUnderTest) -> AsyncIterator[UnitOfWork]:
    async with (
        database.app_pool(max_size=1) as pool,
        UnitOfWork(pool, CALLER.database_settings()) as opened,
    ):
        await opened.execute(
            """
            CREATE TEMP TABLE owner (id int PRIMARY KEY, name text NOT NULL);
            CREATE TEMP TABLE parent (id bigint PRIMARY KEY, owner_id int, tags text[],
                                      meta jsonb, at timestamptz);
            CREATE TEMP TABLE child (id bigint PRIMARY KEY, parent_id bigint,
                                     numbers int4[], note text);
            INSERT INTO owner SELECT g, 'owner ' || g FROM generate_series(1, 5) g;
            INSERT INTO parent SELECT g, CASE WHEN g % 4 = 0 THEN NULL ELSE g % 3 + 1 END,
                ARRAY['t' || g, '高雄'], jsonb_build_object('n', g, 'list', ARRAY[g, g]),
                '2026-01-01T00:00:00Z'::timestamptz + g * interval '1 hour 1 microsecond'
                FROM generate_series(1, 30) g;
            INSERT INTO child SELECT g, g % 30 + 1, ARRAY[g, g * 2],
                CASE WHEN g % 5 = 0 THEN NULL ELSE 'note ' || g END
                FROM generate_series(1, 200) g;
            """
        )
        yield opened


def _by_parent(children: list[Child]) -> dict[int, list[Child]]:
    grouped: dict[int, list[Child]] = {}
    for child in children:
        grouped.setdefault(child.parent_id, []).append(child)
    return grouped


def _children() -> Companion[Child]:
    return Companion(CHILDREN, Child, (3,)).keyed("id")


def _owners() -> Companion[Owner]:
    return Companion(OWNERS, Owner, ("owner 2",)).keyed("owner_id")


@pytest.mark.parametrize("order", ["at DESC, id DESC", "at ASC, id ASC"])
async def test_every_part_is_what_its_own_statement_returns(uow: UnitOfWork, order: str) -> None:
    page = PAGE.format(order=order)
    arguments = [4, 27, 11]
    children, owners = _children(), _owners()

    together = await read_page(uow, page, arguments, order, Parent, [children, owners])

    alone = await read_page(uow, page, arguments, order, Parent)
    assert together == alone and len(alone) == 11
    assert [parent.id for parent in alone] == sorted(
        (parent.id for parent in alone), reverse=order.startswith("at DESC")
    )
    ids = [parent.id for parent in alone]
    expected_children = [Child(**row) for row in await uow.fetch(CHILDREN, ids, 3)]
    # The keys go in as a set: the rows of each key keep their order (newest child first).
    assert _by_parent(children.rows) == _by_parent(expected_children)
    assert len(children.rows) == len(expected_children) == 33
    owner_ids = sorted({p.owner_id for p in alone if p.owner_id is not None})
    expected_owners = [Owner(**row) for row in await uow.fetch(OWNERS, owner_ids, "owner 2")]
    assert sorted(owners.rows, key=lambda o: o.id) == sorted(expected_owners, key=lambda o: o.id)
    assert owners.rows and all(owner.name != "owner 2" for owner in owners.rows)


async def test_an_empty_page_reads_nothing_else(uow: UnitOfWork) -> None:
    children, owners = _children(), _owners()
    order = "at ASC, id ASC"
    found = await read_page(uow, PAGE.format(order=order), [30, 40, 5], order, Parent, [
        children, owners,
    ])  # fmt: skip
    assert found == [] and children.rows == [] and owners.rows == []


def test_parameters_keep_their_meaning_when_put_together() -> None:
    query, values = fold("SELECT 1 WHERE $1 < $2", [1, 2], "id", [_children(), _owners()])
    assert values == [1, 2, 3, "owner 2"]
    assert "LIMIT $3" in query and "name <> $4" in query
    assert "$1::bigint[]" not in query and "$1::int[]" not in query
    assert "array_agg(DISTINCT p.id)" in query and "array_agg(DISTINCT p.owner_id)" in query


@pytest.mark.parametrize(
    "sql, arguments",
    [
        ("SELECT id FROM t WHERE id = ANY($2)", ()),  # no $1 for the keys
        ("SELECT id FROM t WHERE id = ANY($1) LIMIT $2", ()),  # $2 without its argument
        ("SELECT id FROM t WHERE id = ANY($1)", (1,)),  # an argument without its $2
        ("SELECT $$a$1$$ FROM t WHERE id = ANY($1)", ()),  # text the renumbering would change
    ],
)
def test_a_companion_that_could_not_be_put_together_is_refused(
    sql: str, arguments: tuple[Any, ...]
) -> None:
    with pytest.raises(ValueError, match="companion"):
        Companion(sql, Owner, arguments)


async def test_a_record_with_array_columns_decodes_on_a_fresh_connection(
    database: DatabaseUnderTest,
) -> None:
    # asyncpg decodes an anonymous record's fields only with codecs the connection holds: the
    # pool's connections learn the array types when they are made.
    async with database.app_pool(max_size=1) as pool, pool.acquire() as connection:
        assert isinstance(connection, asyncpg.pool.PoolConnectionProxy)
        row = await connection.fetchval(
            "SELECT ARRAY(SELECT r FROM (SELECT ARRAY[1, 2]::int4[] AS a, ARRAY['x'] AS b,"
            " '{\"k\": [1]}'::jsonb AS c, ARRAY[1.5]::float8[] AS d) AS r)"
        )
    assert row == [([1, 2], ["x"], {"k": [1]}, [1.5])]
