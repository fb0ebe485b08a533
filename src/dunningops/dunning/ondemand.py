"""Templates by hand: preview for a customer, proofs to chosen addresses (T3), sending on demand (T4, T5)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dunningops import outgoing
from dunningops.dunning import compose
from dunningops.dunning.calendar import SendingCalendar
from dunningops.dunning.context import message_domain
from dunningops.dunning.recipients import Contact, load_contacts
from dunningops.dunning.runconfig import PlanConfig, RunConfig, StepConfig
from dunningops.dunning.schedule import Decision, sent_counts
from dunningops.dunning.senders import Sender, resolve
from dunningops.errors import ConflictError, InvalidInputError, NotFoundError
from dunningops.outgoing import Letter, Outcome, Recorded
from dunningops.render import RenderedEmail, Renderer
from dunningops.store.engine import Store
from dunningops.store.schema import CustomerRow, MessageRow, TemplateRow
from dunningops.transport.base import Transport
from dunningops.transport.message import Address, OutgoingMessage

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


def prepare(
    session,
    config: RunConfig,
    template_id: str,
    external_id: str,
    at: datetime,
    language: str | None = None,
    sender_ref: str | None = None,
) -> Prepared:
    """Render ``template_id`` for one customer, as the send cycle would (all its open invoices)."""
    if template_id not in config.templates:
        raise NotFoundError(f"no template {template_id!r} in the applied config")
    row = session.execute(select(customers).where(customers.c.external_id == external_id)).mappings().first()
    if row is None:
        raise NotFoundError(f"no customer {external_id!r}")
    today = SendingCalendar(config.settings).local(at).date()
    step = StepConfig("(on demand)", "(on demand)", 0, 0, "email", "manual", sender_ref, (), (), (), template_id, None, None)
    d = Decision(
        row["id"],
        row["external_id"],
        row["name"],
        _ADHOC_PLAN,
        step,
        0,
        date.max,
        date.max,
        "send",
        account_manager=row["account_manager"],
        locale=row["locale"],
    )
    batch = compose.Batch.load(session, [row["id"]])
    rows = batch.invoices.get(row["id"], [])
    people = load_contacts(session, [row["id"]]).get(row["id"], [])
    primary = next((c for c in people if c.is_primary and c.valid), None)
    sender = resolve(config, sender_ref, row["account_manager"], None)
    lang, locale = compose.pick_language(config, template_id, row["locale"])
    if language:
        if language not in config.templates[template_id]["locales"]:
            raise InvalidInputError(f"template {template_id!r} has no {language!r} version")
        lang = language
    renderer = Renderer(config.templates, company=config.settings.company.model_dump())
    ctx = compose.context(
        config,
        d,
        rows,
        primary,
        sender,
        today,
        locale,
        rating_url=batch.rating_url(config.settings, row["id"], today),
        address=batch.addresses.get(row["id"]),
    )
    email = renderer.render(template_id, lang, ctx)
    return Prepared(
        {"id": row["id"], "external_id": external_id, "name": row["name"]},
        [c for c in people if c.valid],
        sender,
        lang,
        email,
        [r.id for r in rows],
    )


def send_prepared(
    store: Store,
    config: RunConfig,
    items: list[tuple[Prepared, list[str]]],
    *,
    kind: str,
    at: datetime,
    transport_factory: Callable[[RunConfig], Transport],
    template_id: str,
    subject_prefix: str = "",
    again: bool = False,
) -> list[str]:
    """Send each prepared email to its addresses through the one way out; returns a line per email.

    ``kind`` is ``on_demand`` (T5: counted against the caps, T6) or ``proof`` (T3: to colleagues,
    not counted). An on-demand email whose last send to that customer may or may not have left
    (interrupted, or no clear answer from the server) is not sent again unless ``again``: the
    person asked once, and cannot tell whether the customer has it. A deferred one's next send
    keeps its Message-ID. Proofs are sent as asked: a second proof to a colleague is harmless.

    Raises:
        ConflictError: the caps (T6) or an uncertain earlier send; nothing was sent.
        TransportError: the transport cannot work as configured (after recording the outcomes).
    """
    on_demand = kind != "proof"
    letters = []
    for p, to in items:
        letters.append(
            Letter(
                message=OutgoingMessage(
                    message_id="",
                    from_=Address(p.sender.from_address, p.sender.name),
                    to=[Address(a) for a in to],
                    reply_to=Address(p.sender.reply_to) if p.sender.reply_to else None,
                    subject=subject_prefix + p.email.subject,
                    text=p.email.text,
                    html=p.email.html,
                    headers={"X-Dunningops-Customer": p.customer["external_id"]},
                    date=at,
                ),
                kind=kind,
                customer_id=p.customer["id"] if on_demand else None,
                template_id=template_id,
                language=p.language,
                sender_ref=p.sender.ref,
                invoice_ids=tuple(p.invoice_ids),
                reuse=("kind", "template_id", "customer_id") if on_demand else (),
                tag=p,
            )
        )

    def reserve(session: Session, recorded: list[Recorded]) -> None:
        if not on_demand:
            return
        if not again:
            _refuse_uncertain(session, template_id, recorded)
        enforce_caps(session, config, at, len(recorded))

    def settle(session: Session, outcomes: list[Outcome]) -> None:
        if any(o.status == "sent" for o in outcomes):
            session.execute(update(TemplateRow.__table__).where(TemplateRow.id == template_id).values(last_sent_at=at))  # T4

    transport = transport_factory(config)
    try:
        outcomes = outgoing.send(
            store, transport, letters, at=at, domain=message_domain(config.settings), reserve=reserve, settle=settle
        )
    finally:
        transport.close()
    return [
        f"{o.letter.tag.customer['external_id']}: {o.status} to {', '.join(a.email for a in o.recorded.message.to)}"
        + (f" ({o.problem})" if o.status != "sent" else "")
        for o in outcomes
    ]


def _refuse_uncertain(session: Session, template_id: str, recorded: list[Recorded]) -> None:
    """No second on-demand send of a template to a customer whose last one may or may not have left."""
    ours = [r.id for r in recorded]
    for r in recorded:
        earlier = session.execute(
            select(messages.c.message_id, messages.c.status, messages.c.created_at)
            .where(
                messages.c.kind == "on_demand",
                messages.c.template_id == template_id,
                messages.c.customer_id == r.letter.customer_id,
                messages.c.id.not_in(ours),
            )
            .order_by(messages.c.id.desc())
            .limit(1)
        ).first()
        if earlier is not None and earlier.status in ("sending", "unknown"):
            raise ConflictError(
                f"template {template_id} to customer {r.letter.tag.customer['external_id']}: the last send "
                f"({earlier.message_id}, {earlier.created_at:%Y-%m-%d %H:%M} UTC) was interrupted or is still going on, "
                "so it may or may not have left; nothing was sent (send it again explicitly with --again)"
            )


def _room(session: Session, config: RunConfig, at: datetime) -> int:
    today, month = sent_counts(session, SendingCalendar(config.settings), at)
    caps = config.settings.sending.caps
    return min(caps.per_day - today, caps.per_month - month)


def check_caps(store: Store, config: RunConfig, at: datetime, count: int) -> None:
    """T6: on-demand sends count against the caps too (checked again when they are recorded)."""
    with store.session() as session:
        room = _room(session, config, at)
    if count > room:
        _over(config, count, room)


def enforce_caps(session: Session, config: RunConfig, at: datetime, count: int) -> None:
    """T6, in the transaction that just recorded ``count`` counted emails `sending`: refuse if they pass a cap."""
    room = _room(session, config, at) + count
    if count > room:
        _over(config, count, room)


def _over(config: RunConfig, count: int, room: int) -> None:
    caps = config.settings.sending.caps
    raise ConflictError(
        f"sending {count} email{'s' if count != 1 else ''} would pass the sending caps "
        f"({caps.per_day}/day, {caps.per_month}/month; {max(0, room)} left)"
    )
