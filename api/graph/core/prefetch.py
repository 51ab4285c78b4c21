"""Look-ahead loading: a page's nested fields are loaded before the page is resolved.

A connection resolver knows, from the selection set, which nested fields the caller asked for.
It loads them for every node of the page at once, level by level, through the same per-scope
DataLoaders the fields use — one statement per field per level, as the loaders would issue
anyway. The nested fields then find their values already loaded and resolve without awaiting,
which spares the executor an awaitable (and an asyncio task) per field per node: on a page of
50 incidents that is several hundred.

How a field is prefetched is declared on the field itself (``related``, ``related_list``, or
``strawberry.field(metadata=prefetched(...))``), so renaming or removing a field takes its
prefetch with it. ``PrefetchPlan.of(schema)`` reads those declarations off the built schema.

Prefetching is only an optimisation: a field whose value was not prefetched (a different
argument, an unusual fragment) loads it itself, asynchronously, through the same loader.
"""

from __future__ import annotations

import asyncio
import dataclasses
import typing
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import strawberry
from graphql import GraphQLObjectType, get_named_type
from strawberry.dataloader import DataLoader
from strawberry.types.base import StrawberryObjectDefinition
from strawberry.types.nodes import FragmentSpread, InlineFragment, SelectedField, Selection

from api.graph.core.context import Info
from api.graph.core.loaders import Folded, LoaderRegistry, ScopedLoader
from api.repositories.companions import Companion

K = TypeVar("K")
V = TypeVar("V")
R = TypeVar("R")

METADATA_KEY = "lighthouse.prefetch"


class Prefetch(ABC):
    """How one field is loaded for many parent records at once."""

    @abstractmethod
    async def load(
        self, loaders: LoaderRegistry, parents: Sequence[Any], arguments: Mapping[str, Any]
    ) -> list[Any]:
        """Load the field for ``parents``; return the child records (for the next level)."""

    def problems(self, record_type: type | None) -> list[str]:
        """What is wrong with this declaration for parents of ``record_type`` (for tests)."""
        return []

    def fold(self, loaders: LoaderRegistry, arguments: Mapping[str, Any]) -> FoldedRead | None:
        """This field's read as a companion of its parents' page; None where it cannot be."""
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class FoldedRead:
    """A loader's batch read, folded into a page's statement, keyed by the page's column."""

    loader: ScopedLoader[Any, Any]
    folded: Folded
    companion: Companion[Any]

    @classmethod
    def of(cls, loader: ScopedLoader[Any, Any], key: str) -> FoldedRead | None:
        folded = loader.folded()
        return None if folded is None else cls(loader, folded, folded.companion.keyed(key))

    def receive(self, parents: Sequence[Any]) -> list[Any]:
        """Prime the loader with what the page's statement read for ``parents``; the records
        read (the next level's parents)."""
        keys = {getattr(parent, self.companion.key) for parent in parents} - {None}
        if not keys:
            return []
        values = self.folded.values(self.companion.rows)
        primed = {key: values[key] if key in values else self.folded.missing() for key in keys}
        self.loader.prime_many(primed)
        # Only what hangs off ``parents``: the statement also read for the look-ahead row.
        records = [record for value in primed.values() for record in self.folded.records(value)]
        if self.companion.then is not None:
            self.companion.then(records)
        return records


@dataclasses.dataclass(frozen=True, slots=True)
class Reference(Prefetch):
    """The record ``loader`` finds by the parent's ``key`` attribute."""

    loader: type[ScopedLoader[Any, Any]]
    key: str

    async def load(
        self, loaders: LoaderRegistry, parents: Sequence[Any], arguments: Mapping[str, Any]
    ) -> list[Any]:
        keys = {getattr(parent, self.key) for parent in parents} - {None}
        return [record for record in await preload(loaders.get(self.loader), keys) if record]

    def fold(self, loaders: LoaderRegistry, arguments: Mapping[str, Any]) -> FoldedRead | None:
        return FoldedRead.of(loaders.get(self.loader), self.key)

    def problems(self, record_type: type | None) -> list[str]:
        if record_type is None:
            return ["the type keeps no record to read the key from"]
        names = {f.name for f in dataclasses.fields(record_type)}
        return [] if self.key in names else [f"{record_type.__name__} has no {self.key!r}"]


# Maps a field's arguments (literals arrive as text, variables as values) to the loader's
# arguments; None when they are not valid (the field then reports the problem itself).
LoaderArguments = Callable[[Mapping[str, Any]], tuple[Hashable, ...] | None]


