"""The send cycle, simulated day by day over a window, writing nothing: what the engine will do
with one config (`dunningops forecast`), and, run twice, what a config change does to customers
(`dunningops plan --impact`, forecast/impact.py).

Correct by construction: the targets come from the send cycle's own due query, asked once for
the window's last day (dunning/schedule.py ``due_query``), and every simulated day's rows go
through the send cycle's own rules (``RunRules``: pauses, R4/R9, minimum delay, E3, window,
grouping, caps T6) and its own choice of recipients and sender (``compose.address``: C6, C9, A2,
A3). Between days only what a real cycle would change is carried forward: a step performed
makes the target's next step due (its action row), an email sent is the customer's last
contact (the minimum delay) and counts against the caps of its day and month.

The ledger is read once and the targets kept in a compact form, so a 30-day window costs one
due query and thirty passes over the targets due, not thirty decisions of the whole ledger.

What the simulation assumes (said in every output, model.ASSUMPTIONS): no payment arrives, nobody
replies or acts on a to-do, and one send cycle runs on each working day at the window's start
(the daemon's first cycle of the day; later cycles of a day find nothing new due).
Not simulated: templates that fail to render (the plan checks them), pauses ending into to-dos
for broken promises (they do not depend on the dunning config), and a customer-level anchor that
changes when an older invoice's pause ends inside the window (the anchors are those of day 0).
"""

from __future__ import annotations

import dataclasses
import sys
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta

from sqlalchemy.orm import Session

from dunningops.dunning import compose
from dunningops.dunning.calendar import SendingCalendar
from dunningops.dunning.due import due_query
from dunningops.dunning.runconfig import PlanConfig, RunConfig
from dunningops.dunning.schedule import IN_RUN, Decision, RunRules, sent_counts
from dunningops.errors import InvalidInputError
from dunningops.forecast.model import Day, Event, Forecast

__all__ = ["DEFAULT_DAYS", "MAX_DAYS", "simulate"]

DEFAULT_DAYS = 30
MAX_DAYS = 366
LOAD_BATCH = 1000  # customers whose contacts and invoices are read at a time
# The config may come from a pull request, planned on a runner: a plan with a step every day on a
# large ledger must not fill the machine's memory with the steps it performs.
MAX_EVENTS = 2_000_000


