"""The message history (E6, A8): recorded ``sending`` before the SMTP transaction, its outcome
after, looked up by Message-ID (R5), listed; the only writer of the ``messages`` table.

A ``sending`` row whose process died mid-send may or may not have left. Each row names the
runner (store/runners.py) that recorded it: when that runner's lock is free, its process is
dead, the row is reported ``unknown`` at once, and the next send cycle marks it so. Rows of
runners still alive are theirs to finish, whoever else is sending at the time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, and_, bindparam, case, false, func, or_, select, update
from sqlalchemy.orm import Session

from dunningops.alerts.events import AlertEvent
from dunningops.outgoing import tracking
from dunningops.outgoing.letter import Letter, Outcome, Recorded
from dunningops.store.bulk import insert_ids
from dunningops.store.meta import organisation_tag, signing_key
from dunningops.store.runners import live_runners
from dunningops.store.schema import ContactRow, CustomerRow, MessageRow
from dunningops.transport.base import SendResult
from dunningops.transport.message import new_message_id

messages, contacts, customers = MessageRow.__table__, ContactRow.__table__, CustomerRow.__table__

# Every kind of email, and whether it counts against the sending caps (T6). The caps exist because
# mail to customers past them is classed as spam: reminders, manual and on-demand emails and
# customer notifications count; proofs to colleagues, alias confirmations (to our own sender
# addresses) and alerts to the team do not.
KINDS = {
    "reminder": True,
    "manual": True,
    "on_demand": True,
    "notification": True,
    "proof": False,
    "alias_confirmation": False,
    "alert": False,
}
COUNTED_KINDS = tuple(k for k, counted in KINDS.items() if counted)
STATUSES = ("sending", "sent", "failed", "deferred", "unknown")
INTERRUPTED = "interrupted during sending: it may or may not have left; never sent again"


def _row(letter: Letter, message_id: str, at: datetime, runner_id: int | None) -> dict:
    msg = letter.message
    return {
        "runner_id": runner_id,
        "message_id": message_id,
        "kind": letter.kind,
        "automatic": letter.automatic,
        "customer_id": letter.customer_id,
        "plan_id": letter.plan_id,
        "step_id": letter.step_id,
        "anchor_invoice_id": letter.anchor_invoice_id,
        "todo_id": letter.todo_id,
        "template_id": letter.template_id,
        "language": letter.language,
        "sender_ref": letter.sender_ref,
        "from_address": msg.from_.email,
        "from_name": msg.from_.name,
        "reply_to": msg.reply_to.email if msg.reply_to else None,
        "to_addresses": [a.email for a in msg.to],
        "cc_addresses": [a.email for a in msg.cc],
        "bcc_addresses": [a.email for a in msg.bcc],
        "subject": msg.subject,
        "invoice_ids": list(letter.invoice_ids),
        "status": "sending",
        "error": None,
        "performed_by": letter.performed_by,
        "created_at": at,
        "sent_at": None,
    }


def record(
    session: Session, letters: Sequence[Letter], *, at: datetime, domain: str, runner_id: int | None = None
) -> list[Recorded]:
    """Record ``letters`` ``sending`` by ``runner_id``; returns them with their Message-IDs, in order.

    A letter whose ``reuse`` key (or ``reuse_id``) names a ``deferred`` row takes that row back
    to ``sending`` with the new content and keeps its Message-ID: nothing of it was delivered,
    and a server or a reader that saw the first try recognises the second. A letter whose
    deferred row another process took back meanwhile is left out (that process sends it).
    """
    deferred = _deferred_rows(session, letters)
    organisation = organisation_tag(session)
    key = signing_key(session) if any(letter.track_opens for letter in letters) else b""
    fresh: list[tuple[int, Letter, str]] = []
    taken: dict[int, Recorded] = {}
    lost: set[int] = set()
    claimed_rows: set[int] = set()
    for i, letter in enumerate(letters):
        row = deferred.get(("id", letter.reuse_id)) if letter.reuse_id else deferred.get((letter.reuse, letter.key(letter.reuse)))
        if row is not None and row.id not in claimed_rows:
            claimed_rows.add(row.id)
            values = _row(letter, row.message_id, at, runner_id)
            result = session.execute(
                update(messages).where(messages.c.id == row.id, messages.c.status == "deferred").values(**values)
            )
            done = cast(CursorResult, result).rowcount  # an UPDATE's result is a CursorResult
            if done == 1:
                taken[i] = Recorded(letter, row.id, _stamped(letter, row.message_id, at, key), reused=True)
            else:
                lost.add(i)
        elif letter.reuse_id:
            lost.add(i)  # the row it should reuse is no longer deferred: someone else sent it
        else:
            fresh.append((i, letter, new_message_id(domain, organisation)))
    if fresh:
        # One executemany (a statement per message was most of the cycle's time).
        ids = insert_ids(session, messages, [_row(letter, mid, at, runner_id) for _, letter, mid in fresh])
        for (i, letter, mid), row_id in zip(fresh, ids, strict=True):
            taken[i] = Recorded(letter, row_id, _stamped(letter, mid, at, key))
    return [taken[i] for i in range(len(letters)) if i not in lost]


def _stamped(letter: Letter, message_id: str, at: datetime, key: bytes):
    # The Date header is the run's instant, not the machine's clock (reproducible, and what the history says).
    message = dataclasses.replace(letter.message, message_id=message_id, date=letter.message.date or at)
    if letter.track_opens:  # E6 "opened": the pixel's token names the Message-ID, known only now
        message = tracking.with_pixel(message, letter.track_opens, key)
    return message


def _deferred_rows(session: Session, letters: Sequence[Letter]) -> dict:
    """The deferred rows the letters may reuse, in one query (deferred rows are few)."""
    keys = {letter.reuse for letter in letters if letter.reuse and not letter.reuse_id}
    ids = [letter.reuse_id for letter in letters if letter.reuse_id]
    if not keys and not ids:
        return {}
    kinds = {letter.kind for letter in letters if letter.reuse or letter.reuse_id}
    columns = sorted({c for key in keys for c in key})
    rows = session.execute(
        select(messages.c.id, messages.c.message_id, messages.c.kind, *(messages.c[c] for c in columns if c != "kind"))
        .where(messages.c.status == "deferred", messages.c.kind.in_(kinds))
        .order_by(messages.c.id)
    ).all()
    found: dict = {}
    for row in rows:  # the latest row wins
        found[("id", row.id)] = row
        for key in keys:
            found[(key, tuple(getattr(row, c) for c in key))] = row
    return found


def record_outcomes(
    session: Session, recorded: Sequence[Recorded], results: Sequence[SendResult], *, at: datetime
) -> list[Outcome]:
    """Each message's outcome, in a few executemany statements; C9 for the recipients refused."""
    outcomes: list[Outcome] = []
    updates: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    for r, result in zip(recorded, results, strict=True):
        # Anything a transport may add later is treated as "may have left": never sent again.
        status = result.status if result.status in ("sent", "failed", "deferred", "unknown") else "unknown"
        outcome = Outcome(r, result, status)
        outcomes.append(outcome)
        error = None if status == "sent" and not result.permanent_recipients else outcome.problem or None
        updates.append({"rid": r.id, "st": status, "at": at if status == "sent" else None, "err": error})
        # C9: an undelivered email marks the contact invalid (C11: it is not re-sent automatically).
        # Only recipients the server refused for the address's sake are listed: a 5xx at MAIL FROM or
        # DATA (a spam verdict, our sender refused) is not the contact's fault.
        if r.letter.customer_id is not None:
            for address in result.permanent_recipients or ():
                refused.append({"c": r.letter.customer_id, "e": address, "why": outcome.problem[:500], "at": at})
    if updates:
        session.execute(
            update(messages)
            .where(messages.c.id == bindparam("rid"))
            .values(status=bindparam("st"), sent_at=bindparam("at"), error=bindparam("err")),
            updates,
        )
    if refused:
        session.execute(
            update(contacts)
            .where(contacts.c.customer_id == bindparam("c"), contacts.c.email == bindparam("e"))
            .values(valid=False, invalid_reason=bindparam("why"), invalid_at=bindparam("at")),
            refused,
        )
        # C9: announced like a bounce that comes back by email (recorded here, with the outcome).
        from dunningops.alerts import store as alert_store  # it reads the ledger, which reads this module

        alert_store.record(
            session,
            [
                AlertEvent(
                    "bounce",
                    f"email to {r['e']} refused by the mail server: the contact is marked invalid",
                    r["c"],
                    r["e"],
                    details={"diagnostic": r["why"]},
                )
                for r in refused
            ],
            at=at,
        )
    return outcomes


