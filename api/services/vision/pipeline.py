"""One queued frame, analysed: read it, ask the model (with no transaction open: a model call can
take seconds), then record the analysis, its detections and the incidents they open or join in
one transaction.

A frame is analysed once per model version and prompt: a retried or twice-delivered job finds
the analysis already recorded and stops (the database's unique key settles a race between two
workers). The worker acts as a service of the camera's bureau, so row-level security and the
policies apply to it as to any other caller, and its work is in the audit record.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import structlog

from api.access.scope import AccessGate, AccessScope, OperationDescription
from api.auth.principal import Principal, PrincipalKind
from api.domain.findings import Category, Finding
from api.domain.models import AssetRecord
from api.domain.sla import SlaCalendar
from api.repositories.assets import AssetRepository
from api.repositories.bureaus import BureauRepository
from api.repositories.registry import PRODUCTION, SHADOW
from api.repositories.thresholds import CategoryThresholds
from api.repositories.vision import (
    AnalysisRecord,
    FrameRecord,
    NewAnalysis,
    NewDetection,
    VisionRepository,
)
from api.services.vision.analysis import Analysis, Outcome, Prompt, VisionModel
from api.services.vision.choice import ProductionModel
from api.services.vision.detections import DetectionIngest, Observation, dedup_window
from api.settings import VisionSettings
from api.vision.store import FrameStore

log = structlog.get_logger(__name__)

WORKER = "vision-worker"
WORKER_SCOPES = frozenset({"incidents:read", "incidents:write", "assets:read"})


class Processed(StrEnum):
    ANALYSED = "ANALYSED"  # findings or nothing: the frame is done
    UNUSABLE = "UNUSABLE"  # recorded as a failed analysis: the frame is done
    ALREADY = "ALREADY"  # analysed before (a retried or repeated job)
    MISSING = "MISSING"  # no such frame for that bureau, or its image is gone


@dataclass(frozen=True, slots=True)
class Analysed:
    """A frame, its camera, and what a model version said of it: ready to be recorded."""

    frame: FrameRecord
    camera: AssetRecord
    analysis: Analysis
    model: VisionModel
    role: str = PRODUCTION  # or CANARY (acting), or SHADOW (recorded, acting on nothing)

    @property
    def shadow(self) -> bool:
        return self.role == SHADOW


@dataclass(frozen=True, slots=True)
class Bureau:
    id: int
    code: str


def worker_principal(bureau: Bureau) -> Principal:
    """The vision worker, acting for the bureau whose camera sent the frame."""
    return Principal(
        subject=WORKER,
        kind=PrincipalKind.SERVICE,
        bureau_id=bureau.id,
        bureau_code=bureau.code,
        scopes=WORKER_SCOPES,
        client_id=WORKER,
    )


async def register(access: AccessScope) -> Prompt:
    """The prompt over the routing table's categories as they are now, entered in the registry
    (once per worker start: not a row every analysis updates). The model versions are entered
    as the worker takes each up (``ProductionModel``)."""
    categories = await BureauRepository(access.uow).categories()
    prompt = Prompt.over([Category(c.code, c.name_en, c.name_zh) for c in categories])
    await VisionRepository(access.uow).register_prompt(prompt.version, prompt.text, prompt.schema)
    return prompt


class FramePipeline:
    def __init__(
        self,
        gate: AccessGate,
        bureaus: Mapping[int, Bureau],
        store: FrameStore,
        models: ProductionModel,
        prompt: Prompt,
        calendar: SlaCalendar,
        settings: VisionSettings,
        key_ttl_hours: int,
    ) -> None:
        self._gate = gate
        self._bureaus = bureaus
        self._store = store
        self._models = models
        self._prompt = prompt
        self._calendar = calendar
        self._settings = settings
        self._key_ttl_hours = key_ttl_hours

    @property
    def gate(self) -> AccessGate:
        return self._gate

    async def process(self, digest: bytes, bureau_id: int, job: str) -> Processed:
        """Analyse one frame and record the analyses. Raises ``ServingUnavailable`` (nothing
        written) when the serving tier cannot answer now: the frame waits in the queue."""
        analysed = await self.analyse(digest, bureau_id, job)
        if isinstance(analysed, Processed):
            return analysed
        principal, items = analysed
        processed = await self.record_many(principal, items, job)
        return outcome_of(items, processed)

    async def analyse(
        self, digest: bytes, bureau_id: int, job: str
    ) -> tuple[Principal, list[Analysed]] | Processed:
        """What the versions the registry assigns say of one frame (production's or a canary's,
        and a shadow's beside it), ready to be recorded by its bureau's worker; or why there is
        nothing to record (MISSING, ALREADY). ``ServingUnavailable`` as above; a shadow that
        cannot answer is left out, never in production's way."""
        bureau = self._bureaus.get(bureau_id)
        if bureau is None:
            log.error("vision.unknown_bureau", frame=digest.hex(), bureau=bureau_id, job=job)
            return Processed.MISSING
        principal = worker_principal(bureau)
        prompt = self._prompt
        async with self._gate.transaction(principal, job, _describe("readFrame")) as access:
            access.audit.silent = True  # a read by the worker itself; its outcome is recorded
            # The versions in force now (the registry's decisions), for this frame throughout.
            assignment = await self._models.assign(access.uow, digest)
            repository = VisionRepository(access.uow)
            frame = (await repository.frames([digest])).get(digest)
            if frame is None or frame.bureau_id != bureau_id:
                log.error("vision.frame_missing", frame=digest.hex(), bureau=bureau.code, job=job)
                return Processed.MISSING
            planned = [(assignment.live, assignment.live_role)]
            if assignment.shadow is not None:
                planned.append((assignment.shadow, SHADOW))
            todo = [
                (model, role)
                for model, role in planned
                if not await repository.analysis_done(
                    digest, model.name, model.version, prompt.version
                )
            ]
            if not todo:
                return Processed.ALREADY
            camera = (await AssetRepository(access.uow).by_ids([frame.camera_id]))[frame.camera_id]
        try:
            image = await asyncio.to_thread(self._store.get, digest, frame.media_type)
        except FileNotFoundError:
            missing = "the frame's image is not in the frame store"
            unusable = Analysis(Outcome.UNUSABLE, (), missing, "", 0)
            answers: list[Analysis | BaseException] = [unusable for _ in todo]
        else:
            answers = list(
                await asyncio.gather(
                    *(model.analyse(prompt, image, frame.media_type) for model, _ in todo),
                    return_exceptions=True,
                )
            )
        items: list[Analysed] = []
        for (model, role), answer in zip(todo, answers, strict=True):
            if isinstance(answer, BaseException):
                if role != SHADOW:
                    raise answer
                log.warning(
                    "vision.shadow_failed",
                    frame=digest.hex(),
                    model=model.name,
                    model_version=model.version,
                    problem=f"{type(answer).__name__}: {answer}",
                    job=job,
                )
                continue
            log.info(
                "vision.analysed",
                frame=digest.hex(),
                bureau=bureau.code,
                outcome=answer.outcome.value,
                findings=len(answer.findings),
                failure=answer.failure,
                latency_ms=answer.latency_ms,
                model=model.name,
                model_version=model.version,
                role=role,
                job=job,
            )
            items.append(Analysed(frame, camera, answer, model, role))
        return principal, items

    async def count_failure(
        self, digest: bytes, bureau_id: int, failure: str, job: str
    ) -> int | None:
        """Count a broken analysis of the frame (not an outage of the serving tier): how many
        so far, None if the frame is not there. At ``max_attempts`` the frame is FAILED."""
        bureau = self._bureaus.get(bureau_id)
        if bureau is None:
            return None
        principal = worker_principal(bureau)
        async with self._gate.transaction(principal, job, _describe("frameFailed")) as access:
            access.audit.outcome = "FAILED"
            access.audit.saw("Frame", digest.hex())
            return await VisionRepository(access.uow).count_failure(
                digest, failure, self._settings.max_attempts
            )

    async def record_many(
        self, principal: Principal, items: Sequence[Analysed], job: str
    ) -> list[Processed]:
        """``record`` for analyses of one bureau's frames, in one transaction: what the vision
        workers' group commit writes."""
        async with self._gate.transaction(principal, job, _describe("analyseFrames")) as access:
            # The batch statements take arrays: one plan serves every batch, and planning them
            # anew (row policies make it costly) took a quarter of the time.
            await access.uow.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            return await self._record(access, items)

    async def _record(self, access: AccessScope, items: Sequence[Analysed]) -> list[Processed]:
        repository = VisionRepository(access.uow)
        # A batch holds one version's analyses, or a few: across a switch of versions, or with a
        # trial's candidate beside production.
        by_version: dict[tuple[str, str, str], list[Analysed]] = {}
        for item in items:
            key = (item.model.name, item.model.version, item.role)
            by_version.setdefault(key, []).append(item)
        recorded: dict[tuple[bytes, str], AnalysisRecord] = {}
        for (name, version, role), analysed in by_version.items():
            added = await repository.add_analyses(
                name,
                version,
                self._prompt.version,
                [
                    NewAnalysis(
                        frame_sha256=item.frame.sha256,
                        bureau_id=item.frame.bureau_id,
                        outcome=item.analysis.outcome.value,
                        failure=item.analysis.failure,
                        raw_answer=item.analysis.raw_answer,
                        latency_ms=item.analysis.latency_ms,
                    )
                    for item in analysed
                ],
                role,
            )
            recorded |= {(sha, role): record for sha, record in added.items()}
        fresh = [item for item in items if (item.frame.sha256, item.role) in recorded]
        access.audit.saw("Frame", sorted({item.frame.key for item in fresh}))
        outcomes = sorted({item.analysis.outcome.value for item in fresh})
        access.audit.outcome = ",".join(outcomes) if outcomes else "ALREADY"
        live = [item for item in fresh if not item.shadow]
        observations = [
            Observation(
                analysis_id=recorded[item.frame.sha256, item.role].id,
                frame_sha256=item.frame.sha256,
                camera_id=item.frame.camera_id,
                camera_code=item.camera.code,
                bureau_id=item.frame.bureau_id,
                latitude=item.camera.latitude,
                longitude=item.camera.longitude,
                captured_at=item.frame.captured_at,
                finding=finding,
            )
            for item in live
            for finding in item.analysis.findings
        ]
        if observations:
            # The thresholds decided now (a few rows), so a decision holds from the next batch.
            decided = await CategoryThresholds(access.uow).in_force()
            ingest = DetectionIngest(
                access, self._calendar, self._settings, self._key_ttl_hours, decided
            )
            await ingest.ingest(observations)
        shadowed = [
            _shadow_detection(recorded[item.frame.sha256, SHADOW], item, finding)
            for item in fresh
            if item.shadow
            for finding in item.analysis.findings
        ]
        if shadowed:
            kept = await repository.add_detections(shadowed, dedup_window(self._settings))
            access.audit.saw("Detection", [d.id for d in kept])
        if live:
            await repository.mark_frames(
                [(item.frame.sha256, "FAILED" if _failed(item) else "ANALYSED") for item in live]
            )
        return [
            Processed.ALREADY
            if (item.frame.sha256, item.role) not in recorded
            else Processed.UNUSABLE
            if _failed(item)
            else Processed.ANALYSED
            for item in items
        ]


def outcome_of(items: Sequence[Analysed], processed: Sequence[Processed]) -> Processed:
    """What became of a frame: what became of the analysis that acts on it (production's or
    the canary's); a shadow's alone (the frame's own analysis was done before) changes
    nothing of it."""
    for item, result in zip(items, processed, strict=True):
        if not item.shadow:
            return result
    return Processed.ALREADY


def _shadow_detection(analysis: AnalysisRecord, item: Analysed, finding: Finding) -> NewDetection:
    """A shadow's finding, recorded as it was said: it opens and joins nothing."""
    return NewDetection(
        analysis_id=analysis.id,
        frame_sha256=item.frame.sha256,
        camera_id=item.frame.camera_id,
        bureau_id=item.frame.bureau_id,
        category=finding.category,
        confidence=finding.confidence,
        note=finding.note,
        latitude=item.camera.latitude,
        longitude=item.camera.longitude,
        outcome=SHADOW,
        incident_id=None,
    )


def _failed(item: Analysed) -> bool:
    return item.analysis.outcome is Outcome.UNUSABLE


def _describe(name: str) -> Callable[[], OperationDescription]:
    description = OperationDescription(category="vision", name=name, kind="worker")
    return lambda: description
