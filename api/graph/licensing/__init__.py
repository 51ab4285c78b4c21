"""Licensing: licensees, their licences and the metered inference they call (``/v1``)."""

from api.graph.licensing.schema import bundle

__all__ = ["bundle"]
