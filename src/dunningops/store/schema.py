"""SQLAlchemy tables of the store.

Config tables hold what ``apply`` wrote (desired fields) plus actual-only
fields (an alias's verification, timestamps, last send) that never show in a
plan. ``applies`` is the audit trail; ``outbox`` holds side effects queued by
an apply and delivered only after it committed.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)

    if TYPE_CHECKING:
        # Every mapped class here names a ``__tablename__``, so its ``__table__`` is a Table
        # (DeclarativeBase types it as the wider FromClause, which insert/update/delete refuse).
        __table__: ClassVar[Table]


class UTCDateTime(TypeDecorator):
    """An instant, stored in UTC on every backend and read back aware, in UTC.

    SQLite has no time zone type: SQLAlchemy writes the wall time of an aware value and
    drops its offset, so 23:30+01:00 came back as 23:30 UTC (an hour late; a step applied
    late in the evening first sent a day late). Converting on the way in fixes that;
    PostgreSQL's timestamptz already converts, and values come back in UTC on both.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        # A naive value is taken as UTC, as the rest of the engine writes them.
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _ts() -> Mapped[datetime]:
    return mapped_column(UTCDateTime())


class Timestamps:
    created_at: Mapped[datetime] = _ts()
    updated_at: Mapped[datetime] = _ts()


class SettingsRow(Timestamps, Base):
    __tablename__ = "settings"
    id: Mapped[str] = mapped_column(String(16), primary_key=True)  # always "settings"
    data: Mapped[dict] = mapped_column(JSON)


class MemberRow(Timestamps, Base):
    __tablename__ = "members"
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16))


class AliasRow(Timestamps, Base):
    __tablename__ = "aliases"
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    display_name: Mapped[str] = mapped_column(Text)
    signature: Mapped[str] = mapped_column(Text)
    # A3: actual-only; set by the confirmation link, never by the YAML.
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    verification_token: Mapped[str | None] = mapped_column(String(64))
    verified_at: Mapped[datetime | None] = _ts()
    last_sent_at: Mapped[datetime | None] = _ts()


class ContactFunctionRow(Timestamps, Base):
    __tablename__ = "contact_functions"
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    label: Mapped[str] = mapped_column(Text)
    labels: Mapped[dict] = mapped_column(JSON)


class TemplateRow(Timestamps, Base):
    __tablename__ = "templates"
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    design: Mapped[str] = mapped_column(String(16))
    # {language: {subject, body_file, body}}
    locales: Mapped[dict] = mapped_column(JSON)
    last_sent_at: Mapped[datetime | None] = _ts()  # T4


class PlanRow(Timestamps, Base):
    __tablename__ = "plans"
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    level: Mapped[str] = mapped_column(String(16))
    assign: Mapped[dict] = mapped_column(JSON)
    min_contact_delay: Mapped[str] = mapped_column(String(16))
    reply_to: Mapped[str | None] = mapped_column(String(320))
    entry: Mapped[str] = mapped_column(String(16), default="first_step")  # E7: first_step | by_age
    group_invoices: Mapped[bool] = mapped_column(Boolean, default=True)
    track_opens: Mapped[bool] = mapped_column(Boolean, default=False)  # E6 "opened": a tracking pixel in its emails


class PlanStepRow(Base):
    """A plan's steps in their own table, so the send cycle can join them to invoices in SQL."""

    __tablename__ = "plan_steps"
    plan_id: Mapped[str] = mapped_column(
        String(63), ForeignKey("plans.id", ondelete="CASCADE", onupdate="CASCADE"), primary_key=True
    )
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    at: Mapped[str] = mapped_column(String(16))
    at_days: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(16))
    send: Mapped[str] = mapped_column(String(16))
    sender: Mapped[str | None] = mapped_column(String(130))
    to_functions: Mapped[list] = mapped_column(JSON)
    cc_functions: Mapped[list] = mapped_column(JSON)
    bcc_functions: Mapped[list] = mapped_column(JSON)
    template_id: Mapped[str | None] = mapped_column(String(63))
    assignee: Mapped[str | None] = mapped_column(String(130))
    # E3: when the step was first applied; a new automatic step first sends the next working day.
    created_at: Mapped[datetime | None] = _ts()


