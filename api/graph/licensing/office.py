"""The city's licensing officers' mutations (licensing:admin): licensees, licences, and their
clients' credentials."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

import strawberry

from api.domain.errors import DomainError, InvalidInput
from api.domain.licensing import LicenceTerms, QuotaPeriod
from api.graph.core import errors
from api.graph.core.context import Info
from api.graph.core.ids import decode_id
from api.graph.licensing.types import (
    ClientCredentials,
    DisabledClient,
    Licence,
    Licensee,
    licence_of,
    licensee_of,
)
from api.repositories.licensing import Contact as ContactRecord
from api.services.metering.licences import LicenceView, LicensingOffice


@strawberry.input
class ContactInput:
    name: str
    email: str
    phone: str | None = None


@strawberry.input(description="Per quota period.")
class QuotasInput:
    requests: int
    input_tokens: int
    output_tokens: int
    images: int


@strawberry.input
class LicenceInput:
    licensee: strawberry.ID
    code: str = strawberry.field(description="e.g. LIC-2027-0001")
    models: list[str]
    purpose: str = strawberry.field(description="The approved application, as a tag.")
    purpose_description: str
    valid_from: datetime
    valid_until: datetime
    quota_period: str = strawberry.field(default="MONTH", description="DAY or MONTH")
    quotas: QuotasInput
    requests_per_minute: int
    tokens_per_minute: int
    max_concurrent: int
    max_tokens: int
    max_images: int = 1
    max_image_bytes: int = 4 * 1024 * 1024
    own_compute: bool = False


LicenseeResult = Annotated[
    Licensee | errors.InvalidInput | errors.Forbidden, strawberry.union("LicenseeResult")
]
IssueLicenceResult = Annotated[
    Licence | errors.InvalidInput | errors.NotFound | errors.Forbidden,
    strawberry.union("IssueLicenceResult"),
]
CredentialsResult = Annotated[
    ClientCredentials | errors.InvalidInput | errors.NotFound | errors.Forbidden,
    strawberry.union("CredentialsResult"),
]
DisableClientResult = Annotated[
    DisabledClient | errors.NotFound | errors.Forbidden, strawberry.union("DisableClientResult")
]


def _failed(info: Info, error: DomainError) -> errors.ErrorType:
    info.context.audit.outcome = error.code
    return errors.to_graphql(error)


def _new_licence(value: LicenceInput) -> LicenceTerms:
    try:
        period = QuotaPeriod(value.quota_period)
    except ValueError:
        raise InvalidInput("quotaPeriod", "DAY or MONTH") from None
    return LicenceTerms(
        licensee_id=decode_id(value.licensee, "Licensee", "licensee"),
        code=value.code,
        models=value.models,
        purpose=value.purpose,
        purpose_description=value.purpose_description,
        valid_from=value.valid_from,
        valid_until=value.valid_until,
        quota_period=period,
        quota_requests=value.quotas.requests,
        quota_input_tokens=value.quotas.input_tokens,
        quota_output_tokens=value.quotas.output_tokens,
        quota_images=value.quotas.images,
        requests_per_minute=value.requests_per_minute,
        tokens_per_minute=value.tokens_per_minute,
        max_concurrent=value.max_concurrent,
        max_tokens=value.max_tokens,
        max_images=value.max_images,
        max_image_bytes=value.max_image_bytes,
        own_compute=value.own_compute,
    )


@strawberry.type
class LicensingOfficeMutations:
    @strawberry.federation.mutation(
        authenticated=True,
        requires_scopes=[["licensing:admin"]],
        description="Register a company as a licensee.",
    )
    async def create_licensee(
        self, info: Info, code: str, company: str, tax_id: str, contacts: list[ContactInput]
    ) -> LicenseeResult:
        try:
            record = await LicensingOffice(info.context.access).create_licensee(
                code, company, tax_id, [ContactRecord(c.name, c.email, c.phone) for c in contacts]
            )
        except DomainError as error:
            return _failed(info, error)  # type: ignore[return-value]
        return licensee_of(record)

    @strawberry.federation.mutation(
        authenticated=True,
        requires_scopes=[["licensing:admin"]],
        description="Issue a licence to a licensee.",
    )
    async def issue_licence(self, info: Info, licence: LicenceInput) -> IssueLicenceResult:
        try:
            record = await LicensingOffice(info.context.access).issue_licence(_new_licence(licence))
        except DomainError as error:
            return _failed(info, error)  # type: ignore[return-value]
        return licence_of(LicenceView(record, None))

    @strawberry.federation.mutation(
        authenticated=True,
        requires_scopes=[["licensing:admin"]],
        description="Give a licensee an OAuth client (inference:invoke and/or usage:read). The "
        "secret is in the answer this once.",
    )
    async def register_licensee_client(
        self, info: Info, licensee: strawberry.ID, client_id: str, name: str, scopes: list[str]
    ) -> CredentialsResult:
        try:
            key = decode_id(licensee, "Licensee", "licensee")
            issued = await LicensingOffice(info.context.access).register_client(
                key, client_id, name, scopes
            )
        except DomainError as error:
            return _failed(info, error)  # type: ignore[return-value]
        return ClientCredentials(client_id=issued.client_id, client_secret=issued.secret)

    @strawberry.federation.mutation(
        authenticated=True,
        requires_scopes=[["licensing:admin"]],
        description="A new secret for a licensee's client (in the answer this once); the old "
        "one works for overlapHours more.",
    )
    async def rotate_licensee_client_secret(
        self, info: Info, client_id: str, overlap_hours: float = 24.0
    ) -> CredentialsResult:
        try:
            if not 0 <= overlap_hours <= 24 * 30:
                raise InvalidInput("overlapHours", "from 0 to 720")
            issued = await LicensingOffice(info.context.access).rotate_secret(
                client_id, timedelta(hours=overlap_hours)
            )
        except DomainError as error:
            return _failed(info, error)  # type: ignore[return-value]
        return ClientCredentials(client_id=issued.client_id, client_secret=issued.secret)

    @strawberry.federation.mutation(
        authenticated=True,
        requires_scopes=[["licensing:admin"]],
        description="Disable a licensee's client: no new tokens, and its tokens stop at once.",
    )
    async def disable_licensee_client(self, info: Info, client_id: str) -> DisableClientResult:
        try:
            await LicensingOffice(info.context.access).disable_client(client_id)
        except DomainError as error:
            return _failed(info, error)  # type: ignore[return-value]
        return DisabledClient(client_id=client_id)
