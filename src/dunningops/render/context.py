"""What the send cycle hands the renderer: raw values (dates, cents); the renderer formats them."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date
from operator import attrgetter


def by_fields(value) -> tuple:
    """``value`` pickled as its class and its fields in order (the render worker's batches): a third
    of the default's cost for a slots dataclass, and derived, so that a new field is never left out."""
    get = _FIELDS.get(type(value))
    if get is None:
        names = [f.name for f in fields(value)]
        assert len(names) > 1  # attrgetter of one name gives the value, not a tuple
        get = _FIELDS[type(value)] = attrgetter(*names)
    return type(value), get(value)


_FIELDS: dict[type, attrgetter] = {}


@dataclass(frozen=True, slots=True)
class InvoiceData:
    """One invoice a reminder is about. Amounts in cents (hundredths of the currency unit)."""

    number: str
    due_date: date
    amount_cents: int
    outstanding_cents: int
    currency: str
    issue_date: date | None = None
    document_url: str | None = None
    days_overdue: int = 0

    def __reduce__(self):
        return by_fields(self)


@dataclass(frozen=True, slots=True)
class EmailContext:
    """Everything one email is filled with.

    Args:
        company: name, logo_url, brand_color, country, currency.
        customer: name, external_id; optional portal_url, address.
        contact: name (may be None or empty), email.
        invoices: the invoices the reminder covers, in the order they are listed.
        sender: name, email.
        signature: the alias's signature (A7); may be empty.
        today: the date of sending (company time).
        locale: how amounts and dates are formatted, e.g. ``fr_FR``. The template
            language is chosen by the caller.
        incident: T8: reference, observations, state, opened_at / closed_at (dates), invoice_number;
            None outside incident notifications.
        payment: A9: reference, amount_cents, currency, paid_on (a date), invoice_number,
            outstanding_cents (what is left on its invoice); None outside portal notifications.
        rating_url: T8: the signed link of the customer's incident's rating page (the widget's
            target); None: the widget prints nothing.
    """

    company: dict
    customer: dict
    contact: dict
    invoices: list[InvoiceData]
    sender: dict
    signature: str
    today: date
    locale: str
    incident: dict | None = None
    payment: dict | None = None
    rating_url: str | None = None

    def __reduce__(self):
        return by_fields(self)
