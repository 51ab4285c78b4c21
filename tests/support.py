"""Helpers shared by the tests: a GraphQL client over real HTTP, and database handles."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx

if TYPE_CHECKING:
    from api.settings import Settings

REPOSITORY = Path(__file__).resolve().parent.parent


def wait_for_tool(name: str, timeout: float = 900) -> None:
    """Wait for the test tool ``name`` (``oidc``, ``federation``, ``clients``, ``chromium``) when
    scripts/run-tests installs it beside the tests (it names the directory of its signs in
    ``LIGHTHOUSE_TEST_TOOLS``: ``NAME.ok`` once installed, ``NAME.failed`` with the installer's
    output if not). Run any other way, the tools are there already (or their own check says
    how to install them)."""
    signs = os.environ.get("LIGHTHOUSE_TEST_TOOLS")
    if not signs:
        return
    deadline = time.monotonic() + timeout
    while not (Path(signs) / f"{name}.ok").exists():
        failed = Path(signs) / f"{name}.failed"
        if failed.exists():
            raise RuntimeError(
                f"the test tool {name} could not be installed:\n{failed.read_text()}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(f"the test tool {name} was not installed within {timeout:.0f} s")
        time.sleep(0.5)


def stalled_start_report(pid: int, threads: bool = False) -> str:
    """What a process that did not become ready in time was doing, and how busy the machine
    was: a start-up timeout on a loaded machine then reads differently from a hang. With
    ``threads``, each thread's name, state and the kernel function it waits in."""
    lines = []
    try:
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
        lines += [line for line in status if line.startswith(("State:", "Threads:", "VmRSS:"))]
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        lines.append(f"CPU used: {(int(fields[11]) + int(fields[12])) / ticks:.2f} s")
        for task in sorted(Path(f"/proc/{pid}/task").iterdir()) if threads else ():
            name = (task / "comm").read_text().strip()
            state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
            wchan = (task / "wchan").read_text().strip() or "-"
            lines.append(f"  thread {task.name} {name}: {state} in {wchan}")
    except (OSError, IndexError, ValueError):
        lines.append(f"process {pid}: no longer in /proc")
    lines.append("load average: " + " ".join(f"{load:.2f}" for load in os.getloadavg()))
    return "\n".join(lines)


# Ports the serving tier's Ray takes by default whatever else is free (its dashboard agent's,
# 52365, lies in the kernel's ephemeral range): never handed out here, or a gateway or tier of
# the tests could lose its port to a Ray starting beside it.
RAY_DEFAULT_PORTS = frozenset({52365, 52366, 8265, 6379, 10001})


def free_port() -> int:
    """A port nothing listens on now (the kernel's choice, never one Ray takes by default)."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port not in RAY_DEFAULT_PORTS:
            return port


@dataclass(frozen=True)
class DatabaseUnderTest:
    name: str
    owner_url: str
    app_url: str

    @asynccontextmanager
    async def app_pool(self, max_size: int, **settings: Any) -> AsyncIterator[asyncpg.Pool]:
        """The gateway's pool on this database, as the application role (``settings``: more
        of the database settings, e.g. a statement timeout)."""
        from api.db.pool import create_pool
        from api.settings import DatabaseSettings, Settings

        database = DatabaseSettings(
            url=self.app_url, pool_min_size=1, pool_max_size=max_size, **settings
        )
        pool = await create_pool(self.app_url, Settings(database=database))
        try:
            yield pool
        finally:
            await pool.close()


class GraphQLClient:
    """Posts GraphQL documents to a running gateway and returns the decoded body."""

    def __init__(self, http: httpx.AsyncClient, token: str | None = None) -> None:
        self.http = http
        self.token = token

    async def execute(
        self, query: str, variables: dict[str, Any] | None = None, **headers: str
    ) -> dict[str, Any]:
        if self.token is not None:
            headers.setdefault("authorization", f"Bearer {self.token}")
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def data(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The data of a response that must have no errors."""
        body = await self.execute(query, variables)
        assert "errors" not in body, body["errors"]
        data: dict[str, Any] = body["data"]
        return data


