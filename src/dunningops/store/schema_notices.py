"""Tables of what the team handles besides the plans: incidents and their ratings (T8), portal
notifications (A9) and the documents attached to to-dos (letters as PDF)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, LargeBinary, SmallInteger, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dunningops.store.schema import Base, UTCDateTime


class IncidentRow(Base):
    """T8: a customer incident (a ticket, e.g. an invoice dispute), open or closed, and its rating.

    ``notify_opened`` / ``notify_closed`` override the config's default for this incident (None:
    the default). An open dispute about an invoice pauses that invoice (``pause_id``) until closed.
    The rating (1-5, with the customer's optional message) is one per incident, changeable until
    the incident is closed.
    """

    __tablename__ = "incidents"
    __table_args__ = (Index("ix_incidents_customer_id_state", "customer_id", "state"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    reference: Mapped[str] = mapped_column(String(128), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoices.id", ondelete="SET NULL"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # dispute | other
    observations: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(8))  # open | closed
    notify_opened: Mapped[bool | None] = mapped_column(Boolean)
    notify_closed: Mapped[bool | None] = mapped_column(Boolean)
    pause_id: Mapped[int | None] = mapped_column(ForeignKey("pauses.id", ondelete="SET NULL"))
    origin: Mapped[str] = mapped_column(String(16))  # cli | import | console | api
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    opened_by: Mapped[str | None] = mapped_column(String(320))
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_by: Mapped[str | None] = mapped_column(String(320))
    closing_note: Mapped[str | None] = mapped_column(Text)
    rating: Mapped[int | None] = mapped_column(SmallInteger)
    rating_message: Mapped[str | None] = mapped_column(Text)
    rated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The message each notification became, claimed in the transaction that records it ``sending``:
    # once set, that notification is never sent again (at most once).
    opened_message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    closed_message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))


class PortalNotificationRow(Base):
    """A9: the receipt or failed-payment email owed for one payment row, once.

    Written in the ledger import's transaction for each payment it creates (unique per payment,
    so importing the file again owes nothing more), sent after the commit: ``pending`` → ``sending``
    (claimed in the transaction that records the message) → ``sent`` | ``failed`` | ``unknown``;
    ``skipped`` when it could not be sent (no recipient, disabled) with the reason.
    """

    __tablename__ = "portal_notifications"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id", ondelete="CASCADE"), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # payment_receipt | payment_failed
    status: Mapped[str] = mapped_column(String(12), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class TodoDocumentRow(Base):
    """A document attached to a to-do: a letter step's PDF (A4, letterhead and postal address)."""

    __tablename__ = "todo_documents"
    __table_args__ = (UniqueConstraint("todo_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    todo_id: Mapped[int] = mapped_column(ForeignKey("todos.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
