"""plans: entry (first_step | by_age) and group_invoices

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

Plans applied before keep what they did: ``entry`` is ``first_step`` (E7's standard logic)
and ``group_invoices`` is true (invoice-level plans now send one email per customer and
step on a day, instead of one per invoice a minute apart).
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("plans", schema=None) as batch_op:
        batch_op.add_column(sa.Column("entry", sa.String(length=16), nullable=False, server_default="first_step"))
        batch_op.add_column(sa.Column("group_invoices", sa.Boolean(), nullable=False, server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table("plans", schema=None) as batch_op:
        batch_op.drop_column("group_invoices")
        batch_op.drop_column("entry")
