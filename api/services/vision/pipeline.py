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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

import structlog

from api.access.scope import AccessGate, AccessScope, OperationDescription
from api.auth.principal import Principal, PrincipalKind
from api.domain.findings import Category
from api.domain.models import AssetRecord
from api.domain.sla import SlaCalendar
from api.repositories.assets import AssetRepository
from api.repositories.bureaus import BureauRepository
from api.repositories.vision import FrameRecord, VisionRepository
from api.services.vision.analysis import Analysis, Outcome, Prompt, VisionModel
from api.services.vision.detections import DetectionIngest, Observation
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


async def current_prompt(access: AccessScope) -> Prompt:
    """The prompt over the routing table's categories as they are now, registered."""
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
        model: VisionModel,
        prompt: Prompt,
        calendar: SlaCalendar,
        settings: VisionSettings,
        key_ttl_hours: int,
    ) -> None:
        self._gate = gate
        self._bureaus = bureaus
        self._store = store
        self._model = model
        self._prompt = prompt
        self._calendar = calendar
        self._settings = settings
        self._key_ttl_hours = key_ttl_hours

    async def process(self, digest: bytes, bureau_id: int, job: str) -> Processed:
        """Analyse one frame. Raises ``ServingUnavailable`` (nothing written) when the serving
        tier cannot answer now: the frame waits in the queue."""
        bureau = self._bureaus.get(bureau_id)
        if bureau is None:
            log.error("vision.unknown_bureau", frame=digest.hex(), bureau=bureau_id, job=job)
            return Processed.MISSING
        principal = worker_principal(bureau)
        model, prompt = self._model, self._prompt

        async with self._gate.transaction(principal, job, _describe("readFrame")) as access:
            access.audit.silent = True  # a read by the worker itself; its outcome is recorded
            repository = VisionRepository(access.uow)
            frame = (await repository.frames([digest])).get(digest)
            if frame is None or frame.bureau_id != bureau_id:
                log.error("vision.frame_missing", frame=digest.hex(), bureau=bureau.code, job=job)
                return Processed.MISSING
            if await repository.analysis_done(digest, model.name, model.version, prompt.version):
                return Processed.ALREADY
            camera = (await AssetRepository(access.uow).by_ids([frame.camera_id]))[frame.camera_id]
        try:
            image = await asyncio.to_thread(self._store.get, digest, frame.media_type)
        except FileNotFoundError:
            missing = "the frame's image is not in the frame store"
            analysis = Analysis(Outcome.UNUSABLE, (), missing, "", 0)
        else:
            analysis = await model.analyse(prompt, image, frame.media_type)

        async with self._gate.transaction(principal, job, _describe("analyseFrame")) as access:
            recorded = await self._record(access, frame, camera, analysis)
        log.info(
            "vision.analysed",
            frame=digest.hex(),
            bureau=bureau.code,
            outcome=analysis.outcome.value,
            findings=len(analysis.findings),
            failure=analysis.failure,
            latency_ms=analysis.latency_ms,
            job=job,
        )
        return recorded

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

    async def _record(
        self,
        access: AccessScope,
        frame: FrameRecord,
        camera: AssetRecord,
        analysis: Analysis,
    ) -> Processed:
        repository = VisionRepository(access.uow)
        model, prompt = self._model, self._prompt
        await repository.register_use(model.name, model.version)
        record = await repository.add_analysis(
            frame.sha256,
            frame.bureau_id,
            model.name,
            model.version,
            prompt.version,
            analysis.outcome.value,
            analysis.failure,
            analysis.raw_answer,
            analysis.latency_ms,
        )
        if record is None:
            return Processed.ALREADY  # another worker recorded it first
        access.audit.outcome = analysis.outcome.value
        access.audit.saw("Frame", frame.key)
        if analysis.findings:
            ingest = DetectionIngest(access, self._calendar, self._settings, self._key_ttl_hours)
            await ingest.ingest(
                [
                    Observation(
                        analysis_id=record.id,
                        frame_sha256=frame.sha256,
                        camera_id=frame.camera_id,
                        camera_code=camera.code,
                        bureau_id=frame.bureau_id,
                        latitude=camera.latitude,
                        longitude=camera.longitude,
                        captured_at=frame.captured_at,
                        finding=finding,
                    )
                    for finding in analysis.findings
                ]
            )
        failed = analysis.outcome is Outcome.UNUSABLE
        await repository.mark_frame(frame.sha256, "FAILED" if failed else "ANALYSED")
        return Processed.UNUSABLE if failed else Processed.ANALYSED


def _describe(name: str) -> Callable[[], OperationDescription]:
    description = OperationDescription(category="vision", name=name, kind="worker")
    return lambda: description
