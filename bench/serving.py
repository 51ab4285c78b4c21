"""The discover step's throughput, from the engine to an incident, in one run.

  (a) vLLM alone (its offline engine) and (b) the Ray Serve LLM endpoint: bench/serving_engine.py,
      run in the serving environment against the tier this script starts;
  (c) the gateway's whole path: a camera frame POSTed to /frames, queued, taken by a
      `lighthouse worker vision` process, analysed by the tier over its OpenAI API, and recorded
      with its detections and the incident they open or join. Latency is from the upload's start
      to the analysis's commit (the frame's analysed_at; the same machine's clock);
  (d) detections ingested per second, without the model: analyses with three findings each are
      recorded straight through the service (FramePipeline.record: the analysis, its detections
      deduplicated against open incidents nearby, incidents opened, the frame marked, the audit
      record), by concurrent tasks as the workers would.

Frames/s and p50/p99 at concurrency 1, 8 and 32 for (a)–(c); (c)/(b) and (b)/(a) as ratios.

    .venv/bin/python bench/serving.py                    # everything (about 10 minutes)
    .venv/bin/python bench/serving.py --only ingest      # (d) alone: no serving tier needed

Needs the serving environment (`make serving-env`). Uses bench/.work's embedded PostgreSQL
(database lighthouse_serving_bench, recreated). The table is printed and the figures written to
bench/results/serving-STAMP.json. The tiny model's answers mean nothing: the numbers measure the
pipeline (image handling, queueing, scheduling, constrained decoding, recording), not a model.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.db.endpoints import with_database  # noqa: E402
from bench.graph_read import log, start_database, with_user  # noqa: E402

RESULTS = ROOT / "bench" / "results"
WORK = ROOT / "bench" / ".work"
DATABASE = "lighthouse_serving_bench"
CATEGORIES = ["POTHOLE", "FLOODING", "ILLEGAL_DUMPING", "ILLEGAL_PARKING", "FALLEN_TREE"]


@dataclass
class Run:
    path: str
    concurrency: int
    frames: int
    seconds: float
    p50_ms: float
    p99_ms: float
    failures: int = 0

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def percentile(values: Sequence[float], q: int) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def env_for(app_url: str, owner_url: str, **extra: str) -> dict[str, str]:
    return os.environ | {
        "LIGHTHOUSE_DATABASE_URL": app_url,
        "LIGHTHOUSE_DATABASE_OWNER_URL": owner_url,
        "LIGHTHOUSE_ENVIRONMENT": "test",
        "LIGHTHOUSE_LOG_LEVEL": "WARNING",
        "LIGHTHOUSE_VISION_FRAMES_DIR": str(WORK / "frames"),
        **extra,
    }


async def recreate(server_url: str, database: str = DATABASE) -> None:
    """The bench's database, dropped and created empty."""
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", database
        )
        await admin.execute(f"DROP DATABASE IF EXISTS {database}")
        await admin.execute(f"CREATE DATABASE {database}")
    finally:
        await admin.close()


async def add_cameras(owner_url: str, count: int) -> list[int]:
    """Cameras of the police spread over Kaohsiung's centre (about 8 × 8 km)."""
    rng = random.Random(7)
    connection = await asyncpg.connect(owner_url)
    try:
        rows = await connection.fetch(
            "INSERT INTO lighthouse.asset (code, kind, name, bureau_id, latitude, longitude,"
            " created_by) SELECT 'CAM-B' || n, 'CAMERA', 'bench camera', b.id, lat, lon, 'bench'"
            " FROM unnest($1::int[], $2::float8[], $3::float8[]) AS c(n, lat, lon),"
            " lighthouse.bureau b WHERE b.code = 'POLICE' RETURNING id",
            list(range(count)),
            [22.60 + rng.random() * 0.07 for _ in range(count)],
            [120.27 + rng.random() * 0.08 for _ in range(count)],
        )
        return [row["id"] for row in rows]
    finally:
        await connection.close()


