"""Translation of PostgreSQL errors (by SQLSTATE class) into domain errors at the repository edge."""

from __future__ import annotations

import asyncpg

from api.domain.errors import (
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
    ServiceUnavailable,
)


def translate(error: asyncpg.PostgresError) -> DomainError | None:
    """The domain error a database error stands for, or None when it is a programming error."""
    state = getattr(error, "sqlstate", "") or ""
    detail = getattr(error, "detail", None) or ""
    constraint = getattr(error, "constraint_name", None) or ""
    if state == "23503":  # foreign_key_violation
        return NotFound("referenced record", constraint or detail)
    if state == "23514":  # check_violation
        return InvalidInput(constraint or "input", "violates a rule of the data model")
    if state == "22P02" or state.startswith("22"):  # data exceptions: bad number, bad text…
        return InvalidInput("input", str(error))
    if state == "42501":  # insufficient_privilege (row-level security, grants)
        return Forbidden("not permitted by the database's access rules")
    if state in {"40001", "40P01", "55P03", "57014", "53300"}:
        # serialization failure, deadlock, lock not available, statement timeout, too many conns
        return ServiceUnavailable("the database is busy; retry the request")
    return None


def is_unique_violation(error: BaseException, constraint: str | None = None) -> bool:
    if not isinstance(error, asyncpg.UniqueViolationError):
        return False
    return constraint is None or getattr(error, "constraint_name", None) == constraint