class Target:
    """One target (a customer in a customer-level plan, an invoice in an invoice-level one) as a
    simulated day's due row: the fields ``RunRules.judge`` reads, and where the target stands."""

    __slots__ = (
        "account_manager",
        "anchor_due",
        "anchor_id",
        "customer_id",
        "due_on",
        "entering",
        "external_id",
        "invoice_pause_reason",
        "invoice_paused",
        "invoice_paused_flag",
        "invoice_paused_until",
        "last_contact",
        "last_done",
        "locale",
        "name",
        "offsets",
        "order",
        "pause_reason",
        "paused_until",
        "plan",
        "plan_id",
        "position",
        "reply_todo",
        "step_id",
        "threshold",
    )

    def __init__(self, row, plan: PlanConfig, order: int, offsets: list[int], customers: dict[int, tuple]):
        self.offsets = offsets  # the plan's steps' offsets in days (shared by its targets)
        self.order = order  # the due query's order (oldest due first): the caps' and the grouping's
        # A customer's fields, the same objects for all its targets (a customer has ~10 invoices).
        shared = customers.get(row.customer_id)
        if shared is None:
            shared = customers[row.customer_id] = (
                row.external_id,
                row.name,
                row.locale and sys.intern(row.locale),
                row.account_manager and sys.intern(row.account_manager),
                row.pause_reason,
                row.paused_until,
                row.last_contact,
            )
        (self.external_id, self.name, self.locale, self.account_manager, self.pause_reason, self.paused_until) = shared[:6]
        self.last_contact = shared[6]
        self.customer_id = row.customer_id
        self.anchor_due = row.anchor_due
        self.anchor_id = row.anchor_id
        self.invoice_pause_reason = row.invoice_pause_reason
        self.invoice_paused_flag = row.invoice_paused_flag
        self.invoice_paused_until = row.invoice_paused_until
        self.last_done = row.last_done
        self.plan_id = plan.id
        self.reply_todo = row.reply_todo
        self.plan = plan
        self.entering = self.last_done is None
        self.step_id, self.invoice_paused, self.position = "", False, -1
        self.threshold: date | None = None  # set by as_of, with the step
        self.due_on: date | None = self._next_due()

    def _next_due(self) -> date | None:
        """When the next step becomes due; None once the last step is performed."""
        steps = self.plan.steps
        if self.entering:
            # E7: the standard logic enters at the first step; by_age at the first step the age reaches.
            ats = [s.at_days for s in steps] if self.plan.enters_by_age else [steps[0].at_days]
            return self.anchor_due + timedelta(days=min(ats))
        position = self.last_done + 1
        return self.anchor_due + timedelta(days=steps[position].at_days) if position < len(steps) else None

    def as_of(self, today: date) -> None:
        """The due row of ``today``: its step (by_age entry: the last one the age has reached) and pauses."""
        steps = self.plan.steps
        if not self.entering:
            position = self.last_done + 1
        elif self.plan.enters_by_age:
            # The last step whose time the age has reached (offsets strictly increase), else the first.
            position = max(0, bisect_right(self.offsets, (today - self.anchor_due).days) - 1)
        else:
            position = 0
        step = steps[position]
        self.position, self.step_id = position, step.id
        self.threshold = today - timedelta(days=step.at_days)
        until = self.invoice_paused_until
        self.invoice_paused = bool(self.invoice_paused_flag) and (until is None or until >= today)

    def pending_key(self) -> tuple[str, str, int, int]:
        """The next step's ``Event.key``, as of the day it becomes due."""
        assert self.due_on is not None
        self.as_of(self.due_on)
        return (self.plan_id, self.step_id, self.customer_id, self.anchor_id)

    def performed(self) -> None:
        """The step of the last ``as_of`` is performed (the real cycle's action row)."""
        self.last_done, self.entering = self.position, False
        self.due_on = self._next_due()


def simulate(session: Session, config: RunConfig, *, start: datetime, days: int = DEFAULT_DAYS) -> Forecast:
    """What the send cycle does on each of ``days`` days from ``start``'s (company) day with ``config``."""
    calendar = SendingCalendar(config.settings)
    config = _applied_at(config, start)
    first = calendar.local(start).date()
    every = timedelta(minutes=config.settings.daemon.send_every_minutes)
    window = [_day(calendar, every, start, first + timedelta(days=k)) for k in range(days)]
    caps = config.settings.sending.caps
    forecast = Forecast(start=start, days=window, events=[], targets=0, caps=(caps.per_day, caps.per_month))
    if not any(p.steps for p in config.plans.values()) or not days:
        return forecast
    run = _Run(session, config, calendar, forecast, first)
    for day in window:
        run.day(day)
    forecast.pending = {t.pending_key(): t.due_on for t in run.active if t.due_on is not None}
    return forecast


