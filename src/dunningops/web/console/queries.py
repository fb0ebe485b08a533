"""The reads the console needs that the engine's listings do not give (a page of them, or a customer's
whole timeline), in a few set-based, indexed queries per page: never one per row.

* customers: the page of customers first (by external id, its unique index), then the open
  invoices and open to-dos of *those* customers only;
* a customer's timeline: sent and received mail, to-dos and pauses in one ``UNION ALL``, each
  part by its ``customer_id`` index;
* to-dos, applies: a page by id, with the total.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Date, String, case, cast, func, literal, null, or_, select, union_all
from sqlalchemy.orm import Session

from dunningops.dunning.pauses import UNTIL_CLOSED
from dunningops.errors import NotFoundError
from dunningops.ledger.assignment import applied_assignments, plan_expression
from dunningops.ledger.queries import Page, rating_filter
from dunningops.outgoing.history import settled
from dunningops.store.schema import (
    AlertRow,
    ApplyRow,
    CustomerRow,
    InboxMessageRow,
    InvoiceRow,
    MessageRow,
    PauseRow,
    TodoRow,
    UTCDateTime,
)

customers, invoices, todos = CustomerRow.__table__, InvoiceRow.__table__, TodoRow.__table__
messages, inbox, pauses = MessageRow.__table__, InboxMessageRow.__table__, PauseRow.__table__
applies, alerts = ApplyRow.__table__, AlertRow.__table__


def _like(text: str) -> str:
    return "%" + text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def customers_page(
    session: Session,
    *,
    today: date,
    search: str | None = None,
    origin: str | None = None,
    rating: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page:
    """Customers by external id, with their plan, open invoices, outstanding amount, days overdue and open to-dos;
    ``rating``: by their incidents' rating status (rated, unrated, none: ``ledger.queries.rating_filter``)."""
    plan = plan_expression(applied_assignments(session), customers).label("plan")
    where = []
    if search:
        pattern = _like(search)
        where.append(
            or_(
                func.lower(customers.c.external_id).like(pattern, escape="\\"),
                func.lower(customers.c.name).like(pattern, escape="\\"),
            )
        )
    if origin:
        where.append(customers.c.origin == origin)
    if rating:
        where.append(rating_filter(rating, customers.c.id))
    total = session.scalar(select(func.count()).select_from(customers).where(*where)) or 0
    rows = [
        dict(r)
        for r in session.execute(
            select(
                customers.c.id,
                customers.c.external_id,
                customers.c.name,
                customers.c.country,
                customers.c.currency,
                customers.c.origin,
                customers.c.account_manager,
                customers.c.paused_until,
                plan,
            )
            .where(*where)
            .order_by(customers.c.external_id)
            .limit(limit)
            .offset(offset)
        ).mappings()
    ]
    ids = [r["id"] for r in rows]
    open_invoices: dict[int, Any] = {}
    open_todos: dict[int, int] = {}
    if ids:
        open_invoices = {
            r.customer_id: r
            for r in session.execute(
                select(
                    invoices.c.customer_id,
                    func.count().label("n"),
                    func.sum(invoices.c.outstanding_cents).label("cents"),
                    func.min(invoices.c.due_date).label("oldest"),
                )
                .where(invoices.c.customer_id.in_(ids), invoices.c.status == "open")
                .group_by(invoices.c.customer_id)
            )
        }
        open_todos = dict(
            session.execute(
                select(todos.c.customer_id, func.count())
                .where(todos.c.customer_id.in_(ids), todos.c.status == "open")
                .group_by(todos.c.customer_id)
            ).all()
        )
    for r in rows:
        agg = open_invoices.get(r["id"])
        r["open_invoices"] = agg.n if agg else 0
        r["outstanding_cents"] = int(agg.cents or 0) if agg else 0
        r["days_overdue"] = max(0, (today - agg.oldest).days) if agg and agg.oldest else 0
        r["open_todos"] = open_todos.get(r["id"], 0)
    return Page(rows, total=total, offset=offset, limit=limit)


def customer_row_id(session: Session, external_id: str) -> int:
    found = session.scalar(select(customers.c.id).where(customers.c.external_id == external_id))
    if found is None:
        raise NotFoundError(f"no customer {external_id!r}")
    return found


