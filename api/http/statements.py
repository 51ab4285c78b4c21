"""A licence's monthly (or daily) statement for the licensee itself, as CSV:

    GET /v1/usage/statement?licence=LIC-2027-0001&period=2027-03

the same document ``lighthouse licensing statement`` writes (``api.services.metering.statements``):
a line per request charged to the period and a total line, whose totals agree with the quota
ledger to the unit. A licensee's client gets its own company's licences (``usage:read`` or
``inference:invoke``), the city's officers and usage readers any; every statement handed out is
audited. Refusals take OpenAI's error shape, as the rest of ``/v1``: 400 for a missing or
misshapen parameter, 401 without a valid token, 403 when the policies refuse, 404 for a licence
the caller cannot see (whether or not it exists).
"""

from __future__ import annotations

from collections.abc import Callable
from zoneinfo import ZoneInfo

import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.access.scope import OperationDescription
from api.domain.errors import DomainError, InvalidInput
from api.http.openai import OPENAI_ERRORS, domain_error, openai_error, refused_token
from api.http.transaction import protected, request_transaction
from api.resources import resources_of
from api.services.metering import statements

log = structlog.get_logger(__name__)
PATH = "/v1/usage/statement"
MAX_PARAMETER = 100  # a licence code is at most 63 characters, a period 10


def _describe() -> Callable[[], OperationDescription]:
    description = OperationDescription(category="usage", name=f"GET {PATH}", kind="rest")
    return lambda: description


def _parameter(request: Request, name: str, example: str) -> str:
    values = request.query_params.getlist(name)
    if len(values) != 1 or not values[0].strip():
        raise InvalidInput(name, f"give it once, e.g. {name}={example}")
    if len(values[0]) > MAX_PARAMETER:
        raise InvalidInput(name, f"at most {MAX_PARAMETER} characters")
    return values[0].strip()


async def get_statement(request: Request) -> Response:
    transaction = request_transaction(request)
    if not transaction.principal.is_authenticated:
        return refused_token("no access token")
    zone = resources_of(request).settings.city.timezone
    access = transaction.access(_describe())
    try:
        code = _parameter(request, "licence", "LIC-2027-0001")
        period = _parameter(request, "period", "2027-03")
        built = await statements.statement(access, code, period, zone)
    except DomainError as error:
        access.audit.outcome = error.code
        await transaction.commit()  # the refusal is on the record too
        return domain_error(error)
    if not built.agrees:
        # Never hand out a bill the ledger contradicts; the officers' CLI says the same.
        access.audit.outcome = "STATEMENT_DISAGREES"
        await transaction.commit()
        log.error(
            "statement disagrees with the quota ledger",
            licence=built.licence.code, period=period, records=built.totals, ledger=built.ledger,
        )  # fmt: skip
        return openai_error(
            500,
            f"the usage records of {built.licence.code} for {period} do not agree with the quota "
            "ledger; the city's licensing office has to look into it before a statement goes out",
            "server_error",
            code="statement_disagrees",
        )
    await transaction.commit()
    filename = f"{built.licence.code}-{period}.csv"
    return Response(
        built.csv(ZoneInfo(zone)),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


def statement_routes() -> list[Route]:
    return [protected(PATH, get_statement, methods=["GET"], errors=OPENAI_ERRORS)]
