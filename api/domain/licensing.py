"""Licences and what they allow: the terms a metered request is checked against, the cost it
reserves, and why a reservation is refused."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from api.domain.errors import DomainError, InvalidInput


class QuotaPeriod(StrEnum):
    DAY = "DAY"
    MONTH = "MONTH"


class LicenseeStatus(StrEnum):
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    CLOSED = "CLOSED"


@dataclass(frozen=True, slots=True)
class Cost:
    """What one request uses, or at most may use (a reservation)."""

    input_tokens: int = 0
    output_tokens: int = 0
    images: int = 0

    def __post_init__(self) -> None:
        if min(self.input_tokens, self.output_tokens, self.images) < 0:
            raise ValueError(f"a cost cannot be negative: {self}")

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class Refusal(StrEnum):
    """Why the ledger refused a reservation (``lighthouse.reserve_quota``'s answers)."""

    NOT_YET_VALID = "NOT_YET_VALID"
    EXPIRED = "EXPIRED"
    SUSPENDED = "SUSPENDED"
    REVOKED = "REVOKED"
    LICENSEE_INACTIVE = "LICENSEE_INACTIVE"
    REQUESTS = "REQUESTS"
    INPUT_TOKENS = "INPUT_TOKENS"
    OUTPUT_TOKENS = "OUTPUT_TOKENS"
    IMAGES = "IMAGES"
    RATE_REQUESTS = "RATE_REQUESTS"
    RATE_TOKENS = "RATE_TOKENS"
    CONCURRENCY = "CONCURRENCY"

    @property
    def is_quota(self) -> bool:
        """The period's quota is spent: it comes back only with the next period."""
        return self in (
            Refusal.REQUESTS,
            Refusal.INPUT_TOKENS,
            Refusal.OUTPUT_TOKENS,
            Refusal.IMAGES,
        )

    @property
    def is_rate(self) -> bool:
        """A limit that frees itself: this minute's rate, or requests at once."""
        return self in (Refusal.RATE_REQUESTS, Refusal.RATE_TOKENS, Refusal.CONCURRENCY)

    @property
    def is_licence_state(self) -> bool:
        return not (self.is_quota or self.is_rate)


class QuotaExceeded(DomainError):
    """A reservation the licence does not allow now (HTTP 429, or 403 for the licence's state)."""

    code = "QUOTA_EXCEEDED"

    def __init__(self, refusal: Refusal, retry_after: int | None = None) -> None:
        super().__init__(_REFUSALS[refusal])
        self.refusal = refusal
        self.retry_after = retry_after


_REFUSALS = {
    Refusal.NOT_YET_VALID: "the licence is not valid yet",
    Refusal.EXPIRED: "the licence has expired",
    Refusal.SUSPENDED: "the licence is suspended",
    Refusal.REVOKED: "the licence is revoked",
    Refusal.LICENSEE_INACTIVE: "the licensee is suspended or closed",
    Refusal.REQUESTS: "the licence's requests for this period are used up",
    Refusal.INPUT_TOKENS: "the licence's input tokens for this period are used up",
    Refusal.OUTPUT_TOKENS: "the licence's output tokens for this period are used up",
    Refusal.IMAGES: "the licence's images for this period are used up",
    Refusal.RATE_REQUESTS: "the licence's requests per minute are used up",
    Refusal.RATE_TOKENS: "the licence's tokens per minute are used up",
    Refusal.CONCURRENCY: "the licence's requests at once are all under way",
}


@dataclass(frozen=True, slots=True)
class LicenceTerms:
    """What a licence allows: the models, for what, when, how much. What an officer issues."""

    licensee_id: int
    code: str
    models: Sequence[str]
    purpose: str
    purpose_description: str
    valid_from: datetime
    valid_until: datetime
    quota_period: QuotaPeriod
    quota_requests: int
    quota_input_tokens: int
    quota_output_tokens: int
    quota_images: int
    requests_per_minute: int
    tokens_per_minute: int
    max_concurrent: int
    max_tokens: int
    max_images: int
    max_image_bytes: int
    own_compute: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Licence(LicenceTerms):
    """An issued licence: its terms, and what became of it."""

    id: int
    suspended_at: datetime | None
    suspension_reason: str | None
    revoked_at: datetime | None
    created_at: datetime
    created_by: str


@dataclass(frozen=True, slots=True)
class Usage:
    """A period's ledger for one licence: settled use and reservations under way."""

    licence_id: int
    period_start: datetime
    used_requests: int
    used: Cost
    reserved_requests: int
    reserved: Cost


VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def licensed_models(entries: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """The models a licence names (``NAME`` or ``NAME@VERSION``): their names, in order, and the
    version it pins for each named with one. Bad input is refused, naming the entry."""
    names: list[str] = []
    versions: dict[str, str] = {}
    for entry in entries:
        name, _, version = entry.strip().partition("@")
        if not name:
            raise InvalidInput("models", f"{entry!r}: a model's name, then @VERSION if pinned")
        if name in names:
            raise InvalidInput("models", f"{name!r} is named twice")
        if "@" in entry and not VERSION.match(version):
            raise InvalidInput(
                "models", f"{entry!r}: a version is 1-63 letters, digits and . _ - after the @"
            )
        names.append(name)
        if version:
            versions[name] = version
    return names, versions
