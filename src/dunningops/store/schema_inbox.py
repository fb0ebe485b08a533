"""The import cycle's tables: where each folder's import stands, every message read, the alerts.

Kept beside ``schema.py`` (same ``Base``, same naming convention); ``schema.py`` re-exports them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dunningops.store.schema import Base, _ts


class InboxFolderRow(Base):
    """Where the import of one folder of one mail source stands (UIDVALIDITY and the last UID seen)."""

    __tablename__ = "inbox_folders"
    source: Mapped[str] = mapped_column(String(255), primary_key=True)
    folder: Mapped[str] = mapped_column(String(255), primary_key=True)
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = _ts()


class InboxMessageRow(Base):
    """Every message the import cycle read: linked to a customer, ignored, or quarantined.

    ``dedupe_key`` (Message-ID plus a digest of the raw bytes) makes a message imported once,
    whatever happens to the folder's UIDs. Raw bytes are kept only for quarantined messages.
    """

    __tablename__ = "inbox_messages"
    __table_args__ = (Index("ix_inbox_messages_source_key", "source", "folder", "source_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(String(255))
    folder: Mapped[str] = mapped_column(String(255))
    source_key: Mapped[str] = mapped_column(String(255))
    message_id: Mapped[str | None] = mapped_column(String(998), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)  # linked | ignored | quarantined | deleted
    kind: Mapped[str | None] = mapped_column(String(16))  # reply | auto_reply | bounce | complaint
    evidence: Mapped[str | None] = mapped_column(Text)
    from_address: Mapped[str | None] = mapped_column(String(320), index=True)
    from_name: Mapped[str | None] = mapped_column(Text)
    to_addresses: Mapped[list] = mapped_column(JSON)
    subject: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime | None] = _ts()
    imported_at: Mapped[datetime] = _ts()
    referenced_ids: Mapped[list] = mapped_column(JSON)
    text: Mapped[str | None] = mapped_column(Text)
    reply_text: Mapped[str | None] = mapped_column(Text)
    attachments: Mapped[list] = mapped_column(JSON)
    details: Mapped[dict] = mapped_column(JSON)  # bounces, complaint, parser repairs
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"), index=True)
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoices.id", ondelete="SET NULL"))
    replied_message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    match_by: Mapped[str | None] = mapped_column(String(24))  # in_reply_to | references | bounce_original | sender | …
    reason: Mapped[str | None] = mapped_column(Text)  # why it was ignored or quarantined
    raw: Mapped[bytes | None] = mapped_column(LargeBinary)
    todo_id: Mapped[int | None] = mapped_column(ForeignKey("todos.id", ondelete="SET NULL"))
    handled: Mapped[str | None] = mapped_column(String(12))  # after import: pending | flagged | moved


class AlertRow(Base):
    """C9: what the team must know (a bounce, a complaint, our mail refused, a broken promise), and where it went."""

    __tablename__ = "alerts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(24), index=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"), index=True)
    contact_email: Mapped[str | None] = mapped_column(String(320))
    inbox_message_id: Mapped[int | None] = mapped_column(ForeignKey("inbox_messages.id", ondelete="SET NULL"))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    title: Mapped[str] = mapped_column(Text)
    details: Mapped[dict] = mapped_column(JSON)
    # Where it was announced and how that went: {"in_app": "shown", "email": "sent", "slack": "failed: …"}.
    channels: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = _ts()
    acked_at: Mapped[datetime | None] = _ts()
    acked_by: Mapped[str | None] = mapped_column(String(63))
