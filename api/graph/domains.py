"""Every domain of the graph, by name: the unified graph serves them all, and any one can be
served alone as a federation subgraph."""

from __future__ import annotations

from api.graph import assets, audit, bureaus, documents, incidents, licensing, models
from api.graph.core.bundle import DomainBundle

DOMAINS: dict[str, DomainBundle] = {
    bundle.name: bundle
    for bundle in (
        incidents.bundle,
        assets.bundle,
        bureaus.bundle,
        audit.bundle,
        models.bundle,
        licensing.bundle,
        documents.bundle,
    )
}
