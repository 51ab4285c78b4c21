"""Metered inference against calling the serving tier directly, and quota admissions per second.

  (a) the Ray Serve LLM endpoint, called directly with the OpenAI SDK;
  (b) the gateway's ``/v1/chat/completions`` with a licensee's token: admission (licence chosen,
      checked, largest cost reserved, audited) in a short transaction, the same call forwarded,
      then the settlement (usage charged, usage record, audit) in another;
  at the same concurrency (32 by default) and the same request (a short prompt, ``max_tokens``
  16, temperature 0), in alternating rounds so both see the same machine; throughput and
  p50/p99 per path, and (b)/(a).
  (c) admissions per second: ``QuotaLedger.reserve`` through two pools (two gateway processes'
      worth of connections) for one licence, each its own transaction as the metered path runs
      it, then settled; the model is not involved.

    .venv/bin/python bench/metering.py                   # everything (about 3 minutes)
    .venv/bin/python bench/metering.py --only ledger     # (c) alone, no serving tier

Needs the serving environment (`make serving-env`) for (a)/(b). Uses bench/.work's embedded
PostgreSQL (database lighthouse_metering_bench, recreated). Writes bench/results/metering-*.json.
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
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.db.endpoints import with_database  # noqa: E402
from bench.graph_read import log, start_database, with_user  # noqa: E402
from bench.serving import _up, env_for, recreate  # noqa: E402

RESULTS = ROOT / "bench" / "results"
WORK = ROOT / "bench" / ".work"
DATABASE = "lighthouse_metering_bench"
MODEL = "lighthouse-tiny-vlm"
MESSAGES = [{"role": "user", "content": "How many parking bays are free in this street?"}]


def percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def licensee(app_url: str, owner_url: str) -> tuple[int, str, str]:
    """A licensee with a licence large enough for the bench, and its client: (licence, id,
    secret)."""
    from api.auth.clients import ClientRegistration, ClientRegistry
    from api.auth.principal import PrincipalKind
    from api.domain.licensing import LicenceTerms, QuotaPeriod
    from api.repositories.licensing import Contact
    from api.repositories.oauth import OAuthRepository
    from tests.metering.support import as_admin
    from tests.support import DatabaseUnderTest

    database = DatabaseUnderTest(DATABASE, owner_url, app_url)
    now = datetime.now(UTC)

    async def create(repository: Any) -> Any:
        holder = await repository.create_licensee(
            "bench-co", "Bench Co.", "12345678", [Contact("Bench", "bench@example.com")], "bench"
        )
        return await repository.create_licence(
            LicenceTerms(
                holder.id, "LIC-BENCH", [MODEL], "benchmarking", "benchmarking",
                now - timedelta(days=1), now + timedelta(days=30), QuotaPeriod.MONTH,
                10**9, 10**12, 10**12, 10**9, 10**9, 2 * 10**9, 10_000, 64, 1, 1 << 20,
            ),
            "bench",
        )  # fmt: skip

    licence = await as_admin(database, create)
    owner = await asyncpg.connect(owner_url, server_settings={"search_path": "lighthouse"})
    try:
        client = await ClientRegistry(OAuthRepository(owner)).register(
            ClientRegistration(
                "bench-app", "bench", PrincipalKind.LICENSEE, ["inference:invoke"],
                licensee_id=licence.licensee_id,
            )
        )  # fmt: skip
    finally:
        await owner.close()
    return licence.id, client.client_id, client.secret


# --- (a)/(b) ------------------------------------------------------------------------------------


async def calls(base_url: str, api_key: str, requests: int, concurrency: int) -> dict[str, Any]:
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0)
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    failures = 0

    async def one() -> None:
        nonlocal failures
        async with gate:
            started = time.perf_counter()
            try:
                await client.chat.completions.create(
                    model=MODEL,
                    messages=MESSAGES,
                    max_tokens=16,
                    temperature=0,  # type: ignore[arg-type]
                )
            except openai.APIError:
                failures += 1
                return
            latencies.append(time.perf_counter() - started)

    await one()  # warm-up, not measured
    latencies.clear()
    began = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(requests)))
    seconds = time.perf_counter() - began
    await client.close()
    return {
        "requests": len(latencies),
        "failures": failures,
        "per_second": round(len(latencies) / seconds, 2),
        "p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "p99_ms": round(percentile(latencies, 99) * 1000, 1),
    }


# --- (c) ------------------------------------------------------------------------------------------


async def admissions(
    app_url: str, licence_id: int, licensee_id: int, count: int, concurrency: int
) -> dict[str, Any]:
    from api.auth.principal import Principal, PrincipalKind
    from api.db.pool import create_pool
    from api.db.unit_of_work import UnitOfWork
    from api.domain.licensing import Cost
    from api.repositories.licensing import QuotaLedger
    from api.settings import DatabaseSettings, Settings

    settings = Settings(database=DatabaseSettings(url=app_url, pool_min_size=concurrency // 2,
                                                  pool_max_size=concurrency // 2))  # fmt: skip
    pools = [await create_pool(app_url, settings) for _ in range(2)]
    principal = Principal(
        "bench-app", PrincipalKind.LICENSEE, scopes=frozenset({"inference:invoke"}),
        licensee_id=licensee_id,
    )  # fmt: skip
    identity = principal.database_settings()
    cost = Cost(input_tokens=80, output_tokens=16)
    lease = timedelta(minutes=5)
    requests = [uuid.uuid4() for _ in range(count)]
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    refused = 0

    async def reserve(n: int, request: uuid.UUID) -> None:
        nonlocal refused
        async with gate:
            started = time.perf_counter()
            async with UnitOfWork(pools[n % 2], identity) as uow:
                if await QuotaLedger(uow, "Asia/Taipei").reserve(request, licence_id, cost, lease):
                    refused += 1
            latencies.append(time.perf_counter() - started)

    async def settle(n: int, request: uuid.UUID) -> None:
        async with gate, UnitOfWork(pools[n % 2], identity) as uow:
            await QuotaLedger(uow, "Asia/Taipei").settle(request, Cost(60, 16))

    began = time.perf_counter()
    await asyncio.gather(*(reserve(n, r) for n, r in enumerate(requests)))
    reserve_seconds = time.perf_counter() - began
    began = time.perf_counter()
    await asyncio.gather(*(settle(n, r) for n, r in enumerate(requests)))
    settle_seconds = time.perf_counter() - began
    for pool in pools:
        await pool.close()
    return {
        "admissions": count,
        "refused": refused,
        "concurrency": concurrency,
        "admissions_per_second": round(count / reserve_seconds),
        "settlements_per_second": round(count / settle_seconds),
        "reserve_p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "reserve_p99_ms": round(percentile(latencies, 99) * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=["ledger", "calls"])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--requests", type=int, default=256, help="per round in (a)/(b)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of (a) and (b)")
    parser.add_argument("--admissions", type=int, default=5000)
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
    licence_id, client_id, secret = asyncio.run(licensee(app_url, owner_url))
    report: dict[str, Any] = {
        "bench": "metering",
        "when": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
    }  # fmt: skip

    if arguments.only != "ledger":
        from bench.serving import serving_down, serving_up
        from tests.support import free_port

        run_dir = WORK / "metering-tier"
        base_url = serving_up(free_port(), run_dir)
        gateway_port = free_port()
        gateway_url = f"http://127.0.0.1:{gateway_port}"
        env = env_for(app_url, owner_url, LIGHTHOUSE_SERVING_URL=base_url,
                      LIGHTHOUSE_OAUTH_ISSUER=gateway_url, LIGHTHOUSE_DATABASE_POOL_MAX_SIZE="40")  # fmt: skip
        gateway = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--port", str(gateway_port), "--workers", "1"],
            cwd=ROOT, env=env, stdout=(WORK / "metering-gateway.log").open("w"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while not _up(gateway_url):
                if time.monotonic() > deadline:
                    sys.exit("the gateway did not start; see bench/.work/metering-gateway.log")
                time.sleep(0.3)
            token = httpx.post(
                f"{gateway_url}/oauth/token",
                data={"grant_type": "client_credentials", "scope": "inference:invoke"},
                auth=(client_id, secret),
            ).json()["access_token"]
            rounds: dict[str, list[dict[str, Any]]] = {"direct": [], "metered": []}
            for number in range(arguments.rounds):
                for name, url, key in (("direct", f"{base_url}/v1", "none"),
                                       ("metered", f"{gateway_url}/v1", token)):  # fmt: skip
                    result = asyncio.run(calls(url, key, arguments.requests, arguments.concurrency))
                    log(f"  round {number + 1} {name}: {result}")
                    rounds[name].append(result)
        finally:
            gateway.terminate()
            gateway.wait(30)
            serving_down(run_dir)
        summary = {}
        for name, results in rounds.items():
            summary[name] = {
                "per_second": round(statistics.median(r["per_second"] for r in results), 2),
                "p50_ms": round(statistics.median(r["p50_ms"] for r in results), 1),
                "p99_ms": round(statistics.median(r["p99_ms"] for r in results), 1),
                "failures": sum(r["failures"] for r in results),
            }
        summary["throughput_ratio"] = round(
            summary["metered"]["per_second"] / summary["direct"]["per_second"], 3
        )
        summary["added_p50_ms"] = round(
            summary["metered"]["p50_ms"] - summary["direct"]["p50_ms"], 1
        )
        report["calls"] = {"concurrency": arguments.concurrency, "rounds": rounds, **summary}

    if arguments.only != "calls":
        from api.repositories.licensing import LicensingRepository  # noqa: F401  (imports the ledger)

        owner_licensee = asyncio.run(_licensee_of(owner_url, licence_id))
        log(f"(c) {arguments.admissions} admissions at concurrency {arguments.concurrency}")
        report["ledger"] = asyncio.run(
            admissions(
                app_url, licence_id, owner_licensee, arguments.admissions, arguments.concurrency
            )
        )

    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"metering-{report['when']}.json"
    path.write_text(json.dumps(report, indent=2))
    if "calls" in report:
        calls_ = report["calls"]
        print(f"\nconcurrency {calls_['concurrency']}, {arguments.requests} requests × "
              f"{arguments.rounds} rounds each (medians):")  # fmt: skip
        for name in ("direct", "metered"):
            c = calls_[name]
            print(f"  {name:<8} {c['per_second']:>8.2f} req/s  p50 {c['p50_ms']:>7.1f} ms"
                  f"  p99 {c['p99_ms']:>7.1f} ms  failures {c['failures']}")  # fmt: skip
        print(f"  metered/direct throughput {calls_['throughput_ratio']}, "
              f"p50 added {calls_['added_p50_ms']} ms")  # fmt: skip
    if "ledger" in report:
        print(f"(c) {report['ledger']}")
    print(f"written to {path.relative_to(ROOT)}")


async def _licensee_of(owner_url: str, licence_id: int) -> int:
    connection = await asyncpg.connect(owner_url)
    try:
        return int(await connection.fetchval(
            "SELECT licensee_id FROM lighthouse.licence WHERE id = $1", licence_id
        ))  # fmt: skip
    finally:
        await connection.close()


if __name__ == "__main__":
    main()