# --- interrupted sends --------------------------------------------------------------------


def _dead_senders(session: Session) -> tuple[set[int], bool]:
    """The runners of ``sending`` rows that are dead, and whether rows from before runners exist."""
    candidates = set(session.scalars(select(messages.c.runner_id).where(messages.c.status == "sending").distinct()))
    legacy = None in candidates
    candidates.discard(None)
    return {c for c in candidates if c is not None} - live_runners(session, candidates), legacy


def _is_dead(dead: set[int], legacy: bool) -> ColumnElement[bool]:
    condition = messages.c.runner_id.in_(dead) if dead else false()
    return or_(condition, messages.c.runner_id.is_(None)) if legacy else condition


def mark_interrupted(session: Session) -> int:
    """``sending`` rows left by a process that died mid-send become ``unknown`` (never re-sent).

    Only rows whose runner is dead: a ``sending`` row of a process still at work (another daemon,
    a `todo send` in another terminal) is left to it. Returns how many rows were marked.
    """
    dead, legacy = _dead_senders(session)
    if not dead and not legacy:
        return 0
    result = session.execute(
        update(messages).where(messages.c.status == "sending", _is_dead(dead, legacy)).values(status="unknown", error=INTERRUPTED)
    )
    return cast(CursorResult, result).rowcount  # an UPDATE's result is a CursorResult


