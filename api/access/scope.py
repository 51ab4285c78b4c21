"""One operation's access: who, in which transaction, decided by which policies, recorded how.

Every way in — a GraphQL operation, a subscription event, a REST call — runs in an
``AccessScope``. Read services and workflows authorise through it and note in it what they
return; when the operation ends its audit record is appended in the same transaction, so the
record and the access it describes commit, or vanish, together.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from api.audit.collector import AuditCollector
from api.audit.entries import AuditEntry
from api.auth.authenticate import Authenticator
from api.auth.principal import Principal
from api.db.database import Database
from api.db.unit_of_work import UnitOfWork
from api.policy.authorizer import Authorizer
from api.policy.engine import Entity, PolicyEngine
from api.repositories.audit import AuditRepository
from api.timing import Timings


@dataclass(frozen=True, slots=True)
class OperationDescription:
    """What an operation was, for its audit record and its metrics."""

    category: str
    name: str
    kind: str
    document: str | None = None
    variables: dict[str, object] | None = None


class AccessScope:
    """The caller, the unit of work it acts in, its authorizer and what it saw."""

    __slots__ = ("audit", "authorizer", "principal", "request_id", "timings", "uow")

    def __init__(
        self,
        principal: Principal,
        request_id: str,
        uow: UnitOfWork,
        policy: PolicyEngine,
        timings: Timings | None = None,
        audit: AuditCollector | None = None,
    ) -> None:
        self.principal = principal
        self.request_id = request_id
        self.uow = uow
        self.timings = timings or Timings()
        self.audit = audit if audit is not None else AuditCollector()
        self.authorizer = Authorizer(policy, principal, self.audit, self.timings)

    def authorize(self, action: str, resource: Entity) -> None:
        """Raise Forbidden unless the policies let the caller take ``action`` on ``resource``."""
        self.authorizer.require(action, resource)

    def audit_entry(self, operation: OperationDescription) -> AuditEntry:
        audit = self.audit
        details: dict[str, object] = {"type": operation.kind}
        if operation.variables:
            # Variables are redacted: their names are kept, never their values.
            details["variables"] = sorted(operation.variables)
        if audit.personal_data:
            details["personal_data"] = sorted(audit.personal_data)
        if audit.notes:
            details["notes"] = audit.notes
        if audit.outcome is not None:
            details["outcome"] = audit.outcome
        if audit.refusal is not None:
            details["refused"] = audit.refusal
        document_hash = (
            hashlib.sha256(operation.document.encode()).hexdigest() if operation.document else None
        )
        return AuditEntry.of(
            self.principal,
            request_id=self.request_id,
            category=operation.category,
            operation=operation.name,
            decision=audit.decision,
            policy_version=self.authorizer.policy_version,
            resource_ids=audit.resources | audit.personal_data | audit.targets,
            policy_ids=audit.policy_ids,
            personal_data=bool(audit.personal_data),
            document_hash=document_hash,
            details=details,
        )

    async def record(self, operation: OperationDescription) -> None:
        """Append the operation's audit record to its transaction (unless it stayed silent)."""
        if self.audit.silent:
            return
        with self.timings.measure("audit"):
            await AuditRepository(self.uow).append(self.audit_entry(operation))


async def record_together(scopes: Sequence[AccessScope], operation: OperationDescription) -> None:
    """``AccessScope.record`` for scopes sharing one transaction, their records appended in one
    round trip (a group of admissions: the chain's head is held once for all of them)."""
    entries = [scope.audit_entry(operation) for scope in scopes if not scope.audit.silent]
    if entries:
        with scopes[0].timings.measure("audit"):
            await AuditRepository(scopes[0].uow).append_many(entries)


class AccessGate:
    """Opens access scopes on the database under a caller's identity, and records refusals."""

    def __init__(
        self,
        database: Database,
        policy: PolicyEngine,
        authenticator: Authenticator | None = None,
    ) -> None:
        """``authenticator`` re-checks callers' tokens; a process with no callers (the vision
        worker acts as itself) has none."""
        self.database = database
        self.policy = policy
        self._authenticator = authenticator

    @property
    def authenticator(self) -> Authenticator:
        if self._authenticator is None:
            raise RuntimeError("this gate has no callers whose tokens it could check")
        return self._authenticator

    def unit_of_work(self, principal: Principal, operation: Callable[[], str]) -> UnitOfWork:
        return self.database.unit_of_work(principal.database_settings(), operation)

    def over(
        self,
        principal: Principal,
        request_id: str,
        uow: UnitOfWork,
        timings: Timings,
        audit: AuditCollector | None = None,
    ) -> AccessScope:
        """A scope over a transaction someone else owns (a request's); ``audit``: what the
        request gathered in its transaction before this one, to record with this one's."""
        return AccessScope(principal, request_id, uow, self.policy, timings, audit)

    @asynccontextmanager
    async def transaction(
        self,
        principal: Principal,
        request_id: str,
        describe: Callable[[], OperationDescription],
        *,
        timings: Timings | None = None,
        check_token: bool = False,
    ) -> AsyncIterator[AccessScope]:
        """A short transaction of its own under the caller's identity: the body runs in it,
        its audit record is appended, and it commits (or rolls back if the body raises).

        ``check_token`` re-checks the caller's token as it opens (``InvalidToken`` if it no
        longer stands): a subscription event or the later steps of a long request outlive
        the moment the token was first checked. Otherwise it opens on its first statement.
        """
        uow = self.unit_of_work(principal, lambda: describe().name)
        if check_token:
            await self.authenticator.check(uow, principal)
        scope = AccessScope(principal, request_id, uow, self.policy, timings)
        async with uow:
            yield scope
            await scope.record(describe())

    async def append(self, entry: AuditEntry) -> None:
        """Append a record no operation's transaction carries (a refusal, the token endpoint),
        in a transaction of its own as the service itself."""
        system = Principal.system(entry.category)
        async with self.unit_of_work(system, lambda: entry.category) as uow:
            await AuditRepository(uow).append(entry)
