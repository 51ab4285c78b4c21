from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from api.domain.sla import ServiceLevel, SlaCalendar

TAIPEI = ZoneInfo("Asia/Taipei")


@pytest.fixture(scope="module")
def calendar() -> SlaCalendar:
    return SlaCalendar("Asia/Taipei")


def test_weekends_are_skipped(calendar: SlaCalendar) -> None:
    # Friday 2026-11-27 + 1 working day is Monday 2026-11-30.
    assert calendar.add_working_days(date(2026, 11, 27), 1) == date(2026, 11, 30)


def test_lunar_new_year_is_skipped(calendar: SlaCalendar) -> None:
    # 2026-02-13 is a Friday; 14-22 February are the weekend and the New Year holidays.
    assert calendar.add_working_days(date(2026, 2, 13), 1) == date(2026, 2, 23)


def test_makeup_saturday_counts_as_working_day(calendar: SlaCalendar) -> None:
    # 2025-02-08 (Saturday) was a make-up working day (補班).
    assert calendar.is_working_day(date(2025, 2, 8))
    assert calendar.add_working_days(date(2025, 2, 7), 1) == date(2025, 2, 8)


def test_working_day_due_date_is_end_of_local_day(calendar: SlaCalendar) -> None:
    reported = datetime(2026, 11, 26, 23, 30, tzinfo=TAIPEI)  # Thursday night
    due = calendar.due_at(reported, ServiceLevel(working_days=2))
    assert due.astimezone(TAIPEI).date() == date(2026, 11, 30)  # Fri + Mon
    assert due.astimezone(TAIPEI).hour == 23
    # 23:30 Taipei is 15:30 UTC of the same day: the local day counts, not the UTC one.
    reported_utc = reported.astimezone(ZoneInfo("UTC"))
    assert calendar.due_at(reported_utc, ServiceLevel(working_days=2)) == due


def test_hour_service_levels_run_on_the_clock(calendar: SlaCalendar) -> None:
    reported = datetime(2026, 2, 16, 10, 0, tzinfo=TAIPEI)  # a holiday
    assert calendar.due_at(reported, ServiceLevel(hours=4)) == reported + timedelta(hours=4)


def test_naive_times_and_bad_levels_are_refused(calendar: SlaCalendar) -> None:
    with pytest.raises(ValueError):
        calendar.due_at(datetime(2026, 1, 5, 9, 0), ServiceLevel(hours=1))
    with pytest.raises(ValueError):
        ServiceLevel(working_days=1, hours=1)
    with pytest.raises(ValueError):
        calendar.add_working_days(date(2026, 1, 5), 0)
