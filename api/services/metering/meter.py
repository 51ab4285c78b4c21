"""The metered call's two transactions: admission (the licence chosen and checked, the request's
largest cost reserved) before the model is asked, and the settlement (its real use charged, its
usage record and audit record written together) or release (nothing charged) after.

Each runs in a short transaction of the caller's own (``RequestTransaction.transaction``), so no
connection is held while the model works, and the ledger's functions keep the quotas exact
across every gateway process.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from api.access.scope import AccessScope
from api.domain.errors import DomainError, Forbidden, InvalidInput, NotFound
from api.domain.licensing import Cost, Licence, QuotaExceeded, QuotaPeriod, Refusal
from api.policy import resources
from api.repositories.licensing import LicensingRepository, QuotaLedger, UsageRecord, UsageRecords
from api.services.metering import chat
from api.settings import MeteringSettings


@dataclass(frozen=True, slots=True)
class Admission:
    request_id: uuid.UUID
    model: str
    licence: Licence
    reserved: Cost
    max_tokens: int
    started_at: datetime


@dataclass(frozen=True, slots=True)
class Ending:
    """How a call ended: ``status`` OK (read to its end), FAILED or CANCELLED (its client left),
    and ``used``: what it is charged (its usage record says OK: charged), or None (released,
    charged nothing, recorded with its status). A stream left or broken off midway is charged
    what it delivered (``streams``): FAILED or CANCELLED with a cost, which its audit record
    tells apart (its usage record says OK: the table keeps zeros for every other status)."""

    admission: Admission
    used: Cost | None
    status: str
    streamed: bool


class Meter:
    def __init__(self, settings: MeteringSettings, zone: str) -> None:
        self._settings = settings
        self._zone = zone
        self._bounds = chat.Bounds(settings.image_tokens, settings.message_tokens)

    async def licences(self, access: AccessScope) -> list[Licence]:
        """The caller's company's licences it may invoke now: those the ledger would admit a
        call on (valid now by the database's clock, neither suspended nor revoked, the company
        active) and the policies let it invoke."""
        principal = access.principal
        if principal.licensee_id is None:
            return []
        usable = await LicensingRepository(access.uow).usable_licences_of(principal.licensee_id)
        entities = [resources.licence_entity(lic.id, lic.licensee_id) for lic in usable]
        decisions = access.authorizer.decide_many("InvokeModel", entities)
        return [lic for lic, decision in zip(usable, decisions, strict=True) if decision.allowed]

    async def admit(self, access: AccessScope, request: chat.ChatRequest) -> Admission:
        """Choose the licence that covers ``request``, check it against the licence, and
        reserve its largest cost. Raises a DomainError (nothing reserved) when it may not run."""
        (outcome,) = await self.admit_group([access], [request])
        if isinstance(outcome, DomainError):
            raise outcome
        return outcome

    async def admit_group(
        self, scopes: Sequence[AccessScope], requests: Sequence[chat.ChatRequest]
    ) -> list[Admission | DomainError]:
        """``admit`` for several callers of one licensee sharing one transaction (each with its
        own scope, decisions and audit record): their licences are read once and each licence's
        reservations made in one call, in the callers' order. One outcome per caller; a refused
        one (its scope's outcome set) has nothing reserved."""
        uow = scopes[0].uow
        licensee = scopes[0].principal.licensee_id
        outcomes: list[Admission | DomainError | None] = [None] * len(scopes)
        if licensee is None:
            forbidden = Forbidden("metered inference is for licensees' clients (inference:invoke)")
            return [self._refused(access, forbidden) for access in scopes]
        found = await LicensingRepository(uow).licences_of([licensee])
        mine = found.get(licensee, [])
        wanted: dict[int, list[tuple[int, uuid.UUID, Cost, Licence, int]]] = {}
        for n, (access, request) in enumerate(zip(scopes, requests, strict=True)):
            try:
                licence, max_tokens, cost = self._choose(access, request, mine)
            except DomainError as error:
                outcomes[n] = self._refused(access, error)
                continue
            wanted.setdefault(licence.id, []).append((n, uuid.uuid4(), cost, licence, max_tokens))
        ledger = QuotaLedger(uow, self._zone)
        lease = timedelta(seconds=self._settings.lease_seconds)
        for licence_id, group in wanted.items():
            refusals = await ledger.reserve_many(
                licence_id, [(request_id, cost) for _, request_id, cost, _, _ in group], lease
            )
            started = datetime.now(UTC)
            for (n, request_id, cost, licence, max_tokens), refusal in zip(
                group, refusals, strict=True
            ):
                access = scopes[n]
                if refusal is not None:
                    quota = QuotaExceeded(refusal, self._retry_after(refusal, licence))
                    outcomes[n] = self._refused(access, quota)
                    continue
                access.audit.saw("Licence", licence.id)
                access.audit.notes.append(f"reserved {request_id}")
                outcomes[n] = Admission(
                    request_id, requests[n].model, licence, cost, max_tokens, started
                )
        return [outcome for outcome in outcomes if outcome is not None]

    def _choose(
        self, access: AccessScope, request: chat.ChatRequest, mine: list[Licence]
    ) -> tuple[Licence, int, Cost]:
        """The licence ``request`` is charged to, its capped ``max_tokens`` and its largest
        cost; a DomainError if no licence of the caller's lets it run."""
        covering = [licence for licence in mine if request.model in licence.models]
        if not covering:
            access.audit.targeted("Model", request.model)
            raise NotFound("model", request.model)
        if request.purpose is not None:
            covering = [licence for licence in covering if licence.purpose == request.purpose]
            if not covering:
                raise Forbidden(
                    f"no licence of yours covers {request.model} for the purpose "
                    f"{request.purpose!r}"
                )
        elif len({licence.purpose for licence in covering}) > 1:
            purposes = ", ".join(sorted({licence.purpose for licence in covering}))
            raise InvalidInput(
                "metadata.purpose", f"several licences cover this model; name one of: {purposes}"
            )
        licence = _current(covering)
        access.audit.targeted("Licence", licence.id)
        access.authorize("InvokeModel", resources.licence_entity(licence.id, licence.licensee_id))
        max_tokens = chat.check(request, licence)
        return licence, max_tokens, chat.largest_cost(request, max_tokens, self._bounds)

    @staticmethod
    def _refused(access: AccessScope, error: DomainError) -> DomainError:
        access.audit.outcome = error.code
        return error

    async def settle(
        self, access: AccessScope, admission: Admission, used: Cost, *, streamed: bool
    ) -> bool:
        """Charge the request's real use and record it, in one transaction with its audit
        record; False if the reservation had run out (nothing is charged then)."""
        (held,) = await self.finish_group([access], [Ending(admission, used, "OK", streamed)])
        return held

    async def release(
        self, access: AccessScope, admission: Admission, status: str, *, streamed: bool
    ) -> None:
        """Give the reservation back (a failed or abandoned call) and record it, charged nothing."""
        await self.finish_group([access], [Ending(admission, None, status, streamed)])

    async def finish_group(
        self, scopes: Sequence[AccessScope], endings: Sequence[Ending]
    ) -> list[bool]:
        """Settle or release several calls sharing one transaction (each with its own scope
        and audit record): the ledger finished in one call, the usage records written in one
        statement. For each, whether its reservation was still held (if not, nothing is
        charged or recorded: it was finished before, or its lease ran out)."""
        uow = scopes[0].uow
        periods = await QuotaLedger(uow, self._zone).finish_many(
            [(ending.admission.request_id, ending.used) for ending in endings]
        )
        records = []
        finished = datetime.now(UTC)
        for access, ending, period in zip(scopes, endings, periods, strict=True):
            admission = ending.admission
            access.audit.saw("Licence", admission.licence.id)
            if ending.used is not None and period is None:
                access.audit.outcome = "RESERVATION_EXPIRED"
            elif ending.status != "OK":
                access.audit.outcome = ending.status
                if ending.used is not None:
                    access.audit.notes.append("charged what was delivered before it ended")
            if period is None:
                continue
            # What the ledger charged: the real use, never more than was reserved.
            used, held = ending.used or Cost(), admission.reserved
            billed = Cost(
                min(used.input_tokens, held.input_tokens),
                min(used.output_tokens, held.output_tokens),
                min(used.images, held.images),
            )
            records.append(_usage_record(access, ending, period, billed, finished))
            access.audit.saw("Usage", str(admission.request_id))
        await UsageRecords(uow).add_many(records)
        return [period is not None for period in periods]

    def _retry_after(self, refusal: Refusal, licence: Licence) -> int | None:
        now = datetime.now(ZoneInfo(self._zone))
        if refusal in (Refusal.RATE_REQUESTS, Refusal.RATE_TOKENS):
            return 60 - now.second
        if refusal is Refusal.CONCURRENCY:
            return 1
        if refusal.is_quota:
            if licence.quota_period is QuotaPeriod.DAY:
                following = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0)
            else:
                following = (now.replace(day=28) + timedelta(days=4)).replace(
                    day=1, hour=0, minute=0, second=0
                )
            return max(1, int((following - now).total_seconds()))
        return None


