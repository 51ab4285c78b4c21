"""The incident lifecycle as a pure state machine.

``DETECTED → VERIFIED (通報) → DISPATCHED (派工) → IN_PROGRESS → RESOLVED → CLOSED (結案)``

Every workflow action is checked here before anything is written; the result says what the
incident becomes. The table below is the whole rule set: an action not listed for a status is
forbidden in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from api.domain.errors import TransitionRejected


class IncidentStatus(StrEnum):
    DETECTED = "DETECTED"
    VERIFIED = "VERIFIED"
    DISPATCHED = "DISPATCHED"
    IN_PROGRESS = "IN_PROGRESS"
    RESOLVED = "RESOLVED"
    CLOSED = "CLOSED"


class StatusClass(StrEnum):
    """How a status maps onto Open311's ``open``/``closed`` (``fixed`` reports as closed)."""

    OPEN = "OPEN"
    FIXED = "FIXED"
    CLOSED = "CLOSED"


class ClosingReason(StrEnum):
    FIXED = "FIXED"
    FALSE_POSITIVE = "FALSE_POSITIVE"
    DUPLICATE = "DUPLICATE"
    NOT_RESPONSIBLE = "NOT_RESPONSIBLE"
    TRANSFERRED = "TRANSFERRED"


class IncidentAction(StrEnum):
    VERIFY = "VERIFY"
    DISPATCH = "DISPATCH"
    START_WORK = "START_WORK"
    RESOLVE = "RESOLVE"
    REOPEN = "REOPEN"
    CLOSE = "CLOSE"
    TRANSFER = "TRANSFER"
    MARK_DUPLICATE = "MARK_DUPLICATE"


class IncidentSource(StrEnum):
    VLM = "VLM"
    CITIZEN_1999 = "CITIZEN_1999"
    STAFF = "STAFF"
    SENSOR = "SENSOR"


class WorkOrderStatus(StrEnum):
    OPEN = "OPEN"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"


ACTIVE_WORK_ORDERS = (WorkOrderStatus.OPEN, WorkOrderStatus.IN_PROGRESS)

S = IncidentStatus
A = IncidentAction

# Machine findings wait for a person to verify them; a person's report is verified on arrival.
INITIAL_STATUS: dict[IncidentSource, IncidentStatus] = {
    IncidentSource.VLM: S.DETECTED,
    IncidentSource.SENSOR: S.DETECTED,
    IncidentSource.CITIZEN_1999: S.VERIFIED,
    IncidentSource.STAFF: S.VERIFIED,
}
R = ClosingReason

STATUS_CLASS: dict[IncidentStatus, StatusClass] = {
    S.DETECTED: StatusClass.OPEN,
    S.VERIFIED: StatusClass.OPEN,
    S.DISPATCHED: StatusClass.OPEN,
    S.IN_PROGRESS: StatusClass.OPEN,
    S.RESOLVED: StatusClass.FIXED,
    S.CLOSED: StatusClass.CLOSED,
}

# status → action → the status it leads to
TRANSITIONS: dict[IncidentStatus, dict[IncidentAction, IncidentStatus]] = {
    S.DETECTED: {
        A.VERIFY: S.VERIFIED,
        A.CLOSE: S.CLOSED,
        A.TRANSFER: S.DETECTED,
        A.MARK_DUPLICATE: S.CLOSED,
    },
    S.VERIFIED: {
        A.DISPATCH: S.DISPATCHED,
        A.CLOSE: S.CLOSED,
        A.TRANSFER: S.VERIFIED,
        A.MARK_DUPLICATE: S.CLOSED,
    },
    S.DISPATCHED: {
        A.START_WORK: S.IN_PROGRESS,
        A.CLOSE: S.CLOSED,
        A.TRANSFER: S.VERIFIED,
        A.MARK_DUPLICATE: S.CLOSED,
    },
    S.IN_PROGRESS: {
        A.RESOLVE: S.RESOLVED,
    },
    S.RESOLVED: {
        A.CLOSE: S.CLOSED,
        A.REOPEN: S.IN_PROGRESS,
    },
    S.CLOSED: {},
}

# Which closing reasons each status admits (CLOSE only; MARK_DUPLICATE implies DUPLICATE).
CLOSING_REASONS: dict[IncidentStatus, frozenset[ClosingReason]] = {
    S.DETECTED: frozenset({R.FALSE_POSITIVE, R.NOT_RESPONSIBLE, R.TRANSFERRED}),
    S.VERIFIED: frozenset({R.FALSE_POSITIVE, R.NOT_RESPONSIBLE, R.TRANSFERRED}),
    S.DISPATCHED: frozenset({R.FALSE_POSITIVE, R.NOT_RESPONSIBLE, R.TRANSFERRED}),
    S.IN_PROGRESS: frozenset(),
    S.RESOLVED: frozenset({R.FIXED}),
    S.CLOSED: frozenset(),
}


@dataclass(frozen=True, slots=True)
class Transition:
    action: IncidentAction
    from_status: IncidentStatus
    to_status: IncidentStatus
    closing_reason: ClosingReason | None


def allowed_actions(status: IncidentStatus) -> list[IncidentAction]:
    return list(TRANSITIONS[status])


def plan(
    status: IncidentStatus,
    action: IncidentAction,
    closing_reason: ClosingReason | None = None,
) -> Transition:
    """Check ``action`` against ``status``; return the transition or raise TransitionRejected."""
    allowed = TRANSITIONS[status]
    if action not in allowed:
        raise TransitionRejected(status, action, [a.value for a in allowed])
    if action is A.MARK_DUPLICATE:
        closing_reason = R.DUPLICATE
    elif action is A.CLOSE:
        admitted = CLOSING_REASONS[status]
        if closing_reason is None or closing_reason not in admitted:
            reasons = ", ".join(sorted(admitted)) or "none"
            detail = f"closing reason {closing_reason} is not admitted here (admitted: {reasons})"
            if closing_reason is R.DUPLICATE:
                detail += "; use markDuplicate to close a duplicate"
            raise TransitionRejected(status, action, [a.value for a in allowed], detail)
    elif closing_reason is not None:
        raise TransitionRejected(
            status, action, [a.value for a in allowed], "only CLOSE takes a closing reason"
        )
    return Transition(action, status, allowed[action], closing_reason)
