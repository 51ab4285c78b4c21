"""Registering assets through the graph: for the caller's own bureau only, once per idempotency
key, and with bad input refused before anything is written."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from tests.graph.helpers import bureau_ids, global_id, kaohsiung, key_of
from tests.support import GraphQLClient
from tests.tokens import TokenFactory

CREATE = """
mutation Register($input: CreateAssetInput!, $key: String) {
  createAsset(input: $input, idempotencyKey: $key) {
    __typename
    ... on AssetCreated {
      replayed
      asset {
        id code kind name installedOn coverageMeters location { latitude longitude } bureau { code }
      }
    }
    ... on Error { message code }
    ... on InvalidInput { field }
    ... on NotFound { entity }
    ... on IdempotencyKeyReused { idempotencyKey }
  }
}
"""


@pytest.fixture
async def public_works(client: GraphQLClient) -> str:
    return (await bureau_ids(client))["PUBLIC_WORKS"]


async def register(
    client: GraphQLClient, bureau: str, *, key: str | None = None, **overrides: Any
) -> dict[str, Any]:
    values: dict[str, Any] = {
        "code": "PWB-CAM-0001",
        "kind": "CAMERA",
        "name": "中正四路路口攝影機",
        "bureauId": bureau,
        "location": kaohsiung(),
    }
    values.update(overrides)
    result: dict[str, Any] = (await client.data(CREATE, {"input": values, "key": key}))[
        "createAsset"
    ]
    return result


async def count(owner: asyncpg.Connection) -> int:
    return int(await owner.fetchval("SELECT count(*) FROM asset"))


async def test_a_bureau_registers_its_asset(
    client: GraphQLClient, owner: asyncpg.Connection, public_works: str
) -> None:
    created = await register(
        client,
        public_works,
        code="  PWB-LIGHT-0042 ",
        kind="STREET_LIGHT",
        name=" 路燈 42 ",
        installedOn="2023-07-15",
        location={"twd97": {"x": 179250.0, "y": 2502800.0}},
    )
    assert created["__typename"] == "AssetCreated", created
    assert created["replayed"] is False
    asset = created["asset"]
    assert (asset["code"], asset["name"]) == ("PWB-LIGHT-0042", "路燈 42")  # trimmed
    assert (asset["kind"], asset["installedOn"]) == ("STREET_LIGHT", "2023-07-15")
    assert asset["bureau"] == {"code": "PUBLIC_WORKS"}
    # TWD97 in, WGS84 stored: the point is in Kaohsiung.
    assert 22.5 < asset["location"]["latitude"] < 22.7
    assert 120.2 < asset["location"]["longitude"] < 120.4
    row = await owner.fetchrow("SELECT * FROM asset WHERE id = $1", key_of(asset["id"]))
    assert (row["code"], row["created_by"]) == ("PWB-LIGHT-0042", "pwb-supervisor")
    # The new asset is in the register at once.
    found = await client.data("query($id: ID!) { asset(id: $id) { code } }", {"id": asset["id"]})
    assert found == {"asset": {"code": "PWB-LIGHT-0042"}}


async def test_only_for_the_callers_own_bureau(
    client: GraphQLClient,
    owner: asyncpg.Connection,
    as_: Callable[[str], GraphQLClient],
    public_works: str,
) -> None:
    water = (await bureau_ids(client))["WATER_RESOURCES"]
    refused = await register(client, water, code="WRB-DRAIN-1", kind="DRAIN")
    assert (refused["__typename"], refused["code"]) == ("Forbidden", "FORBIDDEN")
    # Without assets:write, not even for one's own bureau.
    for who in ("pwb-dispatcher", "pwb-viewer"):
        denied = await register(as_(who), public_works)
        assert denied["__typename"] == "Forbidden", who
    assert await count(owner) == 0


async def test_a_retry_with_the_same_key_registers_once(
    client: GraphQLClient, owner: asyncpg.Connection, tokens: TokenFactory, public_works: str
) -> None:
    first = await register(client, public_works, key="asset-0001")
    again = await register(client, public_works, key="asset-0001")
    assert (first["__typename"], again["__typename"]) == ("AssetCreated", "AssetCreated")
    assert (first["replayed"], again["replayed"]) == (False, True)
    assert again["asset"] == first["asset"]
    assert await count(owner) == 1
    reused = await register(client, public_works, key="asset-0001", name="另一支攝影機")
    assert reused["__typename"] == "IdempotencyKeyReused"
    assert reused["idempotencyKey"] == "asset-0001"
    assert await count(owner) == 1
    # Keys are the caller's own: another caller's identical key is a new request.
    clerk = GraphQLClient(
        client.http,
        tokens.custom(
            subject="pwb-asset-clerk",
            kind="staff",
            bureau="PUBLIC_WORKS",
            roles=["viewer"],
            scopes=["assets:read", "assets:write"],
        ),
    )
    other = await register(clerk, public_works, key="asset-0001", code="PWB-CAM-0002")
    assert (other["__typename"], other["replayed"]) == ("AssetCreated", False)
    assert await count(owner) == 2


async def test_a_refused_registration_does_not_use_up_its_key(
    client: GraphQLClient, owner: asyncpg.Connection, public_works: str
) -> None:
    refused = await register(client, public_works, key="asset-0003", name="")
    assert refused["__typename"] == "InvalidInput"
    assert await owner.fetchval("SELECT count(*) FROM idempotency_key") == 0
    created = await register(client, public_works, key="asset-0003", name="改正後名稱")
    assert (created["__typename"], created["replayed"]) == ("AssetCreated", False)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"code": ""}, "code"),
        ({"code": "   "}, "code"),
        ({"code": "C" * 65}, "code"),
        ({"name": ""}, "name"),
        ({"name": "名" * 201}, "name"),
        ({"location": kaohsiung(latitude=95.0)}, "input.location"),
        ({"kind": "STREET_LIGHT", "coverageMeters": 50.0}, "coverageMeters"),
        ({"coverageMeters": 0.0}, "coverageMeters"),
        ({"coverageMeters": 5000.5}, "coverageMeters"),
        ({"bureauId": global_id("Incident", 1)}, "input.bureauId"),
        ({"bureauId": "???"}, "input.bureauId"),
    ],
)
async def test_bad_input_is_refused_and_writes_nothing(
    client: GraphQLClient,
    owner: asyncpg.Connection,
    public_works: str,
    overrides: dict[str, Any],
    field: str,
) -> None:
    refused = await register(client, public_works, **overrides)
    assert refused["__typename"] == "InvalidInput", refused
    assert refused["code"] == "INVALID_INPUT"
    assert refused["field"].startswith(field), refused
    assert await count(owner) == 0


async def test_the_longest_code_and_name_are_accepted(
    client: GraphQLClient, public_works: str
) -> None:
    created = await register(client, public_works, code="C" * 64, name="名" * 200)
    assert created["__typename"] == "AssetCreated", created
    assert (len(created["asset"]["code"]), len(created["asset"]["name"])) == (64, 200)


async def test_an_unknown_bureau_is_not_found(
    client: GraphQLClient, owner: asyncpg.Connection
) -> None:
    refused = await register(client, global_id("Bureau", 9999))
    assert (refused["__typename"], refused["entity"]) == ("NotFound", "bureau")
    assert await count(owner) == 0


async def test_codes_are_unique_in_the_register(
    client: GraphQLClient, owner: asyncpg.Connection, public_works: str
) -> None:
    assert (await register(client, public_works))["__typename"] == "AssetCreated"
    again = await register(client, public_works, name="同編號")
    assert (again["__typename"], again["field"]) == ("InvalidInput", "code")
    assert "PWB-CAM-0001" in again["message"]
    assert await count(owner) == 1
    # The failed insert rolled back only its own savepoint: the next registration works.
    assert (await register(client, public_works, code="PWB-CAM-0009"))["__typename"] == (
        "AssetCreated"
    )


async def test_an_idempotency_key_must_be_sensible(
    client: GraphQLClient, owner: asyncpg.Connection, public_works: str
) -> None:
    for key in ("", "k" * 201):
        refused = await register(client, public_works, key=key)
        assert (refused["__typename"], refused["field"]) == ("InvalidInput", "idempotencyKey")
    assert await count(owner) == 0


async def test_a_camera_is_registered_with_how_far_it_sees(
    client: GraphQLClient, owner: asyncpg.Connection, public_works: str
) -> None:
    created = await register(client, public_works, coverageMeters=120.0)
    assert created["__typename"] == "AssetCreated", created
    assert created["asset"]["coverageMeters"] == 120.0
    row = await owner.fetchrow("SELECT coverage_meters FROM asset WHERE code = 'PWB-CAM-0001'")
    assert row["coverage_meters"] == 120.0
    light = await register(client, public_works, code="PWB-LIGHT-1", kind="STREET_LIGHT")
    assert light["asset"]["coverageMeters"] is None
