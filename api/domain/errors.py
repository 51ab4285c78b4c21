"""Expected failures, raised by services and repositories and returned to callers as typed errors."""

from __future__ import annotations

from collections.abc import Sequence


class DomainError(Exception):
    """Base of every expected failure. ``code`` is stable and machine-readable."""

    code = "DOMAIN_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    code = "NOT_FOUND"

    def __init__(self, entity: str, identifier: object) -> None:
        super().__init__(f"{entity} {identifier} does not exist or is not visible to you")
        self.entity = entity
        self.identifier = identifier


class InvalidInput(DomainError):
    code = "INVALID_INPUT"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


class TransitionRejected(DomainError):
    code = "TRANSITION_REJECTED"

    def __init__(self, status: str, action: str, allowed: Sequence[str], detail: str = "") -> None:
        text = f"cannot {action} an incident that is {status}"
        if detail:
            text += f": {detail}"
        super().__init__(text)
        self.status = status
        self.action = action
        self.allowed = list(allowed)


class VersionConflict(DomainError):
    code = "VERSION_CONFLICT"

    def __init__(self, entity: str, expected: int, current: int | None) -> None:
        super().__init__(
            f"{entity} changed since you read it (you sent version {expected}, it is now "
            f"{current}); reload it and try again"
        )
        self.expected = expected
        self.current = current


class IdempotencyKeyReused(DomainError):
    code = "IDEMPOTENCY_KEY_REUSED"

    def __init__(self, key: str) -> None:
        super().__init__(
            f"idempotency key {key!r} was already used for a different request; "
            "use a new key for a new request"
        )
        self.key = key


class Forbidden(DomainError):
    code = "FORBIDDEN"


class PersonalDataMasked(DomainError):
    """Personal data the caller may not see: the field is null and carries this error."""

    code = "PERSONAL_DATA_MASKED"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message or "personal data is shown only to the responsible bureau's staff with pii:read"
        )


class Unauthenticated(DomainError):
    code = "UNAUTHENTICATED"


class ServiceUnavailable(DomainError):
    """A dependency (the database) is briefly unable to serve; the caller may retry."""

    code = "SERVICE_UNAVAILABLE"


class TooBusy(DomainError):
    """The service is doing as much of this as it takes at once; retry after a moment."""

    code = "TOO_BUSY"

    def __init__(self, message: str, retry_after_seconds: int = 1) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class FrameRejected(DomainError):
    """An uploaded frame is not taken (too large, not an image, corrupt, a foreign camera...);
    ``reason`` is a stable code, the message says what to do."""

    code = "FRAME_REJECTED"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class TooLarge(DomainError):
    """A request, or a part of it (an image), is larger than the caller may send."""

    code = "TOO_LARGE"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
