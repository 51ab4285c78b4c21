"""Licensees, licences and the quota ledger (migration 0006).

The ledger's writes are the database functions ``reserve_quota``, ``finish_reservation`` and
``expire_reservations``: each takes the licence's rows locked in one order, so reservations are
exact across every gateway process that shares the database.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from api.db.errors import is_unique_violation, translate
from api.db.unit_of_work import UnitOfWork, set_identity
from api.domain.errors import InvalidInput
from api.domain.licensing import (
    Cost,
    Licence,
    LicenceTerms,
    QuotaPeriod,
    Refusal,
    Usage,
    licensed_models,
)


@dataclass(frozen=True, slots=True)
class Contact:
    name: str
    email: str
    phone: str | None = None


@dataclass(frozen=True, slots=True)
class LicenseeRecord:
    id: int
    code: str
    company: str
    tax_id: str
    contacts: list[Contact]
    status: str
    created_at: datetime
    created_by: str


LICENSEE_COLUMNS = "id, code, company, tax_id, contacts, status, created_at, created_by"
LICENCE_COLUMNS = ", ".join(f.name for f in fields(Licence))
NEW_LICENCE_COLUMNS = [f.name for f in fields(LicenceTerms)]

INSERT_LICENSEE = f"""
INSERT INTO licensee (code, company, tax_id, contacts, created_by) VALUES ($1, $2, $3, $4, $5)
RETURNING {LICENSEE_COLUMNS}
"""
LICENSEES_BY_ID = f"SELECT {LICENSEE_COLUMNS} FROM licensee WHERE id = ANY($1::int[])"
LICENSEE_BY_CODE = f"SELECT {LICENSEE_COLUMNS} FROM licensee WHERE code = $1"
INSERT_LICENCE = f"""
INSERT INTO licence ({", ".join(NEW_LICENCE_COLUMNS)}, created_by)
VALUES ({", ".join(f"${n}" for n in range(1, len(NEW_LICENCE_COLUMNS) + 2))})
RETURNING {LICENCE_COLUMNS}
"""
PIN_VERSIONS = """
INSERT INTO licence_model_version (licence_id, model, version)
SELECT $1, model, version FROM unnest($2::text[], $3::text[]) AS pinned(model, version)
"""
LICENCES_BY_ID = f"SELECT {LICENCE_COLUMNS} FROM licence WHERE id = ANY($1::int[])"
LICENCE_BY_CODE = f"SELECT {LICENCE_COLUMNS} FROM licence WHERE code = $1"
ALL_LICENCES = f"SELECT {LICENCE_COLUMNS} FROM licence ORDER BY licensee_id, id LIMIT $1"
LICENCES_OF = f"""
SELECT {LICENCE_COLUMNS} FROM licence WHERE licensee_id = ANY($1::int[]) ORDER BY licensee_id, id
"""
# The licences the ledger would admit a call on now (``reserve_quotas`` refuses the others by
# the same rule, with the same clock): valid, neither suspended nor revoked, the company active.
USABLE_LICENCES_OF = f"""
SELECT {", ".join(f"l.{f.name}" for f in fields(Licence))}
FROM licence l JOIN licensee e ON e.id = l.licensee_id
WHERE l.licensee_id = $1 AND l.revoked_at IS NULL AND l.suspended_at IS NULL
  AND l.valid_from <= now() AND now() < l.valid_until AND e.status = 'ACTIVE'
ORDER BY l.id
"""
SUSPEND_LICENCE = f"""
UPDATE licence SET suspended_at = now(), suspension_reason = $2
WHERE id = $1 AND suspended_at IS NULL RETURNING {LICENCE_COLUMNS}
"""
RESUME_LICENCE = f"""
UPDATE licence SET suspended_at = NULL, suspension_reason = NULL
WHERE id = $1 RETURNING {LICENCE_COLUMNS}
"""
REVOKE_LICENCE = f"""
UPDATE licence SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING {LICENCE_COLUMNS}
"""
RESERVE = (
    "SELECT lighthouse.reserve_quotas($1, $2::uuid[], $3::bigint[], $4::bigint[], $5::integer[],"
    " $6, $7)"
)
FINISH = (
    "SELECT lighthouse.finish_reservations($1::uuid[], $2::boolean[], $3::bigint[],"
    " $4::bigint[], $5::integer[])"
)
EXPIRE = "SELECT lighthouse.expire_reservations($1)"
USAGE = """
SELECT p.licence_id, p.period_start, p.used_requests, p.used_input_tokens, p.used_output_tokens,
       p.used_images, p.reserved_requests, p.reserved_input_tokens, p.reserved_output_tokens,
       p.reserved_images
