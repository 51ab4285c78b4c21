"""Geo filters return exactly the expected rows, with input in WGS84 or TWD97 (EPSG:3826)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pyproj import Transformer

from tests.graph.helpers import bureau_ids, create_incident
from tests.support import GraphQLClient

pytestmark = pytest.mark.db

TO_TWD97 = Transformer.from_crs("EPSG:4326", "EPSG:3826", always_xy=True)
TO_WGS84 = Transformer.from_crs("EPSG:3826", "EPSG:4326", always_xy=True)
CENTRE = (22.6273, 120.3014)  # latitude, longitude (near Kaohsiung Main Public Library)
CENTRE_X, CENTRE_Y = TO_TWD97.transform(CENTRE[1], CENTRE[0])

# name → offset from the centre in TWD97 metres (east, north)
OFFSETS = {
    "A": (50.0, 50.0),  # 71 m away
    "B": (150.0, -80.0),  # 170 m
    "C": (260.0, 0.0),  # 260 m
    "D": (-50.0, 300.0),  # 304 m
    "E": (-900.0, -900.0),  # 1.27 km
}

CREATE_ASSET = """
mutation($input: CreateAssetInput!) {
  createAsset(input: $input) { __typename ... on AssetCreated { asset { id code } } ... on Error { message } }
}
"""
ASSETS = """
query($filter: AssetFilterInput) {
  assets(first: 50, filter: $filter) {
    totalCount
    edges { node { code location { latitude longitude twd97 { x y } } } }
  }
}
"""
INCIDENTS = """
query($filter: IncidentFilterInput) {
  incidents(first: 50, filter: $filter) { edges { node { title } } }
}
"""


def position(name: str) -> tuple[float, float]:
    dx, dy = OFFSETS[name]
    longitude, latitude = TO_WGS84.transform(CENTRE_X + dx, CENTRE_Y + dy)
    return latitude, longitude


@pytest.fixture
async def places(client: GraphQLClient) -> dict[str, Any]:
    bureau = (await bureau_ids(client))["PUBLIC_WORKS"]
    for name in OFFSETS:
        latitude, longitude = position(name)
        location = {"wgs84": {"latitude": latitude, "longitude": longitude}}
        created = await client.data(
            CREATE_ASSET,
            {
                "input": {
                    "code": f"GEO-{name}",
                    "kind": "STREET_LIGHT",
                    "name": f"路燈 {name}",
                    "bureauId": bureau,
                    "location": location,
                }
            },
        )
        assert created["createAsset"]["__typename"] == "AssetCreated"
        incident = await create_incident(client, title=f"坑洞 {name}", location=location)
        assert incident["__typename"] == "IncidentCreated"
    return OFFSETS


async def _asset_codes(client: GraphQLClient, filter: dict[str, Any]) -> set[str]:
    data = await client.data(ASSETS, {"filter": filter})
    return {edge["node"]["code"].removeprefix("GEO-") for edge in data["assets"]["edges"]}


async def _incident_names(client: GraphQLClient, filter: dict[str, Any]) -> set[str]:
    data = await client.data(INCIDENTS, {"filter": filter})
    return {edge["node"]["title"].removeprefix("坑洞 ") for edge in data["incidents"]["edges"]}


@pytest.mark.parametrize(
    ("radius", "expected"), [(100, {"A"}), (200, {"A", "B"}), (400, {"A", "B", "C", "D"})]
)
async def test_near_in_both_systems(
    client: GraphQLClient, places: dict[str, Any], radius: float, expected: set[str]
) -> None:
    wgs84 = {
        "near": {
            "point": {"wgs84": {"latitude": CENTRE[0], "longitude": CENTRE[1]}},
            "radiusMeters": radius,
        }
    }
    twd97 = {"near": {"point": {"twd97": {"x": CENTRE_X, "y": CENTRE_Y}}, "radiusMeters": radius}}
    assert await _asset_codes(client, wgs84) == expected
    assert await _asset_codes(client, twd97) == expected
    assert await _incident_names(client, wgs84) == expected
    assert await _incident_names(client, twd97) == expected


async def test_twd97_box_is_exact_in_twd97(client: GraphQLClient, places: dict[str, Any]) -> None:
    box = {
        "twd97": {
            "minX": CENTRE_X - 100,
            "minY": CENTRE_Y - 100,
            "maxX": CENTRE_X + 200,
            "maxY": CENTRE_Y + 200,
        }
    }
    assert await _asset_codes(client, {"within": box}) == {"A", "B"}
    assert await _incident_names(client, {"within": box}) == {"A", "B"}


async def test_wgs84_box(client: GraphQLClient, places: dict[str, Any]) -> None:
    a, d = position("A"), position("D")
    box = {
        "wgs84": {
            "minLatitude": min(a[0], d[0]) - 1e-5,
            "minLongitude": min(a[1], d[1]) - 1e-5,
            "maxLatitude": max(a[0], d[0]) + 1e-5,
            "maxLongitude": max(a[1], d[1]) + 1e-5,
        }
    }
    assert await _asset_codes(client, {"within": box}) == {"A", "D"}
    assert await _incident_names(client, {"within": box}) == {"A", "D"}


async def test_locations_come_back_in_both_systems(
    client: GraphQLClient, places: dict[str, Any]
) -> None:
    data = await client.data(ASSETS, {"filter": None})
    nodes = {
        edge["node"]["code"].removeprefix("GEO-"): edge["node"] for edge in data["assets"]["edges"]
    }
    assert data["assets"]["totalCount"] == len(OFFSETS)
    for name, (dx, dy) in OFFSETS.items():
        twd97 = nodes[name]["location"]["twd97"]
        assert math.isclose(twd97["x"], CENTRE_X + dx, abs_tol=0.001)
        assert math.isclose(twd97["y"], CENTRE_Y + dy, abs_tol=0.001)


@pytest.mark.parametrize(
    ("filter", "field"),
    [
        (
            {"near": {"point": {"wgs84": {"latitude": 95, "longitude": 120}}, "radiusMeters": 10}},
            "filter.near.point.latitude",
        ),
        (
            {"near": {"point": {"wgs84": {"latitude": 22, "longitude": 190}}, "radiusMeters": 10}},
            "filter.near.point.longitude",
        ),
        (
            {"near": {"point": {"twd97": {"x": 5_000_000, "y": 2_500_000}}, "radiusMeters": 10}},
            "filter.near.point.x",
        ),
        (
            {"near": {"point": {"wgs84": {"latitude": 22, "longitude": 120}}, "radiusMeters": 0}},
            "filter.near.radiusMeters",
        ),
        (
            {"near": {"point": {"wgs84": {"latitude": 22, "longitude": 120}}, "radiusMeters": 1e9}},
            "filter.near.radiusMeters",
        ),
        (
            {
                "within": {
                    "wgs84": {
                        "minLatitude": 23,
                        "minLongitude": 120,
                        "maxLatitude": 22,
                        "maxLongitude": 121,
                    }
                }
            },
            "filter.within",
        ),
    ],
)
async def test_bad_coordinates_are_typed_errors(
    client: GraphQLClient, filter: dict[str, Any], field: str
) -> None:
    body = await client.execute(INCIDENTS, {"filter": filter})
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"] == {"code": "INVALID_INPUT", "field": field}
