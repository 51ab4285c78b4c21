"""Licences in the graph: terms, state, and this period's use."""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import Enum
from typing import Annotated

import strawberry

from api.domain.licensing import Licence as LicenceRecord
from api.graph.core.context import Info
from api.graph.core.ids import encode_id
from api.graph.licensing import usage
from api.graph.licensing.loaders import LicensedVersionsOf
from api.graph.licensing.usage import DailyUsage, UsageRecordConnection, UsageStatus
from api.graph.models.cards import ModelCard
from api.graph.models.vision_model import VisionModel
from api.repositories.licensing import LicenseeRecord
from api.services.metering.licences import LicenceView


@strawberry.enum(description="Whether a licence's clients may call its models now.")
class LicenceState(Enum):
    ACTIVE = "ACTIVE"
    NOT_YET_VALID = "NOT_YET_VALID"
    EXPIRED = "EXPIRED"
    SUSPENDED = "SUSPENDED"
    REVOKED = "REVOKED"


@strawberry.type(description="A model a licence covers, and the version it pins.")
class LicensedModel:
    model: str
    version: str | None
    card: ModelCard | None


@strawberry.type(description="Requests, input and output tokens and images.")
class Amounts:
    requests: int
    input_tokens: int
    output_tokens: int
    images: int


@strawberry.type(description="The current quota period's ledger.")
class LicenceUsage:
    period_start: datetime | None = strawberry.field(
        description="Null when nothing was used yet this period."
    )
    used: Amounts = strawberry.field(description="Settled: what the bill will say.")
    reserved: Amounts = strawberry.field(description="Held by requests under way.")
    remaining: Amounts = strawberry.field(description="What may still be admitted this period.")


@strawberry.type(description="Limits per minute and per request.")
class LicenceLimits:
    requests_per_minute: int
    tokens_per_minute: int
    max_concurrent: int
    max_tokens: int = strawberry.field(description="Answer tokens per request.")
    max_images: int = strawberry.field(description="Images per request.")
    max_image_bytes: int


@strawberry.type(description="What a licensee may do with which models, for what and how much.")
class Licence:
    id: strawberry.ID
    code: str
    licensee_id: int
    models: list[str]
    purpose: str = strawberry.field(description="The approved application, as requests tag it.")
    purpose_description: str
    valid_from: datetime
    valid_until: datetime
    state: LicenceState
    suspension_reason: str | None
    quota_period: str = strawberry.field(description="DAY or MONTH, in the city's time zone.")
    quotas: Amounts
    limits: LicenceLimits
    own_compute: bool
    usage: LicenceUsage
    key: strawberry.Private[int]

    @strawberry.field(
        description="The models it covers, as the model registry knows them (their versions "
        "and the detections they found, for those who may see them)."
    )
    def vision_models(self) -> list[VisionModel]:
        return [VisionModel(name=name) for name in self.models]

    @strawberry.field(
        description="The models it covers, each with the version it pins (null: licensed as "
        "the city serves it) and that version's newest model card (null: none published)."
    )
    async def model_versions(self, info: Info) -> list[LicensedModel]:
        found = await LicensedVersionsOf.of(info).load(self.key)
        return [
            LicensedModel(
                model=item.model,
                version=item.version,
                card=ModelCard.of(item.card) if item.card is not None else None,
            )
            for item in found
        ]

    @strawberry.field(
        description="The licence's usage records, newest first: one per metered request "
        "(failed and abandoned ones charged nothing). from is inclusive, to exclusive; they "
        "are kept for the city's retention (then only dailyUsage has them)."
    )
    async def usage_records(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        from_: Annotated[datetime | None, strawberry.argument(name="from")] = None,
        to: datetime | None = None,
        status: list[UsageStatus] | None = None,
    ) -> UsageRecordConnection:
        return await usage.usage_records(info, self.key, first, after, from_, to, status)

    @strawberry.field(
        description="Totals per day (the city's time zone), model and status, for days that "
        "are over and rolled up (lighthouse licensing rollup); from and to are both included, "
        "at most 366 days; without them, the 31 days up to today."
    )
    async def daily_usage(
        self,
        info: Info,
        from_: Annotated[date | None, strawberry.argument(name="from")] = None,
        to: date | None = None,
    ) -> list[DailyUsage]:
        return await usage.daily_usage(info, self.key, from_, to)


