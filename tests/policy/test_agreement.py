"""The rule book, Cedar, row-level security and the API agree exactly on who sees which
incident, and on whose personal data, and on who sees which camera frame, its detections (and
their review outcomes, which model quality counts) and its image — for thousands of random
principals and random incident histories.

Each example builds a small world through the real write path (the workflow services, as the
application role, with row-level security on): incidents reported by some bureau, possibly from
another bureau's asset, transferred, shared; and camera frames of some bureaus, recorded as the
vision worker of the camera's bureau records them, whose detections name some of those
incidents (or none: below the threshold). Then, for a random principal — most often of a bureau
the world involves, most often with the read scopes — four answers are compared, each reached on
its own, for every incident, frame and detection of the world:
- the rule book (policies/README.md) as this test writes it down, from its own model;
- Cedar's decisions on entities derived from the test's own model (personal data is decided on
  its own, as well as inside visibility; a frame is seen, and its image, by the frames rules on
  the camera's bureau or by the incident rules on an incident it is evidence of);
- what PostgreSQL returns to the application role with that principal's identity;
- what the GraphQL API returns to a token for that principal, and ``GET /frames/{sha256}``.
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
from typing import Any, TypedDict

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strawberry.relay import GlobalID

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
from api.policy.engine import Decision, PolicyEngine
from api.services.incidents.lifecycle import IncidentLifecycle
from api.services.incidents.reporting import IncidentReport, IncidentReporting
from api.services.incidents.sharing import IncidentSharing
from api.services.vision.pipeline import Bureau, worker_principal
from api.settings import DatabaseSettings, Settings
from api.vision.store import FrameStore
from tests.graph.helpers import key_of
from tests.policy.camera_frames import (
    Camera,
    FrameDetection,
    RecordedFrame,
    frames_root,
    record_frame,
    register_prompt,
)
from tests.support import DatabaseUnderTest, GatewayProcess
from tests.tokens import TokenFactory

pytestmark = pytest.mark.db

EXAMPLES = int(os.environ.get("LIGHTHOUSE_AGREEMENT_EXAMPLES", "1200"))
# The examples are drawn in shards of equal size, each on a worker of its own when the suite runs
# on several cores (tests/scheduling.py): the whole takes the time of one shard. The pinned
# examples go to the first shard and the pinned frames to the second.
SHARDS = 2
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
class PlannedDetection:
    category: str
    incident: int | None  # which of the world's incidents it names; None: below the threshold


@dataclass
class PlannedFrame:
    bureau: str  # the camera's bureau (the vision worker records the frame for it)
    detections: list[PlannedDetection]


@dataclass
class Built:
    key: int
    facts: IncidentFacts


@dataclass
class World:
    incidents: list[Built] = field(default_factory=list)
    frames: list[RecordedFrame] = field(default_factory=list)


class Who(TypedDict):
    """A principal, as the test draws it (and mints a token for it)."""

    kind: str
    bureau: str | None
    roles: list[str]
    scopes: list[str]


@dataclass
class Seen:
    """What one answer says the principal sees of a world: incidents (by key), their personal
    data, frames (by the hex of their SHA-256), frames' images, and detections (by id)."""

    incidents: set[int] = field(default_factory=set)
    personal_data: set[int] = field(default_factory=set)
    frames: set[str] = field(default_factory=set)
    images: set[str] = field(default_factory=set)
    detections: set[int] = field(default_factory=set)
    # Detections' review outcomes (model quality counts them): visible as the detections are.
    reviews: set[int] = field(default_factory=set)


incidents_strategy = st.builds(
    PlannedIncident,
    category=st.sampled_from(sorted(CATEGORIES)),
    reporter=st.sampled_from(BUREAUS),
    asset_owner=st.one_of(st.none(), st.sampled_from(BUREAUS)),
    transfers=st.lists(st.sampled_from(BUREAUS), max_size=2),
    shares=st.lists(st.sampled_from(BUREAUS), max_size=2, unique=True),
)
JOINT_SERVICE_CENTRE = "RDEC"


