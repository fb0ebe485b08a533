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

from datetime import date, datetime, timedelta
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from dunningops.errors import ConflictError, InvalidInputError, NotFoundError
from dunningops.store.schema import CustomerRow, InvoiceRow, MemberRow, PauseRow, SettingsRow, TodoRow

__all__ = [
    "LABELS",
    "REASONS",
    "UNTIL_CLOSED",
    "PauseReason",
    "company_today",
    "end_pause",
    "hold_invoice",
    "pause_customer",
    "pause_invoice",
    "relabel_hold",
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
CHUNK = 1000  # ids per IN list (SQLite's variable limit)
# A hold (an incident's dispute) lasts until it is lifted, not to a date. Its pause row needs one: this
# day, which no send cycle reaches (pause_ends never ends it); the invoice's copy carries no date.
UNTIL_CLOSED = date(2199, 12, 31)


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


def hold_invoice(
    session: Session, invoice_id: int, *, reason: PauseReason, label: str, note: str | None, by: str | None, now: datetime
) -> int:
    """Pause an open invoice until ``end_pause`` lifts it (no date: an incident's dispute); replaces its
    active pause. ``label`` is what the invoice's copy says (the dry run, `customers show`). The pause's id."""
    inv = session.execute(select(invoices.c.customer_id).where(invoices.c.id == invoice_id).with_for_update()).one()
    _end_active(session, inv.customer_id, invoice_id, now)
    pause_id = _insert(
        session, customer_id=inv.customer_id, invoice_id=invoice_id, until=UNTIL_CLOSED, reason=reason, note=note, by=by, now=now
    )
    session.execute(
        update(invoices)
        .where(invoices.c.id == invoice_id)
        .values(paused=True, paused_until=None, pause_reason=label, updated_at=now)
    )
    return pause_id


def relabel_hold(session: Session, pause_id: int, *, label: str, note: str | None, now: datetime) -> bool:
    """Change what an active hold says (its note, its invoice's copy); False when it has ended."""
    row = session.execute(
        update(pauses)
        .where(pauses.c.id == pause_id, pauses.c.ended_at.is_(None))
        .values(note=note)
        .returning(pauses.c.invoice_id)
    ).first()
    if row is None:
        return False
    session.execute(update(invoices).where(invoices.c.id == row.invoice_id).values(pause_reason=label, updated_at=now))
    return True


def end_pause(session: Session, pause_id: int, *, now: datetime) -> bool:
    """End pause ``pause_id`` now (``resumed``) if it is still active, and clear its target's copy;
    False when it had ended already (resumed or replaced by someone: their pause is left alone)."""
    row = session.execute(
        update(pauses)
        .where(pauses.c.id == pause_id, pauses.c.ended_at.is_(None))
        .values(ended_at=now, ended_how="resumed")
        .returning(pauses.c.customer_id, pauses.c.invoice_id)
    ).first()
    if row is None:
        return False
    if row.invoice_id is None:
        session.execute(
            update(customers)
            .where(customers.c.id == row.customer_id)
            .values(paused_until=None, pause_reason=None, updated_at=now)
        )
    else:
        session.execute(
            update(invoices)
            .where(invoices.c.id == row.invoice_id)
            .values(paused=False, paused_until=None, pause_reason=None, updated_at=now)
        )
    return True


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
