"""The API's bodies and answers as pydantic models: the OpenAPI description is built from them, and
every answer is shaped by one (so what is served is what is described).

The items' models describe what the ledger accepts; the ledger's own parsers check the items
(ledger/items.py), so an item's errors read as an import's do.
"""

from __future__ import annotations

import datetime as dt
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Amount = str | int | float
AMOUNT = "An amount in the currency's units, e.g. 1234.50 (a string or a number); positive."
DAY = "A date, YYYY-MM-DD (1900-01-01 to 2199-12-31)."


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Answer(BaseModel):
    # Shaped from the engine's rows, which carry more than is served (internal ids, timestamps).
    model_config = ConfigDict(extra="ignore")


# --- items: what the upserts take ---------------------------------------------------------------


class CustomerItem(_Model):
    """A customer, upserted by its external id."""

    external_id: str = Field(max_length=128, description="The customer's id in the accounting system.")
    name: str = Field(max_length=500)
    country: str | None = Field(None, description="ISO 3166 code, e.g. FR.")
    locale: str | None = Field(None, description="e.g. fr_FR; default: the company's.")
    currency: str | None = Field(None, description="ISO 4217 code, e.g. EUR; default: the company's.")
    account_manager: str | None = Field(None, description="A member's id or email from the config.")
    plan: str | None = Field(None, description="A plan's id; none: the plans' assignment rules choose.")
    address_line1: str | None = Field(None, max_length=200, description="The postal address letters are sent to.")
    address_line2: str | None = Field(None, max_length=200)
    postal_code: str | None = Field(None, max_length=32)
    city: str | None = Field(None, max_length=100)


class ContactItem(_Model):
    """A contact of a customer, upserted by (customer, email); its functions replace the contact's."""

    customer_external_id: str = Field(max_length=128)
    email: str = Field(max_length=320)
    name: str | None = None
    phone: str | None = Field(None, max_length=64)
    job: str | None = None
    functions: list[str] | str | None = Field(
        None, description="Contact functions by id or label, in any of their languages (a list, or one string split on ; | ,)."
    )
    primary: bool | None = Field(None, description="The customer's one primary contact.")
    valid: bool | None = Field(
        None, description="true: the address is confirmed good again; false: do not write to it; absent: unchanged."
    )


class InvoiceItem(_Model):
    """An invoice, upserted by its external id."""

    external_id: str = Field(max_length=128)
    customer_external_id: str = Field(max_length=128)
    number: str = Field(max_length=128)
    issue_date: date | None = Field(None, description=DAY)
    due_date: date = Field(description=DAY)
    amount: Amount = Field(description=AMOUNT)
    outstanding: Amount | None = Field(None, description=AMOUNT + " Default: the amount.")
    currency: str | None = Field(None, description="Default: the company's.")
    document_url: str | None = Field(None, max_length=2000)
    status: Literal["open", "paid", "void"] | None = Field(None, description="Default: paid when nothing is outstanding.")


class PaymentItem(_Model):
    """A payment or credit note against an invoice, upserted by its external id."""

    external_id: str = Field(max_length=128)
    invoice_external_id: str = Field(max_length=128)
    date: dt.date = Field(description=DAY)  # named as the import's column
    amount: Amount = Field(description=AMOUNT)
    kind: Literal["payment", "credit_note"] | None = Field(None, description="Default: payment.")


ITEM_MODELS: dict[str, type[_Model]] = {
    "customers": CustomerItem,
    "contacts": ContactItem,
    "invoices": InvoiceItem,
    "payments": PaymentItem,
}


# --- answers --------------------------------------------------------------------------------------


class UpsertResult(_Answer):
    """What an upsert did: every item is created, updated or unchanged."""

    kind: str
    items: int
    created: int
    updated: int
    unchanged: int
    links_changed: int | None = Field(None, description="Contacts: function links added or removed.")
    message: str


class ItemError(_Answer):
    index: int = Field(description="The item's place in the request, 0 first.")
    field: str | None = Field(description="The field at fault; null: the item as a whole.")
    message: str


class ItemErrors(_Answer):
    """Some items are invalid: nothing was written."""

    error: str
    errors: list[ItemError]


class Error(_Answer):
    error: str


class CustomerState(_Answer):
    external_id: str
    name: str
    country: str | None
    currency: str | None
    origin: str
    plan: str | None = Field(description="The plan chasing it (explicit, or by the assignment rules).")
    contacts: int
    open_invoices: int
    outstanding_cents: int = Field(description="The open balance, in cents of the currency.")
    days_overdue: int = Field(description="Days past the oldest open invoice's due date (0: nothing overdue).")
    paused_until: date | None


class CustomerPage(_Answer):
    total: int = Field(description="Every customer the filters match.")
    offset: int
    limit: int
    customers: list[CustomerState]


class Contact(_Answer):
    id: int
    email: str
    name: str | None
    phone: str | None
    job: str | None
    functions: list[str]
    is_primary: bool
    valid: bool
    invalid_reason: str | None


class OpenInvoice(_Answer):
    external_id: str
    number: str
    due_date: date
    days_overdue: int
    amount_cents: int
    outstanding_cents: int
    currency: str
    paused: bool
    paused_until: date | None
    pause_reason: str | None


class Pause(_Answer):
    id: int
    invoice: str | None = Field(description="The invoice's number; null: the whole customer.")
    reason: str | None
    until: date | None
    note: str | None
    created_at: datetime
    created_by: str | None
    ended_at: datetime | None
    ended_how: str | None = Field(description="null: still active.")


class CustomerDetail(_Answer):
    external_id: str
    name: str
    country: str | None
    locale: str | None
    currency: str | None
    account_manager: str | None
    origin: str
    plan: str | None
    plan_id: str | None = Field(description="The plan set explicitly, if any.")
    address_line1: str | None = Field(None, description="The postal address letters are sent to (country: country).")
    address_line2: str | None = None
    postal_code: str | None = None
    city: str | None = None
    paused_until: date | None
    pause_reason: str | None
    contacts: list[Contact]
    open_invoices: list[OpenInvoice]
    pauses: list[Pause] = Field(description="Newest first.")
    mail_total: int = Field(description="Emails sent and received (GET …/messages lists the sent ones).")


class Todo(_Answer):
    id: int
    kind: str
    status: str
    customer: str
    name: str
    plan_id: str | None
    step_id: str | None
    assignee: str | None
    reason: str | None
    created_at: datetime


class TodoList(_Answer):
    todos: list[Todo]


class Message(_Answer):
    id: int
    created_at: datetime
    customer: str | None
    kind: str
    automatic: bool
    status: str
    sender_ref: str | None
    from_address: str | None
    performed_by: str | None
    plan_id: str | None
    step_id: str | None
    to_addresses: Any
    subject: str | None
    message_id: str | None
    error: str | None
    sent_at: datetime | None


class MessageList(_Answer):
    messages: list[Message]


def shape(model: type[BaseModel], row: dict[str, Any]) -> dict[str, Any]:
    """``row`` as ``model`` describes it, in JSON types: the engine's extra keys are left out."""
    return model.model_validate(row).model_dump(mode="json")
