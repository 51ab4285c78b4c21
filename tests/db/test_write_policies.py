"""Row-level security on writes, on its own.

The gateway asks the Cedar policies before it writes, so a write the rules forbid never reaches
the database through the graph, and the graph's tests cannot tell whether PostgreSQL would have
refused it too. These tests connect as the application role, set the caller's identity exactly
as the gateway does (``set_config(name, value, true)`` inside the transaction), and attempt in SQL
what the Cedar policies would refuse. Every refusal is asserted precisely (the row policy's
error, or no row touched) and every rule has a legitimate caller who succeeds, so weakening a
policy turns at least one case red. Each attempt runs in its own transaction, rolled back.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
import pytest
import pytest_asyncio

from api.auth.principal import Principal, PrincipalKind
from api.repositories.audit import chain_pending
from tests.support import DatabaseUnderTest

pytestmark = pytest.mark.db

# What the gateway runs when it opens a request's transaction (api/db/unit_of_work.py).
SET_IDENTITY = (
    "SELECT set_config(name, value, true) FROM unnest($1::text[], $2::text[]) AS s(name, value)"
)
RLS_REFUSAL = "new row violates row-level security policy"
REFUSED = "refused by a row policy's check"
# The trigger that judges a change to another bureau's incident before and after (0004).
GUARD_REFUSAL = "that only its bureau may make"
# The outcome of an attempt: rows written, or REFUSED.
Outcome = int | str


@dataclass(frozen=True, slots=True)
class Caller:
    """Who attempts the write; turned into a Principal once the bureaus' keys are known."""

    name: str
    kind: PrincipalKind
    bureau: str | None
    scopes: tuple[str, ...]
    roles: tuple[str, ...] = ()

    def principal(self, bureaus: Mapping[str, int]) -> Principal:
        return Principal(
            subject=self.name,
            kind=self.kind,
            bureau_id=None if self.bureau is None else bureaus[self.bureau],
            bureau_code=self.bureau,
            roles=frozenset(self.roles),
            scopes=frozenset(self.scopes),
        )


STAFF, SERVICE = PrincipalKind.STAFF, PrincipalKind.SERVICE
READ_WRITE = ("incidents:read", "incidents:write")
EVERY_SCOPE = (*READ_WRITE, "assets:read", "assets:write", "pii:read")

PWB_SUPERVISOR = Caller("pwb-supervisor", STAFF, "PUBLIC_WORKS", EVERY_SCOPE, ("supervisor",))
# Everything a Public Works supervisor holds except the write scopes.
PWB_READER = Caller(
    "pwb-reader", STAFF, "PUBLIC_WORKS", ("incidents:read", "assets:read", "pii:read"), ("viewer",)
)
PWB_SERVICE = Caller("pwb-service", SERVICE, "PUBLIC_WORKS", ("incidents:read", "pii:read"))
PWB_STAFF_WITHOUT_PII = Caller(
    "pwb-viewer", STAFF, "PUBLIC_WORKS", ("incidents:read",), ("viewer",)
)
# Public Works' bureau and every scope: only the kind of principal is wrong.
PWB_ANONYMOUS = Caller("anonymous", PrincipalKind.ANONYMOUS, "PUBLIC_WORKS", EVERY_SCOPE)
PWB_LICENSEE = Caller("acme", PrincipalKind.LICENSEE, "PUBLIC_WORKS", EVERY_SCOPE)
# Police reported the arranged pothole, so Police sees it; it is Public Works' to change.
POLICE_SUPERVISOR = Caller("police-supervisor", STAFF, "POLICE", EVERY_SCOPE, ("supervisor",))
POLICE_CAMERAS = Caller("police-cameras", SERVICE, "POLICE", READ_WRITE)
# Environmental Protection sees the pothole because it was shared with it.
EPB_SUPERVISOR = Caller(
    "epb-supervisor", STAFF, "ENVIRONMENTAL_PROTECTION", EVERY_SCOPE, ("supervisor",)
)
CITY_VIEWER = Caller("city-viewer", STAFF, None, READ_WRITE, ("city_viewer",))
JOINT_SERVICE_CENTRE = Caller("jsc-operator", STAFF, "RDEC", EVERY_SCOPE, ("dispatcher",))
AUDITOR = Caller("auditor", PrincipalKind.AUDITOR, None, ("audit:read",), ("auditor",))
INVESTIGATOR = Caller(
    "investigator",
    PrincipalKind.AUDITOR,
    None,
    ("audit:read", "incidents:read", "pii:read"),
    ("auditor",),
)
# Idempotency keys are the caller's own; the subjects are this module's, unique in the session.
KEY_HOLDER = Caller("write-policies-key-holder", STAFF, "PUBLIC_WORKS", READ_WRITE, ("dispatcher",))
OTHER_SUBJECT = "write-policies-someone-else"


