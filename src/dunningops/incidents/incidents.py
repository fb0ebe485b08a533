"""T8: customer incidents (a ticket, e.g. an invoice dispute), open or closed: open, close, list, show.

Opening or closing an incident is one transaction, committed before its notification is sent
(notices.py), so that the notification is recorded ``sending`` on its own and never sent twice.
An open dispute about an open invoice holds that invoice's dunning (a pause with no date,
dunning/pauses.py) until the last open dispute of it is closed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dunningops.dunning.pauses import end_pause, hold_invoice, relabel_hold
from dunningops.errors import ConflictError, InvalidInputError, NotFoundError
from dunningops.ledger.queries import Page
from dunningops.outgoing.history import settled
from dunningops.store.engine import Store
from dunningops.store.schema import CustomerRow, IncidentRow, InvoiceRow, MemberRow, MessageRow, PauseRow

__all__ = [
    "KINDS",
    "MAX_OBSERVATIONS",
    "RATINGS",
    "STATES",
    "check_observations",
    "close_incident",
    "list_incidents",
    "open_incident",
    "show_incident",
]

incidents, customers, invoices = IncidentRow.__table__, CustomerRow.__table__, InvoiceRow.__table__
pauses, members, messages = PauseRow.__table__, MemberRow.__table__, MessageRow.__table__

KINDS = ("dispute", "other")
STATES = ("open", "closed")
ORIGINS = ("cli", "import", "console", "api")
# The listing's rating filter: rated, unrated (none yet), or the scores themselves.
RATINGS = ("rated", "unrated", "1", "2", "3", "4", "5")
MAX_OBSERVATIONS = 10_000
MAX_NOTE = 2_000
MAX_ACTOR = 320
REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,63}")
PREFIX = "INC-"
_ATTEMPTS = 5  # generated references taken by someone else meanwhile (PostgreSQL, side by side)

Transports = Callable[[Any], Any] | None
OnChange = Callable[[Session, str], None] | None


# --- checks --------------------------------------------------------------------------------------


def check_observations(text: str | None) -> str:
    """The description as stored: stripped, not empty, at most MAX_OBSERVATIONS characters."""
    value = (text or "").strip()
    if not value:
        raise InvalidInputError("the incident's observations are empty: describe what it is about")
    if len(value) > MAX_OBSERVATIONS:
        raise InvalidInputError(f"the incident's observations are {len(value):,} characters long; at most {MAX_OBSERVATIONS:,}")
    if "\x00" in value:
        raise InvalidInputError("the incident's observations contain a NUL character (byte 0)")
    return value


def check_reference(reference: str) -> str:
    value = reference.strip()
    if not REFERENCE.fullmatch(value):
        raise InvalidInputError(
            f"incident reference {reference!r}: 1 to 64 letters, digits and . _ / - (starting with a letter or digit)"
        )
    return value


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise InvalidInputError(f"incident kind {kind!r}: one of {', '.join(KINDS)}")
    return kind


def check_actor(actor: str | None) -> str | None:
    if actor is not None and len(actor) > MAX_ACTOR:
        raise InvalidInputError(f"actor {actor[:40]!r}…: at most {MAX_ACTOR} characters")
    return actor or None


def member_of(session: Session, actor: str | None) -> str | None:
    """The member an actor names (their id, or their email in any case); None when it names nobody."""
    if not actor:
        return None
    return session.scalar(
        select(members.c.id)
        .where(or_(members.c.id == actor, func.lower(members.c.email) == actor.strip().lower()))
        .order_by(members.c.id)
        .limit(1)
    )


# --- opening -------------------------------------------------------------------------------------


def open_incident(
    store: Store,
    *,
    customer: str,
    invoice: str | None = None,
    kind: str = "dispute",
    observations: str,
    reference: str | None = None,
    notify: bool | None = None,
    actor: str | None,
    at: datetime,
    origin: str = "cli",
    transport_factory: Transports = None,
    on_change: OnChange = None,
) -> dict[str, Any]:
    """Open an incident of ``customer`` (its external id), about ``invoice`` (its external id or number)
    if given; a dispute about an open invoice holds its dunning until closed. Then its notification
    (sent when the settings say so, or ``notify`` for this incident), at most once.

    Returns the incident (``show_incident``) with ``notification`` (notices.Result.to_dict()).
    ``on_change(session, reference)`` runs in the transaction that opens it (the console's activity).

    Raises:
        NotFoundError: no such customer or invoice. InvalidInputError: the invoice is another customer's,
            a bad kind, reference or observations. ConflictError: the reference exists already.
    """
    from dunningops.incidents import notices

    text, kind, actor = check_observations(observations), check_kind(kind), check_actor(actor)
    if origin not in ORIGINS:
        raise InvalidInputError(f"incident origin {origin!r}: one of {', '.join(ORIGINS)}")
    given = check_reference(reference) if reference is not None else None
    with store.session(write_lock=True) as session:
        c = session.execute(select(customers.c.id, customers.c.name).where(customers.c.external_id == customer)).first()
        if c is None:
            raise NotFoundError(f"no customer {customer!r}")
        inv = _invoice_of(session, c.id, customer, invoice) if invoice else None
        values = dict(
            customer_id=c.id,
            invoice_id=inv.id if inv else None,
            kind=kind,
            observations=text,
            state="open",
            notify_opened=notify,
            origin=origin,
            opened_at=at,
            opened_by=actor,
        )
        incident_id, ref = _insert(session, values, given)
        if kind == "dispute" and inv is not None and inv.status == "open":
            hold(session, incident_id, inv.id, by=member_of(session, actor), now=at)
        if on_change is not None:
            on_change(session, ref)
    result = notices.send(store, incident_id, "opened", at=at, transport_factory=transport_factory)
    with store.session() as session:
        shown = show_incident(session, ref)
    shown["notification"] = result.to_dict()
    return shown


def _invoice_of(session: Session, customer_id: int, customer: str, invoice: str):
    """The invoice named by its external id, else by its number among the customer's invoices."""
    cols = (invoices.c.id, invoices.c.customer_id, invoices.c.number, invoices.c.status)
    # FOR UPDATE (PostgreSQL): disputes of one invoice opened and closed side by side see each other's holds.
    row = session.execute(select(*cols).where(invoices.c.external_id == invoice).with_for_update()).first()
    if row is None:
        row = session.execute(
            select(*cols)
            .where(invoices.c.customer_id == customer_id, invoices.c.number == invoice)
            .order_by(invoices.c.id)
            .limit(1)
            .with_for_update()
        ).first()
    if row is None:
        raise NotFoundError(f"no invoice {invoice!r} of customer {customer} (neither an external id nor a number)")
    if row.customer_id != customer_id:
        owner = session.scalar(select(customers.c.external_id).where(customers.c.id == row.customer_id))
        raise InvalidInputError(f"invoice {invoice} is customer {owner}'s, not {customer}'s")
    return row


def _insert(session: Session, values: dict[str, Any], reference: str | None) -> tuple[int, str]:
    """Insert the incident under ``reference``, else the next free INC-0001…; its id and reference."""
    for _ in range(_ATTEMPTS):
        ref = reference or next_reference(session)
        try:
            with session.begin_nested():
                new_id = session.execute(
                    incidents.insert().values(reference=ref, **values).returning(incidents.c.id)
                ).scalar_one()
            return new_id, ref
        except IntegrityError:
            if reference is not None:
                raise ConflictError(f"incident {reference} exists already: give another reference") from None
    raise ConflictError("incidents are being opened at the same moment by others: try again")


def next_reference(session: Session) -> str:
    """INC- and the number after the highest one used (four digits at least)."""
    used = session.scalars(select(incidents.c.reference).where(incidents.c.reference.like(PREFIX + "%"))).all()
    highest = max((int(r[len(PREFIX) :]) for r in used if r[len(PREFIX) :].isdigit()), default=0)
    return f"{PREFIX}{highest + 1:04d}"


# --- the hold on a disputed invoice ---------------------------------------------------------------


def hold_words(references: Sequence[str]) -> tuple[str, str]:
    """What a dispute's hold says: on its invoice ("dispute: until the incident INC-0001 is closed") and its note."""
    refs = list(references)
    shown = refs[:3]
    listed = shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]
    if len(refs) > 3:
        listed = ", ".join(shown) + f" and {len(refs) - 3} more"
    if len(refs) == 1:
        return f"dispute: until the incident {listed} is closed", f"incident {listed}"
    return f"dispute: until the incidents {listed} are closed", f"incidents {listed}"


