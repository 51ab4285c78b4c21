"""The quota ledger on its own: exact under concurrency across gateway processes, settled or
released once, and written only for the licensee a caller acts for.

Two connection pools as the application role stand for two gateway processes; every
reservation is its own short transaction under a licensee's identity, as the metered path runs
them.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import asyncpg
import pytest
import pytest_asyncio

from api.auth.principal import Principal, PrincipalKind
from api.db.pool import create_pool
from api.db.unit_of_work import UnitOfWork
from api.domain.errors import Forbidden, InvalidInput
from api.domain.licensing import Cost, Licence, Refusal
from api.repositories.licensing import LicensingRepository, QuotaLedger, UsageRecord, UsageRecords
from api.settings import DatabaseSettings, Settings
from tests.metering.support import MODEL, new_licensee_and_licence
from tests.support import DatabaseUnderTest

pytestmark = pytest.mark.db

T = TypeVar("T")
ZONE = "Asia/Taipei"
LEASE = timedelta(minutes=5)
ADMIN = Principal(
    subject="licensing-officer",
    kind=PrincipalKind.STAFF,
    bureau_id=None,
    scopes=frozenset({"licensing:admin"}),
)
SYSTEM = Principal.system("quota-sweeper")
_numbers = itertools.count(1)


def licensee_principal(licensee_id: int, *scopes: str) -> Principal:
    return Principal(
        subject=f"client-of-{licensee_id}",
        kind=PrincipalKind.LICENSEE,
        scopes=frozenset(scopes or ("inference:invoke", "usage:read")),
        client_id=f"client-of-{licensee_id}",
        licensee_id=licensee_id,
    )


async def run(
    pool: asyncpg.Pool, principal: Principal, step: Callable[[UnitOfWork], Awaitable[T]]
) -> T:
    """One short transaction under ``principal``'s identity, committed if ``step`` returns."""
    async with UnitOfWork(pool, principal.database_settings()) as uow:
        return await step(uow)


@pytest_asyncio.fixture
async def pools(database: DatabaseUnderTest) -> AsyncIterator[tuple[asyncpg.Pool, asyncpg.Pool]]:
    """Two gateway processes' pools (the application role)."""
    settings = Settings(
        database=DatabaseSettings(url=database.app_url, pool_min_size=1, pool_max_size=10)
    )
    first = await create_pool(database.app_url, settings)
    second = await create_pool(database.app_url, settings)
    yield first, second
    await first.close()
    await second.close()


async def new_licence(pool: asyncpg.Pool, **terms: object) -> Licence:
    """A licensee of its own with one licence: generous terms, but for ``terms``."""
    number = next(_numbers) + int(uuid.uuid4().int % 10**6) * 100
    terms = {"max_tokens": 512, "max_image_bytes": 1 << 20} | terms

    async def create(uow: UnitOfWork) -> Licence:
        return await new_licensee_and_licence(LicensingRepository(uow), number, **terms)

    return await run(pool, ADMIN, create)


async def reserve(
    pool: asyncpg.Pool, licence: Licence, cost: Cost
) -> tuple[uuid.UUID, Refusal | None]:
    request = uuid.uuid4()
    refusal = await run(
        pool,
        licensee_principal(licence.licensee_id),
        lambda uow: QuotaLedger(uow, ZONE).reserve(request, licence.id, cost, LEASE),
    )
    return request, refusal


async def reserve_all(
    pools: tuple[asyncpg.Pool, asyncpg.Pool], licence: Licence, cost: Cost, count: int
) -> list[tuple[uuid.UUID, Refusal | None]]:
    """``count`` reservations at once, alternating between the two processes."""
    return await asyncio.gather(*(reserve(pools[n % 2], licence, cost) for n in range(count)))


async def finish(
    pool: asyncpg.Pool, licence: Licence, request: uuid.UUID, used: Cost | None
) -> bool:
    """Settle (``used``) or release; whether the reservation was there to finish."""

    def step(uow: UnitOfWork) -> Awaitable[datetime | None]:
        ledger = QuotaLedger(uow, ZONE)
        return ledger.release(request) if used is None else ledger.settle(request, used)

    return await run(pool, licensee_principal(licence.licensee_id), step) is not None


