"""Sending by hand: a manual-email to-do's prepared email (A6), with the sender it preselected or another;
and the answer to a customer's reply, from its reply to-do (R1), in the reply's thread.

At most once: the to-do is claimed (open → sent, a conditional update) in the transaction that
records the message ``sending``, before the SMTP transaction; two `todo send` at once, or one
killed mid-way and run again, never send it twice. Deferred or refused, the to-do opens again
(a deferred email's next send keeps its Message-ID); unknown, it stays closed: it may have left.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from dunningops import outgoing
from dunningops.dunning import todos
from dunningops.dunning.context import message_domain
from dunningops.dunning.ondemand import enforce_caps
from dunningops.dunning.runconfig import RunConfig
from dunningops.dunning.senders import resolve
from dunningops.errors import ConflictError, InvalidInputError, UnavailableError
from dunningops.outgoing import Letter, Outcome, Recorded
from dunningops.store.engine import Store
from dunningops.store.schema import CustomerRow, TodoRow
from dunningops.transport.base import Transport
from dunningops.transport.message import Address, OutgoingMessage

todo_rows = TodoRow.__table__


MAX_ANSWER = 100_000  # characters: an answer, not an archive
_RE = ("re:", "ré:", "aw:", "sv:")


def _answer(todo_id: int, payload: dict, text: str | None) -> dict:
    """The email answering a reply to-do's customer: to them, "RE: their subject", in their thread."""
    if text is None or not text.strip():
        raise InvalidInputError(f"to-do #{todo_id} is a reply: give the answer with --text FILE (or - for stdin)")
    if len(text) > MAX_ANSWER:
        raise InvalidInputError(f"the answer is {len(text):,} characters long: at most {MAX_ANSWER:,}")
    if not payload.get("from"):
        raise InvalidInputError(f"to-do #{todo_id}: the reply behind it has no sender address to answer")
    subject = payload.get("subject") or ""
    headers = {}
    if payload.get("message_id"):
        headers = {"In-Reply-To": payload["message_id"], "References": payload["message_id"]}
    return {
        "to": [payload["from"]],
        "subject": subject if subject.lower().startswith(_RE) else f"RE: {subject}".strip(),
        "text": text,
        "headers": headers,
    }


def send_todo(
    store: Store,
    todo_id: int,
    *,
    at: datetime,
    sender: str | None,
    member: str | None,
    transport_factory: Callable[[RunConfig], Transport],
    text: str | None = None,
    on_claim: Callable[[Session], None] | None = None,
) -> str:
    """Send to-do ``todo_id``'s prepared email, as ``sender`` (default: the one it preselected); returns a line.

    A reply to-do has no prepared email: ``text`` is the answer, sent to the customer who wrote, in
    the thread of their message, from ``sender`` (default: the member answering, else the account
    manager); once sent, the to-do is closed and the customer's plan goes on (R4).

    ``on_claim`` writes in the transaction that takes the to-do and records the email `sending`
    (the console records there what the member did)."""
    with store.session() as session:
        config = RunConfig.from_store(session)
        todo = todos.get(session, todo_id)
        payload = todo["payload"]
        if todo["status"] != todos.OPEN:
            raise ConflictError(f"to-do #{todo_id} is already {todo['status']}")
        if todo["kind"] == "reply":
            payload = _answer(todo_id, payload, text)
        elif text is not None:
            raise InvalidInputError(f"to-do #{todo_id} is a {todo['kind']} to-do: --text answers reply to-dos only")
        elif todo["kind"] != "email" or not payload.get("subject"):
            raise InvalidInputError(f"to-do #{todo_id} has no prepared email to send ({payload.get('problem') or todo['kind']})")
        if member and member not in config.members:
            raise InvalidInputError(f"unknown member {member!r}")
        manager = session.scalar(select(CustomerRow.account_manager).where(CustomerRow.id == todo["customer_id"]))
    plan = config.plans.get(todo["plan_id"] or "")
    default = payload.get("sender") or (f"member.{member}" if member else "account_manager")
    who = resolve(config, sender or default, manager, plan.reply_to if plan else None)
    letter = Letter(
        message=OutgoingMessage(
            message_id="",
            from_=Address(who.from_address, who.name),
            to=[Address(a) for a in payload["to"]],
            cc=[Address(a) for a in payload.get("cc", [])],
            bcc=[Address(a) for a in payload.get("bcc", [])],
            reply_to=Address(who.reply_to) if who.reply_to else None,
            subject=payload["subject"],
            text=payload["text"],
            html=payload.get("html"),
            headers={"X-Dunningops-Customer": todo["customer"], **payload.get("headers", {})},
            date=at,
        ),
        kind="manual",
        customer_id=todo["customer_id"],
        plan_id=todo["plan_id"],
        step_id=todo["step_id"],
        todo_id=todo_id,
        template_id=payload.get("template"),
        language=payload.get("language"),
        sender_ref=who.ref,
        invoice_ids=tuple(payload.get("invoice_ids", [])),
        performed_by=member,
        reuse=("kind", "todo_id"),
    )

    def claim(session: Session, recorded: list[Recorded]) -> None:
        result = session.execute(
            update(todo_rows)
            .where(todo_rows.c.id == todo_id, todo_rows.c.status == todos.OPEN)
            .values(status="sent", closed_at=at, closed_by=member)
        )
        taken = cast(CursorResult, result).rowcount  # an UPDATE's result is a CursorResult
        if taken != 1:
            raise ConflictError(f"to-do #{todo_id} is already closed (another send took it first)")
        enforce_caps(session, config, at, len(recorded))  # T6: manual emails count
        if on_claim is not None:
            on_claim(session)

    def settle(session: Session, outcomes: list[Outcome]) -> None:
        if outcomes[0].status in ("deferred", "failed"):  # nothing left: the to-do is open again
            session.execute(
                update(todo_rows).where(todo_rows.c.id == todo_id).values(status=todos.OPEN, closed_at=None, closed_by=None)
            )

    transport = transport_factory(config)
    try:
        outcome = outgoing.send(
            store,
            transport,
            [letter],
            at=at,
            domain=message_domain(config.settings),
            reserve=claim,
            settle=settle,
        )[0]
    finally:
        transport.close()
    if outcome.status == "sent":
        return f"sent from {who.name} <{who.from_address}> to {', '.join(payload['to'])}"
    if outcome.status == "unknown":
        raise UnavailableError(
            f"the server did not confirm the email ({outcome.problem}): it may or may not have left, so it is not "
            f"sent again; to-do #{todo_id} is closed (see `dunningops messages --status unknown`)"
        )
    if outcome.status == "deferred":
        raise UnavailableError(f"the email was not sent ({outcome.problem}); to-do #{todo_id} stays open: send it again later")
    raise ConflictError(f"the email was refused: {outcome.problem}")
