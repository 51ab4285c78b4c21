"""REST for camera gateways and viewers: ``POST /frames`` (an image as the request body) and
``GET /frames/{sha256}`` (the stored image, for those who may see personal data).

``POST /frames?camera=CODE&capturedAt=ISO-8601`` with the JPEG or PNG bytes as the body (any
Content-Type: the type is read from the content) answers 201 with the frame, or 200 if these
pixels had been sent before (nothing new stored or queued). The image is checked before any
transaction opens; the frame and its analysis job are recorded in one short transaction.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from api.access.scope import OperationDescription
from api.auth.image_grants import read_image_grant
from api.auth.tokens import InvalidToken
from api.domain.errors import (
    DomainError,
    Forbidden,
    FrameRejected,
    InvalidInput,
    NotFound,
    PersonalDataMasked,
    ServiceUnavailable,
)
from api.http.error_shape import ErrorShape
from api.http.transaction import (
    TransactionMode,
    protected,
    request_transaction,
)
from api.repositories.vision import FrameRecord
from api.resources import resources_of
from api.services.vision import intake
from api.services.vision.intake import FrameIntake, FrameUpload
from api.services.vision.reads import VisionReads
from api.vision.store import parse_digest

REJECTION_STATUS = {
    "EMPTY": 400,
    "TOO_LARGE": 413,
    "NOT_AN_IMAGE": 415,
    "CORRUPT": 422,
    "SENT_ELSEWHERE": 409,
}


def _status(error: DomainError) -> int:
    match error:
        case FrameRejected():
            return REJECTION_STATUS.get(error.reason, 400)
        case InvalidInput():
            return 400
        case NotFound():
            return 404
        case Forbidden() | PersonalDataMasked():
            return 403
        case ServiceUnavailable():
            return 503
    return 400


def _error(error: DomainError, request_id: str) -> Response:
    body: dict[str, Any] = {"code": error.code, "message": error.message, "requestId": request_id}
    if isinstance(error, FrameRejected):
        body["reason"] = error.reason
    if isinstance(error, InvalidInput):
        body["field"] = error.field
    return _json({"error": body}, _status(error))


def _json(value: object, status: int) -> Response:
    return Response(orjson.dumps(value), status_code=status, media_type="application/json")


def _refusal(status: int, code: str, message: str, details: dict[str, Any]) -> Response:
    return _json({"error": {"code": code, "message": message, **details}}, status)


# The gateway's own refusals of frame requests, in the frames' error shape.
FRAMES_ERRORS = ErrorShape("frames", _refusal)


def frame_json(record: FrameRecord) -> dict[str, Any]:
    return {
        "sha256": record.key,
        "cameraId": record.camera_id,
        "mediaType": record.media_type,
        "sizeBytes": record.size_bytes,
        "width": record.width,
        "height": record.height,
        "capturedAt": record.captured_at.isoformat(),
        "receivedAt": record.received_at.isoformat(),
        "status": record.status,
        "imageUrl": f"/frames/{record.key}",
    }


def _upload(request: Request, data: bytes) -> FrameUpload:
    camera = request.query_params.get("camera")
    if not camera:
        raise InvalidInput("camera", "name the camera by its asset code (?camera=...)")
    captured = request.query_params.get("capturedAt")
    if not captured:
        raise InvalidInput("capturedAt", "say when the frame was taken (?capturedAt=ISO-8601)")
    try:
        captured_at = datetime.fromisoformat(captured)
    except ValueError:
        raise InvalidInput("capturedAt", "must be an ISO 8601 date and time") from None
    return FrameUpload(data, camera, captured_at)


def _describe(name: str) -> OperationDescription:
    return OperationDescription(category="rest", name=name, kind="rest")


async def post_frame(request: Request) -> Response:
    transaction = request_transaction(request)
    resources = resources_of(request)
    vision = resources.vision
    description = _describe("POST /frames")
    principal = transaction.principal
    if not principal.is_authenticated:
        return FRAMES_ERRORS.unauthenticated(
            "send frames with an access token (Authorization: Bearer ...)"
        )
    refusal: DomainError | None = None
    if not intake.may_upload(resources.policy, principal):
        refusal = Forbidden("this caller may not send frames (a bureau's incidents:write)")
    try:
        if refusal is None:
            try:
                data = await request.body()  # bounded by the body limit for uploads
                upload = _upload(request, data)
                checked = await intake.check(upload, resources.settings.vision, vision.decoding)
            except DomainError as error:
                refusal = error
        # A short transaction: the frame and its job, or the refusal, in the audit record.
        async with transaction.transaction(lambda: description) as access:
            if refusal is None:
                try:
                    record, replayed = await FrameIntake(access, vision.store).accept(checked)
                except DomainError as error:
                    refusal = error
            if refusal is not None:
                access.audit.outcome = refusal.code
    except DomainError as error:
        return _error(error, transaction.request_id)
    except InvalidToken as error:
        return FRAMES_ERRORS.unauthenticated(error.reason)
    except ClientDisconnect:
        return Response(status_code=400)
    if refusal is not None:
        return _error(refusal, transaction.request_id)
    return _json({"frame": frame_json(record), "replayed": replayed}, 200 if replayed else 201)


async def get_frame_image(request: Request) -> Response:
    transaction = request_transaction(request)
    grant = request.query_params.get("grant")
    if grant is not None:
        return await _linked_image(request, grant)
    if not transaction.principal.is_authenticated:
        return FRAMES_ERRORS.unauthenticated(
            "frames are shown with an access token (Authorization: Bearer ...)"
        )
    digest = parse_digest(request.path_params["sha256"])
    access = transaction.access(lambda: _describe("GET /frames/{sha256}"))
    try:
        if digest is None:
            raise NotFound("frame", request.path_params["sha256"])
        record = await VisionReads(access).image(digest)
    except DomainError as error:
        access.audit.outcome = error.code
        await transaction.commit()
        return _error(error, transaction.request_id)
    # The disclosure is recorded before a byte of the image leaves.
    await transaction.commit()
    return await _image(request, record, transaction.request_id)


async def _linked_image(request: Request, grant: str) -> Response:
    """The image by a link the graph issued (``Frame.imageLink``, for an ``<img>``): authorized
    and audited again as the caller the link names, whose token must still stand."""
    resources = resources_of(request)
    request_id = request_transaction(request).request_id
    digest = parse_digest(request.path_params["sha256"])
    if digest is None:
        return _error(NotFound("frame", request.path_params["sha256"]), request_id)
    refusal: DomainError | None = None
    try:
        principal = read_image_grant(resources.keys, resources.settings, grant, digest.hex())
        async with resources.gate.transaction(
            principal,
            request_id,
            lambda: _describe("GET /frames/{sha256} by link"),
            check_token=True,
        ) as access:
            try:
                record = await VisionReads(access).image(digest)
            except DomainError as error:
                access.audit.outcome = error.code
                refusal = error
    except InvalidToken as error:
        return FRAMES_ERRORS.unauthenticated(error.reason)
    if refusal is not None:
        return _error(refusal, request_id)
    return await _image(request, record, request_id)


async def _image(request: Request, record: FrameRecord, request_id: str) -> Response:
    resources = resources_of(request)
    try:
        data = await asyncio.to_thread(resources.vision.store.get, record.sha256, record.media_type)
    except FileNotFoundError:
        return _error(NotFound("frame image", record.key), request_id)
    return Response(
        data,
        media_type=record.media_type,
        headers={
            "Cache-Control": "private, no-store",
            "X-Content-Type-Options": "nosniff",
            "Content-Disposition": f'inline; filename="{record.key}"',
            "ETag": f'"{record.key}"',
        },
    )


def frame_routes() -> list[Route]:
    return [
        protected(
            "/frames",
            post_frame,
            methods=["POST"],
            mode=TransactionMode.SHORT,
            errors=FRAMES_ERRORS,
        ),
        protected("/frames/{sha256}", get_frame_image, methods=["GET"], errors=FRAMES_ERRORS),
    ]
