"""Model quality from what people did: detections open incidents, dispatchers verify, dispatch,
reject, merge and close them through the graph, and each detection's review outcome follows in
the same transaction (derived in SQL, migration 0013), counted per model version, prompt and
category with precision, its interval and calibration, under the detections' visibility."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from api.domain.quality import wilson_interval
from tests.graph.helpers import act, create_incident, kaohsiung, key_of
from tests.support import GraphQLClient
from tests.tokens import TokenFactory

pytestmark = pytest.mark.db

QUALITY = """
query Quality($filter: ModelQualityFilterInput) {
  modelQuality(filter: $filter) {
    model version promptVersion category
    detections reviewed confirmed rejected duplicates transferred pending belowThreshold
    thresholdMisses modelMisses
    precision precisionInterval { low high confidence }
    calibration { low high detections confirmed rejected precision }
  }
}
"""


@dataclass
class Lab:
    """A Public Works camera whose frames two versions of one model analysed."""

    owner: asyncpg.Connection
    camera: asyncpg.Record
    analyses: dict[str, int]

    async def analyse(self, version: str, hours_ago: float = 0) -> tuple[bytes, int]:
        """A frame of the camera, captured ``hours_ago``, analysed by ``version``."""
        sha = os.urandom(32)
        await self.owner.execute(
            "INSERT INTO frame (sha256, camera_id, bureau_id, media_type, size_bytes, width,"
            " height, captured_at, uploaded_by) VALUES ($1, $2, $3, 'image/png', 1, 1, 1,"
            " now() - make_interval(secs => $4), 't')",
            sha, self.camera["id"], self.camera["bureau_id"], hours_ago * 3600,
        )  # fmt: skip
        analysis = await self.owner.fetchval(
            "INSERT INTO frame_analysis (frame_sha256, bureau_id, model, model_version,"
            " prompt_version, outcome, raw_answer, latency_ms)"
            " VALUES ($1, $2, 'city-vlm', $3, 'q-1', 'FINDINGS', '{}', 5) RETURNING id",
            sha, self.camera["bureau_id"], version,
        )  # fmt: skip
        return sha, int(analysis)

    async def detect(
        self,
        version: str,
        confidence: float,
        incident: dict[str, Any] | None,
        category: str = "POTHOLE",
        latitude: float = 22.62,
        *,
        hours_ago: float = 0,
        dedup_meters: float = 50,
    ) -> int:
        """A detection by ``version`` that opened ``incident`` (or, without one, stayed under
        its threshold), in a frame of its own, recorded ``hours_ago`` under a deduplication
        distance of ``dedup_meters`` (and 24 hours)."""
        sha, analysis = await self.analyse(version)
        found = await self.owner.fetchval(
            "INSERT INTO detection (analysis_id, frame_sha256, camera_id, bureau_id, category,"
            " confidence, latitude, longitude, outcome, incident_id, detected_at, dedup_meters,"
            " dedup_seconds)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, 120.30, $8, $9,"
            " now() - make_interval(secs => $10), $11, 86400) RETURNING id",
            analysis, sha, self.camera["id"], self.camera["bureau_id"], category, confidence,
            latitude, "OPENED" if incident else "BELOW_THRESHOLD",
            key_of(incident["id"]) if incident else None, hours_ago * 3600, dedup_meters,
        )  # fmt: skip
        return int(found)


async def finding(client: GraphQLClient) -> dict[str, Any]:
    created = await create_incident(client, source="VLM", title="相機發現坑洞")
    incident: dict[str, Any] = created["incident"]
    assert incident["status"] == "DETECTED"
    return incident


async def outcomes(owner: asyncpg.Connection) -> dict[int, str]:
    rows = await owner.fetch("SELECT detection_id, outcome FROM detection_review")
    return {row["detection_id"]: row["outcome"] for row in rows}


async def test_a_day_of_the_workflow_gives_each_detection_its_outcome_and_the_version_its_figures(
    lab: Lab, client: GraphQLClient, tokens: TokenFactory, http: Any
) -> None:
    staff = client  # a Public Works supervisor: the whole workflow
    expected: dict[int, str] = {}
    # Version 1: ten findings above threshold, two under it.
    incidents = [await finding(staff) for _ in range(10)]
    confidences = [0.95, 0.92, 0.85, 0.81, 0.77, 0.66, 0.62, 0.55, 0.51, 0.45]
    detections = [
        await lab.detect("1", confidence, incident)
        for confidence, incident in zip(confidences, incidents, strict=True)
    ]
    for confidence in (0.2, 0.1):
        expected[await lab.detect("1", confidence, None)] = "BELOW_THRESHOLD"
    assert set((await outcomes(lab.owner)).values()) == {"PENDING", "BELOW_THRESHOLD"}

    # The people's day. Verified, dispatched, fixed: confirmed.
    verified = (await act(staff, "VERIFY", incidents[0]))["incident"]
    expected[detections[0]] = "CONFIRMED"
    dispatched = (await act(staff, "VERIFY", incidents[1]))["incident"]
    dispatched = (await act(staff, "DISPATCH", dispatched))["incident"]
    expected[detections[1]] = "CONFIRMED"
    fixed = incidents[2]
    for step in ("VERIFY", "DISPATCH", "START_WORK", "RESOLVE"):
        fixed = (await act(staff, step, fixed))["incident"]
    fixed = (await act(staff, "CLOSE", fixed, reason="FIXED"))["incident"]
    assert fixed["status"] == "CLOSED"
    expected[detections[2]] = "CONFIRMED"
    # Rejected as false positives, one of them after it had been verified (the last word wins).
    await act(staff, "CLOSE", incidents[3], reason="FALSE_POSITIVE")
    expected[detections[3]] = "REJECTED"
    again = (await act(staff, "VERIFY", incidents[4]))["incident"]
    assert (await outcomes(lab.owner))[detections[4]] == "CONFIRMED"
    await act(staff, "CLOSE", again, reason="FALSE_POSITIVE")
    expected[detections[4]] = "REJECTED"
    await act(staff, "CLOSE", incidents[5], reason="FALSE_POSITIVE")
    expected[detections[5]] = "REJECTED"
    # Merged into the verified one: a duplicate. Another body's business: transferred.
    merged = await act(staff, "MARK_DUPLICATE", incidents[6], duplicateOf=verified["id"])
    assert merged["__typename"] == "IncidentUpdated", merged
    expected[detections[6]] = "DUPLICATE"
    await act(staff, "CLOSE", incidents[7], reason="NOT_RESPONSIBLE")
    expected[detections[7]] = "TRANSFERRED"
    # Nobody has looked at the last two yet.
    expected[detections[8]] = expected[detections[9]] = "PENDING"
    # Version 2 found one more pothole, joining the verified incident as evidence.
    second = await lab.detect("2", 0.88, verified)
    expected[second] = "CONFIRMED"

    assert await outcomes(lab.owner) == expected

    figures = (await staff.data(QUALITY))["modelQuality"]
    assert [(f["model"], f["version"], f["promptVersion"], f["category"]) for f in figures] == [
        ("city-vlm", "1", "q-1", "POTHOLE"),
        ("city-vlm", "2", "q-1", "POTHOLE"),
    ]
    first = figures[0]
    assert {k: first[k] for k in ("detections", "reviewed", "confirmed", "rejected",
                                  "duplicates", "transferred", "pending", "belowThreshold")} == {
        "detections": 12, "reviewed": 8, "confirmed": 3, "rejected": 3, "duplicates": 1,
        "transferred": 1, "pending": 2, "belowThreshold": 2,
    }  # fmt: skip
    assert first["precision"] == pytest.approx(4 / 7)  # confirmed and transferred of 7 judged
    interval = wilson_interval(4, 7)
    assert interval is not None
    assert first["precisionInterval"] == {
        "low": pytest.approx(interval.low), "high": pytest.approx(interval.high),
        "confidence": 0.95,
    }  # fmt: skip
    # Calibration: each tenth holding detections, with what people said of them.
    assert [(b["low"], b["high"], b["detections"], b["confirmed"], b["rejected"])
            for b in first["calibration"]] == [
        (0.1, 0.2, 1, 0, 0), (0.2, 0.3, 1, 0, 0), (0.4, 0.5, 1, 0, 0), (0.5, 0.6, 2, 0, 0),
        (0.6, 0.7, 2, 0, 1), (0.7, 0.8, 1, 0, 1), (0.8, 0.9, 2, 1, 1), (0.9, 1.0, 2, 2, 0),
    ]  # fmt: skip
    assert figures[1]["precision"] == 1.0 and figures[1]["confirmed"] == 1

    # Filters, in SQL: one version; none of another category.
    only = await staff.data(QUALITY, {"filter": {"version": ["2"]}})
    assert [f["version"] for f in only["modelQuality"]] == ["2"]
    none = await staff.data(QUALITY, {"filter": {"category": ["FLOODING"]}})
    assert none["modelQuality"] == []

    # The city's dashboards: the same counts, across every bureau, at each scrape.
    scraped = (await http.get("/metrics")).text
    for outcome, count in (("CONFIRMED", 3), ("REJECTED", 3), ("PENDING", 2), ("DUPLICATE", 1)):
        series = (
            f'lighthouse_model_detections{{category="POTHOLE",model="city-vlm",outcome="{outcome}",'
            f'prompt_version="q-1",version="1"}} {count}.0'
        )
        assert series in scraped, series

    # Visibility as the detections': the Police see none of Public Works' camera's findings;
    # the joint service centre sees them all.
    police = GraphQLClient(http, tokens.named("police-viewer"))
    assert (await police.data(QUALITY))["modelQuality"] == []
    centre = GraphQLClient(http, tokens.named("jsc-operator"))
    assert [f["detections"] for f in (await centre.data(QUALITY))["modelQuality"]] == [12, 1]


async def test_misses_of_the_threshold_and_of_the_model_are_counted_from_what_people_reported(
    lab: Lab, client: GraphQLClient
) -> None:
    """The camera sees 100 m around it; the deduplication distance is 50 m, its time 24 hours
    (the session gateway's defaults)."""
    await lab.owner.execute(
        "UPDATE asset SET coverage_meters = 100 WHERE id = $1", lab.camera["id"]
    )
    metres = 1 / 111_195  # a metre of latitude, in degrees
    # Under the threshold: a pothole 20 m from one people confirm afterwards (missed); one 2 km
    # away (not); one near a report people rejected (not); a flooding nobody reported (not).
    await lab.detect("1", 0.3, None, "POTHOLE")
    await lab.detect("1", 0.3, None, "POTHOLE", latitude=22.62 + 2000 * metres)
    await lab.detect("2", 0.3, None, "ROAD_OBSTACLE")
    await lab.detect("1", 0.2, None, "FLOODING")
    near = kaohsiung(22.62 + 20 * metres, 120.30)
    await create_incident(client, category="POTHOLE", source="STAFF", location=near)
    rejected = await create_incident(
        client, category="ROAD_OBSTACLE", source="STAFF", location=near
    )
    await act(client, "CLOSE", rejected["incident"], reason="FALSE_POSITIVE")

    # The model: version 1 looked at the camera's frames an hour before a fallen tree was
    # reported 40 m away, and named nothing; version 2 named it (under the threshold: a miss of
    # the threshold, not of the model). A tree 300 m away is outside the camera's sight, and one
    # reported by a camera is no person's report.
    await lab.analyse("1", hours_ago=1)
    await lab.detect("2", 0.1, None, "FALLEN_TREE")
    tree = kaohsiung(22.62 + 40 * metres, 120.30)
    await create_incident(client, category="FALLEN_TREE", source="CITIZEN_1999", location=tree)
    far = kaohsiung(22.62 + 300 * metres, 120.30)
    await create_incident(client, category="FALLEN_TREE", source="STAFF", location=far)

    figures = (await client.data(QUALITY))["modelQuality"]
    missed = {
        (f["version"], f["category"]): (f["thresholdMisses"], f["modelMisses"])
        for f in figures
        if f["thresholdMisses"] or f["modelMisses"]
    }
    assert missed == {
        ("1", "POTHOLE"): (1, 0),
        ("1", "FALLEN_TREE"): (0, 1),
        ("2", "FALLEN_TREE"): (1, 0),
        # Version 2 looked at the camera's frames before the pothole was reported too (the
        # road obstacle's and the tree's), and named no pothole in them.
        ("2", "POTHOLE"): (0, 1),
    }, figures
    only_misses = next(f for f in figures if (f["version"], f["category"]) == ("1", "FALLEN_TREE"))
    assert only_misses["detections"] == 0 and only_misses["precision"] is None
    # Without a coverage, a camera's frames count against no report.
    await lab.owner.execute(
        "UPDATE asset SET coverage_meters = NULL WHERE id = $1", lab.camera["id"]
    )
    figures = (await client.data(QUALITY))["modelQuality"]
    assert sum(f["modelMisses"] for f in figures) == 0


async def test_a_miss_of_the_threshold_follows_the_incidents_as_people_move_them(
    lab: Lab, client: GraphQLClient
) -> None:
    """Kept up by triggers as incidents move (migration 0019), not counted on reading: after
    each transition the count and the incident holding the miss are the new state's."""
    metres = 1 / 111_195

    async def misses() -> dict[int, int | None]:
        rows = await lab.owner.fetch(
            "SELECT detection_id, missed_by FROM detection_review"
            " WHERE outcome = 'BELOW_THRESHOLD' ORDER BY detection_id"
        )
        counted = await client.data(QUALITY, {"filter": {"category": ["POTHOLE"]}})
        figures = counted["modelQuality"]
        assert sum(f["thresholdMisses"] for f in figures) == sum(
            1 for row in rows if row["missed_by"] is not None
        )
        return {row["detection_id"]: row["missed_by"] for row in rows}

    below = await lab.detect("1", 0.3, None, hours_ago=1)
    # Recorded under a 5 m window: a report 10 m away is no miss of it.
    narrow = await lab.detect("1", 0.3, None, hours_ago=1, dedup_meters=5)
    near = kaohsiung(22.62 + 10 * metres, 120.30)

    async def camera_finding() -> dict[str, Any]:
        created = await create_incident(client, source="VLM", location=near)
        incident: dict[str, Any] = created["incident"]
        assert incident["status"] == "DETECTED"
        return incident

    # A camera's finding nearby, nobody has looked yet: no miss.
    first = await camera_finding()
    assert await misses() == {below: None, narrow: None}
    # Verified: the detection under the threshold was a miss, held by that incident.
    first = (await act(client, "VERIFY", first))["incident"]
    assert await misses() == {below: key_of(first["id"]), narrow: None}
    # A second incident verified there: still one miss, held by the first.
    second = (await act(client, "VERIFY", await camera_finding()))["incident"]
    assert await misses() == {below: key_of(first["id"]), narrow: None}
    # The first rejected as a false report: the second holds the miss.
    await act(client, "CLOSE", first, reason="FALSE_POSITIVE")
    assert await misses() == {below: key_of(second["id"]), narrow: None}
    # The second rejected too: no miss is left.
    await act(client, "CLOSE", second, reason="FALSE_POSITIVE")
    assert await misses() == {below: None, narrow: None}

    # Staff report the pothole (their report is verified as it is made): a miss again. A
    # detection recorded after that report, of a frame captured before it, is a miss as it is
    # recorded; one recorded a day and more before is not (outside its 24 hours).
    reported = (await create_incident(client, source="STAFF", location=near))["incident"]
    assert reported["status"] != "DETECTED"
    late = await lab.detect("1", 0.2, None, hours_ago=2)
    old = await lab.detect("1", 0.2, None, hours_ago=25)
    held = key_of(reported["id"])
    assert await misses() == {below: held, narrow: None, late: held, old: None}
