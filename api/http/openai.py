"""Metered inference for licensees, as the OpenAI API: ``GET /v1/models`` and
``POST /v1/chat/completions`` (plain and streamed), called with the standard OpenAI SDK.

A chat request runs in three steps, none of which holds a database connection while the model
works: admission (a short transaction: the licence chosen and checked, the largest cost
reserved, audited), the call to the serving tier, and the settlement (a short transaction: the
real use charged from the tier's usage report, the usage record and the audit record written
together) or, if the call failed or the client left, the release (nothing charged). Calls of
one licensee admitted or ending at the same moment share those transactions
(``services.metering.admissions`` and ``.settlements``), each with its own audit record. Errors take
OpenAI's shape (``{"error": {message, type, param, code}}``) and status codes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

import anyio
import orjson
import structlog
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from api.access.scope import OperationDescription
from api.auth.tokens import InvalidToken
from api.db.errors import UNREACHABLE
from api.domain.errors import (
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
    ServiceUnavailable,
    TooLarge,
)
from api.domain.licensing import Cost, QuotaExceeded
from api.http.transaction import TransactionMode, challenge, protected, request_transaction
from api.inference.client import ServingClient, ServingRefused, ServingUnavailable
from api.resources import Resources, resources_of
from api.services.metering import chat
from api.services.metering.meter import Admission, Ending

log = structlog.get_logger(__name__)

OWNER = "city"  # ``owned_by`` of every model listed
# How long closing a stream and settling it may take once its client has gone (the lease
# sweeper releases a reservation whose settlement did not finish).
FINISH_SECONDS = 30


def openai_error(
    status: int,
    message: str,
    kind: str,
    *,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def refused_token(reason: str) -> Response:
    """No token, or one that does not stand: 401 as OpenAI answers a bad API key."""
    return openai_error(
        401,
        f"{reason}. Send an access token of the city's authorization server as the API key "
        "(client credentials at /oauth/token).",
        "invalid_request_error",
        code="invalid_api_key",
        headers={"WWW-Authenticate": challenge(reason)},
    )


def domain_error(error: DomainError) -> Response:
    """A domain error, in OpenAI's words."""
    match error:
        case QuotaExceeded() if error.refusal.is_licence_state:
            return openai_error(403, error.message, "permission_error", code=error.refusal.lower())
        case QuotaExceeded():
            kind = "insufficient_quota" if error.refusal.is_quota else "rate_limit_exceeded"
            headers = {"Retry-After": str(error.retry_after)} if error.retry_after else None
            return openai_error(
                429, error.message, kind, code=error.refusal.lower(), headers=headers
            )
        case TooLarge():
            return openai_error(
                413, error.message, "invalid_request_error", code="too_large", param=error.field
            )
        case InvalidInput():
            return openai_error(400, error.message, "invalid_request_error", param=error.field)
        case NotFound() if error.entity == "model":
            return openai_error(
                404,
                f"the model {error.identifier} does not exist or your licence does not cover it",
                "invalid_request_error",
                code="model_not_found",
                param="model",
            )
        case NotFound():
            return openai_error(404, error.message, "invalid_request_error", code="not_found")
        case Forbidden():
            return openai_error(403, error.message, "permission_error", code="forbidden")
        case ServiceUnavailable():
            return unavailable(error.message)
    return openai_error(400, error.message, "invalid_request_error", code=error.code.lower())


def unavailable(message: str) -> Response:
    return openai_error(
        503, message, "server_error", code="service_unavailable", headers={"Retry-After": "5"}
    )


def _describe(name: str) -> Callable[[], OperationDescription]:
    description = OperationDescription(category="inference", name=name, kind="rest")
    return lambda: description