class ApplyRow(Base):
    """The audit trail: one row per apply."""

    __tablename__ = "applies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    applied_at: Mapped[datetime] = _ts()
    actor: Mapped[str] = mapped_column(Text)
    # T1: the member the actor was found to be (by id or email) and the role that allowed the apply.
    actor_member: Mapped[str | None] = mapped_column(String(63))
    actor_role: Mapped[str | None] = mapped_column(String(63))
    git_commit: Mapped[str | None] = mapped_column(String(64))
    plan_digest: Mapped[str] = mapped_column(String(64))
    desired_digest: Mapped[str] = mapped_column(String(64))
    summary: Mapped[dict] = mapped_column(JSON)
    changes: Mapped[list] = mapped_column(JSON)  # [{action, address}]
    # The config objects the apply left ({digest, objects}: reconcile/drift.py), for `drift`;
    # null for applies made before it was recorded. Deferred: listings never load it.
    state: Mapped[dict | None] = mapped_column(JSON, nullable=True, deferred=True)


class OutboxRow(Base):
    """Side effects of an apply (A3's confirmation email), delivered after commit by the send cycle."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    ref: Mapped[str] = mapped_column(String(130))
    payload: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = _ts()
    delivered_at: Mapped[datetime | None] = _ts()
    apply_id: Mapped[int | None] = mapped_column(ForeignKey("applies.id"))
    # The message that carries it, set when a run claims the row (in the transaction that records
    # the message `sending`): a claimed row is never sent again unless its message was deferred.
    message_id: Mapped[int | None] = mapped_column(Integer)


class MetaRow(Base):
    """Facts about this store: ``organisation``, a random tag written once, put in every Message-ID
    we create, so that an organisation reading a mailbox shared with another one knows a reply
    to the other's mail is not its own (R7)."""

    __tablename__ = "store_meta"
    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class LockRow(Base):
    """Who holds a lock: ``apply`` (on SQLite, a write to this row is the lock) and ``send`` (the send cycle)."""

    __tablename__ = "locks"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str | None] = mapped_column(Text)
    acquired_at: Mapped[datetime | None] = _ts()


# --- the ledger (operational data, imported from the accounting system, C4) ----------------


class CustomerRow(Base):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    external_id: Mapped[str] = mapped_column(String(128), unique=True)
    name: Mapped[str] = mapped_column(Text)
    country: Mapped[str | None] = mapped_column(String(2))
    locale: Mapped[str | None] = mapped_column(String(8))
    currency: Mapped[str | None] = mapped_column(String(3))
    account_manager: Mapped[str | None] = mapped_column(String(63))  # a member id
    plan_id: Mapped[str | None] = mapped_column(String(63))  # explicit; else the plans' assignment rules
    paused_until: Mapped[date | None] = mapped_column(Date)
    pause_reason: Mapped[str | None] = mapped_column(Text)  # promise to pay, dispute (R9)
    origin: Mapped[str] = mapped_column(String(20), default="import")  # import | manual | incoming_message (R6)
    # The postal address letters are sent to (the ledger's columns; country is ``country``).
    address_line1: Mapped[str | None] = mapped_column(Text)
    address_line2: Mapped[str | None] = mapped_column(Text)
    postal_code: Mapped[str | None] = mapped_column(String(32))
    city: Mapped[str | None] = mapped_column(Text)
    last_notified_at: Mapped[datetime | None] = _ts()  # T7: the last debtor notification sent
    created_at: Mapped[datetime] = _ts()
    updated_at: Mapped[datetime] = _ts()


class ContactRow(Base):
    """C1-C3, C9-C10: a person at a customer; identified by (customer, email)."""

    __tablename__ = "contacts"
    # The unique (customer_id, email) index also serves lookups by customer: no index of its own.
    __table_args__ = (UniqueConstraint("customer_id", "email"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320), index=True)
    name: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(String(64))
    job: Mapped[str | None] = mapped_column(Text)
    is_primary: Mapped[bool] = mapped_column(Boolean, default=False)
    valid: Mapped[bool] = mapped_column(Boolean, default=True)
    invalid_reason: Mapped[str | None] = mapped_column(Text)
    invalid_at: Mapped[datetime | None] = _ts()
    created_at: Mapped[datetime] = _ts()
    updated_at: Mapped[datetime] = _ts()


