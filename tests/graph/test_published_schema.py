"""The schema published for clients (schema.graphql) is the one the code builds, stands on its
own, and carries none of the federation router's machinery."""

from __future__ import annotations

import subprocess
import sys

from graphql import build_schema

from api.graph.sdl import ROUTER_FIELDS, ROUTER_TYPES, client_sdl
from api.settings import Settings
from tests.support import REPOSITORY

PUBLISHED = REPOSITORY / "schema.graphql"


def test_the_published_schema_is_the_built_one() -> None:
    built = client_sdl(Settings())
    assert PUBLISHED.read_text(encoding="utf-8") == built, (
        "schema.graphql is not the schema the code builds: run "
        "`.venv/bin/lighthouse schema print --output schema.graphql` and commit it"
    )


def test_the_published_schema_stands_alone_without_the_routers_parts() -> None:
    schema = build_schema(PUBLISHED.read_text(encoding="utf-8"))
    assert not ROUTER_TYPES & set(schema.type_map)
    assert schema.query_type is not None and schema.mutation_type is not None
    assert not ROUTER_FIELDS & set(schema.query_type.fields)
    assert {"incidents", "bureaus", "auditRecords", "node"} <= set(schema.query_type.fields)
    assert {"DateTime", "Date", "JSON", "Upload"} <= set(schema.type_map)
    assert schema.subscription_type is not None
    assert "incidentChanged" in schema.subscription_type.fields
    assert not {"key", "link", "authenticated"} & {d.name for d in schema.directives}


def test_the_command_prints_it_and_a_subgraphs_sdl() -> None:
    def lighthouse(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "api.cli", "schema", "print", *arguments],
            capture_output=True, text=True, cwd=REPOSITORY, timeout=120, check=False,
        )  # fmt: skip

    printed = lighthouse()
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == PUBLISHED.read_text(encoding="utf-8")
    router = lighthouse("--subgraph", "incidents")
    assert router.returncode == 0, router.stderr
    assert '@link(url: "https://specs.apollo.dev/federation/v2' in router.stdout
    assert "type Incident" in router.stdout and "type AuditRecord" not in router.stdout
    unknown = lighthouse("--subgraph", "weather")
    assert unknown.returncode == 2 and "No domain is called weather" in unknown.stderr
