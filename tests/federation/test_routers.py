"""Through a real federation router, the city's graph answers as the unified gateway does.

Every domain runs as its own subgraph process; Hive Gateway and Apollo Gateway plan each query
across them from the supergraph ``lighthouse supergraph`` composed. For principals of different
bureaus, a corpus of queries (cross-domain ones included) returns the same data through each
router as through the unified gateway. Neither router enforces the access directives, so what a
caller may see is decided by the subgraphs alone: the leak checks hold through them too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import httpx
import pytest

from tests.conftest import gateway_env
from tests.federation.conftest import RouterProcess
from tests.support import REPOSITORY, DatabaseUnderTest, GatewayProcess
from tests.tokens import TokenFactory

pytestmark = pytest.mark.db

CORPUS = {
    # incident → asset → owning bureau; incident → category → responsible bureau: planned
    # across the incidents, assets and bureaus subgraphs.
    "Board": """
      query Board { incidents(first: 30) { edges { cursor node {
        id caseNumber title status dueAt reportedAt
        responsibleBureau { id code nameZh kind }
        asset { id code kind location { latitude longitude } bureau { code nameEn } }
        category { code nameEn slaHours responsibleBureau { code jointServiceCentre } }
        events(limit: 2) { kind toStatus occurredAt }
        workOrders { crew status bureau { code } }
      } } pageInfo { hasNextPage endCursor } } }
    """,
    "Register": """
      query Register { assets(first: 30) { totalCount edges { node {
        id code kind name bureau { code nameZh }
      } } } }
    """,
    "Reference": """
      query Reference { bureaus { id code nameEn kind }
        categories { code slaWorkingDays responsibleBureau { code } } }
    """,
    "Me": "query Me { me { subject kind bureauCode roles scopes } }",
    "Mixed": """
      query Mixed { me { subject } bureau(code: "POLICE") { code nameEn }
        incidents(first: 5, orderBy: DUE_SOONEST) { edges { node { id dueAt
          responsibleBureau { code } } } } }
    """,
}
PRINCIPALS = ["city-viewer", "pwb-supervisor", "police-viewer", "epb-supervisor", "auditor"]


@pytest.fixture(scope="module")
def seeded(database: DatabaseUnderTest) -> None:
    env = {**os.environ, **gateway_env(database), "LIGHTHOUSE_ENVIRONMENT": "test"}
    subprocess.run(
        [sys.executable, "-m", "api.cli", "seed", "--assets", "80", "--incidents", "120",
         "--random-seed", "11", "--reset"],
        cwd=REPOSITORY, env=env, check=True, capture_output=True,
    )  # fmt: skip


def _post(url: str, query: str, token: str | None) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    answer = httpx.post(url, json={"query": query}, headers=headers, timeout=60)
    body: dict[str, Any] = answer.json()
    return body


def _denied(body: dict[str, Any]) -> bool:
    return bool(body.get("errors")) and not any(
        (body.get("data") or {}).get(field) for field in ("incidents", "assets", "auditRecords")
    )


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_each_router_answers_as_the_unified_gateway(
    seeded: None,
    routers: list[RouterProcess],
    gateway: GatewayProcess,
    tokens: TokenFactory,
    name: str,
) -> None:
    query = CORPUS[name]
    compared = 0
    for principal in PRINCIPALS:
        token = tokens.named(principal)
        unified = _post(f"{gateway.base_url}/graphql", query, token)
        for router in routers:
            routed = _post(router.url, query, token)
            context = f"{name} as {principal} through {router.name}"
            if unified.get("errors"):
                # Refused by the unified gateway: refused through the router, with no data.
                assert routed.get("errors"), context
                assert (routed.get("data") or {}) in ({}, None) or _denied(routed), context
                continue
            assert "errors" not in routed, (context, routed.get("errors"))
            assert routed["data"] == unified["data"], context
            compared += 1
    assert compared >= len(PRINCIPALS), f"{name}: too few answers compared ({compared})"


def test_the_board_really_crosses_subgraphs(
    seeded: None, routers: list[RouterProcess], gateway: GatewayProcess, tokens: TokenFactory
) -> None:
    data = _post(routers[0].url, CORPUS["Board"], tokens.named("city-viewer"))["data"]
    nodes = [edge["node"] for edge in data["incidents"]["edges"]]
    assert len(nodes) == 30
    # Fields only the assets and bureaus subgraphs can resolve came back.
    assert any(node["asset"] and node["asset"]["bureau"]["nameEn"] for node in nodes)
    assert all(node["responsibleBureau"]["nameZh"] for node in nodes)


@pytest.mark.parametrize(
    "caller",
    ["anonymous", "no-scopes", "licensee", "police-viewer"],
)
def test_a_router_that_enforces_nothing_leaks_nothing(
    seeded: None,
    routers: list[RouterProcess],
    gateway: GatewayProcess,
    tokens: TokenFactory,
    caller: str,
) -> None:
    token = {
        "anonymous": None,
        "no-scopes": tokens.custom(subject="nobody", kind="service", scopes=[]),
        "licensee": tokens.custom(
            subject="acme-client", kind="licensee", scopes=["inference:invoke"]
        ),
        "police-viewer": tokens.named("police-viewer"),
    }[caller]
    for router in routers:
        board = _post(router.url, CORPUS["Board"], token)
        unified = _post(f"{gateway.base_url}/graphql", CORPUS["Board"], token)
        context = f"{caller} through {router.name}"
        if caller == "police-viewer":
            # Row-level security in the subgraph, not the router, decides what a bureau's
            # viewer sees: the same incidents as through the unified gateway, fewer than the
            # city-wide viewer's.
            assert board.get("data") == unified.get("data"), context
            count = "query Count { incidents(first: 1) { totalCount } }"
            seen = _post(router.url, count, token)["data"]["incidents"]["totalCount"]
            everyone = _post(router.url, count, tokens.named("city-viewer"))["data"]
            assert (
                seen
                == _post(f"{gateway.base_url}/graphql", count, token)["data"]["incidents"][
                    "totalCount"
                ]
            ), context
            assert 0 < seen < everyone["incidents"]["totalCount"], context
            continue
        assert board.get("errors") and unified.get("errors"), context
        assert not (board.get("data") or {}).get("incidents"), context
        audit = _post(
            router.url, "query A { auditRecords(first: 5) { edges { node { seq } } } }", token
        )
        assert audit.get("errors") and not (audit.get("data") or {}).get("auditRecords"), context
