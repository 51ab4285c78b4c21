"""Reading incidents: Relay paging, filters, nested reads in a bounded number of statements."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import pytest

from api.graph.core.ids import decode_id
from tests.graph.helpers import act, create_incident, kaohsiung
from tests.support import REPOSITORY, DatabaseUnderTest, GraphQLClient

pytestmark = pytest.mark.db

BOARD = """
query Board($first: Int!) {
  incidents(first: $first) {
    edges { node {
      id caseNumber title status dueAt
      responsibleBureau { code nameZh }
      asset { code kind bureau { code } }
      events(limit: 3) { kind toStatus occurredAt }
      workOrders(status: [OPEN, IN_PROGRESS]) { crew status }
      duplicates { id }
      category { code nameEn responsibleBureau { code } }
    } }
  }
}
"""
PAGE = """
query Page($first: Int, $after: String, $last: Int, $before: String, $filter: IncidentFilterInput,
           $orderBy: IncidentOrder! = NEWEST_FIRST) {
  incidents(first: $first, after: $after, last: $last, before: $before, filter: $filter,
            orderBy: $orderBy) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id reportedAt dueAt status responsibleBureau { code } } }
  }
}
"""


@pytest.fixture
def seeded(database: DatabaseUnderTest, clean: None) -> None:
    """The demo seeder, run as an operator would."""
    env = {
        "LIGHTHOUSE_DATABASE_URL": database.app_url,
        "LIGHTHOUSE_DATABASE_OWNER_URL": database.owner_url,
        "LIGHTHOUSE_ENVIRONMENT": "test",
    }
    subprocess.run(
        [sys.executable, "-m", "api.cli", "seed", "--assets", "120", "--incidents", "150"],
        cwd=REPOSITORY,
        env={**__import__("os").environ, **env},
        check=True,
        capture_output=True,
    )


def _statements(metrics: str, operation: str) -> tuple[float, float]:
    pattern = r'lighthouse_db_statements_per_operation_(sum|count)\{operation="%s"\} ([0-9.e+]+)'
    found = dict(re.findall(pattern % operation, metrics))
    return float(found.get("sum", 0)), float(found.get("count", 0))


async def _board_statements(city: GraphQLClient, http: httpx.AsyncClient, first: int) -> float:
    before = _statements((await http.get("/metrics")).text, "Board")
    data = await city.data(BOARD, {"first": first})
    assert len(data["incidents"]["edges"]) == first
    after = _statements((await http.get("/metrics")).text, "Board")
    assert after[1] == before[1] + 1
    return after[0] - before[0]


async def test_nested_board_query_uses_a_fixed_number_of_statements(
    seeded: None, city: GraphQLClient, http: httpx.AsyncClient
) -> None:
    # The bound follows from the query's shape: the identity; the page, with the depth-1 reads
    # folded into its statement (bureaus, assets, events, work orders, duplicates,
    # categories); depth 2's two bureau fields (of assets, of categories: one read each, none
    # once the page's own bureaus cover them); and the audit record. The first request of a
    # document also looks the document up.
    await _board_statements(city, http, 1)
    bound = 1 + 1 + 2 + 1
    counts = [await _board_statements(city, http, size) for size in (1, 10, 100)]
    assert all(count <= bound for count in counts), counts
    assert counts[2] <= counts[0], counts


async def test_a_page_reads_what_its_rows_refer_to_in_its_own_statement(
    seeded: None, city: GraphQLClient, http: httpx.AsyncClient
) -> None:
    # Everything this board asks for hangs off the page at depth 1 and can be folded, so the
    # request runs the identity, one statement, and the audit record, at any size.
    query = """
    query Flat($first: Int!) {
      incidents(first: $first) { edges { node {
        id responsibleBureau { code } reportingBureau { nameEn } category { code }
        asset { code } events(limit: 3) { kind } transfers { reason }
        workOrders(status: [OPEN]) { crew } duplicates { id } duplicateOf { id }
        again: events(limit: 3) { occurredAt }
      } } }
    }
    """
    await city.data(query, {"first": 1})
    for first in (1, 50):
        before = _statements((await http.get("/metrics")).text, "Flat")
        data = await city.data(query, {"first": first})
        after = _statements((await http.get("/metrics")).text, "Flat")
        assert len(data["incidents"]["edges"]) == first
        assert after[0] - before[0] == 3, (first, after[0] - before[0])


async def _walk(city: GraphQLClient, variables: dict[str, Any], forward: bool) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        page_vars = dict(variables)
        if forward:
            page_vars.update(first=7, after=cursor)
        else:
            page_vars.update(last=7, before=cursor)
        page = (await city.data(PAGE, page_vars))["incidents"]
        ids = [edge["node"]["id"] for edge in page["edges"]]
        seen = seen + ids if forward else ids + seen
        info = page["pageInfo"]
        more = info["hasNextPage"] if forward else info["hasPreviousPage"]
        if not more:
            return seen
        cursor = info["endCursor"] if forward else info["startCursor"]


@pytest.mark.parametrize("order", ["NEWEST_FIRST", "OLDEST_FIRST", "DUE_SOONEST"])
async def test_paging_is_stable_and_complete(seeded: None, city: GraphQLClient, order: str) -> None:
    everything = (await city.data(PAGE, {"first": 100, "orderBy": order}))["incidents"]
    assert everything["totalCount"] == 150
    rest = await city.data(
        PAGE, {"first": 100, "after": everything["pageInfo"]["endCursor"], "orderBy": order}
    )
    all_ids = [e["node"]["id"] for e in everything["edges"]] + [
        e["node"]["id"] for e in rest["incidents"]["edges"]
    ]
    assert len(all_ids) == len(set(all_ids)) == 150
    assert await _walk(city, {"orderBy": order}, forward=True) == all_ids
    assert await _walk(city, {"orderBy": order}, forward=False) == all_ids
    key = "reportedAt" if order != "DUE_SOONEST" else "dueAt"
    values = [e["node"][key] for e in everything["edges"]]
    assert values == sorted(values, reverse=order == "NEWEST_FIRST")


async def test_filters_combine(seeded: None, city: GraphQLClient) -> None:
    everything = (await city.data(PAGE, {"first": 100}))["incidents"]["edges"]
    everything += (await city.data(PAGE, {"first": 100, "after": everything[-1]["cursor"]}))[
        "incidents"
    ]["edges"]
    nodes = [e["node"] for e in everything]
    expected = {
        n["id"]
        for n in nodes
        if n["status"] in ("VERIFIED", "DISPATCHED")
        and n["responsibleBureau"]["code"] == "PUBLIC_WORKS"
    }
    filter = {"status": ["VERIFIED", "DISPATCHED"], "bureauCode": ["PUBLIC_WORKS"]}
    page = (await city.data(PAGE, {"first": 100, "filter": filter}))["incidents"]
    assert {e["node"]["id"] for e in page["edges"]} == expected
    assert page["totalCount"] == len(expected)
    closed = (await city.data(PAGE, {"first": 100, "filter": {"statusClass": ["CLOSED"]}}))[
        "incidents"
    ]
    assert {e["node"]["status"] for e in closed["edges"]} <= {"CLOSED"}
    assert closed["totalCount"] == sum(1 for n in nodes if n["status"] == "CLOSED")
    middle = nodes[40]["reportedAt"]
    window = {"reportedFrom": nodes[60]["reportedAt"], "reportedBefore": middle}
    page = (await city.data(PAGE, {"first": 100, "filter": window}))["incidents"]
    assert [e["node"]["id"] for e in page["edges"]] == [n["id"] for n in nodes[41:61]]


NESTED = """
fragment Nested on Incident {
  id status
  responsibleBureau { code }
  reportingBureau { code }
  asset { code bureau { code } }
  category { code responsibleBureau { code } }
  latest: events(limit: 2) { kind toStatus }
  oldest: events(limit: 5, order: OLDEST_FIRST) { kind }
  open: workOrders(status: [OPEN, IN_PROGRESS]) { crew status bureau { code } }
  all: workOrders { status }
  transfers { reason fromBureau { code } toBureau { code } }
  duplicateOf { id }
  duplicates { id }
}
"""


async def test_page_and_single_reads_agree(seeded: None, city: GraphQLClient) -> None:
    """A page resolves nested fields from look-ahead loads; single reads load them lazily.
    Both must give the same answer."""
    page = await city.data(
        NESTED + "query { incidents(first: 60) { edges { node { ...Nested } } } }"
    )
    nodes = [edge["node"] for edge in page["incidents"]["edges"]]
    assert any(node["transfers"] for node in nodes) or any(node["open"] for node in nodes)
    for node in nodes[::6]:
        single = await city.data(
            NESTED + "query($id: ID!) { incident(id: $id) { ...Nested } }", {"id": node["id"]}
        )
        assert single["incident"] == node


SEARCH = """
query Search($filter: IncidentFilterInput) {
  incidents(first: 100, filter: $filter) { totalCount edges { node { id caseNumber } } }
}
"""


async def test_a_search_finds_every_word_in_titles_and_descriptions_of_what_the_caller_sees(
    seeded: None,
    city: GraphQLClient,
    as_: Callable[[str], GraphQLClient],
    owner: asyncpg.Connection,
) -> None:
    police, public_works = await owner.fetch(
        "SELECT min(i.id) FROM incident i JOIN bureau b ON b.id = i.responsible_bureau_id"
        " WHERE b.code = ANY($1::text[]) GROUP BY b.code ORDER BY b.code",
        ["POLICE", "PUBLIC_WORKS"],
    )
    texts = {
        police[0]: ("Blocked DRAIN at 前金區", "water pooling; 100%_sure"),
        public_works[0]: ("Pothole", "near the blocked drain of 中正路"),
    }
    for incident_id, (title, description) in texts.items():
        await owner.execute(
            "UPDATE incident SET title = $2, description = $3, version = version + 1"
            " WHERE id = $1",
            incident_id, title, description,
        )  # fmt: skip

    async def found(client: GraphQLClient, search: str) -> set[str]:
        page = (await client.data(SEARCH, {"filter": {"search": search}}))["incidents"]
        assert page["totalCount"] == len(page["edges"])
        return {edge["node"]["caseNumber"] for edge in page["edges"]}

    both = {f"KH-{i:08d}" for i in texts}
    drain, pothole = f"KH-{police[0]:08d}", f"KH-{public_works[0]:08d}"
    assert await found(city, "blocked drain") == both  # title or description, any case
    assert await found(city, "  DRAIN   前金區 ") == {drain}  # every word must be found
    assert await found(city, "100%_sure") == {drain}
    assert await found(city, "%") == {drain}  # a wildcard is a character like any other
    assert await found(city, "1_0") == set()
    assert await found(city, pothole) == {pothole}  # a case number finds its incident alone
    assert await found(city, pothole.lower()) == {pothole}
    assert await found(city, "blocked drain pothole") == {pothole}
    # Row security still decides: a bureau's viewer finds its own incidents only.
    assert await found(as_("police-viewer"), "blocked drain") == {drain}
    assert await found(as_("police-viewer"), pothole) == set()
    # The search combines with the other filters.
    police_only = {"search": "drain", "bureauCode": ["PUBLIC_WORKS"]}
    page = await city.data(SEARCH, {"filter": police_only})
    assert {e["node"]["caseNumber"] for e in page["incidents"]["edges"]} == {pothole}


@pytest.mark.parametrize(
    ("search", "reason"),
    [
        ("", "give at least one word"),
        ("   ", "give at least one word"),
        ("x" * 101, "at most 100 characters"),
        ("a b c d e f g h i", "at most 8 words"),
        ("drain\x00", "control characters"),
        ("drain\u202e", "control characters"),
    ],
)
async def test_a_search_that_is_not_one_is_refused_by_name(
    city: GraphQLClient, search: str, reason: str
) -> None:
    body = await city.execute(SEARCH, {"filter": {"search": search}})
    assert body["data"] is None or body["data"].get("incidents") is None, body
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "INVALID_INPUT", error
    assert error["extensions"]["field"] == "filter.search", error
    assert reason in error["message"], error


CANDIDATES = """
query Candidates($id: ID!, $radius: Float, $days: Int, $first: Int) {
  node(id: $id) { ... on Incident {
    duplicateCandidates(radiusMeters: $radius, withinDays: $days, first: $first) {
      distanceMeters incident { id title }
    }
  } }
}
"""


async def test_duplicate_candidates_are_the_nearest_of_the_same_kind_and_time_the_caller_sees(
    client: GraphQLClient, as_: Callable[[str], GraphQLClient], owner: asyncpg.Connection
) -> None:
    north = 180 / (math.pi * 6_378_168)  # degrees in a metre, on the earthdistance sphere

    async def at(meters: float, title: str, category: str = "POTHOLE") -> dict[str, Any]:
        location = kaohsiung(latitude=22.6273 + meters * north)
        created = await create_incident(client, title=title, category=category, location=location)
        return dict(created["incident"])

    here = await at(0, "here")
    near, farther = await at(50, "50 m"), await at(150, "150 m")
    await at(100, "another kind", category="ILLEGAL_DUMPING")
    far = await at(500, "500 m")
    duplicate = await at(30, "30 m, itself a duplicate")
    await act(client, "MARK_DUPLICATE", duplicate, duplicateOf=near["id"])
    earlier = await at(120, "120 m, 40 days earlier")
    await owner.execute(
        "UPDATE incident SET reported_at = reported_at - interval '40 days' WHERE id = $1",
        decode_id(earlier["id"], "Incident", "id"),
    )

    async def candidates(client: GraphQLClient = client, **asked: Any) -> list[tuple[str, float]]:
        data = await client.data(CANDIDATES, {"id": here["id"], **asked})
        found = data["node"]["duplicateCandidates"]
        return [(c["incident"]["title"], round(c["distanceMeters"])) for c in found]

    assert await candidates() == [("50 m", 50), ("150 m", 150)]
    assert await candidates(radius=600) == [("50 m", 50), ("150 m", 150), ("500 m", 500)]
    assert await candidates(days=60) == [("50 m", 50), ("120 m, 40 days earlier", 120),
                                         ("150 m", 150)]  # fmt: skip
    assert await candidates(first=1) == [("50 m", 50)]
    assert far["id"] and farther["id"]
    # Row security decides here too: another bureau's viewer sees neither the incident nor them.
    police = await as_("police-viewer").data(CANDIDATES, {"id": here["id"]})
    assert police["node"] is None
    for asked, field in (
        ({"radius": 0}, "radiusMeters"),
        ({"radius": 2001}, "radiusMeters"),
        ({"days": 0}, "withinDays"),
        ({"days": 366}, "withinDays"),
        ({"first": 0}, "first"),
        ({"first": 21}, "first"),
    ):
        body = await client.execute(CANDIDATES, {"id": here["id"], **asked})
        (error,) = body["errors"]
        assert error["extensions"] == {"code": "INVALID_INPUT", "field": field}, error
