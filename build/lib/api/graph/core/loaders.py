"""Per-scope DataLoaders, found by key on first use.

A loader class names what it loads; ``SomeLoader.of(info)`` returns the current scope's
instance, creating it on first use (Saleor's ``context_key`` pattern). Loaders live exactly as
long as one access scope — an operation, or one event of a subscription — so no cached row
outlives the transaction that read it and nothing one caller loaded is served to another. The
registry knows no domain: each domain's loaders register themselves.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

from strawberry.dataloader import DataLoader

from api.access.scope import AccessScope

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