def frames_strategy(incidents: int) -> st.SearchStrategy[list[PlannedFrame]]:
    """One to three frames, each of a random bureau's camera, each with up to two detections
    (one per category, as one analysis finds each category once) naming one of the world's
    ``incidents``, or none."""
    detection = st.builds(
        PlannedDetection,
        category=st.sampled_from(sorted(CATEGORIES)),
        incident=st.one_of(st.none(), st.integers(0, incidents - 1), st.integers(0, incidents - 1)),
    )
    frame = st.builds(
        PlannedFrame,
        bureau=st.sampled_from(BUREAUS),
        detections=st.lists(detection, max_size=2, unique_by=lambda d: d.category),
    )
    return st.lists(frame, min_size=1, max_size=3)


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
def principals(draw: st.DrawFn, plans: list[PlannedIncident], frames: list[PlannedFrame]) -> Who:
    """A principal, most often of a bureau the world involves (through an incident, or a
    camera; often one responsible for an incident, whose personal data is theirs) and holding
    the read scopes, so that most examples compare non-empty answers."""
    world_bureaus = sorted(set().union(*(involved(p) for p in plans), (f.bureau for f in frames)))
    responsible = sorted({final_responsible(p) for p in plans})
    kind = draw(st.sampled_from(["staff"] * 6 + ["service"] * 2 + ["licensee", "auditor"]))
    bureau = draw(
        st.one_of(
            st.sampled_from(world_bureaus),
            st.sampled_from(world_bureaus),
            st.sampled_from(responsible),
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
    return Who(kind=kind, bureau=bureau, roles=roles, scopes=sorted(scopes))


def rule_book_view(who: Who, plan: PlannedIncident, responsible: str) -> bool:
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


def rule_book_personal_data(who: Who, responsible: str) -> bool:
    """Personal data, as policies/README.md says it: on its own, not only inside visibility."""
    scopes = who["scopes"]
    if "pii:read" not in scopes or "incidents:read" not in scopes:
        return False
    if who["kind"] == "auditor":
        return True  # pii.auditor-granted
    return who["kind"] == "staff" and who["bureau"] == responsible  # pii.responsible-bureau


def rule_book_frames_of(who: Who, bureau: str) -> bool:
    """Seeing a bureau's camera frames and their detections in their own right, as
    policies/README.md says it (besides, whoever sees an incident sees the frames that are
    evidence of it, and the detections that name it)."""
    if "incidents:read" not in who["scopes"]:
        return False
    if who["kind"] == "auditor":
        return True  # frames.view.city-wide
    if who["kind"] not in ("staff", "service"):
        return False
    if "city_viewer" in who["roles"] or who["bureau"] == JOINT_SERVICE_CENTRE:
        return True  # frames.view.city-wide
    return who["bureau"] == bureau  # frames.view.own-bureau


def rule_book_images_of(who: Who, bureau: str) -> bool:
    """Seeing the images of a bureau's frames in their own right, as policies/README.md says it
    (besides, whoever sees an incident's personal data sees the images that are evidence of it;
    an image is seen only on a frame one sees)."""
    scopes = who["scopes"]
    if "pii:read" not in scopes or "incidents:read" not in scopes:
        return False
    if who["kind"] == "auditor":
        return True  # frames.image.auditor-granted
    return who["kind"] == "staff" and who["bureau"] == bureau  # frames.image.own-bureau


def rule_book_image_answer(who: Who, key: str, seen: Seen) -> str:
    """What ``GET /frames/{sha256}`` answers: frames are read under the incident rules, so a
    caller who may not list incidents (incidents.list) is refused before any frame is looked
    up."""
    if "incidents:read" not in who["scopes"] or who["kind"] == "licensee":
        return "403 FORBIDDEN"
    if key in seen.images:
        return "200"
    return "403 PERSONAL_DATA_MASKED" if key in seen.frames else "404 NOT_FOUND"


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
PINNED: list[tuple[list[PlannedIncident], Who]] = [
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
# The rare combinations of frames, always tried: (plans, frames, principal). A detection names
# an incident by its place in the plans.
PINNED_FRAMES: list[tuple[list[PlannedIncident], list[PlannedFrame], Who]] = [
    # Seen through the incident (its asset's bureau), with only the detection that names it;
    # the image is not: that bureau is not responsible.
    ([PlannedIncident("FIRE_SMOKE", "POLICE", "TAIWAN_WATER", [], [])],
     [PlannedFrame("POLICE", [PlannedDetection("FIRE_SMOKE", 0), PlannedDetection("FLOODING", None)])],
     {"kind": "staff", "bureau": "TAIWAN_WATER", "roles": [], "scopes": ["incidents:read", "pii:read"]}),
    # The image through pii.responsible-bureau, of another bureau's camera.
    ([PlannedIncident("FLOODING", "FIRE", None, [], [])],
     [PlannedFrame("FIRE", [PlannedDetection("FLOODING", 0)])],
     {"kind": "staff", "bureau": "WATER_RESOURCES", "roles": [], "scopes": ["incidents:read", "pii:read"]}),
    # After a transfer the bureau that handed it on sees the frame, not the image.
    ([PlannedIncident("FLOODING", "FIRE", None, ["PUBLIC_WORKS"], [])],
     [PlannedFrame("POLICE", [PlannedDetection("FLOODING", 0)])],
     {"kind": "staff", "bureau": "WATER_RESOURCES", "roles": [], "scopes": ["incidents:read", "pii:read"]}),
    # Staff with pii:read see the images of their bureau's cameras, and those of another
    # bureau's camera that are evidence of an incident their bureau is responsible for.
    ([PlannedIncident("POTHOLE", "POLICE", None, [], [])],
     [PlannedFrame("PUBLIC_WORKS", []), PlannedFrame("FIRE", [PlannedDetection("POTHOLE", 0)])],
     {"kind": "staff", "bureau": "PUBLIC_WORKS", "roles": ["viewer"], "scopes": ["incidents:read", "pii:read"]}),
    ([PlannedIncident("ILLEGAL_PARKING", "FIRE", None, [], [])],
     [PlannedFrame("POLICE", []), PlannedFrame("TRANSPORTATION", [PlannedDetection("FLOODING", None), PlannedDetection("ILLEGAL_PARKING", 0)])],
     {"kind": "staff", "bureau": "POLICE", "roles": ["dispatcher"], "scopes": ["incidents:read", "incidents:write", "pii:read"]}),
    # A service of the responsible bureau: the frame through the incident, never the image.
    ([PlannedIncident("POTHOLE", "POLICE", None, [], [])],
     [PlannedFrame("FIRE", [PlannedDetection("POTHOLE", 0)])],
     {"kind": "service", "bureau": "PUBLIC_WORKS", "roles": [], "scopes": ["incidents:read", "pii:read"]}),
    # A service of the camera's bureau: its frames, not their images.
    ([PlannedIncident("POTHOLE", "POLICE", None, [], [])],
     [PlannedFrame("FIRE", [])],
     {"kind": "service", "bureau": "FIRE", "roles": [], "scopes": ["incidents:read", "pii:read"]}),
    # Staff of the camera's bureau: the image only with pii:read; a detection that names an
    # incident they do not see is theirs all the same.
    ([PlannedIncident("POTHOLE", "POLICE", None, [], [])],
     [PlannedFrame("ENVIRONMENTAL_PROTECTION", [PlannedDetection("ILLEGAL_DUMPING", 0)])],
     {"kind": "staff", "bureau": "ENVIRONMENTAL_PROTECTION", "roles": ["viewer"], "scopes": ["incidents:read"]}),
    ([PlannedIncident("POTHOLE", "POLICE", None, [], [])],
     [PlannedFrame("ENVIRONMENTAL_PROTECTION", [PlannedDetection("ILLEGAL_DUMPING", None)])],
     {"kind": "staff", "bureau": "ENVIRONMENTAL_PROTECTION", "roles": ["viewer"], "scopes": ["incidents:read", "pii:read"]}),
    # Without incidents:read nothing, pii:read or not.
    ([PlannedIncident("POTHOLE", "POLICE", None, [], [])],
     [PlannedFrame("POLICE", [PlannedDetection("POTHOLE", 0)])],
     {"kind": "staff", "bureau": "POLICE", "roles": ["supervisor"], "scopes": ["pii:read", "assets:read"]}),
    # The joint service centre sees every frame, and its own cameras' images.
    ([PlannedIncident("POTHOLE", "POLICE", None, [], [])],
     [PlannedFrame("POLICE", []), PlannedFrame("RDEC", [PlannedDetection("POTHOLE", 0)])],
     {"kind": "staff", "bureau": "RDEC", "roles": ["dispatcher"], "scopes": ["incidents:read", "pii:read"]}),
    ([PlannedIncident("POTHOLE", "POLICE", None, [], [])],
     [PlannedFrame("TAIPOWER", [PlannedDetection("POWER_LINE_HAZARD", None)])],
     {"kind": "staff", "bureau": None, "roles": ["city_viewer"], "scopes": ["incidents:read", "pii:read"]}),
    # Auditors: every frame with incidents:read; the images with pii:read too.
    ([PlannedIncident("POTHOLE", "POLICE", None, [], [])],
     [PlannedFrame("FIRE", [PlannedDetection("FIRE_SMOKE", None)]), PlannedFrame("POLICE", [])],
     {"kind": "auditor", "bureau": None, "roles": [], "scopes": ["incidents:read", "pii:read"]}),
    ([PlannedIncident("FLOODING", "FIRE", None, ["PUBLIC_WORKS"], ["POLICE"])],
     [PlannedFrame("WATER_RESOURCES", [PlannedDetection("FLOODING", 0)])],
     {"kind": "auditor", "bureau": None, "roles": [], "scopes": ["audit:read", "incidents:read", "pii:read"]}),
    ([PlannedIncident("POTHOLE", "POLICE", None, [], [])],
     [PlannedFrame("TAIPOWER", [])],
     {"kind": "auditor", "bureau": None, "roles": ["auditor"], "scopes": ["incidents:read", "pii:read"]}),
    ([PlannedIncident("POTHOLE", "POLICE", None, [], [])],
     [PlannedFrame("FIRE", [PlannedDetection("POTHOLE", 0)])],
     {"kind": "auditor", "bureau": None, "roles": [], "scopes": ["incidents:read", "audit:read"]}),
    # Licensees never, whatever their token says.
    ([PlannedIncident("POTHOLE", "PUBLIC_WORKS", None, [], [])],
     [PlannedFrame("PUBLIC_WORKS", [PlannedDetection("POTHOLE", 0)])],
     {"kind": "licensee", "bureau": None, "roles": [], "scopes": ["incidents:read", "pii:read"]}),
    ([PlannedIncident("POTHOLE", "PUBLIC_WORKS", None, [], [])],
     [PlannedFrame("RDEC", [])],
     {"kind": "licensee", "bureau": None, "roles": ["city_viewer"], "scopes": ["incidents:read"]}),
    ([PlannedIncident("FIRE_SMOKE", "FIRE", None, [], [])],
     [PlannedFrame("FIRE", [PlannedDetection("FIRE_SMOKE", 0)])],
     {"kind": "licensee", "bureau": None, "roles": [], "scopes": ["audit:read", "incidents:read", "incidents:write", "pii:read"]}),
    # Another bureau's frames: below the threshold, or evidence of an incident not theirs.
    ([PlannedIncident("POTHOLE", "POLICE", None, [], [])],
     [PlannedFrame("FIRE", [PlannedDetection("POTHOLE", None)]), PlannedFrame("FIRE", [PlannedDetection("POTHOLE", 0)])],
     {"kind": "staff", "bureau": "TRANSPORTATION", "roles": [], "scopes": ["incidents:read", "pii:read"]}),
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
    "frames.view.own-bureau",
    "frames.view.city-wide",
    "frames.image.own-bureau",
    "frames.image.auditor-granted",
    "frames.image.never-for-licensees",
    # Not rules of their own: the incident rules, deciding frames.
    "frame visible through an incident",
    "image through pii.responsible-bureau",
]
# How often each rule must have been exercised, in each shard: on the first server, where the
# examples are many. The second server (LIGHTHOUSE_TEST_DATABASE_URL: PostgreSQL 15) plays fewer
# examples (scripts/run-tests), to find where its version decides differently; which rules
# they exercise is reported, not held to a floor that few examples would miss by chance.
ON_SECOND_SERVER = bool(os.environ.get("LIGHTHOUSE_TEST_DATABASE_URL"))
FLOOR = 0 if ON_SECOND_SERVER else max(3, EXAMPLES // SHARDS // 100)
# The combinations (an incident rule deciding a frame) are rarer by construction: a random draw
# of 600 examples gave the rarest 4 against 6. They are pinned in every shard as well, and held
# to half the floor.
COMBINATIONS = ("frame visible through an incident", "image through pii.responsible-bureau")


def floor_of(rule: str) -> int:
    return max(min(FLOOR, 3), FLOOR // 2) if rule in COMBINATIONS else FLOOR


class Harness:
    """The pieces each example uses, made once: a pool as the application role, the policy
    engine, a camera per bureau, the gateway's frame store, an HTTP client and tokens."""

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
        # Idle connections are let go after a second: the gateway closes its own after five
        # (uvicorn's keep-alive), and a connection taken up again as it closes it is a
        # ReadError (seen when the examples ran slowly, beside the other passes).
        self.http = httpx.AsyncClient(
            base_url=gateway.base_url, timeout=30, limits=httpx.Limits(keepalive_expiry=1.0)
        )
        self.example = 0
        self.start = datetime.now(UTC) - timedelta(days=30)
        self.frame_store = FrameStore(frames_root(gateway))
        self.loop.run_until_complete(self.run(self.worker("PUBLIC_WORKS"), register_prompt))

    async def _prepare(self) -> None:
        owner = await asyncpg.connect(self.database.owner_url)
        try:
            rows = await owner.fetch("SELECT id, code FROM lighthouse.bureau")
            self.bureau_ids = {r["code"]: r["id"] for r in rows}
            for code, bureau_id in self.bureau_ids.items():
                # A camera: an asset incidents are raised from, and the frames' source.
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

    def worker(self, bureau: str) -> Principal:
        """The vision worker, for frames of ``bureau``'s cameras."""
        return worker_principal(Bureau(self.bureau_ids[bureau], bureau))

    async def run(self, principal: Principal, step: Any) -> Any:
        uow = self.database_handle.unit_of_work(principal.database_settings(), lambda: "agreement")
        async with uow:
            return await step(AccessScope(principal, "agreement", uow, self.engine))

    async def build(
        self, plans: list[PlannedIncident], frames: list[PlannedFrame], reported_at: datetime
    ) -> World:
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
        keys = [b.key for b in world.incidents]
        for frame in frames:
            detections = [
                FrameDetection(d.category, None if d.incident is None else keys[d.incident])
                for d in frame.detections
            ]
            camera = Camera(self.assets[frame.bureau], 22.62, 120.30)
            recorded = await self.run(
                self.worker(frame.bureau),
                lambda a, c=camera, d=detections: record_frame(
                    a, self.frame_store, c, reported_at, d
                ),
            )
            world.frames.append(recorded)
        return world

    async def rls(self, principal: Principal, world: World) -> Seen:
        keys = [b.key for b in world.incidents]
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
            frames = await connection.fetch(
                "SELECT sha256 FROM frame WHERE sha256 = ANY($1::bytea[])",
                [f.sha256 for f in world.frames],
            )
            found = [d for f in world.frames for d in f.detections]
            detections = await connection.fetch(
                "SELECT id FROM detection WHERE id = ANY($1::bigint[])", found
            )
            reviews = await connection.fetch(
                "SELECT detection_id FROM detection_review WHERE detection_id = ANY($1::bigint[])",
                found,
            )
            return Seen(
                incidents={r["id"] for r in seen},
                personal_data={r["incident_id"] for r in pii},
                frames={bytes(r["sha256"]).hex() for r in frames},
                detections={r["id"] for r in detections},
                reviews={r["detection_id"] for r in reviews},
            )

    async def api(
        self, token: str, window: tuple[datetime, datetime], world: World
    ) -> tuple[Seen, dict[str, str]]:
        """What the API shows: one GraphQL request for the incidents, frames and detections,
        and at the same time one image request per frame (how each was answered, by frame)."""
        images = asyncio.gather(*(self._image(token, frame) for frame in world.frames))
        seen, answers = await asyncio.gather(self._graphql(token, window, world), images)
        return seen, dict(zip((f.key for f in world.frames), answers, strict=True))

    async def _graphql(self, token: str, window: tuple[datetime, datetime], world: World) -> Seen:
        frames = {f"f{i}": str(GlobalID("Frame", f.key)) for i, f in enumerate(world.frames)}
        detections = {
            f"d{i}": str(GlobalID("Detection", str(d)))
            for i, d in enumerate(d for f in world.frames for d in f.detections)
        }
        arguments = "".join(f", ${name}: ID!" for name in [*frames, *detections])
        fields = "".join(
            [f"\n  {name}: frame(id: ${name}) {{ sha256 }}" for name in frames]
            + [f"\n  {name}: node(id: ${name}) {{ id }}" for name in detections]
        )
        query = f"""
        query($from: DateTime!, $before: DateTime!{arguments}) {{
          incidents(first: 100, filter: {{reportedFrom: $from, reportedBefore: $before}}) {{
            edges {{ node {{ id reporter {{ name }} }} }}
          }}{fields}
        }}
        """
        response = await self.http.post(
            "/graphql",
            json={
                "query": query,
                "variables": {
                    "from": window[0].isoformat(),
                    "before": window[1].isoformat(),
                    **frames,
                    **detections,
                },
            },
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        codes = {e["extensions"]["code"] for e in body.get("errors", [])}
        assert codes <= {"FORBIDDEN", "PERSONAL_DATA_MASKED"}, body
        data = body["data"]
        if data is None:
            return Seen()
        nodes = [e["node"] for e in data["incidents"]["edges"]]
        return Seen(
            incidents={key_of(n["id"]) for n in nodes},
            personal_data={key_of(n["id"]) for n in nodes if n["reporter"] is not None},
            frames={data[name]["sha256"] for name in frames if data[name] is not None},
            detections={key_of(data[name]["id"]) for name in detections if data[name] is not None},
        )

    async def _image(self, token: str, frame: RecordedFrame) -> str:
        """``GET /frames/{sha256}``: "200" with the frame's own bytes, else the status and the
        error's code."""
        response = await self.http.get(
            f"/frames/{frame.key}", headers={"Authorization": f"Bearer {token}"}
        )
        if response.status_code == 200:
            assert response.content == frame.image, f"GET /frames/{frame.key}: not its image"
            return "200"
        return f"{response.status_code} {response.json()['error']['code']}"

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


@pytest.mark.timeout(1800)  # 600 examples a shard, slower beside the other passes
@pytest.mark.parametrize("shard", range(SHARDS), ids=[f"shard{n}" for n in range(SHARDS)])
def test_the_rule_book_cedar_rls_and_api_agree(harness: Harness, shard: int) -> None:
    exercised: Counter[str] = Counter()
    compared = Counter[str]()
    image_answers = Counter[str]()  # how the image requests were answered

    @settings(
        max_examples=-(-EXAMPLES // SHARDS),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        plans = data.draw(st.lists(incidents_strategy, min_size=1, max_size=3), label="plans")
        frames = data.draw(frames_strategy(len(plans)), label="frames")
        who = data.draw(principals(plans, frames), label="principal")
        agree(plans, frames, who)

    def agree(plans: list[PlannedIncident], frames: list[PlannedFrame], who: Who) -> None:
        harness.example += 1
        reported = harness.start + timedelta(seconds=harness.example)
        world = harness.loop.run_until_complete(harness.build(plans, frames, reported))
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
        model, cedar = Seen(), Seen()
        pii_decisions: dict[int, Decision] = {}
        rules: set[str] = set()
        for plan, built in zip(plans, world.incidents, strict=True):
            responsible = final_responsible(plan)
            if rule_book_view(who, plan, responsible):
                model.incidents.add(built.key)
            if rule_book_personal_data(who, responsible):
                model.personal_data.add(built.key)
            incident = resources.incident_entity(built.facts)
            view = harness.engine.decide(entity, "ViewIncident", incident, principal.scopes)
            pii = harness.engine.decide(entity, "ViewPersonalData", incident, principal.scopes)
            if view.allowed:
                cedar.incidents.add(built.key)
            if pii.allowed:
                cedar.personal_data.add(built.key)
            pii_decisions[built.key] = pii
            rules.update(view.policy_ids, pii.policy_ids)
        for planned, frame in zip(frames, world.frames, strict=True):
            named = {key for key in frame.detections.values() if key is not None}
            # The rule book: the frames rules on the camera's bureau, or the incident rules on an
            # incident the frame is evidence of.
            own = rule_book_frames_of(who, planned.bureau)
            if own or named & model.incidents:
                model.frames.add(frame.key)
                if rule_book_images_of(who, planned.bureau) or named & model.personal_data:
                    model.images.add(frame.key)
            model.detections.update(
                d for d, key in frame.detections.items() if own or key in model.incidents
            )
            # Cedar, composed the same way from its own decisions.
            camera = resources.bureau(planned.bureau)
            frames_of, images_of = harness.engine.decide_many(
                entity, [("ViewFrames", camera), ("ViewFrameImage", camera)], principal.scopes
            )
            rules.update(frames_of.policy_ids, images_of.policy_ids)
            through_pii = {key for key in named if pii_decisions[key].allowed}
            if frames_of.allowed or named & cedar.incidents:
                cedar.frames.add(frame.key)
                if not frames_of.allowed:
                    rules.add("frame visible through an incident")
                if images_of.allowed or through_pii:
                    cedar.images.add(frame.key)
                if not images_of.allowed and any(
                    "pii.responsible-bureau" in pii_decisions[key].policy_ids for key in through_pii
                ):
                    rules.add("image through pii.responsible-bureau")
            cedar.detections.update(
                d
                for d, key in frame.detections.items()
                if frames_of.allowed or key in cedar.incidents
            )
        rls = harness.loop.run_until_complete(harness.rls(principal, world))
        token = harness.tokens.custom(
            subject=principal.subject,
            kind=kind.value,
            bureau=bureau,
            roles=sorted(principal.roles),
            scopes=sorted(principal.scopes),
        )
        window = (reported, reported + timedelta(milliseconds=999))
        api, answered = harness.loop.run_until_complete(harness.api(token, window, world))
        expected = {f.key: rule_book_image_answer(who, f.key, model) for f in world.frames}
        exercised.update(rules)  # examples that exercised each rule
        compared["non-empty" if model.incidents else "empty"] += 1
        compared[who["kind"]] += 1
        image_answers.update(expected.values())
        recorded = [  # (camera's bureau, frame, its detections → the incidents they name)
            (p.bureau, f.key, f.detections) for p, f in zip(frames, world.frames, strict=True)
        ]
        context = f"principal={who} world={[b.facts for b in world.incidents]} frames={recorded}"
        # Each answer on its own against the rule book.
        for name, answer in (("Cedar", cedar), ("RLS", rls), ("API", api)):
            for aspect in ("incidents", "frames", "detections"):
                said, ruled = getattr(answer, aspect), getattr(model, aspect)
                assert said == ruled, f"{name} {aspect} {said} != rule book {ruled}; {context}"
        assert rls.reviews == model.detections, (
            f"RLS reviews {rls.reviews} != rule book's detections {model.detections}; {context}"
        )
        assert cedar.personal_data == model.personal_data, (
            f"Cedar personal data {cedar.personal_data} != rule book {model.personal_data}; {context}"
        )
        shown = model.personal_data & model.incidents  # shown on incidents one sees
        assert rls.personal_data == shown, (
            f"RLS personal data {rls.personal_data} != rule book {shown}; {context}"
        )
        assert api.personal_data == shown, (
            f"API personal data {api.personal_data} != rule book {shown}; {context}"
        )
        assert cedar.images == model.images, (
            f"Cedar images {cedar.images} != rule book {model.images}; {context}"
        )
        assert answered == expected, f"GET /frames {answered} != rule book {expected}; {context}"

    if shard == 0:
        for plans, who in PINNED:
            agree(plans, [], who)
    for plans, frames, who in PINNED_FRAMES:
        agree(plans, frames, who)
    check()
    report = ", ".join(f"{rule} {exercised[rule]}" for rule in RULES)
    print(
        f"\nagreement, shard {shard}: {sum(compared[k] for k in ('empty', 'non-empty'))} examples"
        f" ({dict(compared)}; images {dict(image_answers)});"
        f" rules exercised: {report}"
    )
    thin = {rule: exercised[rule] for rule in RULES if exercised[rule] < floor_of(rule)}
    assert not thin, (
        f"rules exercised by fewer than {FLOOR} examples ({floor_of(COMBINATIONS[0])} for the "
        f"combinations): {thin} ({report})"
    )
