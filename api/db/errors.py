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

# Data exceptions that a caller's value causes (a bad number, text too long, a date out of
# range); others of class 22 (a division by zero) are the code's, not the caller's.
CALLERS_DATA = {
    "22P02": "is not a value of the expected type",  # invalid_text_representation
    "22001": "is too long",  # string_data_right_truncation
    "22003": "is out of range",  # numeric_value_out_of_range
    "22007": "is not a valid date or time",  # invalid_datetime_format
    "22008": "is out of the range of dates",  # datetime_field_overflow
    "22023": "is not a valid value",  # invalid_parameter_value
}


# The database could not be reached or a connection broke under a statement: the server refused
# or dropped it (PostgresError), the socket failed (OSError, timeouts included), or asyncpg's
# client found the connection in a state it cannot use (a backend terminated mid-exchange
# surfaces as InternalClientError "cannot switch to state …"). Nothing was done; retry later.
UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


def translate(error: asyncpg.PostgresError) -> DomainError | None:
    """The domain error a database error stands for, or None when it is a programming error.
    The server's own words never reach the caller: they may name tables and constraints."""
    state = getattr(error, "sqlstate", "") or ""
    constraint = getattr(error, "constraint_name", None) or ""
    if state == "23503":  # foreign_key_violation: "asset_bureau_id_fkey" names the bureau
        return NotFound(_referenced(constraint), "(the one given)")
    if state == "23514":  # check_violation
        return InvalidInput(constraint or "input", "violates a rule of the data model")
    if state in CALLERS_DATA:
        return InvalidInput("input", CALLERS_DATA[state])
    if state == "42501":  # insufficient_privilege (row-level security, grants)
        return Forbidden("not permitted by the database's access rules")
    if state in {"40001", "40P01", "55P03", "57014", "53300"}:
        # serialization failure, deadlock, lock not available, statement timeout, too many conns
        return ServiceUnavailable("the database is busy; retry the request")
    return None


def _referenced(constraint: str) -> str:
    """The entity a foreign key points at, from its name (``<table>_<entity>_id_fkey``)."""
    if constraint.endswith("_id_fkey"):
        words = constraint.removesuffix("_id_fkey").split("_")
        return words[-1] if words else "referenced record"
    return "referenced record"


def is_unique_violation(error: BaseException, constraint: str | None = None) -> bool:
    if not isinstance(error, asyncpg.UniqueViolationError):
        return False
    return constraint is None or getattr(error, "constraint_name", None) == constraint
