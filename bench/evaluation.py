"""An evaluation run's throughput against the serving tier alone, in one run of this script.

On an embedded PostgreSQL (bench/.work) migrated to the newest revision, with the real serving
tier (Ray Serve LLM + vLLM on CPU, the tiny model) started on a free port, this registers an
evaluation set of ``--frames`` images, then alternates, ``--rounds`` times:

- **tier alone**: the same chat completions an evaluation sends (the workers' prompt, the image,
  structured outputs, log-probabilities), posted straight to the tier by the gateway's own client
  at ``--concurrency``, nothing recorded;
- **evaluation**: ``EvaluationRunner`` over the set (a new run each round: another version
  label), reading each frame from the frame store, asking the tier at the same concurrency, and
  recording every answer in batches.

Frames per second of each, and their ratio (the aim: an evaluation at 0.9 of the tier or more).

    .venv/bin/python bench/evaluation.py [--frames 200] [--concurrency 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.graph_read import log, start_database, with_user  # noqa: E402
from bench.serving import (  # noqa: E402
    WORK,
    add_cameras,
    env_for,
    png,
    recreate,
    serving_down,
    serving_up,
    with_database,
)

DATABASE = "lighthouse_evaluation_bench"
MODEL = "lighthouse-tiny-vlm"


async def measure(
    app_url: str, owner_url: str, base_url: str, frames: int, concurrency: int, rounds: int
) -> dict[str, Any]:
    from api.access.scope import AccessGate, OperationDescription
    from api.auth.principal import Principal, PrincipalKind
    from api.db.database import Database
    from api.db.pool import create_pool
    from api.inference.client import ServingClient
    from api.metrics import Metrics
    from api.policy.engine import PolicyEngine
    from api.repositories.system import SystemRepository
    from api.services.vision.analysis import VisionModel
    from api.services.vision.evaluation import EvaluationRunner, EvaluationSets, ManifestLine
    from api.services.vision.pipeline import register
    from api.settings import DatabaseSettings, Settings, VisionSettings
    from api.vision.store import FrameStore

    store_dir = Path(tempfile.mkdtemp(prefix="frames-", dir=WORK))
    settings = Settings(
        database=DatabaseSettings(url=app_url, pool_max_size=concurrency + 4),
        vision=VisionSettings(frames_dir=store_dir),
    )
    pool = await create_pool(app_url, settings)
    owner = await asyncpg.connect(owner_url)
    client = ServingClient(base_url, secret_file=WORK / "serving-tier" / "caller-secret",
                           timeout_seconds=600, retries=0)  # fmt: skip
    try:
        bureaus = await SystemRepository(pool).bureaus()
        police = next(b for b in bureaus if b.code == "POLICE")
        policy = PolicyEngine(
            settings.policy.dir, [(b.code, b.joint_service_centre) for b in bureaus]
        )
        gate = AccessGate(Database(pool, Metrics().record_statements), policy)
        officer = Principal(
            subject="bench", kind=PrincipalKind.STAFF, bureau_id=police.id,
            bureau_code=police.code,
            scopes=frozenset({"incidents:read", "incidents:write", "models:admin"}),
        )  # fmt: skip
        camera = await owner.fetchval("SELECT code FROM lighthouse.asset WHERE kind = 'CAMERA'"
                                      " AND bureau_id = $1 LIMIT 1", police.id)  # fmt: skip
        images = WORK / "evaluation-images"
        images.mkdir(parents=True, exist_ok=True)
        lines = []
        for n in range(frames):
            path = images / f"{n}.png"
            path.write_bytes(png(n))
            lines.append(ManifestLine(n + 1, path, camera, datetime.now(UTC), ("POTHOLE",)))
        described = OperationDescription(category="bench", name="bench", kind="cli")
        async with gate.transaction(officer, "bench", lambda: described) as access:
            await EvaluationSets(access, FrameStore(store_dir), settings.vision).from_manifest(
                "bench", "", lines
            )
            prompt = await register(access)
        stored = [
            (bytes(row["sha256"]), row["media_type"])
            for row in await owner.fetch("SELECT sha256, media_type FROM lighthouse.frame")
        ]
        store = FrameStore(store_dir)

        async def tier_alone() -> float:
            model = VisionModel(client, MODEL, "alone", 300)
            bodies = [model.request(prompt, store.get(sha, media), media) for sha, media in stored]
            queue = iter(bodies)

            async def asker() -> None:
                for body in queue:
                    await client.chat(body)

            began = time.perf_counter()
            await asyncio.gather(*(asker() for _ in range(concurrency)))
            return len(bodies) / (time.perf_counter() - began)

        async def evaluation(label: str) -> float:
            model = VisionModel(client, MODEL, label, 300)
            runner = EvaluationRunner(gate, officer, store, model, concurrency=concurrency)
            began = time.perf_counter()
            await runner.run("bench", None, lambda done, of: None)
            return frames / (time.perf_counter() - began)

        log("warming up (one round of each, not counted)")
        await tier_alone()
        await evaluation("warm-up")
        alone, evaluated = [], []
        for number in range(rounds):
            first_alone = number % 2 == 0
            for path in ("alone", "evaluation") if first_alone else ("evaluation", "alone"):
                if path == "alone":
                    alone.append(await tier_alone())
                else:
                    evaluated.append(await evaluation(f"round-{number}"))
            log(f"round {number + 1}: tier alone {alone[-1]:.1f} frames/s, "
                f"evaluation {evaluated[-1]:.1f} frames/s")  # fmt: skip
        return {
            "frames": frames,
            "concurrency": concurrency,
            "tier_alone_fps": alone,
            "evaluation_fps": evaluated,
            "ratio_median": statistics.median(e / a for e, a in zip(evaluated, alone, strict=True)),
        }
    finally:
        await client.close()
        await owner.close()
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()

    server = start_database()
    asyncio.run(recreate(server, DATABASE))
    owner_url = with_database(server, DATABASE)
    app_url = with_user(owner_url, "lighthouse_app")
    migrated = subprocess.run([sys.executable, "-m", "api.cli", "migrate"], cwd=ROOT,
                              env=env_for(app_url, owner_url), capture_output=True, text=True,
                              check=False)  # fmt: skip
    if migrated.returncode != 0:
        sys.exit(f"migrating failed:\n{migrated.stderr[-3000:]}")
    asyncio.run(add_cameras(owner_url, 4))
    from tests.support import free_port

    run_dir = WORK / "serving-tier"
    base_url = serving_up(free_port(), run_dir)
    try:
        figures = asyncio.run(
            measure(app_url, owner_url, base_url, arguments.frames, arguments.concurrency,
                    arguments.rounds)
        )  # fmt: skip
    finally:
        serving_down(run_dir)
    report = {
        "bench": "evaluation",
        "when": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        **figures,
    }  # fmt: skip
    out = ROOT / "bench" / "results" / f"evaluation-{report['when']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"evaluation / tier alone, median of {arguments.rounds}: {figures['ratio_median']:.2f}"
          f" ({figures['frames']} frames at concurrency {figures['concurrency']}); {out}")  # fmt: skip


if __name__ == "__main__":
    main()
