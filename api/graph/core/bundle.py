"""What a domain contributes to the graph: one bundle per ``api/graph/<domain>/``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.routing import BaseRoute

from api.graph.core.loaders import ScopedLoader
from api.http.openapi.description import ApiDescription


@dataclass(frozen=True)
class DomainBundle:
    """A domain's part of the graph.

    ``query``, ``mutation`` and ``subscription`` are Strawberry types whose fields join the
    root types; ``types`` are types the schema must hold though no field returns them (an
    entity reached only through ``_entities``); ``loaders`` are the domain's per-scope
    DataLoaders (they register themselves on first use; listed for reference and tests);
    ``routes`` are REST endpoints the domain serves beside the graph, and ``apis`` their OpenAPI
    descriptions (served at ``/openapi``; the tests keep the two in step). Prefetching is
    declared on the fields themselves (``api.graph.core.prefetch``).
    """

    name: str
    query: type | None = None
    mutation: type | None = None
    subscription: type | None = None
    types: tuple[type, ...] = ()
    loaders: tuple[type[ScopedLoader[Any, Any]], ...] = ()
    routes: tuple[BaseRoute, ...] = ()
    apis: tuple[ApiDescription, ...] = ()
