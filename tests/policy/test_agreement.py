"""Cedar, row-level security and the API agree exactly on who sees which incident, and on whose
personal data — for thousands of random principals and random incident histories.

Each example builds a small world through the real write path (the workflow service, as the
application role, with row-level security on): incidents reported by some bureau, possibly from
another bureau's asset, transferred, shared. Then, for a random principal, three answers are
compared for every incident of the world:
- the policy engine's decision, from Cedar entities the test derives from its own model;
- what PostgreSQL returns to the application role with that principal's identity;
- what the GraphQL API returns to a token for that principal.
"""

from __future__ import annotations

import asyncio
import os
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
principal_strategy = st.builds(
    dict,
    kind=st.sampled_from(["staff", "staff", "service", "licensee", "auditor"]),
    bureau=st.one_of(st.none(), st.sampled_from(BUREAUS)),
    roles=st.lists(st.sampled_from(ROLES), unique=True, max_size=2),
    scopes=st.lists(st.sampled_from(SCOPES), unique=True, max_size=4),
)


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


def test_cedar_rls_and_api_agree(harness: Harness) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(plans=st.lists(incidents_strategy, min_size=1, max_size=3), who=principal_strategy)
    def check(plans: list[PlannedIncident], who: dict[str, Any]) -> None:
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
        entity = resources.principal_entity(principal)
        cedar_view = {
            b.key
            for b in world.incidents
            if harness.engine.decide(
                entity, "ViewIncident", resources.incident_entity(b.facts), principal.scopes
            ).allowed
        }
        cedar_pii = {
            b.key
            for b in world.incidents
            if b.key in cedar_view
            and harness.engine.decide(
                entity, "ViewPersonalData", resources.incident_entity(b.facts), principal.scopes
            ).allowed
        }
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
        context = f"principal={who} world={[b.facts for b in world.incidents]}"
        assert rls_view == cedar_view, f"RLS {rls_view} != Cedar {cedar_view}; {context}"
        assert api_view == cedar_view, f"API {api_view} != Cedar {cedar_view}; {context}"
        assert rls_pii == cedar_pii, f"RLS personal data {rls_pii} != Cedar {cedar_pii}; {context}"
        assert api_pii == cedar_pii, f"API personal data {api_pii} != Cedar {cedar_pii}; {context}"

    check()
