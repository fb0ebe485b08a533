"""outgoing: what each message was sent for (anchor, to-do), the confirmation an outbox row claimed, the send lock row

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

* ``messages.anchor_invoice_id``: with (plan, step, customer) it names the step a reminder was
  sent for, so that the next send of a deferred reminder reuses its Message-ID.
* ``messages.todo_id``: the to-do a manual email was sent from.
* ``outbox.message_id``: the message that carries an outbox row (A3 confirmation); set when a
  run claims the row, in the transaction that records the message ``sending``.

Plain nullable columns (no constraint): adding them is instant on both dialects, whatever the
size of the history.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("anchor_invoice_id", sa.Integer(), nullable=True))
    op.add_column("messages", sa.Column("todo_id", sa.Integer(), nullable=True))
    op.add_column("outbox", sa.Column("message_id", sa.Integer(), nullable=True))
    # The row a send cycle writes once it holds the run lock: who runs, since when (store/lock.py).
    op.bulk_insert(sa.table("locks", sa.column("name", sa.String)), [{"name": "send"}])


def downgrade() -> None:
    op.execute("DELETE FROM locks WHERE name = 'send'")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("message_id")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("todo_id")
        batch_op.drop_column("anchor_invoice_id")