class ContactFunctionLinkRow(Base):
    """C5/C7: which functions a contact has (a contact function id from the applied config)."""

    __tablename__ = "contact_function_links"
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True)
    function_id: Mapped[str] = mapped_column(String(63), primary_key=True, index=True)


class InvoiceRow(Base):
    __tablename__ = "invoices"
    __table_args__ = (
        Index("ix_invoices_status_due", "status", "due_date"),
        # The send cycle loads a batch of customers' open invoices, oldest first: without this,
        # SQLite walked every open invoice by due date for each batch.
        # It also serves every lookup by customer (a foreign key's cascade too): no index of its own.
        Index("ix_invoices_customer_status_due", "customer_id", "status", "due_date"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    external_id: Mapped[str] = mapped_column(String(128), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    number: Mapped[str] = mapped_column(String(128))
    issue_date: Mapped[date | None] = mapped_column(Date)
    due_date: Mapped[date] = mapped_column(Date)
    # Amounts in cents: exact, and the same on every dialect.
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    # The balance the accounting system reported; payments imported here reduce it further.
    reported_outstanding_cents: Mapped[int] = mapped_column(BigInteger)
    outstanding_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    document_url: Mapped[str | None] = mapped_column(Text)
    # What the accounting system said, and what follows once payments are counted.
    reported_status: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(8))  # open | paid | void
    paused: Mapped[bool] = mapped_column(Boolean, default=False)  # R9; with the pause below
    paused_until: Mapped[date | None] = mapped_column(Date)
    pause_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _ts()
    updated_at: Mapped[datetime] = _ts()


class PaymentRow(Base):
    """A payment or credit note; it reduces its invoice's outstanding amount."""

    __tablename__ = "payments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    external_id: Mapped[str] = mapped_column(String(128), unique=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"), index=True)
    paid_on: Mapped[date] = mapped_column(Date)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))  # payment | credit_note | failed (A9: reduces nothing)
    created_at: Mapped[datetime] = _ts()


# --- the send cycle: what was done, sent and left to people -----------------------------------