def timeline(session: Session, customer_id: int, *, limit: int = 50, offset: int = 0) -> Page:
    """R1, E6: the customer's emails sent (with their status, "opened" once the pixel loaded) and received,
    its to-dos and its pauses, newest first.

    Each row: ``what`` (out | in | todo | pause), ``id``, ``at``, ``kind``, ``title``, ``status``,
    ``who`` (sender or performer, sender address, assignee, who paused), ``later`` (opened, closed,
    ended) and ``until`` (a pause's last day).
    """
    with settled(session) as shown:  # an interrupted send reads `unknown`, as everywhere else
        sent = select(
            literal("out", String).label("what"),
            messages.c.id,
            func.coalesce(messages.c.sent_at, messages.c.created_at).label("at"),
            messages.c.kind,
            messages.c.subject.label("title"),
            shown.label("status"),
            func.coalesce(messages.c.performed_by, messages.c.sender_ref).label("who"),
            messages.c.opened_at.label("later"),
            cast(null(), Date).label("until"),
        ).where(messages.c.customer_id == customer_id)
        received = select(
            literal("in", String),
            inbox.c.id,
            func.coalesce(inbox.c.received_at, inbox.c.imported_at),
            inbox.c.kind,
            inbox.c.subject,
            inbox.c.status,
            inbox.c.from_address,
            cast(null(), UTCDateTime()),
            cast(null(), Date),
        ).where(inbox.c.customer_id == customer_id, inbox.c.status != "deleted")
        work = select(
            literal("todo", String),
            todos.c.id,
            todos.c.created_at,
            todos.c.kind,
            todos.c.reason,
            todos.c.status,
            func.coalesce(todos.c.closed_by, todos.c.assignee),
            todos.c.closed_at,
            cast(null(), Date),
        ).where(todos.c.customer_id == customer_id)
        paused = select(
            literal("pause", String),
            pauses.c.id,
            pauses.c.created_at,
            pauses.c.reason,
            pauses.c.note,
            func.coalesce(pauses.c.ended_how, "active"),
            pauses.c.created_by,
            pauses.c.ended_at,
            # An incident's dispute holds until it is closed: no day to show (the title names the incident).
            case((pauses.c.until == UNTIL_CLOSED, cast(null(), Date)), else_=pauses.c.until),
        ).where(pauses.c.customer_id == customer_id)
        everything = union_all(sent, received, work, paused).subquery("timeline")
        total = session.scalar(select(func.count()).select_from(everything)) or 0
        rows = [
            dict(r)
            for r in session.execute(
                select(everything)
                .order_by(everything.c.at.desc(), everything.c.what, everything.c.id.desc())
                .limit(limit)
                .offset(offset)
            ).mappings()
        ]
    return Page(rows, total=total, offset=offset, limit=limit)


def sent_from_todo(session: Session, todo_id: int, customer_id: int) -> dict[str, Any] | None:
    """The latest email sent from a to-do (A8: from whom, by whom), found by its customer (``todo_id`` has no index)."""
    with settled(session) as shown:
        row = (
            session.execute(
                select(
                    messages.c.id,
                    messages.c.created_at,
                    messages.c.sent_at,
                    messages.c.from_name,
                    messages.c.from_address,
                    messages.c.to_addresses,
                    messages.c.performed_by,
                    messages.c.error,
                    shown.label("status"),
                )
                .where(messages.c.customer_id == customer_id, messages.c.todo_id == todo_id, messages.c.kind == "manual")
                .order_by(messages.c.id.desc())
                .limit(1)
            )
            .mappings()
            .first()
        )
    return dict(row) if row else None


def todos_page(
    session: Session,
    *,
    status: str | None = "open",
    assignee: str | None = None,
    kind: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page:
    """To-dos with their customer: open ones oldest first (the work queue), closed ones newest first."""
    where = []
    if status:
        where.append(todos.c.status == status)
    if assignee:
        where.append(todos.c.assignee == assignee)
    if kind:
        where.append(todos.c.kind == kind)
    total = session.scalar(select(func.count()).select_from(todos).where(*where)) or 0
    order = todos.c.id if status == "open" else todos.c.id.desc()
    query = (
        select(
            todos.c.id,
            todos.c.kind,
            todos.c.status,
            todos.c.plan_id,
            todos.c.step_id,
            todos.c.assignee,
            todos.c.reason,
            todos.c.created_at,
            todos.c.closed_at,
            todos.c.closed_by,
            customers.c.external_id.label("customer"),
            customers.c.name.label("customer_name"),
        )
        .join(customers, customers.c.id == todos.c.customer_id)
        .where(*where)
        .order_by(order)
        .limit(limit)
        .offset(offset)
    )
    return Page([dict(r) for r in session.execute(query).mappings()], total=total, offset=offset, limit=limit)


def applies_page(session: Session, *, limit: int = 50, offset: int = 0) -> Page:
    """The audit trail of applies, newest first."""
    total = session.scalar(select(func.count()).select_from(applies)) or 0
    query = select(*_apply_columns()).order_by(applies.c.id.desc()).limit(limit).offset(offset)
    return Page([dict(r) for r in session.execute(query).mappings()], total=total, offset=offset, limit=limit)


def _apply_columns() -> list:
    # Not the state the last apply left (drift's record: as big as the config).
    return [c for c in applies.c if c.name != "state"]


def one_apply(session: Session, apply_id: int) -> dict[str, Any]:
    row = session.execute(select(*_apply_columns()).where(applies.c.id == apply_id)).mappings().first()
    if row is None:
        raise NotFoundError(f"no apply #{apply_id}")
    return dict(row)


def overview(session: Session, member: str) -> dict[str, int]:
    """What the home page counts: open to-dos (the member's and all), alerts to acknowledge."""
    open_todos = select(func.count()).select_from(todos).where(todos.c.status == "open")
    return {
        "todos": session.scalar(open_todos) or 0,
        "my_todos": session.scalar(open_todos.where(todos.c.assignee == member)) or 0,
        "alerts": session.scalar(select(func.count()).select_from(alerts).where(alerts.c.acked_at.is_(None))) or 0,
    }
