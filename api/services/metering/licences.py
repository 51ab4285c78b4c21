"""Licences as the graph and REST read and change them: a licensee sees its own company's, the
city sees all (``licensing.view.*``); the city's licensing officers suspend, resume and revoke
(``licensing.manage.city``). Row-level security says the same in the database."""

from __future__ import annotations

from dataclasses import dataclass

from api.access.scope import AccessScope
from api.domain.errors import InvalidInput, NotFound
from api.domain.licensing import Licence, Usage
from api.policy import resources
from api.repositories.licensing import LicensingRepository, QuotaLedger

MAX_LICENCES = 500  # the city's whole register, in one answer


@dataclass(frozen=True, slots=True)
class LicenceView:
    licence: Licence
    usage: Usage | None  # this period's ledger; None if nothing was used yet


class LicenceReads:
    def __init__(self, access: AccessScope, zone: str) -> None:
        self._access = access
        self._zone = zone

    async def licences(self) -> list[LicenceView]:
        """Every licence the caller may see, with this period's ledger."""
        access = self._access
        repository = LicensingRepository(access.uow)
        principal = access.principal
        if principal.licensee_id is not None:
            found = await repository.licences_of([principal.licensee_id])
            licences = found.get(principal.licensee_id, [])
        else:
            licences = await repository.all_licences(MAX_LICENCES)
        decisions = access.authorizer.decide_many(
            "ViewLicence", [resources.licence_entity(lic.id, lic.licensee_id) for lic in licences]
        )
        visible = [
            lic for lic, decision in zip(licences, decisions, strict=True) if decision.allowed
        ]
        ledger = QuotaLedger(access.uow, self._zone)
        views = [LicenceView(lic, await ledger.usage(lic.id)) for lic in visible]
        access.audit.saw("Licence", [lic.id for lic in visible])
        return views


class LicenceAdmin:
    def __init__(self, access: AccessScope) -> None:
        self._access = access

    async def suspend(self, licence_id: int, reason: str) -> Licence:
        if not 1 <= len(reason.strip()) <= 500:
            raise InvalidInput("reason", "say why, in at most 500 characters")
        return await self._change(licence_id, "suspend", reason.strip())

    async def resume(self, licence_id: int) -> Licence:
        return await self._change(licence_id, "resume", None)

    async def revoke(self, licence_id: int) -> Licence:
        return await self._change(licence_id, "revoke", None)

    async def _change(self, licence_id: int, change: str, reason: str | None) -> Licence:
        access = self._access
        access.audit.targeted("Licence", licence_id)
        access.authorize("ManageLicensing", resources.LICENSING)
        repository = LicensingRepository(access.uow)
        if change == "suspend":
            assert reason is not None
            changed = await repository.suspend(licence_id, reason)
        elif change == "resume":
            changed = await repository.resume(licence_id)
        else:
            changed = await repository.revoke(licence_id)
        if changed is None:
            if not await repository.licences([licence_id]):
                raise NotFound("licence", licence_id)
            raise InvalidInput("licence", "the licence is suspended already")
        access.audit.saw("Licence", licence_id)
        return changed
