"""The due query: every target's next step and whether its time has come, in one set-based SELECT.

Its rows are what ``schedule.decide`` (the send cycle) and the forecast judge with the run's rules;
what a target is and when a step is due is said in schedule.py.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Date,
    Integer,
    String,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.selectable import Join

from dunningops.dunning.runconfig import RunConfig
from dunningops.ledger.assignment import plan_expression
from dunningops.store.schema import ActionRow, CustomerRow, InvoiceRow, MessageRow, TodoRow

customers, invoices = CustomerRow.__table__, InvoiceRow.__table__
actions, messages, todos = ActionRow.__table__, MessageRow.__table__, TodoRow.__table__
# What counts as contacting a customer, for the plan's minimum delay.
CONTACT_KINDS = ("reminder", "manual", "on_demand")
COUNTED = ("sending", "sent", "unknown")  # what the caps count (T6): what left or may have left


# SQLite refuses a compound SELECT of more than 500 terms: the steps' UNION is built in chunks.
UNION_CHUNK = 400


def _steps_table(config: RunConfig, today: date):
    """The config's steps with their thresholds for ``today``: one row per step."""
    rows = [
        select(
            literal(s.plan_id, String).label("plan_id"),
            literal(s.id, String).label("step_id"),
            literal(s.position, Integer).label("position"),
            literal(today - timedelta(days=s.at_days), Date).label("threshold"),
        )
        for plan in config.plans.values()
        for s in plan.steps
    ]
    while len(rows) > UNION_CHUNK:
        chunks = [rows[i : i + UNION_CHUNK] for i in range(0, len(rows), UNION_CHUNK)]
        rows = [select(union_all(*c).subquery()) if len(c) > 1 else c[0] for c in chunks]
    return union_all(*rows).subquery("run_steps") if len(rows) > 1 else rows[0].subquery("run_steps")


def invoice_paused(table, today: date) -> ColumnElement[bool]:
    """An invoice under a pause on ``today``: it holds through its ``until`` day, whether or not a cycle
    has ended it since (so a dry run at any instant says what the real run, which ends it first, does);
    ``paused`` without a date holds until someone resumes it."""
    return and_(table.c.paused.is_(True), or_(table.c.paused_until.is_(None), table.c.paused_until >= today))


def _case(whens: list) -> ColumnElement:
    """CASE WHEN … END of integers (NULL when nothing matches), or NULL without any WHEN."""
    none = cast(null(), Integer)  # typed: PostgreSQL takes an untyped NULL for text
    return case(*whens, else_=none) if whens else none


class LeftFirst(Join):
    """An inner join whose left side drives the loop: SQLite's ``CROSS JOIN`` (its documented way to
    fix the nesting order), a plain ``JOIN`` elsewhere.

    Used where SQLite, with no way to estimate how few rows the left side keeps (a customer's plan
    is an expression), would otherwise walk the right side's large index and look each row up on the
    left: 636k open invoices walked to find the 38k of the customers in invoice-level plans took
    about two thirds of the due query's time on a 1M-invoice ledger.
    """

    inherit_cache = True


@compiles(LeftFirst, "sqlite")
def _cross_join(join: LeftFirst, compiler: Any, asfrom: bool = False, from_linter: Any = None, **kw: Any) -> str:
    if from_linter:  # as the compiler's own visit_join does: the two sides are joined (no cartesian warning)
        from_linter.edges.update((a, b) for a in join.left._from_objects for b in join.right._from_objects)
    left = join.left._compiler_dispatch(compiler, asfrom=True, from_linter=from_linter, **kw)
    right = join.right._compiler_dispatch(compiler, asfrom=True, from_linter=from_linter, **kw)
    onclause: Any = join.onclause
    return f"{left} CROSS JOIN {right} ON {onclause._compiler_dispatch(compiler, from_linter=from_linter, **kw)}"


# The bound parameters of ``due_query(..., some_customers=True)``: the customers' ids and the
# step ids (of any plan) whose rows are wanted, lists.
CUSTOMER_IDS, STEP_IDS = "customer_ids", "step_ids"


