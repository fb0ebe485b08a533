"""Changing one contact by hand: its functions (C7), primary flag (C3), validity (C10)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from dunningops.errors import InvalidInputError, NotFoundError
from dunningops.ledger.context import LedgerContext
from dunningops.store.schema import ContactFunctionLinkRow, ContactRow

contacts = ContactRow.__table__
links = ContactFunctionLinkRow.__table__


def _contact(session: Session, contact_id: int):
    row = session.execute(select(contacts).where(contacts.c.id == contact_id)).mappings().first()
    if row is None:
        raise NotFoundError(f"no contact #{contact_id}")
    return row


def set_functions(session: Session, contact_id: int, names: list[str], now: datetime) -> list[str]:
    """C7: replace the contact's functions (given by id or label)."""
    _contact(session, contact_id)
    ctx = LedgerContext.load(session)
    try:
        ids = sorted({ctx.function_id(n) for n in names})
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from None
    session.execute(delete(links).where(links.c.contact_id == contact_id))
    if ids:
        session.execute(insert(links), [{"contact_id": contact_id, "function_id": f} for f in ids])
    session.execute(update(contacts).where(contacts.c.id == contact_id).values(updated_at=now))
    return ids


def set_primary(session: Session, contact_id: int, now: datetime) -> None:
    """C3: this contact becomes the customer's one primary contact."""
    row = _contact(session, contact_id)
    session.execute(
        update(contacts)
        .where(contacts.c.customer_id == row["customer_id"])
        .values(is_primary=contacts.c.id == contact_id, updated_at=now)
    )


def mark_valid(session: Session, contact_id: int, now: datetime) -> None:
    """C10: the customer confirmed the address; a new delivery failure marks it invalid again (C9)."""
    _contact(session, contact_id)
    session.execute(
        update(contacts)
        .where(contacts.c.id == contact_id)
        .values(valid=True, invalid_reason=None, invalid_at=None, updated_at=now)
    )