@dataclasses.dataclass(frozen=True, slots=True)
class Children(Prefetch):
    """The list ``loader`` finds by the parent's id."""

    loader: type[ScopedLoader[Any, Any]]
    arguments: LoaderArguments | None = None

    async def load(
        self, loaders: LoaderRegistry, parents: Sequence[Any], arguments: Mapping[str, Any]
    ) -> list[Any]:
        loader_arguments = self.arguments(arguments) if self.arguments is not None else ()
        if loader_arguments is None:
            return []
        loader = loaders.get(self.loader, loader_arguments)
        found = await preload(loader, [parent.id for parent in parents])
        return [record for records in found for record in records]

    def fold(self, loaders: LoaderRegistry, arguments: Mapping[str, Any]) -> FoldedRead | None:
        loader_arguments = self.arguments(arguments) if self.arguments is not None else ()
        if loader_arguments is None:
            return None
        return FoldedRead.of(loaders.get(self.loader, loader_arguments), "id")

    def problems(self, record_type: type | None) -> list[str]:
        if record_type is None:
            return ["the type keeps no record to read the id from"]
        names = {f.name for f in dataclasses.fields(record_type)}
        return [] if "id" in names else [f"{record_type.__name__} has no 'id'"]


def prefetched(how: Prefetch) -> dict[str, Any]:
    """Field metadata declaring how the field is prefetched."""
    return {METADATA_KEY: how}


def related(
    loader: type[ScopedLoader[Any, Any]],
    key: str,
    convert: Callable[[Any], Any],
    *,
    field: Callable[..., Any] = strawberry.field,
    **options: Any,
) -> Any:
    """A field holding the record ``loader`` finds by the parent record's ``key``; prefetched
    for a whole page. The parent type keeps its record in a private ``record`` attribute.
    ``field`` makes the field (``strawberry.federation.field`` for federation directives)."""

    def resolve(root: Any, info: Info) -> Any:
        return resolved(loader.of(info), getattr(root.record, key), convert)

    return field(resolver=resolve, metadata=prefetched(Reference(loader, key)), **options)


def related_list(
    loader: type[ScopedLoader[Any, Any]],
    convert: Callable[[Any], Any],
    *,
    field: Callable[..., Any] = strawberry.field,
    **options: Any,
) -> Any:
    """A field holding the list ``loader`` finds by the parent record's id; prefetched."""

    def resolve(root: Any, info: Info) -> Any:
        return resolved_list(loader.of(info), root.record.id, convert)

    return field(resolver=resolve, metadata=prefetched(Children(loader)), **options)


# --- the plan: which fields of which types are prefetched, read off the built schema ----------


@dataclasses.dataclass(frozen=True, slots=True)
class PlannedField:
    how: Prefetch
    child_type: str
    record_type: type | None  # the parent type's record class


class PrefetchPlan:
    def __init__(self, fields: dict[str, dict[str, PlannedField]]) -> None:
        self.fields = fields

    @classmethod
    def of(cls, schema: strawberry.Schema) -> PrefetchPlan:
        """Every prefetch declared on a field of ``schema``'s object types."""
        fields: dict[str, dict[str, PlannedField]] = {}
        names = schema.config.name_converter
        for graphql_type in schema._schema.type_map.values():
            if not isinstance(graphql_type, GraphQLObjectType):
                continue
            definition = graphql_type.extensions.get("strawberry-definition")
            if not isinstance(definition, StrawberryObjectDefinition):
                continue
            for field in definition.fields:
                metadata: Mapping[str, Any] = field.metadata or {}
                how = metadata.get(METADATA_KEY)
                if not isinstance(how, Prefetch):
                    continue
                name = names.get_graphql_name(field)
                child = get_named_type(graphql_type.fields[name].type)
                fields.setdefault(graphql_type.name, {})[name] = PlannedField(
                    how, child.name, _record_type(definition)
                )
        return cls(fields)


def _record_type(definition: StrawberryObjectDefinition) -> type | None:
    """The class of the type's private ``record`` attribute (``strawberry.Private[Record]``)."""
    try:
        hints = typing.get_type_hints(definition.origin, include_extras=True)
    except (NameError, TypeError):
        return None
    hint = hints.get("record")
    if hint is None:
        return None
    record = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint
    return record if isinstance(record, type) else None


def plan_of(info: Info) -> PrefetchPlan:
    plan: PrefetchPlan = info.schema.prefetch_plan  # type: ignore[attr-defined]
    return plan


# --- resolving from what was loaded -------------------------------------------------------------


def _loaded(loader: DataLoader[K, Any], key: K) -> tuple[bool, Any]:
    future = loader.cache_map.get(key)
    if future is None or not future.done() or future.cancelled() or future.exception():
        return False, None
    return True, future.result()


def resolved(
    loader: DataLoader[K, V | None], key: K | None, convert: Callable[[V], R]
) -> R | Awaitable[R | None] | None:
    """The field's value now if ``key`` is already loaded, else an awaitable that loads it."""
    if key is None:
        return None
    ready, value = _loaded(loader, key)
    if ready:
        return convert(value) if value is not None else None

    async def later() -> R | None:
        loaded = await loader.load(key)
        return convert(loaded) if loaded is not None else None

    return later()


