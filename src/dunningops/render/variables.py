"""The documented template variables, and the values a template sees for one EmailContext.

What is documented here is what a template may use: ``check_template`` refuses
anything else at validate time, and the renderer exposes nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

from dunningops.render.context import EmailContext, InvoiceData
from dunningops.render.formatting import long_date, money, money_by_currency
from dunningops.render.widget import RatingWidget


@dataclass(frozen=True)
class Variable:
    name: str
    description: str
    example: str


VARIABLES: tuple[Variable, ...] = (
    Variable("company.name", "our company's name", "Ateliers Durand SAS"),
    Variable("company.logo_url", "URL of our logo (may be empty)", "https://www.example.fr/logo.png"),
    Variable("company.brand_color", "our brand colour", "#0b4f6c"),
    Variable("company.country", "our country (ISO code)", "FR"),
    Variable("company.currency", "our currency (ISO code)", "EUR"),
    Variable("customer.name", "the customer's name", "Boulangerie Martin SARL"),
    Variable("customer.external_id", "the customer's id in the accounting system", "C-1042"),
    Variable("customer.portal_url", "link to the customer's payment portal (may be empty)", "https://pay.example.fr/c/1042"),
    Variable(
        "customer.address", "the customer's postal address, several lines (may be empty)", "12 rue de la Paix\\n75002 Paris"
    ),
    Variable("contact.name", "the recipient's name (may be empty: test it with {% if contact.name %})", "Julie Martin"),
    Variable("contact.email", "the recipient's address", "julie.martin@example.fr"),
    Variable("invoices", "the invoices the reminder covers: {% for invoice in invoices %}…{% endfor %}", "(list)"),
    Variable("invoice.number", "the invoice's reference", "F-2026-0142"),
    Variable("invoice.issue_date", "its issue date, spelt out (may be empty)", "1 septembre 2026"),
    Variable("invoice.due_date", "its due date, spelt out", "1 octobre 2026"),
    Variable("invoice.amount", "its amount, with currency", "1 200,00 €"),
    Variable("invoice.outstanding", "what is still to be paid on it, with currency", "840,00 €"),
    Variable("invoice.currency", "its currency (ISO code)", "EUR"),
    Variable("invoice.days_overdue", "days since the due date (a number; 0 before it)", "12"),
    Variable(
        "invoice.document_url", "link to view or download the invoice (may be empty)", "https://docs.example.fr/F-2026-0142.pdf"
    ),
    Variable("totals.outstanding", "total still to be paid (per currency, joined with +)", "2 040,00 €"),
    Variable("totals.amount", "total amount of the invoices (per currency)", "2 400,00 €"),
    Variable("totals.count", "how many invoices (a number)", "2"),
    Variable("sender.name", "the sender's display name", "Ateliers Durand – Comptabilité clients"),
    Variable("sender.email", "the sender's address", "comptabilite@example.fr"),
    Variable("signature", "the sender alias's signature, several lines (may be empty)", "Le service Comptabilité clients"),
    Variable("today", "the date of sending, spelt out", "5 octobre 2026"),
    Variable("incident.reference", "incident notifications: the incident's reference", "INC-0012"),
    Variable("incident.observations", "incident notifications: its description (several lines)", "Facture contestée : …"),
    Variable("incident.state", "incident notifications: open or closed, in the customer's language", "clos"),
    Variable("incident.opened_on", "incident notifications: the day it was opened, spelt out", "2 octobre 2026"),
    Variable("incident.closed_on", "incident notifications: the day it was closed (may be empty)", "9 octobre 2026"),
    Variable("incident.invoice_number", "incident notifications: the invoice it is about (may be empty)", "F-2026-0142"),
    Variable(
        "rating_widget",
        "links with which the customer rates how an incident was handled (empty when there is none to rate)",
        "(widget)",
    ),
    Variable("payment.reference", "payment notifications: the payment's reference", "PAY-2026-0087"),
    Variable("payment.amount", "payment notifications: its amount, with currency", "840,00 €"),
    Variable("payment.date", "payment notifications: its date, spelt out", "12 octobre 2026"),
    Variable("payment.invoice_number", "payment notifications: the invoice it pays", "F-2026-0142"),
    Variable(
        "payment.outstanding", "payment notifications: what is left to pay on that invoice (empty when nothing is)", "360,00 €"
    ),
)

# Fields of each object a template can reach; "invoice" is an item of ``invoices``.
FIELDS: dict[str, frozenset[str]] = {}
for _v in VARIABLES:
    if "." in _v.name:
        _obj, _field = _v.name.split(".", 1)
        FIELDS[_obj] = FIELDS.get(_obj, frozenset()) | {_field}
TOP_LEVEL: frozenset[str] = frozenset(v.name.split(".")[0] for v in VARIABLES) - {"invoice"}


class Vars(dict):
    """A template object: a dict that knows its own name, so an undefined field is named in full."""

    __slots__ = ("_path",)

    def __init__(self, path: str, values: dict):
        super().__init__(values)
        self._path = path


def _documented(path: str, source: dict) -> Vars:
    # Documented fields are always defined (None when unknown); nothing else is exposed.
    return Vars(path, {f: source.get(f) for f in FIELDS[path]})


def _invoice(inv: InvoiceData, index: int, locale: str) -> Vars:
    amount = money(inv.amount_cents, inv.currency, locale)
    return Vars(
        f"invoices[{index}]",
        {
            "number": inv.number,
            "issue_date": long_date(inv.issue_date, locale) if inv.issue_date else None,
            "due_date": long_date(inv.due_date, locale),
            "amount": amount,
            # Most invoices a reminder lists are unpaid: nothing paid, the same text.
            "outstanding": amount
            if inv.outstanding_cents == inv.amount_cents
            else money(inv.outstanding_cents, inv.currency, locale),
            "currency": inv.currency,
            "days_overdue": inv.days_overdue,
            "document_url": inv.document_url or None,
        },
    )


def template_vars(ctx: EmailContext) -> dict:
    """The variables a template is rendered with: raw context values, formatted for ``ctx.locale``."""
    locale = ctx.locale
    invoices = [_invoice(inv, i, locale) for i, inv in enumerate(ctx.invoices)]
    if ctx.invoices:
        outstanding = money_by_currency(((i.outstanding_cents, i.currency) for i in ctx.invoices), locale)
        amount = money_by_currency(((i.amount_cents, i.currency) for i in ctx.invoices), locale)
    else:
        outstanding = amount = money(0, ctx.company.get("currency") or "EUR", locale)
    return {
        "company": _documented("company", ctx.company),
        "customer": _documented("customer", ctx.customer),
        "contact": _documented("contact", ctx.contact),
        "invoices": invoices,
        "totals": Vars("totals", {"outstanding": outstanding, "amount": amount, "count": len(invoices)}),
        "sender": _documented("sender", ctx.sender),
        "signature": ctx.signature or "",
        "today": long_date(ctx.today, locale),
        "incident": _incident(ctx.incident, locale),
        "payment": _payment(ctx.payment, locale),
        "rating_widget": RatingWidget(ctx.rating_url, locale.split("_")[0]),
    }


_STATE_WORDS = {"fr": {"open": "ouvert", "closed": "clos"}, "en": {"open": "open", "closed": "closed"}}


def _incident(incident: dict | None, locale: str) -> Vars:
    if not incident:  # every field None (a reminder's case): what the lines below give for {}
        return _documented("incident", {})
    words = _STATE_WORDS.get(locale.split("_")[0], _STATE_WORDS["en"])
    opened, closed = incident.get("opened_on"), incident.get("closed_on")
    return _documented(
        "incident",
        {
            "reference": incident.get("reference"),
            "observations": incident.get("observations"),
            "state": words.get(incident.get("state") or "", incident.get("state")),
            "opened_on": long_date(opened, locale) if opened else None,
            "closed_on": long_date(closed, locale) if closed else None,
            "invoice_number": incident.get("invoice_number"),
        },
    )


def _payment(payment: dict | None, locale: str) -> Vars:
    if not payment:  # every field None (a reminder's case): what the lines below give for {}
        return _documented("payment", {})
    currency = payment.get("currency") or "EUR"
    amount, left, paid_on = payment.get("amount_cents"), payment.get("outstanding_cents"), payment.get("paid_on")
    return _documented(
        "payment",
        {
            "reference": payment.get("reference"),
            "amount": money(amount, currency, locale) if amount is not None else None,
            "date": long_date(paid_on, locale) if paid_on else None,
            "invoice_number": payment.get("invoice_number"),
            "outstanding": money(left, currency, locale) if left else None,
        },
    )


def template_vars_text() -> str:
    """The variables and @TAG@s as a readable table, for ``dunningops template vars``."""
    from dunningops.render.tags import TAGS, UNSUPPORTED

    width = max(len(v.name) for v in VARIABLES) + 2
    described = max(len(v.description) for v in VARIABLES) + 2
    lines = [
        "Template variables: write {{ name }} in a subject or a body.",
        "",
        f"  {'VARIABLE':<{width}}{'DESCRIPTION':<{described}}EXAMPLE (fr_FR)",
    ]
    for v in VARIABLES:
        lines.append(f"  {v.name:<{width}}{v.description:<{described}}{v.example}")
    lines += [
        "",
        "Amounts and dates are formatted for the customer's locale (fr_FR: 1 200,00 €, 1 octobre 2026;",
        "en_GB: €1,200.00, 1 October 2026). A value that may be empty prints nothing when it is.",
        "Any other name is an error at validate time, and a reminder is never sent with a hole in it.",
        "",
        "Tags of the source product, replaced before rendering:",
        "",
    ]
    tag_width = max(len(t) for t in (*TAGS, *UNSUPPORTED)) + 2
    lines += [f"  {tag:<{tag_width}}{expr}" for tag, expr in TAGS.items()]
    lines += [f"  {tag:<{tag_width}}not supported yet: {why}" for tag, why in UNSUPPORTED.items()]
    return "\n".join(lines) + "\n"
