"""Sending by hand: a manual-email to-do's prepared email (A6), with the sender it preselected or another."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import insert, select, update

from dunningops.dunning import todos
from dunningops.dunning.runconfig import RunConfig
from dunningops.dunning.senders import resolve
from dunningops.errors import DunningOpsError
from dunningops.store.engine import Store
from dunningops.store.schema import CustomerRow, MessageRow
from dunningops.transport.message import Address, OutgoingMessage, new_message_id

messages = MessageRow.__table__


def send_todo(store: Store, todo_id: int, *, at: datetime, sender: str | None, member: str | None,
              transport_factory: Callable[[RunConfig], object]) -> str:
    with store.session() as session:
        config = RunConfig.from_store(session)
        todo = todos.get(session, todo_id)
        payload = todo["payload"]
        if todo["status"] != todos.OPEN:
            raise DunningOpsError(f"to-do #{todo_id} is already {todo['status']}")
        if todo["kind"] != "email" or not payload.get("subject"):
            raise DunningOpsError(f"to-do #{todo_id} has no prepared email to send ({payload.get('problem') or todo['kind']})")
        if member and member not in config.members:
            raise DunningOpsError(f"unknown member {member!r}")
        manager = session.scalar(select(CustomerRow.account_manager).where(CustomerRow.id == todo["customer_id"]))
    plan = config.plans.get(todo["plan_id"] or "")
    who = resolve(config, sender or payload["sender"], manager, plan.reply_to if plan else None)
    s = config.settings
    domain = s.deliverability.domain or s.deliverability.fallback_sender.split("@")[1]
    msg = OutgoingMessage(
        message_id=new_message_id(domain), from_=Address(who.from_address, who.name), to=[Address(a) for a in payload["to"]],
        cc=[Address(a) for a in payload.get("cc", [])], bcc=[Address(a) for a in payload.get("bcc", [])],
        reply_to=Address(who.reply_to) if who.reply_to else None, subject=payload["subject"], text=payload["text"],
        html=payload.get("html"), headers={"X-Dunningops-Customer": todo["customer"]},
    )
    with store.session() as session:
        session.execute(insert(messages).values(
            message_id=msg.message_id, kind="manual", automatic=False, customer_id=todo["customer_id"], plan_id=todo["plan_id"],
            step_id=todo["step_id"], template_id=payload.get("template"), language=payload.get("language"), sender_ref=who.ref,
            from_address=msg.from_.email, from_name=msg.from_.name, reply_to=who.reply_to, to_addresses=payload["to"],
            cc_addresses=payload.get("cc", []), bcc_addresses=payload.get("bcc", []), subject=msg.subject,
            invoice_ids=payload.get("invoice_ids", []), status="sending", performed_by=member, created_at=at,
        ))
    transport = transport_factory(config)
    try:
        result = transport.send([msg])[0]
    finally:
        transport.close()
    with store.session() as session:
        status = {"sent": "sent", "failed": "failed"}.get(result.status, "deferred")
        session.execute(update(messages).where(messages.c.message_id == msg.message_id).values(
            status=status, sent_at=at if status == "sent" else None,
            error=None if status == "sent" else f"{result.code} {result.detail}"))
        if status == "sent":
            todos.close(session, todo_id, "sent", member, at)
    if status != "sent":
        raise DunningOpsError(f"the email was not sent: {result.code} {result.detail}")
    return f"sent from {who.name} <{who.from_address}> to {', '.join(payload['to'])}"
