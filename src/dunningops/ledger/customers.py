"""R6 housekeeping: temporary customers (origin ``incoming_message``, made from mail that matched
nobody) are kept, merged into the right customer, or deleted, one by one or in bulk.

Only temporary customers are merged or deleted here: a customer from the accounting system comes
back with the next import, and its invoices and history are not this command's to remove. A
temporary customer with invoices (imported for it since) is refused too, for the same reason.

Merging moves everything the temporary customer has to the target (R8: its mail, sent and received,
its to-dos and alerts, its pauses' history) and adds its contacts' addresses the target lacks; a
reply to-do that moves then holds the target's plan as any reply does (R4). An active pause of the
temporary customer ends (``resumed``): merging never pauses the target. One transaction either way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, exists, func, select, update
from sqlalchemy.orm import Session

from dunningops.errors import ConflictError, InvalidInputError, NotFoundError
from dunningops.store.schema import (
    AlertRow,
    ContactRow,
    CustomerRow,
    InboxMessageRow,
    InvoiceRow,
    MessageRow,
    PauseRow,
    TodoRow,
)

__all__ = ["TEMPORARY", "count_temporary", "delete_temporary", "merge_customer"]

TEMPORARY = "incoming_message"
customers, contacts, invoices = CustomerRow.__table__, ContactRow.__table__, InvoiceRow.__table__
inbox, messages, todos = InboxMessageRow.__table__, MessageRow.__table__, TodoRow.__table__
pauses, alerts = PauseRow.__table__, AlertRow.__table__


def _rowcount(result: Any) -> int:
    return cast(CursorResult, result).rowcount


def _customer(session: Session, external_id: str) -> dict[str, Any]:
    row = (
        session.execute(
            select(customers.c.id, customers.c.external_id, customers.c.name, customers.c.origin)
            .where(customers.c.external_id == external_id)
            .with_for_update()
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFoundError(f"no customer {external_id!r}")
    return dict(row)


def _temporary(session: Session, external_id: str, doing: str) -> dict[str, Any]:
    c = _customer(session, external_id)
    if c["origin"] != TEMPORARY:
        raise ConflictError(
            f"customer {external_id} is not a temporary customer (origin {c['origin']}): only one made from incoming mail "
            f"can be {doing}"
        )
    n = session.scalar(select(func.count()).where(invoices.c.customer_id == c["id"])) or 0
    if n:
        raise ConflictError(
            f"customer {external_id} has {n} invoice{'s' if n != 1 else ''}: it is not {doing} as a temporary one"
        )
    return c


def merge_customer(session: Session, temporary: str, into: str, *, now: datetime) -> dict[str, Any]:
    """R6/R8: merge the temporary customer ``temporary`` into ``into``, then delete it.

    Returns what moved, per kind (``received``, ``sent``, ``todos``, ``alerts``, ``pauses``), the
    contacts added and those the target already had, and the active pauses ended.

    Raises:
        NotFoundError: either customer does not exist.
        ConflictError: ``temporary`` is not a temporary customer (or has invoices).
        InvalidInputError: a customer merged into itself.
    """
    if temporary == into:
        raise InvalidInputError(f"customer {temporary} cannot be merged into itself")
    temp = _temporary(session, temporary, "merged")
    target = _customer(session, into)
    src, dst = temp["id"], target["id"]
    moved: dict[str, int] = {}
    ended = _rowcount(
        session.execute(
            update(pauses)
            .where(pauses.c.customer_id == src, pauses.c.ended_at.is_(None))
            .values(ended_at=now, ended_how="resumed")
        )
    )
    for name, table in (("received", inbox), ("sent", messages), ("todos", todos), ("alerts", alerts), ("pauses", pauses)):
        moved[name] = _rowcount(session.execute(update(table).where(table.c.customer_id == src).values(customer_id=dst)))
    # C3: the target keeps its primary contact; a moved one becomes primary only if it has none.
    has_primary = session.scalar(select(exists().where(contacts.c.customer_id == dst, contacts.c.is_primary.is_(True))))
    theirs = contacts.alias("theirs")
    mine = contacts.alias("mine")
    kept = (
        session.scalar(
            select(func.count())
            .select_from(mine)
            .where(
                mine.c.customer_id == src,
                exists().where(theirs.c.customer_id == dst, func.lower(theirs.c.email) == func.lower(mine.c.email)),
            )
        )
        or 0
    )
    values: dict[str, Any] = {"customer_id": dst, "updated_at": now}
    if has_primary:
        values["is_primary"] = False
    added = _rowcount(
        session.execute(
            update(contacts)
            .where(
                contacts.c.customer_id == src,
                ~exists().where(theirs.c.customer_id == dst, func.lower(theirs.c.email) == func.lower(contacts.c.email)),
            )
            .values(values)
        )
    )
    # What is left of it (the addresses the target had, cascaded) goes with the customer.
    session.execute(delete(customers).where(customers.c.id == src))
    session.execute(update(customers).where(customers.c.id == dst).values(updated_at=now))
    return {
        "temporary": temporary,
        "into": into,
        "into_name": target["name"],
        "moved": moved,
        "contacts_added": added,
        "contacts_already_there": kept,
        "pauses_ended": ended,
    }


def count_temporary(session: Session) -> int:
    """How many temporary customers a bulk delete would remove (those with invoices are kept)."""
    return session.scalar(select(func.count()).where(*_deletable())) or 0


def _deletable():
    return (customers.c.origin == TEMPORARY, ~exists().where(invoices.c.customer_id == customers.c.id))


def delete_temporary(session: Session, external_id: str | None = None) -> dict[str, Any]:
    """R6: delete one temporary customer, or (``external_id`` None) every one without invoices.

    Their mail stays in the inbox, unlinked and ``ignored`` (no customer is theirs now); their
    contacts, to-dos and pauses go with them. Returns ``deleted`` (a count) and ``kept`` (temporary
    customers left because they have invoices, bulk only).

    Raises:
        NotFoundError: no such customer. ConflictError: it is not a temporary customer (or has invoices).
    """
    if external_id is not None:
        ids = [_temporary(session, external_id, "deleted")["id"]]
        kept = 0
    else:
        ids = list(session.scalars(select(customers.c.id).where(*_deletable())))
        kept = session.scalar(select(func.count()).where(customers.c.origin == TEMPORARY)) or 0
        kept -= len(ids)
    deleted = 0
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        session.execute(
            update(inbox)
            .where(inbox.c.customer_id.in_(chunk), inbox.c.status == "linked")
            .values(status="ignored", reason="its temporary customer was deleted")
        )
        deleted += _rowcount(session.execute(delete(customers).where(customers.c.id.in_(chunk))))
    return {"deleted": deleted, "kept": kept, "customer": external_id}