def _holders(session: Session, invoice_id: int, pause_id: int | None = None, *, but: int | None = None):
    """The open disputes of an invoice whose hold is still active (that hold, if given), oldest first."""
    query = (
        select(incidents.c.id, incidents.c.reference, incidents.c.pause_id)
        .join(pauses, and_(pauses.c.id == incidents.c.pause_id, pauses.c.ended_at.is_(None)))
        .where(incidents.c.invoice_id == invoice_id, incidents.c.state == "open", incidents.c.kind == "dispute")
        .order_by(incidents.c.id)
    )
    if pause_id is not None:
        query = query.where(incidents.c.pause_id == pause_id)
    if but is not None:
        query = query.where(incidents.c.id != but)
    return session.execute(query).all()


def hold(session: Session, incident_id: int, invoice_id: int, *, by: str | None, now: datetime) -> int:
    """Hold the invoice's dunning for this open dispute: the hold another open dispute of it has
    (one pause, naming them all), else a new one. The pause's id, recorded on the incident."""
    others = _holders(session, invoice_id, but=incident_id)
    if others:
        pause_id = others[0].pause_id
        session.execute(update(incidents).where(incidents.c.id == incident_id).values(pause_id=pause_id))
        refs = [r.reference for r in _holders(session, invoice_id, pause_id)]
        label, note = hold_words(refs)
        relabel_hold(session, pause_id, label=label, note=note, now=now)
        return pause_id
    ref = session.execute(select(incidents.c.reference).where(incidents.c.id == incident_id)).scalar_one()
    label, note = hold_words([ref])
    pause_id = hold_invoice(session, invoice_id, reason="dispute", label=label, note=note, by=by, now=now)
    session.execute(update(incidents).where(incidents.c.id == incident_id).values(pause_id=pause_id))
    return pause_id


