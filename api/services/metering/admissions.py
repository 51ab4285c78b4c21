"""Metered calls admitted in groups.

A licence's ledger rows are locked from a reservation until its transaction's commit is flushed,
so admitting each call in a transaction of its own admits one call per flush on a licence,
however many gateway processes there are. Here the calls of one licensee that arrive while a
group is being admitted wait for the next group, and each group is admitted in one transaction:
its callers' tokens checked in one statement, their licences read once, each licence's
reservations made in one call, and one audit record per caller, all committed together. A lone
call is admitted at once (nothing waits for a group to fill), so grouping costs nothing when
there is no load and multiplies admissions when there is.

The group's transaction runs under the identity its callers share: the same licensee, kind,
scopes and roles (only the subject differs, and each caller's audit record names its own), so
the ledger's check that the caller acts for the licence holds for every one of them.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import structlog

from api.access.scope import AccessGate, OperationDescription, record_together
from api.auth.principal import Principal
from api.auth.tokens import InvalidToken
from api.domain.errors import DomainError, ServiceUnavailable
from api.services.metering import chat
from api.services.metering.meter import Admission, Meter
from api.timing import Timings

log = structlog.get_logger(__name__)

GroupKey = tuple[tuple[str, str], ...]
# What the audit records of an admission, and of a release whose caller left, say was done.
ADMISSION = OperationDescription(
    category="inference", name="POST /v1/chat/completions", kind="rest"
)
RELEASE = OperationDescription(
    category="inference", name="settle /v1/chat/completions", kind="rest"
)


@dataclass(slots=True)
class _Waiting:
    principal: Principal
    request_id: str
    request: chat.ChatRequest
    timings: Timings
    outcome: asyncio.Future[Admission] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class AdmissionDesk:
    """Admits one process's metered calls, a group per licensee identity at a time."""

    def __init__(
        self,
        gate: AccessGate,
        meter: Meter,
        *,
        group_size: int,
        max_waiting: int,
    ) -> None:
        """``group_size``: the most calls admitted in one transaction; ``max_waiting``: the most
        calls of one licensee waiting for their group (more are refused with 503 at once)."""
        self._gate = gate
        self._meter = meter
        self._group_size = group_size
        self._max_waiting = max_waiting
        self._queues: dict[GroupKey, list[_Waiting]] = {}
        self._serving: set[asyncio.Task[None]] = set()

    async def admit(
        self, principal: Principal, request_id: str, request: chat.ChatRequest, timings: Timings
    ) -> Admission:
        """Admit ``request`` for ``principal``, with the calls of the same licensee that arrive
        meanwhile. Raises ``InvalidToken`` (the token no longer stands), a ``DomainError``
        (refused, audited, nothing reserved) or the database's error."""
        key = _group_key(principal)
        waiting = _Waiting(principal, request_id, request, timings)
        queue = self._queues.get(key)
        if queue is None:
            self._queues[key] = [waiting]
            task = asyncio.create_task(self._serve(key), name="metering-admissions")
            self._serving.add(task)
            task.add_done_callback(self._serving.discard)
        elif len(queue) >= self._max_waiting:
            raise ServiceUnavailable(
                "too many of your requests are waiting to be admitted; retry in a moment"
            )
        else:
            queue.append(waiting)
        return await waiting.outcome

    async def close(self) -> None:
        """Let the groups under way finish (their callers are answered)."""
        if self._serving:
            await asyncio.wait(set(self._serving), timeout=30)

    async def _serve(self, key: GroupKey) -> None:
        queue = self._queues[key]
        try:
            while queue:
                group = [w for w in queue[: self._group_size] if not w.outcome.done()]
                del queue[: self._group_size]
                if group:
                    await self._admit(group)
        finally:
            del self._queues[key]
            for waiting in queue:  # only if this task itself was cancelled
                waiting.outcome.cancel()

    async def _admit(self, group: list[_Waiting]) -> None:
        gate, meter = self._gate, self._meter
        uow = gate.unit_of_work(group[0].principal, lambda: "metering-admission")
        admitted: list[tuple[_Waiting, Admission | DomainError]] = []
        try:
            async with uow:
                problems = await gate.authenticator.check_many(uow, [w.principal for w in group])
                standing: list[_Waiting] = []
                for waiting, problem in zip(group, problems, strict=True):
                    if problem is None:
                        standing.append(waiting)
                    else:
                        _answer(waiting, InvalidToken(problem))
                if standing:
                    scopes = [
                        gate.over(w.principal, w.request_id, uow, w.timings) for w in standing
                    ]
                    outcomes = await meter.admit_group(scopes, [w.request for w in standing])
                    await record_together(scopes, ADMISSION)
                    admitted = list(zip(standing, outcomes, strict=True))
        except BaseException as error:
            for waiting in group:
                _answer(waiting, error)
            if not isinstance(error, Exception):
                raise
            return
        for waiting, outcome in admitted:
            if not _answer(waiting, outcome) and isinstance(outcome, Admission):
                # Its caller left while the group was admitted: give the reservation back now
                # rather than when its lease runs out.
                await self._release(waiting, outcome)

    async def _release(self, waiting: _Waiting, admission: Admission) -> None:
        with contextlib.suppress(Exception):
            async with self._gate.transaction(
                waiting.principal, waiting.request_id, lambda: RELEASE, timings=waiting.timings
            ) as access:
                await self._meter.release(access, admission, "CANCELLED", streamed=False)


def _answer(waiting: _Waiting, outcome: Admission | BaseException) -> bool:
    """Resolve the caller's wait; False if it stopped waiting."""
    if waiting.outcome.done():
        return False
    if isinstance(outcome, Exception):
        waiting.outcome.set_exception(outcome)
    elif isinstance(outcome, BaseException):
        waiting.outcome.cancel()
    else:
        waiting.outcome.set_result(outcome)
    return True


def _group_key(principal: Principal) -> GroupKey:
    """Callers whose identities differ only in their subject share a group."""
    identity = principal.database_settings()
    return tuple(sorted((k, v) for k, v in identity.items() if k != "lighthouse.subject"))
