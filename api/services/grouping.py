"""Work done in groups: what arrives while a group is being done waits, and is done together.

Writes that hold the same rows to their commit (a licence's ledger, the audit chain's head) go
one commit at a time however many callers there are; done in groups, one commit carries many.
A lone item is done at once (nothing waits for a group to fill), so grouping adds nothing when
there is no load and multiplies throughput when there is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from api.domain.errors import ServiceUnavailable

T = TypeVar("T")
R = TypeVar("R")


@dataclass(slots=True)
class Pending(Generic[T, R]):
    """An item waiting for its group, and its caller's answer."""

    item: T
    outcome: asyncio.Future[R] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    @property
    def abandoned(self) -> bool:
        return self.outcome.done()

    def answer(self, outcome: R | BaseException) -> bool:
        """Resolve the caller's wait; False if it stopped waiting (it was cancelled)."""
        if self.outcome.done():
            return False
        if isinstance(outcome, Exception):
            self.outcome.set_exception(outcome)
        elif isinstance(outcome, BaseException):
            self.outcome.cancel()
        else:
            self.outcome.set_result(outcome)
        return True


class Grouping(Generic[T, R]):
    """Items under the same key done a group at a time by ``handle``, which answers each."""

    def __init__(
        self,
        handle: Callable[[list[Pending[T, R]]], Awaitable[None]],
        *,
        group_size: int,
        max_waiting: int | None,
        name: str,
        skip_abandoned: bool = True,
    ) -> None:
        """``group_size``: the most items in one group; ``max_waiting``: the most items of one
        key waiting (more are refused at once with ServiceUnavailable; None: no bound of its own,
        for items that something else bounds); ``skip_abandoned``:
        whether an item whose caller stopped waiting is dropped (an admission nobody will use)
        or still done (a settlement, which must happen whoever waits for it)."""
        self._handle = handle
        self._group_size = group_size
        self._max_waiting = max_waiting
        self._name = name
        self._skip_abandoned = skip_abandoned
        self._queues: dict[Hashable, list[Pending[T, R]]] = {}
        self._serving: set[asyncio.Task[None]] = set()

    async def submit(self, key: Hashable, item: T) -> R:
        """Do ``item`` in the next group of ``key``; its answer (or the exception it got)."""
        pending: Pending[T, R] = Pending(item)
        queue = self._queues.get(key)
        if queue is None:
            self._queues[key] = [pending]
            task = asyncio.create_task(self._serve(key), name=self._name)
            self._serving.add(task)
            task.add_done_callback(self._serving.discard)
        elif self._max_waiting is not None and len(queue) >= self._max_waiting:
            raise ServiceUnavailable("too many requests are waiting; retry in a moment")
        else:
            queue.append(pending)
        return await pending.outcome

    async def close(self) -> None:
        """Let the groups under way finish (their callers are answered)."""
        if self._serving:
            await asyncio.wait(set(self._serving), timeout=30)

    async def _serve(self, key: Hashable) -> None:
        queue = self._queues[key]
        try:
            while queue:
                group = [
                    p
                    for p in queue[: self._group_size]
                    if not (self._skip_abandoned and p.abandoned)
                ]
                del queue[: self._group_size]
                if not group:
                    continue
                try:
                    await self._handle(group)
                except BaseException as error:
                    for pending in group:
                        pending.answer(error)
                    if not isinstance(error, Exception):
                        raise
                for pending in group:  # a handler that left one unanswered: never hang
                    pending.answer(RuntimeError(f"{self._name}: the item was not answered"))
        finally:
            del self._queues[key]
            for pending in queue:  # only if this task itself was cancelled
                pending.outcome.cancel()