@dataclass(frozen=True, slots=True)
class World:
    """Rows arranged by the schema owner (their keys)."""

    bureaus: dict[str, int]
    # Public Works' pothole, reported by Police, shared with Environmental Protection; it has a
    # reporter and a Public Works work order.
    pothole: int
    # Public Works' own report: nobody else but city-wide readers sees it. No reporter.
    private: int
    # A camera finding waiting for verification, Public Works'.
    detected: int
    work_order: int
    asset: int


ARRANGE_INCIDENT = """
INSERT INTO incident (title, category, status, source, responsible_bureau_id,
    reporting_bureau_id, latitude, longitude, reported_at, due_at, created_by,
    involved_bureau_ids)
VALUES ($1, 'POTHOLE', $2, $3, $4, $5, 22.6273, 120.3014, now(), now() + interval '2 days',
    'arranged', $6)
RETURNING id
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(database: DatabaseUnderTest) -> World:
    """Arranged once for the module: every attempt is rolled back, so the rows stay as they are.
    Codes and subjects are the module's own, so rows other tests left behind do not interfere."""
    owner = await asyncpg.connect(
        database.owner_url, server_settings={"search_path": "lighthouse, public"}
    )
    try:
        return await _arrange(owner)
    finally:
        await owner.close()


async def _arrange(owner: asyncpg.Connection) -> World:
    bureaus = {row["code"]: row["id"] for row in await owner.fetch("SELECT code, id FROM bureau")}
    pwb, police, epb = (
        bureaus["PUBLIC_WORKS"],
        bureaus["POLICE"],
        bureaus["ENVIRONMENTAL_PROTECTION"],
    )
    pothole = await owner.fetchval(
        ARRANGE_INCIDENT, "警察通報的坑洞", "VERIFIED", "STAFF", pwb, police, [police, epb]
    )
    private = await owner.fetchval(
        ARRANGE_INCIDENT, "工務局自報", "VERIFIED", "STAFF", pwb, pwb, []
    )
    detected = await owner.fetchval(ARRANGE_INCIDENT, "影像偵測", "DETECTED", "VLM", pwb, None, [])
    await owner.execute(
        "INSERT INTO incident_share (incident_id, bureau_id, reason, shared_by)"
        " VALUES ($1, $2, '協助', 'arranged')",
        pothole,
        epb,
    )
    await owner.execute(
        "INSERT INTO incident_reporter (incident_id, name, phone) VALUES ($1, '陳美玲', '0921889838')",
        pothole,
    )
    work_order = await owner.fetchval(
        "INSERT INTO work_order (incident_id, bureau_id, status, crew, created_by)"
        " VALUES ($1, $2, 'OPEN', '養護一隊', 'arranged') RETURNING id",
        pothole,
        pwb,
    )
    asset = await owner.fetchval(
        "INSERT INTO asset (code, kind, name, bureau_id, latitude, longitude, created_by)"
        " VALUES ($1, 'CAMERA', '路口攝影機', $2, 22.6273, 120.3014, 'arranged') RETURNING id",
        f"WRITE-POLICIES-{uuid.uuid4().hex[:12]}",
        pwb,
    )
    await owner.execute(
        "INSERT INTO idempotency_key (subject, key, operation, request_hash)"
        " VALUES ($1, 'own-key', 'createIncident', 'h1'), ($2, 'their-key', 'createIncident', 'h2')",
        KEY_HOLDER.name,
        OTHER_SUBJECT,
    )
    return World(bureaus, pothole, private, detected, work_order, asset)


