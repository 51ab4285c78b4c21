"""Metered inference for licensees, as the OpenAI API: ``GET /v1/models`` and
``POST /v1/chat/completions`` (plain and streamed), called with the standard OpenAI SDK.

A chat request runs in three steps, none of which holds a database connection while the model
works: admission (a short transaction: the licence chosen and checked, the largest cost
reserved, audited), the call to the serving tier, and its one ending (``MeteredCall``): the
settlement (a short transaction: the real use charged from the tier's usage report, or for a
stream left or broken off midway what it delivered, ``services.metering.streams``; the usage
record and the audit record written together) or the release (nothing charged) when the call
failed at any step, or its client left, before a token of the answer was delivered. Calls of
one licensee admitted or ending at the same moment share those transactions
(``services.metering.admissions`` and ``.settlements``), each with its own audit record. Errors
take OpenAI's shape (``{"error": {message, type, param, code}}``) and status codes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

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
from api.domain.licensing import QuotaExceeded
from api.http.error_shape import ErrorShape
from api.http.transaction import TransactionMode, protected, request_transaction
from api.inference.client import ServingClient, ServingRefused, ServingStream, ServingUnavailable
from api.resources import resources_of
from api.services.metering import chat
from api.services.metering.calls import MeteredCall, reported_use
from api.services.metering.streams import StreamBroken, StreamTally

log = structlog.get_logger(__name__)

OWNER = "city"  # ``owned_by`` of every model listed
# How long closing the tier's stream may take once its client has gone.
CLOSE_SECONDS = 5
T = TypeVar("T")


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


# The gateway's own refusals in OpenAI's words: each status's error type and code.
_REFUSALS = {
    401: ("invalid_request_error", "invalid_api_key"),
    408: ("invalid_request_error", "request_timeout"),
    413: ("invalid_request_error", "too_large"),
    429: ("rate_limit_exceeded", "rate_limited"),
    500: ("server_error", "internal_error"),
    503: ("server_error", "service_unavailable"),
}


def _refusal(status: int, code: str, message: str, details: dict[str, Any]) -> Response:
    kind, openai_code = _REFUSALS.get(status, ("invalid_request_error", code.lower()))
    if status == 401:
        message = (
            f"{message}. Send an access token of the city's authorization server as the API "
            "key (client credentials at /oauth/token)."
        )
    return openai_error(status, message, kind, code=openai_code)


# Every /v1 route's refusals before it runs (and the token checks of streamed answers).
OPENAI_ERRORS = ErrorShape("openai", _refusal)


def refused_token(reason: str) -> Response:
    """No token, or one that does not stand: 401 as OpenAI answers a bad API key."""
    return OPENAI_ERRORS.unauthenticated(reason)


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
    return OPENAI_ERRORS.unavailable(message)


def _describe(name: str) -> Callable[[], OperationDescription]:
    description = OperationDescription(category="inference", name=name, kind="rest")
    return lambda: description


async def list_models(request: Request) -> Response:
    listed = await _usable_models(request, "GET /v1/models")
    if isinstance(listed, Response):
        return listed
    return Response(orjson.dumps({"object": "list", "data": listed}), media_type="application/json")


async def retrieve_model(request: Request) -> Response:
    """``GET /v1/models/{model}`` (the SDK's ``models.retrieve``): one model the caller's usable
    licences cover, or OpenAI's 404 ``model_not_found``."""
    wanted = request.path_params["model"]
    listed = await _usable_models(request, "GET /v1/models/{model}")
    if isinstance(listed, Response):
        return listed
    for model in listed:
        if model["id"] == wanted:
            return Response(orjson.dumps(model), media_type="application/json")
    return openai_error(
        404,
        f"The model {wanted!r} does not exist or no licence of yours covers it "
        "(GET /v1/models lists yours).",
        "invalid_request_error",
        code="model_not_found",
        param="model",
    )


async def _usable_models(request: Request, operation: str) -> list[dict[str, object]] | Response:
    """The models of the caller's usable licences, as OpenAI lists models; or the refusal."""
    transaction = request_transaction(request)
    if not transaction.principal.is_authenticated:
        return refused_token("no access token")
    resources = resources_of(request)
    access = transaction.access(_describe(operation))
    licences = await resources.metering.meter.licences(access)
    await transaction.commit()
    models: dict[str, int] = {}
    for licence in licences:
        for model in licence.models:
            models.setdefault(model, int(licence.created_at.timestamp()))
    return [
        {"id": model, "object": "model", "created": created, "owned_by": OWNER}
        for model, created in sorted(models.items())
    ]


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
    except QuotaExceeded as error:
        resources.metrics.quota_refusals.labels(error.refusal.lower()).inc()
        return domain_error(error)
    except DomainError as error:
        return domain_error(error)
    except UNREACHABLE as error:
        log.warning("metering.admission_failed", error=str(error))
        return unavailable(
            "the licences' ledger cannot be reached now; nothing was reserved or charged"
        )
    call = MeteredCall(
        resources.metering.settlements,
        transaction.principal,
        transaction.request_id,
        transaction.timings,
        admission,
        streamed=parsed.stream,
    )
    serving = resources.vision.serving
    response: Response | None = None
    try:
        body = chat.forwarded(parsed, admission.max_tokens)
        if parsed.stream:
            response = await _stream(request, call, serving, body, parsed.include_usage)
        else:
            response = await _answer(request, call, serving, body)
    except Exception:
        # Whatever failed on the gateway's side once the call was admitted (its body not
        # encodable, an answer not readable…): released, and said in OpenAI's shape.
        log.exception("metering.call_failed", request=str(admission.request_id))
        await call.end(None, "FAILED")
        response = openai_error(
            500,
            "the call failed on the city's side after it was admitted; nothing was charged",
            "server_error",
            code="internal_error",
        )
    finally:
        if not isinstance(response, SettledStream):
            # Ended above, or by an answer, or by a cancellation: never left to the lease. A
            # stream is ended by its relay (or by SettledStream if it never started).
            await call.end(None, "CANCELLED")
    return response


async def _answer(
    request: Request, call: MeteredCall, serving: ServingClient, body: dict[str, Any]
) -> Response:
    """Ask the model and answer at once; a client that leaves first is charged nothing."""
    try:
        answer = await _unless_client_leaves(request, serving.chat(body))
    except ServingUnavailable as error:
        await call.end(None, "FAILED")
        return unavailable(f"the model is not available now: {error}")
    except ServingRefused as error:
        await call.end(None, "FAILED")
        return _refused_by_model(error)
    if answer is None:
        await call.end(None, "CANCELLED")
        return Response(status_code=499)
    used = reported_use(answer.get("usage"), call.admission)
    if used is None:
        await call.end(None, "FAILED")
        return unavailable("the model answered without a usage report; nothing was charged")
    await call.end(used, "OK")
    return Response(orjson.dumps(answer), media_type="application/json")


async def _stream(
    request: Request,
    call: MeteredCall,
    serving: ServingClient,
    body: dict[str, Any],
    include_usage: bool,
) -> Response:
    try:
        upstream = await _unless_client_leaves(request, serving.open_stream(body))
    except ServingUnavailable as error:
        await call.end(None, "FAILED")
        return unavailable(f"the model is not available now: {error}")
    except ServingRefused as error:
        await call.end(None, "FAILED")
        return _refused_by_model(error)
    if upstream is None:
        await call.end(None, "CANCELLED")
        return Response(status_code=499)
    tally = StreamTally(call.admission, usage_for_caller=include_usage)

    async def relay() -> AsyncIterator[bytes]:
        ended = "CANCELLED"  # unless it reaches its end or breaks: its client left
        try:
            async for line in upstream.lines():
                chunk = tally.relay(line)
                if chunk is not None:
                    yield chunk
                    tally.sent()
                # Let the event loop run between chunks. When the model is ahead of us (its
                # answer already buffered), neither reading it nor sending to a client that has
                # gone ever suspends, so the client's leaving would be seen only after the
                # whole answer.
                await anyio.lowlevel.checkpoint()
            ended = "OK"
        except Exception as error:  # not the client's leaving: that is a BaseException
            ended = "FAILED"
            if isinstance(error, ServingUnavailable | StreamBroken):
                log.warning("metering.stream_broken", error=str(error))
            else:
                log.exception("metering.stream_failed", request=str(call.admission.request_id))
            message = {"error": {"message": "the model stopped answering", "type": "server_error"}}
            yield b"data: " + orjson.dumps(message) + b"\n\n"
        finally:
            # The client may have left: this generator is being cancelled, and under anyio
            # every await here would be cancelled again. Closing the upstream (which stops the
            # model) runs shielded, as does the ending (MeteredCall.end).
            with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_SECONDS):
                await upstream.aclose()
            await call.end(tally.charge(), ended)

    return SettledStream(
        relay(),
        call,
        upstream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


class SettledStream(StreamingResponse):
    """A stream whose relay is closed as soon as the response ends, however it ends. When the
    client leaves, Starlette cancels the sending; the relay, suspended at a ``yield``, would
    otherwise be closed (and its call ended) only when it is garbage-collected. A relay that
    never started (the client left before the first byte) runs none of its own ending: the
    tier's stream is closed and the call ended here."""

    def __init__(
        self,
        relay: AsyncIterator[bytes],
        call: MeteredCall,
        upstream: ServingStream,
        **options: Any,
    ) -> None:
        super().__init__(relay, **options)
        self._call = call
        self._upstream = upstream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            relay = self.body_iterator
            with anyio.CancelScope(shield=True):
                if isinstance(relay, AsyncGenerator):
                    await relay.aclose()
                with anyio.move_on_after(CLOSE_SECONDS):
                    await self._upstream.aclose()
                await self._call.end(None, "CANCELLED")


async def _unless_client_leaves(request: Request, work: Awaitable[T]) -> T | None:
    """``work``'s result, or None if the client disconnected first (``work`` is cancelled)."""
    task = asyncio.ensure_future(work)
    left = asyncio.ensure_future(_client_left(request))
    try:
        await asyncio.wait({task, left}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        left.cancel()
        if not task.done():
            task.cancel()
    if not task.done() or task.cancelled():
        return None
    return task.result()


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
            errors=OPENAI_ERRORS,
        ),
        protected(
            "/v1/models/{model:path}",
            retrieve_model,
            methods=["GET"],
            errors=OPENAI_ERRORS,
        ),
        protected(
            "/v1/chat/completions",
            chat_completions,
            methods=["POST"],
            mode=TransactionMode.SHORT,
            errors=OPENAI_ERRORS,
        ),
    ]