def resolved_list(
    loader: DataLoader[K, list[V]], key: K, convert: Callable[[V], R]
) -> list[R] | Awaitable[list[R]]:
    """Like ``resolved`` for a field whose loader returns a list per key."""
    ready, values = _loaded(loader, key)
    if ready:
        return [convert(value) for value in values or ()]

    async def later() -> list[R]:
        return [convert(value) for value in await loader.load(key)]

    return later()


async def preload(loader: DataLoader[K, V], keys: Iterable[K]) -> list[V]:
    """Load ``keys`` through ``loader``'s own batch function and cache the results in it.

    Unlike ``load_many`` this creates no future, callback or gather per key, which is most of
    a DataLoader's cost when every key of a page is known at once.
    """
    wanted = list(dict.fromkeys(keys))
    cache = loader.cache_map
    missing = [key for key in wanted if cache.get(key) is None]
    if missing:
        values = await loader.load_fn(missing)
        # A batch function may answer one key with an exception; that key stays unloaded and
        # its field reports the failure when it loads the key itself.
        loader.prime_many(
            {k: v for k, v in zip(missing, values, strict=True) if not isinstance(v, BaseException)}
        )
    results: list[V] = []
    for key in wanted:
        future = cache.get(key)
        if future is not None:
            results.append(future.result() if future.done() else await future)
    return results


# --- walking the selection ----------------------------------------------------------------------


def _fields(selections: Iterable[Selection]) -> list[SelectedField]:
    fields: list[SelectedField] = []
    for selection in selections:
        if isinstance(selection, SelectedField):
            fields.append(selection)
        elif isinstance(selection, (FragmentSpread, InlineFragment)):
            fields.extend(_fields(selection.selections))
    return fields


def node_selections(info: Info, *path: str) -> list[SelectedField]:
    """The fields selected under ``path`` (e.g. ``edges``, ``node``) of the current field."""
    # selected_fields holds the current field itself; its selections are the first level.
    current = _fields(s for field in _fields(info.selected_fields) for s in field.selections)
    for name in path:
        current = _fields(s for field in current if field.name == name for s in field.selections)
    return current


Level = list[tuple[str, Sequence[Any], list[SelectedField]]]


async def prefetch(info: Info, type_name: str, records: Sequence[Any], *path: str) -> None:
    """Load the nested fields selected under ``path`` for ``records`` (of ``type_name``),
    level by level."""
    await _load_levels(info, [(type_name, records, node_selections(info, *path))])


class PagePrefetch:
    """A page's nested fields: those whose loaders can be read in the page's own statement
    (``companions``, given to the page's read), then the rest, level by level.

        nested = PagePrefetch(info, "Incident", "edges", "node")
        page = await reads.page(where, ordering, request, nested.companions)
        await nested.finish(page.items)
    """

    def __init__(self, info: Info, type_name: str, *path: str) -> None:
        self._info = info
        self._type_name = type_name
        known = plan_of(info).fields.get(type_name, {})
        loaders = info.context.loaders
        reads: dict[tuple[int, str], FoldedRead] = {}
        self._folded: list[tuple[FoldedRead, str, list[SelectedField]]] = []
        self._rest: list[SelectedField] = []
        for field in node_selections(info, *path):
            planned = known.get(field.name)
            read = planned.how.fold(loaders, field.arguments) if planned is not None else None
            if planned is None or read is None:
                self._rest.append(field)
                continue
            # The same field selected twice (fragments, aliases) is read once.
            read = reads.setdefault((id(read.loader), read.companion.key), read)
            self._folded.append((read, planned.child_type, _fields(field.selections)))
        self.companions = [read.companion for read in reads.values()]

    async def finish(self, records: Sequence[Any]) -> None:
        """Prime the loaders with what the page's statement read; load the rest."""
        level: Level = [(self._type_name, records, self._rest)] if self._rest else []
        for read, child_type, child_fields in self._folded:
            children = read.receive(records)
            if children and child_fields:
                level.append((child_type, children, child_fields))
        await _load_levels(self._info, level)


async def _load_levels(info: Info, level: Level) -> None:
    plan = plan_of(info).fields
    loaders = info.context.loaders
    while level:
        jobs: list[Awaitable[list[Any]]] = []
        next_level: list[tuple[str, list[SelectedField]]] = []
        for current_type, parents, fields in level:
            known = plan.get(current_type, {})
            for field in fields:
                planned = known.get(field.name)
                if planned is None or not parents:
                    continue
                jobs.append(planned.how.load(loaders, parents, field.arguments))
                next_level.append((planned.child_type, _fields(field.selections)))
        if not jobs:
            return
        # All loads of a level are awaited together, so their loaders batch in the same tick.
        outcomes = await asyncio.gather(*jobs, return_exceptions=True)
        level = []
        for outcome, (child_type, child_fields) in zip(outcomes, next_level, strict=True):
            if isinstance(outcome, BaseException):
                # The field will load (and report the problem) itself when it resolves.
                continue
            if outcome and child_fields:
                level.append((child_type, outcome, child_fields))
