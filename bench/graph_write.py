"""The graph's write path: incidents created and transitioned per second at 1, 8 and 32
connections, and audit records appended per second, in one run.

Creates are ``createIncident`` (a pothole for Public Works, found by a sensor, so it waits to be
verified); transitions are ``verifyIncident`` on the incidents the create phase made, each with its current version. Both
run as a Public Works supervisor through the whole gateway (token, policies, row-level security,
the incident's event and notice, the audit record, the commit). Load comes from ``wrk`` (not
Python; a Lua script hands each transition its own incident); what counts is what the database
kept: incidents created, incidents verified and audit records appended during each
measurement, divided by its duration. wrk's own request count is printed beside it, and any
difference (a GraphQL error answered 200) is reported.

    .venv/bin/python bench/graph_write.py                      # 10 s per measurement
    .venv/bin/python bench/graph_write.py --duration 20 --connections 1 8 32

Needs ``wrk`` (Debian package ``wrk``). Results are printed and written to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
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
from graph_read import (  # bench/ is the script's directory, so its sibling imports
    RESULTS,
    ROOT,
    WORK,
    log,
    recreate_database,
    run,
    seed,
    start_database,
    with_user,
)

CREATE = """mutation Create($input: CreateIncidentInput!) {
  createIncident(input: $input) { __typename ... on IncidentCreated { incident { id version } } }
}"""
VERIFY = """mutation Verify($input: IncidentStepInput!) {
  verifyIncident(input: $input) { __typename ... on IncidentUpdated { incident { id version } } }
}"""
BENCH_TITLE = "bench: pothole"


@dataclass
class Measurement:
    operation: str
    connections: int
    kept_per_second: float  # what the database kept
    requests_per_second: float  # what wrk counted
    audit_records_per_second: float
    p50_ms: float
    p99_ms: float


CREATE_BODY = {
    "query": CREATE,
    "variables": {
        "input": {
            "title": BENCH_TITLE,
            "category": "POTHOLE",
            "source": "SENSOR",
            "location": {"wgs84": {"latitude": 22.6273, "longitude": 120.3014}},
        }
    },
}


def lua_create(token: str) -> str:
    return "\n".join(
        [
            'wrk.method = "POST"',
            'wrk.headers["Content-Type"] = "application/json"',
            f'wrk.headers["Authorization"] = "Bearer {token}"',
            f"wrk.body = {json.dumps(json.dumps(CREATE_BODY))}",
        ]
    )


def lua_verify(token: str, ids_file: str) -> str:
    """Each request verifies the next incident of the list (one wrk thread, so one counter)."""
    template = json.dumps(
        {"query": VERIFY, "variables": {"input": {"id": "ID", "expectedVersion": 0}}}
    )
    head, tail = template.split('"ID"')
    version_head, version_tail = tail.split('"expectedVersion": 0')
    return "\n".join(
        [
            'wrk.method = "POST"',
            'wrk.headers["Content-Type"] = "application/json"',
            f'wrk.headers["Authorization"] = "Bearer {token}"',
            "local ids, versions, next = {}, {}, 1",
            f'for line in io.lines("{ids_file}") do',
            '  local id, version = line:match("([^,]+),([^,]+)")',
            "  ids[#ids + 1] = id; versions[#versions + 1] = version",
            "end",
            "request = function()",
            "  local i = next; next = next + 1",
            "  if i > #ids then i = #ids end",
            f"  local body = {json.dumps(head)} .. '\"' .. ids[i] .. '\"' .. "
            f"{json.dumps(version_head)} .. '\"expectedVersion\": ' .. versions[i] .. "
            f"{json.dumps(version_tail)}",
            "  return wrk.format(nil, nil, nil, body)",
            "end",
        ]
    )


async def counts(owner_url: str) -> tuple[int, int, int]:
    """Bench incidents created, those verified, and audit records, as the owner sees them."""
    owner = await asyncpg.connect(owner_url)
    try:
        row = await owner.fetchrow(
            "SELECT (SELECT count(*) FROM lighthouse.incident WHERE title = $1) AS created,"
            " (SELECT count(*) FROM lighthouse.incident WHERE title = $1 AND status = 'VERIFIED')"
            " AS verified, (SELECT last_seq FROM lighthouse.audit_chain_head) AS audited",
            BENCH_TITLE,
        )
    finally:
        await owner.close()
    assert row is not None
    return int(row["created"]), int(row["verified"]), int(row["audited"])


async def waiting(owner_url: str) -> list[tuple[int, int]]:
    """The bench's incidents still to verify: (id, version)."""
    owner = await asyncpg.connect(owner_url)
    try:
        rows = await owner.fetch(
            "SELECT id, version FROM lighthouse.incident WHERE title = $1 AND status = 'DETECTED'"
            " ORDER BY id",
            BENCH_TITLE,
        )
    finally:
        await owner.close()
    return [(row["id"], row["version"]) for row in rows]


def write_ids(owner_url: str, path: Path) -> int:
    """The incidents to verify, as ``global id,version`` lines for the Lua script; how many."""
    rows = asyncio.run(waiting(owner_url))
    lines = []
    for incident_id, version in rows:
        global_id = base64.b64encode(f"Incident:{incident_id}".encode()).decode()
        lines.append(f"{global_id},{version}\n")
    path.write_text("".join(lines))
    return len(rows)