async def list_models(request: Request) -> Response:
    transaction = request_transaction(request)
    if not transaction.principal.is_authenticated:
        return refused_token("no access token")
    resources = resources_of(request)
    access = transaction.access(_describe("GET /v1/models"))
    licences = await resources.metering.meter.licences(access)
    await transaction.commit()
    models: dict[str, int] = {}
    for licence in licences:
        for model in licence.models:
            models.setdefault(model, int(licence.created_at.timestamp()))
    data = [
        {"id": model, "object": "model", "created": created, "owned_by": OWNER}
        for model, created in sorted(models.items())
    ]
    return Response(orjson.dumps({"object": "list", "data": data}), media_type="application/json")


async def chat_completions(request: Request) -> Response:
    transaction = request_transaction(request)
    if not transaction.principal.is_authenticated:
        return refused_token("no access token")
    resources = resources_of(request)
    try:
        parsed = chat.parse(await request.body())
    except DomainError as error:
        return domain_error(error)
    except ClientDisconnect:
        return Response(status_code=400)
    try:
        admission = await resources.metering.admissions.admit(
            transaction.principal, transaction.request_id, parsed, transaction.timings
        )
    except InvalidToken as error:
        return refused_token(error.reason)
    except DomainError as error:
        return domain_error(error)
    except UNREACHABLE as error:
        log.warning("metering.admission_failed", error=str(error))
        return unavailable(
            "the licences' ledger cannot be reached now; nothing was reserved or charged"
        )
    body = chat.forwarded(parsed, admission.max_tokens)
    serving = resources.vision.serving
    if parsed.stream:
        return await _stream(request, resources, admission, serving, body, parsed)
    return await _answer(request, resources, admission, serving, body)


