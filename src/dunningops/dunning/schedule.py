"""What is due at an instant: one set-based query over the ledger and the history, then a few
rules per due row (pauses, R4, minimum delay, window, E3, caps) that say why a row waits.

A function of (config, ledger and history, instant) that writes nothing, so it also answers
"what would happen" for a future instant or a config not applied yet.

Targets: each open, unpaused invoice of a customer in an invoice-level plan; and for a
customer-level plan, the customer's oldest open, unpaused invoice (its "anchor"). A target's
next step is the first step of its plan not yet performed for it (E7: a customer new to a plan
starts at the first step); it is due once the anchor's due date plus the step's offset is reached.
When a customer-level anchor is settled, the next oldest invoice anchors a new round.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Date, Integer, String, and_, func, literal, or_, select, union_all
from sqlalchemy.orm import Session

from dunningops.dunning.calendar import SendingCalendar
from dunningops.dunning.runconfig import PlanConfig, RunConfig, StepConfig
from dunningops.ledger.assignment import plan_expression
from dunningops.store.schema import ActionRow, CustomerRow, InvoiceRow, MessageRow, TodoRow

customers, invoices = CustomerRow.__table__, InvoiceRow.__table__
actions, messages, todos = ActionRow.__table__, MessageRow.__table__, TodoRow.__table__
# What counts as contacting a customer, for the plan's minimum delay.
CONTACT_KINDS = ("reminder", "manual", "on_demand")
COUNTED = ("sending", "sent", "unknown")  # what the caps count (T6): what left or may have left


@dataclass
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
    account_manager: str | None = None
    locale: str | None = None
    invoice_ids: list[int] = field(default_factory=list)

    def row(self) -> dict:
        return {
            "customer": self.customer, "name": self.customer_name, "plan": self.plan.id, "step": self.step.id,
            "action": self.step.action + (" (auto)" if self.step.automatic else ""), "due_since": str(self.anchor_due + timedelta(days=self.step.at_days)),
            "outcome": self.outcome, "reason": self.reason,
        }


def _steps_table(config: RunConfig, today: date):
    rows = [
        select(
            literal(s.plan_id, String).label("plan_id"), literal(s.id, String).label("step_id"),
            literal(s.position, Integer).label("position"),
            literal(today - timedelta(days=s.at_days), Date).label("threshold"),
        )
        for plan in config.plans.values()
        for s in plan.steps
    ]
    return union_all(*rows).subquery("run_steps") if len(rows) > 1 else rows[0].subquery("run_steps")


def due_query(config: RunConfig, today: date):
    """The due rows, oldest due first: one statement whatever the ledger's size."""
    assignments = {pid: p.assign for pid, p in config.plans.items()}
    plan_id = plan_expression(assignments, customers)
    by_level = {lvl: [p for p, cfg in config.plans.items() if cfg.level == lvl] for lvl in ("customer", "invoice")}
    open_inv = and_(invoices.c.status == "open", invoices.c.paused.is_(False))
    base = (
        select(
            customers.c.id.label("customer_id"), plan_id.label("plan_id"), invoices.c.id.label("anchor_id"),
            invoices.c.due_date.label("anchor_due"),
            func.row_number().over(partition_by=customers.c.id, order_by=(invoices.c.due_date, invoices.c.id)).label("rn"),
        )
        .join(invoices, and_(invoices.c.customer_id == customers.c.id, open_inv))
        .subquery("candidates")
    )
    targets = (
        select(base.c.customer_id, base.c.plan_id, base.c.anchor_id, base.c.anchor_due)
        .where(or_(
            and_(base.c.plan_id.in_(by_level["invoice"] or [""])),
            and_(base.c.plan_id.in_(by_level["customer"] or [""]), base.c.rn == 1),
        ))
        .subquery("targets")
    )
    steps = _steps_table(config, today)
    done = actions.alias("done")
    next_step = (
        select(targets.c.customer_id, targets.c.plan_id, targets.c.anchor_id, targets.c.anchor_due,
               func.min(steps.c.position).label("position"))
        .join(steps, steps.c.plan_id == targets.c.plan_id)
        .outerjoin(done, and_(done.c.plan_id == steps.c.plan_id, done.c.step_id == steps.c.step_id,
                              done.c.customer_id == targets.c.customer_id, done.c.anchor_invoice_id == targets.c.anchor_id))
        .where(done.c.id.is_(None))
        .group_by(targets.c.customer_id, targets.c.plan_id, targets.c.anchor_id, targets.c.anchor_due)
        .subquery("next_step")
    )
    last_contact = (
        select(messages.c.customer_id, func.max(messages.c.created_at).label("at"))
        .where(messages.c.kind.in_(CONTACT_KINDS), messages.c.status.in_(COUNTED))
        .group_by(messages.c.customer_id)
        .subquery("last_contact")
    )
    # R4/R9: an open reply to-do blocks the customer, or only its invoice when it is about one.
    reply = (
        select(todos.c.customer_id, todos.c.invoice_id, func.min(todos.c.id).label("todo_id"))
        .where(todos.c.kind == "reply", todos.c.status == "open")
        .group_by(todos.c.customer_id, todos.c.invoice_id)
        .subquery("pending_reply")
    )
    return (
        select(
            next_step.c.customer_id, customers.c.external_id, customers.c.name, customers.c.paused_until,
            customers.c.pause_reason, customers.c.account_manager, customers.c.locale, next_step.c.plan_id,
            steps.c.step_id, next_step.c.anchor_id, next_step.c.anchor_due, steps.c.threshold,
            last_contact.c.at.label("last_contact"), reply.c.todo_id.label("reply_todo"),
        )
        .join(steps, and_(steps.c.plan_id == next_step.c.plan_id, steps.c.position == next_step.c.position))
        .join(customers, customers.c.id == next_step.c.customer_id)
        .outerjoin(last_contact, last_contact.c.customer_id == next_step.c.customer_id)
        .outerjoin(reply, and_(reply.c.customer_id == next_step.c.customer_id,
                               or_(reply.c.invoice_id.is_(None), reply.c.invoice_id == next_step.c.anchor_id)))
        .where(next_step.c.anchor_due <= steps.c.threshold)
        .order_by(next_step.c.anchor_due, next_step.c.customer_id, next_step.c.anchor_id)
    )


