"""How well a model version's answers over a labelled evaluation set match the labels.

Each frame of a set carries the categories a person says it shows, complete for the set's
categories. A version's answer names categories with a confidence; for one category, a frame is

- a true positive when the label has it and the answer named it at or above the threshold;
- a false positive when the answer named it at or above the threshold and the label has not;
- a false negative when the label has it and the answer did not name it so (an unusable answer
  names nothing: it is counted, not left out, since a version that cannot answer misses).

Precision and recall have Wilson's score intervals (``api.domain.quality``). F1's interval is
the delta method's over the multinomial of (true positives, false positives, false negatives,
the rest), clipped to [0, 1]: closed-form, so it costs nothing on sets of any size, and close to
a bootstrap's once the counts are not tiny.

The precision/recall curve gives, for each confidence the answers named the category with, the
precision and recall of predicting it at that threshold (``sklearn.metrics.
precision_recall_curve``'s points, without its final (1, 0)); the tests hold both to
scikit-learn.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from api.domain.quality import Z_95, Interval, wilson_interval


@dataclass(frozen=True, slots=True)
class Scored:
    """A frame of the set: its labels, and the confidence the answer named each category with."""

    labels: frozenset[str]
    scores: Mapping[str, float]
    usable: bool = True


@dataclass(frozen=True, slots=True)
class CurvePoint:
    threshold: float
    precision: float
    recall: float


@dataclass(frozen=True, slots=True)
class CategoryFigures:
    category: str
    threshold: float
    frames: int
    labelled: int  # frames whose label has the category
    true_positives: int
    false_positives: int
    false_negatives: int
    curve: tuple[CurvePoint, ...]

    @property
    def predicted(self) -> int:
        return self.true_positives + self.false_positives

    @property
    def precision(self) -> float | None:
        return self.true_positives / self.predicted if self.predicted else None

    @property
    def recall(self) -> float | None:
        return self.true_positives / self.labelled if self.labelled else None

    @property
    def f1(self) -> float | None:
        denominator = 2 * self.true_positives + self.false_positives + self.false_negatives
        return 2 * self.true_positives / denominator if denominator else None

    @property
    def precision_interval(self) -> Interval | None:
        return wilson_interval(self.true_positives, self.predicted)

    @property
    def recall_interval(self) -> Interval | None:
        return wilson_interval(self.true_positives, self.labelled)

    @property
    def f1_interval(self) -> Interval | None:
        return f1_interval(
            self.true_positives, self.false_positives, self.false_negatives, self.frames
        )


def figures(items: Sequence[Scored], category: str, threshold: float) -> CategoryFigures:
    """``category``'s figures over ``items`` at ``threshold``, with its curve."""
    tp = fp = fn = labelled = 0
    for item in items:
        truth = category in item.labels
        score = item.scores.get(category, 0.0)
        said = item.usable and score > 0 and score >= threshold
        labelled += truth
        tp += truth and said
        fp += said and not truth
        fn += truth and not said
    return CategoryFigures(
        category, threshold, len(items), labelled, tp, fp, fn, curve(items, category)
    )


def curve(items: Sequence[Scored], category: str) -> tuple[CurvePoint, ...]:
    """Precision and recall at each confidence the answers named ``category`` with, lowest
    first."""
    named = sorted(
        ((item.scores[category], category in item.labels) for item in items
         if item.usable and category in item.scores and item.scores[category] > 0),
        reverse=True,
    )  # fmt: skip
    labelled = sum(category in item.labels for item in items)
    points: list[CurvePoint] = []
    tp = predicted = 0
    for index, (score, truth) in enumerate(named):
        predicted += 1
        tp += truth
        if index + 1 < len(named) and named[index + 1][0] == score:
            continue  # the same confidence: one point for all of them
        recall = tp / labelled if labelled else 0.0
        points.append(CurvePoint(score, tp / predicted, recall))
    return tuple(reversed(points))


def f1_interval(tp: int, fp: int, fn: int, n: int, z: float = Z_95) -> Interval | None:
    """F1's interval by the delta method over the counts' multinomial (None without any)."""
    if n <= 0 or 2 * tp + fp + fn == 0:
        return None
    a, b, c = tp / n, fp / n, fn / n
    d = 2 * a + b + c
    f1 = 2 * a / d
    # F1's gradient in the proportions (a, b, c), and their multinomial covariance / n.
    gradient = (2 * (b + c) / d**2, -2 * a / d**2, -2 * a / d**2)
    shares = (a, b, c)
    variance = 0.0
    for i, gi in enumerate(gradient):
        for j, gj in enumerate(gradient):
            covariance = shares[i] * (1 - shares[i]) if i == j else -shares[i] * shares[j]
            variance += gi * gj * covariance / n
    half = z * math.sqrt(max(variance, 0.0))
    return Interval(max(0.0, f1 - half), min(1.0, f1 + half))


@dataclass(frozen=True, slots=True)
class RunFigures:
    frames: int
    answered: int
    unusable: int
    categories: tuple[CategoryFigures, ...]


def run_figures(
    items: Sequence[Scored],
    categories: Sequence[str],
    thresholds: Mapping[str, float],
    default_threshold: float,
    *,
    frames: int,
) -> RunFigures:
    """A run's figures: ``items`` are the answered frames of a set of ``frames``."""
    return RunFigures(
        frames=frames,
        answered=len(items),
        unusable=sum(not item.usable for item in items),
        categories=tuple(
            figures(items, category, thresholds.get(category, default_threshold))
            for category in categories
        ),
    )
