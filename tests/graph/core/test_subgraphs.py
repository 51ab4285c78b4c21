"""Every domain alone is a subgraph, and together they compose into the supergraph a router
runs: other domains' entities are references (their keys), shared value types are shareable,
and a subgraph that claims another domain's fields breaks the composition, in this test."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import types

import pytest
from strawberry.printer import print_schema

from api.graph.core.bundle import DomainBundle
from api.graph.core.schema import build_schema
from api.graph.core.subgraph import NotAReference
from api.graph.domains import DOMAINS
from api.graph.supergraph import (
    CompositionFailed,
    Subgraph,
    compose,
    default_urls,
    subgraphs,
    without_access_directives,
)
from api.settings import load_settings
from tests.support import REPOSITORY, wait_for_tool

SETTINGS = load_settings()


@pytest.fixture(autouse=True)
def _composition_tools() -> None:
    """The composition runs on npm's tools (federation/), which may still be installing."""
    wait_for_tool("federation")


def _joined(supergraph: str, type_name: str, field: str) -> set[str]:
    """The subgraphs the supergraph joins ``type_name.field`` from."""
    body = re.search(rf"\ntype {type_name} [^{{]*\{{(.*?)\n\}}", supergraph, re.S)
    assert body is not None, type_name
    line = re.search(rf"\n  {field}(?:\(.*?\))?: [^\n]*", body.group(1), re.S)
    assert line is not None, f"{type_name}.{field}"
    joins = re.findall(r"@join__field\(graph: (\w+)", line.group(0))
    if joins:
        return set(joins)
    # Without @join__field, every subgraph that has the type resolves the field.
    header = re.search(rf"\ntype {type_name} ([^{{]*)\{{", supergraph)
    assert header is not None
    return set(re.findall(r"@join__type\(graph: (\w+)", header.group(1)))


def test_the_domains_compose_and_each_entity_is_resolved_by_its_own_domain() -> None:
    supergraph = compose(subgraphs(SETTINGS, default_urls()))
    # An entity's own fields come from its domain alone; other domains hold its key.
    assert _joined(supergraph, "Bureau", "nameZh") == {"BUREAUS"}
    assert _joined(supergraph, "Asset", "code") == {"ASSETS"}
    assert _joined(supergraph, "IncidentCategory", "slaHours") == {"BUREAUS"}
    assert _joined(supergraph, "Incident", "title") == {"INCIDENTS"}
    assert _joined(supergraph, "Incident", "asset") == {"INCIDENTS"}
    assert _joined(supergraph, "Asset", "bureau") == {"ASSETS"}
    assert 'type Bureau implements Node @join__type(graph: ASSETS, key: "id")' in supergraph
    # Shared value types are resolved alike by every subgraph that has them.
    assert {"ASSETS", "INCIDENTS"} <= _joined(supergraph, "Location", "latitude")
    # The router enforces what the subgraphs enforce too.
    assert '@requiresScopes(scopes: [["incidents:read"]])' in supergraph


def test_a_subgraph_claiming_another_domains_fields_fails_composition() -> None:
    parts = subgraphs(SETTINGS, default_urls())
    # The incidents domain built as if it owned the bureaus, assets and categories it names.
    claiming = print_schema(build_schema(SETTINGS, [DOMAINS["incidents"]]))
    parts = [Subgraph(p.name, p.url, claiming) if p.name == "incidents" else p for p in parts]
    with pytest.raises(CompositionFailed) as failed:
        compose(parts)
    assert any('"Bureau.nameZh"' in error for error in failed.value.errors), failed.value.errors


def _module(monkeypatch: pytest.MonkeyPatch, name: str, source: str) -> types.ModuleType:
    module = types.ModuleType(name)
    monkeypatch.setitem(sys.modules, name, module)
    exec(textwrap.dedent(source), module.__dict__)
    return module


def test_a_reference_to_another_domains_type_that_is_no_entity_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _module(monkeypatch, "api.graph.elsewhere.types", """
        import strawberry

        @strawberry.type
        class Stranger:
            name: str
    """)  # fmt: skip
    here = _module(monkeypatch, "api.graph.here.queries", """
        import strawberry
        from api.graph.elsewhere.types import Stranger

        @strawberry.type
        class HereQueries:
            @strawberry.field
            def stranger(self) -> Stranger:
                return Stranger(name="x")
    """)  # fmt: skip
    bundle = DomainBundle(name="here", query=here.HereQueries)
    build_schema(SETTINGS, [bundle])  # served with everything it names: fine
    with pytest.raises(NotAReference, match="Stranger"):
        build_schema(SETTINGS, [bundle], subgraph=True)


def test_the_access_directives_come_off_for_a_router_that_knows_none() -> None:
    sdl = print_schema(build_schema(SETTINGS, [DOMAINS["incidents"]], subgraph=True))
    assert "@authenticated" in sdl and "@requiresScopes" in sdl and "@policy" in sdl
    bare = without_access_directives(sdl)
    assert not re.search(r"(?<!\")@(authenticated|requiresScopes|policy)\b", bare)
    assert bare.count("@key(") == sdl.count("@key(") and "reporter: Reporter" in bare
    supergraph = compose(subgraphs(SETTINGS, default_urls(), access_directives=False))
    assert "for: SECURITY" not in supergraph and "@requiresScopes" not in supergraph


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--url", "incidents"], "--url takes NAME=http"),
        (["--url", "nowhere=http://127.0.0.1:1/graphql"], "no domain is called nowhere"),
    ],
)
def test_the_supergraph_command_refuses_what_it_cannot_compose(
    arguments: list[str], message: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "supergraph", *arguments],
        cwd=REPOSITORY, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert message in " ".join(done.stderr.split())