FROM licence l
JOIN quota_period p ON p.licence_id = l.id
 AND p.period_start = lighthouse.quota_period_start(l.quota_period, coalesce($2, now()), $3)
WHERE l.id = ANY($1::integer[])
"""


def _licensee(row: asyncpg.Record) -> LicenseeRecord:
    values = dict(row)
    values["contacts"] = [Contact(**c) for c in values["contacts"]]
    return LicenseeRecord(**values)


def _licence(row: asyncpg.Record) -> Licence:
    values = dict(row)
    values["quota_period"] = QuotaPeriod(values["quota_period"])
    values["models"] = list(values["models"])
    return Licence(**values)


async def licensee_id_by_code(
    connection: asyncpg.Connection, identity: Mapping[str, str], code: str
) -> int | None:
    """A licensee's id on a connection of the caller's own (the CLI's), read as ``identity``
    (row-level security applies to the tables' owner too)."""
    async with connection.transaction():
        await set_identity(connection, identity)
        value = await connection.fetchval(
            "SELECT id FROM lighthouse.licensee WHERE code = $1", code
        )
    return int(value) if value is not None else None


class LicensingRepository:
    """Licensees and licences, as row-level security lets the caller see and change them."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def create_licensee(
        self, code: str, company: str, tax_id: str, contacts: Sequence[Contact], created_by: str
    ) -> LicenseeRecord:
        document = [{k: v for k, v in asdict(c).items() if v is not None} for c in contacts]
        try:
            row = await self._uow.fetchrow(
                INSERT_LICENSEE, code, company, tax_id, document, created_by
            )
        except asyncpg.PostgresError as error:
            raise _input_error(error, "licensee") from None
        assert row is not None
        return _licensee(row)

    async def licensees(self, ids: Sequence[int]) -> dict[int, LicenseeRecord]:
        rows = await self._uow.fetch(LICENSEES_BY_ID, list(ids))
        return {row["id"]: _licensee(row) for row in rows}

    async def licensee_by_code(self, code: str) -> LicenseeRecord | None:
        row = await self._uow.fetchrow(LICENSEE_BY_CODE, code)
        return _licensee(row) if row is not None else None

    async def create_licence(self, new: LicenceTerms, created_by: str) -> Licence:
        """The licence, issued; its models named ``NAME`` or ``NAME@VERSION`` (the version it
        pins, in ``licence_model_version``)."""
        names, versions = licensed_models(new.models)
        values: list[Any] = [getattr(new, name) for name in NEW_LICENCE_COLUMNS]
        values[NEW_LICENCE_COLUMNS.index("models")] = names
        values[NEW_LICENCE_COLUMNS.index("quota_period")] = new.quota_period.value
        try:
            row = await self._uow.fetchrow(INSERT_LICENCE, *values, created_by)
            assert row is not None
            if versions:
                await self._uow.execute(
                    PIN_VERSIONS, row["id"], list(versions), list(versions.values())
                )
        except asyncpg.PostgresError as error:
            raise _input_error(error, "licence") from None
        return _licence(row)

    async def licences(self, ids: Sequence[int]) -> dict[int, Licence]:
        rows = await self._uow.fetch(LICENCES_BY_ID, list(ids))
        return {row["id"]: _licence(row) for row in rows}

    async def licence_by_code(self, code: str) -> Licence | None:
        row = await self._uow.fetchrow(LICENCE_BY_CODE, code)
        return _licence(row) if row is not None else None

    async def all_licences(self, limit: int) -> list[Licence]:
        return [_licence(row) for row in await self._uow.fetch(ALL_LICENCES, limit)]

    async def licences_of(self, licensee_ids: Sequence[int]) -> dict[int, list[Licence]]:
        found: dict[int, list[Licence]] = {}
        for row in await self._uow.fetch(LICENCES_OF, list(licensee_ids)):
            found.setdefault(row["licensee_id"], []).append(_licence(row))
        return found

    async def usable_licences_of(self, licensee_id: int) -> list[Licence]:
        """The licensee's licences a call may be made on now (as the ledger decides it)."""
        return [_licence(row) for row in await self._uow.fetch(USABLE_LICENCES_OF, licensee_id)]

    async def suspend(self, licence_id: int, reason: str) -> Licence | None:
        """The licence, suspended now; None if it is not visible or already suspended."""
        row = await self._uow.fetchrow(SUSPEND_LICENCE, licence_id, reason)
        return _licence(row) if row is not None else None

    async def resume(self, licence_id: int) -> Licence | None:
        row = await self._uow.fetchrow(RESUME_LICENCE, licence_id)
        return _licence(row) if row is not None else None

    async def revoke(self, licence_id: int) -> Licence | None:
        row = await self._uow.fetchrow(REVOKE_LICENCE, licence_id)
        return _licence(row) if row is not None else None


@dataclass(frozen=True, slots=True)
class UsageRecord:
    request_id: uuid.UUID
    licence_id: int
    licensee_id: int
    period_start: datetime
    client_id: str
    model: str
    purpose: str
    # OK (charged: read to its end, or a stream left or broken off midway, charged what it
    # delivered), FAILED (nothing charged), CANCELLED (the client left before a token was
    # delivered; nothing charged)
    status: str
    input_tokens: int
    output_tokens: int
    images: int
    streamed: bool
    latency_ms: int
    started_at: datetime


# Each column's type, for the arrays a group of records is inserted from.
USAGE_TYPES = {
    "request_id": "uuid", "licence_id": "integer", "licensee_id": "integer",
    "period_start": "timestamptz", "client_id": "text", "model": "text", "purpose": "text",
    "status": "text", "input_tokens": "bigint", "output_tokens": "bigint", "images": "integer",
    "streamed": "boolean", "latency_ms": "integer", "started_at": "timestamptz",
}  # fmt: skip
USAGE_COLUMNS = [f.name for f in fields(UsageRecord)]
if sorted(USAGE_TYPES) != sorted(USAGE_COLUMNS):
    raise RuntimeError("USAGE_TYPES must name every field of UsageRecord")
INSERT_USAGE = f"""
INSERT INTO usage_record ({", ".join(USAGE_COLUMNS)})
SELECT * FROM unnest({", ".join(f"${n}::{USAGE_TYPES[c]}[]" for n, c in enumerate(USAGE_COLUMNS, 1))})
ON CONFLICT (request_id) DO NOTHING
"""


ROLL_UP = "SELECT rolled_up, deleted FROM lighthouse.roll_up_usage($1, $2)"
STATEMENT = """
SELECT u.request_id, u.finished_at, u.client_id, u.model, u.purpose, u.status, u.streamed,
       u.input_tokens, u.output_tokens, u.images, u.latency_ms
FROM usage_record u
WHERE u.licence_id = $1 AND u.period_start = $2
ORDER BY u.finished_at, u.request_id
"""


@dataclass(frozen=True, slots=True)
class StatementLine:
    request_id: uuid.UUID
    finished_at: datetime
    client_id: str
    model: str
    purpose: str
    status: str
    streamed: bool
    input_tokens: int
    output_tokens: int
    images: int
    latency_ms: int


class UsageRecords:
    """The append-only record of metered requests, one per request id."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def add(self, record: UsageRecord) -> bool:
        """Record a request once; False if its id was recorded before (nothing changes)."""
        return await self.add_many([record]) == 1

    async def add_many(self, records: Sequence[UsageRecord]) -> int:
        """Record several requests (one statement); how many were new (an id recorded before
        changes nothing)."""
        if not records:
            return 0
        columns = [[getattr(record, name) for record in records] for name in USAGE_COLUMNS]
        status = await self._uow.execute(INSERT_USAGE, *columns)
        return int(str(status).rsplit(" ", 1)[-1])

    async def roll_up(self, zone: str, keep: timedelta) -> tuple[int, int]:
        """Roll the days that are over up into daily totals, and delete records older than
        ``keep`` whose day is rolled up: (daily rows written, records deleted)."""
        try:
            row = await self._uow.fetchrow(ROLL_UP, zone, keep)
        except asyncpg.PostgresError as error:
            raise _input_error(error, "roll-up") from None
        assert row is not None
        return int(row["rolled_up"]), int(row["deleted"])

    async def statement(self, licence_id: int, period_start: datetime) -> list[StatementLine]:
        """The licence's requests charged to the period that starts at ``period_start``."""
        rows = await self._uow.fetch(STATEMENT, licence_id, period_start)
        return [StatementLine(**row) for row in rows]


class QuotaLedger:
    """Reservations against a licence's quotas and limits, settled or released once."""

    def __init__(self, uow: UnitOfWork, zone: str) -> None:
        self._uow = uow
        self._zone = zone

    async def reserve(
        self, request_id: uuid.UUID, licence_id: int, cost: Cost, lease: timedelta
    ) -> Refusal | None:
        """Hold ``cost`` for the request until it finishes (or its lease runs out); None when
        admitted, else why not (nothing is held then)."""
        (refusal,) = await self.reserve_many(licence_id, [(request_id, cost)], lease)
        return refusal

    async def reserve_many(
        self, licence_id: int, requests: Sequence[tuple[uuid.UUID, Cost]], lease: timedelta
    ) -> list[Refusal | None]:
        """``reserve`` for several requests on one licence at once, judged in the order given
        (each against what the earlier ones left): one entry per request."""
        if not requests:
            return []
        refused = await self._call(
            RESERVE,
            licence_id,
            [request_id for request_id, _ in requests],
            [cost.input_tokens for _, cost in requests],
            [cost.output_tokens for _, cost in requests],
            [cost.images for _, cost in requests],
            lease,
            self._zone,
        )
        return [Refusal(reason) if reason is not None else None for reason in refused]

    async def settle(self, request_id: uuid.UUID, used: Cost) -> datetime | None:
        """Charge the request's real use (at most what it reserved); the period it was charged
        to, or None if it had no reservation any more (finished before, or its lease ran out)."""
        (period,) = await self.finish_many([(request_id, used)])
        return period

    async def release(self, request_id: uuid.UUID) -> datetime | None:
        """Give the reservation back, charging nothing (a failed or abandoned call); the period
        it was held in, or None if it had none any more."""
        (period,) = await self.finish_many([(request_id, None)])
        return period

    async def finish_many(
        self, requests: Sequence[tuple[uuid.UUID, Cost | None]]
    ) -> list[datetime | None]:
        """``settle`` (a cost) or ``release`` (None) several requests at once, in the order
        given: one entry per request."""
        if not requests:
            return []
        used = [cost or Cost() for _, cost in requests]
        periods: list[datetime | None] = await self._call(
            FINISH,
            [request_id for request_id, _ in requests],
            [cost is not None for _, cost in requests],
            [cost.input_tokens for cost in used],
            [cost.output_tokens for cost in used],
            [cost.images for cost in used],
        )
        return periods

    async def expire(self, limit: int) -> int:
        """Release reservations whose lease ran out (as the service itself); how many."""
        return int(await self._call(EXPIRE, limit))

    async def _call(self, statement: str, *args: Any) -> Any:
        """One of the ledger's functions; a refusal by the database is the caller's Forbidden."""
        try:
            return await self._uow.fetchval(statement, *args)
        except asyncpg.PostgresError as error:
            translated = translate(error)
            if translated is None:
                raise
            raise translated from None

    async def usage(self, licence_id: int, at: datetime | None = None) -> Usage | None:
        """The ledger of the period ``at`` (now) falls in, if the licence has used it."""
        return (await self.usage_of([licence_id], at)).get(licence_id)

    async def usage_of(
        self, licence_ids: Sequence[int], at: datetime | None = None
    ) -> dict[int, Usage]:
        """``usage`` for several licences in one statement (those that used the period)."""
        rows = await self._uow.fetch(USAGE, list(licence_ids), at, self._zone)
        return {
            row["licence_id"]: Usage(
                licence_id=row["licence_id"],
                period_start=row["period_start"],
                used_requests=row["used_requests"],
                used=Cost(row["used_input_tokens"], row["used_output_tokens"], row["used_images"]),
                reserved_requests=row["reserved_requests"],
                reserved=Cost(
                    row["reserved_input_tokens"],
                    row["reserved_output_tokens"],
                    row["reserved_images"],
                ),
            )
            for row in rows
        }


def _input_error(error: asyncpg.PostgresError, entity: str) -> BaseException:
    """A constraint the new row breaks, as the caller's error (the server's words stay here)."""
    if is_unique_violation(error):
        return InvalidInput(entity, f"a {entity} with this code or tax id exists")
    translated: BaseException | None = translate(error)
    return translated if translated is not None else error


@dataclass(frozen=True, slots=True)
class ReleaseRecord:
    id: int
    model: str
    version: str
    directory: str
    manifest: dict[str, Any]
    signed: str
    created_at: datetime
    created_by: str


RELEASE_COLUMNS = ", ".join(f.name for f in fields(ReleaseRecord))
INSERT_RELEASE = f"""
INSERT INTO model_release (model, version, directory, manifest, signed, created_by)
VALUES ($1, $2, $3, $4, $5, $6) RETURNING {RELEASE_COLUMNS}
"""
RELEASES = f"SELECT {RELEASE_COLUMNS} FROM model_release ORDER BY model, created_at DESC LIMIT 200"
RELEASE_BY_ID = f"SELECT {RELEASE_COLUMNS} FROM model_release WHERE id = $1"


class ReleaseRepository:
    """Model releases, as row-level security lets the caller see them."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def add(
        self,
        model: str,
        version: str,
        directory: str,
        manifest: dict[str, Any],
        signed: str,
        created_by: str,
    ) -> ReleaseRecord:
        try:
            row = await self._uow.fetchrow(
                INSERT_RELEASE, model, version, directory, manifest, signed, created_by
            )
        except asyncpg.PostgresError as error:
            if is_unique_violation(error):
                raise InvalidInput("release", f"{model} {version} is published already") from None
            raise _input_error(error, "release") from None
        assert row is not None
        return ReleaseRecord(**row)

    async def visible(self) -> list[ReleaseRecord]:
        return [ReleaseRecord(**row) for row in await self._uow.fetch(RELEASES)]

    async def get(self, release_id: int) -> ReleaseRecord | None:
        row = await self._uow.fetchrow(RELEASE_BY_ID, release_id)
        return ReleaseRecord(**row) if row is not None else None


class LicenseeClients:
    """A licensee's OAuth clients, written only through the database's functions for licensing
    officers (the application role writes no client itself)."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def register(
        self, client_id: str, name: str, secret_hash: str, scopes: Sequence[str], licensee_id: int
    ) -> None:
        try:
            await self._uow.execute(
                "SELECT lighthouse.register_licensee_client($1, $2, $3, $4, $5)",
                client_id, name, secret_hash, list(scopes), licensee_id,
            )  # fmt: skip
        except asyncpg.PostgresError as error:
            if is_unique_violation(error):
                raise InvalidInput("clientId", f"a client {client_id!r} exists") from None
            raise _input_error(error, "client") from None

    async def rekey(self, client_id: str, secret_hash: str, overlap: timedelta) -> bool:
        statement = "SELECT lighthouse.rekey_licensee_client($1, $2, $3)"
        try:
            return bool(await self._uow.fetchval(statement, client_id, secret_hash, overlap))
        except asyncpg.PostgresError as error:
            raise _input_error(error, "client") from None

    async def disable(self, client_id: str) -> bool:
        try:
            return bool(
                await self._uow.fetchval("SELECT lighthouse.disable_licensee_client($1)", client_id)
            )
        except asyncpg.PostgresError as error:
            raise _input_error(error, "client") from None
