"""When automatic emails may go out (E3): the sending window, working days, public holidays."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import cached_property
from zoneinfo import ZoneInfo

import holidays

from dunningops.spec.models import Settings

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class SendingCalendar:
    def __init__(self, settings: Settings):
        self.tz = ZoneInfo(settings.company.timezone)
        self.window = settings.sending.window
        self.country = settings.company.country
        self.skip_holidays = settings.sending.skip_public_holidays
        self.start = time.fromisoformat(self.window.start)
        self.end = time.fromisoformat(self.window.end)

    @cached_property
    def _holidays(self) -> holidays.HolidayBase:
        try:
            return holidays.country_holidays(self.country)
        except NotImplementedError:  # a country the package does not know: no holidays, not an error
            return holidays.HolidayBase()

    def local(self, at: datetime) -> datetime:
        return at.astimezone(self.tz)

    def holiday(self, day: date) -> str | None:
        return self._holidays.get(day) if self.skip_holidays else None

    def is_working_day(self, day: date) -> bool:
        return DAYS[day.weekday()] in self.window.days and not self.holiday(day)

    def in_window(self, at: datetime) -> bool:
        local = self.local(at)
        return self.is_working_day(local.date()) and self.start <= local.time() < self.end

    def why_not(self, at: datetime) -> str | None:
        """None inside the window, else a reason a person can read."""
        local = self.local(at)
        name = self.holiday(local.date())
        if name:
            return f"public holiday ({name})"
        if DAYS[local.weekday()] not in self.window.days:
            return f"not a sending day ({', '.join(self.window.days)})"
        if not self.start <= local.time() < self.end:
            return f"outside the sending window {self.window.start}-{self.window.end} {self.tz.key}"
        return None

    def next_working_day_start(self, after: datetime) -> datetime:
        """E3: the window's start on the first working day after ``after``'s (local) date."""
        day = self.local(after).date() + timedelta(days=1)
        for _ in range(30):
            if self.is_working_day(day):
                return datetime.combine(day, self.start, self.tz)
            day += timedelta(days=1)
        return datetime.combine(day, self.start, self.tz)

    def day_bounds(self, at: datetime) -> tuple[datetime, datetime, datetime]:
        """(start of the local day, start of the next day, start of the local month) for the caps (T6)."""
        local = self.local(at)
        day = datetime.combine(local.date(), time(0), self.tz)
        return day, day + timedelta(days=1), day.replace(day=1)
