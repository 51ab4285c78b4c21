"""Per-scope DataLoaders, found by key on first use.

A loader class names what it loads; ``SomeLoader.of(info)`` returns the current scope's
instance, creating it on first use (Saleor's ``context_key`` pattern). Loaders live exactly as
long as one access scope — an operation, or one event of a subscription — so no cached row
outlives the transaction that read it and nothing one caller loaded is served to another. The
registry knows no domain: each domain's loaders register themselves.
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from collections import defaultdict
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

from strawberry.dataloader import DataLoader

from api.access.scope import AccessScope
from api.repositories.companions import Companion

if TYPE_CHECKING:
    from api.graph.core.context import Info

K = TypeVar("K")
V = TypeVar("V")


class ScopedLoader(DataLoader[K, V], Generic[K, V]):
    """A DataLoader bound to one access scope; subclasses implement ``load_batch``.

    Extra constructor arguments (a page size, a filter) make separate loaders: ``of(info, 3)``
    and ``of(info, 5)`` are two instances, each batching its own keys.
    """

    def __init__(self, access: AccessScope, *arguments: Any) -> None:
        super().__init__(load_fn=self.load_batch)
        self.access = access

    @abstractmethod
    async def load_batch(self, keys: Sequence[K]) -> Sequence[V | BaseException]:
        """The values for ``keys``, in order (an exception instance fails just that key)."""

    @classmethod
    def of(cls, info: Info, *arguments: Hashable) -> Self:
        return info.context.loaders.get(cls, arguments)

    def folded(self) -> Folded | None:
        """How a page reads this loader's values inside its own statement (see
        ``api.graph.core.prefetch.PagePrefetch``); None where it cannot, and loads them itself."""
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class Folded:
    """A loader's batch read as a companion of a page, and how its rows become values."""

    companion: Companion[Any]
    values: Callable[[Sequence[Any]], Mapping[Any, Any]]
    missing: Callable[[], Any]  # the value of a key no row answered
    records: Callable[[Any], list[Any]]  # the records in one key's value


def one_each(companion: Companion[Any], attribute: str) -> Folded:
    """A loader of one record (or None) per key, the key being the record's ``attribute``."""
    return Folded(
        companion,
        lambda records: {getattr(record, attribute): record for record in records},
        lambda: None,
        lambda value: [] if value is None else [value],
    )


def lists_of(companion: Companion[Any], attribute: str) -> Folded:
    """A loader of a list per key, the key being each record's ``attribute``, rows in the
    order read."""

    def values(records: Sequence[Any]) -> Mapping[Any, Any]:
        grouped: defaultdict[Any, list[Any]] = defaultdict(list)
        for record in records:
            grouped[getattr(record, attribute)].append(record)
        return grouped

    return Folded(companion, values, list, list)


L = TypeVar("L", bound=ScopedLoader[Any, Any])


class LoaderRegistry:
    """The loaders of one access scope, by class and arguments."""

    __slots__ = ("_loaders", "access")

    def __init__(self, access: AccessScope) -> None:
        self.access = access
        self._loaders: dict[object, ScopedLoader[Any, Any]] = {}

    def get(self, loader: type[L], arguments: tuple[Hashable, ...] = ()) -> L:
        key: object = (loader, arguments) if arguments else loader
        found = self._loaders.get(key)
        if found is None:
            found = self._loaders[key] = loader(self.access, *arguments)
        return found  # type: ignore[return-value]
