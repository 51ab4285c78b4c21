"""Model releases for licensees with their own compute: published by an officer with the city's
signature, downloaded only under a licence that allows it (every download audited), and checked
on the licensee's side with ``lighthouse verify-release``: a changed, missing or added file, or a
manifest signed by anyone else, does not hold."""

from __future__ import annotations

import os
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.auth.test_oauth_server import cli
from tests.metering.support import Licensed, access_token, licensee_with_licence
from tests.support import DatabaseUnderTest, GatewayProcess

REPOSITORY = Path(__file__).resolve().parents[2]
RELEASED = "city-vlm-7b"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("release") / "city-vlm-7b"
    (directory / "tokenizer").mkdir(parents=True)
    (directory / "config.json").write_text(
        '{"architectures": ["Qwen2_5_VLForConditionalGeneration"]}'
    )
    (directory / "model.safetensors").write_bytes(os.urandom(200_000))
    (directory / "tokenizer" / "tokenizer.json").write_text('{"version": "1.0"}')
    return directory


def verify(
    database: DatabaseUnderTest, gateway: GatewayProcess, directory: Path, manifest: Path
) -> tuple[int, str]:
    result = cli(
        database, gateway, "verify-release", str(directory), "--manifest", str(manifest),
        "--jwks", gateway.base_url + "/oauth/jwks",
    )  # fmt: skip
    return result.returncode, " ".join(result.stderr.split())  # as said, unwrapped


async def download(gateway: GatewayProcess, licensed: Licensed, release: int, into: Path) -> Path:
    token = await access_token(gateway, licensed)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=gateway.base_url, headers=headers) as http:
        signed = (await http.get(f"/v1/releases/{release}")).raise_for_status().text
        import base64
        import json

        payload = signed.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        for entry in claims["files"]:
            response = await http.get(f"/v1/releases/{release}/files/{entry['path']}")
            response.raise_for_status()
            assert response.headers["X-Content-SHA256"] == entry["sha256"]
            target = into / entry["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(response.content)
    manifest = into.parent / f"{into.name}.jws"
    manifest.write_text(signed)
    return manifest


@pytest.mark.db
async def test_a_release_is_downloaded_under_a_licence_that_allows_it_and_verified(
    database: DatabaseUnderTest, gateway: GatewayProcess, model_dir: Path, tmp_path: Path
) -> None:
    allowed = await licensee_with_licence(database, models=[RELEASED], own_compute=True)
    hosted_only = await licensee_with_licence(database, models=[RELEASED])
    other_model = await licensee_with_licence(database, own_compute=True)
    version = f"2027.{os.getpid() % 1000}.{tmp_path.name[-6:]}".replace("_", "-")
    published = cli(
        database, gateway, "licensing", "publish-release", RELEASED, version, "--dir",
        str(model_dir), "--config", str(REPOSITORY / "serving/configs/gpu.yaml"),
        "--terms", "Parking occupancy analytics only; no redistribution.",
    )  # fmt: skip
    assert published.returncode == 0, published.stderr
    release = int(published.stderr.rsplit("(id ", 1)[1].split(")")[0])

    for licensed, listed in ((allowed, True), (hosted_only, False), (other_model, False)):
        token = await access_token(gateway, licensed)
        async with httpx.AsyncClient(base_url=gateway.base_url) as http:
            headers = {"Authorization": f"Bearer {token}"}
            ids = [
                r["id"] for r in (await http.get("/v1/releases", headers=headers)).json()["data"]
            ]
            assert (release in ids) is listed
            if not listed:
                refused = await http.get(f"/v1/releases/{release}", headers=headers)
                assert refused.status_code in (403, 404)
                files = await http.get(
                    f"/v1/releases/{release}/files/model.safetensors", headers=headers
                )
                assert files.status_code in (403, 404)

    copy = tmp_path / "downloaded"
    manifest = await download(gateway, allowed, release, copy)
    code, said = verify(database, gateway, copy, manifest)
    assert code == 0, said
    assert f"{RELEASED} {version}" in said and "3 files as released" in said

    # Only files the manifest lists can be fetched.
    token = await access_token(gateway, allowed)
    async with httpx.AsyncClient(base_url=gateway.base_url) as http:
        for path in ("../../../../etc/passwd", "nothing.bin", "%2e%2e/config.json"):
            response = await http.get(
                f"/v1/releases/{release}/files/{path}", headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code == 404, path

    # A changed byte, an added file, a removed file: each is found.
    weights = copy / "model.safetensors"
    original = weights.read_bytes()
    weights.write_bytes(bytes([original[0] ^ 1]) + original[1:])
    code, said = verify(database, gateway, copy, manifest)
    assert code == 1 and "model.safetensors: differs" in said
    weights.write_bytes(original)
    (copy / "extra.py").write_text("print('hello')")
    code, said = verify(database, gateway, copy, manifest)
    assert code == 1 and "extra.py: not in the release" in said
    (copy / "extra.py").unlink()
    (copy / "config.json").unlink()
    code, said = verify(database, gateway, copy, manifest)
    assert code == 1 and "config.json: missing" in said

    # A manifest whose payload was changed no longer verifies.
    head, payload, signature = manifest.read_text().split(".")
    forged = tmp_path / "forged.jws"
    forged.write_text(
        ".".join((head, payload[:-4] + ("AAAA" if payload[-4:] != "AAAA" else "BBBB"), signature))
    )
    code, said = verify(database, gateway, copy, forged)
    assert code == 1 and "signature" in said

    owner = await asyncpg.connect(database.owner_url)
    try:
        downloads = await owner.fetchval(
            "SELECT count(*) FROM lighthouse.audit_record WHERE operation = 'GET /v1/releases/{id}/files'"
            " AND $1 = ANY (resource_ids) AND decision = 'ALLOW'",
            f"Release:{release}",
        )
    finally:
        await owner.close()
    assert downloads >= 3  # each file fetched, on the record


def test_a_manifest_that_is_not_a_signed_release_does_not_hold(
    database: DatabaseUnderTest, gateway: GatewayProcess, model_dir: Path, tmp_path: Path
) -> None:
    junk = tmp_path / "junk.jws"
    junk.write_text("not.a.jws")
    code, said = verify(database, gateway, model_dir, junk)
    assert code == 1 and "not a signed release" in said
