"""What is due at an instant: one set-based query over the ledger and the history, then a few
rules per due row (pauses, R4, minimum delay, window, E3, caps) that say why a row waits.

A function of (config, ledger and history, instant) that writes nothing, so it also answers
"what would happen" for a future instant or a config not applied yet.

Targets: each open invoice of a customer in an invoice-level plan; and for a customer-level
plan, the customer's oldest open, unpaused invoice (its "anchor"). A target's
next step is the step after the last one performed for it; it is due once the anchor's due date
plus the step's offset is reached. A target with nothing performed yet enters the plan at its
first step (E7's standard logic, ``entry: first_step``) or, with ``entry: by_age``, at the last
step whose time the anchor's age has reached. When a customer-level anchor is settled, the next
oldest invoice anchors a new round, which enters the plan the same way.

Within one run (invoice-level plans have several targets per customer): the invoices of a
customer at the same step go out together, in the first one's email or to-do (``merged``,
unless ``group_invoices: false``), and the minimum delay holds back the customer's other steps.

Pauses (dunning/pauses.py) hold through their ``until`` day, whether or not a cycle has ended
them since: a paused customer's due steps are skipped, with the pause as the reason. A paused
invoice, in an invoice-level plan, is a target whose due step is skipped the same way ("invoice
paused until …"); in a customer-level plan it is left out of the anchor choice and of the
reminder's invoice list (compose.py), so a disputed invoice is never chased in the grouped email
while the customer's other invoices still are (if it was the anchor, the next oldest anchors a
round of its own; the paused one's round goes on where it stopped once it is the oldest again).
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from dunningops.dunning.calendar import SendingCalendar
from dunningops.dunning.due import COUNTED, CUSTOMER_IDS, STEP_IDS, due_query
from dunningops.dunning.reasons import waiting_reason
from dunningops.dunning.runconfig import PlanConfig, RunConfig, StepConfig
from dunningops.outgoing.history import COUNTED_KINDS
from dunningops.store.schema import ActionRow, CustomerRow, InvoiceRow, MessageRow, TodoRow

customers, invoices = CustomerRow.__table__, InvoiceRow.__table__
actions, messages, todos = ActionRow.__table__, MessageRow.__table__, TodoRow.__table__
# Why a step waits within a run: another email to the customer goes out in it (the minimum delay).
IN_RUN = "another email to this customer goes out in this run"


@dataclass(slots=True)
class Decision:
    customer_id: int
    customer: str  # external id
    customer_name: str
    plan: PlanConfig
    step: StepConfig
    anchor_invoice_id: int
    anchor_due: date
    threshold: date  # invoices due on or before it are covered by this step
    outcome: str  # send | todo | wait | skip
    reason: str = ""
    # Why it waits or is skipped, as one of dunning/reasons.py's categories (set with ``reason`` by RunRules).
    category: str = ""
    account_manager: str | None = None
    locale: str | None = None
    invoice_ids: list[int] = field(default_factory=list)
    # Invoice-level plans: the customer's other targets at the same step that go out with this
    # one (one email or to-do); each is still recorded as performed for its own invoice.
    merged: tuple[Decision, ...] = ()
    # E7 by_age: the steps this target enters past (not performed, and nothing recorded for them).
    skipped: tuple[str, ...] = ()

    @property
    def anchor_invoice_ids(self) -> list[int]:
        """The anchors this decision performs the step for: its own and the merged ones'."""
        return [self.anchor_invoice_id, *(m.anchor_invoice_id for m in self.merged)]

    @property
    def due_since(self) -> date | None:
        """The day the step became due; None when out of the calendar (a date stored before imports were bounded)."""
        try:
            return self.anchor_due + timedelta(days=self.step.at_days)
        except OverflowError:
            return None

    def row(self) -> dict:
        return {
            "customer": self.customer,
            "name": self.customer_name,
            "plan": self.plan.id,
            "step": self.step.id,
            "action": self.step.action + (" (auto)" if self.step.automatic else ""),
            "due_since": str(self.due_since or "-"),
            "outcome": self.outcome,
            "reason": self.reason,
        }


def sent_counts(session: Session, calendar: SendingCalendar, at: datetime) -> tuple[int, int]:
    """Emails counted against the caps today and this month (company time)."""
    day, next_day, month = (b.astimezone(UTC) for b in calendar.day_bounds(at))
    # T6: the kinds the way out counts (proofs to colleagues and alias confirmations do not).
    counted = and_(messages.c.kind.in_(COUNTED_KINDS), messages.c.status.in_(COUNTED))
    today = session.scalar(select(func.count()).where(counted, messages.c.created_at >= day, messages.c.created_at < next_day))
    this_month = session.scalar(
        select(func.count()).where(counted, messages.c.created_at >= month, messages.c.created_at < next_day)
    )
    return today or 0, this_month or 0


# Decisions judged before the invoices merged into them are looked up and they are handed on:
# what deciding holds at once, whatever the ledger's size.
DECIDE_CHUNK = 10000