def png(seed: int) -> bytes:
    from PIL import Image

    rng = random.Random(seed)
    image = Image.new("RGB", (56, 56))
    image.putdata(
        [(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(56 * 56)]
    )
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


# --- (d) detections ingested straight through the service -------------------------------------


async def bench_ingest(app_url: str, owner_url: str, cameras: list[int], frames: int,
                       concurrency: int) -> dict[str, Any]:  # fmt: skip
    from api.access.scope import AccessGate
    from api.db.database import Database
    from api.db.pool import create_pool
    from api.domain.findings import Finding
    from api.domain.sla import SlaCalendar
    from api.metrics import Metrics
    from api.policy.engine import PolicyEngine
    from api.repositories.assets import AssetRepository
    from api.repositories.system import SystemRepository
    from api.repositories.vision import VisionRepository
    from api.services.vision.analysis import Analysis, Outcome, VisionModel
    from api.services.vision.choice import ProductionModel
    from api.services.vision.pipeline import (
        Analysed,
        Bureau,
        FramePipeline,
        register,
        worker_principal,
    )
    from api.services.vision.recorder import Recorder
    from api.settings import DatabaseSettings, Settings, VisionSettings
    from api.vision.store import FrameStore

    settings = Settings(
        database=DatabaseSettings(url=app_url, pool_max_size=concurrency + 2),
        vision=VisionSettings(frames_dir=WORK / "frames"),
    )
    pool = await create_pool(app_url, settings)
    owner = await asyncpg.connect(owner_url)
    try:
        bureaus = await SystemRepository(pool).bureaus()
        police = next(b for b in bureaus if b.code == "POLICE")
        policy = PolicyEngine(
            settings.policy.dir, [(b.code, b.joint_service_centre) for b in bureaus]
        )
        gate = AccessGate(Database(pool, Metrics().record_statements), policy)
        model = VisionModel(None, "bench-model", "1")  # type: ignore[arg-type]  # never called
        principal = worker_principal(Bureau(police.id, police.code))
        async with gate.transaction(principal, "bench", _described("register")) as access:
            prompt = await register(access)
        pipeline = FramePipeline(
            gate, {police.id: Bureau(police.id, police.code)}, FrameStore(WORK / "frames"),
            ProductionModel(lambda name, version: model, model), prompt, SlaCalendar(settings.city.timezone), settings.vision, 72,
        )  # fmt: skip
        # The frames the analyses are of (their upload is not what this measures).
        rng = random.Random(11)
        shas = [rng.randbytes(32) for _ in range(frames)]
        chosen = [rng.choice(cameras) for _ in range(frames)]
        await owner.execute(
            "INSERT INTO lighthouse.frame (sha256, camera_id, bureau_id, media_type, size_bytes,"
            " width, height, captured_at, uploaded_by) SELECT s, c, $3, 'image/png', 1000, 56, 56,"
            " now(), 'bench' FROM unnest($1::bytea[], $2::bigint[]) AS f(s, c)",
            shas, chosen, police.id,
        )  # fmt: skip
        async with gate.transaction(principal, "bench", _described("read")) as access:
            frame_records = await VisionRepository(access.uow).frames(shas)
            camera_records = await AssetRepository(access.uow).by_ids(sorted(set(chosen)))
        work = [
            (frame_records[sha], camera_records[camera],
             Analysis(Outcome.FINDINGS,
                      tuple(Finding(category, "bench", 0.5 + rng.random() / 2)
                            for category in rng.sample(CATEGORIES, 3)),
                      None, "{}", 100))
            for sha, camera in zip(shas, chosen, strict=True)
        ]  # fmt: skip
        queue: asyncio.Queue[Any] = asyncio.Queue()
        for item in work:
            queue.put_nowait(item)
        latencies: list[float] = []

        # As the worker records: each job hands its analysis to the group commit and waits.
        recorder = Recorder(pipeline.record_many, max_batch=concurrency)

        async def worker() -> None:
            while not queue.empty():
                frame, camera, analysis = queue.get_nowait()
                t0 = time.perf_counter()
                await recorder.record(principal, Analysed(frame, camera, analysis, model), "bench")
                latencies.append(time.perf_counter() - t0)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - began
        outcomes = await owner.fetch(
            "SELECT outcome, count(*) FROM lighthouse.detection GROUP BY 1 ORDER BY 1"
        )
        detections = sum(row["count"] for row in outcomes)
        return {
            "frames": frames,
            "detections": detections,
            "concurrency": concurrency,
            "seconds": round(seconds, 3),
            "detections_per_second": round(detections / seconds, 1),
            "analyses_per_second": round(frames / seconds, 1),
            "outcomes": {row["outcome"]: row["count"] for row in outcomes},
            "record_p50_ms": round(percentile(latencies, 50) * 1000, 1),
            "record_p99_ms": round(percentile(latencies, 99) * 1000, 1),
        }
    finally:
        await owner.close()
        await pool.close()


def _described(name: str) -> Any:
    from api.access.scope import OperationDescription

    description = OperationDescription(category="bench", name=name, kind="bench")
    return lambda: description


# --- the serving tier, and (a)/(b) in its own environment -------------------------------------


def serving_up(port: int, run_dir: Path) -> str:
    from api.vision.serving import serving_command, serving_environment

    log(f"starting the serving tier on port {port} (a cold start takes minutes)")
    done = subprocess.run(
        serving_command(ROOT, "up", "--config", "serving/configs/cpu-tiny.yaml", "--port",
                        str(port), "--run-dir", str(run_dir)),
        cwd=ROOT, env=serving_environment(ROOT), capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"the serving tier did not start:\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1]


def serving_down(run_dir: Path) -> None:
    from api.vision.serving import serving_command, serving_environment

    subprocess.run(
        serving_command(ROOT, "down", "--run-dir", str(run_dir)),
        cwd=ROOT, env=serving_environment(ROOT), capture_output=True, check=False,
    )  # fmt: skip


def frames_at(concurrency: int, frames: int) -> int:
    """Frames sent at one level: ``frames`` if given, else enough for a p99 to mean something."""
    return frames or max(32, 4 * concurrency)


def engine_runs(base_url: str, levels: Sequence[int], frames: int) -> list[Run]:
    from api.vision.serving import serving_environment, serving_python

    log("(a) vLLM offline and (b) Ray Serve, in the serving environment")
    results = WORK / "serving-engine"
    done = subprocess.run(
        [str(serving_python(ROOT)), "bench/serving_engine.py", "--base-url", base_url,
         "--secret-file", str(WORK / "serving-tier" / "caller-secret"),
         "--concurrency", *map(str, levels), "--results", str(results),
         *(["--requests", str(frames)] if frames else [])],
        cwd=ROOT, env=serving_environment(ROOT), capture_output=True, text=True, check=False,
    )  # fmt: skip
    sys.stderr.write(done.stdout[-3000:])
    if done.returncode != 0:
        sys.exit(f"bench/serving_engine.py failed:\n{done.stderr[-3000:]}")
    newest = max(results.glob("serving_engine-*.json"), key=lambda p: p.stat().st_mtime)
    report = json.loads(newest.read_text())
    runs = []
    for summary, latencies in zip(report["runs"], report["latencies_s"], strict=True):
        ok = sorted(latencies)
        runs.append(
            Run(
                path={"vllm-offline": "(a) vllm", "ray-serve": "(b) ray-serve"}.get(
                    summary["path"], summary["path"]
                ),
                concurrency=summary["concurrency"],
                frames=summary["requests"] - summary["failures"],
                seconds=summary["seconds"],
                p50_ms=percentile(ok, 50) * 1000,
                p99_ms=percentile(ok, 99) * 1000,
                failures=summary["failures"],
            )
        )
    return runs


# --- (c) the gateway's whole path ----------------------------------------------------------------


async def gateway_runs(gateway: str, token: str, owner_url: str, camera_codes: list[str],
                       levels: Sequence[int], frames: int) -> list[Run]:  # fmt: skip
    owner = await asyncpg.connect(owner_url)
    runs = []
    try:
        async with httpx.AsyncClient(base_url=gateway, timeout=600) as http:
            # One frame through the whole path first, not measured (as (a) and (b) warm up).
            await gateway_level(http, owner, token, camera_codes, [png(999)], 1)
            seed = 1000
            for concurrency in levels:
                count = frames_at(concurrency, frames)
                images = [png(seed + n) for n in range(count)]
                seed += count
                run = await gateway_level(http, owner, token, camera_codes, images, concurrency)
                log(f"  (c) concurrency {concurrency}: {run.frames_per_second:.2f} frames/s")
                runs.append(run)
    finally:
        await owner.close()
    return runs


async def gateway_level(http: httpx.AsyncClient, owner: asyncpg.Connection, token: str,
                        camera_codes: list[str], images: list[bytes], concurrency: int) -> Run:  # fmt: skip
    """``concurrency`` cameras sending at once: each sends its next frame once the last one's
    analysis is recorded."""
    gate = asyncio.Semaphore(concurrency)
    started: dict[str, float] = {}
    pending: dict[str, asyncio.Future[float]] = {}
    failures = 0

    async def one(image: bytes, camera: str) -> None:
        nonlocal failures
        async with gate:
            t0 = time.time()
            response = await http.post(
                "/frames",
                params={"camera": camera, "capturedAt": datetime.now(UTC).isoformat()},
                content=image,
                headers={"authorization": f"Bearer {token}"},
            )
            if response.status_code != 201:
                failures += 1
                return
            sha = response.json()["frame"]["sha256"]
            started[sha] = t0
            pending[sha] = asyncio.get_running_loop().create_future()
            await pending[sha]

    async def watch() -> None:
        while True:
            waiting = [bytes.fromhex(sha) for sha, done in pending.items() if not done.done()]
            if waiting:
                rows = await owner.fetch(
                    "SELECT encode(sha256, 'hex') AS sha, analysed_at FROM lighthouse.frame"
                    " WHERE sha256 = ANY($1::bytea[]) AND analysed_at IS NOT NULL",
                    waiting,
                )
                for row in rows:
                    pending[row["sha"]].set_result(row["analysed_at"].timestamp())
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch())
    began = time.time()
    try:
        await asyncio.gather(
            *(one(image, camera_codes[n % len(camera_codes)]) for n, image in enumerate(images))
        )
    finally:
        watcher.cancel()
    seconds = time.time() - began
    latencies = sorted(pending[sha].result() - started[sha] for sha in pending)
    return Run("(c) gateway", concurrency, len(latencies), seconds,
               percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000, failures)  # fmt: skip


def table(runs: Sequence[Run]) -> str:
    header = f"{'path':<16} {'conc':>4} {'frames':>6} {'frames/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'fail':>4}"
    lines = [header, "-" * len(header)]
    for run in runs:
        lines.append(
            f"{run.path:<16} {run.concurrency:>4} {run.frames:>6} {run.frames_per_second:>9.2f}"
            f" {run.p50_ms:>9.0f} {run.p99_ms:>9.0f} {run.failures:>4}"
        )
    return "\n".join(lines)


def ratios(runs: Sequence[Run]) -> list[dict[str, Any]]:
    by = {(run.path, run.concurrency): run for run in runs}
    found = []
    for concurrency in sorted({run.concurrency for run in runs}):
        a = by.get(("(a) vllm", concurrency))
        b = by.get(("(b) ray-serve", concurrency))
        c = by.get(("(c) gateway", concurrency))
        entry: dict[str, Any] = {"concurrency": concurrency}
        if a and b and a.frames_per_second:
            entry["b_over_a"] = round(b.frames_per_second / a.frames_per_second, 3)
        if b and c and b.frames_per_second:
            entry["c_over_b"] = round(c.frames_per_second / b.frames_per_second, 3)
        found.append(entry)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=["ingest", "serving"], help="one part alone")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument(
        "--frames",
        type=int,
        default=0,
        help="per level in (a)-(c) (default: max(32, 4 x concurrency))",
    )
    parser.add_argument("--ingest-frames", type=int, default=3000, help="analyses recorded in (d)")
    parser.add_argument(
        "--ingest-concurrency", type=int, default=32, help="analyses in flight (worker_concurrency)"
    )
    arguments = parser.parse_args()

    server = start_database()
    asyncio.run(recreate(server))
    owner_url = with_database(server, DATABASE)
    app_url = with_user(owner_url, "lighthouse_app")
    env = env_for(app_url, owner_url)
    migrated = subprocess.run([sys.executable, "-m", "api.cli", "migrate"], cwd=ROOT, env=env,
                              capture_output=True, text=True, check=False)  # fmt: skip
    if migrated.returncode != 0:
        sys.exit(f"migrating failed:\n{migrated.stderr[-3000:]}")
    cameras = asyncio.run(add_cameras(owner_url, 200))
    report: dict[str, Any] = {
        "bench": "serving",
        "when": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
    }  # fmt: skip
    runs: list[Run] = []

    if arguments.only != "serving":
        log(f"(d) recording {arguments.ingest_frames} analyses × 3 findings through the service")
        ingest = asyncio.run(
            bench_ingest(app_url, owner_url, cameras, arguments.ingest_frames,
                         arguments.ingest_concurrency)
        )  # fmt: skip
        report["ingest"] = ingest
        log(f"  {ingest['detections_per_second']} detections/s ({ingest['outcomes']})")

    if arguments.only != "ingest":
        from tests.support import free_port

        run_dir = WORK / "serving-tier"
        port = free_port()
        base_url = serving_up(port, run_dir)
        gateway_port = free_port()
        gateway_url = f"http://127.0.0.1:{gateway_port}"
        processes: list[subprocess.Popen[bytes]] = []
        try:
            runs += engine_runs(base_url, arguments.concurrency, arguments.frames)
            served = env_for(
                app_url, owner_url,
                LIGHTHOUSE_SERVING_URL=base_url, LIGHTHOUSE_OAUTH_ISSUER=gateway_url,
                LIGHTHOUSE_SERVING_SECRET_FILE=str(run_dir / "caller-secret"),
                LIGHTHOUSE_VISION_THRESHOLD="0", LIGHTHOUSE_VISION_WORKER_CONCURRENCY="32",
                LIGHTHOUSE_DATABASE_POOL_MAX_SIZE="40",
            )  # fmt: skip
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "api.cli", "serve", "--port", str(gateway_port),
                 "--workers", "1"],
                cwd=ROOT, env=served, stdout=(WORK / "serving-gateway.log").open("w"),
                stderr=subprocess.STDOUT,
            ))  # fmt: skip
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "api.cli", "worker", "vision"],
                cwd=ROOT, env=served, stdout=(WORK / "serving-worker.log").open("w"),
                stderr=subprocess.STDOUT,
            ))  # fmt: skip
            deadline = time.monotonic() + 60
            while not _up(gateway_url):
                if time.monotonic() > deadline:
                    sys.exit("the gateway did not start; see bench/.work/serving-gateway.log")
                time.sleep(0.3)
            token = subprocess.run(
                [sys.executable, "-m", "api.cli", "token", "--as", "camera-gateway"],
                cwd=ROOT, env=served, capture_output=True, text=True, check=True,
            ).stdout.strip()  # fmt: skip
            codes = [f"CAM-B{n}" for n in range(len(cameras))]
            log("(c) the gateway's whole path: upload → queue → worker → model → incident")
            runs += asyncio.run(
                gateway_runs(
                    gateway_url, token, owner_url, codes, arguments.concurrency, arguments.frames
                )
            )
        finally:
            for process in processes:
                process.terminate()
                process.wait(30)
            serving_down(run_dir)
        report["runs"] = [asdict(run) | {"frames_per_second": round(run.frames_per_second, 3)}
                          for run in runs]  # fmt: skip
        report["ratios"] = ratios(runs)

    print()
    if runs:
        print(table(runs))
        for entry in report["ratios"]:
            print(f"concurrency {entry['concurrency']}: " + ", ".join(
                f"{name.replace('_over_', '/')} = {value}"
                for name, value in entry.items() if name != "concurrency"
            ))  # fmt: skip
    if "ingest" in report:
        ingest = report["ingest"]
        print(
            f"(d) detections ingested: {ingest['detections_per_second']}/s "
            f"({ingest['detections']} in {ingest['seconds']} s, {ingest['outcomes']}; "
            f"aim 2,000/s)"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"serving-{report['when']}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {out.relative_to(ROOT)}")


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