def state_of(licence: LicenceRecord, now: datetime | None = None) -> LicenceState:
    now = now or datetime.now(UTC)
    if licence.revoked_at is not None:
        return LicenceState.REVOKED
    if licence.suspended_at is not None:
        return LicenceState.SUSPENDED
    if now < licence.valid_from:
        return LicenceState.NOT_YET_VALID
    if now >= licence.valid_until:
        return LicenceState.EXPIRED
    return LicenceState.ACTIVE


def licence_of(view: LicenceView) -> Licence:
    record, usage = view.licence, view.usage
    quotas = Amounts(
        requests=record.quota_requests,
        input_tokens=record.quota_input_tokens,
        output_tokens=record.quota_output_tokens,
        images=record.quota_images,
    )
    used = Amounts(requests=0, input_tokens=0, output_tokens=0, images=0)
    reserved = Amounts(requests=0, input_tokens=0, output_tokens=0, images=0)
    if usage is not None:
        used = Amounts(
            requests=usage.used_requests,
            input_tokens=usage.used.input_tokens,
            output_tokens=usage.used.output_tokens,
            images=usage.used.images,
        )
        reserved = Amounts(
            requests=usage.reserved_requests,
            input_tokens=usage.reserved.input_tokens,
            output_tokens=usage.reserved.output_tokens,
            images=usage.reserved.images,
        )
    remaining = Amounts(
        requests=max(0, quotas.requests - used.requests - reserved.requests),
        input_tokens=max(0, quotas.input_tokens - used.input_tokens - reserved.input_tokens),
        output_tokens=max(0, quotas.output_tokens - used.output_tokens - reserved.output_tokens),
        images=max(0, quotas.images - used.images - reserved.images),
    )
    return Licence(
        id=strawberry.ID(encode_id("Licence", record.id)),
        code=record.code,
        licensee_id=record.licensee_id,
        models=list(record.models),
        purpose=record.purpose,
        purpose_description=record.purpose_description,
        valid_from=record.valid_from,
        valid_until=record.valid_until,
        state=state_of(record),
        suspension_reason=record.suspension_reason,
        quota_period=record.quota_period.value,
        quotas=quotas,
        limits=LicenceLimits(
            requests_per_minute=record.requests_per_minute,
            tokens_per_minute=record.tokens_per_minute,
            max_concurrent=record.max_concurrent,
            max_tokens=record.max_tokens,
            max_images=record.max_images,
            max_image_bytes=record.max_image_bytes,
        ),
        own_compute=record.own_compute,
        key=record.id,
        usage=LicenceUsage(
            period_start=usage.period_start if usage is not None else None,
            used=used,
            reserved=reserved,
            remaining=remaining,
        ),
    )


@strawberry.type(description="A person to speak to at a licensee.")
class Contact:
    name: str
    email: str
    phone: str | None


@strawberry.type(description="A company licensed to use the city's models.")
class Licensee:
    id: strawberry.ID
    code: str
    company: str
    tax_id: str
    status: str
    contacts: list[Contact]


def licensee_of(record: LicenseeRecord) -> Licensee:
    return Licensee(
        id=strawberry.ID(encode_id("Licensee", record.id)),
        code=record.code,
        company=record.company,
        tax_id=record.tax_id,
        status=record.status,
        contacts=[Contact(name=c.name, email=c.email, phone=c.phone) for c in record.contacts],
    )


@strawberry.type(description="A client's credentials. The secret is shown this once only.")
class ClientCredentials:
    client_id: str
    client_secret: str


@strawberry.type(description="A client that gets no more tokens; its tokens stopped working.")
class DisabledClient:
    client_id: str