@asynccontextmanager
async def acting_as(
    app: asyncpg.Connection, caller: Caller, world: World
) -> AsyncIterator[asyncpg.Connection]:
    """A transaction carrying ``caller``'s identity, set as the gateway sets it; rolled back."""
    settings = caller.principal(world.bureaus).database_settings()
    transaction = app.transaction()
    await transaction.start()
    try:
        await app.execute(SET_IDENTITY, list(settings), list(settings.values()))
        yield app
    finally:
        await transaction.rollback()


async def attempt(connection: asyncpg.Connection, sql: str, *args: object) -> Outcome:
    """The rows ``sql`` wrote, or REFUSED when a row policy's check rejected a new row. Any other
    error (a missing grant, a constraint) is raised: it is not the outcome under test."""
    try:
        status: str = await connection.execute(sql, *args)
    except asyncpg.InsufficientPrivilegeError as error:
        if RLS_REFUSAL not in str(error) and GUARD_REFUSAL not in str(error):
            raise
        return REFUSED
    return int(status.split()[-1])


async def visible(connection: asyncpg.Connection, table: str, key: int) -> int:
    count: int = await connection.fetchval(f"SELECT count(*) FROM {table} WHERE id = $1", key)
    return count


Args = Callable[[World], tuple[object, ...]]


# --- incidents ------------------------------------------------------------------------------

CREATE_INCIDENT = """
INSERT INTO incident (title, category, status, source, responsible_bureau_id,
    reporting_bureau_id, latitude, longitude, reported_at, due_at, created_by)
VALUES ('新案', 'POTHOLE', 'VERIFIED', 'STAFF', $1, $2, 22.6, 120.3, now(), now(), 'test')
"""


@pytest.mark.parametrize(
    ("caller", "reporting", "expected"),
    [
        pytest.param(PWB_SUPERVISOR, "PUBLIC_WORKS", 1, id="staff-reports-for-own-bureau"),
        pytest.param(POLICE_CAMERAS, "POLICE", 1, id="service-reports-for-own-bureau"),
        pytest.param(PWB_SUPERVISOR, "POLICE", REFUSED, id="reporting-bureau-not-the-callers"),
        pytest.param(PWB_SUPERVISOR, None, REFUSED, id="no-reporting-bureau"),
        pytest.param(PWB_READER, "PUBLIC_WORKS", REFUSED, id="without-incidents-write"),
        pytest.param(PWB_ANONYMOUS, "PUBLIC_WORKS", REFUSED, id="anonymous"),
        pytest.param(PWB_LICENSEE, "PUBLIC_WORKS", REFUSED, id="licensee"),
    ],
)
async def test_creating_an_incident(
    app: asyncpg.Connection, world: World, caller: Caller, reporting: str | None, expected: Outcome
) -> None:
    reporting_id = None if reporting is None else world.bureaus[reporting]
    async with acting_as(app, caller, world) as connection:
        outcome = await attempt(
            connection, CREATE_INCIDENT, world.bureaus["PUBLIC_WORKS"], reporting_id
        )
    assert outcome == expected


