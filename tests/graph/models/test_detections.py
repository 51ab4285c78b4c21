"""Reading what the models found: the detections connection (newest first, paged, counted) with
each of its filters, the model registry, and a vision model's own detections, under the
caller's visibility. The frames, analyses and detections are arranged directly as the schema's
owner: what is under test is the SQL that reads them back."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import websockets
from websockets.typing import Subprotocol

from tests.graph.helpers import global_id, key_of
from tests.support import GatewayProcess, GraphQLClient, socket_message
from tests.tokens import TokenFactory

pytestmark = pytest.mark.db

START = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)

DETECTIONS = """
query Detections($first: Int, $after: String, $filter: DetectionFilterInput) {
  detections(first: $first, after: $after, filter: $filter) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { node { id category { code } confidence outcome } }
  }
}
"""


async def arrange(owner: asyncpg.Connection) -> dict[str, Any]:
    """Two cameras (Police, Fire), three frames analysed by two models (one in two versions),
    four detections a minute apart."""
    cameras = {}
    for bureau in ("POLICE", "FIRE"):
        cameras[bureau] = await owner.fetchrow(
            "INSERT INTO asset (code, kind, name, bureau_id, latitude, longitude, created_by)"
            " SELECT $1, 'CAMERA', $1, id, 22.62, 120.30, 'tests' FROM bureau WHERE code = $2"
            " RETURNING id, bureau_id",
            f"CAM-DET-{bureau}", bureau,
        )  # fmt: skip
    await owner.execute(
        "INSERT INTO vision_prompt (version, text, schema) VALUES ('det-1', 'What is here?', '{}')"
        " ON CONFLICT DO NOTHING"
    )
    await owner.execute(
        "INSERT INTO vision_model (name, version) VALUES"
        " ('model-a', '1'), ('model-a', '2'), ('model-b', '1') ON CONFLICT DO NOTHING"
    )
    frames = [("POLICE", "model-a", "1"), ("FIRE", "model-b", "1"), ("POLICE", "model-a", "2")]
    analyses = []
    for n, (bureau, model, version) in enumerate(frames):
        camera = cameras[bureau]
        sha = bytes([n + 1]) * 32
        await owner.execute(
            "INSERT INTO frame (sha256, camera_id, bureau_id, media_type, size_bytes, width,"
            " height, captured_at, uploaded_by) VALUES ($1, $2, $3, 'image/png', 1, 1, 1, $4, 't')",
            sha, camera["id"], camera["bureau_id"], START,
        )  # fmt: skip
        analyses.append(
            await owner.fetchval(
                "INSERT INTO frame_analysis (frame_sha256, bureau_id, model, model_version,"
                " prompt_version, outcome, raw_answer, latency_ms)"
                " VALUES ($1, $2, $3, $4, 'det-1', 'FINDINGS', '{}', 5) RETURNING id",
                *(sha, camera["bureau_id"], model, version),
            )
        )
    # (frame, category, confidence): d1..d4, a minute apart.
    found = [
        (0, "POTHOLE", 0.2),
        (0, "FLOODING", 0.3),
        (1, "FIRE_SMOKE", 0.25),
        (2, "POTHOLE", 0.15),
    ]
    ids = []
    for minute, (frame, category, confidence) in enumerate(found):
        camera = cameras[frames[frame][0]]
        ids.append(
            await owner.fetchval(
                "INSERT INTO detection (analysis_id, frame_sha256, camera_id, bureau_id, category,"
                " confidence, latitude, longitude, outcome, detected_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, 22.62, 120.30, 'BELOW_THRESHOLD', $7)"
                " RETURNING id",
                *(analyses[frame], bytes([frame + 1]) * 32, camera["id"], camera["bureau_id"]),
                *(category, confidence, START + timedelta(minutes=minute)),
            )
        )
    return {"cameras": cameras, "detections": ids}


async def page(client: GraphQLClient, **variables: Any) -> tuple[list[int], dict[str, Any]]:
    connection = (await client.data(DETECTIONS, variables))["detections"]
    return [key_of(e["node"]["id"]) for e in connection["edges"]], connection


async def test_detections_page_newest_first_and_count(
    city: GraphQLClient, owner: asyncpg.Connection
) -> None:
    d1, d2, d3, d4 = (await arrange(owner))["detections"]
    first, connection = await page(city, first=3)
    assert first == [d4, d3, d2]
    assert connection["totalCount"] == 4 and connection["pageInfo"]["hasNextPage"]
    rest, connection = await page(city, first=3, after=connection["pageInfo"]["endCursor"])
    assert rest == [d1] and not connection["pageInfo"]["hasNextPage"]


@pytest.mark.parametrize(
    ("filter_", "expected"),
    [
        ({"category": ["POTHOLE"]}, [3, 0]),
        ({"model": ["model-a"]}, [3, 1, 0]),
        ({"model": ["model-b", "none-such"]}, [2]),
        ({"minConfidence": 0.25}, [2, 1]),
        ({"detectedFrom": START + timedelta(minutes=1), "detectedBefore": START + timedelta(minutes=3)}, [2, 1]),
        ({"outcome": ["BELOW_THRESHOLD"], "category": ["FIRE_SMOKE", "FLOODING"]}, [2, 1]),
        ({"outcome": ["OPENED", "ATTACHED"]}, []),
        ({"bureau": "FIRE"}, [2]),
        ({"camera": "POLICE"}, [3, 1, 0]),
    ],
    ids=["category", "model", "unknown-model", "confidence", "window", "outcome", "none", "bureau", "camera"],
)  # fmt: skip
async def test_each_filter_selects_in_sql(
    city: GraphQLClient, owner: asyncpg.Connection, filter_: dict[str, Any], expected: list[int]
) -> None:
    arranged = await arrange(owner)
    if isinstance(filter_.get("bureau"), str):
        filter_ = {
            "bureau": [global_id("Bureau", arranged["cameras"][filter_["bureau"]]["bureau_id"])]
        }
    if isinstance(filter_.get("camera"), str):
        filter_ = {"camera": [global_id("Asset", arranged["cameras"][filter_["camera"]]["id"])]}
    for name in ("detectedFrom", "detectedBefore"):
        if name in filter_:
            filter_[name] = filter_[name].isoformat()
    found, connection = await page(city, first=10, filter=filter_)
    assert found == [arranged["detections"][n] for n in expected]
    assert connection["totalCount"] == len(expected)


async def test_the_registry_and_a_models_own_detections(
    city: GraphQLClient, owner: asyncpg.Connection
) -> None:
    d1, _, _, d4 = (await arrange(owner))["detections"]
    data = await city.data(
        """
        query {
          visionModels { name version }
          _entities(representations: [{__typename: "VisionModel", name: "model-a"}]) {
            ... on VisionModel {
              versions { version }
              detections(first: 10, filter: {category: ["POTHOLE"]}) {
                totalCount edges { node { id } }
              }
            }
          }
        }
        """
    )
    # The registry outlives the tests' data (other tests' models are in it too).
    registered = {(m["name"], m["version"]) for m in data["visionModels"]}
    assert {("model-a", "1"), ("model-a", "2"), ("model-b", "1")} <= registered
    (model,) = data["_entities"]
    assert sorted(v["version"] for v in model["versions"]) == ["1", "2"]
    assert [key_of(e["node"]["id"]) for e in model["detections"]["edges"]] == [d4, d1]
    assert model["detections"]["totalCount"] == 2


async def test_a_bureau_without_cameras_sees_no_detections(
    as_: Any, clean: None, owner: asyncpg.Connection
) -> None:
    await arrange(owner)
    found, connection = await page(as_("pwb-supervisor"), first=10)
    assert found == [] and connection["totalCount"] == 0
    police, connection = await page(as_("police-viewer"), first=10)
    assert len(police) == 3 and connection["totalCount"] == 3


@pytest.mark.parametrize(
    ("filter_", "field"),
    [
        ({"minConfidence": 1.5}, "filter.minConfidence"),
        ({"minConfidence": -0.1}, "filter.minConfidence"),
        ({"detectedFrom": "2027-03-01T09:00:00"}, "filter.detectedFrom"),
        ({"detectedBefore": "2027-03-01T09:00:00"}, "filter.detectedBefore"),
        ({"bureau": ["not-an-id"]}, "filter.bureau"),
    ],
)
async def test_a_bad_filter_is_refused_naming_its_field(
    city: GraphQLClient, filter_: dict[str, Any], field: str
) -> None:
    body = await city.execute(DETECTIONS, {"first": 5, "filter": filter_})
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "INVALID_INPUT", error
    assert error["extensions"]["field"] == field, error
    assert body["data"] is None


async def test_a_models_detections_keep_to_that_model_whatever_the_filter_names(
    city: GraphQLClient, owner: asyncpg.Connection
) -> None:
    await arrange(owner)
    query = """
    query($filter: DetectionFilterInput) {
      _entities(representations: [{__typename: "VisionModel", name: "model-a"}]) {
        ... on VisionModel { detections(first: 10, filter: $filter) { totalCount } }
      }
    }
    """
    counts = []
    for models in (["model-b"], ["model-a", "model-b"], None):
        data = await city.data(query, {"filter": {"model": models} if models else {}})
        counts.append(data["_entities"][0]["detections"]["totalCount"])
    assert counts == [0, 3, 3]


FRAMES = """
query Frames($first: Int, $after: String, $camera: [ID!]) {
  frames(first: $first, after: $after, camera: $camera) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node { sha256 status bureau { code } } }
  }
}
"""


async def test_frames_page_newest_first_by_camera(
    city: GraphQLClient, owner: asyncpg.Connection
) -> None:
    arranged = await arrange(owner)
    # Received a minute apart, the third frame last.
    await owner.execute(
        "UPDATE frame SET received_at = $1::timestamptz + get_byte(sha256, 0) * interval '1 minute'",
        START,
    )
    police = global_id("Asset", arranged["cameras"]["POLICE"]["id"])
    first = (await city.data(FRAMES, {"first": 1, "camera": [police]}))["frames"]
    assert [e["node"]["sha256"] for e in first["edges"]] == ["03" * 32]
    assert first["totalCount"] == 2 and first["pageInfo"]["hasNextPage"]
    rest = (
        await city.data(
            FRAMES, {"first": 5, "camera": [police], "after": first["pageInfo"]["endCursor"]}
        )
    )["frames"]
    assert [e["node"]["sha256"] for e in rest["edges"]] == ["01" * 32]
    assert not rest["pageInfo"]["hasNextPage"]
    everything = (await city.data(FRAMES, {"first": 5}))["frames"]
    assert [e["node"]["bureau"]["code"] for e in everything["edges"]] == [
        "POLICE", "FIRE", "POLICE",
    ]  # fmt: skip
    assert everything["totalCount"] == 3


SUBSCRIBE = """
subscription($category: [String!]) {
  detectionAdded(category: $category) { id category { code } }
}
"""


async def add_detection(owner: asyncpg.Connection, camera: asyncpg.Record, category: str) -> int:
    """A new frame of ``camera``, analysed, with one detection of ``category``; its id."""
    sha = os.urandom(32)
    await owner.execute(
        "INSERT INTO frame (sha256, camera_id, bureau_id, media_type, size_bytes, width, height,"
        " captured_at, uploaded_by) VALUES ($1, $2, $3, 'image/png', 1, 1, 1, now(), 't')",
        sha, camera["id"], camera["bureau_id"],
    )  # fmt: skip
    analysis = await owner.fetchval(
        "INSERT INTO frame_analysis (frame_sha256, bureau_id, model, model_version,"
        " prompt_version, outcome, raw_answer, latency_ms)"
        " VALUES ($1, $2, 'model-a', '1', 'det-1', 'FINDINGS', '{}', 5) RETURNING id",
        sha, camera["bureau_id"],
    )  # fmt: skip
    found = await owner.fetchval(
        "INSERT INTO detection (analysis_id, frame_sha256, camera_id, bureau_id, category,"
        " confidence, latitude, longitude, outcome)"
        " VALUES ($1, $2, $3, $4, $5, 0.2, 22.62, 120.30, 'BELOW_THRESHOLD') RETURNING id",
        analysis, sha, camera["id"], camera["bureau_id"], category,
    )  # fmt: skip
    return int(found)


async def test_detections_arrive_as_recorded_only_those_the_subscriber_may_see(
    gateway: GatewayProcess, tokens: TokenFactory, owner: asyncpg.Connection, clean: None
) -> None:
    """Absence is proven by order (as for incidents): after the detections the subscriber may
    not see (another bureau's camera) or did not ask for (another category), a marker it may
    see is recorded, and the very next event must be the marker's."""
    cameras = (await arrange(owner))["cameras"]
    url = gateway.base_url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(url, subprotocols=[Subprotocol("graphql-transport-ws")]) as ws:
        token = tokens.named("police-viewer")
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
        )
        assert (await socket_message(ws, 10))["type"] == "connection_ack"
        subscribe = {"query": SUBSCRIBE, "variables": {"category": ["POTHOLE"]}}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": subscribe}))

        async def next_detection(wait: float) -> int:
            message = await socket_message(ws, wait)
            assert message["type"] == "next" and "errors" not in message["payload"], message
            found = message["payload"]["data"]["detectionAdded"]
            assert found["category"]["code"] == "POTHOLE"
            return key_of(found["id"])

        for _ in range(20):  # until live: a detection recorded before it listens never comes
            poke = await add_detection(owner, cameras["POLICE"], "POTHOLE")
            try:
                while await next_detection(0.5) != poke:
                    pass
                break
            except TimeoutError:
                continue
        else:
            raise AssertionError("the subscription delivered none of 20 pokes")
        await add_detection(owner, cameras["FIRE"], "POTHOLE")  # another bureau's camera
        await add_detection(owner, cameras["POLICE"], "FLOODING")  # not asked for
        marker = await add_detection(owner, cameras["POLICE"], "POTHOLE")
        assert await next_detection(10) == marker
