"""incidents and ratings, portal notifications, letters as PDF, apply actors, postal addresses

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-15

* ``incidents`` (T8): customer incidents, open or closed, with their rating.
* ``portal_notifications`` (A9): the receipt or failed-payment email owed per payment, once.
* ``todo_documents``: documents attached to to-dos (a letter's PDF).
* ``customers``: the postal address (letters) and the last debtor notification (T7).
* ``applies``: the member the actor was and the role that allowed it (T1).
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("reference", sa.String(length=128), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("observations", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("notify_opened", sa.Boolean(), nullable=True),
        sa.Column("notify_closed", sa.Boolean(), nullable=True),
        sa.Column("pause_id", sa.Integer(), nullable=True),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opened_by", sa.String(length=320), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.String(length=320), nullable=True),
        sa.Column("closing_note", sa.Text(), nullable=True),
        sa.Column("rating", sa.SmallInteger(), nullable=True),
        sa.Column("rating_message", sa.Text(), nullable=True),
        sa.Column("rated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("opened_message_id", sa.Integer(), nullable=True),
        sa.Column("closed_message_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_incidents_customer_id_customers"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name=op.f("fk_incidents_invoice_id_invoices"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(["pause_id"], ["pauses.id"], name=op.f("fk_incidents_pause_id_pauses"), ondelete="SET NULL"),
        sa.ForeignKeyConstraint(
            ["opened_message_id"], ["messages.id"], name=op.f("fk_incidents_opened_message_id_messages"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["closed_message_id"], ["messages.id"], name=op.f("fk_incidents_closed_message_id_messages"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
        sa.UniqueConstraint("reference", name=op.f("uq_incidents_reference")),
    )
    op.create_index("ix_incidents_customer_id_state", "incidents", ["customer_id", "state"])
    op.create_index(op.f("ix_incidents_invoice_id"), "incidents", ["invoice_id"])
    op.create_table(
        "portal_notifications",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("payment_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_portal_notifications_payment_id_payments"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_portal_notifications_customer_id_customers"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_portal_notifications_message_id_messages"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portal_notifications")),
        sa.UniqueConstraint("payment_id", name=op.f("uq_portal_notifications_payment_id")),
    )
    op.create_index(op.f("ix_portal_notifications_customer_id"), "portal_notifications", ["customer_id"])
    op.create_index(op.f("ix_portal_notifications_status"), "portal_notifications", ["status"])
    op.create_table(
        "todo_documents",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("todo_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=64), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["todo_id"], ["todos.id"], name=op.f("fk_todo_documents_todo_id_todos"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_todo_documents")),
        sa.UniqueConstraint("todo_id", "name", name=op.f("uq_todo_documents_todo_id")),
    )
    op.create_index(op.f("ix_todo_documents_todo_id"), "todo_documents", ["todo_id"])
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("address_line1", sa.Text(), nullable=True))
        batch.add_column(sa.Column("address_line2", sa.Text(), nullable=True))
        batch.add_column(sa.Column("postal_code", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("city", sa.Text(), nullable=True))
        batch.add_column(sa.Column("last_notified_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("applies") as batch:
        batch.add_column(sa.Column("actor_member", sa.String(length=63), nullable=True))
        batch.add_column(sa.Column("actor_role", sa.String(length=63), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("applies") as batch:
        batch.drop_column("actor_role")
        batch.drop_column("actor_member")
    with op.batch_alter_table("customers") as batch:
        for column in ("last_notified_at", "city", "postal_code", "address_line2", "address_line1"):
            batch.drop_column(column)
    op.drop_table("todo_documents")
    op.drop_table("portal_notifications")
    op.drop_table("incidents")
