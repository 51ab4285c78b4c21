"""Expected failures in the schema: typed error objects for mutations, coded errors for queries.

Mutations return a union of their success type and the error types below (the caller switches
on ``__typename``). Queries raise ``GraphQLError`` with ``extensions.code`` set; everything
unexpected is masked by ``ErrorPolicyExtension``.
"""

from __future__ import annotations

import strawberry
from graphql import GraphQLError

from api.domain import errors as domain


@strawberry.interface(description="An expected failure: nothing was changed.")
class Error:
    message: str
    code: str


@strawberry.federation.type(shareable=True)
class NotFound(Error):
    entity: str


@strawberry.federation.type(shareable=True)
class InvalidInput(Error):
    field: str


@strawberry.federation.type(shareable=True)
class TransitionRejected(Error):
    status: str
    action: str
    allowed_actions: list[str]


@strawberry.federation.type(shareable=True)
class VersionConflict(Error):
    expected_version: int
    current_version: int | None


@strawberry.federation.type(shareable=True)
class IdempotencyKeyReused(Error):
    idempotency_key: str


@strawberry.federation.type(shareable=True)
class Forbidden(Error):
    pass


@strawberry.federation.type(
    shareable=True, description="A dependency cannot serve now (the serving tier); retry later."
)
class ServiceUnavailable(Error):
    pass


@strawberry.federation.type(
    shareable=True, description="As much of this is under way as the service takes at once."
)
class TooBusy(Error):
    retry_after_seconds: int


@strawberry.federation.type(
    shareable=True, description="An uploaded image was not taken; nothing was stored."
)
class FrameRejected(Error):
    reason: str = strawberry.field(
        description="EMPTY, TOO_LARGE, NOT_AN_IMAGE, CORRUPT or SENT_ELSEWHERE: what to fix before sending again."
    )


ErrorType = (
    NotFound
    | InvalidInput
    | TransitionRejected
    | VersionConflict
    | IdempotencyKeyReused
    | Forbidden
    | FrameRejected
    | ServiceUnavailable
    | TooBusy
)


def to_graphql(error: domain.DomainError) -> ErrorType:
    """The schema's error object for a domain error."""
    message, code = error.message, error.code
    match error:
        case domain.NotFound():
            return NotFound(message=message, code=code, entity=error.entity)
        case domain.InvalidInput():
            return InvalidInput(message=message, code=code, field=error.field)
        case domain.TransitionRejected():
            return TransitionRejected(
                message=message,
                code=code,
                status=error.status,
                action=error.action,
                allowed_actions=error.allowed,
            )
        case domain.VersionConflict():
            return VersionConflict(
                message=message,
                code=code,
                expected_version=error.expected,
                current_version=error.current,
            )
        case domain.IdempotencyKeyReused():
            return IdempotencyKeyReused(message=message, code=code, idempotency_key=error.key)
        case domain.Forbidden():
            return Forbidden(message=message, code=code)
        case domain.FrameRejected():
            return FrameRejected(message=message, code=code, reason=error.reason)
        case domain.ServiceUnavailable():
            return ServiceUnavailable(message=message, code=code)
        case domain.TooBusy():
            return TooBusy(
                message=message, code=code, retry_after_seconds=error.retry_after_seconds
            )
    raise error


def query_error(error: domain.DomainError) -> GraphQLError:
    """A coded GraphQL error for a query that cannot be answered as asked."""
    extensions: dict[str, object] = {"code": error.code}
    if isinstance(error, domain.InvalidInput):
        extensions["field"] = error.field
    return GraphQLError(error.message, extensions=extensions, original_error=error)
