"""The asset register through the graph: a Relay connection ordered by code, paged both ways,
filtered by kind, bureau and place; single reads by ID, and the owning bureau nested."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from tests.graph.helpers import bureau_ids, global_id, key_of
from tests.support import GraphQLClient

pytestmark = pytest.mark.db

KINDS = ("CAMERA", "STREET_LIGHT", "DRAIN")
BUREAUS = ("PUBLIC_WORKS", "WATER_RESOURCES", "POLICE", "TRANSPORTATION")
CENTRE = (22.6273, 120.3014)  # latitude, longitude
STEP = 0.001  # degrees of longitude between neighbours: about 103 m at this latitude
COUNT = 24

PAGE = """
query Assets($first: Int, $after: String, $last: Int, $before: String, $filter: AssetFilterInput) {
  assets(first: $first, after: $after, last: $last, before: $before, filter: $filter) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id code kind name bureau { code } } }
  }
}
"""
ONE = """
query One($id: ID!) {
  asset(id: $id) {
    id code kind name installedOn
    location { latitude longitude twd97 { x y } }
    bureau { id code nameZh nameEn kind jointServiceCentre }
  }
  node(id: $id) { __typename id ... on Asset { code bureau { code } } }
}
"""


def layout(index: int) -> dict[str, Any]:
    """Asset ``index`` of the register: kinds and bureaus take turns, each a step further east."""
    return {
        "code": f"A-{index:02d}",
        "kind": KINDS[index % len(KINDS)],
        "bureau": BUREAUS[index % len(BUREAUS)],
        "latitude": CENTRE[0],
        "longitude": CENTRE[1] + index * STEP,
    }


@pytest.fixture
async def register(client: GraphQLClient, owner: asyncpg.Connection) -> dict[str, int]:
    """COUNT assets written directly (the graph's reads are under test, not its writes); their
    database keys by code."""
    ids = dict(await owner.fetch("SELECT code, id FROM bureau"))
    keys: dict[str, int] = {}
    for index in range(COUNT):
        asset = layout(index)
        keys[asset["code"]] = await owner.fetchval(
            "INSERT INTO asset (code, kind, name, bureau_id, latitude, longitude, installed_on,"
            " created_by) VALUES ($1, $2, $3, $4, $5, $6, '2024-03-01', 'tests') RETURNING id",
            asset["code"], asset["kind"], f"設施 {index}", ids[asset["bureau"]],
            asset["latitude"], asset["longitude"],
        )  # fmt: skip
    return keys


async def page(client: GraphQLClient, **arguments: Any) -> dict[str, Any]:
    connection: dict[str, Any] = (await client.data(PAGE, arguments))["assets"]
    return connection


def codes(connection: dict[str, Any]) -> list[str]:
    return [edge["node"]["code"] for edge in connection["edges"]]


async def test_paging_forward_covers_the_register_once_in_code_order(
    client: GraphQLClient, register: dict[str, int]
) -> None:
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        connection = await page(client, first=5, after=after)
        info = connection["pageInfo"]
        assert connection["totalCount"] == COUNT
        assert info["hasPreviousPage"] is (after is not None)
        assert len(connection["edges"]) <= 5
        # Every edge has its own cursor; the page's cursors are its first and last edges'.
        assert info["startCursor"] == connection["edges"][0]["cursor"]
        assert info["endCursor"] == connection["edges"][-1]["cursor"]
        seen += codes(connection)
        pages += 1
        if not info["hasNextPage"]:
            break
        after = info["endCursor"]
    assert seen == sorted(register) == [layout(i)["code"] for i in range(COUNT)]
    assert pages == 5


async def test_paging_backward_returns_the_same_register(
    client: GraphQLClient, register: dict[str, int]
) -> None:
    pages: list[list[str]] = []
    before = None
    while True:
        connection = await page(client, last=7, before=before)
        info = connection["pageInfo"]
        assert info["hasNextPage"] is (before is not None)
        pages.append(codes(connection))
        if not info["hasPreviousPage"]:
            break
        before = info["startCursor"]
    assert [len(p) for p in pages] == [7, 7, 7, 3]
    # Each page reads in code order; the pages come from the end towards the start.
    assert [code for p in reversed(pages) for code in p] == sorted(register)
    # A forward page after a backward page's end cursor continues where it stopped.
    middle = await page(
        client, last=7, before=(await page(client, last=7))["pageInfo"]["startCursor"]
    )
    onward = await page(client, first=3, after=middle["pageInfo"]["endCursor"])
    assert codes(onward) == ["A-17", "A-18", "A-19"]


async def test_an_empty_page_and_a_zero_page(
    client: GraphQLClient, register: dict[str, int]
) -> None:
    last = await page(client, first=COUNT)
    beyond = await page(client, first=5, after=last["pageInfo"]["endCursor"])
    assert beyond["edges"] == []
    assert beyond["pageInfo"] == {
        "hasNextPage": False,
        "hasPreviousPage": True,
        "startCursor": None,
        "endCursor": None,
    }
    nothing = await page(client, first=0)
    assert (nothing["edges"], nothing["totalCount"]) == ([], COUNT)
    assert nothing["pageInfo"]["hasNextPage"] is True


def expected(match: Callable[[dict[str, Any]], bool]) -> list[str]:
    return [layout(i)["code"] for i in range(COUNT) if match(layout(i))]


FILTERS: dict[str, tuple[dict[str, Any], Callable[[dict[str, Any]], bool]]] = {
    "one kind": ({"kind": ["DRAIN"]}, lambda a: a["kind"] == "DRAIN"),
    "two kinds": (
        {"kind": ["CAMERA", "DRAIN"]},
        lambda a: a["kind"] in ("CAMERA", "DRAIN"),
    ),
    "no kind": ({"kind": []}, lambda a: False),
    "a kind nobody has": ({"kind": ["HYDRANT"]}, lambda a: False),
    "near, WGS84": (
        {
            "near": {
                "point": {"wgs84": {"latitude": CENTRE[0], "longitude": CENTRE[1]}},
                "radiusMeters": 350,
            }
        },
        lambda a: a["longitude"] < CENTRE[1] + 3.5 * STEP,
    ),
    "within, WGS84": (
        {
            "within": {
                "wgs84": {
                    "minLatitude": CENTRE[0] - 0.001,
                    "maxLatitude": CENTRE[0] + 0.001,
                    "minLongitude": CENTRE[1] + 9.5 * STEP,
                    "maxLongitude": CENTRE[1] + 15.5 * STEP,
                }
            }
        },
        lambda a: CENTRE[1] + 9.5 * STEP < a["longitude"] < CENTRE[1] + 15.5 * STEP,
    ),
    "kind and place": (
        {
            "kind": ["STREET_LIGHT"],
            "near": {
                "point": {"wgs84": {"latitude": CENTRE[0], "longitude": CENTRE[1]}},
                "radiusMeters": 1000,
            },
        },
        lambda a: a["kind"] == "STREET_LIGHT" and a["longitude"] < CENTRE[1] + 9.7 * STEP,
    ),
}


@pytest.mark.parametrize("name", FILTERS)
async def test_filters(client: GraphQLClient, register: dict[str, int], name: str) -> None:
    given, match = FILTERS[name]
    connection = await page(client, first=100, filter=given)
    assert codes(connection) == expected(match)
    assert connection["totalCount"] == len(expected(match))


async def test_bureau_filters_page_through_their_assets(
    client: GraphQLClient, register: dict[str, int]
) -> None:
    ids = await bureau_ids(client)
    wanted = {"WATER_RESOURCES", "TRANSPORTATION"}
    given = {"bureau": [ids[code] for code in sorted(wanted)], "kind": list(KINDS)}
    seen: list[str] = []
    after = None
    while True:
        connection = await page(client, first=4, after=after, filter=given)
        assert connection["totalCount"] == len(expected(lambda a: a["bureau"] in wanted))
        assert {edge["node"]["bureau"]["code"] for edge in connection["edges"]} <= wanted
        seen += codes(connection)
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]
    assert seen == expected(lambda a: a["bureau"] in wanted)
    # A bureau that owns nothing, and an ID of a bureau that does not exist, match nothing.
    assert codes(await page(client, filter={"bureau": [ids["FIRE"]]})) == []
    assert codes(await page(client, filter={"bureau": [global_id("Bureau", 9999)]})) == []


async def test_every_asset_of_a_page_names_its_own_bureau(
    client: GraphQLClient, register: dict[str, int]
) -> None:
    connection = await page(client, first=COUNT)
    owners = {edge["node"]["code"]: edge["node"]["bureau"]["code"] for edge in connection["edges"]}
    assert owners == {layout(i)["code"]: layout(i)["bureau"] for i in range(COUNT)}
    kinds = {edge["node"]["code"]: edge["node"]["kind"] for edge in connection["edges"]}
    assert kinds == {layout(i)["code"]: layout(i)["kind"] for i in range(COUNT)}
    assert all(
        key_of(edge["node"]["id"]) == register[edge["node"]["code"]] for edge in connection["edges"]
    )


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"filter": {"near": {"point": {"wgs84": {"latitude": 22.6, "longitude": 120.3}}, "radiusMeters": 100}, "within": {"wgs84": {"minLatitude": 22.5, "maxLatitude": 22.7, "minLongitude": 120.2, "maxLongitude": 120.4}}}}, "filter"),
        ({"filter": {"bureau": [global_id("Incident", 1)]}}, "filter.bureau"),
        ({"filter": {"bureau": ["not-an-id"]}}, "filter.bureau"),
        ({"first": 101}, "first"),
        ({"first": -1}, "first"),
        ({"first": 2, "last": 2}, "first"),
        ({"after": "bm90IGEgY3Vyc29y"}, "after"),
    ],
)  # fmt: skip
async def test_questions_that_cannot_be_answered_as_asked(
    client: GraphQLClient, arguments: dict[str, Any], field: str
) -> None:
    body = await client.execute(PAGE, arguments)
    assert body["data"] is None
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "INVALID_INPUT", error
    assert error["extensions"]["field"] == field


async def test_one_asset_by_id_and_as_a_node(
    client: GraphQLClient, register: dict[str, int], owner: asyncpg.Connection
) -> None:
    asset_id = global_id("Asset", register["A-05"])
    data = await client.data(ONE, {"id": asset_id})
    asset = data["asset"]
    assert asset["id"] == asset_id
    assert (asset["code"], asset["kind"], asset["name"]) == ("A-05", "DRAIN", "設施 5")
    assert asset["installedOn"] == "2024-03-01"
    assert asset["location"]["latitude"] == pytest.approx(CENTRE[0])
    assert asset["location"]["longitude"] == pytest.approx(CENTRE[1] + 5 * STEP)
    # TWD97 (EPSG:3826) near the library in Kaohsiung: x about 179 km, y about 2,503 km.
    assert 170_000 < asset["location"]["twd97"]["x"] < 190_000
    assert 2_490_000 < asset["location"]["twd97"]["y"] < 2_510_000
    water = await owner.fetchrow("SELECT * FROM bureau WHERE code = 'WATER_RESOURCES'")
    assert asset["bureau"] == {
        "id": global_id("Bureau", water["id"]),
        "code": "WATER_RESOURCES",
        "nameZh": water["name_zh"],
        "nameEn": water["name_en"],
        "kind": "CITY_BUREAU",
        "jointServiceCentre": False,
    }
    assert data["node"] == {
        "__typename": "Asset",
        "id": asset_id,
        "code": "A-05",
        "bureau": {"code": "WATER_RESOURCES"},
    }


async def test_unknown_and_mistyped_asset_ids(
    client: GraphQLClient, register: dict[str, int]
) -> None:
    unknown = global_id("Asset", 987654)
    assert await client.data(ONE, {"id": unknown}) == {"asset": None, "node": None}
    body = await client.execute(
        "query($id: ID!) { asset(id: $id) { code } }", {"id": global_id("Bureau", 1)}
    )
    assert body["data"] == {"asset": None}
    extensions = body["errors"][0]["extensions"]
    assert (extensions["code"], extensions["field"]) == ("INVALID_INPUT", "id")


async def test_every_bureau_reads_the_shared_register(
    client: GraphQLClient, register: dict[str, int], as_: Callable[[str], GraphQLClient]
) -> None:
    """Assets are the city's shared register: any token with assets:read sees all of them."""
    for who in ("police-viewer", "epb-supervisor", "city-viewer", "camera-gateway"):
        assert codes(await page(as_(who), first=100)) == sorted(register), who


async def test_without_assets_read_the_register_is_refused(
    client: GraphQLClient, register: dict[str, int], as_: Callable[[str], GraphQLClient]
) -> None:
    body = await as_("auditor").execute(PAGE, {"first": 5})
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    body = await as_("auditor").execute(ONE, {"id": global_id("Asset", register["A-01"])})
    assert body["data"] is None or body["data"]["asset"] is None
    assert {error["extensions"]["code"] for error in body["errors"]} == {"FORBIDDEN"}
