"""C9-C11 for a batch: a permanent bounce marks the contact invalid (with the reason and the date),
offers a to-do to write to another contact and raises an alert; a policy refusal (5.7.x) raises an
alert about our sending and leaves the contact alone; a complaint raises its own alert."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, tuple_, update
from sqlalchemy.orm import Session

from dunningops.alerts.events import AlertEvent
from dunningops.dunning.runconfig import RunConfig
from dunningops.inbox.batch import Effects, Incoming
from dunningops.store.schema import ContactRow, CustomerRow, TodoRow

todos, contacts, customers = TodoRow.__table__, ContactRow.__table__, CustomerRow.__table__


def undelivered(session: Session, config: RunConfig, linked: list[tuple[int, Incoming]], at: datetime, effects: Effects) -> None:
    """C9-C11 for the bounces and complaints of a batch."""
    invalid: dict[tuple[int, str], tuple[int, Incoming, Any]] = {}
    for rid, item in linked:
        assert item.parsed is not None and item.match is not None and item.match.customer_id is not None
        c = item.parsed.classification
        replied_id = item.match.replied.id if item.match.replied else None
        if c.kind == "complaint":
            who = (c.complaint.recipient if c.complaint else None) or item.match.address
            effects.alerts.append(
                AlertEvent(
                    "complaint",
                    f"{who or 'a recipient'} reported our email as spam",
                    item.match.customer_id,
                    who,
                    rid,
                    replied_id,
                    {"feedback_type": c.complaint.feedback_type if c.complaint else None, "subject": item.parsed.subject},
                )
            )
            continue
        for b in c.bounces:
            detail = {"status": b.status, "diagnostic": b.diagnostic, "category": b.category, "reporter": b.reporter}
            if b.category == "refused_by_policy":
                # 5.7.x: the receiving server refused *our* mail (spam, SPF/DKIM/DMARC): the address is fine.
                effects.alerts.append(
                    AlertEvent(
                        "sending_refused",
                        f"the mail server of {b.recipient or 'a recipient'} refused our email ({b.status or 'policy'})",
                        item.match.customer_id,
                        b.recipient,
                        rid,
                        replied_id,
                        detail,
                    )
                )
            elif b.permanent and b.recipient:
                invalid[(item.match.customer_id, b.recipient)] = (rid, item, b)
    if not invalid:
        return
    pairs = sorted(invalid)
    known = {
        (cid, email): contact_id
        for contact_id, cid, email in session.execute(
            select(contacts.c.id, contacts.c.customer_id, contacts.c.email).where(
                tuple_(contacts.c.customer_id, contacts.c.email).in_(pairs)
            )
        )
    }
    params, todo_rows = [], []
    for (cid, email), (rid, item, b) in invalid.items():
        reason = f"bounced {at:%Y-%m-%d}: {b.status or 'permanent failure'} {b.diagnostic or ''}".strip()[:500]
        if (cid, email) in known:
            params.append({"b_id": known[(cid, email)], "b_reason": reason})
        effects.alerts.append(
            AlertEvent(
                "bounce",
                f"email to {email} bounced ({b.status or 'permanent failure'}): the contact is marked invalid",
                cid,
                email,
                rid,
                item.match.replied.id if item.match and item.match.replied else None,
                {
                    "status": b.status,
                    "diagnostic": b.diagnostic,
                    "category": b.category,
                    "subject": item.parsed.subject if item.parsed else None,
                },
            )
        )
        todo_rows.append(
            {
                "kind": "bounce",
                "status": "open",
                "customer_id": cid,
                "invoice_id": item.match.invoice_id if item.match else None,
                "assignee": config.owner,
                # C11: never re-sent by itself; a person writes to another contact, or corrects the address.
                "reason": f"the email to {email} bounced ({b.status or 'permanent failure'}): write to another contact",
                "payload": {"inbox_message_id": rid, "address": email, "status": b.status, "diagnostic": b.diagnostic},
                "created_at": at,
            }
        )
    if params:
        # C10: a contact marked valid again is invalidated again by a new failure.
        session.execute(
            update(contacts)
            .where(contacts.c.id == bindparam("b_id"))
            .values(valid=False, invalid_reason=bindparam("b_reason"), invalid_at=at, updated_at=at),
            params,
        )
    managers = dict(
        session.execute(
            select(customers.c.id, customers.c.account_manager).where(
                customers.c.id.in_(sorted({r["customer_id"] for r in todo_rows}))
            )
        ).all()
    )
    for r in todo_rows:
        manager = managers.get(r["customer_id"])
        if manager in config.members:
            r["assignee"] = manager
    session.execute(insert(todos), todo_rows)
    effects.invalidated += len(params)
    effects.bounce_todos += len(todo_rows)
