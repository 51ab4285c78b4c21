"""Evaluation sets and runs: the city measures a model version on frames people labelled.

A set is one bureau's, registered by its model officers (``EvaluateModel``):

- from a manifest (CSV or JSON Lines: the image file, the camera's code, when it was captured,
  the categories a person says it shows), every line checked before anything is written; its
  images are cleaned and stored like any frame, held (never queued for live analysis);
- or from the bureau's reviewed detections: the frames people confirmed or rejected a finding
  of, labelled with the categories they confirmed (complete only for what a model found: a
  category no model named on a frame is not in its label).

A run asks a model version about every frame of a set through the serving tier, with the prompt
and structured outputs the workers use, and records each answer as it comes (in batches), so a
run that stopped (the tier went away, the operator pressed Ctrl-C) resumes where it was when
started again. Its figures are computed from the answers (``api.domain.evaluation``).
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import structlog

from api.access.scope import AccessGate, AccessScope, OperationDescription
from api.auth.principal import Principal
from api.domain.errors import InvalidInput, NotFound
from api.domain.evaluation import RunFigures, Scored, run_figures
from api.policy import resources
from api.repositories.bureaus import BureauRepository
from api.repositories.evaluation import (
    EvaluationRepository,
    HeldFrame,
    ItemRecord,
    NewAnswer,
    RunRecord,
    SetRecord,
)
from api.repositories.vision import VisionRepository
from api.services.vision.analysis import Analysis, Outcome, Prompt, VisionModel
from api.services.vision.pipeline import register
from api.services.vision.thresholds import thresholds_in_force
from api.settings import VisionSettings
from api.vision import images
from api.vision.store import FrameStore

log = structlog.get_logger(__name__)

NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
MAX_FRAMES = 100_000
MAX_ERRORS_SHOWN = 20


@dataclass(frozen=True, slots=True)
class ManifestLine:
    line: int
    file: Path
    camera: str
    captured_at: datetime
    categories: tuple[str, ...]


def read_manifest(path: Path) -> list[ManifestLine]:
    """The lines of a manifest (``.csv`` with a header, or ``.jsonl``), files relative to it;
    InvalidInput naming every bad line (up to ``MAX_ERRORS_SHOWN``) if any is."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInput("manifest", f"cannot read {path}: {error}") from None
    if path.suffix == ".csv":
        records = [(n + 2, row) for n, row in enumerate(csv.DictReader(io.StringIO(text)))]
        split = _csv_categories
    elif path.suffix in (".jsonl", ".ndjson"):
        records, split = [], _json_categories
        for n, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                records.append((n, orjson.loads(raw)))
            except orjson.JSONDecodeError as error:
                records.append((n, {"__error__": f"not JSON: {error}"}))
    else:
        raise InvalidInput("manifest", "must be a .csv or a .jsonl file")
    if not records:
        raise InvalidInput("manifest", "has no lines")
    if len(records) > MAX_FRAMES:
        raise InvalidInput("manifest", f"has more than {MAX_FRAMES} lines")
    lines: list[ManifestLine] = []
    problems: list[str] = []
    for number, record in records:
        try:
            lines.append(_line(path.parent, number, record, split))
        except ValueError as error:
            problems.append(f"line {number}: {error}")
    if problems:
        raise InvalidInput("manifest", _listed(problems))
    return lines


def _line(
    base: Path, number: int, record: object, split: Callable[[object], tuple[str, ...]]
) -> ManifestLine:
    if not isinstance(record, dict):
        raise ValueError("not an object")
    if "__error__" in record:
        raise ValueError(str(record["__error__"]))
    file, camera, captured = record.get("file"), record.get("camera"), record.get("captured_at")
    if not isinstance(file, str) or not file.strip():
        raise ValueError("file: missing")
    if not isinstance(camera, str) or not camera.strip():
        raise ValueError("camera: missing (the camera's asset code)")
    if not isinstance(captured, str):
        raise ValueError("captured_at: missing (ISO 8601 with its offset)")
    try:
        when = datetime.fromisoformat(captured)
    except ValueError:
        raise ValueError(f"captured_at: {captured!r} is not ISO 8601") from None
    if when.tzinfo is None:
        raise ValueError(f"captured_at: {captured!r} has no offset")
    return ManifestLine(
        number, (base / file).resolve(), camera.strip(), when, split(record.get("categories"))
    )


