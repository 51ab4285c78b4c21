"""Bureaus and the category routing table: reference data, read the same by everyone, straight
from the rows the migrations wrote."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
import httpx
import pytest

from tests.graph.helpers import global_id
from tests.support import GraphQLClient

pytestmark = pytest.mark.db

BUREAUS = "{ bureaus { id code nameZh nameEn kind jointServiceCentre } }"
CATEGORIES = """
{ categories { code nameZh nameEn slaWorkingDays slaHours responsibleBureau { id code } } }
"""
ONE = """
query($code: String!) { bureau(code: $code) { id code nameZh nameEn kind jointServiceCentre } }
"""


async def test_bureaus_are_listed_in_a_stable_order(
    client: GraphQLClient, owner: asyncpg.Connection
) -> None:
    rows = await owner.fetch("SELECT * FROM bureau ORDER BY id")
    listed = (await client.data(BUREAUS))["bureaus"]
    assert listed == [
        {
            "id": global_id("Bureau", row["id"]),
            "code": row["code"],
            "nameZh": row["name_zh"],
            "nameEn": row["name_en"],
            "kind": row["kind"],
            "jointServiceCentre": row["joint_service_centre"],
        }
        for row in rows
    ]
    assert len(listed) == 10
    # The Research, Development and Evaluation Commission runs the 1999 joint service centre.
    assert [b["code"] for b in listed if b["jointServiceCentre"]] == ["RDEC"]
    kinds = {b["code"]: b["kind"] for b in listed}
    assert (kinds["PUBLIC_WORKS"], kinds["RDEC"], kinds["TAIPOWER"]) == (
        "CITY_BUREAU",
        "COMMISSION",
        "STATE_ENTERPRISE",
    )


async def test_one_bureau_by_code(client: GraphQLClient) -> None:
    listed = {b["code"]: b for b in (await client.data(BUREAUS))["bureaus"]}
    fire = (await client.data(ONE, {"code": "FIRE"}))["bureau"]
    assert fire == listed["FIRE"]
    assert fire["nameZh"] == "高雄市政府消防局"
    for unknown in ("NO_SUCH_BUREAU", "fire", ""):
        assert (await client.data(ONE, {"code": unknown}))["bureau"] is None


async def test_bureaus_are_nodes_and_entities(client: GraphQLClient) -> None:
    listed = {b["code"]: b for b in (await client.data(BUREAUS))["bureaus"]}
    water = listed["WATER_RESOURCES"]
    data = await client.data(
        "query($id: ID!) { node(id: $id) { __typename id ... on Bureau { code nameEn } } }",
        {"id": water["id"]},
    )
    assert data["node"] == {
        "__typename": "Bureau",
        "id": water["id"],
        "code": "WATER_RESOURCES",
        "nameEn": "Water Resources Bureau",
    }
    missing = await client.data(
        "query($id: ID!) { node(id: $id) { id } }", {"id": global_id("Bureau", 9999)}
    )
    assert missing == {"node": None}


async def test_categories_route_to_their_responsible_bureau(
    client: GraphQLClient, owner: asyncpg.Connection
) -> None:
    rows = await owner.fetch(
        "SELECT c.*, b.code AS bureau_code FROM incident_category c"
        " JOIN bureau b ON b.id = c.responsible_bureau_id ORDER BY c.code"
    )
    categories = (await client.data(CATEGORIES))["categories"]
    assert categories == [
        {
            "code": row["code"],
            "nameZh": row["name_zh"],
            "nameEn": row["name_en"],
            "slaWorkingDays": row["sla_working_days"],
            "slaHours": row["sla_hours"],
            "responsibleBureau": {
                "id": global_id("Bureau", row["responsible_bureau_id"]),
                "code": row["bureau_code"],
            },
        }
        for row in rows
    ]
    routes = {c["code"]: c["responsibleBureau"]["code"] for c in categories}
    assert routes["POTHOLE"] == "PUBLIC_WORKS"
    assert routes["BLOCKED_DRAIN"] == "WATER_RESOURCES"
    assert routes["POWER_LINE_HAZARD"] == "TAIPOWER"
    # Every category has exactly one service level: working days or hours.
    assert all((c["slaWorkingDays"] is None) != (c["slaHours"] is None) for c in categories)


async def test_everyone_reads_the_same_reference_data(
    client: GraphQLClient, http: httpx.AsyncClient, as_: Callable[[str], GraphQLClient]
) -> None:
    """Reference data is for anyone: other bureaus, auditors, and callers without a token."""
    both = "{ bureaus { id code nameZh } categories { code responsibleBureau { code } } }"
    expected = await client.data(both)
    assert len(expected["bureaus"]) == 10 and len(expected["categories"]) == 13
    for reader in (as_("police-viewer"), as_("auditor"), GraphQLClient(http)):
        assert await reader.data(both) == expected
    anonymous = await GraphQLClient(http).data(ONE, {"code": "POLICE"})
    assert anonymous["bureau"]["code"] == "POLICE"
