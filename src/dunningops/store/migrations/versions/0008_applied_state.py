"""drift: each apply records the config objects it left

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08

* ``applies.state``: ``{"digest", "objects"}``, the canonical config objects (the shape `plan`
  diffs) as the store held them when the apply committed. `drift` compares the store with the
  last apply's state. Null for the applies made before: `drift` asks for one apply first.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("applies") as batch:
        batch.add_column(sa.Column("state", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("applies") as batch:
        batch.drop_column("state")