@pytest.mark.parametrize(
    ("caller", "expected", "reads_it"),
    [
        pytest.param(PWB_SUPERVISOR, 1, True, id="responsible-bureau"),
        # Each of these reads the incident, so only the change policy stands in the way.
        pytest.param(POLICE_SUPERVISOR, 0, True, id="reporting-bureau-not-responsible"),
        pytest.param(EPB_SUPERVISOR, 0, True, id="shared-bureau-not-responsible"),
        pytest.param(CITY_VIEWER, 0, True, id="city-wide-reader-with-incidents-write"),
        pytest.param(PWB_READER, 0, True, id="responsible-bureau-without-incidents-write"),
        # Whether these read it is another rule's business: only staff and services change.
        pytest.param(PWB_ANONYMOUS, 0, False, id="anonymous"),
        pytest.param(PWB_LICENSEE, 0, False, id="licensee"),
    ],
)
async def test_changing_an_incident(
    app: asyncpg.Connection, world: World, caller: Caller, expected: int, reads_it: bool
) -> None:
    async with acting_as(app, caller, world) as connection:
        if reads_it:
            assert await visible(connection, "incident", world.pothole) == 1, (
                "the caller must read the incident, or the refusal proves nothing about writes"
            )
        outcome = await attempt(
            connection,
            "UPDATE incident SET title = '改寫', version = version + 1 WHERE id = $1",
            world.pothole,
        )
    assert outcome == expected


CLOSE = """
UPDATE incident SET status = 'CLOSED', closing_reason = $2, closed_at = now(),
    duplicate_of_id = CASE WHEN $2 = 'DUPLICATE' THEN $3::bigint END, version = version + 1
WHERE id = $1
"""


@pytest.mark.parametrize(
    ("caller", "reason", "expected"),
    [
        # The joint service centre closes another bureau's incident only as a false report or a
        # duplicate (migration 0004); the responsible bureau closes it with any reason.
        *(
            pytest.param(JOINT_SERVICE_CENTRE, reason, REFUSED, id=f"jsc-{reason}")
            for reason in ("FIXED", "NOT_RESPONSIBLE", "TRANSFERRED")
        ),
        *(
            pytest.param(JOINT_SERVICE_CENTRE, reason, 1, id=f"jsc-{reason}")
            for reason in ("FALSE_POSITIVE", "DUPLICATE")
        ),
        *(
            pytest.param(PWB_SUPERVISOR, reason, 1, id=f"responsible-{reason}")
            for reason in ("FIXED", "FALSE_POSITIVE", "DUPLICATE", "NOT_RESPONSIBLE", "TRANSFERRED")
        ),
    ],
)
async def test_closing_another_bureaus_incident(
    app: asyncpg.Connection, world: World, caller: Caller, reason: str, expected: Outcome
) -> None:
    async with acting_as(app, caller, world) as connection:
        outcome = await attempt(connection, CLOSE, world.pothole, reason, world.private)
    assert outcome == expected


JSC_STEPS: dict[str, tuple[str, Args]] = {
    "verify": (
        "UPDATE incident SET status = 'VERIFIED', version = version + 1 WHERE id = $1",
        lambda w: (w.detected,),
    ),
    "transfer": (
        "UPDATE incident SET responsible_bureau_id = $2,"
        " involved_bureau_ids = involved_bureau_ids || responsible_bureau_id,"
        " version = version + 1 WHERE id = $1",
        lambda w: (w.pothole, w.bureaus["WATER_RESOURCES"]),
    ),
}


@pytest.mark.parametrize("step", list(JSC_STEPS))
async def test_joint_service_centre_verifies_and_routes(
    app: asyncpg.Connection, world: World, step: str
) -> None:
    sql, args = JSC_STEPS[step]
    async with acting_as(app, JOINT_SERVICE_CENTRE, world) as connection:
        assert await attempt(connection, sql, *args(world)) == 1


# --- what hangs off an incident ---------------------------------------------------------------

CREATE_WORK_ORDER = """
INSERT INTO work_order (incident_id, bureau_id, status, crew, created_by)
VALUES ($1, $2, 'OPEN', '外包隊', 'test')
"""