async def ledger_row(pool: asyncpg.Pool, licence: Licence) -> tuple[int, Cost, int, Cost]:
    usage = await run(
        pool,
        licensee_principal(licence.licensee_id),
        lambda uow: QuotaLedger(uow, ZONE).usage(licence.id),
    )
    assert usage is not None
    return usage.used_requests, usage.used, usage.reserved_requests, usage.reserved


async def away_from_a_minute_boundary() -> None:
    """Per-minute limits count calendar minutes: start a test that needs one minute early in it."""
    if datetime.now(UTC).second >= 50:
        await asyncio.sleep(61 - datetime.now(UTC).second)


async def test_200_at_once_over_two_processes_admit_exactly_the_quota(
    pools: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    licence = await new_licence(pools[0], quota_requests=50)
    cost = Cost(input_tokens=40, output_tokens=100, images=1)
    outcomes = await reserve_all(pools, licence, cost, 200)
    admitted = [request for request, refusal in outcomes if refusal is None]
    assert len(admitted) == 50
    assert {refusal for _, refusal in outcomes if refusal is not None} == {Refusal.REQUESTS}
    assert await ledger_row(pools[1], licence) == (0, Cost(), 50, Cost(2000, 5000, 50))

    # 30 settle with their real use (less than reserved), 20 fail: only the 30 are charged.
    used = Cost(input_tokens=35, output_tokens=60, images=1)
    settled = await asyncio.gather(
        *(finish(pools[n % 2], licence, r, used) for n, r in enumerate(admitted[:30]))
    )
    released = await asyncio.gather(
        *(finish(pools[n % 2], licence, r, None) for n, r in enumerate(admitted[30:]))
    )
    assert all(settled) and all(released)
    assert await ledger_row(pools[0], licence) == (30, Cost(1050, 1800, 30), 0, Cost())

    # What the 20 failures gave back is there to use, and no more.
    again = await reserve_all(pools, licence, cost, 60)
    assert sum(refusal is None for _, refusal in again) == 20


async def reserve_group(
    pool: asyncpg.Pool, licence: Licence, costs: list[Cost]
) -> list[tuple[uuid.UUID, Refusal | None]]:
    """One group of reservations in one transaction, as the admission desk makes them."""
    requests = [(uuid.uuid4(), cost) for cost in costs]
    refusals = await run(
        pool,
        licensee_principal(licence.licensee_id),
        lambda uow: QuotaLedger(uow, ZONE).reserve_many(licence.id, requests, LEASE),
    )
    return [(request, refusal) for (request, _), refusal in zip(requests, refusals, strict=True)]


async def test_groups_from_two_processes_at_once_admit_exactly_the_quota(
    pools: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    licence = await new_licence(pools[0], quota_requests=50, max_concurrent=1000)
    cost = Cost(input_tokens=40, output_tokens=100, images=1)
    groups = await asyncio.gather(
        *(reserve_group(pools[n % 2], licence, [cost] * (n % 16 + 1)) for n in range(32))
    )
    outcomes = [outcome for group in groups for outcome in group]
    assert len(outcomes) == sum(n % 16 + 1 for n in range(32)) > 200
    assert sum(refusal is None for _, refusal in outcomes) == 50
    assert {refusal for _, refusal in outcomes if refusal is not None} == {Refusal.REQUESTS}
    assert await ledger_row(pools[1], licence) == (0, Cost(), 50, Cost(2000, 5000, 50))


async def test_a_group_is_judged_in_order_each_against_what_the_earlier_left(
    pools: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    licence = await new_licence(pools[0], quota_output_tokens=100, max_concurrent=3)
    costs = [Cost(output_tokens=tokens) for tokens in (60, 60, 30, 10, 0)]
    outcomes = await reserve_group(pools[0], licence, costs)
    assert [refusal for _, refusal in outcomes] == [
        None,
        Refusal.OUTPUT_TOKENS,  # 60 + 60 > 100
        None,  # 60 + 30
        None,  # 60 + 30 + 10 = 100: the quota exactly
        Refusal.CONCURRENCY,  # fits the quota (0 tokens), but three are under way
    ]
    assert await ledger_row(pools[1], licence) == (0, Cost(), 3, Cost(output_tokens=100))
    # Each admitted request finishes on its own.
    for request, refusal in outcomes:
        if refusal is None:
            assert await finish(pools[1], licence, request, Cost(output_tokens=5))
    assert await ledger_row(pools[0], licence) == (3, Cost(output_tokens=15), 0, Cost())


async def test_a_group_that_cannot_be_written_holds_nothing(
    pools: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    licence = await new_licence(pools[0])
    taken = uuid.uuid4()
    requests = [(uuid.uuid4(), Cost(output_tokens=1)), (taken, Cost(output_tokens=1))]
    assert await run(
        pools[0],
        licensee_principal(licence.licensee_id),
        lambda uow: QuotaLedger(uow, ZONE).reserve_many(licence.id, requests[1:], LEASE),
    ) == [None]
    # The same request id again (a replayed group): the whole group fails, nothing more held.
    with pytest.raises(asyncpg.UniqueViolationError):
        await run(
            pools[1],
            licensee_principal(licence.licensee_id),
            lambda uow: QuotaLedger(uow, ZONE).reserve_many(licence.id, requests, LEASE),
        )
    assert await ledger_row(pools[1], licence) == (0, Cost(), 1, Cost(output_tokens=1))
    # An empty group changes nothing and needs no call.
    assert await reserve_group(pools[0], licence, []) == []


async def test_a_token_rate_admits_exactly_what_fits_in_the_minute(
    pools: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    licence = await new_licence(pools[0], tokens_per_minute=1000)
    await away_from_a_minute_boundary()
    outcomes = await reserve_all(pools, licence, Cost(input_tokens=10, output_tokens=20), 200)
    assert sum(refusal is None for _, refusal in outcomes) == 33  # 33 × 30 ≤ 1000 < 34 × 30
    assert {refusal for _, refusal in outcomes if refusal is not None} == {Refusal.RATE_TOKENS}


async def test_a_request_rate_admits_exactly_its_number_in_the_minute(
    pools: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    licence = await new_licence(pools[0], requests_per_minute=12)
    await away_from_a_minute_boundary()
    outcomes = await reserve_all(pools, licence, Cost(output_tokens=1), 100)
    assert sum(refusal is None for _, refusal in outcomes) == 12
    # Finishing does not give a request back to the minute: it was made.
    first = next(request for request, refusal in outcomes if refusal is None)
    assert await finish(pools[0], licence, first, None)
    _, refusal = await reserve(pools[1], licence, Cost(output_tokens=1))
    assert refusal is Refusal.RATE_REQUESTS


async def test_the_concurrency_cap_holds_and_frees_a_place_as_a_request_finishes(
    pools: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    licence = await new_licence(pools[0], max_concurrent=7)
    outcomes = await reserve_all(pools, licence, Cost(output_tokens=5), 200)
    admitted = [request for request, refusal in outcomes if refusal is None]
    assert len(admitted) == 7
    assert {refusal for _, refusal in outcomes if refusal is not None} == {Refusal.CONCURRENCY}
    assert await finish(pools[1], licence, admitted[0], Cost(output_tokens=3))
    later = await reserve_all(pools, licence, Cost(output_tokens=5), 20)
    assert sum(refusal is None for _, refusal in later) == 1


async def test_a_reservation_finishes_once_and_never_charges_more_than_it_held(
    pools: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    licence = await new_licence(pools[0])
    request, refusal = await reserve(
        pools[0], licence, Cost(input_tokens=100, output_tokens=50, images=1)
    )
    assert refusal is None
    # The serving tier reported more than the request could use: the bill stops at the hold.
    assert await finish(
        pools[1], licence, request, Cost(input_tokens=120, output_tokens=50, images=2)
    )
    assert not await finish(pools[0], licence, request, Cost(input_tokens=1))
    assert not await finish(pools[0], licence, request, None)
    assert await ledger_row(pools[0], licence) == (1, Cost(100, 50, 1), 0, Cost())
    # Settling and releasing the same reservation at once: exactly one of them happens.
    request, _ = await reserve(pools[0], licence, Cost(input_tokens=10, output_tokens=10))
    results = await asyncio.gather(
        finish(pools[0], licence, request, Cost(input_tokens=10, output_tokens=10)),
        finish(pools[1], licence, request, None),
    )
    assert sorted(results) == [False, True]
    used_requests, used, reserved_requests, _ = await ledger_row(pools[0], licence)
    assert reserved_requests == 0
    assert (used_requests, used) in ((2, Cost(110, 60, 1)), (1, Cost(100, 50, 1)))


async def test_a_group_finishes_each_reservation_once_in_one_call(
    pools: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    licence = await new_licence(pools[0])
    held = await reserve_group(pools[0], licence, [Cost(input_tokens=10, output_tokens=10)] * 4)
    requests = [request for request, refusal in held if refusal is None]
    assert len(requests) == 4
    unknown = uuid.uuid4()
    outcomes: list[tuple[uuid.UUID, Cost | None]] = [
        (requests[0], Cost(input_tokens=8, output_tokens=3)),
        (requests[1], None),
        (unknown, Cost(input_tokens=1)),  # never reserved: nothing happens for it
        (requests[2], Cost(input_tokens=50, output_tokens=50)),  # more than held: capped
        (requests[0], Cost(input_tokens=1)),  # finished a moment ago in the same group
    ]
    periods = await run(
        pools[1],
        licensee_principal(licence.licensee_id),
        lambda uow: QuotaLedger(uow, ZONE).finish_many(outcomes),
    )
    assert [period is not None for period in periods] == [True, True, False, True, False]
    assert len({period for period in periods if period is not None}) == 1
    assert await ledger_row(pools[0], licence) == (
        2,
        Cost(input_tokens=18, output_tokens=13),
        1,
        Cost(input_tokens=10, output_tokens=10),
    )
    # A licensee finishes only its own licences' reservations, in a group as alone.
    other = await new_licence(pools[0])
    with pytest.raises(Forbidden):
        await run(
            pools[0],
            licensee_principal(other.licensee_id),
            lambda uow: QuotaLedger(uow, ZONE).finish_many([(requests[3], None)]),
        )
    assert await ledger_row(pools[0], licence) == (
        2,
        Cost(input_tokens=18, output_tokens=13),
        1,
        Cost(input_tokens=10, output_tokens=10),
    )


async def test_a_request_is_recorded_once_whether_alone_or_in_a_group(
    pools: tuple[asyncpg.Pool, asyncpg.Pool], database: DatabaseUnderTest
) -> None:
    licence = await new_licence(pools[0])
    principal = licensee_principal(licence.licensee_id)
    period = datetime(2026, 11, 1, tzinfo=UTC)

    def record(request: uuid.UUID, tokens: int) -> UsageRecord:
        return UsageRecord(
            request, licence.id, licence.licensee_id, period, principal.subject, MODEL,
            "parking-occupancy", "OK", tokens, tokens, 0, False, 12, datetime.now(UTC),
        )  # fmt: skip

    first, second = uuid.uuid4(), uuid.uuid4()
    group = [record(first, 5), record(second, 7), record(first, 99)]  # the first twice
    assert await run(pools[0], principal, lambda uow: UsageRecords(uow).add_many(group)) == 2
    assert not await run(pools[1], principal, lambda uow: UsageRecords(uow).add(record(second, 1)))
    assert await run(pools[1], principal, lambda uow: UsageRecords(uow).add_many([])) == 0
    owner = await asyncpg.connect(database.owner_url)
    try:
        tokens = await owner.fetch(
            "SELECT input_tokens FROM lighthouse.usage_record WHERE licence_id = $1"
            " ORDER BY input_tokens",
            licence.id,
        )
    finally:
        await owner.close()
    assert [row["input_tokens"] for row in tokens] == [5, 7]


@pytest.mark.parametrize(
    ("terms", "refusal"),
    [
        (
            {
                "valid_from": datetime.now(UTC) + timedelta(days=1),
                "valid_until": datetime.now(UTC) + timedelta(days=2),
            },
            Refusal.NOT_YET_VALID,
        ),
        (
            {
                "valid_from": datetime.now(UTC) - timedelta(days=2),
                "valid_until": datetime.now(UTC) - timedelta(days=1),
            },
            Refusal.EXPIRED,
        ),
        ({"quota_images": 0}, Refusal.IMAGES),
        ({"quota_input_tokens": 99}, Refusal.INPUT_TOKENS),
        ({"quota_output_tokens": 99}, Refusal.OUTPUT_TOKENS),
    ],
)
async def test_what_the_licence_does_not_allow_is_refused_and_nothing_is_held(
    pools: tuple[asyncpg.Pool, asyncpg.Pool], terms: dict[str, object], refusal: Refusal
) -> None:
    licence = await new_licence(pools[0], **terms)
    _, refused = await reserve(
        pools[0], licence, Cost(input_tokens=100, output_tokens=100, images=1)
    )
    assert refused is refusal
    usage = await run(pools[0], ADMIN, lambda uow: QuotaLedger(uow, ZONE).usage(licence.id))
    assert usage is None or (usage.reserved_requests, usage.reserved) == (0, Cost())


async def test_suspended_and_revoked_licences_and_inactive_licensees_are_refused(
    pools: tuple[asyncpg.Pool, asyncpg.Pool], database: DatabaseUnderTest
) -> None:
    suspended = await new_licence(pools[0])
    assert (
        await run(
            pools[0],
            ADMIN,
            lambda uow: LicensingRepository(uow).suspend(suspended.id, "unpaid invoice"),
        )
        is not None
    )
    assert (await reserve(pools[0], suspended, Cost(output_tokens=1)))[1] is Refusal.SUSPENDED
    resumed = await run(pools[0], ADMIN, lambda uow: LicensingRepository(uow).resume(suspended.id))
    assert resumed is not None and resumed.suspended_at is None
    assert (await reserve(pools[0], suspended, Cost(output_tokens=1)))[1] is None

    revoked = await new_licence(pools[0])
    await run(pools[0], ADMIN, lambda uow: LicensingRepository(uow).revoke(revoked.id))
    assert (await reserve(pools[0], revoked, Cost(output_tokens=1)))[1] is Refusal.REVOKED

    closed = await new_licence(pools[0])
    owner = await asyncpg.connect(database.owner_url)
    try:
        await owner.execute(
            "UPDATE lighthouse.licensee SET status = 'CLOSED' WHERE id = $1", closed.licensee_id
        )
    finally:
        await owner.close()
    assert (await reserve(pools[0], closed, Cost(output_tokens=1)))[1] is Refusal.LICENSEE_INACTIVE


async def test_a_reservation_whose_gateway_died_is_given_back_when_its_lease_runs_out(
    pools: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    """A reservation whose lease ran out is swept back by the service, never by a licensee.
    The session's gateway sweeps the same database every few seconds: when it got there first,
    the case is made again, so that this sweep is seen to take one (at most three tries)."""
    short = timedelta(milliseconds=1)
    for _ in range(3):
        licence = await new_licence(pools[0], max_concurrent=1)
        request = uuid.uuid4()
        principal = licensee_principal(licence.licensee_id)
        assert (
            await run(
                pools[0],
                principal,
                lambda uow, licence=licence, request=request: QuotaLedger(uow, ZONE).reserve(
                    request, licence.id, Cost(output_tokens=9), short
                ),
            )
            is None
        )
        refused = await reserve(pools[1], licence, Cost(output_tokens=1))
        assert refused[1] is Refusal.CONCURRENCY
        await asyncio.sleep(0.05)
        # Only the service sweeps: a licensee cannot release others' reservations this way.
        with pytest.raises(Forbidden):
            await run(pools[0], principal, lambda uow: QuotaLedger(uow, ZONE).expire(100))
        held = await ledger_row(pools[0], licence)
        swept = await run(pools[0], SYSTEM, lambda uow: QuotaLedger(uow, ZONE).expire(100))
        assert await ledger_row(pools[0], licence) == (0, Cost(), 0, Cost())
        assert not await finish(
            pools[0], licence, request, Cost(output_tokens=9)
        )  # too late: not charged
        assert (await reserve(pools[1], licence, Cost(output_tokens=1)))[1] is None
        if held != (0, Cost(), 0, Cost()) and swept >= 1:
            return  # still held when this sweep ran, and given back by it
    raise AssertionError("the gateway's own sweep took the lapsed reservation three times")


async def test_a_licensee_reserves_and_reads_only_for_itself(
    pools: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    mine, theirs = await new_licence(pools[0]), await new_licence(pools[0])
    me = licensee_principal(mine.licensee_id)
    with pytest.raises(Forbidden):
        await run(
            pools[0],
            me,
            lambda uow: QuotaLedger(uow, ZONE).reserve(uuid.uuid4(), theirs.id, Cost(), LEASE),
        )
    # Without inference:invoke a licensee's token cannot spend its own quota either.
    reader = licensee_principal(mine.licensee_id, "usage:read")
    with pytest.raises(Forbidden):
        await run(
            pools[0],
            reader,
            lambda uow: QuotaLedger(uow, ZONE).reserve(uuid.uuid4(), mine.id, Cost(), LEASE),
        )
    await reserve(pools[0], theirs, Cost(output_tokens=1))

    seen = await run(
        pools[0], me, lambda uow: LicensingRepository(uow).licences([mine.id, theirs.id])
    )
    assert list(seen) == [mine.id]
    assert await run(pools[0], me, lambda uow: QuotaLedger(uow, ZONE).usage(theirs.id)) is None
    licensees = await run(
        pools[0],
        me,
        lambda uow: LicensingRepository(uow).licensees([mine.licensee_id, theirs.licensee_id]),
    )
    assert list(licensees) == [mine.licensee_id]


async def test_only_licensing_administrators_manage_licensees_and_licences(
    pools: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    licence = await new_licence(pools[0])
    bureau_staff = Principal(
        subject="pwb-supervisor", kind=PrincipalKind.STAFF, bureau_id=1,
        scopes=frozenset({"incidents:read", "incidents:write", "pii:read"}),
    )  # fmt: skip
    licensee = licensee_principal(licence.licensee_id, "inference:invoke", "licensing:admin")
    for caller in (bureau_staff, licensee):
        assert (
            await run(
                pools[0], caller, lambda uow: LicensingRepository(uow).suspend(licence.id, "x")
            )
            is None
        )
        with pytest.raises(Forbidden):
            await run(
                pools[0], caller,
                lambda uow: LicensingRepository(uow).create_licensee("rogue-co", "Rogue", "12345678", [], "x"),
            )  # fmt: skip
    assert (
        await run(
            pools[0], bureau_staff, lambda uow: LicensingRepository(uow).licences([licence.id])
        )
        == {}
    )


async def test_a_licence_that_breaks_its_rules_is_a_typed_error(
    pools: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    licence = await new_licence(pools[0])
    with pytest.raises(InvalidInput):
        await new_licence(pools[0], valid_until=licence.valid_from - timedelta(days=1))
    with pytest.raises(InvalidInput):
        await new_licence(pools[0], code=licence.code)
    with pytest.raises(InvalidInput):
        await new_licence(pools[0], quota_requests=-1)
