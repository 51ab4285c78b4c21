"""Every domain as its own subgraph process, in production mode, and real federation routers from
npm in front of them: Hive Gateway and Apollo Gateway, from the supergraph ``lighthouse
supergraph`` composes."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.auth.keys import DEVELOPMENT_KEY_ENCRYPTION_KEY
from api.graph.domains import DOMAINS
from tests.conftest import gateway_env
from tests.support import REPOSITORY, DatabaseUnderTest, GatewayProcess, free_port, wait_for_tool

TOOLS = REPOSITORY / "federation"
HIVE = TOOLS / "node_modules" / "@graphql-hive" / "gateway" / "dist" / "bin.js"
# The subgraph whose own rate limit the tests reach: it throttles the second refused request a
# minute from the routers' address (the others allow the suite's many refusals). Only
# registerDocuments goes to it, which no other test sends through a router.
THROTTLED = "documents"
# What the strict routers may run (trusted documents only): a query, and a mutation the
# unreachable documents subgraph would answer.
REGISTERED = {
    "router-bureaus": "query RouterBureaus { bureaus { code } }",
    "router-register": 'mutation RouterRegister { registerDocuments(client: "router-test", '
    "documents: []) { __typename } }",
}


def _node() -> str:
    wait_for_tool("federation")
    node = shutil.which("node")
    if node is None or not (TOOLS / "node_modules" / "@graphql-hive" / "gateway").is_dir():
        raise RuntimeError("the federation tools are missing: run `npm ci --prefix federation`")
    return node


class RouterProcess:
    """A federation router from npm, in a subprocess."""

    def __init__(
        self,
        name: str,
        command: list[str],
        port: int,
        log_path: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}/graphql"
        self.log_path = log_path
        log = log_path.open("ab")
        self._process = subprocess.Popen(
            command, cwd=TOOLS, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "NODE_NO_WARNINGS": "1", **(env or {})},
        )  # fmt: skip

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_path.read_text()[-4000:]}")
            try:
                answer = httpx.post(self.url, json={"query": "{ __typename }"}, timeout=2)
                # Answered, or refused as a router running registered documents only refuses it.
                if answer.status_code in (200, 400):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(
            f"{self.name} not ready in {timeout}s:\n{self.log_path.read_text()[-4000:]}"
        )

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)


@pytest.fixture(scope="package")
def subgraphs(
    database: DatabaseUnderTest,
    gateway: GatewayProcess,
    frames_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, GatewayProcess]]:
    """Every domain served alone, each its own process on the same database, in production mode
    (as a city runs them), accepting the city's tokens (the unified gateway is their issuer)."""
    logs = tmp_path_factory.mktemp("subgraph-logs")
    started: dict[str, GatewayProcess] = {}
    try:
        for name in DOMAINS:
            process = GatewayProcess({}, logs / f"{name}.log")
            process.configure(gateway_env(database, issuer=gateway.base_url))
            process.configure(
                {
                    "LIGHTHOUSE_SUBGRAPH": name,
                    "LIGHTHOUSE_VISION_FRAMES_DIR": str(frames_dir),
                    "LIGHTHOUSE_ENVIRONMENT": "production",
                    # The test gateway's key, which encrypted the signing keys.
                    "LIGHTHOUSE_KEY_ENCRYPTION_KEY": base64.b64encode(
                        DEVELOPMENT_KEY_ENCRYPTION_KEY
                    ).decode(),
                }
            )
            if name == THROTTLED:
                process.configure({"LIGHTHOUSE_REFUSALS_PER_MINUTE": "1"})
            process.start()
            started[name] = process
        yield started
    finally:
        for process in started.values():
            process.stop()


def _compose(subgraphs: dict[str, GatewayProcess], path: Path, *options: str) -> Path:
    """The supergraph, composed as an operator would: ``lighthouse supergraph --url …``."""
    urls = [f"--url={name}={process.base_url}/graphql" for name, process in subgraphs.items()]
    subprocess.run(
        [sys.executable, "-m", "api.cli", "supergraph", *urls, "--output", str(path), *options],
        cwd=REPOSITORY, check=True, capture_output=True,
        env={**os.environ, "LIGHTHOUSE_ENVIRONMENT": "test"},
    )  # fmt: skip
    return path


@pytest.fixture(scope="package")
def supergraph(
    subgraphs: dict[str, GatewayProcess], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    return _compose(subgraphs, tmp_path_factory.mktemp("supergraph") / "supergraph.graphql")


@pytest.fixture(scope="package")
def bare_supergraph(
    subgraphs: dict[str, GatewayProcess], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The same supergraph stripped of the access directives (Apollo Gateway refuses them)."""
    path = tmp_path_factory.mktemp("supergraph") / "bare.graphql"
    return _compose(subgraphs, path, "--no-access-directives")


def _start_routers(
    supergraph: Path, bare_supergraph: Path, logs: Path, env: dict[str, str] | None = None
) -> list[RouterProcess]:
    node = _node()
    hive_port, apollo_port = free_port(), free_port()
    started = [
        RouterProcess(
            "hive-gateway",
            [node, str(HIVE), "supergraph", str(supergraph), "--port", str(hive_port),
             "--host", "127.0.0.1"],
            hive_port, logs / "hive.log", env,
        ),
        RouterProcess(
            "apollo-gateway",
            [node, str(TOOLS / "apollo-gateway.mjs"), str(bare_supergraph), str(apollo_port)],
            apollo_port, logs / "apollo.log", env,
        ),
    ]  # fmt: skip
    try:
        for router in started:
            router.wait_ready()
    except BaseException:
        for router in started:
            router.stop()
        raise
    return started


@pytest.fixture(scope="package")
def routers(
    supergraph: Path, bare_supergraph: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[RouterProcess]]:
    """Hive Gateway (the directives in its supergraph, no authentication plugin: it enforces
    none of them) and Apollo Gateway (its supergraph stripped of them): the subgraphs must."""
    started = _start_routers(supergraph, bare_supergraph, tmp_path_factory.mktemp("router-logs"))
    yield started
    for router in started:
        router.stop()


@pytest.fixture(scope="module")
def strict_routers(
    subgraphs: dict[str, GatewayProcess],
    supergraph: Path,
    bare_supergraph: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[RouterProcess]]:
    """Both routers as a city running registered documents only starts them (the manifest of
    ``REGISTERED``), with the documents subgraph unreachable (nothing listens where they look
    for it)."""
    directory = tmp_path_factory.mktemp("strict-routers")
    manifest = directory / "manifest.json"
    manifest.write_text(json.dumps(REGISTERED))
    documents = f"{subgraphs[THROTTLED].base_url}/graphql"
    nowhere = f"http://127.0.0.1:{free_port()}/graphql"
    moved = [directory / "supergraph.graphql", directory / "bare.graphql"]
    for source, target in zip((supergraph, bare_supergraph), moved, strict=True):
        target.write_text(source.read_text().replace(f'"{documents}"', f'"{nowhere}"'))
    started = _start_routers(
        moved[0],
        moved[1],
        directory,
        {"LIGHTHOUSE_TRUSTED_DOCUMENTS_ONLY": "true", "LIGHTHOUSE_ROUTER_DOCUMENTS": str(manifest)},
    )
    yield started
    for router in started:
        router.stop()
