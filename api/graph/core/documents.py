"""Parsed GraphQL documents, cached by their text and bounded by count and by bytes.

A document's text is the cache key, so the cache keeps the text as well as the parsed tree:
bounding it by entries alone lets a few huge documents (a comment pads a document past any
token limit) hold megabytes each. Documents larger than a share of the budget are parsed but
never kept. Oversized documents never get here: the view refuses them before parsing.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

from graphql import DocumentNode
from strawberry.extensions import SchemaExtension


class DocumentCache:
    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.largest = max_bytes // 16  # one document may take at most this share
        self._documents: OrderedDict[str, DocumentNode] = OrderedDict()
        self.bytes = 0

    def get(self, text: str) -> DocumentNode | None:
        document = self._documents.get(text)
        if document is not None:
            self._documents.move_to_end(text)
        return document

    def put(self, text: str, document: DocumentNode) -> None:
        size = len(text)
        if size > self.largest or self.max_entries == 0 or text in self._documents:
            return
        self._documents[text] = document
        self.bytes += size
        while len(self._documents) > self.max_entries or self.bytes > self.max_bytes:
            evicted, _ = self._documents.popitem(last=False)
            self.bytes -= len(evicted)

    def __len__(self) -> int:
        return len(self._documents)


class CachedDocuments(SchemaExtension):
    """Serves a document parsed before; otherwise lets the schema parse it (and report its
    syntax errors as usual) and keeps the result."""

    def __init__(self, cache: DocumentCache) -> None:
        super().__init__()
        self._cache = cache

    def on_parse(self) -> Iterator[None]:
        execution = self.execution_context
        text = execution.query
        cached = self._cache.get(text) if text else None
        if cached is not None:
            execution.graphql_document = cached
        yield
        if cached is None and text and execution.graphql_document is not None:
            self._cache.put(text, execution.graphql_document)