def release(session: Session, incident_id: int, invoice_id: int | None, pause_id: int | None, *, now: datetime) -> bool:
    """A dispute closed: its hold ends, unless another open dispute of the invoice still holds it. True if it ended."""
    if pause_id is None or invoice_id is None:
        return False
    others = _holders(session, invoice_id, pause_id, but=incident_id)
    if others:
        label, note = hold_words([r.reference for r in others])
        relabel_hold(session, pause_id, label=label, note=note, now=now)
        return False
    return end_pause(session, pause_id, now=now)


# --- closing -------------------------------------------------------------------------------------


def close_incident(
    store: Store,
    reference: str,
    *,
    note: str | None = None,
    notify: bool | None = None,
    actor: str | None,
    at: datetime,
    transport_factory: Transports = None,
    on_change: OnChange = None,
) -> dict[str, Any]:
    """Close an open incident: its dispute's hold ends (unless another open dispute holds the invoice),
    then its closing notification (settings, or ``notify`` for this incident), at most once.

    Returns the incident with ``notification`` and ``resumed`` (the invoice's dunning goes on).
    ``on_change(session, reference)`` runs in the transaction that closes it.

    Raises:
        NotFoundError: no such incident. ConflictError: it is closed already. InvalidInputError: a note too long.
    """
    from dunningops.incidents import notices

    actor = check_actor(actor)
    note = (note or "").strip() or None
    if note is not None and len(note) > MAX_NOTE:
        raise InvalidInputError(f"the closing note is {len(note):,} characters long; at most {MAX_NOTE:,}")
    with store.session(write_lock=True) as session:
        row = session.execute(
            select(incidents.c.id, incidents.c.state, incidents.c.closed_at, incidents.c.invoice_id, incidents.c.pause_id)
            .where(incidents.c.reference == reference)
            .with_for_update()
        ).first()
        if row is None:
            raise NotFoundError(f"no incident {reference!r}")
        if row.state == "closed":
            raise ConflictError(f"incident {reference} is closed already (since {row.closed_at:%Y-%m-%d %H:%M} UTC)")
        if row.invoice_id is not None:  # as when opening: the invoice's disputes one at a time
            session.execute(select(invoices.c.id).where(invoices.c.id == row.invoice_id).with_for_update())
        changes: dict[str, Any] = dict(state="closed", closed_at=at, closed_by=actor, closing_note=note)
        if notify is not None:
            changes["notify_closed"] = notify
        session.execute(update(incidents).where(incidents.c.id == row.id).values(**changes))
        resumed = release(session, row.id, row.invoice_id, row.pause_id, now=at)
        if on_change is not None:
            on_change(session, reference)
    result = notices.send(store, row.id, "closed", at=at, transport_factory=transport_factory)
    with store.session() as session:
        shown = show_incident(session, reference)
    shown["notification"] = result.to_dict()
    shown["resumed"] = resumed
    return shown


# --- reading -------------------------------------------------------------------------------------


