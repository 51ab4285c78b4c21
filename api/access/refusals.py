"""Refusals in the audit chain, without letting one source write unbounded rows.

A request refused before any operation runs (a bad token, a body too large, a body that is not
GraphQL) is still audited, but per source address: the first refusal in a window is written at
once; the rest of the window is counted and written as one aggregate record (how many, first and
last time, for which reasons) when the window closes. Past ``limit`` refusals in a window the
source is throttled (429) until the window ends. The sources tracked are bounded too: the
oldest window is closed early when a new source would pass ``max_sources``. Every record goes
through the same chained append as any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

import structlog

from api.access.scope import AccessGate
from api.audit.entries import AuditEntry
from api.auth.principal import Principal

log = structlog.get_logger(__name__)

MAX_REASONS = 20
# A refused request's path is the caller's (``/open311/v2/services/%00.json`` decodes to a NUL,
# which PostgreSQL's text cannot hold): control characters are kept percent-encoded.
CONTROL = re.compile("[\x00-\x1f\x7f]")


def _printable(text: str) -> str:
    return CONTROL.sub(lambda found: f"%{ord(found.group()):02X}", text)


class Verdict(StrEnum):
    RECORDED = "recorded"  # written as its own record
    COUNTED = "counted"  # counted into the window's aggregate record
    THROTTLED = "throttled"  # over the limit: answer 429 until the window ends


@dataclass
class Window:
    opened: float
    first_at: datetime
    last_at: datetime
    count: int = 0  # refusals after the first, not yet written
    reasons: Counter[str] = field(default_factory=Counter)
    operations: Counter[str] = field(default_factory=Counter)


class RefusalLedger:
    def __init__(
        self,
        gate: AccessGate,
        *,
        limit: int,
        window_seconds: float = 60.0,
        max_sources: int = 10_000,
    ) -> None:
        self._gate = gate
        self.limit = limit
        self.window_seconds = window_seconds
        self._max_sources = max_sources
        self._windows: OrderedDict[str, Window] = OrderedDict()
        self._flusher: asyncio.Task[None] | None = None

    async def refuse(
        self,
        source: str,
        operation: str,
        reason: str,
        request_id: str,
        caller: Principal | None = None,
    ) -> Verdict:
        """Record one refusal from ``source`` (by ``caller`` if it is known); say whether the
        caller should be throttled."""
        operation = _printable(operation)
        now = time.monotonic()
        window = self._windows.get(source)
        if window is not None and now - window.opened >= self.window_seconds:
            await self._close(source)
            window = None
        if window is None:
            while len(self._windows) >= self._max_sources:
                oldest = next(iter(self._windows))
                await self._close(oldest)
            moment = datetime.now(UTC)
            self._windows[source] = Window(opened=now, first_at=moment, last_at=moment)
            await self._gate.append(
                AuditEntry.of(
                    caller or _caller(source),
                    request_id=request_id,
                    category="refusal",
                    operation=operation,
                    decision="DENY",
                    policy_version=self._gate.policy.version,
                    details={"reason": reason, "source": source},
                )
            )
            return Verdict.RECORDED
        window.count += 1
        window.last_at = datetime.now(UTC)
        if len(window.reasons) < MAX_REASONS or reason in window.reasons:
            window.reasons[reason] += 1
        if len(window.operations) < MAX_REASONS or operation in window.operations:
            window.operations[operation] += 1
        return Verdict.THROTTLED if window.count >= self.limit else Verdict.COUNTED

    def retry_after(self, source: str) -> int:
        """Seconds until ``source``'s window closes."""
        window = self._windows.get(source)
        if window is None:
            return 1
        return max(1, int(self.window_seconds - (time.monotonic() - window.opened)) + 1)

    async def _close(self, source: str) -> None:
        window = self._windows.pop(source, None)
        if window is None or window.count == 0:
            return
        await self._gate.append(
            AuditEntry.of(
                _caller(source),
                request_id="",
                category="refusal",
                operation="refusals",
                decision="DENY",
                policy_version=self._gate.policy.version,
                details={
                    "aggregate": True,
                    "source": source,
                    "count": window.count,
                    "first": window.first_at.isoformat(),
                    "last": window.last_at.isoformat(),
                    "reasons": dict(window.reasons),
                    "operations": dict(window.operations),
                },
            )
        )

    async def flush(self, *, everything: bool = False) -> None:
        """Write the aggregate records of the windows that have closed (or of all of them)."""
        now = time.monotonic()
        for source, window in list(self._windows.items()):
            if everything or now - window.opened >= self.window_seconds:
                await self._close(source)

    async def start(self) -> None:
        self._flusher = asyncio.create_task(self._flush_periodically(), name="refusal-ledger")

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.flush(everything=True)

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(max(1.0, self.window_seconds / 4))
            try:
                await self.flush()
            except Exception as error:  # the database is away; the windows wait for the next try
                log.warning("refusals.flush_failed", error=repr(error))


def _caller(source: str) -> Principal:
    return Principal.anonymous(f"unauthenticated@{source}")
