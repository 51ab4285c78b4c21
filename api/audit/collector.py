"""What one operation did, gathered while it runs and written as one audit record at its end."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class AuditCollector:
    resources: set[str] = field(default_factory=set)
    personal_data: set[str] = field(default_factory=set)
    allowed_by: set[str] = field(default_factory=set)
    denied_by: set[str] = field(default_factory=set)
    denials: int = 0
    grants: int = 0
    notes: list[str] = field(default_factory=list)
    # What the caller aimed at (its input, so never a disclosure): recorded whatever the outcome,
    # so an auditor finds attempts on a resource, probing included.
    targets: set[str] = field(default_factory=set)
    # How an operation that ran ended, when not in success (a domain error's code).
    outcome: str | None = None
    # Why the operation was refused before it ran (a document the limits or validation refused).
    refusal: str | None = None
    # Set when the scope turned out to deliver nothing worth recording (a subscription event
    # about an incident the subscriber may not see).
    silent: bool = False

    def saw(self, type_name: str, keys: object) -> None:
        """Record resources returned to, or changed for, the caller."""
        if isinstance(keys, int | str):
            self.resources.add(f"{type_name}:{keys}")
        else:
            self.resources.update(f"{type_name}:{key}" for key in keys)  # type: ignore[attr-defined]

    def targeted(self, type_name: str, key: int | str) -> None:
        """Record what the caller aimed at: one resource (a key, never a collection of them)."""
        self.targets.add(f"{type_name}:{key}")

    def saw_personal_data(self, type_name: str, key: int | str) -> None:
        self.personal_data.add(f"{type_name}:{key}")

    def decided(self, allowed: bool, policy_ids: tuple[str, ...]) -> None:
        if allowed:
            self.grants += 1
            self.allowed_by.update(policy_ids)
        else:
            self.denials += 1
            self.denied_by.update(policy_ids or ("default-deny",))

    @property
    def decision(self) -> str:
        if self.refusal is not None:
            return "DENY"
        if self.denials and self.grants:
            return "PARTIAL"
        return "DENY" if self.denials else "ALLOW"

    @property
    def policy_ids(self) -> list[str]:
        return sorted(self.allowed_by | self.denied_by)