@pytest.mark.parametrize(
    ("caller", "incident", "bureau", "expected"),
    [
        pytest.param(PWB_SUPERVISOR, "pothole", "PUBLIC_WORKS", 1, id="own-bureau"),
        pytest.param(PWB_SUPERVISOR, "pothole", "POLICE", REFUSED, id="for-another-bureau"),
        pytest.param(POLICE_SUPERVISOR, "private", "POLICE", REFUSED, id="incident-not-visible"),
        pytest.param(PWB_READER, "pothole", "PUBLIC_WORKS", REFUSED, id="without-incidents-write"),
    ],
)
async def test_creating_a_work_order(
    app: asyncpg.Connection,
    world: World,
    caller: Caller,
    incident: str,
    bureau: str,
    expected: Outcome,
) -> None:
    incident_id = getattr(world, incident)
    async with acting_as(app, caller, world) as connection:
        outcome = await attempt(connection, CREATE_WORK_ORDER, incident_id, world.bureaus[bureau])
    assert outcome == expected


@pytest.mark.parametrize(
    ("caller", "change", "expected"),
    [
        pytest.param(PWB_SUPERVISOR, "crew = '養護二隊'", 1, id="own-bureau"),
        pytest.param(JOINT_SERVICE_CENTRE, "crew = '養護二隊'", 1, id="joint-service-centre"),
        pytest.param(POLICE_SUPERVISOR, "crew = '養護二隊'", 0, id="another-bureau"),
        pytest.param(PWB_READER, "crew = '養護二隊'", 0, id="without-incidents-write"),
        pytest.param(
            PWB_SUPERVISOR,
            "bureau_id = (SELECT id FROM bureau WHERE code = 'POLICE')",
            REFUSED,
            id="handed-to-another-bureau",
        ),
    ],
)
async def test_changing_a_work_order(
    app: asyncpg.Connection, world: World, caller: Caller, change: str, expected: Outcome
) -> None:
    async with acting_as(app, caller, world) as connection:
        assert await visible(connection, "work_order", world.work_order) == 1
        outcome = await attempt(
            connection, f"UPDATE work_order SET {change} WHERE id = $1", world.work_order
        )
    assert outcome == expected


@pytest.mark.parametrize(
    ("caller", "incident", "expected"),
    [
        pytest.param(PWB_SUPERVISOR, "pothole", 1, id="responsible-bureau"),
        pytest.param(POLICE_SUPERVISOR, "private", REFUSED, id="incident-not-visible"),
        pytest.param(PWB_READER, "pothole", REFUSED, id="without-incidents-write"),
    ],
)
async def test_recording_a_transfer(
    app: asyncpg.Connection, world: World, caller: Caller, incident: str, expected: Outcome
) -> None:
    async with acting_as(app, caller, world) as connection:
        outcome = await attempt(
            connection,
            "INSERT INTO incident_transfer (incident_id, from_bureau_id, to_bureau_id, reason,"
            " actor) VALUES ($1, $2, $3, '非本局權責', 'test')",
            getattr(world, incident),
            world.bureaus["PUBLIC_WORKS"],
            world.bureaus["WATER_RESOURCES"],
        )
    assert outcome == expected


@pytest.mark.parametrize(
    ("caller", "incident", "expected"),
    [
        pytest.param(PWB_SUPERVISOR, "pothole", 1, id="responsible-bureau"),
        # Police and the joint service centre see the pothole, but it is not theirs to share.
        pytest.param(POLICE_SUPERVISOR, "pothole", REFUSED, id="reporting-bureau-not-responsible"),
        pytest.param(JOINT_SERVICE_CENTRE, "pothole", REFUSED, id="joint-service-centre"),
        pytest.param(POLICE_SUPERVISOR, "private", REFUSED, id="incident-not-visible"),
        pytest.param(PWB_READER, "pothole", REFUSED, id="without-incidents-write"),
    ],
)
async def test_sharing_an_incident(
    app: asyncpg.Connection, world: World, caller: Caller, incident: str, expected: Outcome
) -> None:
    async with acting_as(app, caller, world) as connection:
        outcome = await attempt(
            connection,
            "INSERT INTO incident_share (incident_id, bureau_id, reason, shared_by)"
            " VALUES ($1, $2, '請協助', 'test')",
            getattr(world, incident),
            world.bureaus["WATER_RESOURCES"],
        )
    assert outcome == expected


