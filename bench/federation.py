"""Cross-domain queries through Hive Gateway in front of the subgraphs, against the unified
gateway, in one run.

Every domain runs as its own subgraph (``lighthouse subgraph NAME --workers 2``: two replicas
each), composed by ``lighthouse supergraph``, behind Hive Gateway; the unified gateway
(``lighthouse serve --workers 2``) serves the same graph in one process group. Both read the same
embedded PostgreSQL seeded by ``lighthouse seed``, with a city-wide viewer's token (so
authentication, policies, row-level security and audit records are in every subgraph's part).
Three queries cross domains; ``wrk`` loads each at 1 and 16 connections and the ratios compare
figures from this one run.

    .venv/bin/python bench/federation.py                 # 2,000 incidents, 10 s per measurement
    .venv/bin/python bench/federation.py --duration 20 --connections 1 32

Needs ``wrk`` (Debian package) and the federation tools (``npm ci --prefix federation``).
Results are printed and written to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.graph.domains import DOMAINS  # noqa: E402
from bench.graph_read import (  # noqa: E402
    DATABASE,
    RESULTS,
    WORK,
    Measurement,
    log,
    recreate_database,
    run,
    seed,
    start_database,
    with_user,
    wrk,
)

TOOLS = ROOT / "federation"
QUERIES = {
    # incident → asset → owning bureau, incident → category → responsible bureau: incidents,
    # assets and bureaus subgraphs.
    "board": """
      query Board { incidents(first: 20) { edges { node {
        id title status responsibleBureau { code nameZh }
        asset { code kind bureau { code nameEn } }
        category { nameEn responsibleBureau { code } } } } } }
    """,
    # asset → owning bureau: assets and bureaus subgraphs.
    "register": """
      query Register { assets(first: 50) { edges { node { code kind bureau { code nameZh } } } } }
    """,
    # work order → bureau, beside a bureaus root: incidents and bureaus subgraphs.
    "dispatch": """
      query Dispatch { bureaus { code nameEn }
        incidents(first: 20, orderBy: DUE_SOONEST) { edges { node { caseNumber dueAt
          workOrders { crew status bureau { code nameEn } } } } } }
    """,
}


def start(
    command: list[str], env: dict[str, str], name: str, cwd: Path = ROOT
) -> subprocess.Popen[bytes]:
    log_file = (WORK / f"{name}.log").open("w")
    return subprocess.Popen(
        command, cwd=cwd, env=env, stdout=log_file, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def wait_answer(
    url: str, query: str, token: str, process: subprocess.Popen[bytes], name: str
) -> dict[str, object]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{name} exited at start-up; see bench/.work/{name}.log")
        try:
            answer = httpx.post(
                url, json={"query": query}, headers={"Authorization": f"Bearer {token}"}, timeout=10
            )
            if answer.status_code == 200:
                body: dict[str, object] = answer.json()
                if "errors" in body:
                    sys.exit(f"{name} answered with errors: {answer.text[:500]}")
                return body
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    sys.exit(f"{name} did not become ready; see bench/.work/{name}.log")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--incidents", type=int, default=2000)
    parser.add_argument("--assets", type=int, default=400)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--replicas", type=int, default=2, help="processes per subgraph")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 16])
    arguments = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    node = shutil.which("node")
    if node is None or not (TOOLS / "node_modules" / "@graphql-hive" / "gateway").is_dir():
        sys.exit("the federation tools are missing: npm ci --prefix federation")

    server_url = start_database()
    asyncio.run(recreate_database(server_url))
    owner_url = server_url.replace("/postgres?", f"/{DATABASE}?")
    app_url = with_user(owner_url, "lighthouse_app")
    seed(owner_url, app_url, arguments.incidents, arguments.assets)

    unified_port, router_port, first_subgraph = 18180, 18190, 18201
    issuer = f"http://127.0.0.1:{unified_port}"
    env = os.environ | {
        "LIGHTHOUSE_DATABASE_URL": app_url,
        "LIGHTHOUSE_DATABASE_OWNER_URL": owner_url,
        "LIGHTHOUSE_OAUTH_ISSUER": issuer,
        "LIGHTHOUSE_ENVIRONMENT": "test",
        "LIGHTHOUSE_SERVER_TIMING": "false",
        "LIGHTHOUSE_LOG_LEVEL": "WARNING",
        "LIGHTHOUSE_DATABASE_POOL_MAX_SIZE": "8",
    }
    token = run(
        [sys.executable, "-m", "api.cli", "token", "--as", "city-viewer"], cwd=ROOT, env=env
    ).stdout.strip()
    python = [sys.executable, "-m", "api.cli"]
    processes: list[subprocess.Popen[bytes]] = []
    results: list[Measurement] = []
    try:
        unified = start(
            [*python, "serve", "--port", str(unified_port), "--workers", str(arguments.replicas)],
            env, "unified",
        )  # fmt: skip
        processes.append(unified)
        urls: dict[str, str] = {}
        subgraphs: dict[str, subprocess.Popen[bytes]] = {}
        for index, name in enumerate(DOMAINS):
            port = first_subgraph + index
            urls[name] = f"http://127.0.0.1:{port}/graphql"
            subgraphs[name] = start(
                [*python, "subgraph", name, "--port", str(port),
                 "--workers", str(arguments.replicas)],
                env, f"subgraph-{name}",
            )  # fmt: skip
            processes.append(subgraphs[name])
        for name, process in subgraphs.items():
            wait_answer(urls[name], "query Me { me { subject } }", token, process, name)
        log(
            f"{len(DOMAINS)} subgraphs, {arguments.replicas} replicas each, and the unified gateway"
        )
        supergraph = WORK / "supergraph.graphql"
        run(
            [*python, "supergraph", *(f"--url={n}={u}" for n, u in urls.items()),
             "--output", str(supergraph)],
            cwd=ROOT, env=env,
        )  # fmt: skip
        router = start(
            [node, str(TOOLS / "node_modules" / "@graphql-hive" / "gateway" / "dist" / "bin.js"),
             "supergraph", str(supergraph), "--port", str(router_port), "--host", "127.0.0.1"],
            os.environ | {"NODE_ENV": "production", "HIVE_LOGGING": "error"}, "hive-gateway", TOOLS,
        )  # fmt: skip
        processes.append(router)
        targets = {
            "unified": (f"http://127.0.0.1:{unified_port}/graphql", unified),
            "hive-gateway": (f"http://127.0.0.1:{router_port}/graphql", router),
        }
        for query_name, query in QUERIES.items():
            answers = {
                name: wait_answer(url, query, token, process, name)
                for name, (url, process) in targets.items()
            }
            if answers["unified"] != answers["hive-gateway"]:
                sys.exit(f"{query_name}: the router's answer differs from the unified gateway's")
        log("the router answers every query as the unified gateway does")
        for connections in arguments.connections:
            for query_name, query in QUERIES.items():
                for name, (url, _) in targets.items():
                    label = f"{query_name}/{name}"
                    log(f"{label}: {connections} connection(s), {arguments.duration}s")
                    measured = wrk(url, {"query": query}, connections, arguments.duration,
                                   f"federation-{query_name}-{name}", token)  # fmt: skip
                    measured.server = label
                    results.append(measured)
    finally:
        for process in processes:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass

    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(
        f"\nCross-domain queries, {arguments.incidents} incidents, {machine}; "
        f"{len(DOMAINS)} subgraphs x {arguments.replicas} replicas behind Hive Gateway vs the "
        f"unified gateway with {arguments.replicas} workers"
    )
    print(f"{'query/server':<24}{'conns':>6}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for m in results:
        print(
            f"{m.server:<24}{m.connections:>6}{m.requests_per_second:>10.1f}"
            f"{m.p50_ms:>10.2f}{m.p99_ms:>10.2f}{m.errors:>8}"
        )
    for connections in arguments.connections:
        for query_name in QUERIES:
            routed = next(
                m for m in results
                if m.server == f"{query_name}/hive-gateway" and m.connections == connections
            )  # fmt: skip
            direct = next(
                m for m in results
                if m.server == f"{query_name}/unified" and m.connections == connections
            )  # fmt: skip
            print(
                f"at {connections} connection(s), {query_name}: router / unified throughput "
                f"{routed.requests_per_second / direct.requests_per_second:.2f}, "
                f"p50 {routed.p50_ms / direct.p50_ms:.2f}, p99 {routed.p99_ms / direct.p99_ms:.2f}"
            )
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"federation-{stamp}.json").write_text(
        json.dumps(
            {
                "machine": machine,
                "arguments": vars(arguments),
                "results": [asdict(m) for m in results],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
