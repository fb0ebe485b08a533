"""The send cycle's way out: a batch's letters built, recorded `sending` a few at a time, sent, settled.

The run (cycle.py) decides, claims and prepares; this sends on the worker thread that
outgoing/overlap.py gives it, through the one way out (outgoing.send), and gives back what it
never sent.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import bindparam, delete, update
from sqlalchemy.orm import Session

from dunningops import outgoing, signing
from dunningops.dunning import claims, compose
from dunningops.dunning.aliases import deliver_outbox, pending_confirmations
from dunningops.dunning.context import RunContext
from dunningops.dunning.runconfig import RunConfig
from dunningops.dunning.schedule import Decision
from dunningops.errors import InvalidInputError
from dunningops.notify import portal
from dunningops.outgoing.letter import REMINDER_KEY, Letter, Outcome, Recorded
from dunningops.store.engine import Store
from dunningops.store.schema import ActionRow, AliasRow, TemplateRow
from dunningops.transport.base import Transport
from dunningops.transport.message import Address, OutgoingMessage

actions = ActionRow.__table__
# Emails recorded `sending` (and handed to the transport) at a time, within a batch.
SEND_CHUNK = 40


class WayOut:
    """The run's transport, opened when the first email is due (the outbox's A3 confirmations go
    first), and the sending of each batch's letters on the worker thread."""

    def __init__(self, store: Store, ctx: RunContext, factory: Callable[[RunConfig], Transport] | None):
        self.store, self.ctx, self.factory = store, ctx, factory
        self.transport: Transport | None = None
        self.failed = False  # a send raised: nothing more is prepared

    def open(self) -> Transport:
        if self.transport is None:
            if self.factory is None:
                raise InvalidInputError("sending needs a transport (settings.sending.transport)")
            self.transport = self.factory(self.ctx.config)
            self.ctx = self.ctx.with_transport(self.transport)
            self.ctx.report.confirmations = deliver_outbox(self.store, self.ctx.config, self.transport, self.ctx.at)
        return self.transport

    def send(self, letters: list[Letter]) -> None:
        try:
            send_letters(self.store, self.ctx, letters)
        except BaseException:
            self.failed = True
            raise

    def give_back(self, letters: list[Letter]) -> None:
        """Letters claimed and rendered but never sent (the send before them failed): due again."""
        release(self.store, self.ctx, letters)

    def finish(self) -> None:
        """After the reminders: the outbox's confirmations, and A9's receipts in what the caps leave."""
        with self.store.session() as session:
            outbox = pending_confirmations(session, count=True)
            owed = portal.has_pending(session)  # A9: receipts the caps held back (one indexed query)
        if self.transport is None and (outbox or (owed and self.factory is not None)):
            self.open()
        if owed and self.transport is not None and not stopped(self.ctx):
            # The rest waits for the next cycle.
            send_portal(self.store, self.ctx, self.transport)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def send_portal(store: Store, ctx: RunContext, transport: Transport) -> None:
    done = portal.send_pending(store, ctx.config, at=ctx.at, transport=transport)
    ctx.report.add_messages(done.messages)
    ctx.report.errors += done.problems
    if done.fatal is not None:
        raise done.fatal


def stopped(ctx: RunContext) -> bool:
    return ctx.stop is not None and ctx.stop.is_set()


def targets(d: Decision) -> list[Decision]:
    """The decision and the ones merged into its email (same customer, plan and step): one action row each."""
    return [d, *d.merged]


def send_letters(store: Store, ctx: RunContext, letters: list[Letter]) -> None:
    assert ctx.transport is not None
    # Recorded `sending` a few at a time: a process killed mid-batch leaves at most one chunk
    # `unknown` (it may have left); the rest of its claims go back to the next cycle.
    for start in range(0, len(letters), SEND_CHUNK):
        if stopped(ctx):
            release(store, ctx, letters[start:])
            return
        outgoing.send(
            store,
            ctx.transport,
            letters[start : start + SEND_CHUNK],
            at=ctx.at,
            domain=ctx.domain,
            reserve=lambda session, recorded: reserve_steps(session, ctx, recorded),
            settle=lambda session, outcomes: settle(session, ctx, outcomes),
            stop=ctx.stop,
        )


