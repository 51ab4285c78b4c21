"""Licences as the graph and REST read and change them: a licensee sees its own company's, the
city sees all (``licensing.view.*``); the city's licensing officers suspend, resume and revoke
(``licensing.manage.city``). Row-level security says the same in the database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from api.access.scope import AccessScope
from api.auth.clients import hash_secret, new_secret
from api.domain.errors import InvalidInput, NotFound
from api.domain.licensing import Licence, LicenceTerms, Usage
from api.policy import resources
from api.repositories.licensing import (
    Contact,
    LicenseeClients,
    LicenseeRecord,
    LicensingRepository,
    QuotaLedger,
)
from api.repositories.model_cards import LicensedVersion, ModelCardRepository

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
        usage = await QuotaLedger(access.uow, self._zone).usage_of([lic.id for lic in visible])
        views = [LicenceView(lic, usage.get(lic.id)) for lic in visible]
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
        async with access.uow.savepoint():
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


@dataclass(frozen=True, slots=True)
class IssuedSecret:
    client_id: str
    secret: str  # shown once; only its digest is kept


class LicensingOffice:
    """What the city's licensing officers do through the graph: register licensees, issue
    licences, and give, re-key and disable their clients. Each step is authorized
    (``licensing.manage.city``) and bound by row-level security and the database's functions."""

    def __init__(self, access: AccessScope) -> None:
        self._access = access

    def _authorize(self) -> None:
        self._access.authorize("ManageLicensing", resources.LICENSING)

    async def create_licensee(
        self, code: str, company: str, tax_id: str, contacts: list[Contact]
    ) -> LicenseeRecord:
        self._authorize()
        async with self._access.uow.savepoint():  # a refused row leaves the request usable
            record = await LicensingRepository(self._access.uow).create_licensee(
                code, company, tax_id, contacts, self._access.principal.subject
            )
        self._access.audit.saw("Licensee", record.id)
        return record

    async def issue_licence(self, new: LicenceTerms) -> Licence:
        self._authorize()
        if new.valid_from.tzinfo is None or new.valid_until.tzinfo is None:
            raise InvalidInput("validFrom", "dates need an offset")
        async with self._access.uow.savepoint():
            licence = await LicensingRepository(self._access.uow).create_licence(
                new, self._access.principal.subject
            )
        self._access.audit.saw("Licence", licence.id)
        return licence

    async def register_client(
        self, licensee_id: int, client_id: str, name: str, scopes: list[str]
    ) -> IssuedSecret:
        self._authorize()
        self._access.audit.targeted("Licensee", licensee_id)
        if not await LicensingRepository(self._access.uow).licensees([licensee_id]):
            raise NotFound("licensee", licensee_id)
        secret = new_secret()
        async with self._access.uow.savepoint():
            await LicenseeClients(self._access.uow).register(
                client_id, name, hash_secret(secret), scopes, licensee_id
            )
        self._access.audit.saw("Client", client_id)
        return IssuedSecret(client_id, secret)

    async def rotate_secret(self, client_id: str, overlap: timedelta) -> IssuedSecret:
        self._authorize()
        self._access.audit.targeted("Client", client_id)
        secret = new_secret()
        async with self._access.uow.savepoint():
            rekeyed = await LicenseeClients(self._access.uow).rekey(
                client_id, hash_secret(secret), overlap
            )
        if not rekeyed:
            raise NotFound("client", client_id)
        return IssuedSecret(client_id, secret)

    async def disable_client(self, client_id: str) -> None:
        self._authorize()
        self._access.audit.targeted("Client", client_id)
        async with self._access.uow.savepoint():
            disabled = await LicenseeClients(self._access.uow).disable(client_id)
        if not disabled:
            raise NotFound("client", client_id)


async def licensed_versions(
    access: AccessScope, licence_ids: Sequence[int]
) -> dict[int, list[LicensedVersion]]:
    """Each licence's models, with the version it pins and that version's newest model card
    (for licences the caller was shown; row-level security keeps the rest out)."""
    found = await ModelCardRepository(access.uow).licensed_versions(licence_ids)
    cards = [v.card.id for versions in found.values() for v in versions if v.card is not None]
    if cards:
        access.authorize("ViewModelCard", resources.MODELS)
        access.audit.saw("ModelCard", cards)
    return found
