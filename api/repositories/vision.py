"""Frames, their analyses, detections, the model registry and the frames queue."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import asyncpg
import orjson

from api.db.errors import translate
from api.db.unit_of_work import UnitOfWork, set_identity
from api.domain.models import columns
from api.repositories.sql import Conditions, Ordering, Page, PageRequest, finish_page


@dataclass(frozen=True, slots=True)
class FrameRecord:
    sha256: bytes
    id: int
    camera_id: int
    bureau_id: int
    media_type: str
    size_bytes: int
    width: int
    height: int
    captured_at: datetime
    received_at: datetime
    uploaded_by: str
    status: str
    analysed_at: datetime | None
    failures: int
    last_failure: str | None

    @property
    def key(self) -> str:
        return self.sha256.hex()


@dataclass(frozen=True, slots=True)
class AnalysisRecord:
    id: int
    frame_sha256: bytes
    bureau_id: int
    model: str
    model_version: str
    prompt_version: str
    outcome: str
    failure: str | None
    raw_answer: str
    latency_ms: int
    analysed_at: datetime
    role: str = "PRODUCTION"


@dataclass(frozen=True, slots=True)
class NewAnalysis:
    frame_sha256: bytes
    bureau_id: int
    outcome: str
    failure: str | None
    raw_answer: str
    latency_ms: int


@dataclass(frozen=True, slots=True)
class DetectionRecord:
    id: int
    analysis_id: int
    frame_sha256: bytes
    camera_id: int
    bureau_id: int
    category: str
    confidence: float
    note: str
    latitude: float
    longitude: float
    outcome: str
    incident_id: int | None
    detected_at: datetime


@dataclass(frozen=True, slots=True)
class NewDetection:
    analysis_id: int
    frame_sha256: bytes
    camera_id: int
    bureau_id: int
    category: str
    confidence: float
    note: str
    latitude: float
    longitude: float
    outcome: str
    incident_id: int | None


@dataclass(frozen=True, slots=True)
class DedupWindow:
    """How near and how soon findings of one category are one incident: a detection is
    recorded with the window it was deduplicated under, which is also the window within which a
    later confirmed report makes a below-threshold detection a miss (migration 0019)."""

    meters: float
    seconds: float


T = TypeVar("T")
FRAME_COLUMNS = columns(FrameRecord)
ANALYSIS_COLUMNS = columns(AnalysisRecord)
DETECTION_COLUMNS = columns(DetectionRecord)

INSERT_FRAME = f"""
INSERT INTO frame (sha256, camera_id, bureau_id, media_type, size_bytes, width, height,
                   captured_at, uploaded_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (sha256) DO NOTHING
RETURNING {FRAME_COLUMNS}
"""
CAMERA_BUREAU = "SELECT lighthouse.camera_bureau($1)"
CAMERA_BY_CODE = "SELECT lighthouse.camera_by_code($1)"
FRAMES_BY_SHA = f"SELECT {FRAME_COLUMNS} FROM frame WHERE sha256 = ANY($1::bytea[])"
FRAME_FAILED = """
UPDATE frame SET failures = failures + 1, last_failure = left($2, 2000),
                 status = CASE WHEN failures + 1 >= $3 THEN 'FAILED' ELSE status END
WHERE sha256 = $1
RETURNING failures
"""
# Failed frames sent round again (`lighthouse worker requeue`) start with a clean count.
FRAMES_RETRIED = """
UPDATE frame SET failures = 0, last_failure = NULL, status = 'QUEUED'
WHERE sha256 = ANY($1::bytea[]) AND status = 'FAILED'
"""
# PgQueuer's own enqueue statement (pgqueuer 1.6.0, QueryQueueBuilder.build_enqueue_query
# ("skip")), run in the caller's transaction so that a frame and its job commit together.
ENQUEUE = """
WITH input AS MATERIALIZED (
    SELECT nextval((SELECT pg_get_serial_sequence('pgqueuer', 'id'))) AS id,
           priority, entrypoint, payload, execute_after, dedupe_key, headers, ord
    FROM UNNEST($1::int[], $2::text[], $3::bytea[], $4::interval[], $5::text[], $6::jsonb[])
         WITH ORDINALITY AS t(priority, entrypoint, payload, execute_after, dedupe_key, headers, ord)
), inserted AS (
    INSERT INTO pgqueuer AS job
        (id, priority, entrypoint, payload, execute_after, dedupe_key, headers, status)
    SELECT id, priority, entrypoint, payload, execute_after + NOW(), dedupe_key, headers, 'queued'
    FROM input
    ON CONFLICT (dedupe_key)
        WHERE ((status = ANY (ARRAY['queued'::pgqueuer_status, 'picked'::pgqueuer_status]))
               AND (dedupe_key IS NOT NULL))
        DO NOTHING
    RETURNING id, entrypoint, priority, dedupe_key
), logged AS (
    INSERT INTO pgqueuer_log (job_id, status, entrypoint, priority)
    SELECT id, 'queued', entrypoint, priority FROM inserted
)
SELECT count(*) FROM inserted
"""
INSERT_ANALYSES = f"""
INSERT INTO frame_analysis (frame_sha256, bureau_id, model, model_version, prompt_version,
                            outcome, failure, raw_answer, latency_ms, role)
SELECT t.sha, t.bureau, $3, $4, $5, t.outcome, t.failure, t.raw, t.latency, $10
FROM unnest($1::bytea[], $2::int[], $6::text[], $7::text[], $8::text[], $9::int[])
     AS t(sha, bureau, outcome, failure, raw, latency)
ON CONFLICT (frame_sha256, model, model_version, prompt_version) DO NOTHING
RETURNING {ANALYSIS_COLUMNS}
"""
FRAMES_MARKED = """
UPDATE frame f SET status = t.status, analysed_at = now()
FROM unnest($1::bytea[], $2::text[]) AS t(sha, status) WHERE f.sha256 = t.sha
"""
ANALYSIS_DONE = """
SELECT EXISTS (SELECT 1 FROM frame_analysis WHERE frame_sha256 = $1 AND model = $2
               AND model_version = $3 AND prompt_version = $4)
"""
ANALYSES_OF = f"""
SELECT {ANALYSIS_COLUMNS} FROM frame_analysis WHERE frame_sha256 = ANY($1::bytea[]) ORDER BY id
"""
INSERT_DETECTIONS = f"""
INSERT INTO detection (analysis_id, frame_sha256, camera_id, bureau_id, category, confidence,
                       note, latitude, longitude, outcome, incident_id, dedup_meters,
                       dedup_seconds)
SELECT *, $12::float8, $13::float8
FROM unnest($1::bigint[], $2::bytea[], $3::bigint[], $4::int[], $5::text[], $6::float8[],
            $7::text[], $8::float8[], $9::float8[], $10::text[], $11::bigint[])
RETURNING {DETECTION_COLUMNS}
"""
DETECTIONS_BY_ID = f"SELECT {DETECTION_COLUMNS} FROM detection WHERE id = ANY($1::bigint[])"
DETECTIONS_OF_INCIDENTS = f"""
SELECT {DETECTION_COLUMNS} FROM detection WHERE incident_id = ANY($1::bigint[])
ORDER BY incident_id, id
"""
DETECTIONS_OF_FRAMES = f"""
SELECT {DETECTION_COLUMNS} FROM detection WHERE frame_sha256 = ANY($1::bytea[])
ORDER BY frame_sha256, id
"""
# The nearest open incident of a category within a distance and a time window, whoever may
# see it (lighthouse.nearby_open_incident is a definer function: a camera's finding joins an
# incident of any bureau).
NEARBY_OPEN = """
SELECT c.ord, lighthouse.nearby_open_incident(c.category, c.latitude, c.longitude, $4, $5)
FROM unnest($1::text[], $2::float8[], $3::float8[]) WITH ORDINALITY
     AS c(category, latitude, longitude, ord)
ORDER BY c.ord
"""
LOCK_CELLS = """
SELECT pg_advisory_xact_lock(hashtext('lighthouse.detections:' || cell))
FROM unnest($1::text[]) AS cell ORDER BY cell
"""
UPSERT_MODEL = """
INSERT INTO vision_model (name, version) VALUES ($1, $2)
ON CONFLICT (name, version) DO UPDATE SET last_used_at = now()
"""
UPSERT_PROMPT = """
INSERT INTO vision_prompt (version, text, schema) VALUES ($1, $2, $3)
ON CONFLICT (version) DO NOTHING
"""
MODELS = (
    "SELECT name, version, first_used_at, last_used_at FROM vision_model ORDER BY name, version"
)
PROMPTS = "SELECT version, text, schema, created_at FROM vision_prompt ORDER BY created_at"

FRAMES_NEWEST_FIRST = Ordering(
    "NEWEST_FIRST", ("received_at", "id"), descending=True, types=(datetime, int)
)
DETECTIONS_NEWEST_FIRST = Ordering(
    "NEWEST_FIRST", ("detected_at", "id"), descending=True, types=(datetime, int)
)
# A review queue's order: the findings the model was surest of first.
DETECTIONS_MOST_CONFIDENT_FIRST = Ordering(
    "MOST_CONFIDENT_FIRST", ("confidence", "id"), descending=True, types=(float, int)
)


@dataclass(frozen=True, slots=True)
class DetectionFilter:
    categories: Sequence[str] | None = None
    bureau_ids: Sequence[int] | None = None
    camera_ids: Sequence[int] | None = None
    outcomes: Sequence[str] | None = None
    min_confidence: float | None = None
    detected_from: datetime | None = None
    detected_before: datetime | None = None
    models: Sequence[str] | None = None  # the models whose analyses found them, by name
    # Whether the incident the detection opened or joined is still waiting for a person
    # (DETECTED), among the incidents the caller may see.
    awaiting_review: bool | None = None

    def conditions(self) -> Conditions:
        where = Conditions()
        if self.models is not None:
            where.add(
                "analysis_id IN (SELECT id FROM frame_analysis WHERE model = ANY({}::text[]))",
                list(self.models),
            )
        if self.categories is not None:
            where.add("category = ANY({}::text[])", list(self.categories))
        if self.bureau_ids is not None:
            where.add("bureau_id = ANY({}::int[])", list(self.bureau_ids))
        if self.camera_ids is not None:
            where.add("camera_id = ANY({}::bigint[])", list(self.camera_ids))
        if self.outcomes is not None:
            where.add("outcome = ANY({}::text[])", list(self.outcomes))
        if self.min_confidence is not None:
            where.add("confidence >= {}", self.min_confidence)
        if self.detected_from is not None:
            where.add("detected_at >= {}", self.detected_from)
        if self.detected_before is not None:
            where.add("detected_at < {}", self.detected_before)
        if self.awaiting_review is not None:
            waiting = "incident_id IN (SELECT id FROM incident WHERE status = 'DETECTED')"
            where.add(waiting if self.awaiting_review else f"NOT coalesce({waiting}, false)")
        return where


class FrameMaintenance:
    """Operators' changes to frames, on a connection of their own (the CLI's), in the caller's
    transaction."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection

    async def retry_failed(self, identity: Mapping[str, str], digests: Sequence[bytes]) -> None:
        """Failed frames queued again with a clean count, changed as ``identity`` would (the
        vision worker of their bureau: row-level security applies)."""
        await set_identity(self._connection, identity)
        await self._connection.execute(FRAMES_RETRIED, list(digests))


class VisionRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    # --- frames ---------------------------------------------------------------------------

    async def add_frame(
        self,
        sha256: bytes,
        camera_id: int,
        bureau_id: int,
        media_type: str,
        size_bytes: int,
        width: int,
        height: int,
        captured_at: datetime,
        uploaded_by: str,
    ) -> FrameRecord | None:
        """The new frame, or None if these bytes were stored before. ``Forbidden`` if row-level
        security refuses the row (frame_create: a frame of the caller's own bureau's cameras)."""
        try:
            row = await self._uow.fetchrow(
                INSERT_FRAME,
                sha256,
                camera_id,
                bureau_id,
                media_type,
                size_bytes,
                width,
                height,
                captured_at,
                uploaded_by,
            )
        except asyncpg.PostgresError as error:
            raise translate(error) or error from None
        return FrameRecord(**row) if row is not None else None

    async def camera_bureau(self, camera_id: int) -> int | None:
        """The bureau a camera belongs to (None if there is no such camera), whoever asks."""
        value = await self._uow.fetchval(CAMERA_BUREAU, camera_id)
        return int(value) if value is not None else None

    async def camera_by_code(self, code: str) -> int | None:
        """The camera with this asset code (None if there is none), whoever asks."""
        value = await self._uow.fetchval(CAMERA_BY_CODE, code)
        return int(value) if value is not None else None

    async def frames(self, digests: Sequence[bytes]) -> dict[bytes, FrameRecord]:
        rows = await self._uow.fetch(FRAMES_BY_SHA, list(digests))
        return {bytes(row["sha256"]): FrameRecord(**row) for row in rows}

    async def count_failure(self, sha256: bytes, failure: str, limit: int) -> int | None:
        """Count a failed analysis of the frame; its failures so far (None: no such frame).
        At ``limit`` the frame is FAILED."""
        value = await self._uow.fetchval(FRAME_FAILED, sha256, failure, limit)
        return int(value) if value is not None else None

    async def frames_page(
        self, camera_ids: Sequence[int] | None, request: PageRequest
    ) -> Page[FrameRecord]:
        return await self._page(
            "frame", FRAME_COLUMNS, FrameRecord, _cameras(camera_ids), FRAMES_NEWEST_FIRST, request
        )

    async def frames_count(self, camera_ids: Sequence[int] | None) -> int:
        where = _cameras(camera_ids)
        return int(
            await self._uow.fetchval(f"SELECT count(*) FROM frame WHERE {where.sql()}", *where.args)
        )

    async def enqueue(self, entrypoint: str, payload: bytes, dedupe_key: str) -> bool:
        """Queue a job in this transaction; False if the same key is already waiting."""
        count = await self._uow.fetchval(
            ENQUEUE, [0], [entrypoint], [payload], [timedelta(0)], [dedupe_key], [None]
        )
        return bool(count)

    # --- analyses ---------------------------------------------------------------------------

    async def analysis_done(
        self, sha256: bytes, model: str, model_version: str, prompt_version: str
    ) -> bool:
        return bool(
            await self._uow.fetchval(ANALYSIS_DONE, sha256, model, model_version, prompt_version)
        )

    async def add_analyses(
        self,
        model: str,
        model_version: str,
        prompt_version: str,
        items: Sequence[NewAnalysis],
        role: str = "PRODUCTION",
    ) -> dict[bytes, AnalysisRecord]:
        """The analyses recorded now, by frame (a frame analysed so before is left out), in
        ``role`` (PRODUCTION, CANARY or SHADOW: migration 0015)."""
        rows = await self._uow.fetch(
            INSERT_ANALYSES,
            [i.frame_sha256 for i in items],
            [i.bureau_id for i in items],
            model,
            model_version,
            prompt_version,
            [i.outcome for i in items],
            [i.failure for i in items],
            [i.raw_answer[:65536] for i in items],
            [i.latency_ms for i in items],
            role,
        )
        return {bytes(row["frame_sha256"]): AnalysisRecord(**row) for row in rows}

    async def mark_frames(self, statuses: Sequence[tuple[bytes, str]]) -> None:
        await self._uow.execute(
            FRAMES_MARKED, [sha for sha, _ in statuses], [status for _, status in statuses]
        )

    async def analyses_of(self, digests: Sequence[bytes]) -> dict[bytes, list[AnalysisRecord]]:
        found: dict[bytes, list[AnalysisRecord]] = {}
        for row in await self._uow.fetch(ANALYSES_OF, list(digests)):
            found.setdefault(bytes(row["frame_sha256"]), []).append(AnalysisRecord(**row))
        return found

    # --- detections -------------------------------------------------------------------------

    async def lock_cells(self, cells: Sequence[str]) -> None:
        """Serialise detections of the same place and category (until commit)."""
        await self._uow.execute(LOCK_CELLS, sorted(set(cells)))

    async def nearby_open(
        self,
        points: Sequence[tuple[str, float, float]],
        meters: float,
        since: datetime,
    ) -> list[int | None]:
        """For each (category, latitude, longitude): the nearest open incident to join."""
        rows = await self._uow.fetch(
            NEARBY_OPEN,
            [p[0] for p in points],
            [p[1] for p in points],
            [p[2] for p in points],
            meters,
            since,
        )
        return [row[1] for row in rows]

    async def add_detections(
        self, items: Sequence[NewDetection], window: DedupWindow
    ) -> list[DetectionRecord]:
        """Record ``items``, deduplicated under ``window``."""
        if not items:
            return []
        rows = await self._uow.fetch(
            INSERT_DETECTIONS,
            [d.analysis_id for d in items],
            [d.frame_sha256 for d in items],
            [d.camera_id for d in items],
            [d.bureau_id for d in items],
            [d.category for d in items],
            [d.confidence for d in items],
            [d.note for d in items],
            [d.latitude for d in items],
            [d.longitude for d in items],
            [d.outcome for d in items],
            [d.incident_id for d in items],
            window.meters,
            window.seconds,
        )
        return [DetectionRecord(**row) for row in rows]

    async def detections(self, ids: Sequence[int]) -> dict[int, DetectionRecord]:
        rows = await self._uow.fetch(DETECTIONS_BY_ID, list(ids))
        return {row["id"]: DetectionRecord(**row) for row in rows}

    async def detections_of_incidents(self, ids: Sequence[int]) -> dict[int, list[DetectionRecord]]:
        found: dict[int, list[DetectionRecord]] = {}
        for row in await self._uow.fetch(DETECTIONS_OF_INCIDENTS, list(ids)):
            found.setdefault(row["incident_id"], []).append(DetectionRecord(**row))
        return found

    async def detections_of_frames(
        self, digests: Sequence[bytes]
    ) -> dict[bytes, list[DetectionRecord]]:
        found: dict[bytes, list[DetectionRecord]] = {}
        for row in await self._uow.fetch(DETECTIONS_OF_FRAMES, list(digests)):
            found.setdefault(bytes(row["frame_sha256"]), []).append(DetectionRecord(**row))
        return found

    async def detections_page(
        self,
        where: DetectionFilter,
        request: PageRequest,
        ordering: Ordering = DETECTIONS_NEWEST_FIRST,
    ) -> Page[DetectionRecord]:
        return await self._page(
            "detection", DETECTION_COLUMNS, DetectionRecord, where.conditions(), ordering, request
        )

    async def detections_count(self, where: DetectionFilter) -> int:
        conditions = where.conditions()
        query = f"SELECT count(*) FROM detection WHERE {conditions.sql()}"
        return int(await self._uow.fetchval(query, *conditions.args))

    # --- the model registry -------------------------------------------------------------------

    async def register_use(self, model: str, version: str) -> None:
        await self._uow.execute(UPSERT_MODEL, model, version)

    async def register_prompt(self, version: str, text: str, schema: dict[str, Any]) -> None:
        await self._uow.execute(UPSERT_PROMPT, version, text, schema)

    async def models(self) -> list[dict[str, Any]]:
        return [dict(row) for row in await self._uow.fetch(MODELS)]

    async def prompts(self) -> list[dict[str, Any]]:
        return [dict(row) for row in await self._uow.fetch(PROMPTS)]

    async def _page(
        self,
        table: str,
        selected: str,
        record: Callable[..., T],
        where: Conditions,
        ordering: Ordering,
        request: PageRequest,
    ) -> Page[T]:
        if request.cursor is not None:
            ordering.after(where, request.cursor, request.backward)
        limit = where.param(request.limit + 1)
        query = (
            f"SELECT {selected} FROM {table} WHERE {where.sql()}"
            f" ORDER BY {ordering.order_by(request.backward)} LIMIT {limit}"
        )
        rows = await self._uow.fetch(query, *where.args)
        return finish_page([record(**row) for row in rows], request)


def _cameras(camera_ids: Sequence[int] | None) -> Conditions:
    where = Conditions()
    if camera_ids is not None:
        where.add("camera_id = ANY({}::bigint[])", list(camera_ids))
    return where


def payload(sha256: bytes, bureau_id: int) -> bytes:
    return orjson.dumps({"frame": sha256.hex(), "bureau": bureau_id})
