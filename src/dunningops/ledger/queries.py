"""Read-side of the ledger for the CLI: customers and contacts with their aggregates, in set-based SQL;
a customer's detail with its pauses and its mail, sent and received (R1)."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, String, and_, case, exists, func, literal, select, union_all
from sqlalchemy.orm import Session

from dunningops.errors import InvalidInputError, NotFoundError
from dunningops.ledger.assignment import applied_assignments, plan_expression
from dunningops.outgoing.history import settled
from dunningops.store.schema import (
    ContactFunctionLinkRow,
    ContactRow,
    CustomerRow,
    InboxMessageRow,
    IncidentRow,
    InvoiceRow,
    MessageRow,
    PauseRow,
)

customers = CustomerRow.__table__
contacts = ContactRow.__table__
invoices = InvoiceRow.__table__
links = ContactFunctionLinkRow.__table__
pauses = PauseRow.__table__
messages, inbox = MessageRow.__table__, InboxMessageRow.__table__
incidents = IncidentRow.__table__
MAIL_LIMIT = 20  # `customers show`: the latest emails, sent and received; the rest counted


class Page(list):
    """One page of a listing: a list of its rows, with where it sits in the whole.

    A list, so callers that only want rows iterate it; ``total`` is every row the
    filters match, so nothing is cut off without a word.
    """

    def __init__(self, rows: list[dict[str, Any]], *, total: int, offset: int, limit: int | None):
        super().__init__(rows)
        self.total, self.offset, self.limit = total, offset, limit

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self

    @property
    def remaining(self) -> int:
        """Rows after this page."""
        return max(0, self.total - self.offset - len(self))


# T8: customers and invoices by the rating status of their incidents.
RATING_STATUSES = ("rated", "unrated", "none")


def rating_filter(status: str, column) -> ColumnElement[bool]:
    """Rows of ``column`` (``customers.c.id`` or ``invoices.c.id``) by their incidents' rating status:
    rated (one of them is rated), unrated (incidents, none rated yet), none (no incident); EXISTS each."""
    if status not in RATING_STATUSES:
        raise InvalidInputError(f"rating status {status!r}: one of {', '.join(RATING_STATUSES)}")
    owner = incidents.c.customer_id if column.table is customers else incidents.c.invoice_id
    some = exists().where(owner == column)
    rated = exists().where(owner == column, incidents.c.rating.is_not(None))
    if status == "rated":
        return rated
    if status == "unrated":
        return and_(some, ~rated)
    return ~some


def _check_page(limit: int | None, offset: int) -> None:
    if limit is not None and limit < 0:
        raise InvalidInputError(f"limit {limit} is negative (a number of rows, or none for all)")
    if offset < 0:
        raise InvalidInputError(f"offset {offset} is negative (the number of rows to skip)")


def list_customers(
    session: Session,
    *,
    today: date,
    origin: str | None = None,
    plan: str | None = None,
    overdue_days: int | None = None,
    rating: str | None = None,
    limit: int | None = 100,
    offset: int = 0,
) -> Page:
    """Customers with their plan, contacts, open invoices and outstanding amount, by external id.

    ``rating``: by their incidents' rating status (``rating_filter``). ``limit`` None lists them
    all; the page's ``total`` counts every customer the filters match.
    """
    _check_page(limit, offset)
    plan_id = plan_expression(applied_assignments(session), customers).label("plan")
    open_inv = (
        select(
            invoices.c.customer_id,
            func.count().label("open_invoices"),
            func.sum(invoices.c.outstanding_cents).label("outstanding_cents"),
            func.min(invoices.c.due_date).label("oldest_due"),
        )
        .where(invoices.c.status == "open")
        .group_by(invoices.c.customer_id)
        .subquery()
    )
    filters = []
    if origin:
        filters.append(customers.c.origin == origin)
    if plan:
        filters.append(plan_id == plan)
    if overdue_days is not None:
        filters.append(open_inv.c.oldest_due <= date.fromordinal(today.toordinal() - overdue_days))
    if rating is not None:
        filters.append(rating_filter(rating, customers.c.id))
    joined = customers.outerjoin(open_inv, open_inv.c.customer_id == customers.c.id)
    total = session.scalar(select(func.count()).select_from(joined).where(*filters))
    n_contacts = select(func.count()).where(contacts.c.customer_id == customers.c.id).scalar_subquery()
    query = (
        select(
            customers.c.external_id,
            customers.c.name,
            customers.c.country,
            customers.c.currency,
            customers.c.origin,
            plan_id,
            n_contacts.label("contacts"),
            func.coalesce(open_inv.c.open_invoices, 0).label("open_invoices"),
            func.coalesce(open_inv.c.outstanding_cents, 0).label("outstanding_cents"),
            open_inv.c.oldest_due,
            customers.c.paused_until,
        )
        .select_from(joined)
        .where(*filters)
        .order_by(customers.c.external_id)
        .limit(limit)
        .offset(offset)
    )
    rows = []
    for row in session.execute(query).mappings():
        item = dict(row)
        oldest = item.pop("oldest_due")
        item["days_overdue"] = max(0, (today - oldest).days) if oldest else 0
        rows.append(item)
    return Page(rows, total=total or 0, offset=offset, limit=limit)


INVOICE_STATUSES = ("open", "paid", "void")


def list_invoices(
    session: Session,
    *,
    today: date,
    customer: str | None = None,
    status: str | None = "open",
    rating: str | None = None,
    limit: int | None = 100,
    offset: int = 0,
) -> Page:
    """Invoices with their customer, by due date then external id; ``status`` None: all of them;
    ``rating``: by the rating status of the incidents about each (``rating_filter``)."""
    _check_page(limit, offset)
    filters = []
    if customer is not None:
        filters.append(invoices.c.customer_id == customer_id(session, customer))
    if status is not None:
        if status not in INVOICE_STATUSES:
            raise InvalidInputError(f"invoice status {status!r}: one of {', '.join(INVOICE_STATUSES)}")
        filters.append(invoices.c.status == status)
    if rating is not None:
        filters.append(rating_filter(rating, invoices.c.id))
    total = session.scalar(select(func.count()).select_from(invoices).where(*filters))
    query = (
        select(
            invoices.c.external_id,
            invoices.c.number,
            customers.c.external_id.label("customer"),
            invoices.c.due_date,
            invoices.c.amount_cents,
            invoices.c.outstanding_cents,
            invoices.c.currency,
            invoices.c.status,
            invoices.c.paused,
            invoices.c.paused_until,
            invoices.c.pause_reason,
        )
        .join(customers, customers.c.id == invoices.c.customer_id)
        .where(*filters)
        .order_by(invoices.c.due_date, invoices.c.external_id)
        .limit(limit)
        .offset(offset)
    )
    rows = []
    for row in session.execute(query).mappings():
        item = dict(row)
        item["days_overdue"] = (today - item["due_date"]).days if item["status"] == "open" else None
        rows.append(item)
    return Page(rows, total=total or 0, offset=offset, limit=limit)


def customer_id(session: Session, external_id: str) -> int:
    found = session.scalar(select(customers.c.id).where(customers.c.external_id == external_id))
    if found is None:
        raise NotFoundError(f"no customer {external_id!r}")
    return found


def show_customer(session: Session, external_id: str, today: date, *, mail_limit: int = MAIL_LIMIT) -> dict[str, Any]:
    """One customer: plan, contacts, open invoices (with their pauses), pauses (the active one and the
    history, newest first) and its mail, sent and received together, newest first (``mail_limit`` of
    them; ``mail_total`` counts all)."""
    cid = customer_id(session, external_id)
    plan_id = plan_expression(applied_assignments(session), customers).label("plan")
    head = dict(session.execute(select(customers, plan_id).where(customers.c.id == cid)).mappings().one())
    head["contacts"] = list(list_contacts(session, customer=external_id, limit=None))
    head["open_invoices"] = [
        {**dict(r), "days_overdue": (today - r["due_date"]).days}
        for r in session.execute(
            select(
                invoices.c.external_id,
                invoices.c.number,
                invoices.c.due_date,
                invoices.c.amount_cents,
                invoices.c.outstanding_cents,
                invoices.c.currency,
                invoices.c.paused,
                invoices.c.paused_until,
                invoices.c.pause_reason,
            )
            .where(invoices.c.customer_id == cid, invoices.c.status == "open")
            .order_by(invoices.c.due_date)
        ).mappings()
    ]
    head["pauses"] = pause_history(session, cid)
    head["incidents"] = customer_incidents(session, cid)
    head["pause"] = next((p for p in head["pauses"] if p["invoice"] is None and p["ended_how"] is None), None)
    head["mail"], head["mail_total"] = mail_history(session, cid, limit=mail_limit)
    return head


INCIDENT_LIMIT = 20  # a customer's picture: its latest incidents (`incident list --customer` has them all)


def customer_incidents(session: Session, cid: int, *, limit: int = INCIDENT_LIMIT) -> list[dict[str, Any]]:
    """T8: the customer's latest incidents, newest first, with their rating."""
    query = (
        select(
            incidents.c.reference,
            incidents.c.kind,
            incidents.c.state,
            invoices.c.number.label("invoice"),
            incidents.c.opened_at,
            incidents.c.closed_at,
            incidents.c.rating,
            incidents.c.rating_message,
            incidents.c.rated_at,
        )
        .outerjoin(invoices, invoices.c.id == incidents.c.invoice_id)
        .where(incidents.c.customer_id == cid)
        .order_by(incidents.c.opened_at.desc(), incidents.c.id.desc())
        .limit(limit)
    )
    return [dict(r) for r in session.execute(query).mappings()]


