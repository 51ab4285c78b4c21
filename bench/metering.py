"""Metered inference against calling the serving tier directly, and quota admissions per second.

  (a) the Ray Serve LLM endpoint, called directly with the OpenAI SDK;
  (b) the gateway's ``/v1/chat/completions`` with a licensee's token: admission (licence chosen,
      checked, largest cost reserved, audited) in a short transaction shared with the calls
      admitted at the same moment, the same call forwarded, then the settlement (usage charged,
      usage record, audit) likewise;
  at the same concurrency (32 by default) and the same request (a short prompt, ``max_tokens``
  16, temperature 0), in alternating rounds so both see the same machine; throughput and
  p50/p99 per path, and (b)/(a).
  (c) admissions per second without the model: 5,000 calls, 256 waiting at once (calls last
      seconds, so many are under way), admitted through two admission desks (two gateway
      processes' worth of pools and desks, in this one process) exactly as /v1 admits them,
      then settled through the settlement desks; and, for comparison, the same number of bare
      ledger reservations made one transaction each (no token check, licence read or audit).

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
import orjson

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
    """``count`` calls admitted through two admission desks (two gateway processes' worth: each
    its own pool, gate and desks) as ``/v1/chat/completions`` admits them: the token's status
    checked, the licences read, Cedar's decision, the reservation and the audit record; then
    each settled through the settlement desks as the metered path settles it (the use charged,
    the usage record and the audit record). For comparison, ``count`` reservations made
    one transaction each (the ledger alone, no token check, licence read or audit)."""
    from api.access.scope import AccessGate
    from api.auth.authenticate import Authenticator
    from api.auth.issuers import IssuerRegistry
    from api.auth.keys import KeyRing
    from api.auth.principal import Principal, PrincipalKind
    from api.auth.tokens import TokenVerifier
    from api.db.database import Database
    from api.db.pool import create_pool
    from api.db.unit_of_work import UnitOfWork
    from api.domain.licensing import Cost
    from api.policy.engine import PolicyEngine
    from api.repositories.licensing import QuotaLedger
    from api.repositories.oauth import OAuthRepository
    from api.repositories.system import SystemRepository
    from api.services.metering import chat
    from api.services.metering.admissions import AdmissionDesk
    from api.services.metering.meter import Ending, Meter
    from api.services.metering.settlements import SettlementDesk
    from api.settings import DatabaseSettings, Settings
    from api.timing import Timings

    size = min(16, max(2, concurrency // 2))  # a gateway process's pool
    settings = Settings(database=DatabaseSettings(url=app_url, pool_min_size=size,
                                                  pool_max_size=size))  # fmt: skip
    zone = settings.city.timezone
    pools = [await create_pool(app_url, settings) for _ in range(2)]
    bureaus = await SystemRepository(pools[0]).bureaus()
    policy = PolicyEngine(settings.policy.dir, [(b.code, b.joint_service_centre) for b in bureaus])
    keys = KeyRing(settings)
    issuers = IssuerRegistry([], 300)
    verifier = TokenVerifier(settings, keys, issuers, {b.code: b.id for b in bureaus})
    meter = Meter(settings.metering, zone)
    desks, settling = [], []
    for pool in pools:
        oauth = OAuthRepository(pool)
        authenticator = Authenticator(verifier, oauth, settings.issuer, keys, 30)
        gate = AccessGate(Database(pool, lambda _name, _count: None), policy, authenticator)
        desks.append(AdmissionDesk(gate, meter, group_size=64, max_waiting=100_000))
        settling.append(SettlementDesk(gate, meter, group_size=64))
    request = chat.parse(orjson.dumps({"model": MODEL, "messages": MESSAGES, "max_tokens": 16}))
    callers = [
        Principal(
            "bench-app", PrincipalKind.LICENSEE, scopes=frozenset({"inference:invoke"}),
            client_id="bench-app", licensee_id=licensee_id, token_id=str(uuid.uuid4()),
            issuer=settings.issuer, expires_at=int(time.time()) + 3600,
        )
        for n in range(count)
    ]  # fmt: skip
    # (One client, as a licensee's application is, with a token per call: each token's status
    # is checked, and Cedar's decisions for the client are the engine's to remember.)
    gate_of = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    refused = 0
    admitted: list[tuple[int, Any]] = []

    async def admit(n: int) -> None:
        nonlocal refused
        async with gate_of:
            started = time.perf_counter()
            try:
                admission = await desks[n % 2].admit(callers[n], f"bench-{n}", request, Timings())
            except Exception:  # a refusal: counted, the bench goes on
                refused += 1
                return
            latencies.append(time.perf_counter() - started)
            admitted.append((n, admission))

    async def settle(n: int, admission: Any) -> None:
        async with gate_of:
            ending = Ending(admission, Cost(60, 16), "OK", streamed=False)
            await settling[n % 2].finish(callers[n], f"bench-{n}", Timings(), ending)

    began = time.perf_counter()
    await asyncio.gather(*(admit(n) for n in range(count)))
    admit_seconds = time.perf_counter() - began
    began = time.perf_counter()
    await asyncio.gather(*(settle(n, admission) for n, admission in admitted))
    settle_seconds = time.perf_counter() - began

    # The ledger alone, one reservation per transaction (as before group admission).
    identity = callers[0].database_settings()
    lease = timedelta(minutes=5)
    single: list[uuid.UUID] = []

    async def reserve_one(n: int) -> None:
        async with gate_of, UnitOfWork(pools[n % 2], identity) as uow:
            request_id = uuid.uuid4()
            ledger = QuotaLedger(uow, zone)
            if await ledger.reserve(request_id, licence_id, Cost(80, 16), lease) is None:
                single.append(request_id)

    began = time.perf_counter()
    await asyncio.gather(*(reserve_one(n) for n in range(count)))
    single_seconds = time.perf_counter() - began
    async with UnitOfWork(pools[0], identity) as uow:
        for request_id in single:
            await QuotaLedger(uow, zone).release(request_id)
    for pool in pools:
        await pool.close()
    return {
        "admissions": count,
        "refused": refused,
        "concurrency": concurrency,
        "admissions_per_second": round(count / admit_seconds),
        "admission_p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "admission_p99_ms": round(percentile(latencies, 99) * 1000, 2),
        "settlements_per_second": round(len(admitted) / settle_seconds),
        "single_reservations_per_second": round(count / single_seconds),
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
    parser.add_argument(
        "--admission-concurrency", type=int, default=256,
        help="calls waiting for admission at once in (c): calls last seconds, so many are",
    )  # fmt: skip
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
        secret_file = run_dir / "caller-secret"
        env = env_for(app_url, owner_url, LIGHTHOUSE_SERVING_URL=base_url,
                      LIGHTHOUSE_SERVING_SECRET_FILE=str(secret_file),
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
                # Direct: as one of the tier's own callers (its secret is the API key).
                direct_key = secret_file.read_text().split()[0]
                for name, url, key in (("direct", f"{base_url}/v1", direct_key),
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
        log(f"(c) {arguments.admissions} admissions, {arguments.admission_concurrency} at once")
        report["ledger"] = asyncio.run(
            admissions(
                app_url,
                licence_id,
                owner_licensee,
                arguments.admissions,
                arguments.admission_concurrency,
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
