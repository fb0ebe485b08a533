"""The send cycle, once: decide what is due, turn manual steps into to-dos, send automatic emails.

Sending is at most once: messages are recorded ``sending`` (with the step's action row, which
is unique) and committed before the SMTP transaction, then ``sent`` after. A crash in between
leaves ``sending`` rows, which the next run marks ``unknown``: reported by `dunningops status`,
never re-sent, since their action rows say the step was performed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from dunningops.dunning import compose, todos
from dunningops.dunning.aliases import deliver_outbox
from dunningops.errors import DunningOpsError
from dunningops.dunning.calendar import SendingCalendar
from dunningops.dunning.recipients import Recipients
from dunningops.dunning.runconfig import RunConfig
from dunningops.dunning.schedule import Decision, decide
from dunningops.render import RenderError, Renderer
from dunningops.store.engine import Store
from dunningops.store.schema import ActionRow, AliasRow, ContactRow, MessageRow, OutboxRow, TemplateRow
from dunningops.transport.base import Transport
from dunningops.transport.message import Address, OutgoingMessage, new_message_id

messages, actions, contacts = MessageRow.__table__, ActionRow.__table__, ContactRow.__table__
BATCH = 200


@dataclass
class CycleReport:
    at: datetime
    decisions: list[Decision] = field(default_factory=list)
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    todos: int = 0
    unknown: int = 0  # `sending` rows of an interrupted run, marked unknown now
    confirmations: int = 0  # A3 alias confirmation emails delivered from the outbox
    errors: list[str] = field(default_factory=list)

    def outcomes(self) -> Counter:
        return Counter(d.outcome for d in self.decisions)


def mark_interrupted(session: Session) -> int:
    """`sending` rows left by a run that died mid-transaction become `unknown` (never re-sent)."""
    return session.execute(update(messages).where(messages.c.status == "sending").values(status="unknown")).rowcount


def run_send(
    store: Store, *, at: datetime, transport_factory: Callable[[RunConfig], Transport] | None = None,
    dry_run: bool = False, batch_size: int = BATCH, config: RunConfig | None = None,
) -> CycleReport:
    """One send cycle at ``at``. ``dry_run`` decides and reports, and writes nothing."""
    report = CycleReport(at=at)
    with store.session() as session:
        if not dry_run:
            report.unknown = mark_interrupted(session)
        config = config or RunConfig.from_store(session)
        report.decisions = list(decide(session, config, at))
    if dry_run:
        return report
    today = SendingCalendar(config.settings).local(at).date()
    renderer = Renderer(config.templates, company=config.settings.company.model_dump())
    manual = [d for d in report.decisions if d.outcome == "todo"]
    auto = [d for d in report.decisions if d.outcome == "send"]
    for start in range(0, len(manual), batch_size):
        with store.session() as session:
            _make_todos(session, config, renderer, manual[start:start + batch_size], at, today, report)
    with store.session() as session:
        pending_outbox = session.scalar(select(func.count()).where(OutboxRow.delivered_at.is_(None)))
    if not auto and not pending_outbox:
        return report
    if transport_factory is None:
        raise DunningOpsError("sending needs a transport (settings.sending.transport)")
    transport = transport_factory(config)
    try:
        report.confirmations = deliver_outbox(store, config, transport, at)
        for start in range(0, len(auto), batch_size):
            _send_batch(store, config, renderer, transport, auto[start:start + batch_size], at, today, report)
    finally:
        transport.close()
    return report


def _make_todos(session, config, renderer, batch, at, today, report) -> None:
    loaded = compose.Batch.load(session, [d.customer_id for d in batch])
    for d in batch:
        payload: dict = {"action": d.step.action}
        rows = loaded.invoices_for(d)
        payload["invoice_ids"] = [r.id for r in rows]
        if d.step.action == "email":
            try:
                drafted = compose.draft(config, renderer, loaded, d, today)
            except RenderError as exc:
                report.errors.append(f"{d.customer} {d.plan.id}.{d.step.id}: {exc}")
                continue
            if isinstance(drafted, Recipients):
                payload["problem"] = drafted.problem
            else:
                payload.update(_prepared(drafted))
        elif d.step.action == "letter":
            language, locale = compose.pick_language(config, d.step.template, d.locale)
            who = loaded.contacts.get(d.customer_id, [])
            primary = next((c for c in who if c.is_primary), None)
            sender = compose.resolve(config, None, d.account_manager, None)
            try:
                letter = renderer.render(d.step.template, language, compose.context(config, d, rows, primary, sender, today, locale))
            except RenderError as exc:
                report.errors.append(f"{d.customer} {d.plan.id}.{d.step.id}: {exc}")
                continue
            payload.update({"template": d.step.template, "language": language, "subject": letter.subject,
                            "html": letter.html, "text": letter.text})
        else:  # call
            payload["phones"] = [{"name": c.name, "phone": c.phone, "email": c.email}
                                 for c in loaded.contacts.get(d.customer_id, []) if c.phone]
        _record_todo(session, config, d, "email" if d.step.action == "email" else d.step.action, payload, at, report)


def _prepared(drafted: compose.Draft) -> dict:
    """A6: the prepared email, sender preselected; the person sending may change it."""
    r = drafted.recipients
    return {
        "sender": drafted.sender.ref, "from": drafted.sender.from_address, "from_name": drafted.sender.name,
        "reply_to": drafted.sender.reply_to, "to": [c.email for c in r.to], "cc": [c.email for c in r.cc],
        "bcc": [c.email for c in r.bcc], "template": drafted.decision.step.template, "language": drafted.language,
        "subject": drafted.email.subject, "text": drafted.email.text, "html": drafted.email.html,
        "invoice_ids": drafted.invoice_ids,
    }


def _record_todo(session, config, d: Decision, kind: str, payload: dict, at: datetime, report: CycleReport, reason: str | None = None) -> None:
    todo_id = todos.add(
        session, kind=kind, customer_id=d.customer_id, now=at, assignee=todos.assignee_for(config, d), payload=payload,
        reason=reason or payload.get("problem"), plan_id=d.plan.id, step_id=d.step.id,
        invoice_id=d.anchor_invoice_id if d.plan.level == "invoice" else None,
    )
    session.execute(insert(actions).values(plan_id=d.plan.id, step_id=d.step.id, customer_id=d.customer_id,
                                           anchor_invoice_id=d.anchor_invoice_id, outcome="todo", todo_id=todo_id, performed_at=at))
    report.todos += 1


def _send_batch(store, config: RunConfig, renderer, transport: Transport, batch, at, today, report) -> None:
    domain = config.settings.deliverability.domain or config.settings.deliverability.fallback_sender.split("@")[1]
    outgoing: list[tuple[OutgoingMessage, compose.Draft]] = []
    with store.session() as session:
        loaded = compose.Batch.load(session, [d.customer_id for d in batch])
        for d in batch:
            try:
                drafted = compose.draft(config, renderer, loaded, d, today)
            except RenderError as exc:
                # Never sent with a hole in it; the step stays due until the template is fixed.
                report.errors.append(f"{d.customer} {d.plan.id}.{d.step.id}: {exc}")
                continue
            if isinstance(drafted, Recipients):
                _record_todo(session, config, d, "no_recipient", {"action": "email", "problem": drafted.problem}, at, report)
                continue
            outgoing.append((_message(drafted, new_message_id(domain)), drafted))
        if not outgoing:
            return
        # One executemany per table (a statement per message was most of the cycle's time).
        ids = session.execute(
            insert(messages).returning(messages.c.id, sort_by_parameter_order=True),
            [_message_row(m, dr, at) for m, dr in outgoing],
        ).scalars().all()
        session.execute(insert(actions), [
            {"plan_id": dr.decision.plan.id, "step_id": dr.decision.step.id, "customer_id": dr.decision.customer_id,
             "anchor_invoice_id": dr.decision.anchor_invoice_id, "outcome": "sent", "message_id": mid, "performed_at": at}
            for (_, dr), mid in zip(outgoing, ids, strict=True)
        ])
    results = transport.send([m for m, _ in outgoing])
    with store.session() as session:
        _record_results(session, outgoing, results, at, report)
        session.execute(update(TemplateRow.__table__).where(TemplateRow.id.in_({d.decision.step.template for _, d in outgoing}))
                        .values(last_sent_at=at))
        aliases = {d.sender.ref.split(".", 1)[1] for _, d in outgoing if d.sender.ref.startswith("alias.")}
        if aliases:
            session.execute(update(AliasRow.__table__).where(AliasRow.id.in_(aliases)).values(last_sent_at=at))


def _message(drafted: compose.Draft, message_id: str) -> OutgoingMessage:
    s, r, d = drafted.sender, drafted.recipients, drafted.decision
    return OutgoingMessage(
        message_id=message_id, from_=Address(s.from_address, s.name), to=[Address(c.email, c.name) for c in r.to],
        cc=[Address(c.email, c.name) for c in r.cc], bcc=[Address(c.email, c.name) for c in r.bcc],
        reply_to=Address(s.reply_to) if s.reply_to else None, subject=drafted.email.subject,
        text=drafted.email.text, html=drafted.email.html,
        # RFC 3834: discourages auto-responders; people still reply.
        headers={"Auto-Submitted": "auto-generated", "X-Dunningops-Customer": d.customer},
    )


def _message_row(msg: OutgoingMessage, drafted: compose.Draft, at: datetime) -> dict:
    d = drafted.decision
    return {
        "message_id": msg.message_id, "kind": "reminder", "automatic": True, "customer_id": d.customer_id,
        "plan_id": d.plan.id, "step_id": d.step.id, "template_id": d.step.template, "language": drafted.language,
        "sender_ref": drafted.sender.ref, "from_address": msg.from_.email, "from_name": msg.from_.name,
        "reply_to": msg.reply_to.email if msg.reply_to else None, "to_addresses": [a.email for a in msg.to],
        "cc_addresses": [a.email for a in msg.cc], "bcc_addresses": [a.email for a in msg.bcc], "subject": msg.subject,
        "invoice_ids": drafted.invoice_ids, "status": "sending", "created_at": at,
    }


def _record_results(session, outgoing: list, results: list, at: datetime, report: CycleReport) -> None:
    """Statuses in a few executemany statements; C9 for refused recipients; deferred steps due again."""
    updates, deferred, refused = [], [], []
    for (msg, drafted), result in zip(outgoing, results, strict=True):
        d = drafted.decision
        if result.status == "sent":
            updates.append({"mid": msg.message_id, "st": "sent", "at": at, "err": None})
            report.sent += 1
        else:
            updates.append({"mid": msg.message_id, "st": "failed" if result.status == "failed" else "deferred",
                            "at": None, "err": f"{result.code} {result.detail}"})
            if result.status == "failed":
                report.failed += 1
            else:
                # Deferred after retries: nothing was delivered, so the step is due again next run.
                deferred.append({"p": d.plan.id, "s": d.step.id, "c": d.customer_id, "a": d.anchor_invoice_id})
                report.deferred += 1
        # C9: an undelivered email marks the contact invalid; C11: it is not re-sent automatically.
        # Only recipients the server refused are marked: a 5xx at MAIL FROM or DATA (a spam
        # verdict, our sender refused) is not the contact's fault.
        for address in result.permanent_recipients or ():
            refused.append({"c": d.customer_id, "e": address, "why": f"{result.code} {result.detail}"[:500], "at": at})
    session.execute(
        update(messages).where(messages.c.message_id == bindparam("mid"))
        .values(status=bindparam("st"), sent_at=bindparam("at"), error=bindparam("err")),
        updates,
    )
    if deferred:
        session.execute(delete(actions).where(
            actions.c.plan_id == bindparam("p"), actions.c.step_id == bindparam("s"),
            actions.c.customer_id == bindparam("c"), actions.c.anchor_invoice_id == bindparam("a"),
        ), deferred)
    if refused:
        session.execute(
            update(contacts).where(contacts.c.customer_id == bindparam("c"), contacts.c.email == bindparam("e"))
            .values(valid=False, invalid_reason=bindparam("why"), invalid_at=bindparam("at")),
            refused,
        )
