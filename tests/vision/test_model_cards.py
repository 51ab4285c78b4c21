"""Model cards: a model officer publishes the card of a finished evaluation run, and a licensee
whose licence pins that version reads it (what the version was measured on and what it
measured, never the frames); a licence pinning another version shows no card. Bad input is
refused with its reason and writes nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio

from api.domain.errors import InvalidInput
from tests.metering.support import access_token, as_admin, licence_terms, licensee_with_licence
from tests.support import DatabaseUnderTest, GatewayProcess, GraphQLClient
from tests.tokens import TokenFactory
from tests.vision.conftest import CameraFactory
from tests.vision.fake_serving import FakeServing, Script
from tests.vision.test_evaluation import MODEL, models, police_model_officer, register_set

pytestmark = pytest.mark.db

PUBLISH = """
mutation Publish($input: PublishModelCardInput!) {
  publishModelCard(input: $input) {
    __typename
    ... on ModelCardPublished { card { id model version summary publishedBy } }
    ... on InvalidInput { field message }
    ... on Error { code message }
  }
}
"""
LICENCES = """
{ licences { code modelVersions { model version card {
    model version promptVersion summary
    evaluatedOn { name version frames categories }
    categories { category labelled precision precisionInterval { low high } recall f1 }
} } } }
"""


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeServing]:
    async with FakeServing(MODEL) as serving:
        yield serving


async def publish(client: GraphQLClient, run: object, summary: str = "") -> dict[str, Any]:
    data = await client.data(PUBLISH, {"input": {"run": str(run), "summary": summary}})
    result: dict[str, Any] = data["publishModelCard"]
    return result


async def test_a_licensee_reads_the_card_of_the_version_it_licenses_never_the_frames(
    http: httpx.AsyncClient,
    gateway: GatewayProcess,
    tokens: TokenFactory,
    database: DatabaseUnderTest,
    fake: FakeServing,
    cameras: CameraFactory,
    owner: asyncpg.Connection,
    frames_dir: Path,
    tmp_path: Path,
) -> None:
    camera = await cameras("POLICE")
    frames = await register_set(database, fake.url, frames_dir, tmp_path, camera.code, "night", 12)
    for frame in frames:
        fake.by_image[frame["digest"]] = Script(findings=frame["said"])
    ordered = sorted(frames, key=lambda f: f["digest"])
    fake.by_image[ordered[5]["digest"]] = Script(failures=[503] * 100)
    run = ("evaluate", MODEL, "2026.12", "--set", "night", "--bureau", "POLICE")
    code, _, said = await models(database, fake.url, frames_dir, *run, "--concurrency", "1")
    assert code == 3, said
    run_id = await owner.fetchval("SELECT id FROM evaluation_run")

    officer = GraphQLClient(http, police_model_officer(tokens))
    # Refused, each with its reason, and nothing published.
    unfinished = await publish(officer, run_id)
    assert (unfinished["__typename"], unfinished["field"]) == ("InvalidInput", "run"), unfinished
    assert "answered 5 of its 12 frames" in unfinished["message"]
    assert (await publish(officer, "the last one"))["__typename"] == "InvalidInput"
    assert (await publish(officer, 999_999))["__typename"] == "NotFound"
    viewer = GraphQLClient(http, tokens.named("police-viewer"))  # no models:admin
    assert (await publish(viewer, run_id))["__typename"] == "Forbidden"
    too_long = await publish(officer, run_id, summary="x" * 2001)
    assert (too_long["__typename"], too_long["field"]) == ("InvalidInput", "summary")
    assert await owner.fetchval("SELECT count(*) FROM model_card") == 0

    # Finished (the run resumed), then published; publishing again gives the same card.
    fake.by_image[ordered[5]["digest"]] = Script(findings=ordered[5]["said"])
    code, out, said = await models(database, fake.url, frames_dir, *run, "--json")
    assert code == 0, said
    report = {row["category"]: row for row in json.loads(out)}
    published = await publish(officer, run_id, summary="measured on night frames")
    assert published["__typename"] == "ModelCardPublished", published
    card = published["card"]
    assert (card["model"], card["version"], card["publishedBy"]) == (
        MODEL, "2026.12", "police-model-officer",
    )  # fmt: skip
    again = await publish(officer, run_id)
    assert again["card"]["id"] == card["id"]
    assert await owner.fetchval("SELECT count(*) FROM model_card") == 1
    # The command line: the same card, published again and listed.
    code, _, said = await models(
        database, fake.url, frames_dir, "cards", "publish", str(run_id), "--bureau", "POLICE"
    )
    assert code == 0 and f"card {card['id']}: {MODEL} 2026.12, measured on night v1" in said, said
    code, out, said = await models(
        database, fake.url, frames_dir, "cards", "list", "--bureau", "POLICE", "--json"
    )
    assert code == 0, said
    assert [(c["id"], c["set"], c["frames"]) for c in json.loads(out)] == [
        (int(card["id"]), "night v1", 12)
    ]
    assert await owner.fetchval("SELECT count(*) FROM model_card") == 1

    # A licensee whose licence pins the version reads its card; one pinning another, none.
    licensed = await licensee_with_licence(database, models=[f"{MODEL}@2026.12"])
    other = await licensee_with_licence(database, models=[f"{MODEL}@2027.01", "city-vlm-7b"])
    response = await http.post(
        "/graphql",
        json={"query": LICENCES},
        headers={"authorization": f"Bearer {await access_token(gateway, licensed)}"},
    )
    (licence,) = response.json()["data"]["licences"]
    (licensed_model,) = licence["modelVersions"]
    assert (licensed_model["model"], licensed_model["version"]) == (MODEL, "2026.12")
    shown = licensed_model["card"]
    assert shown["summary"] == "measured on night frames"
    categories = sorted({c for f in frames for c in f["labels"]})
    assert shown["evaluatedOn"]["name"] == "night" and shown["evaluatedOn"]["frames"] == 12
    assert sorted(shown["evaluatedOn"]["categories"]) == categories
    for item in shown["categories"]:
        measured = report[item["category"]]
        assert item["precision"] == pytest.approx(measured["precision"], abs=1e-4)
        assert item["recall"] == pytest.approx(measured["recall"], abs=1e-4)
        assert item["f1"] == pytest.approx(measured["f1"], abs=1e-4)
    # What the frames were is nowhere in it: neither their digests nor the camera.
    for frame in frames:
        assert frame["digest"].hex() not in response.text
    assert camera.code not in response.text
    theirs = await GraphQLClient(http, await access_token(gateway, other)).data(LICENCES)
    (their_licence,) = theirs["licences"]
    assert [(m["model"], m["version"], m["card"]) for m in their_licence["modelVersions"]] == [
        (MODEL, "2027.01", None), ("city-vlm-7b", None, None),
    ]  # fmt: skip
    # The same through modelCards: row-level security gives each licensee its versions' cards.
    listed = "{ modelCards { id version } }"
    mine = await GraphQLClient(http, await access_token(gateway, licensed)).data(listed)
    assert mine["modelCards"] == [{"id": card["id"], "version": "2026.12"}]
    assert (await GraphQLClient(http, await access_token(gateway, other)).data(listed)) == {
        "modelCards": []
    }
    audited = await owner.fetchval(
        "SELECT count(*) FROM audit_record WHERE principal_kind = 'licensee' AND $1 = ANY(resource_ids)",
        f"ModelCard:{card['id']}",
    )
    assert audited >= 1


async def test_a_licence_names_its_versions_well_or_is_not_issued(
    database: DatabaseUnderTest, owner: asyncpg.Connection
) -> None:
    existing = await licensee_with_licence(database)
    licensee = existing.licence.licensee_id
    for models_named, words in (
        ([f"{MODEL}@two words"], "a version is 1-63 letters"),
        ([f"{MODEL}@"], "a version is 1-63 letters"),
        ([f"{MODEL}@1", MODEL], "named twice"),
        (["@1"], "a model's name"),
    ):
        terms = licence_terms(licensee, code="LIC-REFUSED", models=models_named)
        with pytest.raises(InvalidInput) as refused:
            await as_admin(database, lambda r, t=terms: r.create_licence(t, "tests"))
        assert words in refused.value.message, refused.value.message
    assert await owner.fetchval("SELECT count(*) FROM licence WHERE code = 'LIC-REFUSED'") == 0
    pinned = await owner.fetch(
        "SELECT model, version FROM licence_model_version WHERE licence_id = $1",
        existing.licence.id,
    )
    assert pinned == []  # named without a version: licensed as served