def pause_history(session: Session, cid: int) -> list[dict[str, Any]]:
    """The customer's pauses and its invoices', newest first; ``ended_how`` None: still active."""
    query = (
        select(
            pauses.c.id,
            invoices.c.number.label("invoice"),
            pauses.c.reason,
            pauses.c.until,
            pauses.c.note,
            pauses.c.created_at,
            pauses.c.created_by,
            pauses.c.ended_at,
            pauses.c.ended_how,
        )
        .outerjoin(invoices, invoices.c.id == pauses.c.invoice_id)
        .where(pauses.c.customer_id == cid)
        .order_by(pauses.c.created_at.desc(), pauses.c.id.desc())
    )
    return [dict(r) for r in session.execute(query).mappings()]


def mail_history(session: Session, cid: int, *, limit: int = MAIL_LIMIT) -> tuple[list[dict[str, Any]], int]:
    """R1: the customer's emails, sent (``out``) and received (``in``, not deleted), newest first; and how many in all."""
    with settled(session) as shown:  # an interrupted send reads `unknown`, as in `messages`
        sent = select(
            literal("out", String).label("direction"),
            messages.c.id,
            func.coalesce(messages.c.sent_at, messages.c.created_at).label("at"),
            messages.c.kind,
            messages.c.subject,
            shown.label("status"),
        ).where(messages.c.customer_id == cid)
        received = select(
            literal("in", String).label("direction"),
            inbox.c.id,
            func.coalesce(inbox.c.received_at, inbox.c.imported_at).label("at"),
            inbox.c.kind,
            inbox.c.subject,
            inbox.c.status,
        ).where(inbox.c.customer_id == cid, inbox.c.status != "deleted")
        both = union_all(sent, received).subquery("mail")
        total = session.scalar(select(func.count()).select_from(both)) or 0
        rows = session.execute(
            select(both).order_by(both.c.at.desc(), both.c.direction, both.c.id.desc()).limit(limit)
        ).mappings()
        return [dict(r) for r in rows], total


