"""Ending pauses past their date, first thing in each send cycle: ``expired``, ``kept`` (what was
promised is paid) or ``broken`` (a promise to pay past its date, unpaid: a to-do and an alert).
What a promise covers, and how the dunning resumes: see ``pauses``."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, bindparam, select, union_all, update
from sqlalchemy.orm import Session

from dunningops.alerts.events import AlertEvent
from dunningops.dunning.due import invoice_paused
from dunningops.dunning.pauses import CHUNK, LABELS, customers, invoices, members, pauses, todos
from dunningops.store.bulk import insert_ids
from dunningops.tables import money

__all__ = ["DueInvoice", "Ending", "end", "end_expired", "expiring"]

TODO_KIND = "promise_broken"


@dataclass(frozen=True)
class DueInvoice:
    id: int
    number: str
    outstanding_cents: int
    currency: str


@dataclass(frozen=True)
class Ending:
    """An active pause past its date, and how it ends: expired | kept | broken."""

    pause_id: int
    customer_id: int
    customer: str  # external id
    customer_name: str
    invoice_id: int | None  # None: a pause of the whole customer
    invoice: str | None  # the invoice's number
    reason: str
    until: date
    how: str
    due: tuple[DueInvoice, ...] = ()  # broken: what is still unpaid
    assignee: str | None = None  # broken: who gets the to-do

    @property
    def still_due(self) -> str:
        """What a broken promise leaves unpaid, per currency: ``1 500.00 EUR`` (``+`` between currencies)."""
        totals: dict[str, int] = defaultdict(int)
        for inv in self.due:
            totals[inv.currency] += inv.outstanding_cents
        return " + ".join(money(cents, currency) for currency, cents in sorted(totals.items()))

    @property
    def summary(self) -> str:
        """One line, as the to-do's reason says it."""
        if self.how != "broken":
            return f"{LABELS.get(self.reason, self.reason)} until {self.until}: {self.how}"
        n = len(self.due)
        return f"promise to pay by {self.until} broken: {n} invoice{'s' if n != 1 else ''}, {self.still_due} still due"

    def to_dict(self) -> dict[str, Any]:
        return {
            "customer": self.customer,
            "invoice": self.invoice,
            "reason": self.reason,
            "until": self.until.isoformat(),
            "how": self.how,
            "summary": self.summary,
            "due": [{"number": i.number, "outstanding_cents": i.outstanding_cents, "currency": i.currency} for i in self.due],
        }


def _past(today: date):
    return and_(pauses.c.ended_at.is_(None), pauses.c.until < today)


def expiring(session: Session, *, today: date) -> list[Ending]:
    """Every active pause past its date on ``today``, and how it ends; reads only (the dry run shows these).

    Three statements whatever the number of pauses: the pauses, the invoices their promises cover,
    the members (for the assignee).
    """
    target = invoices.alias("target")
    rows = session.execute(
        select(
            pauses.c.id,
            pauses.c.customer_id,
            pauses.c.invoice_id,
            pauses.c.reason,
            pauses.c.until,
            customers.c.external_id,
            customers.c.name,
            customers.c.account_manager,
            target.c.number,
            target.c.status,
        )
        .join(customers, customers.c.id == pauses.c.customer_id)
        .outerjoin(target, target.c.id == pauses.c.invoice_id)
        .where(_past(today))
        .order_by(pauses.c.id)
    ).all()
    if not rows:
        return []
    due = _promised_and_unpaid(session, today)
    roles: dict[str, str] = {m: role for m, role in session.execute(select(members.c.id, members.c.role))}
    owner = next((m for m, role in sorted(roles.items()) if role == "owner"), None)
    out = []
    for r in rows:
        unpaid = tuple(due.get(r.id, ()))
        if r.reason != "promise":
            how = "expired"
        elif unpaid:
            how = "broken"
        elif r.invoice_id is not None and r.status != "paid":
            how = "expired"  # void: nothing is owed any more, and nothing was paid
        else:
            how = "kept"
        assignee = (r.account_manager if r.account_manager in roles else owner) if how == "broken" else None
        out.append(
            Ending(
                pause_id=r.id,
                customer_id=r.customer_id,
                customer=r.external_id,
                customer_name=r.name,
                invoice_id=r.invoice_id,
                invoice=r.number,
                reason=r.reason,
                until=r.until,
                how=how,
                due=unpaid if how == "broken" else (),
                assignee=assignee,
            )
        )
    return out


