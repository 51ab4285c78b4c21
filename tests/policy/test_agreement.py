"""The rule book, Cedar, row-level security and the API agree exactly on who sees which
incident, and on whose personal data — for thousands of random principals and random incident
histories.

Each example builds a small world through the real write path (the workflow services, as the
application role, with row-level security on): incidents reported by some bureau, possibly from
another bureau's asset, transferred, shared. Then, for a random principal — most often of a
bureau the world involves, most often with the read scopes — four answers are compared, each
reached on its own, for every incident of the world:
- the rule book (policies/README.md) as this test writes it down, from its own model;
- Cedar's decisions on entities derived from the test's own model (personal data is decided on
  its own, as well as inside visibility);
- what PostgreSQL returns to the application role with that principal's identity;
- what the GraphQL API returns to a token for that principal.
The examples are random on every run, with the rare combinations pinned as explicit examples,
and the test counts how often each rule was exercised: a rule below its floor fails the test.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api import bundled
from api.access.scope import AccessScope
from api.auth.principal import Principal, PrincipalKind
from api.db.database import Database
from api.db.pool import create_pool
from api.domain.geo import Wgs84Point
from api.domain.lifecycle import IncidentSource
from api.domain.models import IncidentFacts
from api.domain.sla import SlaCalendar
from api.metrics import Metrics
from api.policy import resources
from api.policy.engine import PolicyEngine
from api.services.incidents.lifecycle import IncidentLifecycle
from api.services.incidents.reporting import IncidentReport, IncidentReporting
from api.services.incidents.sharing import IncidentSharing
from api.settings import DatabaseSettings, Settings
from tests.graph.helpers import key_of
from tests.support import DatabaseUnderTest, GatewayProcess
from tests.tokens import TokenFactory

pytestmark = pytest.mark.db

EXAMPLES = int(os.environ.get("LIGHTHOUSE_AGREEMENT_EXAMPLES", "2000"))
BUREAUS = [
    "PUBLIC_WORKS", "POLICE", "ENVIRONMENTAL_PROTECTION", "TRANSPORTATION", "FIRE",
    "WATER_RESOURCES", "ECONOMIC_DEVELOPMENT", "RDEC", "TAIPOWER", "TAIWAN_WATER",
]  # fmt: skip
# category → responsible bureau (migrations/versions/0002_reference_data.py)
CATEGORIES = {
    "POTHOLE": "PUBLIC_WORKS",
    "FLOODING": "WATER_RESOURCES",
    "ILLEGAL_DUMPING": "ENVIRONMENTAL_PROTECTION",
    "ILLEGAL_PARKING": "POLICE",
    "FIRE_SMOKE": "FIRE",
    "POWER_LINE_HAZARD": "TAIPOWER",
}
SCOPES = ["incidents:read", "incidents:write", "assets:read", "pii:read", "audit:read"]
ROLES = ["viewer", "dispatcher", "supervisor", "city_viewer"]


@dataclass
class PlannedIncident:
    category: str
    reporter: str  # the reporting bureau (reporting takes a bureau)
    asset_owner: str | None
    transfers: list[str]
    shares: list[str]


@dataclass
class Built:
    key: int
    facts: IncidentFacts


@dataclass
class World:
    incidents: list[Built] = field(default_factory=list)


incidents_strategy = st.builds(
    PlannedIncident,
    category=st.sampled_from(sorted(CATEGORIES)),
    reporter=st.sampled_from(BUREAUS),
    asset_owner=st.one_of(st.none(), st.sampled_from(BUREAUS)),
    transfers=st.lists(st.sampled_from(BUREAUS), max_size=2),
    shares=st.lists(st.sampled_from(BUREAUS), max_size=2, unique=True),
)
JOINT_SERVICE_CENTRE = "RDEC"


def involved(plan: PlannedIncident) -> set[str]:
    """Every bureau a planned incident involves (and so may be visible to)."""
    return {
        CATEGORIES[plan.category],
        plan.reporter,
        *([plan.asset_owner] if plan.asset_owner else []),
        *plan.transfers,
        *plan.shares,
    }


@st.composite
def principals(draw: st.DrawFn, plans: list[PlannedIncident]) -> dict[str, Any]:
    """A principal, most often of a bureau the world involves and holding the read scopes, so
    that most examples compare non-empty answers."""
    world_bureaus = sorted(set().union(*(involved(p) for p in plans)))
    kind = draw(st.sampled_from(["staff"] * 6 + ["service"] * 2 + ["licensee", "auditor"]))
    bureau = draw(
        st.one_of(
            st.sampled_from(world_bureaus),
            st.sampled_from(world_bureaus),
            st.sampled_from(world_bureaus),
            st.sampled_from(BUREAUS),
            st.none(),
        )
    )
    scopes = set(draw(st.lists(st.sampled_from(SCOPES), unique=True, max_size=3)))
    if draw(st.integers(0, 9)) < 8:
        scopes.add("incidents:read")
    if draw(st.booleans()):
        scopes.add("pii:read")
    roles = draw(st.lists(st.sampled_from(ROLES), unique=True, max_size=2))
    return {"kind": kind, "bureau": bureau, "roles": roles, "scopes": sorted(scopes)}


def rule_book_view(who: dict[str, Any], plan: PlannedIncident, responsible: str) -> bool:
    """Seeing incidents, as policies/README.md says it (not as Cedar or SQL do)."""
    if "incidents:read" not in who["scopes"]:
        return False
    if who["kind"] == "auditor":
        return True  # incidents.view.auditor-investigation
    if who["kind"] not in ("staff", "service"):
        return False
    if "city_viewer" in who["roles"] or who["bureau"] == JOINT_SERVICE_CENTRE:
        return True  # incidents.view.city-wide
    bureau = who["bureau"]
    if bureau is None:
        return False
    return (
        bureau == responsible
        or bureau in {plan.reporter, plan.asset_owner}
        or bureau in (held_by(plan) | shared_with(plan, responsible))
    )


def rule_book_personal_data(who: dict[str, Any], responsible: str) -> bool:
    """Personal data, as policies/README.md says it: on its own, not only inside visibility."""
    scopes = who["scopes"]
    if "pii:read" not in scopes or "incidents:read" not in scopes:
        return False
    if who["kind"] == "auditor":
        return True  # pii.auditor-granted
    return who["kind"] == "staff" and who["bureau"] == responsible  # pii.responsible-bureau


def held_by(plan: PlannedIncident) -> set[str]:
    """The bureaus that handed the incident on (the plan's transfers, as the world built them)."""
    held: set[str] = set()
    responsible = CATEGORIES[plan.category]
    for target in plan.transfers:
        if target != responsible:
            held.add(responsible)
            responsible = target
    return held


def final_responsible(plan: PlannedIncident) -> str:
    responsible = CATEGORIES[plan.category]
    for target in plan.transfers:
        if target != responsible:
            responsible = target
    return responsible


def shared_with(plan: PlannedIncident, responsible: str) -> set[str]:
    return {b for b in plan.shares if b != responsible}


# The rare combinations, always tried: (plans, principal).
PINNED = [
    ([PlannedIncident("POTHOLE", "POLICE", "FIRE", [], [])],
     {"kind": "staff", "bureau": "RDEC", "roles": ["viewer"], "scopes": ["incidents:read", "pii:read"]}),
    ([PlannedIncident("POTHOLE", "POLICE", None, [], [])],
     {"kind": "service", "bureau": "PUBLIC_WORKS", "roles": [], "scopes": ["incidents:read", "pii:read"]}),
    ([PlannedIncident("FLOODING", "POLICE", None, [], [])],
     {"kind": "staff", "bureau": "WATER_RESOURCES", "roles": ["viewer"], "scopes": ["incidents:read", "pii:read"]}),
    ([PlannedIncident("FLOODING", "FIRE", "TAIPOWER", ["PUBLIC_WORKS"], ["POLICE"])],
     {"kind": "staff", "bureau": "WATER_RESOURCES", "roles": [], "scopes": ["incidents:read", "pii:read"]}),
    ([PlannedIncident("ILLEGAL_PARKING", "FIRE", None, [], ["TAIPOWER"])],
     {"kind": "service", "bureau": "TAIPOWER", "roles": [], "scopes": ["incidents:read"]}),
    ([PlannedIncident("FIRE_SMOKE", "POLICE", "TAIWAN_WATER", [], [])],
     {"kind": "staff", "bureau": "TAIWAN_WATER", "roles": [], "scopes": ["incidents:read", "pii:read"]}),
    ([PlannedIncident("POTHOLE", "POLICE", None, [], [])],
     {"kind": "staff", "bureau": None, "roles": ["city_viewer"], "scopes": ["incidents:read", "pii:read"]}),
    ([PlannedIncident("POTHOLE", "POLICE", None, [], [])],
     {"kind": "auditor", "bureau": None, "roles": [], "scopes": ["incidents:read", "pii:read"]}),
    ([PlannedIncident("POTHOLE", "POLICE", None, [], [])],
     {"kind": "auditor", "bureau": None, "roles": [], "scopes": ["audit:read"]}),
    ([PlannedIncident("POTHOLE", "PUBLIC_WORKS", None, [], [])],
     {"kind": "licensee", "bureau": None, "roles": [], "scopes": ["incidents:read", "pii:read"]}),
    ([PlannedIncident("POTHOLE", "PUBLIC_WORKS", None, [], [])],
     {"kind": "staff", "bureau": "PUBLIC_WORKS", "roles": ["supervisor"], "scopes": ["pii:read"]}),
]  # fmt: skip
# The rules each example may exercise, and how many examples must exercise each (a rule
# exercised less is not tested, whatever the count of examples).
RULES = [
    "incidents.view.own-bureau",
    "incidents.view.involved-bureau",
    "incidents.view.city-wide",
    "incidents.view.auditor-investigation",
    "pii.responsible-bureau",
    "pii.auditor-granted",
    "pii.never-for-licensees",
]
FLOOR = max(3, EXAMPLES // 100)


class Harness:
    """The pieces each example uses, made once: a pool as the application role, the policy
    engine, an HTTP client and tokens."""

    def __init__(
        self, database: DatabaseUnderTest, gateway: GatewayProcess, tokens: TokenFactory
    ) -> None:
        self.database = database
        self.gateway = gateway
        self.tokens = tokens
        self.loop = asyncio.new_event_loop()
        self.settings = Settings(database=DatabaseSettings(url=database.app_url))
        self.pool: asyncpg.Pool = self.loop.run_until_complete(
            create_pool(database.app_url, self.settings)
        )
        self.bureau_ids: dict[str, int] = {}
        self.assets: dict[str, int] = {}
        self.loop.run_until_complete(self._prepare())
        jsc = {"RDEC"}
        self.engine = PolicyEngine(
            bundled.directory("policies"), [(code, code in jsc) for code in BUREAUS]
        )
        self.calendar = SlaCalendar("Asia/Taipei")
        self.database_handle = Database(self.pool, Metrics().record_statements)
        self.http = httpx.AsyncClient(base_url=gateway.base_url, timeout=30)
        self.example = 0
        self.start = datetime.now(UTC) - timedelta(days=30)

    async def _prepare(self) -> None:
        owner = await asyncpg.connect(self.database.owner_url)
        try:
            rows = await owner.fetch("SELECT id, code FROM lighthouse.bureau")
            self.bureau_ids = {r["code"]: r["id"] for r in rows}
            for code, bureau_id in self.bureau_ids.items():
                self.assets[code] = await owner.fetchval(
                    "INSERT INTO lighthouse.asset (code, kind, name, bureau_id, latitude, longitude, created_by)"
                    " VALUES ($1, 'CAMERA', $1, $2, 22.62, 120.30, 'test') RETURNING id",
                    f"AGREEMENT-{code}-{os.getpid()}-{id(self)}", bureau_id,
                )  # fmt: skip
        finally:
            await owner.close()

    def staff(self, bureau: str | None, *scopes: str) -> Principal:
        return Principal(
            subject=f"builder-{bureau}",
            kind=PrincipalKind.STAFF if bureau else PrincipalKind.SERVICE,
            bureau_id=self.bureau_ids.get(bureau) if bureau else None,
            bureau_code=bureau,
            roles=frozenset({"supervisor"}),
            scopes=frozenset({"incidents:read", "incidents:write", "assets:read", *scopes}),
        )

    async def run(self, principal: Principal, step: Any) -> Any:
        uow = self.database_handle.unit_of_work(principal.database_settings(), lambda: "agreement")
        async with uow:
            return await step(AccessScope(principal, "agreement", uow, self.engine))

    async def build(self, plans: list[PlannedIncident], reported_at: datetime) -> World:
        world = World()
        for plan in plans:
            reporter = self.staff(plan.reporter)
            report = IncidentReport(
                title="agreement",
                category=plan.category,
                source=IncidentSource.STAFF,
                location=Wgs84Point(22.62, 120.30),
                asset_id=self.assets[plan.asset_owner] if plan.asset_owner else None,
                reported_at=reported_at,
                reporter_name="王小明",
            )
            record, _ = await self.run(
                reporter,
                lambda a, r=report: IncidentReporting(a, self.calendar, 72).report(r, None),
            )
            responsible = CATEGORIES[plan.category]
            held: set[str] = set()
            for target in plan.transfers:
                if target == responsible:
                    continue
                current = self.staff(responsible)

                async def transfer(
                    access: AccessScope,
                    target: str = target,
                    key: int = record.id,
                    version: int = record.version,
                ) -> Any:
                    lifecycle = IncidentLifecycle(access, self.calendar, 72)
                    return (
                        await lifecycle.transfer(key, version, self.bureau_ids[target], "移交")
                    )[0]

                record = await self.run(current, transfer)
                held.add(responsible)
                responsible = target
            for bureau in plan.shares:
                if bureau == responsible:
                    continue

                async def share(
                    access: AccessScope,
                    bureau: str = bureau,
                    key: int = record.id,
                    version: int = record.version,
                ) -> Any:
                    sharing = IncidentSharing(access, self.calendar, 72)
                    return await sharing.share(key, version, self.bureau_ids[bureau], "分享")

                record = await self.run(self.staff(responsible), share)
            shared = {b for b in plan.shares if b != responsible}
            world.incidents.append(
                Built(
                    key=record.id,
                    facts=IncidentFacts(
                        incident_id=record.id,
                        responsible_bureau=responsible,
                        reporting_bureau=plan.reporter,
                        asset_bureau=plan.asset_owner,
                        held_by=frozenset(held),
                        shared_with=frozenset(shared),
                    ),
                )
            )
        return world

    async def rls(self, principal: Principal, keys: list[int]) -> tuple[set[int], set[int]]:
        async with self.pool.acquire() as connection, connection.transaction():
            settings = principal.database_settings()
            await connection.execute(
                "SELECT set_config(n, v, true) FROM unnest($1::text[], $2::text[]) AS s(n, v)",
                list(settings), list(settings.values()),
            )  # fmt: skip
            seen = await connection.fetch(
                "SELECT id FROM incident WHERE id = ANY($1::bigint[])", keys
            )
            pii = await connection.fetch(
                "SELECT incident_id FROM incident_reporter WHERE incident_id = ANY($1::bigint[])",
                keys,
            )
            return {r["id"] for r in seen}, {r["incident_id"] for r in pii}

    async def api(self, token: str, window: tuple[datetime, datetime]) -> tuple[set[int], set[int]]:
        query = """
        query($from: DateTime!, $before: DateTime!) {
          incidents(first: 100, filter: {reportedFrom: $from, reportedBefore: $before}) {
            edges { node { id reporter { name } } }
          }
        }
        """
        response = await self.http.post(
            "/graphql",
            json={
                "query": query,
                "variables": {"from": window[0].isoformat(), "before": window[1].isoformat()},
            },
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        codes = {e["extensions"]["code"] for e in body.get("errors", [])}
        assert codes <= {"FORBIDDEN", "PERSONAL_DATA_MASKED"}, body
        if body["data"] is None:
            return set(), set()
        nodes = [e["node"] for e in body["data"]["incidents"]["edges"]]
        seen = {key_of(n["id"]) for n in nodes}
        pii = {key_of(n["id"]) for n in nodes if n["reporter"] is not None}
        return seen, pii

    def close(self) -> None:
        self.loop.run_until_complete(self.http.aclose())
        self.loop.run_until_complete(self.pool.close())
        self.loop.close()


@pytest.fixture(scope="module")
def harness(
    database: DatabaseUnderTest, gateway: GatewayProcess, tokens: TokenFactory
) -> Iterator[Harness]:
    built = Harness(database, gateway, tokens)
    yield built
    built.close()


@pytest.mark.timeout(1800)  # 2,000 examples; slower under coverage
def test_the_rule_book_cedar_rls_and_api_agree(harness: Harness) -> None:
    exercised: Counter[str] = Counter()
    compared = Counter[str]()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        plans = data.draw(st.lists(incidents_strategy, min_size=1, max_size=3), label="plans")
        who = data.draw(principals(plans), label="principal")
        agree(plans, who)

    def agree(plans: list[PlannedIncident], who: dict[str, Any]) -> None:
        harness.example += 1
        reported = harness.start + timedelta(seconds=harness.example)
        world = harness.loop.run_until_complete(harness.build(plans, reported))
        kind = PrincipalKind(who["kind"])
        bureau = who["bureau"] if kind in (PrincipalKind.STAFF, PrincipalKind.SERVICE) else None
        principal = Principal(
            subject=f"random-{harness.example}",
            kind=kind,
            bureau_id=harness.bureau_ids.get(bureau) if bureau else None,
            bureau_code=bureau,
            roles=frozenset(who["roles"]),
            scopes=frozenset(who["scopes"]),
        )
        who = {**who, "bureau": bureau}
        entity = resources.principal_entity(principal)
        model_view, model_pii, cedar_view, cedar_pii = set(), set(), set(), set()
        rules: set[str] = set()
        for plan, built in zip(plans, world.incidents, strict=True):
            responsible = final_responsible(plan)
            if rule_book_view(who, plan, responsible):
                model_view.add(built.key)
            if rule_book_personal_data(who, responsible):
                model_pii.add(built.key)
            incident = resources.incident_entity(built.facts)
            view = harness.engine.decide(entity, "ViewIncident", incident, principal.scopes)
            pii = harness.engine.decide(entity, "ViewPersonalData", incident, principal.scopes)
            if view.allowed:
                cedar_view.add(built.key)
            if pii.allowed:
                cedar_pii.add(built.key)
            rules.update(view.policy_ids, pii.policy_ids)
        keys = [b.key for b in world.incidents]
        rls_view, rls_pii = harness.loop.run_until_complete(harness.rls(principal, keys))
        token = harness.tokens.custom(
            subject=principal.subject,
            kind=kind.value,
            bureau=bureau,
            roles=sorted(principal.roles),
            scopes=sorted(principal.scopes),
        )
        api_view, api_pii = harness.loop.run_until_complete(
            harness.api(token, (reported, reported + timedelta(milliseconds=999)))
        )
        exercised.update(rules)  # examples that exercised each rule
        compared["non-empty" if model_view else "empty"] += 1
        compared[who["kind"]] += 1
        context = f"principal={who} world={[b.facts for b in world.incidents]}"
        # Each answer on its own against the rule book.
        assert cedar_view == model_view, f"Cedar {cedar_view} != rule book {model_view}; {context}"
        assert cedar_pii == model_pii, (
            f"Cedar personal data {cedar_pii} != rule book {model_pii}; {context}"
        )
        assert rls_view == model_view, f"RLS {rls_view} != rule book {model_view}; {context}"
        assert api_view == model_view, f"API {api_view} != rule book {model_view}; {context}"
        shown = model_pii & model_view  # personal data is shown on incidents one sees
        assert rls_pii == shown, f"RLS personal data {rls_pii} != rule book {shown}; {context}"
        assert api_pii == shown, f"API personal data {api_pii} != rule book {shown}; {context}"

    for plans, who in PINNED:
        agree(plans, who)
    check()
    report = ", ".join(f"{rule} {exercised[rule]}" for rule in RULES)
    print(f"\nagreement: {harness.example} examples ({dict(compared)}); rules exercised: {report}")
    thin = {rule: exercised[rule] for rule in RULES if exercised[rule] < FLOOR}
    assert not thin, f"rules exercised by fewer than {FLOOR} examples: {thin} ({report})"