def sent_counts(session: Session, calendar: SendingCalendar, at: datetime) -> tuple[int, int]:
    """Emails counted against the caps today and this month (company time)."""
    # Bounds in UTC: SQLite keeps timestamps as naive UTC text, so local-time bounds would compare wrongly.
    day, next_day, month = (b.astimezone(UTC) for b in calendar.day_bounds(at))
    counted = and_(messages.c.kind.in_(CONTACT_KINDS), messages.c.status.in_(COUNTED))
    today = session.scalar(select(func.count()).where(counted, messages.c.created_at >= day, messages.c.created_at < next_day))
    this_month = session.scalar(select(func.count()).where(counted, messages.c.created_at >= month, messages.c.created_at < next_day))
    return today or 0, this_month or 0


def decide(session: Session, config: RunConfig, at: datetime) -> Iterator[Decision]:
    """Every due step at ``at``, with what will happen to it and why."""
    if not any(p.steps for p in config.plans.values()):
        return
    calendar = SendingCalendar(config.settings)
    today = calendar.local(at).date()
    caps = config.settings.sending.caps
    day_count, month_count = sent_counts(session, calendar, at)
    room = max(0, min(caps.per_day - day_count, caps.per_month - month_count))
    closed = calendar.why_not(at)
    for row in session.execute(due_query(config, today)).yield_per(5000):
        plan = config.plans[row.plan_id]
        step = next(s for s in plan.steps if s.id == row.step_id)
        d = Decision(
            customer_id=row.customer_id, customer=row.external_id, customer_name=row.name, plan=plan, step=step,
            anchor_invoice_id=row.anchor_id, anchor_due=row.anchor_due, threshold=row.threshold,
            outcome="todo" if not step.automatic else "send", account_manager=row.account_manager, locale=row.locale,
        )
        if row.paused_until and row.paused_until >= today:
            d.outcome, d.reason = "skip", f"customer paused until {row.paused_until} ({row.pause_reason or 'no reason given'})"
        elif row.reply_todo:
            d.outcome, d.reason = "skip", f"waiting for the reply to-do #{row.reply_todo} (R4)"
        elif row.last_contact and plan.min_contact_delay_days and (
            today - calendar.local(_aware(row.last_contact)).date()
        ).days < plan.min_contact_delay_days:
            d.outcome = "skip"
            d.reason = f"last contact {calendar.local(_aware(row.last_contact)).date()}, minimum delay {plan.min_contact_delay_days}d"
        elif step.automatic:
            first = calendar.next_working_day_start(step.created_at or at)
            if at < first:
                d.outcome, d.reason = "wait", f"new automatic step: first sends from {first:%Y-%m-%d %H:%M} (E3)"
            elif closed:
                d.outcome, d.reason = "wait", closed
            elif room <= 0:
                d.outcome, d.reason = "wait", f"sending cap reached ({caps.per_day}/day, {caps.per_month}/month, T6)"
            else:
                room -= 1
        yield d


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes for timezone-aware columns; they were written in UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)
