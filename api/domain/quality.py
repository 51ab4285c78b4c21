"""How good a model version is, from what people did with its detections.

A detection's review outcome (migration 0013 derives it in SQL from the incident it opened or
joined) is one of:

- ``CONFIRMED``: the incident was verified, dispatched, worked on, or closed as fixed;
- ``REJECTED``: closed as a false positive;
- ``DUPLICATE``: closed as a duplicate of another incident;
- ``TRANSFERRED``: closed as another body's business (the finding was right, the routing was
  not: the routing table's fault, not the model's);
- ``PENDING``: nobody has looked yet (the incident is still ``DETECTED``);
- ``BELOW_THRESHOLD``: under its category's threshold, it opened nothing.

Precision is the share of right findings among the findings people judged: confirmed and
transferred against rejected. Duplicates are left out of it (whether a duplicate was a right
finding is its original's question), as are pending and below-threshold detections. Its
interval is Wilson's score interval, which stays inside [0, 1] and behaves for the small counts a
new version or a rare category has (the normal approximation does not).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

OUTCOMES = ("CONFIRMED", "REJECTED", "DUPLICATE", "TRANSFERRED", "PENDING", "BELOW_THRESHOLD")
# The two-sided 95% normal quantile.
Z_95 = 1.959963984540054
CALIBRATION_BINS = 10


@dataclass(frozen=True, slots=True)
class Interval:
    low: float
    high: float
    confidence: float = 0.95


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> Interval | None:
    """Wilson's score interval for ``successes`` of ``trials`` (None without trials)."""
    if trials < 0 or not 0 <= successes <= trials:
        raise ValueError(f"{successes} successes of {trials} trials")
    if trials == 0:
        return None
    share = successes / trials
    z2 = z * z
    denominator = 1 + z2 / trials
    centre = (share + z2 / (2 * trials)) / denominator
    half = z * math.sqrt(share * (1 - share) / trials + z2 / (4 * trials * trials)) / denominator
    return Interval(max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True, slots=True)
class OutcomeCounts:
    """Detections counted by review outcome."""

    confirmed: int = 0
    rejected: int = 0
    duplicates: int = 0
    transferred: int = 0
    pending: int = 0
    below_threshold: int = 0

    @classmethod
    def total(cls, counts: Iterable[OutcomeCounts]) -> OutcomeCounts:
        summed = OutcomeCounts()
        for count in counts:
            summed = summed + count
        return summed

    def __add__(self, other: OutcomeCounts) -> OutcomeCounts:
        return OutcomeCounts(
            self.confirmed + other.confirmed,
            self.rejected + other.rejected,
            self.duplicates + other.duplicates,
            self.transferred + other.transferred,
            self.pending + other.pending,
            self.below_threshold + other.below_threshold,
        )

    @property
    def detections(self) -> int:
        return self.reviewed + self.pending + self.below_threshold

    @property
    def reviewed(self) -> int:
        """Detections people have judged, whatever they said."""
        return self.confirmed + self.rejected + self.duplicates + self.transferred

    @property
    def right(self) -> int:
        return self.confirmed + self.transferred

    @property
    def judged(self) -> int:
        """The detections precision is counted over."""
        return self.right + self.rejected

    @property
    def precision(self) -> float | None:
        return self.right / self.judged if self.judged else None

    @property
    def precision_interval(self) -> Interval | None:
        return wilson_interval(self.right, self.judged)