def give_up(session: Session, row_ids: Sequence[int]) -> None:
    """Rows whose outcome could not be recorded: ``unknown`` now (their runner may live on for hours)."""
    session.execute(
        update(messages)
        .where(messages.c.id.in_(list(row_ids)), messages.c.status == "sending")
        .values(status="unknown", error=INTERRUPTED)
    )


@contextmanager
def settled(session: Session) -> Iterator[ColumnElement[Any]]:
    """The status column as a reader should see it: ``sending`` reads ``unknown`` when its runner is dead.

    Yields a column expression, for queries inside the block.
    """
    dead, legacy = _dead_senders(session)
    if not dead and not legacy:
        yield messages.c.status
        return
    yield case((and_(messages.c.status == "sending", _is_dead(dead, legacy)), "unknown"), else_=messages.c.status)


# --- reading ------------------------------------------------------------------------------


def _normal_message_id(value: str) -> str:
    value = value.strip()
    return value if value.startswith("<") else f"<{value}>"


def find_by_message_id(session: Session, message_id: str) -> dict | None:
    """The history row of a Message-ID (``<x@y>`` or ``x@y``), with the customer's external id; for R5."""
    row = (
        session.execute(
            select(messages, customers.c.external_id.label("customer"))
            .outerjoin(customers, customers.c.id == messages.c.customer_id)
            .where(messages.c.message_id == _normal_message_id(message_id))
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


def list_messages(
    session: Session, *, customer: str | None = None, status: str | None = None, kind: str | None = None, limit: int = 100
) -> list[dict]:
    """E6/A8: emails, newest first, with their status, automatic or manual, sender identity and who sent them."""
    with settled(session) as shown:
        query = (
            select(
                messages.c.id,
                messages.c.created_at,
                customers.c.external_id.label("customer"),
                messages.c.kind,
                messages.c.automatic,
                shown.label("status"),
                messages.c.sender_ref,
                messages.c.from_address,
                messages.c.performed_by,
                messages.c.plan_id,
                messages.c.step_id,
                messages.c.to_addresses,
                messages.c.subject,
                messages.c.message_id,
                messages.c.error,
                messages.c.sent_at,
                messages.c.opened_at,
            )
            .outerjoin(customers, customers.c.id == messages.c.customer_id)
            .order_by(messages.c.id.desc())
            .limit(limit)
        )
        if customer:
            query = query.where(customers.c.external_id == customer)
        if status:
            query = query.where(shown == status)
        if kind:
            query = query.where(messages.c.kind == kind)
        return [dict(r) for r in session.execute(query).mappings()]


def counts_and_unknown(session: Session) -> tuple[dict[str, int], list[dict]]:
    """Messages by status, and the ones that may or may not have left, as a reader should see them."""
    with settled(session) as shown:
        by_status = {s: n for s, n in session.execute(select(shown.label("s"), func.count()).group_by(shown))}
        unknown = [
            dict(r)
            for r in session.execute(
                select(
                    messages.c.message_id,
                    messages.c.kind,
                    messages.c.to_addresses,
                    messages.c.subject,
                    messages.c.created_at,
                    messages.c.status.label("recorded_status"),
                )
                .where(shown == "unknown")
                .order_by(messages.c.id)
            ).mappings()
        ]
    return by_status, unknown


def latest(session: Session, **columns) -> dict | None:
    """The newest history row with these column values (e.g. kind, template_id, customer_id)."""
    row = (
        session.execute(
            select(messages)
            .where(and_(*(messages.c[c] == v for c, v in columns.items())))
            .order_by(messages.c.id.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None
