"""Turning a due step into an email: its invoices, recipients, sender, rendered content, message."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from dunningops.dunning import recipients as rcpt
from dunningops.dunning.due import invoice_paused
from dunningops.dunning.runconfig import RunConfig, StepConfig
from dunningops.dunning.schedule import Decision
from dunningops.dunning.senders import Sender, resolve
from dunningops.render import RenderedEmail
from dunningops.render.context import EmailContext, InvoiceData
from dunningops.render.pdf import address_lines
from dunningops.render.renderer import RenderRequest
from dunningops.spec.models import Settings
from dunningops.store.meta import signing_key
from dunningops.store.schema import CustomerRow, InvoiceRow
from dunningops.store.schema_notices import IncidentRow

invoices, incidents, customers = InvoiceRow.__table__, IncidentRow.__table__, CustomerRow.__table__
# T8: a closed incident's rating link lives at most this long (RatingNotice.link_days' bound).
RATING_DAYS_MAX = 365


def invoice_columns() -> tuple:
    """What an email says of an invoice (InvoiceData's fields), as Batch.load and the notifications read them."""
    c = invoices.c
    return (
        c.id,
        c.customer_id,
        c.number,
        c.issue_date,
        c.due_date,
        c.amount_cents,
        c.outstanding_cents,
        c.currency,
        c.document_url,
    )


@dataclass
class Batch:
    """What a batch of decisions needs from the ledger, loaded in a few queries."""

    contacts: dict[int, list[rcpt.Contact]]
    invoices: dict[int, list]  # customer id → open, unpaused invoice rows, oldest first
    # T8: customer id → the incidents that may still be rated (id, closed_at), most recent first.
    ratable: dict[int, list[tuple[int, datetime | None]]] = field(default_factory=dict)
    rating_key: bytes | None = None  # the public links' key, read only when some incident may be rated
    addresses: dict[int, str] = field(default_factory=dict)  # customer id → postal address (customer.address)

    @classmethod
    def load(cls, session: Session, customer_ids: list[int], today: date | None = None) -> Batch:
        """The contacts and the open invoices of ``customer_ids``; without the invoices under a pause on
        ``today`` (a pause past its date holds until a run ends it when no ``today`` is given)."""
        by_customer: dict[int, list] = defaultdict(list)
        ids = sorted(set(customer_ids))
        for start in range(0, len(ids), 1000):
            rows = session.execute(
                select(*invoice_columns())
                .where(
                    invoices.c.customer_id.in_(ids[start : start + 1000]),
                    and_(
                        invoices.c.status == "open", ~invoice_paused(invoices, today) if today else invoices.c.paused.is_(False)
                    ),
                )
                # By customer first: ordering by due date alone made SQLite walk every open invoice.
                .order_by(invoices.c.customer_id, invoices.c.due_date, invoices.c.id)
            )
            for row in rows:
                by_customer[row.customer_id].append(row)
        ratable = _ratable(session, ids, today)
        key = signing_key(session) if ratable else None
        return cls(rcpt.load_contacts(session, ids), by_customer, ratable, key, _addresses(session, ids))

    def rating_url(self, settings: Settings, customer_id: int, today: date) -> str | None:
        """T8: the rating link of the customer's most recent incident that can still be rated (open, or
        closed without a rating while its closure email's link still works); None without one."""
        if self.rating_key is None:
            return None
        days = settings.notifications.rating.link_days
        for incident_id, closed_at in self.ratable.get(customer_id, ()):
            if closed_at is None or closed_at.date() >= today - timedelta(days=days):
                from dunningops.incidents.ratings import rating_url  # incidents builds on this package

                # From the end of the sending day: the dry run and every batch of one day sign the same link.
                tz = ZoneInfo(settings.company.timezone)
                return rating_url(settings, self.rating_key, incident_id, datetime.combine(today + timedelta(days=1), time(), tz))
        return None

    def invoices_for(self, d: Decision) -> list:
        """Customer-level: every open invoice this step covers (one email lists them all); invoice-level:
        the anchor, and the anchors of the decisions merged into it (the same step, one email)."""
        rows = self.invoices.get(d.customer_id, [])
        if d.plan.level == "invoice":
            anchors = set(d.anchor_invoice_ids)
            return [r for r in rows if r.id in anchors]
        return [r for r in rows if r.due_date <= d.threshold]


@dataclass
class Draft:
    decision: Decision
    recipients: rcpt.Recipients
    sender: Sender
    language: str
    email: RenderedEmail
    invoice_ids: list[int]


def template_of(step: StepConfig) -> str:
    """An email or letter step's template: the spec requires one (``Step``), so a missing one is a bug."""
    if step.template is None:
        raise ValueError(f"step {step.plan_id}.{step.id}: a {step.action} action has no template")
    return step.template


def pick_language(config: RunConfig, template_id: str, customer_locale: str | None) -> tuple[str, str]:
    """(template language, formatting locale): the customer's language when the template has it."""
    company_locale = config.settings.company.locale
    locales = config.templates[template_id]["locales"]
    wanted = (customer_locale or company_locale).split("_")[0]
    if wanted in locales:
        return wanted, customer_locale or company_locale
    return company_locale.split("_")[0], company_locale


def context(
    config: RunConfig,
    d: Decision,
    invoice_rows: list,
    contact: rcpt.Contact | None,
    sender: Sender,
    today: date,
    locale: str,
    customer: dict | None = None,
    rating_url: str | None = None,
    address: str | None = None,
) -> EmailContext:
    c = config.settings.company
    return EmailContext(
        company={
            "name": c.name,
            "logo_url": c.logo_url,
            "brand_color": c.brand_color,
            "country": c.country,
            "currency": c.currency,
        },
        customer=customer or {"name": d.customer_name, "external_id": d.customer, "address": address},
        contact={"name": contact.name if contact else None, "email": contact.email if contact else None},
        invoices=[
            InvoiceData(
                number=r.number,
                due_date=r.due_date,
                amount_cents=r.amount_cents,
                outstanding_cents=r.outstanding_cents,
                currency=r.currency,
                issue_date=r.issue_date,
                document_url=r.document_url,
                days_overdue=max(0, (today - r.due_date).days),
            )
            for r in invoice_rows
        ],
        sender={"name": sender.name, "email": sender.email},
        signature=sender.signature,
        today=today,
        locale=locale,
        rating_url=rating_url,
    )


def _ratable(session: Session, ids: list[int], today: date | None) -> dict[int, list[tuple[int, datetime | None]]]:
    """T8: per customer, its incidents that may be rated (open, or closed without a rating), most recent first;
    one query per 1,000 customers, on the (customer_id, state) index."""
    found: dict[int, list[tuple[int, datetime | None]]] = defaultdict(list)
    closed = and_(incidents.c.state == "closed", incidents.c.rating.is_(None))
    if today is not None:
        closed = and_(closed, incidents.c.closed_at >= datetime.combine(today - timedelta(days=RATING_DAYS_MAX + 1), time(), UTC))
    for start in range(0, len(ids), 1000):
        rows = session.execute(
            select(incidents.c.customer_id, incidents.c.id, incidents.c.closed_at)
            .where(incidents.c.customer_id.in_(ids[start : start + 1000]), or_(incidents.c.state == "open", closed))
            .order_by(incidents.c.customer_id, incidents.c.opened_at.desc(), incidents.c.id.desc())
        )
        for row in rows:
            found[row.customer_id].append((row.id, row.closed_at))
    return found


def _addresses(session: Session, ids: list[int]) -> dict[int, str]:
    """customer.address: the postal address of those of ``ids`` that have one, a line each; one query per 1,000."""
    found: dict[int, str] = {}
    c = customers.c
    known = or_(c.address_line1.is_not(None), c.postal_code.is_not(None), c.city.is_not(None))
    for start in range(0, len(ids), 1000):
        rows = session.execute(
            select(c.id, c.address_line1, c.address_line2, c.postal_code, c.city, c.country).where(
                c.id.in_(ids[start : start + 1000]), known
            )
        )
        for row in rows:
            found[row.id] = "\n".join(address_lines(row._mapping))
    return found


def address(config: RunConfig, batch: Batch, d: Decision) -> tuple[rcpt.Recipients, Sender | None]:
    """Who an email step goes to (C6, C9) and from (A2, A3): the sender is None when nobody can receive it."""
    who = rcpt.choose(d.step, batch.contacts.get(d.customer_id, []), tz=ZoneInfo(config.settings.company.timezone))
    if who.problem:
        return who, None
    return who, resolve(config, d.step.sender, d.account_manager, d.plan.reply_to)


@dataclass(frozen=True)
class Pending:
    """An email step addressed, its context built: all it lacks is its rendering."""

    decision: Decision
    recipients: rcpt.Recipients
    sender: Sender
    template: str
    language: str
    context: EmailContext
    invoice_ids: list[int]

    @property
    def request(self) -> RenderRequest:
        return self.template, self.language, self.context

    def drafted(self, email: RenderedEmail) -> Draft:
        return Draft(self.decision, self.recipients, self.sender, self.language, email, self.invoice_ids)


def pending(config: RunConfig, batch: Batch, d: Decision, today: date) -> Pending | rcpt.Recipients:
    """A due email step (with the invoices of the decisions merged into it) ready to render, or the
    Recipients (with its problem, in words a person can act on) when nobody can receive it."""
    who, sender = address(config, batch, d)
    if sender is None:
        return who
    template = template_of(d.step)
    language, locale = pick_language(config, template, d.locale)
    rows = batch.invoices_for(d)
    url = batch.rating_url(config.settings, d.customer_id, today)
    postal = batch.addresses.get(d.customer_id)
    ctx = context(config, d, rows, who.to[0], sender, today, locale, rating_url=url, address=postal)
    return Pending(d, who, sender, template, language, ctx, [r.id for r in rows])
