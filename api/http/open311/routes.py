"""Open311 GeoReport v2 at ``/open311/v2``, in JSON and XML, for the 1999 hotline's and
citizens' apps.

Callers name themselves with the ``api_key`` the city issued their app (a query parameter, or
a form field of a POST), or with a bearer token as every other route takes; without either they
read the service list only. Each request runs in the one request transaction, under the
caller's identity, through the same read services, policies and audit record as the graph.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope

from api.access.scope import AccessScope, OperationDescription
from api.auth.principal import Principal
from api.auth.tokens import InvalidToken
from api.domain.errors import DomainError, Forbidden, IdempotencyKeyReused, NotFound
from api.domain.open311 import Service, ServiceRequest
from api.http.error_shape import ErrorShape
from api.http.open311 import params
from api.http.open311.formats import Format, Renderer, Value
from api.http.transaction import (
    RequestTransaction,
    authorization,
    protected,
    request_transaction,
)
from api.resources import Resources, resources_of
from api.services.open311 import Open311Desk

log = structlog.get_logger(__name__)

BASE = "/open311/v2"
KEY_NEEDED = (
    "send the api_key the city issued your app (or an access token) to read service requests"
)
# One answer for every api_key that does not stand: telling an unknown key from a revoked one
# would tell a holder that the key was once good (the log tells them apart).
KEY_REFUSED = "the api_key is not valid: send the key the city issued your app"
Handler = Callable[[Request, RequestTransaction, Renderer], Awaitable[Response]]


async def identify(scope: Scope, receive: Receive) -> tuple[Principal, Receive]:
    """A bearer token if the request has one; else the ``api_key`` of the query string or (a
    POST) of the form body, read here and replayed to the route; else anonymous."""
    resources: Resources = scope["state"]["resources"]
    header = authorization(scope)
    if header:
        return await resources.authenticator.verify(header), receive
    key = params.api_key(scope.get("query_string", b"").decode("latin-1"))
    if scope["method"] == "POST":
        body = await _body(receive)  # bounded by the body limit
        receive = _replaying(body, receive)
        if key is None and _is_form(scope):
            key = params.api_key(body.decode("utf-8", "replace"))
    if key is None:
        return Principal.anonymous(), receive
    try:
        return await resources.api_keys.principal(key), receive
    except InvalidToken as error:
        log.info("open311.api_key_refused", reason=error.reason)
        raise InvalidToken(KEY_REFUSED) from None


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _is_form(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            return bool(value.split(b";")[0].strip().lower() == params.FORM_TYPE.encode())
    return False


def _english(request: Request) -> bool:
    """Names in English when the caller prefers it (``Accept-Language: en…``); else Chinese."""
    first = request.headers.get("accept-language", "").split(",")[0].strip().lower()
    return first.startswith("en")


def _status(error: DomainError) -> int:
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, Forbidden):
        return 403
    if isinstance(error, IdempotencyKeyReused):
        # A changed request under a used key (draft-ietf-httpapi-idempotency-key-header).
        return 422
    return 400


def _desk(request: Request, access: AccessScope) -> Open311Desk:
    resources = resources_of(request)
    settings = resources.settings
    return Open311Desk(
        access,
        resources.calendar,
        settings.city.idempotency_key_ttl_hours,
        settings.city.timezone,
        str(request.base_url),
    )


def _query(request: Request) -> dict[str, str]:
    return params.parameters(request.url.query)


def _check_jurisdiction(request: Request, given: str | None) -> None:
    expected = resources_of(request).settings.city.jurisdiction
    if given is not None and given != expected:
        raise NotFound("jurisdiction_id", given)


def _error_shape(fmt: Format) -> ErrorShape:
    """The gateway's own refusals in Open311's ``errors`` (JSON or XML); a key or token that
    does not stand is 403, as GeoReport v2 answers an invalid ``api_key``."""

    def answer(status: int, code: str, message: str, details: dict[str, Any]) -> Response:
        return Renderer(fmt, ZoneInfo("UTC")).errors(status, message)

    return ErrorShape(f"open311-{fmt.value}", answer, unauthenticated_status=403)


def _route(path: str, handler: Handler, fmt: Format, name: str, method: str) -> Route:
    async def endpoint(request: Request) -> Response:
        zone = ZoneInfo(resources_of(request).settings.city.timezone)
        renderer = Renderer(fmt, zone)
        transaction = request_transaction(request)
        try:
            return await handler(request, transaction, renderer)
        except ClientDisconnect:
            return Response(status_code=400)

    route = protected(
        f"{BASE}/{path}.{fmt.value}",
        endpoint,
        methods=[method],
        errors=_error_shape(fmt),
        identify=identify,
        name=f"open311-{name}-{fmt.value}",
    )
    return route


async def _answer(
    transaction: RequestTransaction,
    renderer: Renderer,
    name: str,
    work: Callable[[AccessScope], Awaitable[Response]],
    *,
    needs_caller: bool = False,
) -> Response:
    """``work`` in the request's transaction, its audit record appended as it commits; an
    expected failure is answered in the specification's error format (and recorded)."""
    if needs_caller and not transaction.principal.is_authenticated:
        # Refused before any statement: an anonymous caller writes no audit record.
        return renderer.errors(403, KEY_NEEDED)
    access = transaction.access(
        lambda: OperationDescription(category="open311", name=name, kind="rest")
    )
    try:
        response = await work(access)
    except DomainError as error:
        access.audit.outcome = error.code
        await transaction.commit()
        return renderer.errors(_status(error), error.message)
    await transaction.commit()
    return response