def due_query(config: RunConfig, today: date, *, paused_on: date | None = None, some_customers: bool = False):
    """The due rows, oldest due first: one statement whatever the ledger's size.

    Args:
        paused_on: the day whose invoice pauses choose customer-level anchors (default ``today``);
            the forecast asks for the rows due by the window's last day, anchored as of its first.
        some_customers: only the rows (the same rows the whole query gives for them) of the
            customers whose ids are bound as ``CUSTOMER_IDS`` when it is executed, at the steps
            bound as ``STEP_IDS``: one statement built (and compiled) once for every chunk that asks.
    """
    assignments = {pid: p.assign for pid, p in config.plans.items()}
    by_level = {lvl: [p for p, cfg in config.plans.items() if cfg.level == lvl] for lvl in ("customer", "invoice")}
    ids: Any = bindparam(CUSTOMER_IDS, expanding=True)

    def only(column) -> list:
        return [column.in_(ids)] if some_customers else []

    # Each customer's plan (assignment expression), once per customer.
    assigned = (
        select(customers.c.id.label("customer_id"), plan_expression(assignments, customers).label("plan_id"))
        .where(*only(customers.c.id))
        .subquery("assigned")
    )
    # Targets: every open invoice of a customer in an invoice-level plan (a paused one too, so that its
    # due step shows as skipped and why); for a customer-level plan, the oldest open invoice not paused
    # (its anchor), found through the (customer, status, due date) index, customer by customer, rather
    # than by numbering every open invoice of the ledger.
    by_invoice = (
        select(
            assigned.c.customer_id, assigned.c.plan_id, invoices.c.id.label("anchor_id"), invoices.c.due_date.label("anchor_due")
        )
        .select_from(
            LeftFirst(assigned, invoices, and_(invoices.c.customer_id == assigned.c.customer_id, invoices.c.status == "open"))
        )
        .where(assigned.c.plan_id.in_(by_level["invoice"] or [""]))
    )
    oldest = invoices.alias("oldest")
    first_open = (
        select(oldest.c.id)
        .where(
            oldest.c.customer_id == assigned.c.customer_id,
            oldest.c.status == "open",
            ~invoice_paused(oldest, paused_on or today),
        )
        .order_by(oldest.c.due_date, oldest.c.id)
        .limit(1)
        .correlate(assigned)
        .scalar_subquery()
    )
    by_customer = (
        select(assigned.c.customer_id, assigned.c.plan_id, invoices.c.id, invoices.c.due_date)
        .select_from(assigned)
        .join(invoices, invoices.c.id == first_open)
        .where(assigned.c.plan_id.in_(by_level["customer"] or [""]))
    )
    targets = union_all(by_invoice, by_customer).subquery("targets")
    steps = _steps_table(config, today)
    by_age = [pid for pid, p in config.plans.items() if p.enters_by_age]
    # Per target: the last step performed (its position; steps removed from the config are not
    # counted, their rows stay in history), looked up through the customer's action rows.
    position_of = _case(
        [
            (and_(actions.c.plan_id == s.plan_id, actions.c.step_id == s.id), s.position)
            for plan in config.plans.values()
            for s in plan.steps
        ]
    )
    # (The plan is compared inside the max: on the plan, the actions' unique index would be walked
    # plan by plan; the anchor's index finds a target's few rows.)
    last_done = (
        select(func.max(case((actions.c.plan_id == targets.c.plan_id, position_of))))
        .where(actions.c.anchor_invoice_id == targets.c.anchor_id, actions.c.customer_id == targets.c.customer_id)
        .correlate(targets)
        .scalar_subquery()
    )
    # And, for a plan entered by age (E7), the last step whose threshold the anchor's due date has
    # reached: the highest position first.
    reached = _case(
        [
            (and_(targets.c.plan_id == pid, targets.c.anchor_due <= today - timedelta(days=s.at_days)), s.position)
            for pid in by_age
            for s in reversed(config.plans[pid].steps)
        ]
    )
    # Grouped by the target (one row each already) so that it is computed once per target: a plain
    # subquery would be merged into the joins below, and its lookups made again for every step.
    progress = (
        select(
            targets.c.customer_id,
            targets.c.plan_id,
            targets.c.anchor_id,
            targets.c.anchor_due,
            last_done.label("last_done"),
            reached.label("reached"),
        )
        .group_by(targets.c.customer_id, targets.c.plan_id, targets.c.anchor_id, targets.c.anchor_due)
        .subquery("progress")
    )
    # Positions run 0..n-1 in each plan, so the next step is the one after the last performed
    # (past the last step, no step matches: the target is done). Nothing performed yet: E7's
    # standard logic starts at the first step; by_age at the last step reached, the earlier
    # ones skipped (they are not performed: no action row, no history; see Decision.skipped).
    position = case(
        (progress.c.last_done.is_not(None), progress.c.last_done + 1),
        (progress.c.plan_id.in_(by_age or [""]), func.coalesce(progress.c.reached, 0)),
        else_=0,
    )
    next_step = select(
        progress.c.customer_id,
        progress.c.plan_id,
        progress.c.anchor_id,
        progress.c.anchor_due,
        position.label("position"),
        progress.c.last_done,
    ).subquery("next_step")
    last_contact = (
        select(messages.c.customer_id, func.max(messages.c.created_at).label("at"))
        .where(messages.c.kind.in_(CONTACT_KINDS), messages.c.status.in_(COUNTED), *only(messages.c.customer_id))
        .group_by(messages.c.customer_id)
        .subquery("last_contact")
    )
    # R4/R9: an open reply to-do blocks the customer, or only its invoice when it is about one.
    reply = (
        select(todos.c.customer_id, todos.c.invoice_id, func.min(todos.c.id).label("todo_id"))
        .where(todos.c.kind == "reply", todos.c.status == "open", *only(todos.c.customer_id))
        .group_by(todos.c.customer_id, todos.c.invoice_id)
        .subquery("pending_reply")
    )
    anchor = invoices.alias("anchor")
    return (
        select(
            next_step.c.customer_id,
            customers.c.external_id,
            customers.c.name,
            customers.c.paused_until,
            customers.c.pause_reason,
            customers.c.account_manager,
            customers.c.locale,
            next_step.c.plan_id,
            steps.c.step_id,
            next_step.c.anchor_id,
            next_step.c.anchor_due,
            steps.c.threshold,
            last_contact.c.at.label("last_contact"),
            reply.c.todo_id.label("reply_todo"),
            next_step.c.last_done.is_(None).label("entering"),
            case((invoice_paused(anchor, today), 1), else_=0).label("invoice_paused"),
            anchor.c.paused_until.label("invoice_paused_until"),
            anchor.c.pause_reason.label("invoice_pause_reason"),
            # For the forecast, which judges these rows again on later days.
            anchor.c.paused.label("invoice_paused_flag"),
            next_step.c.last_done,
        )
        .join(steps, and_(steps.c.plan_id == next_step.c.plan_id, steps.c.position == next_step.c.position))
        .join(customers, customers.c.id == next_step.c.customer_id)
        .join(anchor, anchor.c.id == next_step.c.anchor_id)
        .outerjoin(last_contact, last_contact.c.customer_id == next_step.c.customer_id)
        .outerjoin(
            reply,
            and_(
                reply.c.customer_id == next_step.c.customer_id,
                or_(reply.c.invoice_id.is_(None), reply.c.invoice_id == next_step.c.anchor_id),
            ),
        )
        .where(
            next_step.c.anchor_due <= steps.c.threshold,
            *([steps.c.step_id.in_(bindparam(STEP_IDS, expanding=True))] if some_customers else []),
        )
        .order_by(next_step.c.anchor_due, next_step.c.customer_id, next_step.c.anchor_id)
    )
