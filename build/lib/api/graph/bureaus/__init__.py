"""Bureaus (the tenants) and the category routing table."""

from api.graph.bureaus.schema import bundle

__all__ = ["bundle"]