async def _answer(
    request: Request,
    resources: Resources,
    admission: Admission,
    serving: ServingClient,
    body: dict[str, Any],
) -> Response:
    """Ask the model and answer at once; a client that leaves first is charged nothing."""
    call = asyncio.ensure_future(serving.chat(body))
    left = asyncio.ensure_future(_client_left(request))
    try:
        await asyncio.wait({call, left}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        left.cancel()
        if not call.done():
            call.cancel()
    if not call.done() or call.cancelled():
        await _finish(request, resources, admission, None, "CANCELLED", streamed=False)
        return Response(status_code=499)
    try:
        answer = call.result()
    except ServingUnavailable as error:
        await _finish(request, resources, admission, None, "FAILED", streamed=False)
        return unavailable(f"the model is not available now: {error}")
    except ServingRefused as error:
        await _finish(request, resources, admission, None, "FAILED", streamed=False)
        return _refused_by_model(error)
    used = _usage(answer.get("usage"), admission)
    if used is None:
        await _finish(request, resources, admission, None, "FAILED", streamed=False)
        return unavailable("the model answered without a usage report; nothing was charged")
    await _finish(request, resources, admission, used, "OK", streamed=False)
    return Response(orjson.dumps(answer), media_type="application/json")


async def _stream(
    request: Request,
    resources: Resources,
    admission: Admission,
    serving: ServingClient,
    body: dict[str, Any],
    parsed: chat.ChatRequest,
) -> Response:
    try:
        upstream = await serving.open_stream(body)
    except ServingUnavailable as error:
        await _finish(request, resources, admission, None, "FAILED", streamed=True)
        return unavailable(f"the model is not available now: {error}")
    except ServingRefused as error:
        await _finish(request, resources, admission, None, "FAILED", streamed=True)
        return _refused_by_model(error)

    async def relay() -> AsyncIterator[bytes]:
        used: Cost | None = None
        finished = False
        try:
            async for line in upstream.lines():
                if line.startswith("data: {") and '"usage"' in line:
                    chunk = orjson.loads(line[6:])
                    report = _usage(chunk.get("usage"), admission)
                    if report is not None:
                        used = report
                    if not chunk.get("choices") and not parsed.include_usage:
                        continue  # the usage chunk we asked for; the caller did not
                yield (line + "\n").encode()
                # Let the event loop run between chunks. When the model is ahead of us (its
                # answer already buffered), neither reading it nor sending to a client that has
                # gone ever suspends, so the client's leaving would be seen only after the
                # whole answer, and charged as used.
                await anyio.lowlevel.checkpoint()
            finished = True
        except ServingUnavailable as error:
            log.warning("metering.stream_broken", error=str(error))
            message = {"error": {"message": "the model stopped answering", "type": "server_error"}}
            yield b"data: " + orjson.dumps(message) + b"\n\n"
        finally:
            # The client may have left: this generator is being cancelled, and under anyio
            # every await here would be cancelled again. Closing the upstream (which stops the
            # model) and the settlement run shielded, for a bounded time.
            status = (
                "OK" if finished and used is not None else "FAILED" if finished else "CANCELLED"
            )
            with anyio.CancelScope(shield=True), anyio.move_on_after(FINISH_SECONDS):
                await upstream.aclose()
                await _finish(
                    request, resources, admission, used if status == "OK" else None, status,
                    streamed=True,
                )  # fmt: skip

    return SettledStream(
        relay(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


class SettledStream(StreamingResponse):
    """A stream whose relay is closed as soon as the response ends, however it ends. When the
    client leaves, Starlette cancels the sending; the relay, suspended at a ``yield``, would
    otherwise be closed (and its reservation released) only when it is garbage-collected."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            relay = self.body_iterator
            if isinstance(relay, AsyncGenerator):
                with anyio.CancelScope(shield=True):
                    await relay.aclose()


# A settlement that cannot be made leaves the reservation to its lease: never charged.
_NOT_SETTLED: tuple[type[BaseException], ...] = (DomainError, *UNREACHABLE)


async def _finish(
    request: Request,
    resources: Resources,
    admission: Admission,
    used: Cost | None,
    status: str,
    *,
    streamed: bool,
) -> None:
    """Settle (``used``) or release the reservation, in a short transaction under the caller's
    identity (shared with the calls of the same licensee that end meanwhile). The token is not
    checked again: the request was admitted, and what it used is charged even
    if the token expired or was revoked while the model worked. If the database cannot be
    reached the reservation stays until its lease runs out and is then released: a request that
    cannot be settled is never charged."""
    transaction = request_transaction(request)
    ending = Ending(admission, used, "OK" if used is not None else status, streamed)
    try:
        await resources.metering.settlements.finish(
            transaction.principal, transaction.request_id, transaction.timings, ending
        )
    except _NOT_SETTLED as error:
        log.warning(
            "metering.finish_failed",
            request=str(admission.request_id),
            status=status,
            error=str(error),
        )


def _usage(report: object, admission: Admission) -> Cost | None:
    """The tier's usage report as a cost (its images: those the request sent)."""
    if not isinstance(report, dict):
        return None
    prompt, completion = report.get("prompt_tokens"), report.get("completion_tokens")
    if type(prompt) is not int or type(completion) is not int or min(prompt, completion) < 0:
        return None
    if prompt > admission.reserved.input_tokens:
        log.warning(
            "metering.input_over_reservation",
            request=str(admission.request_id),
            reported=prompt,
            reserved=admission.reserved.input_tokens,
        )
    return Cost(prompt, completion, admission.reserved.images)


def _refused_by_model(error: ServingRefused) -> Response:
    detail = error.body
    with contextlib.suppress(orjson.JSONDecodeError, TypeError, AttributeError):
        parsed = orjson.loads(error.body)
        detail = (parsed.get("error") or {}).get("message") or parsed.get("detail") or detail
    status = error.status if 400 <= error.status < 500 and error.status != 404 else 502
    return openai_error(
        status,
        f"the model refused the request: {str(detail)[:300]}",
        "invalid_request_error" if status < 500 else "server_error",
    )


async def _client_left(request: Request) -> None:
    """Returns when the client disconnects (the body has been read: nothing else comes)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def metering_routes() -> list[Route]:
    return [
        protected(
            "/v1/models",
            list_models,
            methods=["GET"],
            refuse=refused_token,
            unavailable=unavailable,
        ),
        protected(
            "/v1/chat/completions",
            chat_completions,
            methods=["POST"],
            mode=TransactionMode.SHORT,
            refuse=refused_token,
            unavailable=unavailable,
        ),
    ]
