"""Frames are decided by the policies as well as by row-level security: each frame the gateway
returns is granted by ``ViewFrames`` on its camera's bureau (frames.view.*), or by
``ViewIncident`` on an incident it is evidence of.

The agreement test shows that the policies and the database decide alike, so through the API a
frame the rules would refuse is never among the rows to decide. Here the reads run in process,
under the caller's identity (row-level security on), with the bundled policies and with policy
sets that withhold frames or incidents from everyone: what the database returns is shown first,
then what the policies let through of it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from api import bundled
from api.access.scope import AccessScope
from api.audit.collector import AuditCollector
from api.auth.principal import Principal, PrincipalKind
from api.db.unit_of_work import UnitOfWork
from api.policy.engine import PolicyEngine
from api.repositories.vision import VisionRepository
from api.services.vision.reads import VisionReads
from tests.support import DatabaseUnderTest

pytestmark = pytest.mark.db

WITHHELD = {
    "frames": """
@id("tests.frames.withheld")
@description("For the tests only: no one sees frames in their own right.")
forbid (principal, action == Lighthouse::Action::"ViewFrames", resource);
""",
    "incidents": """
@id("tests.incidents.withheld")
@description("For the tests only: no one sees an incident.")
forbid (principal, action == Lighthouse::Action::"ViewIncident", resource);
""",
}


@dataclass(frozen=True, slots=True)
class Frames:
    own: bytes  # a Police camera's frame, evidence of nothing
    evidence: bytes  # a Police camera's frame whose detection joined a Public Works incident
    bureaus: dict[str, int]


async def arrange(owner: asyncpg.Connection) -> Frames:
    bureaus = {row["code"]: row["id"] for row in await owner.fetch("SELECT code, id FROM bureau")}
    police, public_works = bureaus["POLICE"], bureaus["PUBLIC_WORKS"]
    camera = await owner.fetchval(
        "INSERT INTO asset (code, kind, name, bureau_id, latitude, longitude, created_by)"
        " VALUES ($1, 'CAMERA', 'camera', $2, 22.62, 120.30, 'tests') RETURNING id",
        f"CAM-DECIDED-{os.urandom(4).hex()}", police,
    )  # fmt: skip
    # Public Works' pothole; Police is not involved in it.
    incident = await owner.fetchval(
        "INSERT INTO incident (title, category, status, source, responsible_bureau_id,"
        " reporting_bureau_id, latitude, longitude, reported_at, due_at, created_by,"
        " involved_bureau_ids) VALUES ('坑洞', 'POTHOLE', 'VERIFIED', 'VLM', $1, NULL, 22.62,"
        " 120.30, now(), now() + interval '2 days', 'tests', '{}') RETURNING id",
        public_works,
    )
    await owner.execute(
        "INSERT INTO vision_prompt (version, text, schema) VALUES ('decided-1', 'What?', '{}')"
        " ON CONFLICT DO NOTHING"
    )
    await owner.execute(
        "INSERT INTO vision_model (name, version) VALUES ('decided', '1') ON CONFLICT DO NOTHING"
    )
    own, evidence = os.urandom(32), os.urandom(32)
    for sha in (own, evidence):
        await owner.execute(
            "INSERT INTO frame (sha256, camera_id, bureau_id, media_type, size_bytes, width,"
            " height, captured_at, uploaded_by) VALUES ($1, $2, $3, 'image/png', 1, 1, 1, now(),"
            " 'tests')",
            sha, camera, police,
        )  # fmt: skip
    analysis = await owner.fetchval(
        "INSERT INTO frame_analysis (frame_sha256, bureau_id, model, model_version,"
        " prompt_version, outcome, raw_answer, latency_ms)"
        " VALUES ($1, $2, 'decided', '1', 'decided-1', 'FINDINGS', '{}', 5) RETURNING id",
        evidence, police,
    )  # fmt: skip
    await owner.execute(
        "INSERT INTO detection (analysis_id, frame_sha256, camera_id, bureau_id, category,"
        " confidence, latitude, longitude, outcome, incident_id)"
        " VALUES ($1, $2, $3, $4, 'POTHOLE', 0.9, 22.62, 120.30, 'ATTACHED', $5)",
        analysis, evidence, camera, police, incident,
    )  # fmt: skip
    return Frames(own, evidence, bureaus)


def engine(directory: Path, withheld: str | None, bureaus: dict[str, int]) -> PolicyEngine:
    """The bundled policies, with a rule that withholds ``withheld`` from everyone."""
    shutil.copytree(bundled.directory("policies"), directory, dirs_exist_ok=True)
    if withheld is not None:
        (directory / "tests_withheld.cedar").write_text(WITHHELD[withheld])
    return PolicyEngine(directory, [(code, code == "RDEC") for code in bureaus])


async def read(
    database: DatabaseUnderTest, policy: PolicyEngine, principal: Principal, digests: list[bytes]
) -> tuple[set[bytes], set[bytes], AuditCollector]:
    """The frames row-level security returns ``principal``, those the gateway's read returns
    it, and what that read noted for the audit record."""
    async with (
        database.app_pool(2) as pool,
        UnitOfWork(pool, principal.database_settings()) as uow,
    ):
        access = AccessScope(principal, "frame-decisions", uow, policy)
        rows = await VisionRepository(uow).frames(digests)
        returned = await VisionReads(access).frames(digests)
    return set(rows), set(returned), access.audit


def viewer(bureau: str, bureaus: dict[str, int]) -> Principal:
    return Principal(
        subject=f"{bureau.lower()}-frames-viewer", kind=PrincipalKind.STAFF,
        bureau_id=bureaus[bureau], bureau_code=bureau, roles=frozenset({"viewer"}),
        scopes=frozenset({"incidents:read"}),
    )  # fmt: skip


# (the viewer's bureau, what the policies withhold, the frames the database returns, the frames
# returned, a rule the audit record must name as granting)
CASES = [
    pytest.param(
        "POLICE", None, {"own", "evidence"}, {"own", "evidence"}, "frames.view.own-bureau",
        id="its-own-cameras",
    ),
    pytest.param(
        "POLICE", "frames", {"own", "evidence"}, set(), None, id="its-own-cameras-withheld"
    ),
    pytest.param(
        "PUBLIC_WORKS", None, {"evidence"}, {"evidence"}, "incidents.view.own-bureau",
        id="evidence-of-its-incident",
    ),
    pytest.param(
        "PUBLIC_WORKS", "incidents", {"evidence"}, set(), None,
        id="evidence-of-an-incident-withheld",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("bureau", "withheld", "rows", "returned", "granted_by"), CASES)
async def test_a_frame_is_returned_only_when_the_policies_grant_it(
    database: DatabaseUnderTest,
    owner: asyncpg.Connection,
    clean: None,
    tmp_path: Path,
    bureau: str,
    withheld: str | None,
    rows: set[str],
    returned: set[str],
    granted_by: str | None,
) -> None:
    frames = await arrange(owner)
    named = {"own": frames.own, "evidence": frames.evidence}
    policy = engine(tmp_path / "policies", withheld, frames.bureaus)
    principal = viewer(bureau, frames.bureaus)
    by_rls, by_reads, audit = await read(database, policy, principal, list(named.values()))
    assert by_rls == {named[name] for name in rows}
    assert by_reads == {named[name] for name in returned}
    assert audit.resources == {f"Frame:{named[name].hex()}" for name in returned}
    if granted_by is not None:
        assert granted_by in audit.allowed_by
    if withheld is not None:
        assert f"tests.{withheld}.withheld" in audit.denied_by
