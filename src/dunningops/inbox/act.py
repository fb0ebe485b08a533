"""What an imported batch does (R1-R4, R6, R9, R10, C9-C11), in the batch's transaction.

* Every message gets a row in ``inbox_messages``: linked to its customer (R1), ignored (with
  why; of another organisation's mail (R7) only the envelope is kept: it is not ours to read),
  or quarantined (with its raw bytes). An ignored message can be linked by hand (R8).
* With ``replies.manage`` on, a reply makes one pending reply to-do per customer, or per invoice
  when it answers an invoice-level plan's action (R3, R9); a later reply takes its place behind
  the same to-do (R10). The send cycle waits while it is open (R4). Off, replies only show (R2).
* A permanent bounce (the mailbox does not exist) marks the contact invalid with the reason and
  the date, offers a to-do to write to another contact, and raises an alert (C9, C11); a
  policy refusal (5.7.x) raises an alert about our sending and leaves the contact alone; a full
  mailbox or a delay changes nothing.

The reply to-dos are in ``replies.py``, the bounces' effects in ``undelivered.py``. Writes are a
few statements per batch (executemany), not one per message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, insert, select
from sqlalchemy.orm import Session

from dunningops.alerts.events import AlertEvent
from dunningops.dunning.runconfig import RunConfig
from dunningops.inbox.batch import TEMPORARY_PREFIX, Effects, Incoming
from dunningops.inbox.match import Match
from dunningops.inbox.parse import ParsedMail
from dunningops.inbox.replies import reply_todos
from dunningops.inbox.undelivered import undelivered
from dunningops.store.bulk import insert_ids
from dunningops.store.schema import ContactRow, CustomerRow, InboxMessageRow, TodoRow

inbox, todos, contacts, customers = InboxMessageRow.__table__, TodoRow.__table__, ContactRow.__table__, CustomerRow.__table__


def _base(item: Incoming, at: datetime) -> dict[str, Any]:
    return {
        "dedupe_key": item.dedupe_key,
        "source": item.source,
        "folder": item.folder,
        "source_key": item.key,
        "message_id": None,
        "status": "ignored",
        "kind": None,
        "evidence": None,
        "from_address": None,
        "from_name": None,
        "to_addresses": [],
        "subject": None,
        "received_at": None,
        "imported_at": at,
        "referenced_ids": [],
        "text": None,
        "reply_text": None,
        "attachments": [],
        "details": {},
        "customer_id": None,
        "invoice_id": None,
        "replied_message_id": None,
        "match_by": None,
        "reason": None,
        "raw": None,
        "todo_id": None,
        "handled": None,
    }


def _details(mail: ParsedMail) -> dict[str, Any]:
    c = mail.classification
    out: dict[str, Any] = {}
    if c.bounces:
        out["bounces"] = [dataclasses.asdict(b) for b in c.bounces]
    if c.complaint:
        out["complaint"] = dataclasses.asdict(c.complaint)
    if mail.defects:
        out["defects"] = list(mail.defects)
    return out


def _row(item: Incoming, at: datetime, manage_after: bool) -> dict[str, Any]:
    row = _base(item, at)
    if item.problem is not None or item.parsed is None:
        row.update(status="quarantined", reason=item.problem, raw=item.raw)
        return row
    mail, match = item.parsed, item.match
    assert match is not None
    # The envelope of an ignored message says what was skipped and why; its content stays out.
    row.update(
        message_id=mail.message_id,
        kind=mail.classification.kind,
        evidence=mail.classification.evidence,
        from_address=mail.from_address,
        subject=mail.subject[:998],
        received_at=mail.date,
        match_by=match.by,
        reason=match.reason,
    )
    if match.foreign:
        return row
    row.update(
        status="linked" if match.customer_id is not None else "ignored",
        from_name=mail.from_name,
        to_addresses=list(mail.to),
        referenced_ids=list(mail.referenced_ids[:50]),
        text=mail.text,
        reply_text=mail.reply_text,
        attachments=[{"filename": a.filename, "content_type": a.content_type, "size": a.size} for a in mail.attachments],
        details=_details(mail),
        customer_id=match.customer_id,
        invoice_id=match.invoice_id,
        replied_message_id=match.replied.id if match.replied else None,
        handled="pending" if manage_after and match.customer_id is not None else None,
    )
    return row


def _temporary_customers(session: Session, items: Sequence[Incoming], at: datetime) -> int:
    """R6: a customer named after each unknown sender's address, origin ``incoming_message``, with that contact."""
    wanted = sorted({i.match.address for i in items if i.match and i.match.by == "temporary" and i.match.address})
    if not wanted:
        return 0
    external = {a: TEMPORARY_PREFIX + a for a in wanted}
    existing = dict(
        session.execute(
            select(customers.c.external_id, customers.c.id).where(customers.c.external_id.in_(list(external.values())))
        ).all()
    )
    new = [a for a in wanted if external[a] not in existing]
    if new:
        session.execute(
            insert(customers),
            [
                {"external_id": external[a], "name": a, "origin": "incoming_message", "created_at": at, "updated_at": at}
                for a in new
            ],
        )
        ids = dict(
            session.execute(
                select(customers.c.external_id, customers.c.id).where(customers.c.external_id.in_([external[a] for a in new]))
            ).all()
        )
        session.execute(
            insert(contacts),
            [
                {
                    "customer_id": ids[external[a]],
                    "email": a,
                    "is_primary": True,
                    "valid": True,
                    "created_at": at,
                    "updated_at": at,
                }
                for a in new
            ],
        )
        existing.update(ids)
    for item in items:
        m = item.match
        if m and m.by == "temporary" and m.address:
            item.match = Match("temporary", existing[external[m.address]], address=m.address)
    return len(new)