def _columns() -> list:
    return [
        incidents.c.id,
        incidents.c.reference,
        customers.c.external_id.label("customer"),
        customers.c.name.label("customer_name"),
        invoices.c.external_id.label("invoice_external_id"),
        invoices.c.number.label("invoice"),
        incidents.c.kind,
        incidents.c.state,
        incidents.c.observations,
        incidents.c.origin,
        incidents.c.opened_at,
        incidents.c.opened_by,
        incidents.c.closed_at,
        incidents.c.closed_by,
        incidents.c.closing_note,
        incidents.c.notify_opened,
        incidents.c.notify_closed,
        incidents.c.rating,
        incidents.c.rating_message,
        incidents.c.rated_at,
        incidents.c.opened_message_id,
        incidents.c.closed_message_id,
        exists().where(pauses.c.id == incidents.c.pause_id, pauses.c.ended_at.is_(None)).correlate(incidents).label("holding"),
    ]


def _joined():
    return incidents.join(customers, customers.c.id == incidents.c.customer_id).outerjoin(
        invoices, invoices.c.id == incidents.c.invoice_id
    )


def rating_condition(values: Sequence[str]):
    """The listing's rating filter on ``incidents``: any of rated, unrated, or scores 1-5."""
    wanted: list[ColumnElement[bool]] = []
    for v in values:
        if v not in RATINGS:
            raise InvalidInputError(f"rating {v!r}: one of {', '.join(RATINGS)}")
        if v == "rated":
            wanted.append(incidents.c.rating.is_not(None))
        elif v == "unrated":
            wanted.append(incidents.c.rating.is_(None))
        else:
            wanted.append(incidents.c.rating == int(v))
    return or_(*wanted)


def list_incidents(
    session: Session,
    *,
    state: str | None = None,
    customer: str | None = None,
    rating: Sequence[str] = (),
    kind: str | None = None,
    limit: int | None = 100,
    offset: int = 0,
) -> Page:
    """Incidents, newest first, with their customer, invoice and rating; ``total`` counts all the filters match."""
    if (limit is not None and limit < 0) or offset < 0:
        raise InvalidInputError("limit and offset are numbers of rows, not negative")
    where = []
    if state is not None:
        if state not in STATES:
            raise InvalidInputError(f"incident state {state!r}: one of {', '.join(STATES)}")
        where.append(incidents.c.state == state)
    if kind is not None:
        where.append(incidents.c.kind == check_kind(kind))
    if customer is not None:
        cid = session.scalar(select(customers.c.id).where(customers.c.external_id == customer))
        if cid is None:
            raise NotFoundError(f"no customer {customer!r}")
        where.append(incidents.c.customer_id == cid)
    if rating:
        where.append(rating_condition(rating))
    return _page(session, where, limit=limit, offset=offset)


def show_incident(session: Session, reference: str) -> dict[str, Any]:
    """One incident with its notifications (``messages``: what each became, as the history says now).

    Raises:
        NotFoundError: no such incident.
    """
    row = session.execute(select(*_columns()).select_from(_joined()).where(incidents.c.reference == reference)).mappings().first()
    if row is None:
        raise NotFoundError(f"no incident {reference!r}")
    out = dict(row)
    sent = {e: out[f"{e}_message_id"] for e in ("opened", "closed") if out[f"{e}_message_id"] is not None}
    out["messages"] = []
    if sent:
        with settled(session) as shown:
            found = {
                r["id"]: dict(r)
                for r in session.execute(
                    select(
                        messages.c.id,
                        messages.c.subject,
                        messages.c.to_addresses,
                        messages.c.from_address,
                        messages.c.created_at,
                        messages.c.sent_at,
                        messages.c.error,
                        shown.label("status"),
                    ).where(messages.c.id.in_(list(sent.values())))
                ).mappings()
            }
        out["messages"] = [{"event": e, **found[m]} for e, m in sent.items() if m in found]
    return out


def customer_incidents(session: Session, customer_id: int, *, limit: int = 20) -> Page:
    """A customer's incidents, newest first (the customer's page)."""
    return _page(session, [incidents.c.customer_id == customer_id], limit=limit, offset=0)


def _page(session: Session, where: list, *, limit: int | None, offset: int) -> Page:
    total = session.scalar(select(func.count()).select_from(incidents).where(*where)) or 0
    query = (
        select(*_columns())
        .select_from(_joined())
        .where(*where)
        .order_by(incidents.c.opened_at.desc(), incidents.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return Page([dict(r) for r in session.execute(query).mappings()], total=total, offset=offset, limit=limit)
