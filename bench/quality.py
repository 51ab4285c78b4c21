"""What model quality costs the database: deriving every detection's review outcome, keeping it
current as incidents move, and counting quality over it.

On an embedded PostgreSQL (bench/.work) migrated to the newest revision, this script loads
``--incidents`` incidents (200,000 by default, at every stage of the workflow) and
``--detections`` detections (1,000,000: four categories per analysed frame, 60% of them opening
or joining an incident, the rest under the threshold), then measures:

- **derivation**: the outcome of every detection from scratch (migration 0013's backfill: one
  ``INSERT … SELECT`` joining detections, analyses and incidents), then every below-threshold
  detection's miss of the threshold (migration 0019's backfill: one probe of the incidents
  around each);
- **per transition**: one incident's status change in its own transaction, with the triggers
  that carry the change to its detections' outcomes and to the misses of the threshold around
  it, and without them (disabled), the same incidents in the same order; the difference is what
  the triggers add to a transition;
- **the count**: ``modelQuality``'s statement over every detection (the owner's: row security
  not applying), misses of the threshold included, and the misses of the model's statement.

    .venv/bin/python bench/quality.py                      # 200,000 incidents, 1,000,000 detections
    .venv/bin/python bench/quality.py --incidents 20000 --detections 100000 --transitions 500
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.repositories.quality import MODEL_MISSES, QUALITY, QualityFilter  # noqa: E402
from bench.graph_read import (  # noqa: E402
    log,
    recreate_database,
    run,
    start_database,
    with_user,
)

DATABASE = "lighthouse_quality_bench"
CATEGORIES = ("POTHOLE", "FLOODING", "FALLEN_TREE", "ILLEGAL_DUMPING")

# Incidents at every stage: (status, closing reason) with weights.
LOAD_INCIDENTS = """
INSERT INTO lighthouse.incident (title, category, status, closing_reason, source,
    responsible_bureau_id, latitude, longitude, reported_at, due_at, closed_at, duplicate_of_id,
    created_by)
SELECT 'bench ' || n, ($2::text[])[1 + n % 4], s.status, s.reason,
       CASE WHEN n % 3 = 0 THEN 'CITIZEN_1999' ELSE 'VLM' END,
       (SELECT id FROM lighthouse.bureau WHERE code = 'PUBLIC_WORKS'),
       22.55 + (n % 1000) * 0.0002, 120.25 + (n / 1000 % 1000) * 0.0002,
       now() - make_interval(mins => n % 40000), now() + interval '3 days',
       CASE WHEN s.status = 'CLOSED' THEN now() END,
       CASE WHEN s.reason = 'DUPLICATE' THEN n - 1 END, 'bench'
FROM generate_series(1, $1) AS n
CROSS JOIN LATERAL (SELECT * FROM (VALUES
    (0, 'DETECTED', NULL), (1, 'VERIFIED', NULL), (2, 'DISPATCHED', NULL),
    (3, 'IN_PROGRESS', NULL), (4, 'RESOLVED', NULL), (5, 'CLOSED', 'FIXED'),
    (6, 'CLOSED', 'FALSE_POSITIVE'), (7, 'CLOSED', 'DUPLICATE'), (8, 'CLOSED', 'TRANSFERRED'),
    (9, 'VERIFIED', NULL)) AS v(k, status, reason)
    WHERE v.k = n % 10) AS s
"""
LOAD_CAMERAS = """
INSERT INTO lighthouse.asset (code, kind, name, bureau_id, latitude, longitude, created_by,
    coverage_meters)
SELECT 'BENCH-CAM-' || n, 'CAMERA', 'bench camera ' || n,
       (SELECT id FROM lighthouse.bureau WHERE code = 'PUBLIC_WORKS'),
       22.55 + (n % 20) * 0.01, 120.25 + (n / 20) * 0.01, 'bench', 80
FROM generate_series(0, 399) AS n
"""
LOAD_FRAMES = """
INSERT INTO lighthouse.frame (sha256, camera_id, bureau_id, media_type, size_bytes, width, height,
    captured_at, uploaded_by, status)
SELECT sha256(int8send(n)), c.id, c.bureau_id, 'image/jpeg', 1000, 56, 56,
       now() - make_interval(mins => n % 40000), 'bench', 'ANALYSED'
FROM generate_series(1, $1) AS n
JOIN lighthouse.asset c ON c.code = 'BENCH-CAM-' || (n % 400)
"""
LOAD_ANALYSES = """
INSERT INTO lighthouse.frame_analysis (frame_sha256, bureau_id, model, model_version,
    prompt_version, outcome, raw_answer, latency_ms)
SELECT f.sha256, f.bureau_id, 'city-vlm', (1 + f.id % 2)::text, 'bench-1', 'FINDINGS', '{}', 5
FROM lighthouse.frame f
"""
# Four detections per analysis; 60% open or join an incident of their category.
LOAD_DETECTIONS = """
INSERT INTO lighthouse.detection (analysis_id, frame_sha256, camera_id, bureau_id, category,
    confidence, latitude, longitude, outcome, incident_id, detected_at)
