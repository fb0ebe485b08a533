"""Pauses and promises to pay: stop chasing one customer, or one invoice, for a reason, until a date.

A pause is a row of ``pauses`` (the history). The active one is also copied onto its target: the
customer's ``paused_until`` and ``pause_reason``, or the invoice's ``paused``, ``paused_until`` and
``pause_reason``, which is what decide()'s one query reads. A target has at most one active pause:
pausing it again ends the active one (``resumed``) and starts the new one.

A pause holds through its ``until`` day. The first send cycle after that day ends it
(``end_expired``): ``expired``; for a promise to pay, ``kept`` when what was promised is paid, else
``broken``, which makes a ``promise_broken`` to-do for the customer's account manager (else the
owner) and an alert event that the cycle hands back in its report. What a promise covers: for an
invoice pause, that invoice (a void one ends ``expired``: nothing is owed, nothing was kept); for a
customer pause, the customer's open invoices due by the promised date, except those under a pause
of their own (a disputed invoice is not part of a promise to pay).

After a pause (ended by its date or resumed by a person) the dunning goes on where it stopped.
Nothing is recorded for the paused days, so each target's next step is still the one after the last
one performed. When several steps came due meanwhile, a run performs one step per target, never all
of them at once and never skipping one: the next follows on a later run, the plan's minimum delay
between contacts after the email before it. A target with nothing performed yet enters its plan as
any new target does (its first step; with ``entry: by_age``, the step its age has reached).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo

from sqlalchemy import and_, bindparam, insert, select, union_all, update
from sqlalchemy.orm import Session

from dunningops.alerts.events import AlertEvent
from dunningops.dunning.schedule import invoice_paused
from dunningops.errors import ConflictError, InvalidInputError, NotFoundError
from dunningops.store.bulk import insert_ids
from dunningops.store.schema import CustomerRow, InvoiceRow, MemberRow, PauseRow, SettingsRow, TodoRow

__all__ = [
    "REASONS",
    "DueInvoice",
    "Ending",
    "PauseReason",
    "company_today",
    "end",
    "end_expired",
    "expiring",
    "pause_customer",
    "pause_invoice",
    "resolve_invoice",
    "resume_customer",
    "resume_invoice",
]

pauses, customers, invoices = PauseRow.__table__, CustomerRow.__table__, InvoiceRow.__table__
todos, members, settings = TodoRow.__table__, MemberRow.__table__, SettingsRow.__table__

PauseReason = Literal["promise", "dispute", "other"]
REASONS: tuple[PauseReason, ...] = get_args(PauseReason)
# What the copied ``pause_reason`` says, as the dry run and `customers show` print it.
LABELS = {"promise": "promise to pay", "dispute": "dispute", "other": "other"}
# About five years: a pause further ahead is a typo (2062 for 2026), not a plan.
MAX_AHEAD = timedelta(days=5 * 365 + 2)
NOTE_MAX = 2000
TODO_KIND = "promise_broken"
CHUNK = 1000  # ids per IN list (SQLite's variable limit)


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
        return " + ".join(_money(cents, currency) for currency, cents in sorted(totals.items()))

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


def _money(cents: int, currency: str) -> str:
    return f"{cents / 100:,.2f}".replace(",", " ") + f" {currency}"


# --- pausing and resuming, by a person -----------------------------------------------------------


def company_today(session: Session, now: datetime) -> date:
    """``now``'s date in the company's time zone (the applied settings'), the day a pause is counted in."""
    data = session.scalar(select(settings.c.data).where(settings.c.id == "settings")) or {}
    zone = (data.get("company") or {}).get("timezone")
    return now.astimezone(ZoneInfo(zone)).date() if zone else now.date()


def _check(session: Session, *, until: date, reason: str, note: str | None, by: str | None, today: date) -> None:
    if reason not in REASONS:
        raise InvalidInputError(f"pause reason {reason!r}: one of {', '.join(REASONS)}")
    if until < today:
        raise InvalidInputError(f"pause until {until}: the date is past (today is {today})")
    if until > today + MAX_AHEAD:
        raise InvalidInputError(f"pause until {until}: more than five years ahead")
    if note is not None and len(note) > NOTE_MAX:
        raise InvalidInputError(f"pause note: {len(note)} characters, at most {NOTE_MAX}")
    # The history names who paused: a typo there would be kept forever.
    if by is not None and session.scalar(select(members.c.id).where(members.c.id == by)) is None:
        raise NotFoundError(f"no member {by!r}")


def _customer(session: Session, external_id: str):
    # FOR UPDATE (PostgreSQL): two people pausing one customer at once leave one active pause.
    row = session.execute(select(customers).where(customers.c.external_id == external_id).with_for_update()).mappings().first()
    if row is None:
        raise NotFoundError(f"no customer {external_id!r}")
    return row


def _invoice(session: Session, external_id: str):
    row = (
        session.execute(
            select(invoices, customers.c.external_id.label("customer"))
            .join(customers, customers.c.id == invoices.c.customer_id)
            .where(invoices.c.external_id == external_id)
            .with_for_update(of=invoices)
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFoundError(f"no invoice {external_id!r}")
    return row


def resolve_invoice(session: Session, number_or_external_id: str) -> str:
    """The external id of the invoice given by its external id, else by its number (which must be unique)."""
    if session.scalar(select(invoices.c.id).where(invoices.c.external_id == number_or_external_id)) is not None:
        return number_or_external_id
    found = session.scalars(
        select(invoices.c.external_id).where(invoices.c.number == number_or_external_id).order_by(invoices.c.external_id).limit(4)
    ).all()
    if not found:
        raise NotFoundError(f"no invoice {number_or_external_id!r} (neither an external id nor a number)")
    if len(found) > 1:
        listed = ", ".join(found[:3]) + (", …" if len(found) > 3 else "")
        raise InvalidInputError(f"several invoices are numbered {number_or_external_id!r} ({listed}): give the external id")
    return found[0]


def _end_active(session: Session, customer_id: int, invoice_id: int | None, now: datetime) -> dict | None:
    """End the target's active pause as ``resumed``; the one ended (reason, until), if any."""
    target = pauses.c.invoice_id.is_(None) if invoice_id is None else pauses.c.invoice_id == invoice_id
    ended = session.execute(
        update(pauses)
        .where(pauses.c.customer_id == customer_id, target, pauses.c.ended_at.is_(None))
        .values(ended_at=now, ended_how="resumed")
        .returning(pauses.c.reason, pauses.c.until)
    ).first()
    return {"reason": ended.reason, "until": ended.until} if ended else None


def _copied(until: date | None, label: str | None) -> dict | None:
    """A pause copied onto its target without a history row (set before pauses had one)."""
    return {"reason": label, "until": until} if until or label else None


def _insert(session: Session, *, customer_id: int, invoice_id: int | None, until, reason, note, by, now) -> int:
    return session.execute(
        insert(pauses)
        .values(
            customer_id=customer_id, invoice_id=invoice_id, reason=reason, note=note, until=until, created_at=now, created_by=by
        )
        .returning(pauses.c.id)
    ).scalar_one()


def pause_customer(
    session: Session,
    external_id: str,
    *,
    until: date,
    reason: PauseReason,
    note: str | None = None,
    by: str | None = None,
    now: datetime,
    today: date | None = None,
) -> dict[str, Any]:
    """Stop chasing a customer (every plan, every invoice) through ``until``; replaces an active pause.

    Args:
        today: the company's date (default: ``now`` in the company's time zone); ``until`` is that day or later.

    Raises:
        NotFoundError: no such customer, or ``by`` is not a member.
        InvalidInputError: ``until`` past or more than five years ahead, an unknown reason, a note too long.
    """
    c = _customer(session, external_id)
    _check(session, until=until, reason=reason, note=note, by=by, today=today or company_today(session, now))
    replaced = _end_active(session, c["id"], None, now) or _copied(c["paused_until"], c["pause_reason"])
    pause_id = _insert(session, customer_id=c["id"], invoice_id=None, until=until, reason=reason, note=note, by=by, now=now)
    session.execute(
        update(customers).where(customers.c.id == c["id"]).values(paused_until=until, pause_reason=LABELS[reason], updated_at=now)
    )
    return {
        "pause_id": pause_id,
        "customer": external_id,
        "name": c["name"],
        "invoice": None,
        "reason": reason,
        "until": until,
        "note": note,
        "by": by,
        "replaced": replaced,
    }


def resume_customer(session: Session, external_id: str, *, by: str | None = None, now: datetime) -> dict[str, Any]:
    """Chase the customer again from now: its active pause ends ``resumed``.

    Raises:
        NotFoundError: no such customer. ConflictError: the customer is not paused.
    """
    c = _customer(session, external_id)
    ended = _end_active(session, c["id"], None, now) or _copied(c["paused_until"], c["pause_reason"])
    if ended is None:
        raise ConflictError(f"customer {external_id} is not paused")
    session.execute(
        update(customers).where(customers.c.id == c["id"]).values(paused_until=None, pause_reason=None, updated_at=now)
    )
    return {"customer": external_id, "name": c["name"], "invoice": None, "ended": ended, "by": by}


def pause_invoice(
    session: Session,
    invoice_external_id: str,
    *,
    until: date,
    reason: PauseReason,
    note: str | None = None,
    by: str | None = None,
    now: datetime,
    today: date | None = None,
) -> dict[str, Any]:
    """Stop chasing one open invoice through ``until`` (e.g. a dispute); replaces its active pause.

    Raises:
        NotFoundError: no such invoice, or ``by`` is not a member.
        ConflictError: the invoice is paid or void (nothing to chase).
        InvalidInputError: as for ``pause_customer``.
    """
    inv = _invoice(session, invoice_external_id)
    if inv["status"] != "open":
        raise ConflictError(f"invoice {inv['number']} is {inv['status']}: it is not chased, so it cannot be paused")
    _check(session, until=until, reason=reason, note=note, by=by, today=today or company_today(session, now))
    replaced = _end_active(session, inv["customer_id"], inv["id"], now)
    if replaced is None and inv["paused"]:
        replaced = _copied(inv["paused_until"], inv["pause_reason"]) or {"reason": None, "until": None}
    pause_id = _insert(
        session, customer_id=inv["customer_id"], invoice_id=inv["id"], until=until, reason=reason, note=note, by=by, now=now
    )
    session.execute(
        update(invoices)
        .where(invoices.c.id == inv["id"])
        .values(paused=True, paused_until=until, pause_reason=LABELS[reason], updated_at=now)
    )
    return {
        "pause_id": pause_id,
        "customer": inv["customer"],
        "invoice": inv["number"],
        "invoice_external_id": invoice_external_id,
        "reason": reason,
        "until": until,
        "note": note,
        "by": by,
        "replaced": replaced,
    }


def resume_invoice(session: Session, invoice_external_id: str, *, by: str | None = None, now: datetime) -> dict[str, Any]:
    """Chase the invoice again from now: its active pause ends ``resumed``.

    Raises:
        NotFoundError: no such invoice. ConflictError: the invoice is not paused.
    """
    inv = _invoice(session, invoice_external_id)
    ended = _end_active(session, inv["customer_id"], inv["id"], now)
    if ended is None and inv["paused"]:
        ended = _copied(inv["paused_until"], inv["pause_reason"]) or {"reason": None, "until": None}
    if ended is None:
        raise ConflictError(f"invoice {inv['number']} is not paused")
    session.execute(
        update(invoices)
        .where(invoices.c.id == inv["id"])
        .values(paused=False, paused_until=None, pause_reason=None, updated_at=now)
    )
    return {
        "customer": inv["customer"],
        "invoice": inv["number"],
        "invoice_external_id": invoice_external_id,
        "ended": ended,
        "by": by,
    }


# --- ending pauses past their date (the send cycle, first thing) ---------------------------------


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
