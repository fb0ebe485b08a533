"""What people do with incoming mail (R1, R8): list it, read it, link it to another customer,
delete it, and ask why a message was classified and matched as it was (``explain``).

Re-linking or deleting a reply recomputes the reply to-dos it was behind (R8, R10): the old
customer's to-do now shows its latest remaining reply, or is dismissed when none remains (its
plan resumes: the send cycle's next decision counts from its step and minimum delay); the new
customer gets the reply behind its own to-do when replies are managed (R3).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.orm import Session

from dunningops.dunning.runconfig import RunConfig
from dunningops.errors import ConflictError, InvalidInputError, NotFoundError
from dunningops.inbox.batch import TEMPORARY_PREFIX
from dunningops.inbox.match import Match, match_batch
from dunningops.inbox.parse import ParsedMail, UnparseableMessageError, parse_message, to_json
from dunningops.inbox.replies import assignee as assignee_of
from dunningops.inbox.replies import reply_payload
from dunningops.store.meta import organisation_tag
from dunningops.store.schema import CustomerRow, InboxMessageRow, TodoRow

inbox, customers, todos = InboxMessageRow.__table__, CustomerRow.__table__, TodoRow.__table__

STATUSES = ("linked", "ignored", "quarantined", "deleted")
MAX_EXPLAIN_FILES = 1000


def list_inbox(
    session: Session,
    *,
    status: str | None = "linked",
    kind: str | None = None,
    customer: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[dict], int]:
    """Incoming mail, newest first, with its customer; and how many match in all."""
    where = []
    if status:
        where.append(inbox.c.status == status)
    else:
        where.append(inbox.c.status != "deleted")
    if kind:
        where.append(inbox.c.kind == kind)
    if customer:
        where.append(customers.c.external_id == customer)
    joined = inbox.outerjoin(customers, customers.c.id == inbox.c.customer_id)
    # The count needs the customers only to filter by one: without, it is an index-only count.
    counted = joined if customer else inbox
    total = session.execute(select(func.count()).select_from(counted).where(*where)).scalar_one()
    rows = session.execute(
        select(
            inbox.c.id,
            inbox.c.imported_at,
            inbox.c.received_at,
            inbox.c.status,
            inbox.c.kind,
            inbox.c.from_address,
            inbox.c.subject,
            customers.c.external_id.label("customer"),
            inbox.c.match_by,
            inbox.c.reason,
            inbox.c.todo_id,
        )
        .select_from(joined)
        .where(*where)
        .order_by(inbox.c.id.desc())
        .limit(limit)
        .offset(offset)
    ).mappings()
    return [dict(r) for r in rows], total


def get(session: Session, inbox_id: int) -> dict[str, Any]:
    row = (
        session.execute(
            select(inbox, customers.c.external_id.label("customer"))
            .outerjoin(customers, customers.c.id == inbox.c.customer_id)
            .where(inbox.c.id == inbox_id)
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFoundError(f"no incoming message #{inbox_id} (see `dunningops inbox list --status all`)")
    return dict(row)


def _customer_id(session: Session, external_id: str) -> int:
    found = session.execute(select(customers.c.id).where(customers.c.external_id == external_id)).scalar_one_or_none()
    if found is None:
        raise NotFoundError(f"no customer {external_id!r} (see `dunningops customers list`)")
    return found


def _release_todo(session: Session, row: dict, *, at: datetime, by: str | None) -> str | None:
    """The reply to-do ``row`` was behind now shows the latest other reply, or is dismissed (R8, R10)."""
    todo_id = row["todo_id"]
    if todo_id is None:
        return None
    session.execute(update(inbox).where(inbox.c.id == row["id"]).values(todo_id=None))
    status = session.execute(select(todos.c.status).where(todos.c.id == todo_id)).scalar_one_or_none()
    if status != "open":
        return None
    latest = (
        session.execute(
            select(inbox.c.id, inbox.c.from_address, inbox.c.subject, inbox.c.reply_text, inbox.c.received_at, inbox.c.message_id)
            .where(inbox.c.todo_id == todo_id, inbox.c.status == "linked")
            .order_by(inbox.c.received_at.desc(), inbox.c.id.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )
    if latest is None:
        session.execute(
            update(todos)
            .where(todos.c.id == todo_id)
            .values(status="dismissed", closed_at=at, closed_by=by, reason="the reply behind it was re-linked or deleted")
        )
        return f"reply to-do #{todo_id} dismissed (no reply left behind it): the customer's plan resumes"
    payload, reason = reply_payload(
        latest["id"], latest["from_address"], latest["subject"], latest["reply_text"], latest["received_at"]
    )
    old = session.execute(select(todos.c.payload).where(todos.c.id == todo_id)).scalar_one() or {}
    session.execute(
        update(todos)
        .where(todos.c.id == todo_id)
        .values(reason=reason, payload={**payload, "replies": max(1, old.get("replies", 1) - 1)})
    )
    return f"reply to-do #{todo_id} now shows message #{latest['id']}"


def _attach_reply(session: Session, config: RunConfig, row: dict, customer_id: int, *, at: datetime) -> str | None:
    """R3/R10 for a reply linked by hand: behind the customer's open reply to-do, or a new one."""
    if not config.settings.replies.manage or row["kind"] != "reply":
        return None
    payload, reason = reply_payload(
        row["id"], row["from_address"], row["subject"], row["reply_text"], row["received_at"], row["message_id"]
    )
    todo_id = session.execute(
        select(todos.c.id).where(
            todos.c.kind == "reply", todos.c.status == "open", todos.c.customer_id == customer_id, todos.c.invoice_id.is_(None)
        )
    ).scalar()
    if todo_id is None:
        manager = session.execute(select(customers.c.account_manager).where(customers.c.id == customer_id)).scalar()
        assignee = assignee_of(config, Match("relinked", customer_id), {customer_id: manager})
        todo_id = session.execute(
            todos.insert()
            .values(
                kind="reply",
                status="open",
                customer_id=customer_id,
                assignee=assignee,
                reason=reason,
                payload={**payload, "replies": 1},
                created_at=at,
            )
            .returning(todos.c.id)
        ).scalar_one()
        note = f"reply to-do #{todo_id} created for {assignee or 'nobody'}"
    else:
        old = session.execute(select(todos.c.payload).where(todos.c.id == todo_id)).scalar_one() or {}
        session.execute(
            update(todos)
            .where(todos.c.id == todo_id)
            .values(reason=reason, payload={**payload, "replies": old.get("replies", 1) + 1})
        )
        note = f"reply to-do #{todo_id} now shows this message"
    session.execute(update(inbox).where(inbox.c.id == row["id"]).values(todo_id=todo_id))
    return note