def _promised_and_unpaid(session: Session, today: date) -> dict[int, list[DueInvoice]]:
    """Per promise past its date: the open invoices it covers (one UNION ALL, no query per pause)."""
    promised = select(pauses.c.id, pauses.c.customer_id, pauses.c.invoice_id, pauses.c.until).where(
        _past(today), pauses.c.reason == "promise"
    )
    promised_sq = promised.subquery("promised")
    cols = (invoices.c.id, invoices.c.number, invoices.c.outstanding_cents, invoices.c.currency, invoices.c.due_date)
    of_invoice = select(promised_sq.c.id.label("pause_id"), *cols).join(
        invoices, and_(invoices.c.id == promised_sq.c.invoice_id, invoices.c.status == "open")
    )
    of_customer = (
        select(promised_sq.c.id.label("pause_id"), *cols)
        .join(
            invoices,
            and_(
                invoices.c.customer_id == promised_sq.c.customer_id,
                invoices.c.status == "open",
                invoices.c.due_date <= promised_sq.c.until,
            ),
        )
        # An invoice under a pause of its own (a dispute) after today is not part of the promise.
        .where(promised_sq.c.invoice_id.is_(None), ~invoice_paused(invoices, today))
    )
    both = union_all(of_invoice, of_customer).subquery("covered")
    out: dict[int, list[DueInvoice]] = defaultdict(list)
    for r in session.execute(select(both).order_by(both.c.pause_id, both.c.due_date, both.c.id)):
        out[r.pause_id].append(DueInvoice(r.id, r.number, r.outstanding_cents, r.currency))
    return out


def end(session: Session, endings: list[Ending], *, today: date, now: datetime) -> list[AlertEvent]:
    """Write what ``expiring`` found: the pauses ended, their targets cleared, a to-do per broken promise.

    Returns one ``promise_broken`` alert event per broken promise, for the caller to record and announce.
    """
    if not endings:
        return []
    session.execute(
        update(pauses)
        .where(pauses.c.id == bindparam("pid"), pauses.c.ended_at.is_(None))
        .values(ended_at=now, ended_how=bindparam("how")),
        [{"pid": e.pause_id, "how": e.how} for e in endings],
    )
    # Only a copy past its date is cleared: a pause someone set meanwhile (until today or later) stays.
    for ids in _chunks(sorted({e.customer_id for e in endings if e.invoice_id is None})):
        session.execute(
            update(customers)
            .where(customers.c.id.in_(ids), customers.c.paused_until < today)
            .values(paused_until=None, pause_reason=None, updated_at=now)
        )
    for ids in _chunks(sorted({e.invoice_id for e in endings if e.invoice_id is not None})):
        session.execute(
            update(invoices)
            .where(invoices.c.id.in_(ids), invoices.c.paused_until < today)
            .values(paused=False, paused_until=None, pause_reason=None, updated_at=now)
        )
    broken = [e for e in endings if e.how == "broken"]
    if not broken:
        return []
    todo_ids = insert_ids(
        session,
        todos,
        [
            {
                "kind": TODO_KIND,
                "status": "open",
                "customer_id": e.customer_id,
                "invoice_id": e.invoice_id,
                "plan_id": None,
                "step_id": None,
                "assignee": e.assignee,
                "reason": e.summary,
                "payload": {
                    "pause_id": e.pause_id,
                    "until": e.until.isoformat(),
                    "invoice_ids": [i.id for i in e.due],
                    "invoices": [i.number for i in e.due],
                },
                "created_at": now,
            }
            for e in broken
        ],
    )
    return [
        AlertEvent(
            kind="promise_broken",
            title=f"Promise to pay broken: {e.customer_name} ({e.customer}), {e.still_due} still due",
            customer_id=e.customer_id,
            details={
                "customer": e.customer,
                "invoice": e.invoice,
                "until": e.until.isoformat(),
                "invoices": [i.number for i in e.due],
                "still_due": e.still_due,
                "todo_id": todo_id,
                "assignee": e.assignee,
                "pause_id": e.pause_id,
            },
        )
        for e, todo_id in zip(broken, todo_ids, strict=True)
    ]


def end_expired(session: Session, *, today: date, now: datetime) -> list[AlertEvent]:
    """End every active pause past its date (``expiring`` then ``end``); the alert events of broken promises."""
    return end(session, expiring(session, today=today), today=today, now=now)


def _chunks(ids: list[int]):
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]
