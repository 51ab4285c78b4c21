"""The supergraph: every domain served alone as a subgraph, composed for a federation router.

Each domain's subgraph SDL is what its ``_service`` answers (``build_schema(..., subgraph=True)``:
other domains' entities are references). ``compose`` hands them to
``@theguild/federation-composition`` (npm, under ``federation/``) and returns the supergraph SDL
a router (Hive Gateway, Apollo Router or Gateway) is started with, or the composition's errors.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson
from strawberry.printer import print_schema

from api.graph.core.schema import build_schema
from api.graph.domains import DOMAINS
from api.settings import Settings

TOOLS = Path(__file__).resolve().parents[2] / "federation"
FIRST_PORT = 4001  # a subgraph's default port: 4001, 4002… in the order of DOMAINS


@dataclass(frozen=True, slots=True)
class Subgraph:
    name: str
    url: str
    sdl: str


# The access directives a router may enforce; the subgraphs enforce the same rules themselves.
# Apollo Gateway refuses a supergraph that carries them (they are a router feature).
ACCESS_DIRECTIVES = re.compile(
    r"\s*(?<!\")@(?:authenticated\b|requiresScopes\(scopes: \[\[.*?\]\]\)|policy\(policies: \[\[.*?\]\]\))"
)


def without_access_directives(sdl: str) -> str:
    """``sdl`` without ``@authenticated``, ``@requiresScopes`` and ``@policy``."""
    return ACCESS_DIRECTIVES.sub("", sdl)


class CompositionFailed(Exception):
    """The subgraphs do not compose; ``errors`` says why, one line each."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


class ToolsMissing(RuntimeError):
    """The npm composition tool is not installed."""


def default_urls(host: str = "127.0.0.1") -> dict[str, str]:
    return {
        name: f"http://{host}:{FIRST_PORT + index}/graphql" for index, name in enumerate(DOMAINS)
    }


def subgraph_sdl(settings: Settings, name: str) -> str:
    """The SDL the subgraph ``name`` serves at ``_service``."""
    return print_schema(build_schema(settings, [DOMAINS[name]], subgraph=True))


def subgraphs(
    settings: Settings, urls: Mapping[str, str], *, access_directives: bool = True
) -> list[Subgraph]:
    """The subgraphs of the domains in ``urls`` (name → the URL the router reaches it at);
    without the access directives for a router that does not know them."""
    unknown = sorted(set(urls) - set(DOMAINS))
    if unknown:
        raise KeyError(f"no domain is called {', '.join(unknown)}; domains: {', '.join(DOMAINS)}")
    parts = [Subgraph(name, url, subgraph_sdl(settings, name)) for name, url in urls.items()]
    if access_directives:
        return parts
    return [Subgraph(p.name, p.url, without_access_directives(p.sdl)) for p in parts]


def compose(parts: list[Subgraph], tools: Path = TOOLS, timeout: float = 120) -> str:
    """The supergraph SDL of ``parts``; ``CompositionFailed`` with the composition's errors."""
    script = tools / "compose.mjs"
    if not (tools / "node_modules" / "@theguild" / "federation-composition").is_dir():
        raise ToolsMissing(f"the composition tool is not installed: run `npm ci --prefix {tools}`")
    node = shutil.which("node")
    if node is None:
        raise ToolsMissing("Node.js (20 or newer) is needed to compose the supergraph")
    payload = orjson.dumps([{"name": p.name, "url": p.url, "sdl": p.sdl} for p in parts])
    done = subprocess.run(
        [node, str(script)],
        input=payload,
        capture_output=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "NODE_NO_WARNINGS": "1"},
    )
    if done.returncode != 0:
        errors = done.stderr.decode(errors="replace").strip().splitlines()
        raise CompositionFailed(errors or [f"the composition exited with {done.returncode}"])
    return done.stdout.decode()
