"""send cycle: messages, actions, todos, step creation time

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("automatic", sa.Boolean(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("plan_id", sa.String(length=63), nullable=True),
        sa.Column("step_id", sa.String(length=63), nullable=True),
        sa.Column("template_id", sa.String(length=63), nullable=True),
        sa.Column("language", sa.String(length=8), nullable=True),
        sa.Column("sender_ref", sa.String(length=130), nullable=True),
        sa.Column("from_address", sa.String(length=320), nullable=False),
        sa.Column("from_name", sa.Text(), nullable=True),
        sa.Column("reply_to", sa.String(length=320), nullable=True),
        sa.Column("to_addresses", sa.JSON(), nullable=False),
        sa.Column("cc_addresses", sa.JSON(), nullable=False),
        sa.Column("bcc_addresses", sa.JSON(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("invoice_ids", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("performed_by", sa.String(length=63), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_messages_customer_id_customers"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
        sa.UniqueConstraint("message_id", name=op.f("uq_messages_message_id")),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_messages_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_messages_status"), ["status"], unique=False)

    op.create_table(
        "todos",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=True),
        sa.Column("plan_id", sa.String(length=63), nullable=True),
        sa.Column("step_id", sa.String(length=63), nullable=True),
        sa.Column("assignee", sa.String(length=63), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.String(length=63), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_todos_customer_id_customers"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"], name=op.f("fk_todos_invoice_id_invoices"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_todos")),
    )
    with op.batch_alter_table("todos", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_todos_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_todos_status"), ["status"], unique=False)

    op.create_table(
        "actions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("plan_id", sa.String(length=63), nullable=False),
        sa.Column("step_id", sa.String(length=63), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("anchor_invoice_id", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("todo_id", sa.Integer(), nullable=True),
        sa.Column("performed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["anchor_invoice_id"], ["invoices.id"], name=op.f("fk_actions_anchor_invoice_id_invoices"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_actions_customer_id_customers"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_actions_message_id_messages"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(["todo_id"], ["todos.id"], name=op.f("fk_actions_todo_id_todos"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_actions")),
        sa.UniqueConstraint("plan_id", "step_id", "customer_id", "anchor_invoice_id", name=op.f("uq_actions_plan_id")),
    )
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_actions_anchor_invoice_id"), ["anchor_invoice_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_actions_customer_id"), ["customer_id"], unique=False)

    with op.batch_alter_table("plan_steps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("created_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_invoices_customer_status_due", "invoices", ["customer_id", "status", "due_date"], unique=False)
    # Steps applied before this migration count as applied with their plan (E3 would
    # otherwise hold them back forever as "new").
    op.execute("UPDATE plan_steps SET created_at = (SELECT plans.created_at FROM plans WHERE plans.id = plan_steps.plan_id)")


def downgrade() -> None:
    op.drop_index("ix_invoices_customer_status_due", table_name="invoices")
    with op.batch_alter_table("plan_steps", schema=None) as batch_op:
        batch_op.drop_column("created_at")

    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_actions_customer_id"))
        batch_op.drop_index(batch_op.f("ix_actions_anchor_invoice_id"))

    op.drop_table("actions")
    with op.batch_alter_table("todos", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_todos_status"))
        batch_op.drop_index(batch_op.f("ix_todos_customer_id"))

    op.drop_table("todos")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_messages_status"))
        batch_op.drop_index(batch_op.f("ix_messages_customer_id"))

    op.drop_table("messages")
