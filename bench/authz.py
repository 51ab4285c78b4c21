"""What the security layer adds to each request of the incident board.

The gateway reports, per request, the time it spent authenticating the bearer token (signature
and claims), deciding policies, and writing the audit record, in a ``Server-Timing`` header; it
also reports ``begin``: opening the request's transaction with the statement that sets the
caller's identity for row-level security, which now also checks that the token is not revoked
and its client not disabled. Every request paid for that transaction before the security layer;
it is shown apart, not counted as added. This script sends the board query (50 incidents with bureau, asset,
3 newest events, open work orders) many times, one at a time, as two principals — a bureau
supervisor (row-level security filters to its incidents) and a city-wide viewer — and reports
p50/p99 of each stage and of their sum. It also measures what row-level security adds to the
board's page query, by running it as the application role (with the principal's identity) and
as the schema owner (who bypasses row policies) on the same connection pool.

    .venv/bin/python bench/authz.py                  # 2,000 requests per principal
    .venv/bin/python bench/authz.py --requests 5000

Uses the same data as bench/graph_read.py (bench/.work, 5,000 incidents).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.graph_read import (  # noqa: E402
    DATABASE,
    LIGHTHOUSE_BOARD,
    WORK,
    log,
    recreate_database,
    seed,
    start_database,
    wait_ready,
    with_user,
)

PAGE_SQL = """
SELECT id FROM lighthouse.incident ORDER BY reported_at DESC, id DESC LIMIT 51
"""
STAGES = ("auth", "policy", "audit")
SHOWN = (*STAGES, "added", "begin", "request")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def parse_timing(header: str) -> dict[str, float]:
    stages: dict[str, float] = {}
    for part in header.split(","):
        name, _, duration = part.strip().partition(";dur=")
        if name:
            stages[name] = float(duration)
    return stages


async def measure(url: str, token: str, requests: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {stage: [] for stage in SHOWN}
    body = {"query": LIGHTHOUSE_BOARD}
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        for _ in range(50):  # warm-up: caches, pools
            await http.post("/graphql", json=body, headers=headers)
        for _ in range(requests):
            started = time.perf_counter()
            response = await http.post("/graphql", json=body, headers=headers)
            elapsed = (time.perf_counter() - started) * 1000
            response.raise_for_status()
            assert "errors" not in response.json(), response.text[:300]
            stages = parse_timing(response.headers.get("server-timing", ""))
            for stage in STAGES:
                samples[stage].append(stages.get(stage, 0.0))
            samples["added"].append(sum(stages.get(stage, 0.0) for stage in STAGES))
            samples["begin"].append(stages.get("begin", 0.0))
            samples["request"].append(elapsed)
    return samples


async def rls_cost(owner_url: str, app_url: str, bureau_id: int, runs: int) -> tuple[float, float]:
    """Median milliseconds of the board's page query, as owner (no row policies) and as the
    application role with a bureau's identity."""
    results = []
    for url, identity in ((owner_url, None), (app_url, bureau_id)):
        connection = await asyncpg.connect(url)
        timings = []
        try:
            for _ in range(runs):
                async with connection.transaction():
                    if identity is not None:
                        await connection.execute(
                            "SELECT set_config('lighthouse.bureau_id', $1, true),"
                            " set_config('lighthouse.scopes', 'incidents:read', true),"
                            " set_config('lighthouse.kind', 'staff', true)",
                            str(identity),
                        )
                    started = time.perf_counter()
                    await connection.fetch(PAGE_SQL)
                    timings.append((time.perf_counter() - started) * 1000)
        finally:
            await connection.close()
        results.append(statistics.median(timings[runs // 10 :]))
    return results[0], results[1]


def mint(owner_url: str, app_url: str, issuer: str, principal: str) -> str:
    env = os.environ | {
        "LIGHTHOUSE_DATABASE_URL": app_url,
        "LIGHTHOUSE_DATABASE_OWNER_URL": owner_url,
        "LIGHTHOUSE_OAUTH_ISSUER": issuer,
        "LIGHTHOUSE_ENVIRONMENT": "test",
    }
    result = subprocess.run(
        [sys.executable, "-m", "api.cli", "token", "--as", principal],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return result.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--incidents", type=int, default=5000)
    arguments = parser.parse_args()

    server_url = start_database()
    asyncio.run(recreate_database(server_url))
    owner_url = server_url.replace("/postgres?", f"/{DATABASE}?")
    app_url = with_user(owner_url, "lighthouse_app")
    seed(owner_url, app_url, arguments.incidents, 600)

    port = 18090
    issuer = f"http://127.0.0.1:{port}"
    gateway = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--workers", "1"],
        cwd=ROOT,
        env=os.environ
        | {
            "LIGHTHOUSE_DATABASE_URL": app_url,
            "LIGHTHOUSE_DATABASE_OWNER_URL": owner_url,
            "LIGHTHOUSE_ENVIRONMENT": "test",
            "LIGHTHOUSE_OAUTH_ISSUER": issuer,
            "LIGHTHOUSE_SERVER_TIMING": "true",
            "LIGHTHOUSE_LOG_LEVEL": "WARNING",
        },
        stdout=(WORK / "authz-gateway.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    report: dict[str, dict[str, list[float]]] = {}
    try:
        tokens = {
            name: mint(owner_url, app_url, issuer, name)
            for name in ("pwb-supervisor", "city-viewer")
        }
        wait_ready(f"{issuer}/graphql", {"query": "{ bureaus { code } }"}, gateway, "authz-gateway")
        for name, token in tokens.items():
            log(f"{arguments.requests} board requests as {name}")
            report[name] = asyncio.run(measure(issuer, token, arguments.requests))
        owner_ms, rls_ms = asyncio.run(rls_cost(owner_url, app_url, 1, 500))
    finally:
        os.killpg(gateway.pid, signal.SIGTERM)
        gateway.wait(20)

    print(
        f"\nSecurity layer per board request ({arguments.incidents} incidents; "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}), ms"
    )
    print(f"{'principal':<16}{'stage':<10}{'p50':>9}{'p99':>9}")
    for name, samples in report.items():
        for stage in SHOWN:
            values = samples[stage]
            print(
                f"{name:<16}{stage:<10}{percentile(values, 0.5):>9.3f}{percentile(values, 0.99):>9.3f}"
            )
    print(
        f"\nboard page query, median: {owner_ms:.3f} ms as owner (no row policies), "
        f"{rls_ms:.3f} ms as a bureau under row-level security"
    )


if __name__ == "__main__":
    main()