def in_process_settings(
    database: DatabaseUnderTest, issuer: str, *, pool_max_size: int, **groups: Any
) -> Settings:
    """Settings of a gateway run in the test's own loop (``InProcessGateway``) on
    ``database``, issuing its own tokens as ``issuer``, with a pool of ``pool_max_size``
    (``groups``: further settings groups)."""
    from api.settings import (
        DatabaseSettings,
        Environment,
        LoggingSettings,
        OAuthSettings,
        load_settings,
    )

    return load_settings(
        environment=Environment.TEST,
        database=DatabaseSettings(
            url=database.app_url,
            owner_url=database.owner_url,
            migrate_on_start=False,
            pool_min_size=0,
            pool_max_size=pool_max_size,
        ),
        oauth=OAuthSettings(issuer=issuer),
        logging=LoggingSettings(),
        **groups,
    )


async def idle_in_transaction(owner: asyncpg.Connection, database: DatabaseUnderTest) -> int:
    """Connections of ``database`` holding a transaction open while doing nothing: what a
    request waiting on its caller or on the model must not leave."""
    count: int = await owner.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1"
        " AND state LIKE 'idle in transaction%'",
        database.name,
    )
    return count


class GatewayProcess:
    """``lighthouse serve`` in a subprocess, as an operator would run it."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._env = {**os.environ, **env, "LIGHTHOUSE_PORT": str(self.port)}
        self._process: subprocess.Popen[bytes] | None = None

    def configure(self, env: dict[str, str]) -> None:
        self._env.update(env)

    def start(self, timeout: float = 180) -> None:
        """Start the gateway and wait until it is ready. The wait is generous: the suite starts
        the workers' gateways while the serving tier starts two vLLM engines beside them, and a
        start-up of 5 s of processor time has taken 60 s of wall time then (load 10 on 2 cores);
        a hang still fails, with what the process was doing."""
        log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve"],
            env=self._env,
            cwd=REPOSITORY,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"gateway exited at start-up:\n{self.log_path.read_text()[-4000:]}"
                )
            try:
                if httpx.get(self.base_url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        report = stalled_start_report(self._process.pid)
        self.stop()
        raise RuntimeError(
            f"gateway not ready in {timeout}s:\n{report}\n{self.log_path.read_text()[-4000:]}"
        )

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)


class InProcessGateway:
    """The gateway app served by uvicorn inside the test's own event loop, so a test can add
    routes of its own (a domain bundle of probes) and share objects with them."""

    def __init__(self, app: Any, port: int) -> None:
        import uvicorn

        self.base_url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            lifespan="on",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        self._task: Any = None

    async def __aenter__(self) -> InProcessGateway:
        import asyncio

        self._task = asyncio.create_task(self._server.serve())
        for _ in range(600):
            if self._server.started:
                return self
            if self._task.done():
                self._task.result()
                raise RuntimeError("the gateway stopped at start-up")
            await asyncio.sleep(0.05)
        raise RuntimeError("the gateway did not start in 30 s")

    async def __aexit__(self, *_: object) -> None:
        self._server.should_exit = True
        await self._task


def stranger_address() -> str:
    """A source address on this host (all of 127.0.0.0/8 is) that no other test uses: what the
    gateway counts per address starts at zero for it."""
    import random

    return f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"


def client_from(base_url: str, address: str) -> httpx.AsyncClient:
    """An HTTP client whose requests come from ``address``."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(base_url=base_url, transport=transport, timeout=30)


async def socket_message(socket: Any, wait: float = 10) -> dict[str, Any]:
    """The next graphql-transport-ws message on ``socket`` (a ``websockets`` client), which must
    come as a text frame: browsers' clients (graphql-ws in Apollo Client, urql, GraphiQL) ignore
    binary frames, which Python's clients would read all the same."""
    frame = await asyncio.wait_for(socket.recv(), wait)
    assert isinstance(frame, str), f"a binary frame ({bytes(frame)[:60]!r}): browsers ignore it"
    message: dict[str, Any] = json.loads(frame)
    return message