def release(store: Store, ctx: RunContext, letters: list[Letter]) -> None:
    """The claims of letters never handed over: the steps are due again."""
    assert ctx.runner is not None
    with store.session(write_lock=True) as session:
        keys = [claims.key_of(t) for letter in letters for t in targets(letter.tag.decision)]
        claims.release(session, keys, runner_id=ctx.runner.id)


def letter_of(ctx: RunContext, drafted: compose.Draft) -> Letter:
    s, r, d = drafted.sender, drafted.recipients, drafted.decision
    message = OutgoingMessage(
        message_id="",
        from_=Address(s.from_address, s.name),
        to=[Address(c.email, c.name) for c in r.to],
        cc=[Address(c.email, c.name) for c in r.cc],
        bcc=[Address(c.email, c.name) for c in r.bcc],
        reply_to=Address(s.reply_to) if s.reply_to else None,
        subject=drafted.email.subject,
        text=drafted.email.text,
        html=drafted.email.html,
        date=ctx.at,
        # RFC 3834: discourages auto-responders; people still reply.
        headers={"Auto-Submitted": "auto-generated", "X-Dunningops-Customer": d.customer},
    )
    return Letter(
        message=message,
        kind="reminder",
        automatic=True,
        customer_id=d.customer_id,
        plan_id=d.plan.id,
        step_id=d.step.id,
        anchor_invoice_id=d.anchor_invoice_id,
        template_id=d.step.template,
        language=drafted.language,
        sender_ref=s.ref,
        invoice_ids=tuple(drafted.invoice_ids),
        reuse=REMINDER_KEY,
        track_opens=signing.public_base_url(ctx.config.settings) if d.plan.track_opens else "",
        tag=drafted,
    )


def reserve_steps(session: Session, ctx: RunContext, recorded: list[Recorded]) -> None:
    """The steps' claims become ``sent``, committed with the `sending` messages: from now on the steps count as performed."""
    assert ctx.runner is not None
    links = [(claims.key_of(t), r.id) for r in recorded for t in targets(r.letter.tag.decision)]
    claims.settle(session, "sent", links, runner_id=ctx.runner.id, at=ctx.at)


def settle(session: Session, ctx: RunContext, outcomes: list[Outcome]) -> None:
    report, again, sent = ctx.report, [], []
    for o in outcomes:
        d = o.letter.tag.decision
        report.add_messages(
            [{"message_id": o.message_id, "customer": d.customer, "kind": "reminder", "status": o.status, "detail": o.problem}]
        )
        if o.status == "sent":
            report.sent += 1
            sent.append(o.letter.tag)
        elif o.status == "failed":
            report.failed += 1  # C11: a failed reminder is not re-sent automatically
        elif o.status == "deferred":
            # Nothing was delivered: the step is due again next run, and that send reuses this Message-ID.
            report.deferred += 1
            again += [
                {"p": t.plan.id, "s": t.step.id, "c": t.customer_id, "a": t.anchor_invoice_id}
                for t in targets(o.letter.tag.decision)
            ]
        else:
            report.unconfirmed += 1  # may have left: the step stays performed, never re-sent
    if again:
        session.execute(
            delete(actions).where(
                actions.c.plan_id == bindparam("p"),
                actions.c.step_id == bindparam("s"),
                actions.c.customer_id == bindparam("c"),
                actions.c.anchor_invoice_id == bindparam("a"),
            ),
            again,
        )
    if sent:  # T4: the template's last send; the alias's too
        session.execute(
            update(TemplateRow.__table__)
            .where(TemplateRow.id.in_({dr.decision.step.template for dr in sent}))
            .values(last_sent_at=ctx.at)
        )
        aliases = {dr.sender.ref.split(".", 1)[1] for dr in sent if dr.sender.ref.startswith("alias.")}
        if aliases:
            session.execute(update(AliasRow.__table__).where(AliasRow.id.in_(aliases)).values(last_sent_at=ctx.at))