def relink(session: Session, inbox_id: int, customer: str, *, at: datetime, by: str | None = None) -> list[str]:
    """R8: link a message to another customer (an ignored one too); returns what changed, in lines."""
    row = get(session, inbox_id)
    if row["status"] in ("quarantined", "deleted"):
        raise ConflictError(f"message #{inbox_id} is {row['status']}: it cannot be linked to a customer")
    if row["text"] is None and row["status"] == "ignored":
        raise ConflictError(f"message #{inbox_id} is another organisation's (only its envelope was kept): it cannot be linked")
    target = _customer_id(session, customer)
    if row["customer_id"] == target:
        return [f"message #{inbox_id} is already linked to {customer}"]
    config = RunConfig.from_store(session)
    notes = [f"message #{inbox_id} linked to {customer}" + (f" (was {row['customer']})" if row["customer"] else "")]
    released = _release_todo(session, row, at=at, by=by)
    session.execute(
        update(inbox)
        .where(inbox.c.id == inbox_id)
        .values(customer_id=target, invoice_id=None, status="linked", match_by="relinked", reason=None)
    )
    notes += [n for n in (released, _attach_reply(session, config, {**row, "todo_id": None}, target, at=at)) if n]
    return notes


def delete(session: Session, inbox_id: int, *, at: datetime, by: str | None = None) -> list[str]:
    """R8: delete a message from the inbox (its row stays, marked deleted, so it is never imported again)."""
    row = get(session, inbox_id)
    if row["status"] == "deleted":
        return [f"message #{inbox_id} was already deleted"]
    notes = [f"message #{inbox_id} deleted"]
    released = _release_todo(session, row, at=at, by=by)
    # The content goes; the de-duplication key stays, so that the next import does not bring it back.
    session.execute(
        update(inbox)
        .where(inbox.c.id == inbox_id)
        .values(
            status="deleted",
            text=None,
            reply_text=None,
            raw=None,
            attachments=[],
            details={},
            reason=f"deleted by {by or 'a member'}",
        )
    )
    return notes + ([released] if released else [])


def temporary_customers_count(session: Session) -> int:
    return session.execute(
        select(func.count()).where(
            and_(customers.c.origin == "incoming_message", customers.c.external_id.like(TEMPORARY_PREFIX + "%"))
        )
    ).scalar_one()


def explain(paths: list[Path], session: Session | None) -> list[dict[str, Any]]:
    """For each raw message file: its kind with the evidence, the bounce details, and the match it would get."""
    if len(paths) > MAX_EXPLAIN_FILES:
        raise InvalidInputError(f"{len(paths)} files: explain at most {MAX_EXPLAIN_FILES} at once")
    results: list[dict[str, Any]] = []
    parsed: list[tuple[int, ParsedMail]] = []
    for path in paths:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise InvalidInputError(f"{path}: cannot read it ({exc.strerror or exc})") from None
        try:
            mail = parse_message(raw)
        except UnparseableMessageError as exc:
            results.append({"file": str(path), "kind": None, "quarantine": str(exc), "bounce": None, "match": None})
            continue
        results.append({"file": str(path), **to_json(mail), "match": None})
        parsed.append((len(results) - 1, mail))
    if session is not None and parsed:
        try:
            config: RunConfig | None = RunConfig.from_store(session)
        except ConflictError:
            config = None  # nothing applied yet: match with the default settings
        matches = match_batch(
            session,
            [m for _, m in parsed],
            organisation=organisation_tag(session),
            accept_to=config.settings.inbox.accept_to if config else (),
            import_all=bool(config and config.settings.replies.import_ == "all"),
        )
        external = _external_ids(session, {m.customer_id for m in matches if m.customer_id})
        for (i, _), found in zip(parsed, matches, strict=True):
            results[i]["match"] = {**found.to_json(), "customer": external.get(found.customer_id or 0)}
    return results


def _external_ids(session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return dict(session.execute(select(customers.c.id, customers.c.external_id).where(customers.c.id.in_(sorted(ids)))).all())