def _service_row(service: Service) -> dict[str, Value]:
    return {
        "service_code": service.service_code,
        "service_name": service.service_name,
        "description": service.description,
        "metadata": service.metadata,
        "type": service.type,
        "keywords": ", ".join(service.keywords),
        "group": service.group,
    }


def _request_row(request: ServiceRequest) -> dict[str, Value]:
    return {
        "service_request_id": request.service_request_id,
        "status": request.status,
        "status_notes": request.status_notes,
        "service_name": request.service_name,
        "service_code": request.service_code,
        "description": request.description,
        "agency_responsible": request.agency_responsible,
        "service_notice": request.service_notice,
        "requested_datetime": request.requested_datetime,
        "updated_datetime": request.updated_datetime,
        "expected_datetime": request.expected_datetime,
        "address": request.address,
        "address_id": request.address_id,
        "zipcode": request.zipcode,
        "lat": request.lat,
        "long": request.long,
        "media_url": request.media_url,
    }


# --- handlers ---------------------------------------------------------------------------------


async def list_services(
    request: Request, transaction: RequestTransaction, renderer: Renderer
) -> Response:
    async def work(access: AccessScope) -> Response:
        _check_jurisdiction(request, _query(request).get("jurisdiction_id"))
        services = await _desk(request, access).services(_english(request))
        return renderer.listing("services", "service", [_service_row(s) for s in services])

    return await _answer(transaction, renderer, "GET /open311/v2/services", work)


async def service_definition(
    request: Request, transaction: RequestTransaction, renderer: Renderer
) -> Response:
    async def work(access: AccessScope) -> Response:
        _check_jurisdiction(request, _query(request).get("jurisdiction_id"))
        code = params.checked("service_code", request.path_params["code"])
        service = await _desk(request, access).service(code, _english(request))
        # No service asks for attributes beyond the specification's own fields.
        return renderer.document(
            "service_definition", {"service_code": service.service_code, "attributes": []}
        )

    return await _answer(transaction, renderer, "GET /open311/v2/services/{code}", work)


async def list_requests(
    request: Request, transaction: RequestTransaction, renderer: Renderer
) -> Response:
    async def work(access: AccessScope) -> Response:
        query = _query(request)
        _check_jurisdiction(request, query.get("jurisdiction_id"))
        found = await _desk(request, access).requests(
            params.request_query(query), _english(request)
        )
        return renderer.listing("service_requests", "request", [_request_row(r) for r in found])

    return await _answer(transaction, renderer, "GET /open311/v2/requests", work, needs_caller=True)


async def one_request(
    request: Request, transaction: RequestTransaction, renderer: Renderer
) -> Response:
    async def work(access: AccessScope) -> Response:
        _check_jurisdiction(request, _query(request).get("jurisdiction_id"))
        request_id = params.checked("service_request_id", request.path_params["id"])
        found = await _desk(request, access).request(request_id, _english(request))
        return renderer.listing("service_requests", "request", [_request_row(found)])

    return await _answer(
        transaction, renderer, "GET /open311/v2/requests/{id}", work, needs_caller=True
    )


async def token(request: Request, transaction: RequestTransaction, renderer: Renderer) -> Response:
    async def work(access: AccessScope) -> Response:
        _check_jurisdiction(request, _query(request).get("jurisdiction_id"))
        given = params.checked("token", request.path_params["token"])
        request_id, value = await _desk(request, access).token(given)
        return renderer.listing(
            "service_requests", "request", [{"service_request_id": request_id, "token": value}]
        )

    return await _answer(
        transaction, renderer, "GET /open311/v2/tokens/{token}", work, needs_caller=True
    )


async def submit(request: Request, transaction: RequestTransaction, renderer: Renderer) -> Response:
    if not transaction.principal.is_authenticated:
        return renderer.errors(
            403, "submitting a service request needs the api_key the city issued"
        )
    if not _is_form(request.scope):
        return renderer.errors(400, f"send the parameters as {params.FORM_TYPE}")
    body = (await request.body()).decode("utf-8", "replace")
    created = False

    async def work(access: AccessScope) -> Response:
        nonlocal created
        form = params.parameters(body)
        _check_jurisdiction(request, form.get("jurisdiction_id"))
        submission = params.submission(form)
        key = params.idempotency_key(request.headers.get("idempotency-key"))
        # Every parameter the request sent is part of what a retry must send again; the key
        # it was sent with is not (the caller's identity is, as the idempotency key's subject).
        sent = {name: value for name, value in form.items() if name != "api_key"}
        request_id, token_value, notice, replayed = await _desk(request, access).submit(
            submission, sent, key, _english(request)
        )
        created = not replayed
        row: dict[str, Value] = {
            "service_request_id": request_id,
            "token": token_value,
            "service_notice": notice,
            "account_id": submission.account_id,
        }
        return renderer.listing("service_requests", "request", [row], 200 if replayed else 201)

    response = await _answer(transaction, renderer, "POST /open311/v2/requests", work)
    if created:
        log.info("open311.request_submitted", subject=transaction.principal.subject)
    return response


def open311_routes() -> list[Route]:
    routes = []
    for fmt in Format:
        routes += [
            _route("services", list_services, fmt, "services", "GET"),
            _route("services/{code}", service_definition, fmt, "service", "GET"),
            _route("requests", list_requests, fmt, "requests", "GET"),
            _route("requests", submit, fmt, "submit", "POST"),
            _route("requests/{id}", one_request, fmt, "request", "GET"),
            _route("tokens/{token}", token, fmt, "token", "GET"),
        ]
    return routes
