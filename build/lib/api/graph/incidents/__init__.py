"""Incidents, their history, work orders and transfers: the city's workflow in the graph."""

from api.graph.incidents.schema import bundle

__all__ = ["bundle"]
