"""What every notification to a customer shares: who it goes to, from whom, what it says, and the way out.

A notification is a template (``settings.notifications.<kind>.template``) rendered for one
customer with the context of its kind (the invoices; an incident, a payment, a rating link),
addressed like a plan's email step (C6: by function, else the primary contact; C9: never an
invalid contact) and sent through ``outgoing.send`` as kind ``notification``: recorded
``sending`` before the server sees it, never sent twice (at most once), and counted against the
sending caps (T6) in the transaction that records it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from dunningops import outgoing
from dunningops.dunning import compose
from dunningops.dunning import recipients as rcpt
from dunningops.dunning.calendar import SendingCalendar
from dunningops.dunning.context import message_domain
from dunningops.dunning.ondemand import enforce_caps
from dunningops.dunning.runconfig import PlanConfig, RunConfig, StepConfig
from dunningops.dunning.schedule import Decision
from dunningops.dunning.senders import Sender, resolve
from dunningops.outgoing import Letter, Outcome, Recorded
from dunningops.render import RenderedEmail, Renderer
from dunningops.render.errors import RenderError
from dunningops.store.engine import Store
from dunningops.store.schema import CustomerRow, InvoiceRow
from dunningops.transport.base import Transport
from dunningops.transport.message import Address, OutgoingMessage

customers, invoices = CustomerRow.__table__, InvoiceRow.__table__
_PLAN = PlanConfig("(notification)", "notification", "customer", {}, 0, None, ())
Hook = Callable[[Session, list[Recorded]], None]
SettleHook = Callable[[Session, list[Outcome]], None]


@dataclass
class Notice:
    """One notification owed to one customer.

    ``invoice_ids``: the invoices it lists (None: every open, unpaused invoice of the customer).
    ``extra``: what the kind adds to the context: ``incident``, ``payment``, ``rating_url``
    (render/context.py's EmailContext fields). ``tag`` is the caller's, handed back.
    ``reuse_id``: the history row of this notice's earlier ``deferred`` try: sent again with its
    Message-ID (nothing of it left; a reader who saw the first try recognises the second).
    """

    customer_id: int
    invoice_ids: list[int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    tag: Any = None
    reuse_id: int | None = None


@dataclass
class Ready:
    """A notice rendered and addressed: what will be sent."""

    notice: Notice
    customer: dict  # id, external_id, name
    recipients: rcpt.Recipients
    sender: Sender
    language: str
    email: RenderedEmail
    invoice_ids: list[int]


@dataclass
class Skipped:
    """A notice that cannot be sent, and why (in words a person can act on)."""

    notice: Notice
    customer: dict
    reason: str


def prepare(
    session: Session,
    config: RunConfig,
    notices: Sequence[Notice],
    *,
    template: str,
    sender_ref: str | None,
    to: Sequence[str] = (),
    cc: Sequence[str] = (),
    at: datetime,
    renderer: Renderer | None = None,
) -> list[Ready | Skipped]:
    """Address and render each notice (in the order given); a notice nobody can receive, or whose
    template cannot be rendered, is ``Skipped`` with the reason."""
    if not notices:
        return []
    ids = sorted({n.customer_id for n in notices})
    rows: dict[int, Any] = {}
    for start in range(0, len(ids), 1000):
        for found in session.execute(
            select(
                customers.c.id,
                customers.c.external_id,
                customers.c.name,
                customers.c.locale,
                customers.c.account_manager,
                customers.c.address_line1,
                customers.c.address_line2,
                customers.c.postal_code,
                customers.c.city,
                customers.c.country,
            ).where(customers.c.id.in_(ids[start : start + 1000]))
        ):
            rows[found.id] = found
    calendar = SendingCalendar(config.settings)
    today = calendar.local(at).date()
    batch = compose.Batch.load(session, ids, today)
    step = StepConfig(
        "(notification)", template, 0, 0, "email", "manual", sender_ref, tuple(to), tuple(cc), (), template, None, None
    )
    tz = ZoneInfo(config.settings.company.timezone)
    renderer = renderer or Renderer(config.templates, company=config.settings.company.model_dump())
    out: list[Ready | Skipped] = []
    for notice in notices:
        row = rows.get(notice.customer_id)
        if row is None:
            out.append(Skipped(notice, {"id": notice.customer_id, "external_id": "?", "name": "?"}, "the customer was deleted"))
            continue
        customer = {"id": row.id, "external_id": row.external_id, "name": row.name}
        who = rcpt.choose(step, batch.contacts.get(row.id, []), tz=tz)
        if who.problem:
            out.append(Skipped(notice, customer, who.problem))
            continue
        sender = resolve(config, sender_ref, row.account_manager, None)
        open_rows = batch.invoices.get(row.id, [])
        listed = open_rows if notice.invoice_ids is None else [r for r in open_rows if r.id in set(notice.invoice_ids)]
        if notice.invoice_ids is not None and len(listed) < len(notice.invoice_ids):
            listed += _closed_invoices(session, [i for i in notice.invoice_ids if i not in {r.id for r in listed}])
        language, locale = compose.pick_language(config, template, row.locale)
        d = Decision(
            row.id, row.external_id, row.name, _PLAN, step, 0, date.max, date.max, "send",
            account_manager=row.account_manager, locale=row.locale,
        )  # fmt: skip
        ctx = compose.context(config, d, listed, who.to[0], sender, today, locale, customer=_customer_vars(row))
        ctx = _with_extra(ctx, notice.extra)
        try:
            email = renderer.render(template, language, ctx)
        except RenderError as exc:
            out.append(Skipped(notice, customer, f"template {template} cannot be rendered: {exc}"))
            continue
        out.append(Ready(notice, customer, who, sender, language, email, [r.id for r in listed]))
    return out


def _customer_vars(row: Any) -> dict:
    lines = [row.address_line1, row.address_line2, " ".join(p for p in (row.postal_code, row.city) if p)]
    return {"name": row.name, "external_id": row.external_id, "address": "\n".join(p for p in lines if p) or None}


def _closed_invoices(session: Session, ids: list[int]) -> list:
    """Invoices a notice names that are no longer open (a receipt for the payment that settled one)."""
    if not ids:
        return []
    return list(
        session.execute(
            select(*compose.invoice_columns()).where(invoices.c.id.in_(ids)).order_by(invoices.c.due_date, invoices.c.id)
        )
    )


def _with_extra(ctx, extra: dict[str, Any]):
    if not extra:
        return ctx
    import dataclasses

    return dataclasses.replace(ctx, **extra)


def letters(ready: Sequence[Ready], *, template: str, at: datetime) -> list[Letter]:
    """The ``notification`` letters of ``ready`` (one email per customer, To / Cc as addressed)."""
    out = []
    for r in ready:
        out.append(
            Letter(
                message=OutgoingMessage(
                    message_id="",
                    from_=Address(r.sender.from_address, r.sender.name),
                    to=[Address(c.email, c.name) for c in r.recipients.to],
                    cc=[Address(c.email, c.name) for c in r.recipients.cc],
                    reply_to=Address(r.sender.reply_to) if r.sender.reply_to else None,
                    subject=r.email.subject,
                    text=r.email.text,
                    html=r.email.html,
                    headers={"X-Dunningops-Customer": r.customer["external_id"]},
                    date=at,
                ),
                kind="notification",
                customer_id=r.customer["id"],
                template_id=template,
                language=r.language,
                sender_ref=r.sender.ref,
                invoice_ids=tuple(r.invoice_ids),
                reuse_id=r.notice.reuse_id,
                tag=r,
            )
        )
    return out


def send(
    store: Store,
    config: RunConfig,
    ready: Sequence[Ready],
    *,
    template: str,
    at: datetime,
    transport: Transport | None = None,
    transport_factory: Callable[[RunConfig], Transport] | None = None,
    reserve: Hook | None = None,
    settle: SettleHook | None = None,
) -> list[Outcome]:
    """Send ``ready`` through the one way out: the caps (T6) are checked in the transaction that
    records the emails ``sending`` (with the caller's ``reserve``: claims, last-notified dates),
    the outcomes committed with the caller's ``settle``.

    Raises:
        ConflictError: the emails would pass the caps (nothing was sent), or ``reserve``'s.
        TransportError: the transport cannot work as configured (after recording the outcomes).
    """
    if not ready:
        return []

    def _reserve(session: Session, recorded: list[Recorded]) -> None:
        enforce_caps(session, config, at, len(recorded))
        if reserve is not None:
            reserve(session, recorded)

    own = transport is None
    if transport is None:
        assert transport_factory is not None, "send() needs a transport or a transport_factory"
        transport = transport_factory(config)
    try:
        return outgoing.send(
            store,
            transport,
            letters(ready, template=template, at=at),
            at=at,
            domain=message_domain(config.settings),
            reserve=_reserve,
            settle=settle,
        )
    finally:
        if own:
            transport.close()
