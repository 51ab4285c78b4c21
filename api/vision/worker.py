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
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import orjson
import structlog
from pgqueuer import DatabaseRetryEntrypointExecutor, Queries, QueueManager, RetryRequested
from pgqueuer.db import AsyncpgDriver, AsyncpgPoolDriver
from pgqueuer.executors import EntrypointExecutorParameters
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
from api.repositories.system import SystemRepository
from api.services.vision.analysis import VisionModel
from api.services.vision.intake import ANALYSE
from api.services.vision.pipeline import Bureau, FramePipeline, Processed, current_prompt
from api.settings import Settings
from api.vision.store import FrameStore

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class QueueCounts:
    queued: int
    picked: int
    failed: int


class VisionWorker:
    def __init__(self, pipeline: FramePipeline, queries: Queries, settings: Settings) -> None:
        self.pipeline = pipeline
        self.queries = queries
        self.settings = settings
        self.manager = QueueManager(queries)
        vision = settings.vision
        self.manager.entrypoint(
            ANALYSE,
            concurrency_limit=vision.worker_concurrency,
            on_failure="hold",
            executor_factory=lambda parameters: _retrying(parameters, vision.max_attempts),
        )(self.analyse)

    async def analyse(self, job: Job) -> None:
        payload = orjson.loads(job.payload or b"{}")
        digest, bureau = bytes.fromhex(payload["frame"]), int(payload["bureau"])
        try:
            outcome = await self.pipeline.process(digest, bureau, f"job-{job.id}")
        except ServingUnavailable as unavailable:
            delay = min(self.settings.vision.outage_retry_max_seconds, 2.0 ** min(job.attempts, 12))
            log.warning(
                "vision.serving_unavailable",
                frame=digest.hex(),
                retry_in_seconds=delay,
                problem=str(unavailable),
            )
            raise RetryRequested(
                delay=timedelta(seconds=delay), reason=str(unavailable)
            ) from unavailable
        if outcome is Processed.MISSING:
            # Nothing to retry: the frame is not there for its bureau (already logged).
            return

    async def run(self, *, drain: bool = False, stop: asyncio.Event | None = None) -> None:
        """Process frames until ``stop`` is set (or, with ``drain``, until the queue is empty).
        Jobs under way when it stops finish first."""
        if stop is not None:
            watcher = asyncio.create_task(_forward(stop, self.manager.shutdown))
        try:
            await self.manager.run(
                dequeue_timeout=timedelta(seconds=5),
                batch_size=self.settings.vision.worker_concurrency,
                mode=QueueExecutionMode.drain if drain else QueueExecutionMode.continuous,
            )
        finally:
            if stop is not None:
                watcher.cancel()

    async def counts(self) -> QueueCounts:
        return await queue_counts(self.queries)


def _retrying(
    parameters: EntrypointExecutorParameters, max_attempts: int
) -> DatabaseRetryEntrypointExecutor:
    return DatabaseRetryEntrypointExecutor(
        parameters=parameters,
        max_attempts=max_attempts,
        initial_delay=timedelta(seconds=1),
        max_delay=timedelta(minutes=5),
    )


async def _forward(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


def queue_queries(connection: asyncpg.Connection) -> Queries:
    return Queries(AsyncpgDriver(connection))


async def requeue_failed(queries: Queries, limit: int) -> int:
    """Frames held as failed, queued again (attempts reset); how many."""
    failed = [job.id for job in await queries.list_failed_jobs(limit) if job.entrypoint == ANALYSE]
    if failed:
        await queries.requeue_jobs(failed)
    return len(failed)


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
        # Analyses under way, the queue's own queries and its listener, and one to spare.
        size = settings.vision.worker_concurrency + 3
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
        describe = OperationDescription(category="vision", name="registerPrompt", kind="worker")
        async with gate.transaction(
            Principal.system("vision-worker"), "vision-worker-start", lambda: describe
        ) as access:
            access.audit.silent = True
            prompt = await current_prompt(access)
        serving = settings.serving
        client = ServingClient(
            serving.url, timeout_seconds=serving.timeout_seconds, retries=serving.retries
        )
        stack.push_async_callback(client.close)
        model = VisionModel(
            client, serving.model, serving.model_version, settings.vision.max_answer_tokens
        )
        pipeline = FramePipeline(
            gate,
            {b.id: Bureau(b.id, b.code) for b in bureaus},
            FrameStore(settings.vision.frames_dir),
            model,
            prompt,
            SlaCalendar(settings.city.timezone),
            settings.vision,
            settings.city.idempotency_key_ttl_hours,
        )
        log.info(
            "vision.worker_started",
            serving=serving.url,
            model=serving.model,
            model_version=serving.model_version,
            prompt=prompt.version,
            concurrency=settings.vision.worker_concurrency,
        )
        yield VisionWorker(pipeline, Queries(AsyncpgPoolDriver(pool)), settings)
    log.info("vision.worker_stopped")


async def run_until_signalled(settings: Settings, *, drain: bool = False) -> None:
    """The CLI's worker: stops on SIGINT or SIGTERM, letting the frames under way finish."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with vision_worker(settings) as worker:
        await worker.run(drain=drain, stop=stop)