def wrk(script: str, url: str, connections: int, duration: int) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) of one wrk run on one thread."""
    output = run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", script, url]
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    found = dict(
        (p, _ms(v, u))
        for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
    )
    if "Non-2xx" in output:
        log(f"wrk saw non-2xx answers:\n{output}")
    return rps, found["50"], found["99"]


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--workers", type=int, default=2, help="gateway processes")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8, 32])
    arguments = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")

    server_url = start_database()
    asyncio.run(recreate_database(server_url))
    owner_url = server_url.replace("/postgres?", "/lighthouse_bench?")
    app_url = with_user(owner_url, "lighthouse_app")
    seed(owner_url, app_url, 200, 100)
    port = 18180
    env = os.environ | {
        "LIGHTHOUSE_DATABASE_URL": app_url,
        "LIGHTHOUSE_DATABASE_OWNER_URL": owner_url,
        "LIGHTHOUSE_ENVIRONMENT": "test",
        "LIGHTHOUSE_OAUTH_ISSUER": f"http://127.0.0.1:{port}",
    }
    token = run(
        [sys.executable, "-m", "api.cli", "token", "--as", "pwb-supervisor"], cwd=ROOT, env=env
    ).stdout.strip()
    gateway_log = (WORK / "lighthouse-write.log").open("w")
    gateway = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port),
         "--workers", str(arguments.workers)],
        cwd=ROOT,
        env=env | {"LIGHTHOUSE_SERVER_TIMING": "false", "LIGHTHOUSE_LOG_LEVEL": "WARNING"},
        stdout=gateway_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/graphql"
    create_script = WORK / "write-create.lua"
    create_script.write_text(lua_create(token))
    verify_script = WORK / "write-verify.lua"
    ids_file = WORK / "write-ids.csv"
    verify_script.write_text(lua_verify(token, str(ids_file)))
    results: list[Measurement] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = httpx.post(
                    url, json=CREATE_BODY, headers={"authorization": f"Bearer {token}"}, timeout=5
                )
                if answer.status_code == 200 and "IncidentCreated" in answer.text:
                    break
                sys.exit(f"the gateway did not create an incident: {answer.text[:500]}")
            except httpx.HTTPError:
                if time.monotonic() > deadline or gateway.poll() is not None:
                    sys.exit("the gateway did not start; see bench/.work/lighthouse-write.log")
                time.sleep(0.3)
        # Warm up both operations (pools, caches), then measure.
        wrk(str(create_script), url, 4, 2)
        if write_ids(owner_url, ids_file) == 0:
            sys.exit("the warm-up created no incident to verify; see the gateway log")
        wrk(str(verify_script), url, 4, 1)
        for connections in arguments.connections:
            for operation, script in (("create", create_script), ("verify", verify_script)):
                if operation == "verify":
                    to_verify = write_ids(owner_url, ids_file)
                    if to_verify == 0:
                        sys.exit("no incident to verify: did the creates fail? see the gateway log")
                    log(f"{to_verify} incidents to verify")
                log(f"{operation}: {connections} connection(s), {arguments.duration}s")
                before = asyncio.run(counts(owner_url))
                started = time.monotonic()
                rps, p50, p99 = wrk(str(script), url, connections, arguments.duration)
                elapsed = time.monotonic() - started
                after = asyncio.run(counts(owner_url))
                kept = after[0] - before[0] if operation == "create" else after[1] - before[1]
                results.append(
                    Measurement(operation, connections, kept / elapsed, rps,
                                (after[2] - before[2]) / elapsed, p50, p99)
                )  # fmt: skip
    finally:
        os.killpg(gateway.pid, signal.SIGTERM)
        gateway.wait(20)

    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(
        f"\nGraph writes, {machine}, gateway workers {arguments.workers}, wrk on the same machine"
    )
    print(f"{'operation':<10}{'conns':>6}{'kept/s':>10}{'wrk req/s':>11}{'audit/s':>10}"
          f"{'p50 ms':>9}{'p99 ms':>9}")  # fmt: skip
    for m in results:
        print(f"{m.operation:<10}{m.connections:>6}{m.kept_per_second:>10.1f}"
              f"{m.requests_per_second:>11.1f}{m.audit_records_per_second:>10.1f}"
              f"{m.p50_ms:>9.2f}{m.p99_ms:>9.2f}")  # fmt: skip
    for operation in ("create", "verify"):
        sequential = next(
            (m for m in results if m.operation == operation and m.connections == 1), None
        )
        if sequential is None:
            continue
        for m in results:
            if m.operation == operation and m.connections > 1:
                print(f"{operation}: {m.connections} connections / 1 = "
                      f"{m.kept_per_second / sequential.kept_per_second:.2f}")  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"graph_write-{stamp}.json").write_text(
        json.dumps(
            {"machine": machine, "workers": arguments.workers, "duration_s": arguments.duration,
             "results": [asdict(m) for m in results]},
            indent=2,
        )
    )  # fmt: skip


if __name__ == "__main__":
    main()
