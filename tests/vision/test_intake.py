"""Frames in, over REST (camera gateways) and the GraphQL multipart request: checked by their
content, stored once without metadata, recorded and queued together; every refusal typed and
leaving nothing behind. The image itself only for those who may see personal data."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from PIL import Image
from strawberry.relay import GlobalID

from api import bundled
from tests.conftest import gateway_env
from tests.graph.helpers import global_id
from tests.support import DatabaseUnderTest, GatewayProcess, GraphQLClient
from tests.tokens import TokenFactory
from tests.vision.conftest import (
    UPLOAD_FRAME,
    Camera,
    CameraFactory,
    frame_rows,
    graphql_upload,
    now_iso,
    post_frame,
    queue_rows,
)
from tests.vision.images import bomb_png, gif, photo, with_exif_gps

pytestmark = pytest.mark.db


def stored_files(frames_dir: Path) -> set[Path]:
    return {path for path in frames_dir.rglob("*") if path.is_file()}


@pytest.fixture
async def police_camera(cameras: CameraFactory) -> Camera:
    camera: Camera = await cameras("POLICE")
    return camera


@pytest.fixture
def gateway_token(tokens: TokenFactory) -> str:
    return tokens.named("camera-gateway")  # a POLICE service with incidents:write


async def test_a_camera_gateway_sends_a_frame_which_is_stored_once_and_queued(
    http: httpx.AsyncClient,
    gateway_token: str,
    police_camera: Camera,
    owner: asyncpg.Connection,
    frames_dir: Path,
) -> None:
    original = with_exif_gps(seed=11)
    first = await post_frame(http, gateway_token, police_camera.code, original)
    assert first.status_code == 201, first.text
    frame = first.json()["frame"]
    assert first.json()["replayed"] is False
    assert (frame["mediaType"], frame["status"], frame["cameraId"]) == (
        "image/jpeg", "QUEUED", police_camera.id,
    )  # fmt: skip
    stored = next(p for p in stored_files(frames_dir) if p.stem == frame["sha256"])
    data = stored.read_bytes()
    assert hashlib.sha256(data).hexdigest() == frame["sha256"]
    assert b"SERIAL-12345" not in data and not Image.open(io.BytesIO(data)).getexif()
    assert await frame_rows(owner) == [{"sha": frame["sha256"], "status": "QUEUED"}]
    assert await queue_rows(owner) == [
        {"status": "queued", "attempts": 0, "dedupe_key": frame["sha256"]}
    ]
    # The operators' gauges count it, across bureaus, without naming it.
    scraped = (await http.get("/metrics")).text
    for series in ('lighthouse_frames_queue_jobs{status="queued"} 1.0',
                   'lighthouse_frames_unfinished{status="QUEUED"} 1.0'):  # fmt: skip
        assert series in scraped, [line for line in scraped.splitlines() if "frames" in line]
    assert frame["sha256"] not in scraped
    age = next(line for line in scraped.splitlines()
               if line.startswith("lighthouse_audit_anchor_age_seconds "))  # fmt: skip
    assert 0 <= float(age.split()[1]) < 3600  # the gateway anchored the chain as it started

    again = await post_frame(http, gateway_token, police_camera.code, original)
    assert again.status_code == 200, again.text
    assert again.json()["replayed"] is True
    assert again.json()["frame"]["sha256"] == frame["sha256"]
    assert len(await frame_rows(owner)) == 1 and len(await queue_rows(owner)) == 1


async def test_a_frame_arrives_through_the_graphql_multipart_request(
    http: httpx.AsyncClient,
    gateway_token: str,
    police_camera: Camera,
    owner: asyncpg.Connection,
) -> None:
    variables = {"camera": global_id("Asset", police_camera.id), "at": now_iso()}
    png = photo(21, kind="PNG")
    response = await graphql_upload(http, gateway_token, UPLOAD_FRAME, variables, png)
    assert response.status_code == 200, response.text
    result = response.json()["data"]["uploadFrame"]
    assert result["__typename"] == "FrameUploaded", result
    assert result["replayed"] is False
    assert (result["frame"]["mediaType"], result["frame"]["status"]) == ("image/png", "QUEUED")
    assert (result["frame"]["width"], result["frame"]["height"]) == (64, 48)
    assert [r["sha"] for r in await frame_rows(owner)] == [result["frame"]["sha256"]]
    assert len(await queue_rows(owner)) == 1


async def test_a_multipart_request_needs_the_preflight_header(
    http: httpx.AsyncClient, gateway_token: str, police_camera: Camera, owner: asyncpg.Connection
) -> None:
    variables = {"camera": global_id("Asset", police_camera.id), "at": now_iso()}
    response = await graphql_upload(
        http, gateway_token, UPLOAD_FRAME, variables, photo(22), preflight=False
    )
    assert response.status_code == 400
    assert "GraphQL-Require-Preflight" in response.json()["errors"][0]["message"]
    assert await frame_rows(owner) == []


REFUSED_IMAGES = [
    pytest.param(b"", 400, "EMPTY", id="empty"),
    pytest.param(b"%PDF-1.7\n1 0 obj <<>> endobj", 415, "NOT_AN_IMAGE", id="pdf-named-jpeg"),
    pytest.param(gif(), 415, "NOT_AN_IMAGE", id="gif"),
    pytest.param(photo(3)[:500], 422, "CORRUPT", id="truncated-jpeg"),
    pytest.param(bomb_png(), 413, "TOO_LARGE", id="decompression-bomb"),
]


@pytest.mark.parametrize(("data", "status", "reason"), REFUSED_IMAGES)
async def test_what_is_not_a_usable_image_is_refused_by_content_and_leaves_nothing(
    http: httpx.AsyncClient,
    gateway_token: str,
    police_camera: Camera,
    owner: asyncpg.Connection,
    frames_dir: Path,
    data: bytes,
    status: int,
    reason: str,
) -> None:
    before = stored_files(frames_dir)
    rest = await post_frame(http, gateway_token, police_camera.code, data)
    assert rest.status_code == status, rest.text
    assert rest.json()["error"]["code"] == "FRAME_REJECTED"
    assert rest.json()["error"]["reason"] == reason

    variables = {"camera": global_id("Asset", police_camera.id), "at": now_iso()}
    graph = await graphql_upload(http, gateway_token, UPLOAD_FRAME, variables, data)
    result = graph.json()["data"]["uploadFrame"]
    assert (result["__typename"], result["code"], result["reason"]) == (
        "FrameRejected", "FRAME_REJECTED", reason,
    )  # fmt: skip
    assert await frame_rows(owner) == [] and await queue_rows(owner) == []
    assert stored_files(frames_dir) == before


async def test_a_frame_over_the_limit_is_refused_and_a_body_past_it_is_not_read(
    http: httpx.AsyncClient,
    gateway: GatewayProcess,
    gateway_token: str,
    police_camera: Camera,
    owner: asyncpg.Connection,
) -> None:
    just_over = b"\xff\xd8" + b"\x00" * (8 * 1024 * 1024)  # the frame limit is 8 MiB
    rest = await post_frame(http, gateway_token, police_camera.code, just_over)
    assert rest.status_code == 413
    assert rest.json()["error"]["reason"] == "TOO_LARGE"
    # Past the upload limit (the frame limit and room for a multipart request's parts), a
    # declared body is answered 413 before it is sent; other routes keep the 1 MiB limit.
    for path, content_type, declared in (
        (f"/frames?camera={police_camera.code}", "image/jpeg", 9 * 1024 * 1024),
        ("/graphql", "multipart/form-data; boundary=x", 9 * 1024 * 1024),
        ("/graphql", "application/json", 2 * 1024 * 1024),
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        try:
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
                f"Authorization: Bearer {gateway_token}\r\n"
                f"Content-Length: {declared}\r\n\r\n".encode()
            )
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            assert head.startswith(b"HTTP/1.1 413"), (path, head)
        finally:
            writer.close()
    assert await frame_rows(owner) == []


async def test_a_camera_of_another_bureau_or_none_at_all_is_refused(
    http: httpx.AsyncClient,
    gateway_token: str,
    cameras: CameraFactory,
    owner: asyncpg.Connection,
    frames_dir: Path,
) -> None:
    public_works = await cameras("PUBLIC_WORKS")
    before = stored_files(frames_dir)
    foreign = await post_frame(http, gateway_token, public_works.code, photo(31))
    assert foreign.status_code == 403, foreign.text
    assert foreign.json()["error"]["code"] == "FORBIDDEN"
    unknown = await post_frame(http, gateway_token, "CAM-NO-SUCH", photo(32))
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "NOT_FOUND"

    variables = {"camera": global_id("Asset", public_works.id), "at": now_iso()}
    graph = await graphql_upload(http, gateway_token, UPLOAD_FRAME, variables, photo(33))
    assert graph.json()["data"]["uploadFrame"]["__typename"] == "Forbidden"
    # A street light is not a camera.
    light = await owner.fetchval(
        "INSERT INTO asset (code, kind, name, bureau_id, latitude, longitude, created_by)"
        " SELECT 'LIGHT-T1', 'STREET_LIGHT', 'light', id, 22.6, 120.3, 'tests' FROM bureau"
        " WHERE code = 'POLICE' RETURNING id"
    )
    variables = {"camera": global_id("Asset", light), "at": now_iso()}
    graph = await graphql_upload(http, gateway_token, UPLOAD_FRAME, variables, photo(34))
    assert graph.json()["data"]["uploadFrame"]["__typename"] == "NotFound"
    assert await frame_rows(owner) == [] and await queue_rows(owner) == []
    assert stored_files(frames_dir) == before


@pytest.mark.parametrize(
    ("captured_at", "field"),
    [
        ((datetime.now(UTC) + timedelta(hours=1)).isoformat(), "capturedAt"),
        ((datetime.now(UTC) - timedelta(days=40)).isoformat(), "capturedAt"),
        ("2026-11-30T10:00:00", "capturedAt"),  # no offset
        ("yesterday", "capturedAt"),
    ],
    ids=["future", "too-old", "no-offset", "not-a-time"],
)
async def test_a_capture_time_that_cannot_be_is_refused(
    http: httpx.AsyncClient,
    gateway_token: str,
    police_camera: Camera,
    owner: asyncpg.Connection,
    captured_at: str,
    field: str,
) -> None:
    response = await post_frame(http, gateway_token, police_camera.code, photo(41), captured_at)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == field
    assert await frame_rows(owner) == []


async def test_callers_without_the_right_token_send_nothing(
    http: httpx.AsyncClient, tokens: TokenFactory, police_camera: Camera, owner: asyncpg.Connection
) -> None:
    anonymous = await http.post(
        "/frames", params={"camera": police_camera.code, "capturedAt": now_iso()}, content=photo(51)
    )
    assert anonymous.status_code == 401
    viewer = await post_frame(http, tokens.named("police-viewer"), police_camera.code, photo(52))
    assert viewer.status_code == 403  # no incidents:write
    assert await frame_rows(owner) == []


async def test_the_image_is_shown_only_to_whom_may_see_personal_data(
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    gateway_token: str,
    police_camera: Camera,
    owner: asyncpg.Connection,
) -> None:
    sent = await post_frame(http, gateway_token, police_camera.code, photo(61))
    sha = sent.json()["frame"]["sha256"]

    def get(token: str) -> Any:
        return http.get(f"/frames/{sha}", headers={"authorization": f"Bearer {token}"})

    police_pii = tokens.custom(
        subject="police-officer", kind="staff", bureau="POLICE", roles=["viewer"],
        scopes=["incidents:read", "pii:read"],
    )  # fmt: skip
    shown = await get(police_pii)
    assert shown.status_code == 200, shown.text
    assert hashlib.sha256(shown.content).hexdigest() == sha
    assert shown.headers["content-type"] == "image/jpeg"
    assert shown.headers["cache-control"] == "private, no-store"
    recorded = await owner.fetchrow(
        "SELECT personal_data, resource_ids FROM audit_record"
        " WHERE subject = 'police-officer' ORDER BY seq DESC LIMIT 1"
    )
    assert recorded["personal_data"] is True

    masked = await get(tokens.named("police-viewer"))  # the camera's bureau, no pii:read
    assert masked.status_code == 403
    assert masked.json()["error"]["code"] == "PERSONAL_DATA_MASKED"
    # Another bureau does not see the frame at all; an auditor without incidents:read and a
    # licensee (whatever its token says) may not look at frames.
    assert (await get(tokens.named("pwb-viewer"))).status_code == 404
    licensee = tokens.custom(
        subject="acme", kind="licensee", scopes=["incidents:read", "pii:read", "inference:invoke"]
    )
    for refused in (tokens.named("auditor"), licensee):
        answer = await get(refused)
        assert answer.status_code == 403 and answer.json()["error"]["code"] == "FORBIDDEN"
    assert (await http.get(f"/frames/{sha}")).status_code == 401
    # The refusals changed nothing: whom it was shown to is shown it still.
    again = await get(police_pii)
    assert again.status_code == 200, again.text
    assert hashlib.sha256(again.content).hexdigest() == sha
    bad = await http.get("/frames/not-a-hash", headers={"authorization": f"Bearer {police_pii}"})
    assert bad.status_code == 404


async def test_pixels_sent_before_from_another_bureaus_camera_are_refused_to_whoever_sends_them(
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    gateway_token: str,
    police_camera: Camera,
    cameras: CameraFactory,
    owner: asyncpg.Connection,
    frames_dir: Path,
) -> None:
    image = photo(71)
    first = await post_frame(http, gateway_token, police_camera.code, image)
    assert first.status_code == 201, first.text
    sha = first.json()["frame"]["sha256"]
    # The 1999 joint service centre sends its own cameras' frames and sees every bureau's,
    # the Police frame included: a replay answered with that frame would disclose nothing it
    # could not see, and still be wrong (the frame is not its camera's).
    jsc = tokens.named("jsc-operator")
    seen = await GraphQLClient(http, jsc).data(
        "query Seen($id: ID!) { frame(id: $id) { sha256 } }", {"id": str(GlobalID("Frame", sha))}
    )
    assert seen["frame"] == {"sha256": sha}
    rdec_camera = await cameras("RDEC")
    before = stored_files(frames_dir)

    rest = await post_frame(http, jsc, rdec_camera.code, image)
    assert rest.status_code == 409, rest.text
    error = rest.json()["error"]
    assert (error["code"], error["reason"]) == ("FRAME_REJECTED", "SENT_ELSEWHERE")
    assert "frame" not in rest.json()
    variables = {"camera": global_id("Asset", rdec_camera.id), "at": now_iso()}
    graph = await graphql_upload(http, jsc, UPLOAD_FRAME, variables, image)
    result = graph.json()["data"]["uploadFrame"]
    assert (result["__typename"], result["code"], result["reason"]) == (
        "FrameRejected", "FRAME_REJECTED", "SENT_ELSEWHERE",
    )  # fmt: skip
    # The frame stays its first camera's, queued once; nothing new is stored.
    assert [r["camera_id"] for r in await owner.fetch("SELECT camera_id FROM frame")] == [
        police_camera.id
    ]
    assert len(await queue_rows(owner)) == 1
    assert stored_files(frames_dir) == before


# --- the database's own check on recording frames, with the policies' check out of the way -----

# Added to the policies of a gateway of the tests' own: any caller with incidents:write may send
# any camera's frames, as if the policies' check on the camera's bureau were not there.
UNGUARDED_UPLOADS = """
@id("tests.frames.upload.any-bureau")
@description("For the tests only: the check on the camera's bureau left to the database.")
permit (principal, action == Lighthouse::Action::"UploadFrame", resource)
when { context.scopes.contains("incidents:write") };
"""


@pytest.fixture(scope="module")
def unguarded(
    database: DatabaseUnderTest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GatewayProcess, Path]]:
    """A gateway whose policies let any bureau send any camera's frames, and its frame store:
    only row-level security (frame_create) stands between a caller and another bureau's
    camera."""
    policies = tmp_path_factory.mktemp("unguarded-policies")
    shutil.copytree(bundled.directory("policies"), policies, dirs_exist_ok=True)
    (policies / "tests_unguarded.cedar").write_text(UNGUARDED_UPLOADS)
    frames = tmp_path_factory.mktemp("unguarded-frames")
    process = GatewayProcess({}, tmp_path_factory.mktemp("unguarded") / "gateway.log")
    process.configure(gateway_env(database, issuer=process.base_url))
    process.configure(
        {"LIGHTHOUSE_POLICIES_DIR": str(policies), "LIGHTHOUSE_VISION_FRAMES_DIR": str(frames)}
    )
    process.start()
    yield process, frames
    process.stop()


async def test_another_bureaus_camera_refused_by_the_database_is_a_typed_refusal_and_stores_nothing(
    unguarded: tuple[GatewayProcess, Path],
    database: DatabaseUnderTest,
    cameras: CameraFactory,
    police_camera: Camera,
    owner: asyncpg.Connection,
) -> None:
    process, frames = unguarded
    token = TokenFactory(database.owner_url, process.base_url).named("camera-gateway")  # Police
    public_works = await cameras("PUBLIC_WORKS")
    async with httpx.AsyncClient(base_url=process.base_url, timeout=30) as http:
        refused = await post_frame(http, token, public_works.code, photo(81))
        variables = {"camera": global_id("Asset", public_works.id), "at": now_iso()}
        graph = await graphql_upload(http, token, UPLOAD_FRAME, variables, photo(82))
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "FORBIDDEN"
        assert graph.json()["data"]["uploadFrame"]["__typename"] == "Forbidden", graph.text
        # Nothing recorded, queued or stored.
        assert await frame_rows(owner) == [] and await queue_rows(owner) == []
        assert stored_files(frames) == set()
        # The policies did let it through: the refusal was the database's, and is audited.
        record = await owner.fetchrow(
            "SELECT decision, policy_ids, payload FROM audit_record WHERE request_id = $1",
            refused.headers["x-request-id"],
        )
        assert "tests.frames.upload.any-bureau" in record["policy_ids"]
        assert orjson.loads(record["payload"])["details"]["outcome"] == "FORBIDDEN"

        # Its own bureau's camera, on the same gateway: recorded, and then stored.
        sent = await post_frame(http, token, police_camera.code, photo(83))
        assert sent.status_code == 201, sent.text
        assert {p.stem for p in stored_files(frames)} == {sent.json()["frame"]["sha256"]}


IMAGE_LINK = "query($id: ID!) { frame(id: $id) { imageLink { url expiresAt } } }"


async def test_an_image_link_shows_one_frame_to_its_caller_for_minutes_and_is_audited_when_used(
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    gateway_token: str,
    police_camera: Camera,
    owner: asyncpg.Connection,
) -> None:
    """For an <img>, which cannot send a token: the graph issues a link to whom may see the
    image; the link needs no header, is good for that frame only, and is checked again as its
    caller when used."""
    shas = []
    for seed in (81, 82):
        sent = await post_frame(http, gateway_token, police_camera.code, photo(seed))
        shas.append(sent.json()["frame"]["sha256"])
    police_pii = tokens.custom(
        subject="police-officer", kind="staff", bureau="POLICE", roles=["viewer"],
        scopes=["incidents:read", "pii:read"],
    )  # fmt: skip
    officer = GraphQLClient(http, police_pii)
    ids = [base64.b64encode(f"Frame:{sha}".encode()).decode() for sha in shas]
    asked = await officer.data(IMAGE_LINK, {"id": ids[0]})
    link = asked["frame"]["imageLink"]
    assert link["url"].startswith(f"/frames/{shas[0]}?grant=")
    assert police_pii not in link["url"]  # never the access token in a URL
    shown = await http.get(link["url"])  # no Authorization header
    assert shown.status_code == 200, shown.text
    assert hashlib.sha256(shown.content).hexdigest() == shas[0]
    used = await owner.fetchrow(
        "SELECT subject, operation, personal_data FROM audit_record"
        " WHERE operation = 'GET /frames/{sha256} by link' ORDER BY seq DESC LIMIT 1"
    )
    assert dict(used) == {
        "subject": "police-officer",
        "operation": "GET /frames/{sha256} by link",
        "personal_data": True,
    }
    grant = link["url"].split("grant=", 1)[1]
    # For that frame only; not an access token; an access token is not a grant; nor a forgery.
    other = await http.get(f"/frames/{shas[1]}", params={"grant": grant})
    assert other.status_code == 401 and "another frame" in other.text
    as_token = await http.post(
        "/graphql", json={"query": "{ me { subject } }"},
        headers={"authorization": f"Bearer {grant}"},
    )  # fmt: skip
    assert as_token.status_code == 401
    for forged in (police_pii, grant[:-4] + "AAAA", "x"):
        refused = await http.get(f"/frames/{shas[0]}", params={"grant": forged})
        assert refused.status_code == 401, forged
    # Whom the image is masked from gets no link.
    viewer = GraphQLClient(http, tokens.named("police-viewer"))
    masked = await viewer.execute(IMAGE_LINK, {"id": ids[0]})
    assert masked["data"]["frame"]["imageLink"] is None
    assert masked["errors"][0]["extensions"]["code"] == "PERSONAL_DATA_MASKED"
