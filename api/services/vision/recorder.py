"""Group commit for the vision workers: analyses that finish at about the same time are
recorded together, one transaction per bureau, instead of one each.

A worker analyses many frames at once (``worker_concurrency``); each job hands its finished
analysis to the recorder and waits until the transaction that holds it has committed, so a job
is done only once its analysis is durable. The recorder waits a few milliseconds for others to
join (``linger``), takes at most ``max_batch``, and writes them. If a batch fails, each of its
analyses is written alone, so one bad analysis fails only its own job.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from api.auth.principal import Principal
from api.services.vision.pipeline import Analysed, Processed

Write = Callable[[Principal, Sequence[Analysed], str], Awaitable[list[Processed]]]


@dataclass(slots=True)
class _Waiting:
    item: Analysed
    job: str
    done: asyncio.Future[Processed]


class Recorder:
    def __init__(self, write: Write, *, max_batch: int = 64, linger_seconds: float = 0.005):
        self._write = write
        self._max_batch = max_batch
        self._linger = linger_seconds
        self._waiting: dict[Principal, list[_Waiting]] = {}
        self._flushing: dict[Principal, asyncio.Task[None]] = {}

    async def record(self, principal: Principal, item: Analysed, job: str) -> Processed:
        """Record ``item`` (with others of the same bureau); returns once it is committed."""
        done: asyncio.Future[Processed] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(principal, []).append(_Waiting(item, job, done))
        if principal not in self._flushing:
            self._flushing[principal] = asyncio.create_task(self._flush(principal))
        return await asyncio.shield(done)

    async def _flush(self, principal: Principal) -> None:
        try:
            while self._waiting.get(principal):
                if len(self._waiting[principal]) < self._max_batch:
                    await asyncio.sleep(self._linger)
                batch = self._waiting[principal][: self._max_batch]
                del self._waiting[principal][: self._max_batch]
                await self._write_batch(principal, batch)
        finally:
            self._flushing.pop(principal, None)
            # Left behind only if this task was cancelled: their jobs fail (and are retried).
            for waiting in self._waiting.pop(principal, []):
                _settle(waiting.done, error=asyncio.CancelledError("the recorder stopped"))

    async def _write_batch(self, principal: Principal, batch: list[_Waiting]) -> None:
        try:
            results = await self._write(principal, [w.item for w in batch], _jobs(batch))
        except Exception as error:
            if len(batch) == 1:
                _settle(batch[0].done, error=error)
                return
            # Find the one that breaks the batch: the others must not fail with it.
            for waiting in batch:
                try:
                    (result,) = await self._write(principal, [waiting.item], waiting.job)
                except Exception as alone:
                    _settle(waiting.done, error=alone)
                else:
                    _settle(waiting.done, result=result)
            return
        for waiting, result in zip(batch, results, strict=True):
            _settle(waiting.done, result=result)

    async def close(self) -> None:
        """Wait for what is being written."""
        tasks = list(self._flushing.values())
        if tasks:
            with contextlib.suppress(Exception):
                await asyncio.gather(*tasks)


def _jobs(batch: Sequence[_Waiting]) -> str:
    return batch[0].job if len(batch) == 1 else f"{batch[0].job}+{len(batch) - 1}"


def _settle(
    future: asyncio.Future[Processed],
    *,
    result: Processed | None = None,
    error: BaseException | None = None,
) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    elif result is not None:
        future.set_result(result)
