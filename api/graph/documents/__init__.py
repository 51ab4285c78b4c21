"""Trusted documents in the graph: the city's developers register their frontends' operations."""

from api.graph.documents.schema import bundle

__all__ = ["bundle"]
