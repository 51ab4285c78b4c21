"""Evaluation sets, runs and answers (migration 0016), as the caller may see and write them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson

from api.db.unit_of_work import UnitOfWork

SET_COLUMNS = (
    "s.id, s.name, s.version, s.bureau_id, b.code AS bureau_code, s.source, s.description, "
    "s.categories, s.created_by, s.created_at, "
    "(SELECT count(*) FROM evaluation_item i WHERE i.set_id = s.id) AS frames"
)
SETS = f"""
SELECT {SET_COLUMNS} FROM evaluation_set s JOIN bureau b ON b.id = s.bureau_id
WHERE ($1::text IS NULL OR s.name = $1) AND ($2::int IS NULL OR s.version = $2)
  AND ($3::int IS NULL OR s.bureau_id = $3) AND ($4::bigint IS NULL OR s.id = $4)
ORDER BY s.name, s.bureau_id, s.version DESC
LIMIT 1000
"""
NEW_SET = """
INSERT INTO evaluation_set (name, version, bureau_id, source, description, categories, created_by)
SELECT $1, coalesce(max(version), 0) + 1, $2, $3, $4, $5, $6
FROM evaluation_set WHERE bureau_id = $2 AND name = $1
RETURNING id
"""
HELD_FRAMES = """
INSERT INTO frame (sha256, camera_id, bureau_id, media_type, size_bytes, width, height,
                   captured_at, uploaded_by, status)
SELECT t.sha, t.camera, $2, t.media, t.size, t.width, t.height, t.captured, $3, 'HELD'
FROM unnest($1::bytea[], $4::bigint[], $5::text[], $6::int[], $7::int[], $8::int[],
            $9::timestamptz[]) AS t(sha, camera, media, size, width, height, captured)
ON CONFLICT (sha256) DO NOTHING
"""
ITEMS = """
INSERT INTO evaluation_item (set_id, frame_sha256, bureau_id, categories)
SELECT $1, t.sha, $2, string_to_array(t.labels, ',')
FROM unnest($3::bytea[], $4::text[]) AS t(sha, labels)
"""
ITEMS_OF = """
SELECT i.frame_sha256, i.categories, f.media_type
FROM evaluation_item i JOIN frame f ON f.sha256 = i.frame_sha256
WHERE i.set_id = $1 ORDER BY i.frame_sha256
"""
# The frames of a bureau people judged a detection of (confirmed or transferred: right; closed
# as a false positive: wrong), since a time: labelled with the categories judged right.
REVIEWED = """
SELECT d.frame_sha256,
       coalesce(array_agg(DISTINCT r.category)
                FILTER (WHERE r.outcome IN ('CONFIRMED', 'TRANSFERRED')), '{}') AS labels,
       array_agg(DISTINCT r.category) AS judged
FROM detection_review r JOIN detection d ON d.id = r.detection_id
WHERE r.bureau_id = $1 AND r.detected_at >= $2
  AND r.outcome IN ('CONFIRMED', 'TRANSFERRED', 'REJECTED')
GROUP BY 1
ORDER BY 1
LIMIT $3
"""
RUN_COLUMNS = "id, set_id, bureau_id, model, model_version, prompt_version, started_by, started_at"
NEW_RUN = f"""
INSERT INTO evaluation_run (set_id, bureau_id, model, model_version, prompt_version, started_by)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (set_id, model, model_version, prompt_version) DO NOTHING
RETURNING {RUN_COLUMNS}
"""
RUN_OF = f"""
SELECT {RUN_COLUMNS} FROM evaluation_run
WHERE set_id = $1 AND model = $2 AND model_version = $3 AND prompt_version = $4
"""
RUNS = f"""
SELECT {RUN_COLUMNS},
       (SELECT count(*) FROM evaluation_answer a WHERE a.run_id = r.id) AS answered
FROM evaluation_run r WHERE ($1::bigint IS NULL OR set_id = $1)
  AND ($2::bigint IS NULL OR id = $2)
ORDER BY id DESC LIMIT $3
"""
ANSWERED = "SELECT frame_sha256 FROM evaluation_answer WHERE run_id = $1"
ANSWERS = """
INSERT INTO evaluation_answer (run_id, frame_sha256, bureau_id, outcome, failure, raw_answer,
                               findings, latency_ms)
SELECT $1, t.sha, $2, t.outcome, t.failure, t.raw, t.findings, t.latency
FROM unnest($3::bytea[], $4::text[], $5::text[], $6::text[], $7::jsonb[], $8::int[])
     AS t(sha, outcome, failure, raw, findings, latency)
