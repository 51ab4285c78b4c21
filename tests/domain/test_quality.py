"""How quality is counted: Wilson's interval (checked against Newcombe's published figures) and
what precision counts over."""

from __future__ import annotations

import pytest

from api.domain.quality import OutcomeCounts, wilson_interval


@pytest.mark.parametrize(
    ("successes", "trials", "low", "high"),
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611),
     (1, 29, 0.0061, 0.1718)],
)  # fmt: skip
def test_wilsons_interval_matches_newcombes_table(
    successes: int, trials: int, low: float, high: float
) -> None:
    """Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I,
    method 3 (the score interval without continuity correction)."""
    interval = wilson_interval(successes, trials)
    assert interval is not None
    assert (round(interval.low, 4), round(interval.high, 4)) == (low, high)


def test_no_trials_no_interval_and_impossible_counts_are_refused() -> None:
    assert wilson_interval(0, 0) is None
    for successes, trials in ((3, 2), (-1, 2), (0, -1)):
        with pytest.raises(ValueError, match="successes of"):
            wilson_interval(successes, trials)


def test_precision_counts_right_findings_against_rejected_ones_only() -> None:
    counts = OutcomeCounts(
        confirmed=5, rejected=3, duplicates=2, transferred=1, pending=4, below_threshold=7
    )
    assert (counts.detections, counts.reviewed, counts.judged) == (22, 11, 9)
    assert counts.precision == pytest.approx(6 / 9)
    assert counts.precision_interval == wilson_interval(6, 9)
    assert OutcomeCounts(pending=3).precision is None
    assert OutcomeCounts(pending=3).precision_interval is None
    assert OutcomeCounts.total([counts, OutcomeCounts(rejected=1)]).rejected == 4
