"""A bound on open WebSocket connections: in all, and per caller (per gateway process)."""

from __future__ import annotations

from collections import Counter


class SocketBudget:
    def __init__(self, total: int, per_principal: int) -> None:
        self.total = total
        self.per_principal = per_principal
        self.open_sockets = 0
        self._by_principal: Counter[str] = Counter()

    def open(self) -> bool:
        """Take a slot for a new connection, unless all are taken."""
        if self.open_sockets >= self.total:
            return False
        self.open_sockets += 1
        return True

    def close(self) -> None:
        self.open_sockets -= 1

    def claim(self, subject: str) -> bool:
        """Count a connection against its caller, unless the caller has all its slots."""
        if self._by_principal[subject] >= self.per_principal:
            return False
        self._by_principal[subject] += 1
        return True

    def release(self, subject: str) -> None:
        self._by_principal[subject] -= 1
        if self._by_principal[subject] <= 0:
            del self._by_principal[subject]