SELECT a.id, a.frame_sha256, f.camera_id, a.bureau_id, ($1::text[])[k],
       ((a.id * 7 + k * 13) % 100) / 100.0,
       22.55 + (a.id % 1000) * 0.0002, 120.25 + (a.id / 1000 % 1000) * 0.0002,
       CASE WHEN (a.id + k) % 5 < 3 THEN 'OPENED' ELSE 'BELOW_THRESHOLD' END,
       CASE WHEN (a.id + k) % 5 < 3
            THEN 1 + ((a.id * 4 + k) % ($2::bigint / 4)) * 4 + (k - 1) END,
       f.captured_at
FROM lighthouse.frame_analysis a
JOIN lighthouse.frame f ON f.sha256 = a.frame_sha256
CROSS JOIN generate_series(1, 4) AS k
"""
DERIVE = """
INSERT INTO lighthouse.detection_review (detection_id, incident_id, bureau_id, camera_id, model,
    model_version, prompt_version, category, confidence, outcome, detected_at, latitude,
    longitude, miss_meters, miss_until)
SELECT d.id, d.incident_id, d.bureau_id, d.camera_id, a.model, a.model_version,
       a.prompt_version, d.category, d.confidence,
       lighthouse.review_outcome(i.status, i.closing_reason), d.detected_at,
       CASE WHEN below THEN d.latitude END, CASE WHEN below THEN d.longitude END,
       CASE WHEN below THEN d.dedup_meters END,
       CASE WHEN below THEN d.detected_at + make_interval(secs => d.dedup_seconds) END
FROM lighthouse.detection d
CROSS JOIN LATERAL (SELECT d.incident_id IS NULL AS below) AS b
JOIN lighthouse.frame_analysis a ON a.id = d.analysis_id
LEFT JOIN lighthouse.incident i ON i.id = d.incident_id
"""
# Migration 0019's backfill: each below-threshold detection probes the incidents around it.
DERIVE_MISSES = """
UPDATE lighthouse.detection_review r
SET missed_by = lighthouse.threshold_miss(r.category, r.latitude, r.longitude, r.detected_at,
                                          r.miss_meters, r.miss_until)