@pytest.mark.parametrize(
    ("caller", "expected"),
    [
        pytest.param(PWB_SUPERVISOR, 1, id="responsible-bureau"),
        pytest.param(POLICE_SUPERVISOR, 0, id="reporting-bureau-not-responsible"),
        pytest.param(EPB_SUPERVISOR, 0, id="the-bureau-shared-with"),
        pytest.param(PWB_READER, 0, id="without-incidents-write"),
    ],
)
async def test_withdrawing_a_share(
    app: asyncpg.Connection, world: World, caller: Caller, expected: int
) -> None:
    async with acting_as(app, caller, world) as connection:
        shares = "SELECT count(*) FROM incident_share WHERE incident_id = $1"
        assert await connection.fetchval(shares, world.pothole) == 1
        outcome = await attempt(
            connection, "DELETE FROM incident_share WHERE incident_id = $1", world.pothole
        )
    assert outcome == expected


@pytest.mark.parametrize(
    ("caller", "expected"),
    [
        pytest.param(PWB_SUPERVISOR, 1, id="with-incidents-write"),
        pytest.param(PWB_READER, REFUSED, id="without-incidents-write"),
    ],
)
async def test_recording_a_reporter(
    app: asyncpg.Connection, world: World, caller: Caller, expected: Outcome
) -> None:
    async with acting_as(app, caller, world) as connection:
        outcome = await attempt(
            connection,
            "INSERT INTO incident_reporter (incident_id, name) VALUES ($1, '王小明')",
            world.private,
        )
    assert outcome == expected


@pytest.mark.parametrize(
    ("caller", "expected"),
    [
        pytest.param(PWB_SUPERVISOR, 1, id="responsible-staff-with-pii-read"),
        pytest.param(PWB_READER, 1, id="responsible-viewer-with-pii-read"),
        pytest.param(INVESTIGATOR, 1, id="auditor-granted-pii-read"),
        # Staff only: a service of the responsible bureau reads the incident, not its reporter.
        pytest.param(PWB_SERVICE, 0, id="responsible-service-with-pii-read"),
        pytest.param(PWB_STAFF_WITHOUT_PII, 0, id="responsible-staff-without-pii-read"),
        pytest.param(POLICE_SUPERVISOR, 0, id="reporting-bureau-with-pii-read"),
        pytest.param(JOINT_SERVICE_CENTRE, 0, id="joint-service-centre-with-pii-read"),
        pytest.param(PWB_LICENSEE, 0, id="licensee-with-pii-read"),
    ],
)
async def test_reading_personal_data(
    app: asyncpg.Connection, world: World, caller: Caller, expected: int
) -> None:
    async with acting_as(app, caller, world) as connection:
        # Each reads the incident (a licensee's reading is another rule's business): only the
        # personal-data policy stands between it and the reporter.
        if caller is not PWB_LICENSEE:
            assert await visible(connection, "incident", world.pothole) == 1
        reporters = await connection.fetch(
            "SELECT name FROM incident_reporter WHERE incident_id = $1", world.pothole
        )
    assert [r["name"] for r in reporters] == ["陳美玲"] * expected


# --- assets, idempotency keys, the audit trail ----------------------------------------------------

CREATE_ASSET = """
INSERT INTO asset (code, kind, name, bureau_id, latitude, longitude, created_by)
VALUES ('WRITE-POLICIES-NEW', 'STREET_LIGHT', '路燈', $1, 22.6, 120.3, 'test')
"""


