"""Look-ahead loading: a page's nested fields are loaded before the page is resolved.

A connection resolver knows, from the selection set, which nested fields the caller asked for.
It loads them for every node of the page at once, level by level, through the same per-request
DataLoaders the fields use — one statement per field per level, as the loaders would issue
anyway. The nested fields then find their values already loaded and resolve without awaiting,
which spares the executor an awaitable (and an asyncio task) per field per node: on a page of
50 incidents that is several hundred.

Prefetching is only an optimisation: a field whose value was not prefetched (a different
argument, an unusual fragment) loads it itself, asynchronously, through the same loader.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from strawberry.dataloader import DataLoader
from strawberry.types.nodes import FragmentSpread, InlineFragment, SelectedField, Selection

from api.graph.context import Info, Loaders

K = TypeVar("K")
V = TypeVar("V")
R = TypeVar("R")

# A prefetcher loads one field for many parents and returns the child type and child records.
Prefetcher = Callable[[Loaders, Sequence[Any], Mapping[str, Any]], Awaitable[tuple[str, list[Any]]]]
PREFETCHERS: dict[str, dict[str, Prefetcher]] = defaultdict(dict)


def prefetcher(type_name: str, field: str) -> Callable[[Prefetcher], Prefetcher]:
    """Register how ``type_name.field`` is loaded for many parents at once."""

    def register(function: Prefetcher) -> Prefetcher:
        PREFETCHERS[type_name][field] = function
        return function

    return register


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


def reference(
    type_name: str,
    field: str,
    child_type: str,
    loader: Callable[[Loaders], DataLoader[Any, Any]],
    key: str,
) -> None:
    """Register ``type_name.field`` as the record ``loader`` finds by the parent's ``key``."""

    async def load(
        loaders: Loaders, parents: Sequence[Any], _: Mapping[str, Any]
    ) -> tuple[str, list[Any]]:
        keys = {getattr(parent, key) for parent in parents} - {None}
        return child_type, [record for record in await preload(loader(loaders), keys) if record]

    PREFETCHERS[type_name][field] = load


def children(
    type_name: str,
    field: str,
    child_type: str,
    loader: Callable[[Loaders], DataLoader[Any, list[Any]]],
) -> None:
    """Register ``type_name.field`` as the list ``loader`` finds by the parent's id."""

    async def load(
        loaders: Loaders, parents: Sequence[Any], _: Mapping[str, Any]
    ) -> tuple[str, list[Any]]:
        found = await preload(loader(loaders), [parent.id for parent in parents])
        return child_type, [record for records in found for record in records]

    PREFETCHERS[type_name][field] = load


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


async def prefetch(
    loaders: Loaders, type_name: str, records: Sequence[Any], selections: list[SelectedField]
) -> None:
    """Load the selected nested fields of ``records`` (of ``type_name``), level by level."""
    level: list[tuple[str, Sequence[Any], list[SelectedField]]] = [(type_name, records, selections)]
    while level:
        jobs: list[Awaitable[tuple[str, list[Any]]]] = []
        children_selections: list[list[SelectedField]] = []
        for current_type, parents, fields in level:
            known = PREFETCHERS.get(current_type, {})
            for field in fields:
                load = known.get(field.name)
                if load is None or not parents:
                    continue
                jobs.append(load(loaders, parents, field.arguments))
                children_selections.append(_fields(field.selections))
        if not jobs:
            return
        # All loads of a level are awaited together, so their loaders batch in the same tick.
        outcomes = await asyncio.gather(*jobs, return_exceptions=True)
        level = []
        for outcome, child_fields in zip(outcomes, children_selections, strict=True):
            if isinstance(outcome, BaseException):
                # The field will load (and report the problem) itself when it resolves.
                continue
            child_type, children = outcome
            if children and child_fields:
                level.append((child_type, children, child_fields))