def decide(
    session: Session, config: RunConfig, at: datetime, *, calendar: SendingCalendar | None = None, today: date | None = None
) -> Iterator[Decision]:
    """Every due step at ``at``, with what will happen to it and why, streamed in the due query's order.

    Args:
        calendar: the run's sending calendar, when the caller already built it.
        today: the run's date in company time (``calendar.local(at).date()`` when not given).

    Memory stays flat: the rows are judged as they come (oldest due first, so the caps, T6, go to
    the oldest), and the decisions are handed on ``DECIDE_CHUNK`` at a time once the invoices that
    go out with them (``merged``) are known. The caller may use ``session`` between decisions.
    """
    if not any(p.steps for p in config.plans.values()):
        return
    calendar = calendar or SendingCalendar(config.settings)
    today = today or calendar.local(at).date()
    rules = RunRules(config, at, calendar, today, *sent_counts(session, calendar, at), merges_later=True)
    chunk: list[Decision] = []
    query = due_query(config, today)
    for row in map(_as_due_row(query), session.execute(query).yield_per(5000)):
        d = rules.judge(row)
        if d is None:
            continue
        chunk.append(d)
        if len(chunk) >= DECIDE_CHUNK:
            yield from rules.finish(session, chunk)
            chunk = []
    if chunk:
        yield from rules.finish(session, chunk)


def _as_due_row(query: Any) -> Callable[[Any], Any]:
    """The due query's rows as named tuples: a row is read a score of times while judged, and a
    named tuple's fields cost a tenth of a SQLAlchemy row's attributes (about 0.7 s of 5 at 1M invoices)."""
    row_type: Any = namedtuple("DueRow", query.selected_columns.keys())  # type: ignore[misc]
    return row_type._make


