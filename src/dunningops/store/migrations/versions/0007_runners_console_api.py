"""the running service: runners and claims, the console's members and sessions, API tokens, activity, open tracking

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

* ``runners``: the processes that send; each holds a lock keyed by its id while it lives, so a
  ``sending`` message or a ``claimed`` action of a dead one is told apart from one in flight.
* ``messages.runner_id``, ``actions.runner_id``: who recorded or claimed the row;
  ``messages.opened_at``: E6 "opened" (the tracking pixel, per plan: ``plans.track_opens``).
* ``member_credentials``, ``console_sessions``, ``api_tokens``, ``activity``: the team console and
  the HTTP API (hashed passwords and tokens), and what members did there.
* ``store_meta``: ``signing_key``, the random key of the public links' HMAC signatures.
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    meta = sa.table("store_meta", sa.column("key", sa.String()), sa.column("value", sa.Text()))
    op.bulk_insert(meta, [{"key": "signing_key", "value": secrets.token_hex(32)}])
    op.create_table(
        "runners",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runners")),
    )
    op.add_column("messages", sa.Column("runner_id", sa.Integer(), nullable=True))
    op.add_column("messages", sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_messages_status_runner_id", "messages", ["status", "runner_id"], unique=False)
    op.add_column("actions", sa.Column("runner_id", sa.Integer(), nullable=True))
    op.create_index(op.f("ix_actions_runner_id"), "actions", ["runner_id"], unique=False)
    with op.batch_alter_table("plans", schema=None) as batch_op:
        batch_op.add_column(sa.Column("track_opens", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "member_credentials",
        sa.Column("member_id", sa.String(length=63), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("member_id", name=op.f("pk_member_credentials")),
    )
    op.create_table(
        "console_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.String(length=63), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_sessions")),
    )
    op.create_index(op.f("ix_console_sessions_member_id"), "console_sessions", ["member_id"], unique=False)
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("member_id", sa.String(length=63), nullable=False),
        sa.Column("scope", sa.String(length=8), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("label", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_index(op.f("ix_api_tokens_member_id"), "api_tokens", ["member_id"], unique=False)
    op.create_table(
        "activity",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("member_id", sa.String(length=63), nullable=True),
        sa.Column("via", sa.String(length=12), nullable=False),
        sa.Column("action", sa.String(length=48), nullable=False),
        sa.Column("target", sa.Text(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activity")),
    )
    op.create_index(op.f("ix_activity_member_id"), "activity", ["member_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_activity_member_id"), table_name="activity")
    op.drop_table("activity")
    op.drop_index(op.f("ix_api_tokens_member_id"), table_name="api_tokens")
    op.drop_table("api_tokens")
    op.drop_index(op.f("ix_console_sessions_member_id"), table_name="console_sessions")
    op.drop_table("console_sessions")
    op.drop_table("member_credentials")
    with op.batch_alter_table("plans", schema=None) as batch_op:
        batch_op.drop_column("track_opens")
    op.drop_index(op.f("ix_actions_runner_id"), table_name="actions")
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.drop_column("runner_id")
    op.drop_index("ix_messages_status_runner_id", table_name="messages")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("opened_at")
        batch_op.drop_column("runner_id")
    op.drop_table("runners")
    op.execute("DELETE FROM store_meta WHERE key = 'signing_key'")