ON CONFLICT (run_id, frame_sha256) DO NOTHING
"""
SCORED = """
SELECT i.categories AS labels, a.outcome, a.findings
FROM evaluation_answer a
JOIN evaluation_run r ON r.id = a.run_id
JOIN evaluation_item i ON i.set_id = r.set_id AND i.frame_sha256 = a.frame_sha256
WHERE a.run_id = $1
ORDER BY a.frame_sha256
"""


@dataclass(frozen=True, slots=True)
class SetRecord:
    id: int
    name: str
    version: int
    bureau_id: int
    bureau_code: str
    source: str
    description: str
    categories: list[str]
    created_by: str
    created_at: datetime
    frames: int

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version} ({self.bureau_code})"


@dataclass(frozen=True, slots=True)
class HeldFrame:
    sha256: bytes
    camera_id: int
    media_type: str
    size_bytes: int
    width: int
    height: int
    captured_at: datetime


@dataclass(frozen=True, slots=True)
class ItemRecord:
    frame_sha256: bytes
    categories: list[str]
    media_type: str


@dataclass(frozen=True, slots=True)
class ReviewedFrame:
    frame_sha256: bytes
    labels: list[str]
    judged: list[str]


@dataclass(frozen=True, slots=True)
class RunRecord:
    id: int
    set_id: int
    bureau_id: int
    model: str
    model_version: str
    prompt_version: str
    started_by: str
    started_at: datetime
    answered: int = 0


@dataclass(frozen=True, slots=True)
class NewAnswer:
    frame_sha256: bytes
    outcome: str
    failure: str | None
    raw_answer: str
    findings: dict[str, float]
    latency_ms: int


@dataclass(frozen=True, slots=True)
class ScoredRow:
    labels: list[str]
    outcome: str
    findings: dict[str, float]


class EvaluationRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def sets(
        self,
        name: str | None = None,
        version: int | None = None,
        bureau_id: int | None = None,
        set_id: int | None = None,
    ) -> list[SetRecord]:
        """The sets the caller may see (at most 1,000), by name, then the newest version."""
        rows = await self._uow.fetch(SETS, name, version, bureau_id, set_id)
        return [SetRecord(**row) for row in rows]

    async def add_set(
        self,
        name: str,
        bureau_id: int,
        source: str,
        description: str,
        categories: Sequence[str],
        actor: str,
    ) -> int:
        set_id: int = await self._uow.fetchval(
            NEW_SET, name, bureau_id, source, description, list(categories), actor
        )
        return set_id

    async def add_held_frames(
        self, bureau_id: int, actor: str, frames: Sequence[HeldFrame]
    ) -> None:
        """Frames kept for evaluation, never queued (one already stored stays as it is)."""
        await self._uow.execute(
            HELD_FRAMES,
            [f.sha256 for f in frames],
            bureau_id,
            actor,
            [f.camera_id for f in frames],
            [f.media_type for f in frames],
            [f.size_bytes for f in frames],
            [f.width for f in frames],
            [f.height for f in frames],
            [f.captured_at for f in frames],
        )

    async def add_items(
        self, set_id: int, bureau_id: int, items: Sequence[tuple[bytes, Sequence[str]]]
    ) -> None:
        await self._uow.execute(
            ITEMS, set_id, bureau_id, [sha for sha, _ in items], [",".join(c) for _, c in items]
        )

    async def items(self, set_id: int) -> list[ItemRecord]:
        return [
            ItemRecord(bytes(row["frame_sha256"]), list(row["categories"]), row["media_type"])
            for row in await self._uow.fetch(ITEMS_OF, set_id)
        ]

    async def reviewed(self, bureau_id: int, since: datetime, limit: int) -> list[ReviewedFrame]:
        return [
            ReviewedFrame(bytes(row["frame_sha256"]), list(row["labels"]), list(row["judged"]))
            for row in await self._uow.fetch(REVIEWED, bureau_id, since, limit)
        ]

    async def run_for(
        self,
        set_record: SetRecord,
        model: str,
        model_version: str,
        prompt_version: str,
        actor: str,
    ) -> tuple[RunRecord, bool]:
        """The run of ``model`` over the set: made now (True), or the one to resume."""
        row = await self._uow.fetchrow(
            NEW_RUN, set_record.id, set_record.bureau_id, model, model_version, prompt_version,
            actor,
        )  # fmt: skip
        if row is not None:
            return RunRecord(**row), True
        row = await self._uow.fetchrow(RUN_OF, set_record.id, model, model_version, prompt_version)
        assert row is not None
        return RunRecord(**row), False

    async def runs(
        self, set_id: int | None = None, run_id: int | None = None, limit: int = 100
    ) -> list[RunRecord]:
        return [RunRecord(**row) for row in await self._uow.fetch(RUNS, set_id, run_id, limit)]

    async def answered(self, run_id: int) -> set[bytes]:
        return {bytes(row[0]) for row in await self._uow.fetch(ANSWERED, run_id)}

    async def add_answers(self, run_id: int, bureau_id: int, answers: Sequence[NewAnswer]) -> None:
        await self._uow.execute(
            ANSWERS,
            run_id,
            bureau_id,
            [a.frame_sha256 for a in answers],
            [a.outcome for a in answers],
            [a.failure for a in answers],
            [a.raw_answer[:65536] for a in answers],
            [a.findings for a in answers],
            [a.latency_ms for a in answers],
        )

    async def scored(self, run_id: int) -> list[ScoredRow]:
        return [
            ScoredRow(list(row["labels"]), row["outcome"], _findings(row["findings"]))
            for row in await self._uow.fetch(SCORED, run_id)
        ]


def _findings(value: object) -> dict[str, float]:
    data = orjson.loads(value) if isinstance(value, (str, bytes)) else value
    assert isinstance(data, dict)
    return {str(k): float(v) for k, v in data.items()}