WHERE r.outcome = 'BELOW_THRESHOLD'
"""
# What a transition sets off in detection_review (the outcome, then the misses around it).
REVIEW_TRIGGERS = ("incident_review_change", "incident_threshold_misses")
# A transition as the workflow makes it, the trigger's part aside: DETECTED → VERIFIED (and back,
# so that the same incidents can be moved again with the trigger off).
TRANSITION = """
UPDATE lighthouse.incident SET status = $2, version = version + 1, updated_at = now()
WHERE id = $1
"""


async def timed(connection: asyncpg.Connection, label: str, query: str, *args: object) -> float:
    started = time.perf_counter()
    await connection.execute(query, *args)
    took = time.perf_counter() - started
    log(f"{label}: {took:.1f} s")
    return took


async def load(owner: asyncpg.Connection, incidents: int, detections: int) -> None:
    frames = detections // 4
    # The announcements are for subscribers; a bulk load has none.
    await owner.execute("ALTER TABLE lighthouse.detection DISABLE TRIGGER detection_announce")
    await owner.execute("ALTER TABLE lighthouse.incident DISABLE TRIGGER USER")
    await timed(owner, f"{incidents:,} incidents", LOAD_INCIDENTS, incidents, list(CATEGORIES))
    await owner.execute("ALTER TABLE lighthouse.incident ENABLE TRIGGER USER")
    await timed(owner, "400 cameras", LOAD_CAMERAS)
    await timed(owner, f"{frames:,} frames", LOAD_FRAMES, frames)
    await owner.execute(
        "INSERT INTO lighthouse.vision_prompt (version, text, schema)"
        " VALUES ('bench-1', 'What is here?', '{}')"
    )
    await timed(owner, f"{frames:,} analyses", LOAD_ANALYSES)
    await timed(
        owner,
        f"{detections:,} detections (each outcome derived by the trigger as it is recorded)",
        LOAD_DETECTIONS,
        list(CATEGORIES),
        incidents,
    )
    await owner.execute("ALTER TABLE lighthouse.detection ENABLE TRIGGER detection_announce")
    await owner.execute("VACUUM ANALYZE")


async def transitions(
    owner: asyncpg.Connection, ids: list[int], enabled: tuple[str, ...]
) -> list[float]:
    """Each incident moved DETECTED → VERIFIED in a transaction of its own, then back (not
    timed), with only the ``enabled`` review triggers; milliseconds per timed transition."""
    for name in REVIEW_TRIGGERS:
        action = "ENABLE" if name in enabled else "DISABLE"
        await owner.execute(f"ALTER TABLE lighthouse.incident {action} TRIGGER {name}")
    took = []
    for incident in ids:
        started = time.perf_counter()
        async with owner.transaction():
            await owner.execute(TRANSITION, incident, "VERIFIED")
        took.append((time.perf_counter() - started) * 1000)
        async with owner.transaction():
            await owner.execute(TRANSITION, incident, "DETECTED")
    for name in REVIEW_TRIGGERS:
        await owner.execute(f"ALTER TABLE lighthouse.incident ENABLE TRIGGER {name}")
    return took


async def measure(owner_url: str, incidents: int, detections: int, count: int) -> None:
    owner = await asyncpg.connect(owner_url)
    try:
        await owner.execute("SET search_path = lighthouse, public")
        await load(owner, incidents, detections)
        reviews = await owner.fetchval("SELECT count(*) FROM detection_review")
        log(f"detection_review: {reviews:,} rows")
        await owner.execute("TRUNCATE detection_review")
        derive = await timed(owner, "derivation from scratch", DERIVE)
        derive_misses = await timed(owner, "misses of the threshold from scratch", DERIVE_MISSES)
        missed = await owner.fetchval(
            "SELECT count(*) FILTER (WHERE missed_by IS NOT NULL) FROM detection_review"
        )
        await owner.execute("VACUUM ANALYZE lighthouse.detection_review")

        # Incidents still DETECTED that hold detections (the ones a verification changes).
        ids = [
            row["id"]
            for row in await owner.fetch(
                "SELECT i.id FROM incident i WHERE i.status = 'DETECTED'"
                " AND EXISTS (SELECT 1 FROM detection_review r WHERE r.incident_id = i.id)"
                " ORDER BY i.id LIMIT $1",
                count,
            )
        ]
        held = await owner.fetchval(
            "SELECT avg(n) FROM (SELECT count(*) AS n FROM detection_review"
            " WHERE incident_id = ANY($1::bigint[]) GROUP BY incident_id) AS per",
            ids,
        )
        await transitions(owner, ids[: min(100, len(ids))], REVIEW_TRIGGERS)  # warm the caches
        without = await transitions(owner, ids, ())
        outcomes_only = await transitions(owner, ids, REVIEW_TRIGGERS[:1])
        with_trigger = await transitions(owner, ids, REVIEW_TRIGGERS)

        where = QualityFilter().conditions()
        started = time.perf_counter()
        groups = await owner.fetch(QUALITY.format(where=where.sql()), *where.args)
        count_seconds = time.perf_counter() - started
        started = time.perf_counter()
        await owner.fetch(MODEL_MISSES.format(where="TRUE", seconds="$1"), 24 * 3600)
        model_seconds = time.perf_counter() - started
    finally:
        await owner.close()

    def p(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    print()
    print(
        f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, Python {sys.version.split()[0]}"
    )
    print(f"data: {incidents:,} incidents, {detections:,} detections")
    print(
        f"derivation of every outcome from scratch: {derive:.1f} s ({detections / derive:,.0f} detections/s)"
    )
    print(
        f"misses of the threshold from scratch: {derive_misses:.1f} s ({missed:,} of {detections:,} detections missed)"
    )
    print(
        f"a transition (DETECTED -> VERIFIED, its own transaction), {len(ids)} incidents holding {held:.1f} detections each:"
    )
    for label, values in (
        ("without the triggers", without),
        ("the outcomes' only", outcomes_only),
        ("with both", with_trigger),
    ):
        print(
            f"  {label:>20}: mean {statistics.mean(values):.3f} ms  p50 {p(values, 0.5):.3f} ms  p99 {p(values, 0.99):.3f} ms"
        )
    for label, values in (("the outcomes' trigger", outcomes_only), ("both", with_trigger)):
        added = statistics.mean(values) - statistics.mean(without)
        added_p50 = p(values, 0.5) - p(without, 0.5)
        print(f"  added by {label}: {added:.3f} ms mean, {added_p50:.3f} ms at p50")
    print(
        f"modelQuality over every detection, misses of the threshold included: {count_seconds * 1000:.0f} ms ({len(groups)} rows)"
    )
    print(f"misses of the model: {model_seconds * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--incidents", type=int, default=200_000)
    parser.add_argument("--detections", type=int, default=1_000_000)
    parser.add_argument("--transitions", type=int, default=2000)
    args = parser.parse_args()
    server_url = start_database()
    asyncio.run(recreate_database(server_url, DATABASE))
    owner_url = server_url.replace("/postgres?", f"/{DATABASE}?", 1)
    if f"/{DATABASE}" not in owner_url:
        raise SystemExit(f"cannot name the database in {server_url}")
    env_app = with_user(owner_url, "lighthouse_app")
    env = os.environ | {
        "LIGHTHOUSE_DATABASE_URL": env_app,
        "LIGHTHOUSE_DATABASE_OWNER_URL": owner_url,
        "LIGHTHOUSE_ENVIRONMENT": "test",
    }
    run([sys.executable, "-m", "api.cli", "migrate"], cwd=ROOT, env=env)
    asyncio.run(measure(owner_url, args.incidents, args.detections, args.transitions))


if __name__ == "__main__":
    main()