def _csv_categories(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, str):
        raise ValueError("categories: separate them with ';'")
    return tuple(sorted({c.strip() for c in value.split(";") if c.strip()}))


def _json_categories(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise ValueError("categories: must be a list of category codes")
    return tuple(sorted({c.strip() for c in value if c.strip()}))


def _listed(problems: Sequence[str]) -> str:
    shown = "; ".join(problems[:MAX_ERRORS_SHOWN])
    more = len(problems) - MAX_ERRORS_SHOWN
    return shown + (f"; and {more} more" if more > 0 else "") + ": nothing was registered"


class EvaluationSets:
    def __init__(self, access: AccessScope, store: FrameStore, vision: VisionSettings) -> None:
        self._access = access
        self._store = store
        self._vision = vision
        self._repository = EvaluationRepository(access.uow)

    async def from_manifest(
        self, name: str, description: str, lines: Sequence[ManifestLine]
    ) -> SetRecord:
        """A new version of the set ``name`` of the caller's bureau, from ``lines``."""
        bureau_id = self._authorized(name, description)
        known = {c.code for c in await BureauRepository(self._access.uow).categories()}
        vision = VisionRepository(self._access.uow)
        cameras: dict[str, int | None] = {}
        problems: list[str] = []
        frames: dict[bytes, HeldFrame] = {}
        items: dict[bytes, tuple[str, ...]] = {}
        for line in lines:
            if line.camera not in cameras:
                camera = await vision.camera_by_code(line.camera)
                owner = await vision.camera_bureau(camera) if camera is not None else None
                cameras[line.camera] = camera if owner == bureau_id else None
            unknown = sorted(set(line.categories) - known)
            try:
                data = await asyncio.to_thread(line.file.read_bytes)
                clean = await asyncio.to_thread(
                    images.clean,
                    data,
                    max_bytes=self._vision.max_frame_bytes,
                    max_pixels=self._vision.max_frame_pixels,
                )
            except OSError as error:
                problems.append(f"line {line.line}: cannot read {line.file.name}: {error.strerror}")
                continue
            except images.ImageRejected as rejected:
                problems.append(f"line {line.line}: {line.file.name}: {rejected.reason}")
                continue
            if cameras[line.camera] is None:
                problems.append(f"line {line.line}: no camera {line.camera!r} of your bureau")
            elif unknown:
                problems.append(f"line {line.line}: unknown categories {', '.join(unknown)}")
            elif clean.sha256 in items and items[clean.sha256] != line.categories:
                problems.append(
                    f"line {line.line}: the same image as an earlier line, labelled otherwise"
                )
            else:
                camera_id = cameras[line.camera]
                assert camera_id is not None
                await asyncio.to_thread(self._store.put, clean.data, clean.media_type)
                frames[clean.sha256] = HeldFrame(
                    clean.sha256, camera_id, clean.media_type, len(clean.data), clean.width,
                    clean.height, line.captured_at,
                )  # fmt: skip
                items[clean.sha256] = line.categories
        if problems:
            raise InvalidInput("manifest", _listed(problems))
        categories = sorted({c for labels in items.values() for c in labels}) or sorted(known)
        subject = self._access.principal.subject
        await self._repository.add_held_frames(bureau_id, subject, list(frames.values()))
        return await self._add(name, description, "MANIFEST", categories, items)

    async def from_reviews(self, name: str, description: str, days: int) -> SetRecord:
        """A new version of ``name``: the caller's bureau's frames people judged a detection
        of in the last ``days``, labelled with what they confirmed."""
        bureau_id = self._authorized(name, description)
        if not 1 <= days <= 3650:
            raise InvalidInput("days", "must be 1 to 3,650")
        since = datetime.now(UTC) - timedelta(days=days)
        reviewed = await self._repository.reviewed(bureau_id, since, MAX_FRAMES + 1)
        if not reviewed:
            raise InvalidInput("days", f"no detection of your bureau was reviewed in {days} days")
        if len(reviewed) > MAX_FRAMES:
            raise InvalidInput("days", f"more than {MAX_FRAMES} frames: take fewer days")
        categories = sorted({c for frame in reviewed for c in frame.judged})
        items = {frame.frame_sha256: tuple(sorted(frame.labels)) for frame in reviewed}
        return await self._add(name, description, "REVIEWS", categories, items)

    async def sets(self, name: str | None = None) -> list[SetRecord]:
        self._access.authorize("ViewModelRegistry", resources.MODELS)
        found = await self._repository.sets(name)
        self._access.audit.saw("EvaluationSet", [s.id for s in found])
        return found

    def _authorized(self, name: str, description: str) -> int:
        self._access.authorize("EvaluateModel", resources.MODELS)
        if not NAME.fullmatch(name):
            raise InvalidInput(
                "name", "1 to 64 of a-z, 0-9, '.', '_' and '-', not starting with a sign"
            )
        if len(description) > 2000:
            raise InvalidInput("description", "at most 2,000 characters")
        bureau_id = self._access.principal.bureau_id
        if bureau_id is None:
            raise InvalidInput("bureau", "a set is a bureau's: act for one")
        return bureau_id

    async def _add(
        self,
        name: str,
        description: str,
        source: str,
        categories: Sequence[str],
        items: dict[bytes, tuple[str, ...]],
    ) -> SetRecord:
        principal = self._access.principal
        assert principal.bureau_id is not None
        set_id = await self._repository.add_set(
            name, principal.bureau_id, source, description, categories, principal.subject
        )
        await self._repository.add_items(set_id, principal.bureau_id, list(items.items()))
        (record,) = await self._repository.sets(set_id=set_id)
        self._access.audit.saw("EvaluationSet", record.id)
        self._access.audit.outcome = "REGISTERED"
        log.info(
            "evaluation.set_registered",
            set=record.label,
            frames=record.frames,
            categories=record.categories,
            source=source,
        )
        return record


@dataclass(frozen=True, slots=True)
class RunReport:
    run: RunRecord
    set: SetRecord
    figures: RunFigures


class EvaluationReads:
    def __init__(self, access: AccessScope, vision: VisionSettings) -> None:
        self._access = access
        self._vision = vision
        self._repository = EvaluationRepository(access.uow)

    async def report(self, run_id: int) -> RunReport:
        self._access.authorize("ViewModelRegistry", resources.MODELS)
        runs = await self._repository.runs(run_id=run_id, limit=1)
        if not runs:
            raise NotFound("EvaluationRun", run_id)
        run = runs[0]
        (found,) = await self._repository.sets(set_id=run.set_id)
        rows = await self._repository.scored(run.id)
        scored = [
            Scored(frozenset(row.labels), row.findings, row.outcome != Outcome.UNUSABLE.value)
            for row in rows
        ]
        thresholds = await thresholds_in_force(self._access, self._vision)
        figures = run_figures(
            scored, found.categories, thresholds, self._vision.threshold, frames=found.frames
        )
        self._access.audit.saw("EvaluationRun", run.id)
        return RunReport(run, found, figures)

    async def runs(self, set_id: int | None = None, limit: int = 100) -> list[RunRecord]:
        self._access.authorize("ViewModelRegistry", resources.MODELS)
        found = await self._repository.runs(set_id=set_id, limit=limit)
        self._access.audit.saw("EvaluationRun", [r.id for r in found])
        return found


@dataclass(frozen=True, slots=True)
class OpenedRun:
    set: SetRecord
    run: RunRecord
    new: bool  # made now; else the run to resume
    prompt: Prompt


async def open_run(
    access: AccessScope, name: str, set_version: int | None, model: str, model_version: str
) -> OpenedRun:
    """The run of ``model`` ``model_version`` over the caller's bureau's set ``name`` (its
    newest version unless one is named), with the workers' prompt now: made, or the one to
    resume (a run is one per set, version and prompt)."""
    access.authorize("EvaluateModel", resources.MODELS)
    repository = EvaluationRepository(access.uow)
    found = await repository.sets(name, set_version, access.principal.bureau_id)
    if not found:
        raise NotFound("EvaluationSet", name if set_version is None else f"{name} v{set_version}")
    chosen = found[0]
    prompt = await register(access)
    await VisionRepository(access.uow).register_use(model, model_version)
    run, new = await repository.run_for(
        chosen, model, model_version, prompt.version, access.principal.subject
    )
    access.audit.saw("EvaluationSet", chosen.id)
    access.audit.saw("EvaluationRun", run.id)
    return OpenedRun(chosen, run, new, prompt)


Progress = Callable[[int, int], None]  # (answered, of)


class EvaluationRunner:
    """Runs a model version over a set, as one of the set's bureau's model officers."""

    def __init__(
        self,
        gate: AccessGate,
        principal: Principal,
        store: FrameStore,
        model: VisionModel,
        *,
        concurrency: int = 8,
        batch: int = 32,
    ) -> None:
        self._gate = gate
        self._principal = principal
        self._store = store
        self._model = model
        self._concurrency = concurrency
        self._batch = batch

    async def run(self, name: str, version: int | None, progress: Progress) -> RunRecord:
        """Answer every frame of the set not answered yet; the run (resumed or new).
        ``ServingUnavailable`` stops it, with the answers so far kept."""
        async with self._gate.transaction(
            self._principal, "evaluate", _describe("evaluate")
        ) as access:
            opened = await open_run(access, name, version, self._model.name, self._model.version)
            chosen, run, new, prompt = opened.set, opened.run, opened.new, opened.prompt
            repository = EvaluationRepository(access.uow)
            items = await repository.items(chosen.id)
            answered = await repository.answered(run.id)
            access.audit.outcome = "STARTED" if new else "RESUMED"
        todo = [item for item in items if item.frame_sha256 not in answered]
        log.info(
            "evaluation.run",
            run=run.id,
            set=chosen.label,
            model=self._model.name,
            model_version=self._model.version,
            frames=len(items),
            to_answer=len(todo),
            resumed=not new,
        )
        done = len(items) - len(todo)
        progress(done, len(items))
        pending: list[NewAnswer] = []
        lock = asyncio.Lock()

        async def flush() -> None:
            batch = pending[:]
            pending.clear()
            if not batch:
                return
            async with self._gate.transaction(
                self._principal, f"evaluate-{run.id}", _describe("evaluationAnswers")
            ) as access:
                await EvaluationRepository(access.uow).add_answers(run.id, run.bureau_id, batch)
                access.audit.saw("EvaluationRun", run.id)
                access.audit.outcome = f"ANSWERED:{len(batch)}"

        async def answer(item: ItemRecord) -> None:
            nonlocal done
            try:
                image = await asyncio.to_thread(self._store.get, item.frame_sha256, item.media_type)
            except FileNotFoundError:
                missing = "the frame's image is not in the frame store"
                analysis = Analysis(Outcome.UNUSABLE, (), missing, "", 0)
            else:
                analysis = await self._model.analyse(prompt, image, item.media_type)
            async with lock:
                pending.append(
                    NewAnswer(
                        item.frame_sha256, analysis.outcome.value, analysis.failure,
                        analysis.raw_answer,
                        {f.category: f.confidence for f in analysis.findings},
                        analysis.latency_ms,
                    )
                )  # fmt: skip
                done += 1
                progress(done, len(items))
                if len(pending) >= self._batch:
                    await flush()

        queue = iter(todo)  # shared: each frame is taken by one of the askers

        async def asker() -> None:
            for item in queue:
                await answer(item)

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self._concurrency, len(todo))):
                    group.create_task(asker())
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None
        finally:
            async with lock:
                await flush()  # what was answered is kept, however the run ended
        return run


def _describe(name: str) -> Callable[[], OperationDescription]:
    description = OperationDescription(category="vision", name=name, kind="cli")
    return lambda: description
