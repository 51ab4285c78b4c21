"""Metered calls settled (or released) in groups, as they are admitted (see ``admissions``).

Each call's use is charged in the same transaction as its usage record and its audit record; a
group of calls of one licensee that end together share that transaction. A settlement is never
dropped: one whose caller stopped waiting is still done, and a group that meets a deadlock (a
group's reservations may span licences or periods) is tried again.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import structlog

from api.access.scope import AccessGate, record_together
from api.auth.principal import Principal
from api.domain.errors import ServiceUnavailable
from api.services.grouping import Grouping, Pending
from api.services.metering.admissions import SETTLEMENT, identity_group
from api.services.metering.meter import Ending, Meter
from api.timing import Timings

log = structlog.get_logger(__name__)

ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class _Finish:
    principal: Principal
    request_id: str
    timings: Timings
    ending: Ending


class SettlementDesk:
    """Settles one process's metered calls, a group per licensee identity at a time."""

    def __init__(self, gate: AccessGate, meter: Meter, *, group_size: int) -> None:
        self._gate = gate
        self._meter = meter
        # No bound of its own: every call waiting here was admitted, and admissions are bounded.
        self._groups: Grouping[_Finish, bool] = Grouping(
            self._finish,
            group_size=group_size,
            max_waiting=None,
            name="settlements",
            skip_abandoned=False,
        )

    async def finish(
        self, principal: Principal, request_id: str, timings: Timings, ending: Ending
    ) -> bool:
        """Settle or release the call ``ending`` describes, with the calls of the same licensee
        that end meanwhile; whether its reservation was still held. The token is not checked
        again: the call was admitted, and what it used is charged even if the token expired or
        was revoked while the model worked."""
        item = _Finish(principal, request_id, timings, ending)
        return await self._groups.submit(identity_group(principal), item)

    async def close(self) -> None:
        await self._groups.close()

    async def _finish(self, group: list[Pending[_Finish, bool]]) -> None:
        # One lock order for every group (a licence's rows, licence by licence), so two groups
        # never wait for each other in a circle; what still deadlocks is tried again.
        group = sorted(group, key=lambda p: p.item.ending.admission.licence.id)
        for attempt in range(1, ATTEMPTS + 1):
            try:
                held = await self._finish_once([pending.item for pending in group])
            except (ServiceUnavailable, asyncpg.DeadlockDetectedError) as error:
                if attempt == ATTEMPTS:
                    raise
                log.warning("metering.settlement_retried", attempt=attempt, error=str(error))
                continue
            for pending, outcome in zip(group, held, strict=True):
                pending.answer(outcome)
            return

    async def _finish_once(self, items: list[_Finish]) -> list[bool]:
        gate = self._gate
        async with gate.unit_of_work(items[0].principal, lambda: "metering-settlement") as uow:
            scopes = [gate.over(i.principal, i.request_id, uow, i.timings) for i in items]
            held = await self._meter.finish_group(scopes, [i.ending for i in items])
            await record_together(scopes, SETTLEMENT)
        return held
