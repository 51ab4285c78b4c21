"""SLA due dates, in working days on Taiwan's official calendar or in plain hours.

Working days skip weekends and Taiwan's public holidays, and count the Saturdays that are
made working days (補班), as the ``holidays`` package's Taiwan calendar lists them. A report
received on day D with an SLA of N working days is due at the end of the N-th working day after D,
in the city's time zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays


@dataclass(frozen=True, slots=True)
class ServiceLevel:
    working_days: int | None = None
    hours: int | None = None

    def __post_init__(self) -> None:
        if (self.working_days is None) == (self.hours is None):
            raise ValueError("a service level has either working days or hours")


class SlaCalendar:
    """Computes due dates; one per process (the holiday table is filled per year on demand)."""

    def __init__(self, timezone: str) -> None:
        self._zone = ZoneInfo(timezone)
        self._calendar = holidays.country_holidays("TW")

    def is_working_day(self, day: date) -> bool:
        return bool(self._calendar.is_working_day(day))

    def add_working_days(self, start: date, days: int) -> date:
        """The ``days``-th working day after ``start`` (``start`` itself not counted)."""
        if days < 1:
            raise ValueError("days must be at least 1")
        day = start
        remaining = days
        while remaining:
            day += timedelta(days=1)
            if self.is_working_day(day):
                remaining -= 1
        return day

    def due_at(self, reported_at: datetime, level: ServiceLevel) -> datetime:
        if reported_at.tzinfo is None:
            raise ValueError("reported_at must carry a time zone")
        if level.hours is not None:
            return reported_at + timedelta(hours=level.hours)
        assert level.working_days is not None
        local_day = reported_at.astimezone(self._zone).date()
        last_day = self.add_working_days(local_day, level.working_days)
        end_of_day = datetime.combine(last_day + timedelta(days=1), time(0), tzinfo=self._zone)
        return end_of_day - timedelta(microseconds=1)
