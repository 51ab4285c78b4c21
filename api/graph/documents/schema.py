"""The trusted documents' part of the graph (see ``api.graph.core.trusted``)."""

from __future__ import annotations

from api.graph.core.bundle import DomainBundle
from api.graph.documents.mutations import DocumentMutations

bundle = DomainBundle(name="documents", mutation=DocumentMutations)
