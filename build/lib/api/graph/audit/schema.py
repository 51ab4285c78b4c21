"""The audit domain's part of the graph: access records, chain verification, policies."""

from __future__ import annotations

from api.graph.audit.queries import AuditQueries
from api.graph.core.bundle import DomainBundle

bundle = DomainBundle(name="audit", query=AuditQueries)
