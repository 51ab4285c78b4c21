"""Every domain as its own subgraph process, and real federation routers from npm in front of
them: Hive Gateway and Apollo Gateway, from the supergraph ``lighthouse supergraph`` composes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.graph.domains import DOMAINS
from tests.conftest import gateway_env
from tests.support import REPOSITORY, DatabaseUnderTest, GatewayProcess, free_port

TOOLS = REPOSITORY / "federation"


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (TOOLS / "node_modules" / "@graphql-hive" / "gateway").is_dir():
        raise RuntimeError("the federation tools are missing: run `npm ci --prefix federation`")
    return node


class RouterProcess:
    """A federation router from npm, in a subprocess."""

    def __init__(self, name: str, command: list[str], port: int, log_path: Path) -> None:
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}/graphql"
        self.log_path = log_path
        log = log_path.open("ab")
        self._process = subprocess.Popen(
            command, cwd=TOOLS, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "NODE_NO_WARNINGS": "1"},
        )  # fmt: skip

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_path.read_text()[-4000:]}")
            try:
                answer = httpx.post(self.url, json={"query": "{ __typename }"}, timeout=2)
                if answer.status_code == 200:
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
    """Every domain served alone, each its own process on the same database, accepting the
    city's tokens (the unified gateway is their issuer)."""
    logs = tmp_path_factory.mktemp("subgraph-logs")
    started: dict[str, GatewayProcess] = {}
    try:
        for name in DOMAINS:
            process = GatewayProcess({}, logs / f"{name}.log")
            process.configure(gateway_env(database, issuer=gateway.base_url))
            process.configure(
                {"LIGHTHOUSE_SUBGRAPH": name, "LIGHTHOUSE_VISION_FRAMES_DIR": str(frames_dir)}
            )
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


@pytest.fixture(scope="package")
def routers(
    supergraph: Path, bare_supergraph: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[RouterProcess]]:
    """Hive Gateway (the directives in its supergraph, no authentication plugin: it enforces
    none of them) and Apollo Gateway (its supergraph stripped of them): the subgraphs must."""
    node = _node()
    logs = tmp_path_factory.mktemp("router-logs")
    hive_port, apollo_port = free_port(), free_port()
    started = [
        RouterProcess(
            "hive-gateway",
            [node, str(TOOLS / "node_modules" / "@graphql-hive" / "gateway" / "dist" / "bin.js"),
             "supergraph", str(supergraph), "--port", str(hive_port), "--host", "127.0.0.1"],
            hive_port, logs / "hive.log",
        ),
        RouterProcess(
            "apollo-gateway",
            [node, str(TOOLS / "apollo-gateway.mjs"), str(bare_supergraph), str(apollo_port)],
            apollo_port, logs / "apollo.log",
        ),
    ]  # fmt: skip
    try:
        for router in started:
            router.wait_ready()
        yield started
    finally:
        for router in started:
            router.stop()