def list_contacts(
    session: Session,
    *,
    customer: str | None = None,
    invalid: bool = False,
    function: str | None = None,
    contact_id: int | None = None,
    limit: int | None = 1000,
    offset: int = 0,
) -> Page:
    """Contacts with their customer and functions, by customer then contact id; ``total`` counts them all."""
    _check_page(limit, offset)
    filters = []
    if customer:
        filters.append(customers.c.external_id == customer)
    if invalid:
        filters.append(contacts.c.valid.is_(False))
    if contact_id is not None:
        filters.append(contacts.c.id == contact_id)
    if function:
        filters.append(contacts.c.id.in_(select(links.c.contact_id).where(links.c.function_id == function)))
    joined = contacts.join(customers, customers.c.id == contacts.c.customer_id)
    total = session.scalar(select(func.count()).select_from(joined).where(*filters))
    query = (
        select(
            contacts.c.id,
            customers.c.external_id.label("customer"),
            contacts.c.email,
            contacts.c.name,
            contacts.c.phone,
            contacts.c.job,
            contacts.c.is_primary,
            contacts.c.valid,
            contacts.c.invalid_reason,
        )
        .select_from(joined)
        .where(*filters)
        .order_by(customers.c.external_id, contacts.c.id)
        .limit(limit)
        .offset(offset)
    )
    rows = [dict(r) for r in session.execute(query).mappings()]
    functions = _functions_of(session)([r["id"] for r in rows])
    for r in rows:
        r["functions"] = functions.get(r["id"], [])
    return Page(rows, total=total or 0, offset=offset, limit=limit)


def _functions_of(session: Session):
    def lookup(ids: list[int]) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            for cid, fid in session.execute(
                select(links.c.contact_id, links.c.function_id).where(links.c.contact_id.in_(chunk)).order_by(links.c.function_id)
            ):
                out.setdefault(cid, []).append(fid)
        return out

    return lookup


def reach_by_plan(session: Session, today: date) -> list[dict[str, Any]]:
    """Who each plan would reach: customers, open and overdue invoices, outstanding, customers with no valid contact."""
    plan_id = plan_expression(applied_assignments(session), customers).label("plan")
    valid = select(func.count()).where(contacts.c.customer_id == customers.c.id, contacts.c.valid.is_(True)).scalar_subquery()
    per_customer = (
        select(
            customers.c.id,
            plan_id,
            valid.label("valid_contacts"),
            func.count(invoices.c.id).label("open_invoices"),
            func.sum(case((invoices.c.due_date < today, 1), else_=0)).label("overdue_invoices"),
            func.coalesce(func.sum(invoices.c.outstanding_cents), 0).label("outstanding_cents"),
        )
        .outerjoin(invoices, and_(invoices.c.customer_id == customers.c.id, invoices.c.status == "open"))
        .group_by(customers.c.id, plan_id, valid)
        .subquery()
    )
    query = (
        select(
            per_customer.c.plan,
            func.count().label("customers"),
            func.sum(case((per_customer.c.open_invoices > 0, 1), else_=0)).label("with_open_invoices"),
            func.sum(per_customer.c.open_invoices).label("open_invoices"),
            func.sum(per_customer.c.overdue_invoices).label("overdue_invoices"),
            func.sum(per_customer.c.outstanding_cents).label("outstanding_cents"),
            func.sum(case((per_customer.c.valid_contacts == 0, 1), else_=0)).label("without_valid_contact"),
        )
        .group_by(per_customer.c.plan)
        .order_by(per_customer.c.plan)
    )
    return [{k: (v if k == "plan" else int(v or 0)) for k, v in r.items()} for r in session.execute(query).mappings()]
