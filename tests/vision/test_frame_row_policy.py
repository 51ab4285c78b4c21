"""Row-level security on recording frames (frame_create), on its own.

The gateway asks the Cedar policies before it records a frame, so through the API another
bureau's camera never reaches the database's check. These tests connect as the application role,
set the caller's identity as the gateway does (``set_config(name, value, true)`` inside the
transaction, from ``Principal.database_settings``) and insert frames in SQL: every refusal is the
row policy's, and every condition of the policy has a caller who passes it and one who does not,
so weakening the policy (to ``true``, or dropping any of its conditions) turns a case red. Each
attempt runs in its own transaction, rolled back.
"""

from __future__ import annotations

import os

import asyncpg
import pytest

from api.auth.principal import Principal, PrincipalKind
from tests.vision.conftest import Camera, CameraFactory

pytestmark = pytest.mark.db

SET_IDENTITY = (
    "SELECT set_config(name, value, true) FROM unnest($1::text[], $2::text[]) AS s(name, value)"
)
# The gateway's statement (api/repositories/vision.py) without its RETURNING, which would have
# the read policy (frame_read) judge the new row as well: here frame_create judges alone.
INSERT_FRAME = """
INSERT INTO frame (sha256, camera_id, bureau_id, media_type, size_bytes, width, height,
                   captured_at, uploaded_by)
VALUES ($1, $2, $3, 'image/jpeg', 100, 4, 3, now(), $4)
"""
RLS_REFUSAL = "new row violates row-level security policy"
REFUSED = "refused by frame_create"
WRITE = ("incidents:read", "incidents:write")

STAFF, SERVICE = PrincipalKind.STAFF, PrincipalKind.SERVICE
# (who: kind, bureau, scopes), (the frame: its camera's bureau, the bureau the row names), outcome
CASES = [
    pytest.param((SERVICE, "POLICE", WRITE), ("POLICE", "POLICE"), 1, id="a-camera-gateway"),
    pytest.param((STAFF, "POLICE", WRITE), ("POLICE", "POLICE"), 1, id="staff-of-its-bureau"),
    pytest.param(
        (SERVICE, "PUBLIC_WORKS", WRITE), ("PUBLIC_WORKS", "PUBLIC_WORKS"), 1, id="another-bureau"
    ),
    pytest.param(
        (SERVICE, "POLICE", WRITE), ("PUBLIC_WORKS", "POLICE"), REFUSED,
        id="another-bureaus-camera",
    ),
    pytest.param(
        (SERVICE, "POLICE", WRITE), ("PUBLIC_WORKS", "PUBLIC_WORKS"), REFUSED,
        id="another-bureaus-camera-and-bureau",
    ),
    pytest.param(
        (SERVICE, "POLICE", WRITE), ("POLICE", "PUBLIC_WORKS"), REFUSED,
        id="its-camera-named-for-another-bureau",
    ),
    pytest.param((SERVICE, None, WRITE), ("POLICE", "POLICE"), REFUSED, id="no-bureau"),
    pytest.param(
        (SERVICE, "POLICE", ("incidents:read",)), ("POLICE", "POLICE"), REFUSED,
        id="without-incidents-write",
    ),
    pytest.param(
        (PrincipalKind.LICENSEE, "POLICE", WRITE), ("POLICE", "POLICE"), REFUSED,
        id="a-licensee-whatever-its-token-says",
    ),
    pytest.param(
        (PrincipalKind.AUDITOR, "POLICE", WRITE), ("POLICE", "POLICE"), REFUSED, id="an-auditor"
    ),
]  # fmt: skip


async def attempt(
    app: asyncpg.Connection, principal: Principal, camera: int, bureau_id: int
) -> int | str:
    """Insert a frame (new bytes) as ``principal``, in a transaction rolled back: the rows
    written, or REFUSED when the row policy's check rejected the row."""
    settings = principal.database_settings()
    transaction = app.transaction()
    await transaction.start()
    try:
        await app.execute(SET_IDENTITY, list(settings), list(settings.values()))
        status: str = await app.execute(
            INSERT_FRAME, os.urandom(32), camera, bureau_id, principal.subject
        )
        return int(status.split()[-1])
    except asyncpg.InsufficientPrivilegeError as error:
        assert RLS_REFUSAL in str(error), error
        return REFUSED
    finally:
        await transaction.rollback()


@pytest.mark.parametrize(("who", "frame", "expected"), CASES)
async def test_recording_a_frame(
    app: asyncpg.Connection,
    owner: asyncpg.Connection,
    cameras: CameraFactory,
    who: tuple[PrincipalKind, str | None, tuple[str, ...]],
    frame: tuple[str, str],
    expected: int | str,
) -> None:
    bureaus = {row["code"]: row["id"] for row in await owner.fetch("SELECT code, id FROM bureau")}
    kind, bureau, scopes = who
    principal = Principal(
        subject="frame-row-policy",
        kind=kind,
        bureau_id=None if bureau is None else bureaus[bureau],
        bureau_code=bureau,
        scopes=frozenset(scopes),
    )
    camera: Camera = await cameras(frame[0])
    assert await attempt(app, principal, camera.id, bureaus[frame[1]]) == expected


async def test_a_street_light_is_not_a_camera(
    app: asyncpg.Connection, owner: asyncpg.Connection, clean: None
) -> None:
    police = await owner.fetchval("SELECT id FROM bureau WHERE code = 'POLICE'")
    light = await owner.fetchval(
        "INSERT INTO asset (code, kind, name, bureau_id, latitude, longitude, created_by)"
        " VALUES ('LIGHT-ROW-POLICY', 'STREET_LIGHT', 'light', $1, 22.6, 120.3, 'tests')"
        " RETURNING id",
        police,
    )
    principal = Principal(
        subject="frame-row-policy", kind=SERVICE, bureau_id=police, bureau_code="POLICE",
        scopes=frozenset(WRITE),
    )  # fmt: skip
    assert await attempt(app, principal, light, police) == REFUSED
