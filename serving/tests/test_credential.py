"""The callers' credential in front of the app (lighthouse_serving.credential), without Ray: the
middleware around a small ASGI app, the secret file's rules and its rotation."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from lighthouse_serving.credential import (
    CallerCredentialMiddleware,
    SecretFileError,
    add_secret,
    read_secrets,
    retire_secrets,
    write_new_secret,
)

SECRET = "a" * 43


async def models(_request: Request) -> JSONResponse:
    return JSONResponse({"data": [{"id": "m"}]})


async def stream(_request: Request) -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for number in range(3):
            yield f"data: {number}\n\n".encode()

    return StreamingResponse(chunks(), media_type="text/event-stream")


def client(secret_file: Path) -> TestClient:
    app = Starlette(routes=[Route("/v1/models", models), Route("/stream", stream)])
    app.add_middleware(CallerCredentialMiddleware, secret_file=str(secret_file))
    return TestClient(app)


def bearer(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "caller-secret"
    path.write_text(SECRET + "\n")
    return path


def test_the_secret_opens_every_route_and_streams_pass_through(secret_file: Path) -> None:
    with client(secret_file) as http:
        assert http.get("/v1/models", headers=bearer(SECRET)).json() == {"data": [{"id": "m"}]}
        assert (
            http.get("/v1/models", headers={"authorization": f"bearer {SECRET}"}).status_code == 200
        )
        streamed = http.get("/stream", headers=bearer(SECRET))
        assert streamed.text == "data: 0\n\ndata: 1\n\ndata: 2\n\n"


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_credential"),
        ({"authorization": "Bearer"}, "missing_credential"),
        ({"authorization": f"Basic {SECRET}"}, "missing_credential"),
        (bearer(SECRET[:-1]), "invalid_credential"),
        (bearer(SECRET + "a"), "invalid_credential"),
        (bearer(SECRET.upper()), "invalid_credential"),
    ],
)
def test_anything_else_is_refused_before_the_app_runs(
    secret_file: Path, headers: dict[str, str], code: str
) -> None:
    with client(secret_file) as http:
        for path in ("/v1/models", "/stream", "/no-such-route"):
            response = http.get(path, headers=headers)
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == 'Bearer realm="lighthouse-serving"'
            assert response.json()["error"] == {
                "message": response.json()["error"]["message"],
                "type": "authentication_error",
                "code": code,
            }


def test_a_rotation_takes_effect_on_the_next_request(secret_file: Path) -> None:
    with client(secret_file) as http:
        assert add_secret(secret_file) == 2
        newest, previous = read_secrets(secret_file)
        assert previous == SECRET
        assert http.get("/v1/models", headers=bearer(SECRET)).status_code == 200
        assert http.get("/v1/models", headers=bearer(newest)).status_code == 200
        assert retire_secrets(secret_file) == 1
        assert http.get("/v1/models", headers=bearer(SECRET)).status_code == 401
        assert http.get("/v1/models", headers=bearer(newest)).status_code == 200
    assert oct(secret_file.stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize(
    "content", [None, "", "\n\n", "short\n", "has a space in the middle of it\n"]
)
def test_an_unusable_secret_file_refuses_everyone(tmp_path: Path, content: str | None) -> None:
    """Fail closed: no file, no secret, or a malformed one, and every caller gets 503."""
    path = tmp_path / "caller-secret"
    if content is not None:
        path.write_text(content)
    with client(path) as http:
        for headers in ({}, bearer(SECRET), bearer("short")):
            response = http.get("/v1/models", headers=headers)
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "tier_misconfigured"
        # Mended, it answers without a restart.
        path.write_text(SECRET + "\n")
        os.utime(path, ns=(1, 1))  # a change the stat sees even within the clock's tick
        assert http.get("/v1/models", headers=bearer(SECRET)).status_code == 200


def test_a_new_secret_file_is_private_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "dir" / "caller-secret"
    write_new_secret(path)
    (first,) = read_secrets(path)
    assert len(first) >= 40
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    write_new_secret(path)
    assert read_secrets(path) == (first,)
    assert [p.name for p in path.parent.iterdir()] == ["caller-secret"]  # no partial left


def test_the_file_holds_a_bounded_number_of_secrets(secret_file: Path) -> None:
    for _ in range(7):
        add_secret(secret_file)
    with pytest.raises(SecretFileError, match="retire"):
        add_secret(secret_file)
    assert len(read_secrets(secret_file)) == 8


def test_a_cluster_deploy_without_a_usable_secret_file_is_refused(tmp_path: Path) -> None:
    """`deploy` (the GPU cluster) never starts an app that would answer anyone."""
    import yaml

    from .conftest import SERVING, serving_command

    gpu = SERVING / "configs" / "gpu.yaml"
    missing = serving_command("deploy", "--config", str(gpu), timeout=120)
    assert missing.returncode == 2
    assert "/etc/lighthouse/serving-secret: cannot read it" in missing.stderr

    data = yaml.safe_load(gpu.read_text())
    del data["callers"]
    unnamed = tmp_path / "gpu.yaml"
    unnamed.write_text(yaml.safe_dump(data))
    refused = serving_command("deploy", "--config", str(unnamed), timeout=120)
    assert refused.returncode == 2
    assert "callers.secret_file" in refused.stderr and "secret new" in refused.stderr