class MessageRow(Base):
    """Every email that left (or tried to leave), E6/A8: status, automatic or not, sender identity."""

    __tablename__ = "messages"
    # Finding the runners of the `sending` rows (history._dead_senders) reads this index alone.
    __table_args__ = (Index("ix_messages_status_runner_id", "status", "runner_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(255), unique=True)  # RFC 5322, for R5 matching
    kind: Mapped[str] = mapped_column(String(24))  # reminder | manual | on_demand | proof | alias_confirmation
    automatic: Mapped[bool] = mapped_column(Boolean, default=False)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"), index=True)
    plan_id: Mapped[str | None] = mapped_column(String(63))
    step_id: Mapped[str | None] = mapped_column(String(63))
    # With plan, step and customer: the step a reminder was sent for (a deferred one's next
    # send reuses its Message-ID). No constraint: added in place by migration 0004.
    anchor_invoice_id: Mapped[int | None] = mapped_column(Integer)
    todo_id: Mapped[int | None] = mapped_column(Integer)  # the to-do a manual email was sent from
    template_id: Mapped[str | None] = mapped_column(String(63))
    language: Mapped[str | None] = mapped_column(String(8))
    sender_ref: Mapped[str | None] = mapped_column(String(130))  # alias.billing, member.alice, fallback
    from_address: Mapped[str] = mapped_column(String(320))
    from_name: Mapped[str | None] = mapped_column(Text)
    reply_to: Mapped[str | None] = mapped_column(String(320))
    to_addresses: Mapped[list] = mapped_column(JSON)
    cc_addresses: Mapped[list] = mapped_column(JSON)
    bcc_addresses: Mapped[list] = mapped_column(JSON)
    subject: Mapped[str] = mapped_column(Text)
    invoice_ids: Mapped[list] = mapped_column(JSON)
    # sending → sent | failed | deferred | unknown (may have left: never re-sent); a crash between
    # sending and the outcome leaves sending, shown and then marked unknown (outgoing/history.py).
    status: Mapped[str] = mapped_column(String(16), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    performed_by: Mapped[str | None] = mapped_column(String(63))  # A8: the member, for manual emails
    created_at: Mapped[datetime] = _ts()
    sent_at: Mapped[datetime | None] = _ts()
    # The process that recorded it (runners): a `sending` row whose runner is dead may have left.
    runner_id: Mapped[int | None] = mapped_column(Integer)
    opened_at: Mapped[datetime | None] = _ts()  # E6: first load of its tracking pixel (track_opens)


class ActionRow(Base):
    """A step performed for a target: the history the schedule reads. Unique, so a step runs once."""

    __tablename__ = "actions"
    __table_args__ = (UniqueConstraint("plan_id", "step_id", "customer_id", "anchor_invoice_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    plan_id: Mapped[str] = mapped_column(String(63))
    step_id: Mapped[str] = mapped_column(String(63))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    # The invoice the step was timed from: each invoice (invoice-level plan) or the
    # customer's oldest open invoice (customer-level plan).
    anchor_invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"), index=True)
    # claimed (a runner is preparing it; deleted if that runner dies before sending) | sent | todo
    outcome: Mapped[str] = mapped_column(String(16))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    todo_id: Mapped[int | None] = mapped_column(ForeignKey("todos.id", ondelete="SET NULL"))
    performed_at: Mapped[datetime] = _ts()
    # While ``claimed``: the runner preparing it (store/runners.py); cleared once sent or made a to-do.
    runner_id: Mapped[int | None] = mapped_column(Integer, index=True)


class TodoRow(Base):
    """E1: what people do: manual emails, calls, letters, replies (R3), customers with no recipient."""

    __tablename__ = "todos"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # email | call | letter | reply | bounce | no_recipient | promise_broken
    status: Mapped[str] = mapped_column(String(12), index=True)  # open | done | dismissed | sent
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoices.id", ondelete="SET NULL"))
    plan_id: Mapped[str | None] = mapped_column(String(63))
    step_id: Mapped[str | None] = mapped_column(String(63))
    assignee: Mapped[str | None] = mapped_column(String(63))  # a member id
    reason: Mapped[str | None] = mapped_column(Text)
    # The prepared email (sender preselected, A6) or the rendered letter.
    payload: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = _ts()
    closed_at: Mapped[datetime | None] = _ts()
    closed_by: Mapped[str | None] = mapped_column(String(63))


# --- pauses and promises to pay ---------------------------------------------------------------


class PauseRow(Base):
    """A pause of one customer's dunning, or of one invoice's, for a reason, until a date.

    The history of pauses; the active one is also copied onto the customer (``paused_until``,
    ``pause_reason``) or the invoice (``paused``…), which is what the send cycle's query reads.
    """

    __tablename__ = "pauses"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"), index=True)
    reason: Mapped[str] = mapped_column(String(16))  # promise | dispute | other
    note: Mapped[str | None] = mapped_column(Text)
    until: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = _ts()
    created_by: Mapped[str | None] = mapped_column(String(63))
    # None while active; then resumed (by a person) | expired | broken (a promise past its date,
    # unpaid) | kept (paid before its date).
    ended_at: Mapped[datetime | None] = _ts()
    ended_how: Mapped[str | None] = mapped_column(String(16))


# The import cycle's and the running service's tables live in their own modules, on the same Base.
from dunningops.store.schema_daemon import ActivityRow, ApiTokenRow, ConsoleSessionRow, CredentialRow, RunnerRow  # noqa: E402, F401
from dunningops.store.schema_inbox import AlertRow, InboxFolderRow, InboxMessageRow  # noqa: E402, F401
from dunningops.store.schema_notices import IncidentRow, PortalNotificationRow, TodoDocumentRow  # noqa: E402, F401