@pytest.mark.parametrize(
    ("caller", "bureau", "expected"),
    [
        pytest.param(PWB_SUPERVISOR, "PUBLIC_WORKS", 1, id="own-bureau"),
        pytest.param(PWB_SUPERVISOR, "POLICE", REFUSED, id="for-another-bureau"),
        pytest.param(PWB_READER, "PUBLIC_WORKS", REFUSED, id="without-assets-write"),
    ],
)
async def test_registering_an_asset(
    app: asyncpg.Connection, world: World, caller: Caller, bureau: str, expected: Outcome
) -> None:
    async with acting_as(app, caller, world) as connection:
        outcome = await attempt(connection, CREATE_ASSET, world.bureaus[bureau])
    assert outcome == expected


@pytest.mark.parametrize(
    ("caller", "change", "expected"),
    [
        pytest.param(PWB_SUPERVISOR, "name = '新名稱'", 1, id="own-bureau"),
        pytest.param(POLICE_SUPERVISOR, "name = '新名稱'", 0, id="another-bureau"),
        pytest.param(PWB_READER, "name = '新名稱'", 0, id="without-assets-write"),
        pytest.param(
            PWB_SUPERVISOR,
            "bureau_id = (SELECT id FROM bureau WHERE code = 'POLICE')",
            REFUSED,
            id="handed-to-another-bureau",
        ),
    ],
)
async def test_changing_an_asset(
    app: asyncpg.Connection, world: World, caller: Caller, change: str, expected: Outcome
) -> None:
    async with acting_as(app, caller, world) as connection:
        assert await visible(connection, "asset", world.asset) == 1
        outcome = await attempt(connection, f"UPDATE asset SET {change} WHERE id = $1", world.asset)
    assert outcome == expected


CLAIM_KEY = """
INSERT INTO idempotency_key (subject, key, operation, request_hash)
VALUES ($1, 'new-key', 'createIncident', 'h')
"""


@pytest.mark.parametrize(
    ("sql", "args", "expected"),
    [
        # Statements over the whole table: the policy leaves only the caller's own key in reach.
        pytest.param("UPDATE idempotency_key SET resource_id = 7", (), 1, id="update"),
        pytest.param("DELETE FROM idempotency_key", (), 1, id="delete"),
        pytest.param(CLAIM_KEY, (KEY_HOLDER.name,), 1, id="insert-own"),
        pytest.param(CLAIM_KEY, (OTHER_SUBJECT,), REFUSED, id="insert-for-another-subject"),
    ],
)
async def test_idempotency_keys_belong_to_their_subject(
    app: asyncpg.Connection, world: World, sql: str, args: tuple[str, ...], expected: Outcome
) -> None:
    async with acting_as(app, KEY_HOLDER, world) as connection:
        keys = await connection.fetch("SELECT subject, key FROM idempotency_key")
        assert [tuple(k) for k in keys] == [(KEY_HOLDER.name, "own-key")]
        assert await attempt(connection, sql, *args) == expected


APPEND_AUDIT = """
SELECT lighthouse.append_audit(now(), 'request-1', 'auditor', NULL, NULL, 'auditor', 'graphql',
    'probe', NULL, '{}', 'ALLOW', '{}', 'v1', false, 'payload')
"""


@pytest.mark.parametrize(
    "sql",
    [
        pytest.param(
            "INSERT INTO audit_record SELECT * FROM audit_record ORDER BY seq DESC LIMIT 1",
            id="insert",
        ),
        pytest.param("UPDATE audit_record SET subject = 'someone-else'", id="update"),
        pytest.param("DELETE FROM audit_record", id="delete"),
        pytest.param("TRUNCATE audit_record", id="truncate"),
    ],
)
async def test_the_audit_trail_is_written_only_through_append_audit(
    app: asyncpg.Connection, world: World, sql: str
) -> None:
    async with acting_as(app, AUDITOR, world) as connection:
        await connection.fetchval(APPEND_AUDIT)
        seq = await chain_pending(connection)  # linked in the same transaction
        record = "SELECT subject, operation FROM audit_record WHERE seq = $1"
        assert tuple(await connection.fetchrow(record, seq)) == ("auditor", "probe")
        with pytest.raises(
            asyncpg.InsufficientPrivilegeError, match="permission denied for table audit_record"
        ):
            await connection.execute(sql)


