"""Thresholds from evidence: the production version's findings people judged give, per category,
the lowest threshold reaching the precision asked for; a model officer applies it (recorded with
the precision and recall the reviews give at it, audited), and nobody else can."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.graph.helpers import act
from tests.graph.models.test_quality import Lab, finding
from tests.support import DatabaseUnderTest, GraphQLClient
from tests.tokens import TokenFactory
from tests.vision.test_evaluation import models

pytestmark = pytest.mark.db

PROPOSALS = """
query Proposals($precision: Float!, $min: Int!) {
  thresholdProposals(precision: $precision, minJudged: $min) {
    category current judged
    proposed { threshold judged precision recall precisionInterval { low high } }
    best { threshold precision }
  }
}
"""
SET = """
mutation Set($input: SetCategoryThresholdInput!) {
  setCategoryThreshold(input: $input) {
    __typename
    ... on CategoryThresholdSet { decision { id category threshold targetPrecision
      expectedPrecision expectedRecall judged decidedBy } }
    ... on InvalidInput { field }
  }
}
"""


async def set_threshold(client: GraphQLClient, **values: Any) -> dict[str, Any]:
    payload = {"category": "POTHOLE", "threshold": 0.8, "reason": "the bureau asks 0.75", **values}
    result: dict[str, Any] = (await client.data(SET, {"input": payload}))["setCategoryThreshold"]
    return result


async def test_the_lowest_threshold_reaching_the_precision_is_proposed_and_applied(
    lab: Lab,
    client: GraphQLClient,
    tokens: TokenFactory,
    http: Any,
    owner: asyncpg.Connection,
    database: DatabaseUnderTest,
    frames_dir: Path,
) -> None:
    # The version in production is the one whose findings people judged.
    await owner.execute(
        "INSERT INTO model_decision (model, version, role, reason, decided_by)"
        " VALUES ('city-vlm', '1', 'PRODUCTION', 'tests', 'tests')"
    )
    judged = [(0.95, True), (0.9, True), (0.85, False), (0.8, True), (0.7, False), (0.6, False)]
    for confidence, right in judged:
        incident = await finding(client)
        await lab.detect("1", confidence, incident)
        await act(client, "VERIFY" if right else "CLOSE", incident)
    # What people judged is an evaluation set too: the frames, labelled with what they confirmed.
    code, _, said = await models(
        database, "http://127.0.0.1:9", frames_dir, "sets", "from-reviews", "pwb-reviewed",
        "--bureau", "PUBLIC_WORKS", "--days", "1",
    )  # fmt: skip
    assert code == 0 and "pwb-reviewed v1 (PUBLIC_WORKS): 6 frames" in said, said
    labels = await owner.fetch(
        "SELECT d.confidence, i.categories FROM evaluation_item i"
        " JOIN detection d ON d.frame_sha256 = i.frame_sha256 ORDER BY d.confidence DESC"
    )
    assert [(r["confidence"], r["categories"]) for r in labels] == [
        (confidence, ["POTHOLE"] if right else []) for confidence, right in judged
    ]
    # Another version's judgements are not this one's evidence.
    other = await finding(client)
    await lab.detect("2", 0.65, other)
    await act(client, "VERIFY", other)

    officer = GraphQLClient(http, tokens.named("rdec-evaluator"))
    data = await officer.data(PROPOSALS, {"precision": 0.75, "min": 2})
    (pothole,) = data["thresholdProposals"]
    assert (pothole["category"], pothole["current"], pothole["judged"]) == ("POTHOLE", 0.5, 6)
    # 0.9: 2 of 2; 0.85: 2 of 3; 0.8: 3 of 4 (the lowest reaching 0.75); 0.7: 3 of 5.
    proposed = pothole["proposed"]
    assert (proposed["threshold"], proposed["judged"]) == (0.8, 4)
    assert (proposed["precision"], proposed["recall"]) == (0.75, 1.0)
    assert proposed["precisionInterval"]["low"] < 0.75 < proposed["precisionInterval"]["high"]
    assert pothole["best"] == {"threshold": 0.9, "precision": 1.0}
    # Asked more than any threshold gives: none proposed, the best said.
    (strict,) = (await officer.data(PROPOSALS, {"precision": 1.0, "min": 3}))["thresholdProposals"]
    assert strict["proposed"] is None and strict["best"] == {"threshold": 0.8, "precision": 0.75}

    applied = await set_threshold(officer, targetPrecision=0.75)
    assert applied["__typename"] == "CategoryThresholdSet", applied
    decision = applied["decision"]
    assert {k: decision[k] for k in ("threshold", "targetPrecision", "expectedPrecision",
                                     "expectedRecall", "judged", "decidedBy")} == {
        "threshold": 0.8, "targetPrecision": 0.75, "expectedPrecision": 0.75,
        "expectedRecall": 1.0, "judged": 4, "decidedBy": "rdec-evaluator",
    }  # fmt: skip
    listed = await client.data("{ categoryThresholds { category threshold } }")
    assert listed["categoryThresholds"] == [{"category": "POTHOLE", "threshold": 0.8}]
    again = (await officer.data(PROPOSALS, {"precision": 0.75, "min": 2}))["thresholdProposals"]
    assert again[0]["current"] == 0.8

    # Bad input and the wrong people change nothing.
    for values, field in (({"threshold": 0.0}, "threshold"), ({"threshold": 1.5}, "threshold"),
                          ({"category": "UFO"}, "category"), ({"reason": " "}, "reason"),
                          ({"targetPrecision": 2.0}, "precision")):  # fmt: skip
        refused = await set_threshold(officer, **values)
        assert (refused["__typename"], refused.get("field")) == ("InvalidInput", field), refused
    assert (await set_threshold(client))["__typename"] == "Forbidden"
    refused = await client.execute(PROPOSALS, {"precision": 0.75, "min": 2})
    assert refused.get("errors") and not (refused.get("data") or {}).get("thresholdProposals")
    assert await owner.fetchval("SELECT count(*) FROM category_threshold") == 1
    audited = await owner.fetchval(
        "SELECT count(*) FROM audit_record WHERE $1 = ANY(resource_ids)",
        f"CategoryThreshold:{decision['id']}",
    )
    assert audited >= 1