def _usage_record(
    access: AccessScope, ending: Ending, period: datetime, billed: Cost, finished: datetime
) -> UsageRecord:
    principal, admission = access.principal, ending.admission
    assert principal.licensee_id is not None
    return UsageRecord(
        request_id=admission.request_id,
        licence_id=admission.licence.id,
        licensee_id=principal.licensee_id,
        period_start=period,
        client_id=principal.client_id or principal.subject,
        model=admission.model,
        purpose=admission.licence.purpose,
        status=ending.status if ending.used is None else "OK",
        input_tokens=billed.input_tokens,
        output_tokens=billed.output_tokens,
        images=billed.images,
        streamed=ending.streamed,
        latency_ms=int((finished - admission.started_at).total_seconds() * 1000),
        started_at=admission.started_at,
    )


def _current(licences: list[Licence]) -> Licence:
    """Of several licences for the same model and purpose, the one to charge: a usable one
    (valid now, not suspended or revoked) first, the oldest of those. The ledger decides again
    whether it may be used."""
    now = datetime.now(UTC)

    def usable(licence: Licence) -> bool:
        return (
            licence.revoked_at is None
            and licence.suspended_at is None
            and licence.valid_from <= now < licence.valid_until
        )

    return sorted(licences, key=lambda licence: (not usable(licence), licence.id))[0]