class _Run:
    """One simulation's state between its days: the targets still to act, and the emails counted by the caps."""

    def __init__(self, session: Session, config: RunConfig, calendar: SendingCalendar, forecast: Forecast, first: date):
        self.session, self.config, self.calendar, self.forecast, self.first = session, config, calendar, forecast, first
        self.caps = config.settings.sending.caps
        rows = session.execute(due_query(config, forecast.days[-1].day, paused_on=first)).yield_per(5000)
        offsets = {pid: [s.at_days for s in p.steps] for pid, p in config.plans.items()}
        customers: dict[int, tuple] = {}
        self.active = [Target(row, config.plans[row.plan_id], i, offsets[row.plan_id], customers) for i, row in enumerate(rows)]
        forecast.targets = len(self.active)
        self.by_customer: dict[int, list[Target]] = defaultdict(list)
        for t in self.active:
            self.by_customer[t.customer_id].append(t)
        self.closed = {d.day for d in forecast.days if not d.cycles}  # the window's days without a send cycle
        # What the caps already count (T6): today's and this month's emails, from the store.
        self.before_today, self.before_month = sent_counts(session, calendar, forecast.start)
        self.sent_in_month: dict[tuple[int, int], int] = defaultdict(int)

    def day(self, day: Day) -> None:
        """The day's cycles, in order; a later one only for the targets it may decide otherwise."""
        today, month = day.day, (day.day.year, day.day.month)
        sent_today = self.before_today if today == self.first else 0
        held: dict[int, str] = {}  # id(target) → why it waits, as last judged today
        pool = self.active  # the first cycle judges every due target
        for k, at in enumerate(day.cycles):
            month_count = (self.before_month if month == (self.first.year, self.first.month) else 0) + self.sent_in_month[month]
            rules = RunRules(self.config, at, self.calendar, today, sent_today, month_count)
            if k == 0:
                day.room = rules.room
            acting, again = self._judge(rules, pool, held)
            performed = {id(t): t for _d, t in acting}
            for d, _t in acting:  # the merged targets are performed with their lead
                for m in d.merged:
                    performed.update(_targets_of(m, self.by_customer))
            emails = sum(day.sent.values())
            sent = _perform(self.session, self.config, day, acting, self.forecast.events, self.closed)
            if len(self.forecast.events) > MAX_EVENTS:
                raise InvalidInputError(
                    f"the simulation stopped at {day.day}: more than {MAX_EVENTS:,} steps would be performed "
                    f"from {self.first}; simulate fewer days (--days)"
                )
            # T6 counts emails, not customers: one customer may get several a day (group_invoices: false).
            emails = sum(day.sent.values()) - emails
            sent_today += emails
            self.sent_in_month[month] += emails
            for t in performed.values():
                t.performed()
                held.pop(id(t), None)
            for customer_id in sent:
                for t in self.by_customer[customer_id]:
                    t.last_contact = at
            day.ran += 1
            room = min(self.caps.per_day - sent_today, self.caps.per_month - month_count - emails)
            pool = _changed(performed.values(), again, today, room=room)
            if not pool:
                break  # the day's later cycles would judge everything as this one did: they do nothing
        day.waiting.update(held.values())
        self.active = [t for t in self.active if t.due_on is not None]

    @staticmethod
    def _judge(rules: RunRules, pool: list[Target], held: dict[int, str]):
        """The cycle's decisions for the due targets of ``pool``: the ones that act, and the waits a
        later cycle of the day may decide otherwise (see ``_changed``); the others' reasons in ``held``."""
        acting: list[tuple[Decision, Target]] = []
        again: list[tuple[Decision, Target]] = []
        today = rules.today
        for t in pool:
            if t.due_on is None or t.due_on > today:
                continue
            t.as_of(today)
            d = rules.judge(t)
            if d is None:  # merged into an earlier target's email or to-do
                continue
            if d.outcome in ("send", "todo"):
                acting.append((d, t))
            else:
                held[id(t)] = d.category or "other"
                if d.outcome == "wait" and (d.category == "caps" or d.reason.startswith(IN_RUN)):
                    again.append((d, t))
        return acting, again


def _applied_at(config: RunConfig, start: datetime) -> RunConfig:
    """``config`` as if applied at ``start``: a step not applied yet first sends the next working day (E3)."""
    plans = {
        pid: dataclasses.replace(p, steps=tuple(s if s.created_at else dataclasses.replace(s, created_at=start) for s in p.steps))
        for pid, p in config.plans.items()
    }
    return dataclasses.replace(config, plans=plans)


