"""Templates by hand: preview for a customer, proofs to chosen addresses (T3), sending on demand (T4, T5)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import insert, select, update

from dunningops.dunning import compose
from dunningops.dunning.calendar import SendingCalendar
from dunningops.dunning.recipients import Contact, load_contacts
from dunningops.dunning.runconfig import PlanConfig, RunConfig, StepConfig
from dunningops.dunning.schedule import Decision, sent_counts
from dunningops.dunning.senders import Sender, resolve
from dunningops.errors import DunningOpsError
from dunningops.render import RenderedEmail, Renderer
from dunningops.store.engine import Store
from dunningops.store.schema import CustomerRow, MessageRow, TemplateRow
from dunningops.transport.message import Address, OutgoingMessage, new_message_id

customers, messages = CustomerRow.__table__, MessageRow.__table__
_ADHOC_PLAN = PlanConfig("(on demand)", "on demand", "customer", {}, 0, None, ())


@dataclass
class Prepared:
    customer: dict
    contacts: list[Contact]
    sender: Sender
    language: str
    email: RenderedEmail
    invoice_ids: list[int]


def prepare(session, config: RunConfig, template_id: str, external_id: str, at: datetime,
            language: str | None = None, sender_ref: str | None = None) -> Prepared:
    """Render ``template_id`` for one customer, as the send cycle would (all its open invoices)."""
    if template_id not in config.templates:
        raise DunningOpsError(f"no template {template_id!r} in the applied config")
    row = session.execute(select(customers).where(customers.c.external_id == external_id)).mappings().first()
    if row is None:
        raise DunningOpsError(f"no customer {external_id!r}")
    today = SendingCalendar(config.settings).local(at).date()
    step = StepConfig("(on demand)", "(on demand)", 0, 0, "email", "manual", sender_ref, (), (), (), template_id, None, None)
    d = Decision(row["id"], row["external_id"], row["name"], _ADHOC_PLAN, step, 0, date.max, date.max, "send",
                 account_manager=row["account_manager"], locale=row["locale"])
    batch = compose.Batch.load(session, [row["id"]])
    rows = batch.invoices.get(row["id"], [])
    people = load_contacts(session, [row["id"]]).get(row["id"], [])
    primary = next((c for c in people if c.is_primary and c.valid), None)
    sender = resolve(config, sender_ref, row["account_manager"], None)
    lang, locale = compose.pick_language(config, template_id, row["locale"])
    if language:
        if language not in config.templates[template_id]["locales"]:
            raise DunningOpsError(f"template {template_id!r} has no {language!r} version")
        lang = language
    renderer = Renderer(config.templates, company=config.settings.company.model_dump())
    email = renderer.render(template_id, lang, compose.context(config, d, rows, primary, sender, today, locale))
    return Prepared({"id": row["id"], "external_id": external_id, "name": row["name"]},
                    [c for c in people if c.valid], sender, lang, email, [r.id for r in rows])


def send_prepared(store: Store, config: RunConfig, items: list[tuple[Prepared, list[str]]], *, kind: str, at: datetime,
                  transport_factory: Callable, template_id: str, subject_prefix: str = "") -> list[str]:
    """Send each prepared email to its addresses; record the messages (E6) and the template's last send (T4)."""
    s = config.settings
    domain = s.deliverability.domain or s.deliverability.fallback_sender.split("@")[1]
    built = []
    for p, to in items:
        built.append((p, OutgoingMessage(
            message_id=new_message_id(domain), from_=Address(p.sender.from_address, p.sender.name),
            to=[Address(a) for a in to], reply_to=Address(p.sender.reply_to) if p.sender.reply_to else None,
            subject=subject_prefix + p.email.subject, text=p.email.text, html=p.email.html,
            headers={"X-Dunningops-Customer": p.customer["external_id"]},
        )))
    transport = transport_factory(config)
    try:
        results = transport.send([m for _, m in built])
    finally:
        transport.close()
    lines = []
    with store.session() as session:
        for (p, msg), result in zip(built, results, strict=True):
            session.execute(insert(messages).values(
                message_id=msg.message_id, kind=kind, automatic=False, customer_id=p.customer["id"] if kind != "proof" else None,
                template_id=template_id, language=p.language, sender_ref=p.sender.ref, from_address=msg.from_.email,
                from_name=msg.from_.name, reply_to=p.sender.reply_to, to_addresses=[a.email for a in msg.to], cc_addresses=[],
                bcc_addresses=[], subject=msg.subject, invoice_ids=p.invoice_ids, status=result.status, created_at=at,
                sent_at=at if result.status == "sent" else None,
                error=None if result.status == "sent" else f"{result.code} {result.detail}",
            ))
            lines.append(f"{p.customer['external_id']}: {result.status} to {', '.join(a.email for a in msg.to)}")
        session.execute(update(TemplateRow.__table__).where(TemplateRow.id == template_id).values(last_sent_at=at))
    return lines


def check_caps(store: Store, config: RunConfig, at: datetime, count: int) -> None:
    """T6: on-demand sends count against the caps too."""
    calendar = SendingCalendar(config.settings)
    with store.session() as session:
        today, month = sent_counts(session, calendar, at)
    caps = config.settings.sending.caps
    room = min(caps.per_day - today, caps.per_month - month)
    if count > room:
        raise DunningOpsError(f"sending {count} emails would pass the sending caps ({caps.per_day}/day, {caps.per_month}/month; "
                              f"{max(0, room)} left, T6)")