class RunRules:
    """One run's rules, applied to its due rows one at a time in the due query's order (oldest due
    first): pauses, R4/R9, minimum delay, E3, window, grouping, caps (T6).

    The send cycle feeds it the rows of ``due_query``; the forecast (forecast/simulate.py) feeds it
    the same rows as each simulated day sees them, so that both decide with this one code.
    """

    def __init__(
        self,
        config: RunConfig,
        at: datetime,
        calendar: SendingCalendar,
        today: date,
        day_count: int,
        month_count: int,
        *,
        merges_later: bool = False,
    ):
        """``merges_later``: a lead's merged invoices are looked up by ``finish`` (decide(), which
        streams) instead of being gathered from the later rows (the forecast, which keeps them all)."""
        self.config, self.at, self.calendar, self.today = config, at, calendar, today
        self.merges_later = merges_later
        caps = self.caps = config.settings.sending.caps
        self.room = max(0, min(caps.per_day - day_count, caps.per_month - month_count))
        self.closed = calendar.why_not(at)
        self.closed_category = waiting_reason(self.closed) if self.closed else ""
        # Per (plan, step) of the rows: the plan, the step and whether it is automatic, in one lookup a row.
        self.steps = {(p.id, s.id): (p, s, s.automatic) for p in config.plans.values() for s in p.steps}
        # Within this run: who already gets an automatic email (the minimum delay), and the decision each
        # (customer, plan, step) goes out with (group_invoices). Rows come oldest due first, so the
        # oldest invoice leads; the whole run is kept to attach later invoices to their lead (with
        # ``merges_later``, only that the group has a lead: None).
        self.emailed: set[int] = set()
        # Keyed by one int per (customer, plan, step): a run of 100,000 customers keeps one entry
        # each, and an int costs half a (customer, plan, step) tuple.
        self.leads: dict[int, Decision | None] = {}
        self._group = {key: n for n, key in enumerate(self.steps)}
        self._groups = max(1, len(self._group))
        # E3's first instant per step, and the company-time day of each last contact: the same few
        # values for every row, and each costs a calendar walk or a time-zone conversion.
        self._first: dict[tuple[str, str], datetime] = {}
        self._days: dict[datetime, date] = {}
        # The due query of some customers (finish) and its rows' named tuple, built once needed.
        self._merges: tuple[Any, Callable[[Any], Any]] | None = None

    def _contact_day(self, at: datetime) -> date:
        day = self._days.get(at)
        if day is None:
            day = self._days[at] = self.calendar.local(at).date()
        return day

    def _first_send(self, step: StepConfig) -> datetime:
        key = (step.plan_id, step.id)
        first = self._first.get(key)
        if first is None:
            first = self._first[key] = self.calendar.next_working_day_start(step.created_at or self.at)
        return first

    def _decision(self, row) -> Decision:
        """The row as a decision to send or make a to-do, before any rule has said why it waits."""
        plan, step, automatic = self.steps[row.plan_id, row.step_id]
        d = Decision(
            customer_id=row.customer_id,
            customer=row.external_id,
            customer_name=row.name,
            plan=plan,
            step=step,
            anchor_invoice_id=row.anchor_id,
            anchor_due=row.anchor_due,
            threshold=row.threshold,
            outcome="send" if automatic else "todo",
            account_manager=row.account_manager,
            locale=row.locale,
        )
        if row.entering and plan.enters_by_age:
            d.skipped = tuple(s.id for s in plan.steps[: step.position])
        return d

    def judge(self, row) -> Decision | None:
        """The decision for one due row; None when it goes out with an earlier row's (its ``merged``)."""
        today, at = self.today, self.at
        d = self._decision(row)
        plan, step = d.plan, d.step
        automatic = d.outcome == "send"  # as the step is, before any rule holds it
        if row.paused_until and row.paused_until >= today:
            d.outcome, d.category = "skip", "paused"
            d.reason = f"customer paused until {row.paused_until} ({row.pause_reason or 'no reason given'})"
        elif row.invoice_paused:  # only an invoice-level plan's target can be a paused invoice
            until = f" until {row.invoice_paused_until}" if row.invoice_paused_until else ""
            d.outcome, d.category = "skip", "paused"
            d.reason = f"invoice paused{until} ({row.invoice_pause_reason or 'no reason given'})"
        elif row.reply_todo:  # R4, R9
            d.outcome, d.category, d.reason = "skip", "reply", f"waiting for the reply to-do #{row.reply_todo}"
        elif (
            row.last_contact
            and plan.min_contact_delay_days
            and (today - self._contact_day(row.last_contact)).days < plan.min_contact_delay_days
        ):
            d.outcome, d.category = "skip", "min_delay"
            d.reason = f"last contact {self._contact_day(row.last_contact)}, minimum delay {plan.min_contact_delay_days}d"
        elif automatic:
            first = self._first_send(step)
            if at < first:  # E3
                d.outcome, d.category = "wait", "new_step"
                d.reason = f"new automatic step: first sends from {first:%Y-%m-%d %H:%M}"
            elif self.closed:
                d.outcome, d.category, d.reason = "wait", self.closed_category, self.closed
        if d.outcome in ("send", "todo"):
            key = d.customer_id * self._groups + self._group[plan.id, step.id]
            grouped = plan.level == "invoice" and plan.group_invoices
            if grouped and key in self.leads:
                lead = self.leads[key]
                if lead is not None:
                    lead.merged += (d,)
                return None
            if d.customer_id in self.emailed and plan.min_contact_delay_days:
                # The example config's promise: two emails to one customer are min_contact_delay
                # apart "whatever the invoice", within a run as across runs. As across runs, what
                # counts is an email that goes out (a to-do's email counts once a person sends it),
                # and it holds back every kind of step.
                d.outcome, d.category = "wait", "min_delay"
                d.reason = f"{IN_RUN}, minimum delay {plan.min_contact_delay_days}d"
            elif automatic and self.room <= 0:  # T6
                d.outcome, d.category = "wait", "caps"
                d.reason = f"sending cap reached ({self.caps.per_day}/day, {self.caps.per_month}/month)"
            else:
                if automatic:
                    self.room -= 1
                    self.emailed.add(d.customer_id)
                if grouped:
                    self.leads[key] = None if self.merges_later else d
        return d

    def finish(self, session: Session, chunk: list[Decision]) -> Iterable[Decision]:
        """``chunk`` (judged with ``merges_later``) with the invoices that go out with its leads, noted.

        Only the first row of a (customer, plan, step) that passes the row's own rules (the pauses of
        the invoice, R4/R9) can lead, and the others that pass them then go out with it: judge()
        returns None for them. So a lead's merged invoices are its group's other rows that pass
        them, found in one query for the chunk's customers (the same rows, in the same order).
        """
        leads = {
            (d.customer_id, d.plan.id, d.step.id): d
            for d in chunk
            if d.outcome in ("send", "todo") and d.plan.level == "invoice" and d.plan.group_invoices
        }
        if leads:
            if self._merges is None:  # built once: building the statement cost more than running it
                query = due_query(self.config, self.today, some_customers=True)
                self._merges = query, _as_due_row(query)
            query, as_row = self._merges
            # The leads' customers at the leads' steps: a customer's rows at other steps cannot merge.
            wanted = {CUSTOMER_IDS: sorted({k[0] for k in leads}), STEP_IDS: sorted({k[2] for k in leads})}
            for row in map(as_row, session.execute(query, wanted)):
                lead = leads.get((row.customer_id, row.plan_id, row.step_id))
                if lead is None or row.anchor_id == lead.anchor_invoice_id or row.invoice_paused or row.reply_todo:
                    continue
                lead.merged += (self._decision(row),)
        return [self.noted(d) for d in chunk]

    def noted(self, d: Decision) -> Decision:
        """``d`` with the notes known once the whole run is judged (entry step, invoices merged into it)."""
        d.reason = "; ".join(filter(None, (d.reason, _entry_note(d, self.today), _merged_note(d))))
        return d


def _entry_note(d: Decision, today: date) -> str:
    if not d.skipped:
        return ""
    age = (today - d.anchor_due).days
    skipped = " and ".join(d.skipped) if len(d.skipped) <= 2 else f"the {len(d.skipped)} earlier steps"
    return f"{age} days overdue: starts here, skipping {skipped}"


def _merged_note(d: Decision) -> str:
    if not d.merged:
        return ""
    return f"{1 + len(d.merged)} invoices in one {'email' if d.outcome == 'send' else 'to-do'}"
