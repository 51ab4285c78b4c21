"""Nothing leaves the city: the gateway serves GraphiQL from itself, and while it starts, serves
the graph and issues tokens it opens no connection to any host but its own machine."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import gateway_env
from tests.http.test_graphiql_assets import FOREIGN_URL, parse
from tests.support import DatabaseUnderTest, GatewayProcess
from tests.tokens import TokenFactory

# Installed in the process under test through sitecustomize: every connection or name lookup
# that is not this machine's is written down. Python's audit hooks see every socket Python
# opens; uvloop opens its own in libuv, so the process under test runs the asyncio loop (which
# code reaches out does not depend on the loop that carries it).
WATCH = """
import json, os, sys

_LOG = os.environ["LIGHTHOUSE_OUTBOUND_LOG"]
_LOCAL = {"127.0.0.1", "::1", "localhost", "0.0.0.0", "", None}


def _note(event, target):
    with open(_LOG, "a") as log:
        log.write(json.dumps({"event": event, "target": repr(target)}) + "\\n")


def _watch(event, args):
    if event == "socket.connect":
        address = args[1]
        if isinstance(address, tuple) and address[0] not in _LOCAL:
            _note(event, address)
    elif event == "socket.getaddrinfo":
        if args[0] not in _LOCAL:
            _note(event, args[0])


sys.addaudithook(_watch)
"""


@pytest.fixture(scope="module")
def watch_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("watch")
    (directory / "sitecustomize.py").write_text(WATCH)
    return directory


def outbound(log: Path) -> list[dict[str, str]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_the_watch_sees_an_outbound_connection(watch_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "outbound.jsonl"
    probe = "import socket\ntry: socket.create_connection(('192.0.2.1', 80), timeout=0.05)\nexcept OSError: pass"
    subprocess.run(
        [sys.executable, "-c", probe],
        env={"PYTHONPATH": str(watch_dir), "LIGHTHOUSE_OUTBOUND_LOG": str(log)},
        check=True,
    )
    assert "socket.connect" in [e["event"] for e in outbound(log)]


@pytest.fixture(scope="module")
def watched(
    database: DatabaseUnderTest, watch_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GatewayProcess, Path]]:
    logs = tmp_path_factory.mktemp("watched")
    log = logs / "outbound.jsonl"
    process = GatewayProcess({}, logs / "gateway.log")
    process.configure(gateway_env(database, issuer=process.base_url))
    process.configure(
        {
            "PYTHONPATH": str(watch_dir),
            "LIGHTHOUSE_OUTBOUND_LOG": str(log),
            "LIGHTHOUSE_EVENT_LOOP": "asyncio",
            # PROJ would fetch grids from its CDN with this on; the gateway turns it off itself.
            "PROJ_NETWORK": "ON",
        }
    )
    process.start()
    yield process, log
    process.stop()


async def test_graphiql_comes_from_the_gateway(gateway: GatewayProcess) -> None:
    async with httpx.AsyncClient(base_url=gateway.base_url) as http:
        page = await http.get("/graphql", headers={"accept": "text/html"})
        assert page.status_code == 200, page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        loaded = [
            (attributes.get("src") or attributes.get("href") or "", attributes.get("integrity"))
            for tag, attributes in parse(page.text).tags
            if (tag == "script" and attributes.get("src"))
            or (tag == "link" and attributes.get("rel") == "stylesheet")
        ]
        assert len(loaded) >= 5, "the page loads React, GraphiQL and the explorer"
        for url, integrity in loaded:
            assert not FOREIGN_URL.match(url), url
            asset = await http.get(url)
            assert asset.status_code == 200, url
            digest = base64.b64encode(hashlib.sha384(asset.content).digest()).decode()
            assert integrity == f"sha384-{digest}", url


async def test_the_gateway_reaches_no_other_host(
    watched: tuple[GatewayProcess, Path], database: DatabaseUnderTest
) -> None:
    process, log = watched
    tokens = TokenFactory(database.owner_url, process.base_url)
    board = "{ incidents(first: 5) { edges { node { title location { twd97 { x } } } } } }"
    async with httpx.AsyncClient(base_url=process.base_url, timeout=30) as http:
        token = tokens.named("city-viewer")
        response = await http.post(
            "/graphql", json={"query": board}, headers={"authorization": f"Bearer {token}"}
        )
        assert response.status_code == 200 and "errors" not in response.json(), response.text
        near = "{ incidents(filter: {near: {point: {twd97: {x: 179250, y: 2502800}}, radiusMeters: 300}}) { edges { node { id } } } }"
        response = await http.post(
            "/graphql", json={"query": near}, headers={"authorization": f"Bearer {token}"}
        )
        assert response.status_code == 200 and "errors" not in response.json(), response.text
        assert (await http.get("/graphql", headers={"accept": "text/html"})).status_code == 200
        assert (await http.get("/.well-known/oauth-authorization-server")).status_code == 200
        assert (await http.get("/readyz")).status_code == 200
    assert outbound(log) == []
