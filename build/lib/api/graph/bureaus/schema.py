"""The bureaus domain's part of the graph."""

from __future__ import annotations

from api.graph.bureaus.loaders import BureauById, CategoryByCode
from api.graph.bureaus.queries import BureauQueries
from api.graph.bureaus.types import Bureau
from api.graph.core.bundle import DomainBundle

bundle = DomainBundle(
    name="bureaus",
    query=BureauQueries,
    types=(Bureau,),
    loaders=(BureauById, CategoryByCode),
)
