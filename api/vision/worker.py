"""``lighthouse worker vision``: takes queued frames from PostgreSQL and has them analysed.

A separate process; run as many as you like, on as many machines as reach the database: the
queue (PgQueuer) hands each frame to one of them, and ``worker_concurrency`` bounds how many are
analysed at once across all of them. A frame that fails is retried with backoff and, after
``max_attempts``, held as failed (``lighthouse worker status`` lists them, ``lighthouse worker
requeue`` sends them round again). While the serving tier is down frames are not failed but put
back with a delay (up to ``outage_retry_max_seconds``), so nothing is lost and work resumes by
itself when the tier is back.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import orjson
import structlog
from pgqueuer import Queries, QueueManager, RetryRequested
from pgqueuer.db import AsyncpgDriver, AsyncpgPoolDriver
from pgqueuer.models import Job
from pgqueuer.types import QueueExecutionMode

from api.access.scope import AccessGate, OperationDescription
from api.auth.principal import Principal
from api.db.database import Database
from api.db.endpoints import DatabaseEndpoints, resolve_endpoints
from api.db.pool import create_pool
from api.domain.sla import SlaCalendar
from api.inference.client import ServingClient, ServingUnavailable
from api.metrics import Metrics
from api.policy.engine import PolicyEngine
from api.repositories.audit import AuditRepository
from api.repositories.registry import DecisionRecord, ModelDecisions
from api.repositories.system import SystemRepository
from api.repositories.vision import FrameMaintenance
from api.services.vision.analysis import VisionModel
from api.services.vision.choice import ProductionModel
from api.services.vision.evaluation import EvaluationRunner
from api.services.vision.evaluation_jobs import EVALUATE, EvaluationJob
from api.services.vision.intake import ANALYSE
from api.services.vision.pipeline import (
    Analysed,
    Bureau,
    FramePipeline,
    Processed,
    register,
    worker_principal,
)
from api.services.vision.recorder import Recorder
from api.services.vision.registry import watch_canary
from api.settings import Settings
from api.vision.store import FrameStore

log = structlog.get_logger(__name__)

CANARY_WATCH = Principal.system("canary-watch")
WATCH_CANARY = OperationDescription(category="vision", name="watchCanary", kind="worker")


@dataclass(frozen=True, slots=True)
class QueueCounts:
    queued: int
    picked: int
    failed: int


class VisionWorker:
    def __init__(
        self,
        pipeline: FramePipeline,
        queries: Queries,
        settings: Settings,
        version: Callable[[str, str], VisionModel],
        store: FrameStore,
    ) -> None:
        self.pipeline = pipeline
        self.version = version  # a served model, by name and version
        self.store = store
        # Analyses finished together are recorded together (one transaction per bureau).
        self.recorder = Recorder(pipeline.record_many, max_batch=settings.vision.worker_concurrency)
        self.queries = queries
        self.settings = settings
        self.manager = QueueManager(queries)
        vision = settings.vision
        self.manager.entrypoint(
            ANALYSE,
            concurrency_limit=vision.worker_concurrency,
            on_failure="hold",
        )(self.analyse)
        # Evaluation runs officers asked for in the graph: one at a time per worker, on half its
        # concurrency, so the live frames keep the rest of the tier's attention.
        self.manager.entrypoint(EVALUATE, concurrency_limit=1, on_failure="hold")(self.evaluate)

    async def analyse(self, job: Job) -> None:
        try:
            payload = orjson.loads(job.payload or b"{}")
            digest, bureau = bytes.fromhex(payload["frame"]), int(payload["bureau"])
        except (ValueError, KeyError, TypeError):
            # Not a job this worker could ever do: held as failed at once, for an operator.
            log.error("vision.bad_job", job=job.id, payload=(job.payload or b"")[:200])
            raise
        name = f"job-{job.id}"
        vision = self.settings.vision
        try:
            analysed = await self.pipeline.analyse(digest, bureau, name)
            if not isinstance(analysed, Processed):
                principal, items = analysed
                await self.record(principal, items, name)
        except ServingUnavailable as unavailable:
            # The tier is down or busy: not the frame's fault, so not counted; the frame waits
            # in the queue, retried further apart up to the ceiling, for as long as it takes.
            delay = min(vision.outage_retry_max_seconds, 2.0 ** min(job.attempts, 12))
            log.warning(
                "vision.serving_unavailable",
                frame=digest.hex(),
                retry_in_seconds=delay,
                problem=str(unavailable),
            )
            raise RetryRequested(
                delay=timedelta(seconds=delay), reason=str(unavailable)
            ) from unavailable
        except Exception as error:
            failure = f"{type(error).__name__}: {error}"
            try:
                failures = await self.pipeline.count_failure(digest, bureau, failure, name)
            except Exception:
                # The database itself is failing: retry later, uncounted.
                log.exception("vision.failure_not_counted", frame=digest.hex())
                raise RetryRequested(delay=timedelta(seconds=30), reason=failure) from error
            if failures is None or failures >= vision.max_attempts:
                log.error(
                    "vision.frame_failed", frame=digest.hex(), failures=failures, failure=failure
                )
                raise  # held as failed: `lighthouse worker requeue` sends it round again
            delay = min(300.0, 2.0**failures)
            log.warning(
                "vision.retry",
                frame=digest.hex(),
                failures=failures,
                failure=failure,
                retry_in_seconds=delay,
                exc_info=True,
            )
            raise RetryRequested(delay=timedelta(seconds=delay), reason=failure) from error

    async def evaluate(self, job: Job) -> None:
        """Answer the frames of a queued evaluation run not answered yet, as the officer who
        asked; while the tier is down the job waits (the answers so far are kept)."""
        try:
            task = EvaluationJob.read(job.payload)
        except ValueError:
            log.error("vision.bad_job", job=job.id, payload=(job.payload or b"")[:200])
            raise
        vision = self.settings.vision
        runner = EvaluationRunner(
            self.pipeline.gate,
            task.principal(),
            self.store,
            self.version(task.model, task.model_version),
            concurrency=max(1, vision.worker_concurrency // 2),
        )
        told = -1

        def progress(answered: int, frames: int) -> None:
            nonlocal told
            tenth = answered * 10 // max(frames, 1)
            if tenth != told:  # a line per tenth of the set
                told = tenth
                log.info("evaluation.progress", run=task.run_id, answered=answered, frames=frames)

        try:
            await runner.run(task.set_name, task.set_version, progress)
        except ServingUnavailable as unavailable:
            delay = min(vision.outage_retry_max_seconds, 2.0 ** min(job.attempts, 12))
            log.warning(
                "evaluation.serving_unavailable",
                run=task.run_id,
                retry_in_seconds=delay,
                problem=str(unavailable),
            )
            raise RetryRequested(
                delay=timedelta(seconds=delay), reason=str(unavailable)
            ) from unavailable
        except Exception:
            log.exception("evaluation.failed", run=task.run_id)
            raise  # held as failed, with what was answered kept
        log.info("evaluation.done", run=task.run_id, model=task.model, version=task.model_version)

    async def record(self, principal: Principal, items: Sequence[Analysed], job: str) -> None:
        """Record a frame's analyses (each in the group commit of its bureau); a shadow's that
        cannot be recorded is left out, never failing the frame."""
        results = await asyncio.gather(
            *(self.recorder.record(principal, item, job) for item in items),
            return_exceptions=True,
        )
        for item, result in zip(items, results, strict=True):
            if not isinstance(result, BaseException):
                continue
            if not item.shadow:
                raise result
            log.warning(
                "vision.shadow_not_recorded",
                frame=item.frame.key,
                model=item.model.name,
                model_version=item.model.version,
                problem=f"{type(result).__name__}: {result}",
            )

    async def run(self, *, drain: bool = False, stop: asyncio.Event | None = None) -> None:
        """Process frames until ``stop`` is set (or, with ``drain``, until the queue is empty).
        Jobs under way when it stops finish first. A canary under way is checked against its
        bound meanwhile (``canary_check_seconds``)."""
        tasks = [asyncio.create_task(self._watch_canary())]
        if stop is not None:
            tasks.append(asyncio.create_task(_forward(stop, self.manager.shutdown)))
        try:
            await self.manager.run(
                dequeue_timeout=timedelta(seconds=5),
                batch_size=self.settings.vision.worker_concurrency,
                mode=QueueExecutionMode.drain if drain else QueueExecutionMode.continuous,
            )
        finally:
            for task in tasks:
                task.cancel()

    async def check_canary(self) -> DecisionRecord | None:
        """End the canary under way if it is past its bound (as the system: the canary's
        reviews are counted across every bureau); the decision that ended it, or None."""
        async with self.pipeline.gate.transaction(
            CANARY_WATCH, "canary-watch", lambda: WATCH_CANARY
        ) as access:
            access.audit.silent = True
            ended = await watch_canary(ModelDecisions(access.uow), CANARY_WATCH.subject)
            if ended is not None:
                access.audit.silent = False
                access.audit.saw("ModelDecision", [ended.ends, ended.id])
                access.audit.outcome = "TRIAL_ENDED"
                log.warning(
                    "vision.canary_rolled_back",
                    model=ended.model,
                    model_version=ended.version,
                    decision=ended.id,
                    reason=ended.reason,
                )
        return ended

    async def _watch_canary(self) -> None:
        while True:
            await asyncio.sleep(self.settings.vision.canary_check_seconds)
            try:
                await self.check_canary()
            except Exception:
                log.exception("vision.canary_watch_failed")

    async def counts(self) -> QueueCounts:
        return await queue_counts(self.queries)


async def _forward(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


def queue_queries(connection: asyncpg.Connection) -> Queries:
    return Queries(AsyncpgDriver(connection))


async def requeue_failed(connection: asyncpg.Connection, limit: int) -> int:
    """Frames held as failed, queued again with a clean count; how many."""
    queries = queue_queries(connection)
    failed = [job for job in await queries.list_failed_jobs(limit) if job.entrypoint == ANALYSE]
    by_bureau: dict[int, list[bytes]] = {}
    for job in failed:
        try:
            payload = orjson.loads(job.payload or b"{}")
            by_bureau.setdefault(int(payload["bureau"]), []).append(bytes.fromhex(payload["frame"]))
        except (ValueError, KeyError, TypeError):
            continue  # a job no worker can do stays held
    codes = {b.id: b.code for b in await SystemRepository(connection).bureaus()}
    requeued = [job.id for job in failed]
    async with connection.transaction():
        for bureau_id, digests in by_bureau.items():
            if bureau_id not in codes:
                continue
            # Each bureau's frames, changed as its vision worker would (row-level security).
            identity = worker_principal(Bureau(bureau_id, codes[bureau_id])).database_settings()
            await FrameMaintenance(connection).retry_failed(identity, digests)
    if requeued:
        await queries.requeue_jobs(requeued)
    return len(requeued)


async def queue_counts(queries: Queries) -> QueueCounts:
    counts = {"queued": 0, "picked": 0, "failed": 0}
    for row in await queries.queue_size():
        if row.entrypoint == ANALYSE and row.status in counts:
            counts[row.status] += row.count
    return QueueCounts(**counts)


@asynccontextmanager
async def vision_worker(settings: Settings) -> AsyncIterator[VisionWorker]:
    """A worker with its own pool, policies and serving client, for as long as the block runs."""
    endpoints: DatabaseEndpoints = await asyncio.to_thread(resolve_endpoints, settings)
    async with AsyncExitStack() as stack:
        stack.push_async_callback(asyncio.to_thread, endpoints.release)
        # Analyses under way, the queue's own queries and its listener, an evaluation's
        # answers, and one to spare.
        size = settings.vision.worker_concurrency + 4
        tuned = settings.model_copy(
            update={
                "database": settings.database.model_copy(
                    update={"pool_min_size": 2, "pool_max_size": size}
                )
            }
        )
        pool: asyncpg.Pool = await create_pool(endpoints.app_url, tuned)
        stack.push_async_callback(pool.close)
        bureaus = await SystemRepository(pool).bureaus()
        policy = PolicyEngine(
            settings.policy.dir, [(b.code, b.joint_service_centre) for b in bureaus]
        )
        await AuditRepository(pool).record_policy_version(policy.version, policy.text)
        gate = AccessGate(Database(pool, Metrics().record_statements), policy)
        serving = settings.serving
        client = ServingClient(
            serving.url,
            secret_file=serving.secret_file,
            timeout_seconds=serving.timeout_seconds,
            retries=serving.retries,
        )
        stack.push_async_callback(client.close)

        def version(name: str, label: str) -> VisionModel:
            return VisionModel(client, name, label, settings.vision.max_answer_tokens)

        # The settings' model until the registry decides otherwise (read with each frame).
        models = ProductionModel(version, version(serving.model, serving.model_version))
        describe = OperationDescription(category="vision", name="register", kind="worker")
        async with gate.transaction(
            Principal.system("vision-worker"), "vision-worker-start", lambda: describe
        ) as access:
            access.audit.silent = True
            prompt = await register(access)
            model = await models.in_force(access.uow)
        store = FrameStore(settings.vision.frames_dir)
        pipeline = FramePipeline(
            gate,
            {b.id: Bureau(b.id, b.code) for b in bureaus},
            store,
            models,
            prompt,
            SlaCalendar(settings.city.timezone),
            settings.vision,
            settings.city.idempotency_key_ttl_hours,
        )
        log.info(
            "vision.worker_started",
            serving=serving.url,
            model=model.name,
            model_version=model.version,
            prompt=prompt.version,
            concurrency=settings.vision.worker_concurrency,
        )
        yield VisionWorker(
            pipeline, Queries(AsyncpgPoolDriver(pool)), settings, models.version, store
        )
    log.info("vision.worker_stopped")


async def run_until_signalled(settings: Settings, *, drain: bool = False) -> None:
    """The CLI's worker: stops on SIGINT or SIGTERM, letting the frames under way finish."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with vision_worker(settings) as worker:
        await worker.run(drain=drain, stop=stop)