def _day(calendar: SendingCalendar, every: timedelta, start: datetime, day: date) -> Day:
    """The day's send cycles, as the daemon runs them: from the window's start (day 0: from
    ``start`` once the window is open), every ``every`` while the window is open."""
    at = datetime.combine(day, calendar.start, calendar.tz)
    if day == calendar.local(start).date() and start > at:
        at = start
    closed = calendar.why_not(at)
    cycles = []
    while calendar.in_window(at):
        cycles.append(at)
        at += every
    return Day(day=day, at=cycles[0] if cycles else None, closed=closed, cycles=cycles)


def _changed(performed: Iterable[Target], waited: list[tuple[Decision, Target]], today: date, *, room: int) -> list[Target]:
    """The targets the day's next cycle may decide otherwise, in the due query's order: those that
    performed a step (the next one may be due today: a to-do is not a contact, so overdue manual
    steps follow one another a cycle apart); those held back by another email of the customer in
    the same run (there is none left if that one found nobody to write to); and, when the caps
    leave room again (a step that found nobody took room and became a to-do), those the caps held."""
    changed = {id(t): t for t in performed if t.due_on is not None and t.due_on <= today}
    changed.update((id(t), t) for d, t in waited if d.category != "caps" or room > 0)
    return sorted(changed.values(), key=lambda t: t.order)


def _targets_of(d: Decision, by_customer: dict[int, list[Target]]) -> dict[int, Target]:
    return {id(t): t for t in by_customer[d.customer_id] if t.plan_id == d.plan.id and t.anchor_id == d.anchor_invoice_id}


def _days(first: date, end: date) -> Iterator[date]:
    """The days from ``first`` to the day before ``end``."""
    while first < end:
        yield first
        first += timedelta(days=1)


def _perform(
    session: Session,
    config: RunConfig,
    day: Day,
    acting: list[tuple[Decision, Target]],
    events: list[Event],
    closed: set[date],
) -> set[int]:
    """What each acting decision becomes (an email, or a to-do), recorded as events; the customers emailed."""
    emailed: set[int] = set()
    for start in range(0, len(acting), LOAD_BATCH):
        chunk = acting[start : start + LOAD_BATCH]
        loaded = compose.Batch.load(session, [d.customer_id for d, _ in chunk], day.day)
        for d, _t in chunk:
            outcome, kind = d.outcome, None if d.outcome == "send" else d.step.action
            sender: str | None = None
            recipients: tuple[str, ...] = ()
            if d.step.action == "email":
                who, found = compose.address(config, loaded, d)
                if found is None and outcome == "send":
                    outcome, kind = "todo", "no_recipient"  # the real cycle's to-do for an email nobody can receive
                if found is not None:
                    sender = found.ref
                    recipients = tuple(
                        f"{h}:{c.email}" for h, cs in (("to", who.to), ("cc", who.cc), ("bcc", who.bcc)) for c in cs
                    )
            (day.sent if outcome == "send" else day.todos)[(d.plan.id, d.step.id)] += 1
            if outcome == "send":
                emailed.add(d.customer_id)
            rows = loaded.invoices_for(d)
            for target in (d, *d.merged):
                covered = [r for r in rows if r.id == target.anchor_invoice_id] if d.plan.level == "invoice" else rows
                event = _event(day.day, target, outcome, kind, sender, recipients, covered, len(d.merged))
                due = target.due_since
                if due is not None and due in closed and all(c in closed for c in _days(due, day.day)):
                    event = dataclasses.replace(event, after_closed_day=True)
                events.append(event)
    return emailed


def _event(day: date, d: Decision, outcome: str, kind, sender, recipients, covered: Iterable, merged: int) -> Event:
    covered = list(covered)
    return Event(
        day=day,
        plan=d.plan.id,
        step=d.step.id,
        customer_id=d.customer_id,
        customer=d.customer,
        customer_name=d.customer_name,
        anchor_invoice_id=d.anchor_invoice_id,
        outcome=outcome,
        todo_kind=kind,
        template=d.step.template,
        sender=sender,
        recipients=recipients,
        amount_cents=sum(r.outstanding_cents for r in covered),
        currency=covered[0].currency if covered else "",
        invoices=len(covered),
        merged=merged,
    )
