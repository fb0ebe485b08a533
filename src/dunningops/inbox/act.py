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

Writes are a few statements per batch (executemany), not one per message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, insert, select, tuple_, update
from sqlalchemy.orm import Session

from dunningops.alerts.events import AlertEvent
from dunningops.dunning.runconfig import RunConfig
from dunningops.inbox.match import Match
from dunningops.inbox.parse import ParsedMail
from dunningops.store.bulk import insert_ids
from dunningops.store.schema import ContactRow, CustomerRow, InboxMessageRow, TodoRow

inbox, todos, contacts, customers = InboxMessageRow.__table__, TodoRow.__table__, ContactRow.__table__, CustomerRow.__table__

EXCERPT = 500
TEMPORARY_PREFIX = "mail:"  # R6: a temporary customer's external id is its sender's address


@dataclass
class Incoming:
    """One message of a batch, as the importer read it."""

    source: str
    folder: str
    key: str
    dedupe_key: str
    raw: bytes | None
    parsed: ParsedMail | None = None
    problem: str | None = None  # why it is quarantined
    match: Match | None = None


@dataclass
class Effects:
    """What a batch did, for the report."""

    linked: int = 0
    ignored: int = 0
    quarantined: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    reply_todos: int = 0
    bounce_todos: int = 0
    invalidated: int = 0
    temporary_customers: int = 0
    alerts: list[AlertEvent] = field(default_factory=list)
    handled_ids: list[int] = field(default_factory=list)  # linked rows to flag or move after commit
    quarantine: list[dict] = field(default_factory=list)

    def add(self, other: Effects) -> None:
        for name in ("linked", "ignored", "quarantined", "reply_todos", "bounce_todos", "invalidated", "temporary_customers"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for kind, n in other.by_kind.items():
            self.by_kind[kind] = self.by_kind.get(kind, 0) + n
        self.alerts += other.alerts
        self.handled_ids += other.handled_ids
        self.quarantine += other.quarantine


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


def reply_payload(
    inbox_id: int,
    sender: str | None,
    subject: str | None,
    reply_text: str | None,
    received: datetime | None,
    message_id: str | None = None,
) -> tuple[dict[str, Any], str]:
    """What a reply to-do shows of the reply behind it (R10: always the latest), and its reason line.

    ``message_id`` lets `todo send` answer it in the same thread (In-Reply-To, R1)."""
    payload = {
        "inbox_message_id": inbox_id,
        "from": sender,
        "subject": (subject or "")[:300],
        "excerpt": (reply_text or "")[:EXCERPT],
        "received_at": received.isoformat() if received else None,
        "message_id": message_id,
    }
    return payload, f"reply from {sender or 'an unknown sender'}: {(subject or '(no subject)')[:120]}"


def _assignee(config: RunConfig, match: Match, account_managers: dict[int, str | None]) -> str | None:
    """R3: the member who did the manual action replied to; else the member who sent the automatic one;
    else (an alias sent it, or no action is known) the account manager, else the owner."""
    replied = match.replied
    if replied is not None:
        if not replied.automatic and replied.performed_by in config.members:
            return replied.performed_by
        kind, _, ident = (replied.sender_ref or "").partition(".")
        if replied.automatic and kind == "member" and ident in config.members:
            return ident
        if replied.sender_ref and kind != "account_manager":
            return config.owner
    manager = account_managers.get(match.customer_id or 0)
    return manager if manager in config.members else config.owner


def _reply_todos(session: Session, config: RunConfig, linked: list[tuple[int, Incoming]], at: datetime) -> int:
    """R3, R9, R10: one open reply to-do per customer (or invoice); the latest reply is the one behind it."""
    replies = [(rid, i) for rid, i in linked if i.parsed and i.parsed.classification.kind == "reply"]
    if not replies:
        return 0
    # Oldest first, so that the latest reply of a batch is the last one written behind its to-do.
    replies.sort(key=lambda p: (p[1].parsed.date.timestamp() if p[1].parsed and p[1].parsed.date else 0.0, p[0]))
    targets = {(i.match.customer_id, i.match.invoice_id) for _, i in replies if i.match}
    customer_ids = sorted({c for c, _ in targets if c is not None})
    open_todos: dict[tuple[int | None, int | None], tuple[int, dict]] = {}
    for todo_id, customer_id, invoice_id, payload in session.execute(
        select(todos.c.id, todos.c.customer_id, todos.c.invoice_id, todos.c.payload).where(
            todos.c.kind == "reply", todos.c.status == "open", todos.c.customer_id.in_(customer_ids)
        )
    ):
        open_todos.setdefault((customer_id, invoice_id), (todo_id, payload or {}))
    managers = dict(
        session.execute(select(customers.c.id, customers.c.account_manager).where(customers.c.id.in_(customer_ids))).all()
    )
    latest: dict[tuple[int | None, int | None], tuple[int, Incoming, int]] = {}
    for rid, item in replies:
        assert item.match is not None
        target = (item.match.customer_id, item.match.invoice_id)
        count = latest[target][2] + 1 if target in latest else 1
        latest[target] = (rid, item, count)
    updates: list[dict] = []
    new_targets, new_rows = [], []
    todo_of: dict[tuple[int | None, int | None], int] = {}
    for target, (rid, item, count) in latest.items():
        assert item.parsed is not None and item.match is not None
        p = item.parsed
        payload, reason = reply_payload(rid, p.from_address, p.subject, p.reply_text, p.date, p.message_id)
        if target in open_todos:
            # R10: the latest reply is the one behind the single pending to-do (its assignee stays).
            todo_id, previous = open_todos[target]
            todo_of[target] = todo_id
            updates.append(
                {"b_id": todo_id, "b_reason": reason, "b_payload": {**payload, "replies": previous.get("replies", 1) + count}}
            )
            continue
        new_targets.append(target)
        new_rows.append(
            {
                "kind": "reply",
                "status": "open",
                "customer_id": target[0],
                "invoice_id": target[1],
                "assignee": _assignee(config, item.match, managers),
                "reason": reason,
                "payload": {**payload, "replies": count},
                "created_at": at,
            }
        )
    todo_of.update(zip(new_targets, insert_ids(session, todos, new_rows), strict=True))
    created = len(new_rows)
    if updates:
        session.execute(
            update(todos)
            .where(todos.c.id == bindparam("b_id"))
            .values(reason=bindparam("b_reason"), payload=bindparam("b_payload")),
            updates,
        )
    links = [{"b_row": rid, "b_todo": todo_of[(i.match.customer_id, i.match.invoice_id)]} for rid, i in replies if i.match]
    session.execute(update(inbox).where(inbox.c.id == bindparam("b_row")).values(todo_id=bindparam("b_todo")), links)
    return created


def _bounces(session: Session, config: RunConfig, linked: list[tuple[int, Incoming]], at: datetime, effects: Effects) -> None:
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
        effects.reply_todos = _reply_todos(session, config, linked, at)
    _bounces(
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
