"""the import cycle (inbox folders and messages, alerts) and pauses with promises to pay

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

* ``inbox_folders``: per mail source and folder, the UIDVALIDITY and last UID imported.
* ``inbox_messages``: every message read (linked, ignored, quarantined with its raw bytes).
* ``alerts``: bounces, complaints, our mail refused, broken promises, and where each was announced.
* ``pauses``: the history of pauses of a customer or an invoice; ``invoices`` gains the active
  pause's date and reason (the customer already had them).
* ``store_meta``: ``organisation``, a random tag put in the Message-IDs this store creates (R7).
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    meta = op.create_table(
        "store_meta",
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_store_meta")),
    )
    op.bulk_insert(meta, [{"key": "organisation", "value": secrets.token_hex(4)}])
    op.create_table(
        "inbox_folders",
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("folder", sa.String(length=255), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("last_uid", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", "folder", name=op.f("pk_inbox_folders")),
    )
    op.create_table(
        "pauses",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("until", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=63), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_how", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_pauses_customer_id_customers"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"], name=op.f("fk_pauses_invoice_id_invoices"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pauses")),
    )
    op.create_index(op.f("ix_pauses_customer_id"), "pauses", ["customer_id"], unique=False)
    op.create_index(op.f("ix_pauses_invoice_id"), "pauses", ["invoice_id"], unique=False)
    op.create_table(
        "inbox_messages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dedupe_key", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("folder", sa.String(length=255), nullable=False),
        sa.Column("source_key", sa.String(length=255), nullable=False),
        sa.Column("message_id", sa.String(length=998), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=True),
        sa.Column("evidence", sa.Text(), nullable=True),
        sa.Column("from_address", sa.String(length=320), nullable=True),
        sa.Column("from_name", sa.Text(), nullable=True),
        sa.Column("to_addresses", sa.JSON(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("referenced_ids", sa.JSON(), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("reply_text", sa.Text(), nullable=True),
        sa.Column("attachments", sa.JSON(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("invoice_id", sa.Integer(), nullable=True),
        sa.Column("replied_message_id", sa.Integer(), nullable=True),
        sa.Column("match_by", sa.String(length=24), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("raw", sa.LargeBinary(), nullable=True),
        sa.Column("todo_id", sa.Integer(), nullable=True),
        sa.Column("handled", sa.String(length=12), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_inbox_messages_customer_id_customers"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name=op.f("fk_inbox_messages_invoice_id_invoices"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["replied_message_id"],
            ["messages.id"],
            name=op.f("fk_inbox_messages_replied_message_id_messages"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(["todo_id"], ["todos.id"], name=op.f("fk_inbox_messages_todo_id_todos"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox_messages")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_inbox_messages_dedupe_key")),
    )
    op.create_index(op.f("ix_inbox_messages_customer_id"), "inbox_messages", ["customer_id"], unique=False)
    op.create_index(op.f("ix_inbox_messages_from_address"), "inbox_messages", ["from_address"], unique=False)
    op.create_index(op.f("ix_inbox_messages_message_id"), "inbox_messages", ["message_id"], unique=False)
    op.create_index("ix_inbox_messages_source_key", "inbox_messages", ["source", "folder", "source_key"], unique=False)
    op.create_index(op.f("ix_inbox_messages_status"), "inbox_messages", ["status"], unique=False)
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("contact_email", sa.String(length=320), nullable=True),
        sa.Column("inbox_message_id", sa.Integer(), nullable=True),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("channels", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acked_by", sa.String(length=63), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_alerts_customer_id_customers"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["inbox_message_id"],
            ["inbox_messages.id"],
            name=op.f("fk_alerts_inbox_message_id_inbox_messages"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"], name=op.f("fk_alerts_message_id_messages"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    op.create_index(op.f("ix_alerts_customer_id"), "alerts", ["customer_id"], unique=False)
    op.create_index(op.f("ix_alerts_kind"), "alerts", ["kind"], unique=False)
    op.add_column("invoices", sa.Column("paused_until", sa.Date(), nullable=True))
    op.add_column("invoices", sa.Column("pause_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_table("store_meta")
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.drop_column("pause_reason")
        batch_op.drop_column("paused_until")
    op.drop_index(op.f("ix_alerts_kind"), table_name="alerts")
    op.drop_index(op.f("ix_alerts_customer_id"), table_name="alerts")
    op.drop_table("alerts")
    op.drop_index(op.f("ix_inbox_messages_status"), table_name="inbox_messages")
    op.drop_index("ix_inbox_messages_source_key", table_name="inbox_messages")
    op.drop_index(op.f("ix_inbox_messages_message_id"), table_name="inbox_messages")
    op.drop_index(op.f("ix_inbox_messages_from_address"), table_name="inbox_messages")
    op.drop_index(op.f("ix_inbox_messages_customer_id"), table_name="inbox_messages")
    op.drop_table("inbox_messages")
    op.drop_index(op.f("ix_pauses_invoice_id"), table_name="pauses")
    op.drop_index(op.f("ix_pauses_customer_id"), table_name="pauses")
    op.drop_table("pauses")
    op.drop_table("inbox_folders")
