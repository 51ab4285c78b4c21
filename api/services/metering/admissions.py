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

from dataclasses import dataclass

import structlog

from api.access.scope import AccessGate, OperationDescription, record_together
from api.auth.principal import Principal
from api.auth.tokens import InvalidToken
from api.domain.errors import DomainError
from api.services.grouping import Grouping, Pending
from api.services.metering import chat
from api.services.metering.meter import Admission, Meter
from api.timing import Timings

log = structlog.get_logger(__name__)

GroupKey = tuple[tuple[str, str], ...]
# What the audit records of an admission, and of a settlement or release, say was done.
ADMISSION = OperationDescription(
    category="inference", name="POST /v1/chat/completions", kind="rest"
)
SETTLEMENT = OperationDescription(
    category="inference", name="settle /v1/chat/completions", kind="rest"
)


@dataclass(frozen=True, slots=True)
class _Call:
    principal: Principal
    request_id: str
    request: chat.ChatRequest
    timings: Timings


class AdmissionDesk:
    """Admits one process's metered calls, a group per licensee identity at a time."""

    def __init__(
        self, gate: AccessGate, meter: Meter, *, group_size: int, max_waiting: int
    ) -> None:
        """``group_size``: the most calls admitted in one transaction; ``max_waiting``: the most
        calls of one licensee waiting for their group (more are refused with 503 at once)."""
        self._gate = gate
        self._meter = meter
        self._groups: Grouping[_Call, Admission] = Grouping(
            self._admit, group_size=group_size, max_waiting=max_waiting, name="admissions"
        )

    async def admit(
        self, principal: Principal, request_id: str, request: chat.ChatRequest, timings: Timings
    ) -> Admission:
        """Admit ``request`` for ``principal``, with the calls of the same licensee that arrive
        meanwhile. Raises ``InvalidToken`` (the token no longer stands), a ``DomainError``
        (refused, audited, nothing reserved) or the database's error."""
        call = _Call(principal, request_id, request, timings)
        return await self._groups.submit(identity_group(principal), call)

    async def close(self) -> None:
        await self._groups.close()

    async def _admit(self, group: list[Pending[_Call, Admission]]) -> None:
        gate, meter = self._gate, self._meter
        uow = gate.unit_of_work(group[0].item.principal, lambda: "metering-admission")
        admitted: list[tuple[Pending[_Call, Admission], Admission | DomainError]] = []
        async with uow:
            principals = [pending.item.principal for pending in group]
            problems = await gate.authenticator.check_many(uow, principals)
            standing = []
            for pending, problem in zip(group, problems, strict=True):
                if problem is None:
                    standing.append(pending)
                else:
                    pending.answer(InvalidToken(problem))
            if standing:
                calls = [pending.item for pending in standing]
                scopes = [gate.over(c.principal, c.request_id, uow, c.timings) for c in calls]
                outcomes = await meter.admit_group(scopes, [c.request for c in calls])
                await record_together(scopes, ADMISSION)
                admitted = list(zip(standing, outcomes, strict=True))
        for pending, outcome in admitted:
            if not pending.answer(outcome) and isinstance(outcome, Admission):
                # Its caller left while the group was admitted: give the reservation back now
                # rather than when its lease runs out.
                await self._release(pending.item, outcome)

    async def _release(self, call: _Call, admission: Admission) -> None:
        try:
            async with self._gate.transaction(
                call.principal, call.request_id, lambda: SETTLEMENT, timings=call.timings
            ) as access:
                await self._meter.release(access, admission, "CANCELLED", streamed=False)
        except Exception as error:  # its lease gives it back later
            log.warning(
                "metering.release_failed", request=str(admission.request_id), error=repr(error)
            )


def identity_group(principal: Principal) -> GroupKey:
    """Callers whose identities differ only in their subject share a group."""
    identity = principal.database_settings()
    return tuple(sorted((k, v) for k, v in identity.items() if k != "lighthouse.subject"))
