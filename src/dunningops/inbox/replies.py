"""R3, R9, R10: the reply to-dos of a batch, one open per customer (or per invoice of an invoice-level
plan), the latest reply behind it; and who gets it. Set-based: a few statements per batch."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from dunningops.dunning.runconfig import RunConfig
from dunningops.inbox.batch import EXCERPT, Incoming
from dunningops.inbox.match import Match
from dunningops.store.bulk import insert_ids
from dunningops.store.schema import CustomerRow, InboxMessageRow, TodoRow

inbox, todos, customers = InboxMessageRow.__table__, TodoRow.__table__, CustomerRow.__table__


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


def assignee(config: RunConfig, match: Match, account_managers: dict[int, str | None]) -> str | None:
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


def reply_todos(session: Session, config: RunConfig, linked: list[tuple[int, Incoming]], at: datetime) -> int:
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
                "assignee": assignee(config, item.match, managers),
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
