"""A category's threshold from evidence: the lowest confidence at which the findings people
judged reach the precision a bureau asks for.

The evidence is the production version's detections people judged: right (confirmed or
transferred) or wrong (closed as a false positive), each with its confidence. At a threshold t,
precision is the right share of the judged detections at or above t, and recall the share of all
right ones that are at or above t (relative recall: what a person confirmed below the threshold
in force was never put before them, so nothing below it can be judged, and no proposal goes
below the lowest confidence judged). The lowest t reaching the asked precision, over at least
``min_judged`` judged detections, keeps the most of what is right.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from api.domain.quality import Interval, wilson_interval


@dataclass(frozen=True, slots=True)
class Judged:
    confidence: float
    right: bool


@dataclass(frozen=True, slots=True)
class AtThreshold:
    threshold: float
    judged: int  # judged detections at or above it
    right: int
    right_total: int  # right ones at any confidence

    @property
    def precision(self) -> float | None:
        return self.right / self.judged if self.judged else None

    @property
    def recall(self) -> float | None:
        return self.right / self.right_total if self.right_total else None

    @property
    def precision_interval(self) -> Interval | None:
        return wilson_interval(self.right, self.judged)


@dataclass(frozen=True, slots=True)
class Proposal:
    category: str
    target_precision: float
    current: float  # the threshold in force
    proposed: AtThreshold | None  # None: no threshold reaches the target on this evidence
    best: AtThreshold | None  # the highest precision any threshold reaches (over min_judged)
    judged: int


def at(judged: Sequence[Judged], threshold: float) -> AtThreshold:
    """The evidence's figures at ``threshold``."""
    above = [j for j in judged if j.confidence >= threshold]
    return AtThreshold(
        threshold,
        len(above),
        sum(j.right for j in above),
        sum(j.right for j in judged),
    )


def propose(
    category: str,
    judged: Sequence[Judged],
    target_precision: float,
    current: float,
    min_judged: int = 20,
) -> Proposal:
    """The lowest threshold (one of the judged confidences) whose precision reaches
    ``target_precision`` over at least ``min_judged`` judged detections."""
    ordered = sorted(judged, key=lambda j: j.confidence, reverse=True)
    right_total = sum(j.right for j in ordered)
    proposed: AtThreshold | None = None
    best: AtThreshold | None = None
    right = 0
    for index, item in enumerate(ordered):
        right += item.right
        if index + 1 < len(ordered) and ordered[index + 1].confidence == item.confidence:
            continue  # one point per confidence: all of them are in, or none
        point = AtThreshold(item.confidence, index + 1, right, right_total)
        if point.judged < min_judged:
            continue
        assert point.precision is not None
        if best is None or point.precision > (best.precision or 0.0):
            best = point
        if point.precision >= target_precision:
            proposed = point  # lower thresholds come later: the last that holds is the lowest
    return Proposal(category, target_precision, current, proposed, best, len(ordered))
