"""Model releases for licensees with their own compute (``/v1/releases``): the list, a release's
signed manifest, and its files, each download authorized (``releases.download.own-compute``)
and audited before a byte leaves.

    GET /v1/releases                      the releases the caller may download
    GET /v1/releases/{id}                 the signed manifest (application/jwt)
    GET /v1/releases/{id}/files/{path}    one file the manifest lists
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from api.access.scope import AccessScope, OperationDescription
from api.domain.errors import DomainError, Forbidden, NotFound
from api.http.openai import OPENAI_ERRORS, domain_error, refused_token
from api.http.transaction import protected, request_transaction
from api.policy import resources
from api.repositories.licensing import LicensingRepository, ReleaseRecord, ReleaseRepository
from api.services.metering import releases


def _describe(name: str) -> Callable[[], OperationDescription]:
    description = OperationDescription(category="inference", name=name, kind="rest")
    return lambda: description


async def _downloadable(access: AccessScope, release_id: int) -> ReleaseRecord:
    """The release, if a licence of the caller's company lets it run the model on its own
    compute; NotFound or Forbidden otherwise."""
    access.audit.targeted("Release", release_id)
    release = await ReleaseRepository(access.uow).get(release_id)
    if release is None:
        raise NotFound("release", release_id)
    principal = access.principal
    if principal.licensee_id is None:
        raise Forbidden("releases are for licensees whose licence allows their own compute")
    found = await LicensingRepository(access.uow).licences_of([principal.licensee_id])
    covering = [lic for lic in found.get(principal.licensee_id, []) if release.model in lic.models]
    if not covering:
        raise Forbidden(f"no licence of yours covers {release.model}")
    allowed = any(
        access.authorizer.decide(
            "DownloadRelease", resources.licence_entity(lic.id, lic.licensee_id, lic.own_compute)
        ).allowed
        for lic in covering
    )
    if not allowed:
        raise Forbidden(f"no licence of yours lets {release.model} run on your own compute")
    access.audit.saw("Release", release.id)
    return release


def _release_id(request: Request) -> int:
    try:
        return int(request.path_params["release"])
    except ValueError:
        raise NotFound("release", request.path_params["release"]) from None


async def list_releases(request: Request) -> Response:
    transaction = request_transaction(request)
    if not transaction.principal.is_authenticated:
        return refused_token("no access token")
    access = transaction.access(_describe("GET /v1/releases"))
    visible = await ReleaseRepository(access.uow).visible()
    access.audit.saw("Release", [r.id for r in visible])
    await transaction.commit()
    data = [
        {
            "id": r.id,
            "model": r.model,
            "version": r.version,
            "created_at": r.created_at.isoformat(),
            "files": len(r.manifest.get("files", [])),
            "bytes": sum(f["bytes"] for f in r.manifest.get("files", [])),
        }
        for r in visible
    ]
    return Response(orjson.dumps({"object": "list", "data": data}), media_type="application/json")


async def get_manifest(request: Request) -> Response:
    transaction = request_transaction(request)
    if not transaction.principal.is_authenticated:
        return refused_token("no access token")
    access = transaction.access(_describe("GET /v1/releases/{id}"))
    try:
        release = await _downloadable(access, _release_id(request))
    except DomainError as error:
        access.audit.outcome = error.code
        await transaction.commit()
        return domain_error(error)
    await transaction.commit()
    return Response(release.signed, media_type="application/jwt")


async def get_file(request: Request) -> Response:
    transaction = request_transaction(request)
    if not transaction.principal.is_authenticated:
        return refused_token("no access token")
    access = transaction.access(_describe("GET /v1/releases/{id}/files"))
    wanted = request.path_params["path"]
    try:
        release = await _downloadable(access, _release_id(request))
        entry = releases.safe_path(release.manifest.get("files", []), wanted)
        if entry is None:
            raise NotFound("file", wanted)
        access.audit.notes.append(f"file {entry['path']} ({entry['bytes']} bytes)")
    except DomainError as error:
        access.audit.outcome = error.code
        await transaction.commit()
        return domain_error(error)
    # The download is on the record before a byte leaves.
    await transaction.commit()
    path = Path(release.directory) / entry["path"]
    if not path.is_file():
        return domain_error(NotFound("file", wanted))
    return FileResponse(
        path,
        media_type="application/octet-stream",
        headers={"X-Content-SHA256": entry["sha256"], "Cache-Control": "no-store"},
    )


def release_routes() -> list[Route]:
    return [
        protected(path, endpoint, methods=["GET"], errors=OPENAI_ERRORS)
        for path, endpoint in (
            ("/v1/releases", list_releases),
            ("/v1/releases/{release}", get_manifest),
            ("/v1/releases/{release}/files/{path:path}", get_file),
        )
    ]
