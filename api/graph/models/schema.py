"""The models domain's part of the graph."""

from __future__ import annotations

from api.graph.core.bundle import DomainBundle
from api.graph.models.analysis import AnalysisMutations
from api.graph.models.registry import ModelQueries

bundle = DomainBundle(name="models", query=ModelQueries, mutation=AnalysisMutations)