# --- writes that only the caller's bureau's rights allow ------------------------------------------


@pytest.mark.parametrize(
    ("caller", "sql", "args"),
    [
        pytest.param(
            JOINT_SERVICE_CENTRE,
            "UPDATE incident SET responsible_bureau_id = $2, status = 'CLOSED',"
            " closing_reason = 'FIXED', closed_at = now() WHERE id = $1",
            lambda w: (w.pothole, w.bureaus["RDEC"]),
            id="jsc-takes-the-incident-and-closes-it-fixed-in-one-statement",
        ),
        pytest.param(
            POLICE_SUPERVISOR,
            "INSERT INTO incident_reporter (incident_id, name) VALUES ($1, '冒名')",
            lambda w: (w.private,),
            id="reporter-for-an-incident-the-caller-cannot-see",
        ),
        pytest.param(
            PWB_READER,
            "INSERT INTO incident_event (incident_id, kind, actor) VALUES ($1, 'CLOSE', 'x')",
            lambda w: (w.pothole,),
            id="history-appended-without-incidents-write",
        ),
        pytest.param(
            POLICE_SUPERVISOR,
            "INSERT INTO incident_transfer (incident_id, from_bureau_id, to_bureau_id, reason,"
            " actor) VALUES ($1, $2, $3, '偽造', 'x')",
            lambda w: (w.pothole, w.bureaus["FIRE"], w.bureaus["WATER_RESOURCES"]),
            id="transfer-recorded-by-a-bureau-not-responsible",
        ),
        pytest.param(
            POLICE_SUPERVISOR,
            CREATE_WORK_ORDER,
            lambda w: (w.pothole, w.bureaus["POLICE"]),
            id="work-order-by-a-bureau-not-responsible",
        ),
    ],
)
async def test_what_hangs_off_an_incident_is_written_only_by_who_may(
    app: asyncpg.Connection, world: World, caller: Caller, sql: str, args: Args
) -> None:
    """Writes the Cedar rules refuse are refused by the database too (migration 0004 closed
    each of these: they were let through before)."""
    async with acting_as(app, caller, world) as connection:
        assert await attempt(connection, sql, *args(world)) == REFUSED


# The city's model officers decide model versions and thresholds, each decision in their own
# name; nobody else writes them, whatever else they hold.
MODEL_OFFICER = Caller("rdec-evaluator", STAFF, "RDEC", ("incidents:read", "models:admin"))
OFFICERS_DECISIONS = {
    "threshold": "INSERT INTO category_threshold (category, threshold, reason, decided_by)"
    " VALUES ('POTHOLE', 0.8, 'from the reviews', $1)",
    "version": "INSERT INTO model_decision (model, version, role, reason, decided_by)"
    " VALUES ('lighthouse-tiny-vlm', '2', 'PRODUCTION', 'measured', $1)",
}


@pytest.mark.parametrize("decision", sorted(OFFICERS_DECISIONS))
@pytest.mark.parametrize(
    ("caller", "in_the_name_of", "expected"),
    [
        pytest.param(MODEL_OFFICER, "rdec-evaluator", 1, id="officer-in-own-name"),
        pytest.param(MODEL_OFFICER, "someone-else", REFUSED, id="officer-in-anothers-name"),
        pytest.param(PWB_SUPERVISOR, "pwb-supervisor", REFUSED, id="staff-without-models-admin"),
        pytest.param(
            Caller("acme", PrincipalKind.LICENSEE, None, ("models:admin",)),
            "acme",
            REFUSED,
            id="licensee-with-models-admin",
        ),
    ],
)
async def test_model_officers_decisions(
    app: asyncpg.Connection,
    world: World,
    decision: str,
    caller: Caller,
    in_the_name_of: str,
    expected: Outcome,
) -> None:
    async with acting_as(app, caller, world) as connection:
        outcome = await attempt(connection, OFFICERS_DECISIONS[decision], in_the_name_of)
    assert outcome == expected
