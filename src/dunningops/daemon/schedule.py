"""When each cycle of the daemon is next due: pure functions of the last run, the interval, the
sending calendar and "now", so that they are tested without a clock or a store.

* The import cycle runs every ``import_every_minutes``, day and night: replies and bounces are
  read as they come.
* The send cycle runs every ``send_every_minutes``, and only inside the sending window (E3): a
  cycle that would fall outside it waits for the window's next start. To-dos are made by the
  send cycle too, so they appear once the window opens. A daemon that was down (a day, a weekend)
  runs at the next window start: ``decide()`` finds what became due meanwhile, once, inside the
  caps (T6), and the action rows make sure nothing goes twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dunningops.dunning.calendar import SendingCalendar

__all__ = ["Due", "next_due", "next_import", "next_send", "sleep_seconds", "window_opens"]

# The longest the loop sleeps at a time: a newly applied config (a shorter interval, another
# window) is then seen within this, whatever the next cycle's time.
MAX_NAP = timedelta(minutes=1)


def window_opens(calendar: SendingCalendar, at: datetime) -> datetime:
    """``at`` itself when it is inside the sending window, else the instant the window next opens."""
    if calendar.in_window(at):
        return at
    local = calendar.local(at)
    if calendar.is_working_day(local.date()) and local.time() < calendar.start:
        return datetime.combine(local.date(), calendar.start, calendar.tz).astimezone(UTC)
    return calendar.next_working_day_start(at).astimezone(UTC)


def next_send(calendar: SendingCalendar, every: timedelta, last: datetime | None, now: datetime) -> datetime:
    """When the send cycle is next due: ``every`` after the last one (at once when none ran, or
    when that time has passed), moved to the window's next start when it falls outside it.

    The instant returned is never in the past outside the window: a daemon woken long after a
    cycle was due (a suspended machine) does not send at night.
    """
    wanted = now if last is None else max(last + every, now)
    return window_opens(calendar, wanted)


def next_import(every: timedelta, last: datetime | None, now: datetime) -> datetime:
    """When the import cycle is next due: at once when none ran, else ``every`` after the last one."""
    return now if last is None else last + every


@dataclass(frozen=True)
class Due:
    """The next instant of each cycle."""

    send: datetime
    import_: datetime

    def send_now(self, now: datetime) -> bool:
        return self.send <= now

    def import_now(self, now: datetime) -> bool:
        return self.import_ <= now

    @property
    def first(self) -> datetime:
        return min(self.send, self.import_)


def next_due(
    calendar: SendingCalendar,
    *,
    send_every: timedelta,
    import_every: timedelta,
    last_send: datetime | None,
    last_import: datetime | None,
    now: datetime,
) -> Due:
    """Both cycles' next instants."""
    return Due(next_send(calendar, send_every, last_send, now), next_import(import_every, last_import, now))


def sleep_seconds(due: Due, now: datetime, nap: timedelta = MAX_NAP) -> float:
    """How long the loop sleeps before looking again: until the first due cycle, at most ``nap``."""
    return max(0.0, min((due.first - now).total_seconds(), nap.total_seconds()))