def act(session: Session, config: RunConfig, items: Sequence[Incoming], *, at: datetime) -> Effects:
    """Write ``items`` (already matched) and what they do; one transaction, the caller's."""
    effects = Effects()
    if not items:
        return effects
    effects.temporary_customers = _temporary_customers(session, items, at)
    manage_after = config.settings.inbox.after_import != "keep"
    rows = [_row(item, at, manage_after) for item in items]
    ids = insert_ids(session, inbox, rows)
    linked: list[tuple[int, Incoming]] = []
    for rid, item, row in zip(ids, items, rows, strict=True):
        if row["status"] == "quarantined":
            effects.quarantined += 1
            effects.quarantine.append({"id": rid, "folder": item.folder, "key": item.key, "reason": item.problem})
            effects.alerts.append(
                AlertEvent(
                    "quarantined",
                    f"an incoming email could not be read: {item.problem}",
                    inbox_message_id=rid,
                    details={"key": item.key},
                )
            )
            continue
        kind = row["kind"]
        effects.by_kind[kind] = effects.by_kind.get(kind, 0) + 1
        if row["status"] == "linked":
            effects.linked += 1
            linked.append((rid, item))
            if manage_after:
                effects.handled_ids.append(rid)
        else:
            effects.ignored += 1
    if config.settings.replies.manage:
        effects.reply_todos = reply_todos(session, config, linked, at)
    undelivered(
        session,
        config,
        [(r, i) for r, i in linked if i.parsed and i.parsed.classification.kind in ("bounce", "complaint")],
        at,
        effects,
    )
    return effects


def known_keys(session: Session, source: str, folder: str, keys: Sequence[str]) -> set[str]:
    """Which of a maildir's file keys were imported already (a maildir has no UIDs to stand on)."""
    found: set[str] = set()
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        found.update(
            session.execute(
                select(inbox.c.source_key).where(
                    and_(inbox.c.source == source, inbox.c.folder == folder, inbox.c.source_key.in_(chunk))
                )
            ).scalars()
        )
    return found


def known_dedupe_keys(session: Session, keys: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(keys), 500):
        found.update(
            session.execute(select(inbox.c.dedupe_key).where(inbox.c.dedupe_key.in_(keys[start : start + 500]))).scalars()
        )
    return found
